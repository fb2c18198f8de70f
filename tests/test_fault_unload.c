/* test_fault_unload.c -- the broker closes producers (CLOSE_PRODUCER, as on
 * a topic unload) while batches are in flight.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

enum { PARTS = 4 };

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(fault_unload, .init = setup, .fini = teardown, .timeout = 60);

typedef struct {
    upulsar_tb_t *tb;
    ft_run_t *run;
    const char *topic;
    uint64_t every, total;
    _Atomic int done;
    int unloads;
} unloader_t;

/* Unload one partition after another, each time the broker has stored
 * another `every` messages; the senders may stay two such windows ahead. */
static void *unloader(void *a)
{
    unloader_t *u = a;
    uint64_t next = u->every;
    int part = 0;
    while (!atomic_load(&u->done) && next < u->total) {
        upulsar_tb_stats_t st;
        upulsar_tb_stats(u->tb, &st);
        if (st.messages >= next) {
            char t[128];
            snprintf(t, sizeof t, "%s-partition-%d", u->topic, part);
            if (upulsar_tb_unload_topic(u->tb, t) > 0)
                u->unloads++;
            part = (part + 1) % PARTS;
            next += u->every;
            ft_run_allow(u->run, next + 2 * u->every);
        } else {
            ft_pause_ms(1);
        }
    }
    ft_run_allow(u->run, u->total);
    return NULL;
}

/* At least n re-creations so far, and every producer READY (the last
 * CLOSE_PRODUCER may still have been on its way when the messages were
 * all acknowledged). */
static int recreated(void *a)
{
    return ft_reconnects_at_least(a) && ft_all_ready(((ft_reconnects_wait_t *)a)->p);
}

/* Scenario:
 *  1. 2 threads send 40,000 messages over 4 partitions (every second one
 *     keyed).
 *  2. Each time the broker has stored another 2,000 messages, it unloads the
 *     next partition: CLOSE_PRODUCER to its producer, whose SENDs it then
 *     ignores until the producer is re-created; the TCP connection (shared
 *     with the other partitions) stays open.
 *  3. The client re-creates each closed producer at once and resends its
 *     pending batches; the other partitions are not disturbed.
 *  4. Every future succeeds; the log check passes; the producers report
 *     the re-creations. */
Test(fault_unload, close_producer_mid_stream_loses_and_duplicates_nothing)
{
    enum { THREADS = 2, TOTAL = 40000 / FT_SCALE, PER_THREAD = TOTAL / THREADS };
    const char *kv[] = {"queue.buffer.bytes", "262144", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "unloads", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "fu", "unloads", PARTS, kv);
    ft_run_t *run = ft_run_new(p, THREADS, PER_THREAD, 2);
    unloader_t u = {.tb = tb, .run = run, .topic = "unloads", .every = 2000 / FT_SCALE,
                    .total = TOTAL};
    ft_run_allow(run, 3 * u.every);
    ft_run_with_fault_thread(run, unloader, &u, &u.done);
    cr_assert_eq(atomic_load(&run->refused), 0, "%s", upulsar_last_error());
    ft_assert_cbs_done(run);
    ft_reconnects_wait_t rc = {p, (uint64_t)u.unloads};
    cr_assert(ft_wait_for(recreated, &rc), "%llu re-creations for %d unloads",
              (unsigned long long)ft_reconnects(p), u.unloads);
    uint64_t reconnects = ft_reconnects(p);
    ft_check_opts_t o = {.topic = "unloads", .partitions = PARTS};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_log_info("unloads %d, reconnects %llu, unknown ids %zu", u.unloads,
                (unsigned long long)reconnects, res.unknown_ids);
    cr_assert_eq(res.ok, (size_t)TOTAL);
    cr_assert_geq(u.unloads, 8, "the faults did not happen");
    ft_run_free(run);
}

static int producer_backing_off(void *a)
{
    upulsar_producer_t *p = a;
    upulsar_producer_info_t pi;
    size_t n = 0;
    upulsar_producer_list(p, &pi, 1, &n);
    return pi.state != UPULSAR_STATE_READY && pi.reconnects >= 2;
}

static int all_resolved(void *a)
{
    ft_run_t *r = a;
    return ft_resolved(r) == atomic_load(&r->sent);
}

/* Scenario (the receipts of SENDs the broker took before it closed the
 * producer arrive after the CLOSE_PRODUCER, as from a Pulsar broker, which
 * completes the writes in progress after telling the client):
 *  1. Receipts for the topic are withheld; every PRODUCER request for it
 *     is refused (ServiceNotReady), so the client cannot re-create it.
 *  2. 5,000 messages are sent and stored (their receipts withheld).
 *  3. The topic is unloaded: CLOSE_PRODUCER. The client keeps trying to
 *     re-create the producer and keeps being refused.
 *  4. The withheld receipts are released while the producer is still not
 *     re-created.
 *  5. Every future succeeds with the message's real position (the client
 *     still matched the receipts of the closed producer on its connection),
 *     before the producer was re-created; no unknown id.
 *  6. Re-creation is allowed again; the producer becomes READY; the log
 *     check passes. */
Test(fault_unload, receipts_after_close_producer_keep_the_real_ids)
{
    enum { TOTAL = 5000 / FT_SCALE };
    upulsar_producer_t *p = ft_producer(client, "fk", "keepids", 0, NULL);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "keepids"), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_fail_producers(tb, "keepids", 1000000, 6 /* ServiceNotReady */),
                 UPULSAR_OK);
    ft_run_t *run = ft_run_new(p, 1, TOTAL, 0);
    ft_run_start(run);
    ft_run_join(run);
    upulsar_producer_flush(p, 0);
    ft_stored_t s = {tb, "keepids", TOTAL};
    ft_wait_for(ft_stored_at_least, &s);
    upulsar_tb_topic_stats_t st;
    upulsar_tb_topic_stats(tb, "keepids", &st);
    cr_assert_eq(st.messages, TOTAL);
    cr_assert_eq(ft_resolved(run), 0);
    cr_assert_eq(upulsar_tb_unload_topic(tb, "keepids"), 1);
    cr_assert(ft_wait_for(producer_backing_off, p), "no refused re-creation");
    cr_assert_eq(upulsar_tb_release_receipts(tb, "keepids"), UPULSAR_OK);
    cr_assert(ft_wait_for(all_resolved, run), "receipts after CLOSE_PRODUCER were dropped");
    upulsar_producer_info_t pi;
    size_t n = 0;
    upulsar_producer_list(p, &pi, 1, &n);
    cr_assert_neq(pi.state, UPULSAR_STATE_READY, "re-created before the check");
    cr_assert_eq(upulsar_tb_fail_producers(tb, "keepids", 0, 0), UPULSAR_OK);
    cr_assert(ft_wait_for(ft_all_ready, p));
    cr_assert_eq(ft_collect(run), 0);
    ft_assert_cbs_done(run);
    ft_check_opts_t o = {.topic = "keepids", .partitions = 0};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)TOTAL);
    cr_assert_eq(res.unknown_ids, 0);
    ft_run_free(run);
}
