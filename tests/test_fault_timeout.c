/* test_fault_timeout.c -- send.timeout.ms fails exactly the messages that
 * expired, in order, including those still waiting in the ring; later
 * messages succeed once the broker answers again.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(fault_timeout, .init = setup, .fini = teardown, .timeout = 60);

/* On @p p (send.timeout.ms 1000), with the receipts of @p topic withheld:
 * send @p n messages from this thread and check every one fails with
 * UPULSAR_ERR__MSG_TIMED_OUT, future and callback, in send order, while
 * the receipts are still withheld; release them and send @p n more, which
 * all succeed. Stops @p p; returns the run (2 x n messages of thread 0)
 * for the log check. */
static ft_run_t *expire_then_succeed(upulsar_producer_t *p, const char *topic, int n)
{
    cr_assert_eq(upulsar_tb_hold_receipts(tb, topic), UPULSAR_OK);
    ft_run_t *run = ft_run_new(p, 1, 2 * n, 0);
    ft_send_range(run, 0, n, 0);
    ft_range_t first = {run, 0, n};
    cr_assert(ft_wait_for(ft_range_resolved, &first), "the messages never expired");
    cr_assert(upulsar_tb_queued_receipts(tb) > 0, "receipts were not withheld");
    for (int i = 0; i < n; i++)
        cr_assert_eq(upulsar_future_poll(ft_msg(run, 0, i)->f, NULL), UPULSAR_ERR__MSG_TIMED_OUT,
                     "message %d", i);
    cr_assert_eq(upulsar_tb_release_receipts(tb, topic), UPULSAR_OK);
    ft_send_range(run, n, 2 * n, 0);
    cr_assert_eq(ft_collect(run), 0);
    ft_assert_cbs_done(run);
    for (int i = 0; i < 2 * n; i++) {
        cr_assert_eq(ft_msg(run, 0, i)->err, i < n ? UPULSAR_ERR__MSG_TIMED_OUT : UPULSAR_OK,
                     "message %d: %s", i, upulsar_err_name(ft_msg(run, 0, i)->err));
        if (i > 0) /* callbacks in send order, failures included */
            cr_assert_gt(ft_msg(run, 0, i)->cb_seq, ft_msg(run, 0, i - 1)->cb_seq, "%d", i);
    }
    cr_assert_eq(ft_stats(p).timed_out, (uint64_t)n);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    return run;
}

/* Scenario:
 *  1. send.timeout.ms = 1000; receipts for the topic are withheld.
 *  2. 2,000 messages are sent; the broker stores them (receipts held).
 *  3. They expire: every one fails with UPULSAR_ERR__MSG_TIMED_OUT, future
 *     and callback, in send order, while the receipts are still withheld.
 *  4. The receipts are released (they arrive late and are ignored), then
 *     2,000 more messages are sent: every one succeeds with its real id.
 *  5. The log check: the 2,000 later messages stored once, and the expired
 *     ones that reached the broker (normally all: their receipts just came
 *     too late) at most once, with consecutive sequence ids. */
Test(fault_timeout, expired_messages_fail_and_later_ones_succeed)
{
    enum { N = 2000 };
    const char *kv[] = {"send.timeout.ms", "1000", NULL};
    upulsar_producer_t *p = ft_producer(client, "to", "expire", 0, kv);
    ft_run_t *run = expire_then_succeed(p, "expire", N);
    ft_check_opts_t o = {.topic = "expire", .failed_may_be_stored = 1};
    ft_check_res_t res = ft_check(tb, run, &o);
    /* every later message once; the expired ones that reached the broker
     * before their time ran out (all of them unless the machine was slow
     * enough to keep some in the ring for a second) at most once */
    cr_assert_geq(res.stored, N);
    cr_assert_leq(res.stored, 2 * N);
    cr_assert_eq(res.unknown_ids, 0);
    ft_run_free(run);
}

