/* test_fault_refused.c -- PRODUCER refused with a retriable error while
 * re-creating: retried with exponential backoff until it succeeds.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * Scenario:
 *  1. backoff.initial.ms = 50; a producer on a non-partitioned topic; a
 *     thread sends 20,000 messages.
 *  2. When a quarter is stored, the next 3 PRODUCER requests for the topic
 *     are refused with ServiceNotReady and the topic is unloaded
 *     (CLOSE_PRODUCER).
 *  3. The client re-creates the producer at once (closed by the broker:
 *     no delay), is refused, waits 50 ms (less up to 10 % jitter), is
 *     refused, waits 100 ms, is refused, waits 200 ms, and succeeds: exactly
 *     4 attempts; the messages sent meanwhile wait and are then sent.
 *  4. The 4th attempt cannot come before the backoff allows: at least
 *     0.9 x (50 + 100 + 200) ms after the unload (a lower bound, which no
 *     scheduling delay can break).
 *  5. Every future succeeds; the log check passes. */
#include "fault_common.h"

enum { TOTAL = 20000 / FT_SCALE };

Test(fault_refused, refused_recreation_is_retried_with_backoff, .timeout = 60)
{
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"backoff.initial.ms", "50", "backoff.max.ms", "10000", NULL};
    upulsar_client_t *client = ft_client(tb, ckv);
    const char *kv[] = {"queue.buffer.bytes", "262144", NULL};
    upulsar_producer_t *p = ft_producer(client, "rf", "refused", 0, kv);
    ft_run_t *run = ft_run_new(p, 1, TOTAL, 0);
    ft_run_allow(run, TOTAL / 2); /* the rest once the fault is in place */
    ft_run_start(run);
    ft_stored_t s = {tb, "refused", TOTAL / 4};
    cr_assert(ft_wait_for(ft_stored_at_least, &s));
    cr_assert_eq(upulsar_tb_fail_producers(tb, "refused", 3, 6 /* ServiceNotReady */), UPULSAR_OK);
    uint64_t t0 = ft_now_ms();
    cr_assert_eq(upulsar_tb_unload_topic(tb, "refused"), 1);
    ft_run_allow(run, TOTAL);
    ft_reconnects_wait_t at = {p, 4};
    cr_assert(ft_wait_for(ft_reconnects_at_least, &at));
    uint64_t t4 = ft_now_ms();
    cr_assert(ft_wait_for(ft_all_ready, p));
    ft_run_join(run);
    cr_assert_eq(ft_collect(run), 0);
    cr_assert(ft_wait_for(ft_cbs_done, run));
    cr_assert_eq(ft_reconnects(p), 4, "attempts: %llu", (unsigned long long)ft_reconnects(p));
    cr_assert_geq(t4 - t0, 315, "4th attempt after %llu ms: no backoff between attempts",
                  (unsigned long long)(t4 - t0));
    ft_check_opts_t o = {.topic = "refused"};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)TOTAL);
    ft_run_free(run);
    ft_stop_client_and_broker(tb, client);
}

/* Scenario (the backoff's mandatory stop, as in the official clients):
 *  1. send.timeout.ms = 5000, backoff.initial.ms = 2000, backoff.max.ms =
 *     60000; a producer on a non-partitioned topic.
 *  2. The next PRODUCER request for the topic will be refused
 *     (ServiceNotReady); every connection is dropped; 100 messages are
 *     sent and wait.
 *  3. The first re-creation comes after the initial backoff (1.8-2 s) and
 *     is refused. The next delay would be 4 s, past the messages' 5 s
 *     timeout, so it is shortened, once, to land 4.5 s (the timeout less a
 *     tenth) after the outage began.
 *  4. That attempt succeeds and resends: every message succeeds, none
 *     times out; exactly 2 attempts were made; the log check passes.
 *  (Without the shortened delay the second attempt would come at 5.4-6 s
 *  and every message would fail with MSG_TIMED_OUT.) */
Test(fault_refused, backoff_leaves_a_last_attempt_before_the_send_timeout, .timeout = 60)
{
    enum { N = 100 };
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"backoff.initial.ms", "2000", "backoff.max.ms", "60000", NULL};
    upulsar_client_t *client = ft_client(tb, ckv);
    const char *kv[] = {"send.timeout.ms", "5000", NULL};
    upulsar_producer_t *p = ft_producer(client, "ms", "laststop", 0, kv);
    cr_assert_eq(upulsar_tb_fail_producers(tb, "laststop", 1, 6 /* ServiceNotReady */),
                 UPULSAR_OK);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    ft_run_t *run = ft_run_new(p, 1, N, 0);
    ft_run_start(run);
    ft_run_join(run);
    cr_assert_eq(ft_collect(run), 0);
    cr_assert(ft_wait_for(ft_cbs_done, run));
    for (int i = 0; i < N; i++)
        cr_assert_eq(ft_msg(run, 0, i)->err, UPULSAR_OK, "message %d: %s", i,
                     upulsar_err_name(ft_msg(run, 0, i)->err));
    cr_assert_eq(ft_reconnects(p), 2, "attempts: %llu", (unsigned long long)ft_reconnects(p));
    ft_check_opts_t o = {.topic = "laststop"};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)N);
    ft_run_free(run);
    ft_stop_client_and_broker(tb, client);
}
