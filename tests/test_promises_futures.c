/* test_promises_futures.c -- what include/upulsar/upulsar.h promises about
 * futures and callbacks, end to end against the test broker:
 *  - a future released twice is refused (UPULSAR_ERR__INVALID_ARG and one
 *    log line through the client's log callback), and the futures taken
 *    afterwards are distinct objects that each resolve with their own
 *    message's position;
 *  - destroying a client while its producers hold pending messages (in
 *    flight with receipts withheld, waiting in the ring, or held by a
 *    producer whose re-creation is refused) resolves every one of them with
 *    an error and calls each callback exactly once, before the destroy
 *    returns.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

TestSuite(promises_futures, .timeout = 120);

static _Atomic int released_twice_lines;

static void count_log(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)opaque;
    if (level == UPULSAR_LOG_ERR && strstr(line, "upulsar_future_release") &&
        strstr(line, "released"))
        atomic_fetch_add(&released_twice_lines, 1);
}

/* Scenario:
 *  1. A message is sent and acknowledged; its future is released, then
 *     released again: the second release returns INVALID_ARG and logs one
 *     line. The same for a future released twice while still pending.
 *  2. 2,000 messages are then sent from this thread, each future kept: all
 *     2,000 futures are distinct objects (a slot put back twice would make
 *     every later future the same object).
 *  3. Every future succeeds and the log check matches each future's
 *     reported position against the broker's log: each carries its own
 *     message's result. */
Test(promises_futures, a_future_released_twice_is_refused_and_later_futures_stay_distinct)
{
    enum { N = 2000 / FT_SCALE };
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    cr_assert_eq(upulsar_client_set_log_cb(c, count_log, NULL), UPULSAR_OK);
    upulsar_producer_t *first = ft_producer(c, "rt-a", "release-twice-a", 0, NULL);

    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(first, "x", 1, NULL, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_future_release(f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_release(f), UPULSAR_ERR__INVALID_ARG);
    cr_assert(strstr(upulsar_last_error(), "released"), "detail: %s", upulsar_last_error());
    cr_assert_eq(atomic_load(&released_twice_lines), 1);

    /* pending: the broker's receipt is withheld until both releases ran */
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "release-twice-a"), UPULSAR_OK);
    cr_assert_eq(upulsar_send(first, "y", 1, NULL, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_release(f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_release(f), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(atomic_load(&released_twice_lines), 2);
    cr_assert_eq(upulsar_tb_release_receipts(tb, "release-twice-a"), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_flush(first, FT_WAIT_MS), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(first, 10000), UPULSAR_OK);

    upulsar_producer_t *p = ft_producer(c, "rt-b", "release-twice-b", 0, NULL);
    ft_run_t *run = ft_run_new(p, 1, N, 0);
    ft_send_range(run, 0, N, 1);
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            cr_assert_neq(ft_msg(run, 0, i)->f, ft_msg(run, 0, j)->f,
                          "messages %d and %d got the same future", i, j);
    cr_assert_eq(ft_collect(run), 0);
    cr_assert(ft_wait_for(ft_cbs_done, run));
    ft_check_opts_t o = {.topic = "release-twice-b"};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)N);
    cr_assert_eq(res.stored, (size_t)N);
    cr_assert_eq(atomic_load(&released_twice_lines), 2, "no other misuse was logged");
    ft_run_free(run);
    ft_stop_client_and_broker(tb, c);
}

/* Is some producer of @p p re-created at least once and not READY now? */
static int backing_off(void *a)
{
    upulsar_producer_t *p = a;
    upulsar_producer_info_t pi;
    size_t n = 0;
    if (upulsar_producer_list(p, &pi, 1, &n) != UPULSAR_OK || n != 1)
        return 0;
    return pi.reconnects >= 1 && pi.state != UPULSAR_STATE_READY;
}

