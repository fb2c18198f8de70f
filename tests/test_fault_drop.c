/* test_fault_drop.c -- connections dropped again and again during a large
 * send: nothing lost, nothing duplicated, order and ids kept.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * Scenario:
 *  1. A broker with an 8-partition topic and a client with short reconnect
 *     backoff; one producer handle over the 8 partitions.
 *  2. 4 threads send 200,000 messages in total (unkeyed, round robin; every
 *     message with a future and a callback).
 *  3. Meanwhile a fault thread drops every broker connection
 *     (upulsar_tb_drop_connections) each time another 5,000 messages have
 *     resolved (the senders may not run more than two such windows ahead,
 *     so the drops cannot fall behind): each time batches are in flight,
 *     half written, or waiting in the rings (256 KiB each, so the senders
 *     keep meeting back-pressure), and some producers may still be being
 *     re-created; the watchdog re-creates them and resends the pending
 *     batches with their original sequence ids.
 *  4. Every future resolves; every one succeeds.
 *  5. The log check (fault_common.h): 0 lost, 0 duplicated, per producer
 *     consecutive sequence ids, per partition and thread send order, every
 *     future's id equal to the stored message's (or the documented unknown
 *     position for a resend the broker de-duplicated); the reconnects
 *     happened (the producers report them).
 * The 1,000,000-message version: perf/upulsar-soak --faults drop (see there). */
#include "fault_common.h"

enum { THREADS = 4, TOTAL = 200000 / FT_SCALE, PER_THREAD = TOTAL / THREADS, PARTS = 8,
       DROP_EVERY = 5000 / FT_SCALE };

typedef struct {
    upulsar_tb_t *tb;
    upulsar_producer_t *p;
    ft_run_t *run;
    uint64_t base;        /* resolved before the run */
    _Atomic int done;     /* give up (safety: set only after a bounded wait) */
    _Atomic int finished; /* the dropper made every drop */
    int drops, tries;
} dropper_t;

/* Drop k happens once k x DROP_EVERY messages have resolved; the senders
 * may stay at most two windows ahead of the drops. */
static void *dropper(void *a)
{
    dropper_t *d = a;
    uint64_t base = d->base;
    uint64_t k = 1;
    while (!atomic_load(&d->done) && k * DROP_EVERY < TOTAL) {
        if (ft_resolved_so_far() - base >= k * DROP_EVERY) {
            d->tries++;
            int n = upulsar_tb_drop_connections(d->tb, NULL);
            if (n < 0) { /* its threads did not end: the run cannot go on */
                ft_run_stuck(d->run, "drop %d failed: %s", d->tries, upulsar_last_error());
                break;
            }
            if (n > 0)
                d->drops++;
            k++;
            ft_run_allow(d->run, (k + 1) * DROP_EVERY);
        } else {
            ft_pause_ms(1);
        }
    }
    ft_run_allow(d->run, TOTAL);
    atomic_store(&d->finished, 1);
    return NULL;
}

static int dropper_finished(void *a)
{
    return atomic_load(&((dropper_t *)a)->finished);
}

Test(fault_drop, repeated_drops_lose_and_duplicate_nothing, .timeout = 120)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    const char *kv[] = {"queue.buffer.bytes", "262144", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "drops", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "fd", "drops", PARTS, kv);
    ft_run_t *run = ft_run_new(p, THREADS, PER_THREAD, 0);
    dropper_t d = {.tb = tb, .p = p, .run = run, .base = ft_resolved_so_far()};
    ft_run_allow(run, 2 * DROP_EVERY);
    pthread_t dt;
    pthread_create(&dt, NULL, dropper, &d);
    ft_run_start(run);
    ft_run_join(run);
    cr_assert_eq(atomic_load(&run->refused), 0, "%s", upulsar_last_error());
    cr_assert_eq(ft_collect(run), 0, "futures left pending");
    /* the last drop comes after the last window resolved: let the dropper
     * see it (a loaded machine may not have run it yet) */
    ft_wait_for(dropper_finished, &d);
    atomic_store(&d.done, 1);
    pthread_join(dt, NULL);
    ft_assert_cbs_done(run);
    ft_assert_every_producer_recreated(p);
    uint64_t reconnects = ft_reconnects(p);
    ft_stats_t stats = ft_stats(p);

    ft_check_opts_t o = {.topic = "drops", .partitions = PARTS};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_log_info("drops %d, reconnects %llu, ids unknown after dedup %zu", d.drops,
                (unsigned long long)reconnects, res.unknown_ids);
    cr_assert_eq(res.ok, (size_t)TOTAL, "failed futures: %zu", res.failed);
    cr_assert_eq(res.stored, (size_t)TOTAL);
    cr_assert_eq(stats.unknown_ids, res.unknown_ids, "the producers' count of unknown ids");
    cr_assert_gt(stats.resent_batches, 0, "nothing was resent");
    cr_assert_eq(d.tries, TOTAL / DROP_EVERY - 1, "the faults did not happen");
    cr_assert_geq(d.drops, d.tries / 2, "drops found no connection");
    ft_run_free(run);
    ft_stop_client_and_broker(tb, client);
}
