/* test_fault_stop_unwritten.c -- what a stop failed with CLOSED and its
 * connection had not written yet is never written: not stored later, and
 * not counted against memory.limit.bytes after the stop.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * A broker that stops reading with its connection open fills the socket's
 * buffers; the batches framed after that wait in the connection's queue.
 * A stop that gives up on them fails their messages with CLOSED. Were the
 * batches left in the queue, a broker that resumed would store messages
 * the application was told were not (it may send them again: stored
 * twice), and a broker that never resumed would keep their memory counted
 * for as long as the connection lives (keep-alive off here).
 *
 * What the sockets had taken before the stop cannot be called back: the
 * broker may store that much. The oracle bounds the stored messages by
 * what loopback sockets hold, far below what was sent. */
#include "fault_common.h"

enum { MSG = 1024, N = 32768 }; /* 32 MiB: far more than the sockets hold */

static int all_taken_into_batches(void *a)
{
    char *json = NULL;
    cr_assert_eq(upulsar_producer_stats_json(a, &json), UPULSAR_OK);
    const char *s = strstr(json, "\"sent\":");
    cr_assert_not_null(s, "no sent figure: %.200s", json);
    long long sent = strtoll(s + 7, NULL, 10);
    free(json);
    return sent == N;
}

/* Scenario:
 *  1. Two producers on one client and so on one connection: "victim",
 *     stopped below, and "witness", which stays.
 *  2. The broker freezes (stops reading, connection open); 32 MiB of 1 KiB
 *     messages are sent to the victim and taken into batches: the sockets
 *     take a few MiB, the rest waits in the connection's queue (a budget
 *     of 128 MiB, so that the victim's fair share of it holds them all).
 *  3. upulsar_producer_stop(victim, 300): nothing can be acknowledged, so
 *     every message fails with CLOSED.
 *  4. Still frozen, the budget in use (client-wide, read through the
 *     witness) is at most what a send in progress holds (the queue's head,
 *     up to about UP_CONN_SEND_BYTES): not the 32 MiB.
 *  5. The broker resumes; one message of the witness, queued behind
 *     whatever the connection still held, is acknowledged, so everything
 *     ahead of it has been read: the victim's topic holds at most what the
 *     sockets had taken (under half of what was sent), and "in_use" comes
 *     back to 0. */
Test(fault_stop_unwritten, batches_a_stop_failed_are_not_written_later, .timeout = 120)
{
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"keepalive.interval.ms", "0", "memory.limit.bytes", "134217728", NULL};
    upulsar_client_t *client = ft_client(tb, ckv);
    const char *kv[] = {"send.timeout.ms", "60000", "max.inflight.batches", "1000",
                        "block.if.queue.full", "true", NULL};
    upulsar_producer_t *victim = ft_producer(client, "victim", "su-victim", 0, kv);
    upulsar_producer_t *witness = ft_producer(client, "witness", "su-witness", 0, kv);
    cr_assert_eq(upulsar_tb_freeze(tb, 1), UPULSAR_OK);
    static char body[MSG];
    memset(body, 'v', sizeof body);
    static upulsar_future_t *f[N];
    for (int i = 0; i < N; i++) {
        upulsar_err_t e = upulsar_send(victim, body, sizeof body, NULL, &f[i]);
        cr_assert_eq(e, UPULSAR_OK, "message %d: %s (%s)", i, upulsar_err_name(e),
                     upulsar_last_error());
    }
    cr_assert(ft_wait_for(all_taken_into_batches, victim), "messages still in the ring");
    cr_assert_eq(upulsar_producer_stop(victim, 300), UPULSAR_ERR__TIMED_OUT, "%s",
                 upulsar_last_error());
    for (int i = 0; i < N; i++) {
        upulsar_err_t r = upulsar_future_poll(f[i], NULL);
        cr_assert_eq(r, UPULSAR_ERR__CLOSED, "message %d: %s", i, upulsar_err_name(r));
        upulsar_future_release(f[i]);
    }
    long long in_use = ft_mem_figure(witness, "in_use");
    cr_assert_leq(in_use, 8ll << 20,
                  "in_use %lld after the stop: batches whose messages failed with CLOSED are "
                  "still queued on the connection",
                  in_use);
    cr_assert_eq(upulsar_tb_freeze(tb, 0), UPULSAR_OK);
    ft_send_ok(witness, NULL); /* acknowledged: what was ahead of it was read */
    uint64_t stored = ft_topic_messages(tb, "su-victim");
    cr_assert_lt(stored, N / 2,
                 "%llu of %d messages failed with CLOSED were stored after the stop: the "
                 "connection wrote batches it still held",
                 (unsigned long long)stored, N);
    ft_figure_wait_t none = {witness, "in_use", 0};
    cr_assert(ft_wait_for(ft_figure_at_most, &none), "in_use stays %lld",
              ft_mem_figure(witness, "in_use"));
    cr_assert_eq(upulsar_producer_stop(witness, 10000), UPULSAR_OK, "%s", upulsar_last_error());
    ft_stop_client_and_broker(tb, client);
}