/* Scenario (messages that never left the ring):
 *  1. send.timeout.ms = 1000, max.inflight.batches = 1, batch.max.messages
 *     = 100; receipts for the topic are withheld.
 *  2. 1,000 messages are sent: a batch goes out and waits for its receipt;
 *     the others wait in the ring, since no more batches may be in flight.
 *  3. All 1,000 expire: every one fails with UPULSAR_ERR__MSG_TIMED_OUT,
 *     in send order, while the receipts are still withheld.
 *  4. Receipts are released; 1,000 more messages all succeed.
 *  5. The log check: the expired messages that reached the broker and the
 *     1,000 later messages are stored, with consecutive sequence ids
 *     (messages that expired in the ring never got one); some of the
 *     expired ones never reached the broker: they expired in the ring. */
Test(fault_timeout, messages_waiting_in_the_ring_expire_too)
{
    enum { N = 1000 };
    const char *kv[] = {"send.timeout.ms", "1000", "max.inflight.batches", "1",
                        "batch.max.messages", "100", NULL};
    upulsar_producer_t *p = ft_producer(client, "tr", "ringexpire", 0, kv);
    ft_run_t *run = expire_then_succeed(p, "ringexpire", N);
    ft_check_opts_t o = {.topic = "ringexpire", .failed_may_be_stored = 1};
    ft_check_res_t res = ft_check(tb, run, &o);
    /* Had the records in the ring not expired there, each would have left
     * in a batch once the one before it had expired (at most 100 per
     * timeout period: all 1,000 after 10 periods, well within the waits
     * above) and expired only after reaching the broker: every expired
     * message would be in the log. Some are not: they expired in the ring.
     * (How many batches still leave between the first batch's expiry and
     * the ring's depends on the loop's ticks, so it is not bounded here.) */
    int reached = 0;
    for (int i = 0; i < N; i++)
        reached += ft_msg(run, 0, i)->seen;
    cr_assert_lt(reached, N, "all %d expired messages reached the broker: none expired in the ring",
                 reached);
    cr_assert_eq(res.stored, (size_t)reached + N);
    ft_run_free(run);
}

/* Scenario: send.timeout.ms = 1000, one batch in flight at a time
 * (max.inflight.batches = 1), every receipt 900 ms late. Message a goes at
 * once; message b, sent 50 ms later, waits in the ring for a's receipt
 * (900 ms), then goes and would be acknowledged 900 ms later still. Its
 * timeout counts from its send, not from when it left the ring: b fails
 * with MSG_TIMED_OUT (never before send.timeout.ms), and a succeeds. */
Test(fault_timeout, time_spent_in_the_ring_counts_toward_the_send_timeout)
{
    const char *kv[] = {"send.timeout.ms", "1000", "max.inflight.batches", "1", NULL};
    upulsar_producer_t *p = ft_producer(client, "tq", "ringage", 0, kv);
    cr_assert_eq(upulsar_tb_delay_receipts(tb, 900), UPULSAR_OK);
    upulsar_future_t *fa, *fb;
    cr_assert_eq(upulsar_send(p, "a", 1, NULL, &fa), UPULSAR_OK);
    ft_pause_ms(50);
    uint64_t sent_b = ft_now_ms();
    cr_assert_eq(upulsar_send(p, "b", 1, NULL, &fb), UPULSAR_OK);
    upulsar_err_t eb = upulsar_future_wait(fb, 10000, NULL);
    uint64_t took = ft_now_ms() - sent_b;
    cr_assert_eq(eb, UPULSAR_ERR__MSG_TIMED_OUT, "b: %s after %llu ms", upulsar_err_name(eb),
                 (unsigned long long)took);
    cr_assert_geq(took, 1000, "b timed out %llu ms after its send", (unsigned long long)took);
    cr_assert_eq(upulsar_future_wait(fa, 10000, NULL), UPULSAR_OK);
    upulsar_future_release(fa);
    upulsar_future_release(fb);
    cr_assert_eq(upulsar_tb_delay_receipts(tb, 0), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
}
