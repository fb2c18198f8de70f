/* test_fault_send_error.c -- SEND_ERROR from the broker: retriable errors
 * make the producer reconnect and resend; a terminal one fails that
 * partition's group only.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * The errors are injected with upulsar_tb_fail_writes(): like a Pulsar
 * broker whose ledger write failed, the test broker then also closes the
 * topic's producers, so nothing sent behind the failed entry is stored
 * before the client re-creates its producer (a broker storing later entries
 * of a producer after refusing an earlier one would break that producer's
 * order for any client). */
#include "fault_common.h"

enum { PARTS = 4, THREADS = 2, TOTAL = 40000 / FT_SCALE, PER_THREAD = TOTAL / THREADS };

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(fault_send_error, .init = setup, .fini = teardown, .timeout = 60);

typedef struct {
    upulsar_tb_t *tb;
    ft_run_t *run;
    const char *topic;
    _Atomic int done;
    int injected;
    int codes[4];    /* ServerError values to inject, one per step */
    int parts[4];    /* on which partition */
    int steps;
} injector_t;

static uint64_t send_errors_of(upulsar_tb_t *b, const char *topic)
{
    upulsar_tb_topic_stats_t st;
    upulsar_tb_topic_stats(b, topic, &st);
    return st.send_errors;
}

/* Inject codes[k] on parts[k] once the broker has stored (k+1)/8 of the
 * messages and the previous injection was used; the senders may send
 * (k+2)/8 of the messages until then (so each partition still has much to
 * send when its fault comes). */
static void *injector(void *a)
{
    injector_t *in = a;
    char prev[128] = "";
    uint64_t prev_errors = 0;
    while (!atomic_load(&in->done) && in->injected < in->steps) {
        upulsar_tb_stats_t st;
        upulsar_tb_stats(in->tb, &st);
        uint64_t next = (uint64_t)TOTAL * (uint64_t)(in->injected + 1) / 8;
        if (st.messages >= next && (!prev[0] || send_errors_of(in->tb, prev) > prev_errors)) {
            snprintf(prev, sizeof prev, "%s-partition-%d", in->topic, in->parts[in->injected]);
            prev_errors = send_errors_of(in->tb, prev);
            upulsar_tb_fail_writes(in->tb, prev, 1, in->codes[in->injected]);
            in->injected++;
            ft_run_allow(in->run, in->injected < in->steps
                                      ? (uint64_t)TOTAL * (uint64_t)(in->injected + 2) / 8
                                      : (uint64_t)TOTAL);
        } else {
            ft_pause_ms(1);
        }
    }
    return NULL;
}

static uint64_t topic_send_errors(const char *topic, int part)
{
    char t[128];
    snprintf(t, sizeof t, "%s-partition-%d", topic, part);
    return send_errors_of(tb, t);
}

/* Scenario:
 *  1. 2 threads send 40,000 messages over 4 partitions (every second one
 *     keyed).
 *  2. While they do, the broker fails one SEND on partition 1 with
 *     PersistenceError, later one on partition 2 with ServiceNotReady,
 *     later one on partition 1 with UnknownError (each time closing that
 *     partition's producer, as a Pulsar broker fences the topic).
 *  3. Each producer hit re-creates itself and resends from the failed
 *     batch on, with the original sequence ids.
 *  4. Every future succeeds; the log check passes; the broker answered the
 *     3 SEND_ERRORs. */
Test(fault_send_error, retriable_errors_reconnect_and_resend_everything)
{
    const char *kv[] = {"queue.buffer.bytes", "262144", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "retriable", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "fe", "retriable", PARTS, kv);
    ft_run_t *run = ft_run_new(p, THREADS, PER_THREAD, 2);
    ft_run_allow(run, TOTAL * 2 / 8);
    injector_t in = {.tb = tb, .run = run, .topic = "retriable", .steps = 3,
                     .codes = {2 /* PersistenceError */, 6 /* ServiceNotReady */, 0 /* UnknownError */},
                     .parts = {1, 2, 1}};
    ft_run_with_fault_thread(run, injector, &in, &in.done);
    cr_assert_eq(atomic_load(&run->refused), 0, "%s", upulsar_last_error());
    ft_assert_cbs_done(run);
    ft_check_opts_t o = {.topic = "retriable", .partitions = PARTS};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)TOTAL, "failed: %zu", res.failed);
    cr_assert_eq(in.injected, 3);
    cr_assert_eq(topic_send_errors("retriable", 1), 2, "the faults did not happen: %llu",
                 (unsigned long long)topic_send_errors("retriable", 1));
    cr_assert_eq(topic_send_errors("retriable", 2), 1, "the faults did not happen: %llu",
                 (unsigned long long)topic_send_errors("retriable", 2));
    /* a retriable SEND_ERROR closes the connection, as the official
     * clients do: the producers were re-created on new ones (one SEND_ERROR
     * may find its producer already closed by the broker's CLOSE_PRODUCER
     * of the previous fault, and be ignored) */
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    cr_assert_geq(st.connections_accepted, 1 + 1, "%llu connections",
                  (unsigned long long)st.connections_accepted);
    ft_run_free(run);
}

