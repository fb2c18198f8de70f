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
    uint64_t base; /* resolved before the run */
    _Atomic int done;
    int restarts;
    upulsar_err_t err;
    char why[1024]; /* its detail */
} restarter_t;

static void *restarter(void *a)
{
    restarter_t *r = a;
    uint64_t base = r->base, next = TOTAL / 8;
    uint64_t seen = ft_resolved_so_far(), since = ft_now_ms();
    while (!atomic_load(&r->done) && r->restarts < 3) {
        uint64_t resolved = ft_resolved_so_far();
        if (resolved != seen) {
            seen = resolved;
            since = ft_now_ms();
        }
        if (resolved - base >= next) {
            upulsar_err_t e = upulsar_tb_restart(r->tb);
            if (e) {
                r->err = e;
                snprintf(r->why, sizeof r->why, "%s", upulsar_last_error());
                ft_run_stuck(r->run, "restart %d failed: %s", r->restarts + 1, r->why);
                break;
            }
            r->restarts++;
            next += TOTAL / 4;
            atomic_store(&r->run->limit, (uint64_t)(r->restarts == 3 ? TOTAL
                                                                     : (r->restarts + 1) * TOTAL / 4));
            since = ft_now_ms();
        } else if (ft_now_ms() - since > FT_WAIT_MS) {
            ft_run_stuck(r->run, "restart %d waits for %llu messages resolved since the run "
                         "began, %llu are, none more for %d ms",
                         r->restarts + 1, (unsigned long long)next,
                         (unsigned long long)(resolved - base), FT_WAIT_MS);
            break;
        } else {
            ft_pause_ms(1);
        }
    }
    if (atomic_load(&r->run->stuck) && r->restarts < 3 && !r->err)
        ft_run_stuck(r->run, "restart %d never came: it waits for %llu messages resolved since "
                     "the run began, %llu are", r->restarts + 1, (unsigned long long)next,
                     (unsigned long long)(ft_resolved_so_far() - base));
    return NULL;
}

Test(fault_restart, restarts_mid_stream_lose_and_duplicate_nothing, .timeout = 120)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    const char *kv[] = {"queue.buffer.bytes", "262144", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "restarts", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "fr", "restarts", PARTS, kv);
    ft_run_t *run = ft_run_new(p, THREADS, PER_THREAD, 2);
    atomic_store(&run->limit, TOTAL / 4);
    /* counted here, before the senders start: the thread may begin only
     * once they have sent (and the broker acknowledged) all they may */
    restarter_t rs = {.tb = tb, .run = run, .base = ft_resolved_so_far()};
    ft_run_with_fault_thread(run, restarter, &rs, &rs.done);
    cr_assert_eq(atomic_load(&run->refused), 0, "%s", upulsar_last_error());
    cr_assert_eq(rs.err, UPULSAR_OK, "restart failed: %s", rs.why);
    ft_assert_cbs_done(run);
    ft_assert_every_producer_recreated(p);
    uint64_t reconnects = ft_reconnects(p);

    ft_check_opts_t o = {.topic = "restarts", .partitions = PARTS};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_log_info("restarts %d, reconnects %llu, ids unknown after dedup %zu", rs.restarts,
                (unsigned long long)reconnects, res.unknown_ids);
    cr_assert_eq(res.ok, (size_t)TOTAL, "failed futures: %zu", res.failed);
    upulsar_tb_stats_t st;
    upulsar_tb_stats(tb, &st);
    cr_assert_eq(st.restarts, 3, "the faults did not happen");
    cr_assert_geq(reconnects, 3);
    ft_run_free(run);
    ft_stop_client_and_broker(tb, client);
}
