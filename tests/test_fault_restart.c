/* test_fault_restart.c -- the broker restarts on the same port mid-stream.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * Scenario:
 *  1. A broker with a 4-partition topic; one producer handle over it.
 *  2. 2 threads send 40,000 messages (every second one keyed), each with a
 *     future and a callback.
 *  3. The senders may send a quarter of the messages; once an eighth has
 *     resolved, the broker is restarted (upulsar_tb_restart: every
 *     connection closed as in a crash, receipts not yet sent lost, then it
 *     listens again on the same port with its log and de-duplication state)
 *     and the senders may send the next quarter; when another quarter has
 *     resolved, again: three restarts, each before the later messages were
 *     sent.
 *  4. Every future resolves, every one succeeds.
 *  5. The log check: 0 lost, 0 duplicated, consecutive sequence ids per
 *     producer, send order per partition and thread, ids as reported; the
 *     broker counted 3 restarts and every producer was re-created (at least
 *     once: a producer still in backoff from one restart may see the next
 *     one before its re-creation). */
#include "fault_common.h"

enum { THREADS = 2, TOTAL = 40000 / FT_SCALE, PER_THREAD = TOTAL / THREADS, PARTS = 4 };

typedef struct {
    upulsar_tb_t *tb;
    ft_run_t *run;
    _Atomic int done;
    int restarts;
    upulsar_err_t err;
} restarter_t;

static void *restarter(void *a)
{
    restarter_t *r = a;
    uint64_t base = ft_resolved_so_far(), next = TOTAL / 8;
    while (!atomic_load(&r->done) && r->restarts < 3) {
        if (ft_resolved_so_far() - base >= next) {
            upulsar_err_t e = upulsar_tb_restart(r->tb);
            if (e)
                r->err = e;
            r->restarts++;
            next += TOTAL / 4;
            atomic_store(&r->run->limit, (uint64_t)(r->restarts == 3 ? TOTAL
                                                                     : (r->restarts + 1) * TOTAL / 4));
        } else {
            ft_pause_ms(1);
        }
    }
    return NULL;
}

Test(fault_restart, restarts_mid_stream_lose_and_duplicate_nothing, .timeout = 120)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    const char *kv[] = {"queue.buffer.bytes", "262144", NULL};
    upulsar_conf_t *conf = ft_conf(kv);
    upulsar_producer_t *p;
    cr_assert_eq(upulsar_producer_start(client, "fr", "restarts", PARTS, conf, &p), UPULSAR_OK,
                 "%s", upulsar_last_error());
    upulsar_conf_destroy(conf);
    ft_run_t *run = ft_run_new(p, THREADS, PER_THREAD, 2);
    atomic_store(&run->limit, TOTAL / 4);
    restarter_t rs = {.tb = tb, .run = run};
    pthread_t rt;
    pthread_create(&rt, NULL, restarter, &rs);
    ft_run_start(run);
    ft_run_join(run);
    cr_assert_eq(atomic_load(&run->refused), 0, "%s", upulsar_last_error());
    cr_assert_eq(ft_collect(run), 0, "futures left pending");
    atomic_store(&rs.done, 1);
    pthread_join(rt, NULL);
    cr_assert_eq(rs.err, UPULSAR_OK, "restart failed");
    cr_assert(ft_wait_for(ft_cbs_done, run));
    cr_assert(ft_wait_for(ft_all_ready, p));
    upulsar_producer_info_t pi[PARTS];
    size_t np = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, PARTS, &np), UPULSAR_OK);
    for (size_t i = 0; i < np; i++)
        cr_assert_geq(pi[i].reconnects, 1, "%s never re-created", pi[i].name);
    uint64_t reconnects = ft_reconnects(p);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);

    ft_check_opts_t o = {.topic = "restarts", .partitions = PARTS};
    ft_check_res_t res = ft_check(tb, run, &o);
    cr_log_info("restarts %d, reconnects %llu, ids unknown after dedup %zu", rs.restarts,
                (unsigned long long)reconnects, res.unknown_ids);
    cr_assert_eq(res.ok, (size_t)TOTAL, "failed futures: %zu", res.failed);
    upulsar_tb_stats_t st;
    upulsar_tb_stats(tb, &st);
    cr_assert_eq(st.restarts, 3, "the faults did not happen");
    cr_assert_geq(reconnects, 3);
    ft_run_free(run);
    upulsar_client_destroy(client);
    upulsar_tb_stop(tb);
}