/* Scenario:
 *  1. 2 threads send 40,000 keyed messages over 4 partitions.
 *  2. When an eighth of them is stored, the broker fails the next SEND on
 *     partition 3 with TopicTerminatedError (and closes its producer).
 *  3. Every message of partition 3 not yet acknowledged by then fails with
 *     UPULSAR_ERR_TOPIC_TERMINATED (future and callback); later sends
 *     routed to partition 3 are refused with that error; group 3 reports
 *     FAILED; partitions 0-2 keep working: all their messages succeed and
 *     their groups stay READY.
 *  4. The log check: no message whose future failed is stored, no gap, no
 *     duplicate; every message stored on partition 3 precedes every failed
 *     one (the partition's send order). */
Test(fault_send_error, terminal_error_fails_only_that_group)
{
    const char *kv[] = {"queue.buffer.bytes", "262144", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "terminal", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "ft", "terminal", PARTS, kv);
    ft_run_t *run = ft_run_new(p, THREADS, PER_THREAD, 1);
    ft_run_allow(run, TOTAL * 2 / 8);
    injector_t in = {.tb = tb, .run = run, .topic = "terminal", .steps = 1,
                     .codes = {15 /* TopicTerminatedError */}, .parts = {3}};
    ft_run_with_fault_thread(run, injector, &in, &in.done);
    ft_assert_cbs_done(run);
    cr_assert_eq(in.injected, 1);
    for (int g = 0; g < PARTS; g++)
        cr_assert_eq(ft_group_state(p, g), g == 3 ? UPULSAR_STATE_FAILED : UPULSAR_STATE_READY,
                     "group %d", g);
    /* a send now: refused on partition 3, fine elsewhere */
    char key[16];
    for (int i = 0; i < 64; i++) {
        snprintf(key, sizeof key, "k%d", i);
        upulsar_send_opts_t so = {.partition_key = key};
        upulsar_future_t *f = NULL;
        upulsar_err_t e = upulsar_send(p, "late:", 5, &so, &f);
        if (upulsar_producer_partition_for_key(p, key) == 3) {
            cr_assert_eq(e, UPULSAR_ERR_TOPIC_TERMINATED, "%s", upulsar_err_name(e));
        } else {
            cr_assert_eq(e, UPULSAR_OK);
            cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, NULL), UPULSAR_OK);
            upulsar_future_release(f);
        }
    }
    int part_of[64];
    ft_partitions_of_keys(p, part_of);
    upulsar_producer_stop(p, 10000);

    ft_check_opts_t o = {.topic = "terminal", .partitions = PARTS, .late_allowed = 1};
    ft_check_res_t res = ft_check(tb, run, &o);
    size_t failed_p3 = 0, refused_p3 = 0;
    for (int t = 0; t < THREADS; t++) {
        int last_ok = -1, first_bad = PER_THREAD;
        for (int i = 0; i < PER_THREAD; i++) {
            ft_msg_t *m = ft_msg(run, t, i);
            int part = part_of[i % 64];
            if (part != 3) {
                cr_assert_eq(m->send_err, UPULSAR_OK);
                cr_assert_eq(m->err, UPULSAR_OK, "%d:%d on partition %d: %s", t, i, part,
                             upulsar_err_name(m->err));
                continue;
            }
            if (m->send_err != UPULSAR_OK) {
                cr_assert_eq(m->send_err, UPULSAR_ERR_TOPIC_TERMINATED);
                refused_p3++;
            } else if (m->err != UPULSAR_OK) {
                cr_assert_eq(m->err, UPULSAR_ERR_TOPIC_TERMINATED, "%d:%d: %s", t, i,
                             upulsar_err_name(m->err));
                failed_p3++;
            }
            if (m->send_err == UPULSAR_OK && m->err == UPULSAR_OK) {
                cr_assert_lt(i, first_bad, "%d:%d succeeded after a failed one", t, i);
                last_ok = i;
            } else if (first_bad == PER_THREAD) {
                first_bad = i;
            }
        }
        cr_assert_lt(last_ok, first_bad);
    }
    cr_log_info("partition 3: %zu failed, %zu refused at send", failed_p3, refused_p3);
    cr_assert_gt(failed_p3 + refused_p3, 0, "the fault did not happen");
    cr_assert_eq(res.failed, failed_p3);
    ft_run_free(run);
}