/* Scenario:
 *  1. A client (operation.timeout.ms = 2000, the bound of destroy's flush
 *     per producer) with two producers, send.timeout.ms = 0 (nothing
 *     expires on its own):
 *     - "destroy-held", 2 partitions, max.inflight.batches = 1, batches of
 *       10: every receipt is withheld, so one batch per partition waits
 *       for its receipt and the rest waits in the rings;
 *     - "destroy-refused": unloaded, and every re-creation refused with
 *       ServiceNotReady, so it backs off with its messages waiting.
 *  2. Two threads send 1,000 messages each to the first, one thread 1,000
 *     to the second, each with a callback; every future is released while
 *     still pending (allowed; its result is dropped).
 *  3. upulsar_client_destroy() without stopping the producers first.
 *  4. When it returns, every accepted message's callback has run exactly
 *     once, with UPULSAR_ERR__CLOSED (none was acknowledged); on the
 *     refused producer, in send order. */
static int receipts_withheld(void *a)
{
    return upulsar_tb_queued_receipts(a) > 0;
}

Test(promises_futures, destroying_the_client_resolves_every_pending_message_once)
{
    enum { N = 1000 / FT_SCALE };
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "destroy-held", 2), UPULSAR_OK);
    const char *ckv[] = {"operation.timeout.ms", "2000", NULL};
    upulsar_client_t *c = ft_client(tb, ckv);
    const char *held_kv[] = {"send.timeout.ms", "0", "max.inflight.batches", "1",
                             "batch.max.messages", "10", NULL};
    upulsar_producer_t *held = ft_producer(c, "dh", "destroy-held", 0, held_kv);
    const char *ref_kv[] = {"send.timeout.ms", "0", NULL};
    upulsar_producer_t *refused = ft_producer(c, "dr", "destroy-refused", 0, ref_kv);

    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_fail_producers(tb, "destroy-refused", 1000000, 6 /* ServiceNotReady */),
                 UPULSAR_OK);
    cr_assert_eq(upulsar_tb_unload_topic(tb, "destroy-refused"), 1);
    cr_assert(ft_wait_for(backing_off, refused), "the refused producer never backed off");

    ft_run_t *a = ft_run_new(held, 2, N, 2);
    ft_run_t *b = ft_run_new(refused, 1, N, 0);
    ft_run_start(a);
    ft_run_start(b);
    ft_run_join(a);
    ft_run_join(b);
    ft_run_t *runs[2] = {a, b};
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < runs[r]->threads * runs[r]->per_thread; k++) {
            ft_msg_t *m = &runs[r]->msgs[k];
            cr_assert_eq(m->send_err, UPULSAR_OK, "run %d message %d: %s", r, k,
                         upulsar_err_name(m->send_err));
            cr_assert_eq(upulsar_future_release(m->f), UPULSAR_OK);
            m->f = NULL;
        }
    /* the broker stores an entry before it queues the entry's receipt:
     * wait for the receipt, not for the entry */
    cr_assert(ft_wait_for(receipts_withheld, tb), "no receipt was withheld");

    upulsar_client_destroy(c);

    for (int r = 0; r < 2; r++) {
        uint64_t last_seq = 0;
        for (int k = 0; k < runs[r]->threads * runs[r]->per_thread; k++) {
            ft_msg_t *m = &runs[r]->msgs[k];
            int calls = atomic_load_explicit(&m->cb_calls, memory_order_acquire);
            cr_assert_eq(calls, 1, "run %d message %d: callback ran %d times by the destroy's end",
                         r, k, calls);
            cr_assert_eq(m->cb_err, UPULSAR_ERR__CLOSED, "run %d message %d: %s", r, k,
                         upulsar_err_name(m->cb_err));
            if (r == 1) {
                cr_assert_gt(m->cb_seq, last_seq, "message %d called back out of order", k);
                last_seq = m->cb_seq;
            }
        }
    }
    upulsar_tb_stop(tb);
    ft_run_free(a);
    ft_run_free(b);
}
