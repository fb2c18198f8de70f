/* test_fault_failed_unwritten.c -- what failed (a stop's CLOSED, a
 * timeout) while its connection had not written it yet is never written
 * after that: not stored later, and not counted against memory.limit.bytes
 * after the failure.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * A broker that stops reading with its connection open fills the socket's
 * buffers; the batches framed after that wait in the connection's queue.
 * A stop that gives up on them fails their messages with CLOSED, and
 * send.timeout.ms with MSG_TIMED_OUT. Were the batches left in the queue,
 * a broker that resumed would store messages the application was told
 * were not (it may send them again: stored twice); a broker that never
 * resumed would keep their memory counted for as long as the connection
 * lives (keep-alive off here), and new sends would fill the budget again,
 * time out, and queue more behind the same socket.
 *
 * What the sockets had taken before the failure cannot be called back: the
 * broker may store that much. The oracle bounds the stored messages by
 * what loopback sockets hold, far below what was sent. Outcomes are
 * asserted by the client's own accounting ("memory" "in_use" in the
 * statistics), the futures and the broker's store, never by timing. */
#include "fault.h"
#include "fault_common.h"

enum { MSG = 1024, N = 32768 }; /* 32 MiB: far more than the sockets hold */

/* Messages of @p p taken from its rings into batches ("sent"), over all
 * its producers. */
static long long taken_into_batches(upulsar_producer_t *p)
{
    char *json = NULL;
    cr_assert_eq(upulsar_producer_stats_json(p, &json), UPULSAR_OK);
    long long sent = 0;
    for (const char *s = json; (s = strstr(s, "\"sent\":")); s += 7)
        sent += strtoll(s + 7, NULL, 10);
    free(json);
    return sent;
}

static int all_taken_into_batches(void *a)
{
    return taken_into_batches(a) == N;
}

typedef enum { BY_STOP, BY_TIMEOUT } failure_t;

typedef struct {
    upulsar_future_t **f;
} futs_t;

static int all_resolved(void *a)
{
    futs_t *fs = a;
    for (int i = 0; i < N; i++)
        if (upulsar_future_poll(fs->f[i], NULL) == UPULSAR_ERR__PENDING)
            return 0;
    return 1;
}

/* Scenario:
 *  1. Two producers on one client and so on one connection: "victim",
 *     whose messages fail below, and "witness", which stays.
 *  2. The broker freezes (stops reading, connection open); 32 MiB of 1 KiB
 *     messages are sent to the victim and taken into batches: the sockets
 *     take a few MiB, the rest waits in the connection's queue (a budget
 *     of 128 MiB, so that the victim's fair share of it holds them all).
 *  3. Every message fails: upulsar_producer_stop(victim, 300) (CLOSED), or
 *     send.timeout.ms=300 (MSG_TIMED_OUT).
 *  4. Still frozen, the budget in use (client-wide, read through the
 *     witness) is at most what a send in progress holds (the queue's head,
 *     up to about UP_CONN_SEND_BYTES): not the 32 MiB. After a stop, at
 *     once (its CLOSE_PRODUCER is a write, before which the connection
 *     takes them out); after timeouts, by the end of the loop's tick that
 *     failed them.
 *  5. The broker resumes; one message of the witness, queued behind
 *     whatever the connection still held, is acknowledged, so everything
 *     ahead of it has been read: the victim's topic holds at most what the
 *     sockets had taken (under half of what was sent), and "in_use" comes
 *     back to 0 (nothing counted twice or left over). */
static void failed_while_queued(failure_t how)
{
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"keepalive.interval.ms", "0", "memory.limit.bytes", "134217728", NULL};
    upulsar_client_t *client = ft_client(tb, ckv);
    const char *kv[] = {"send.timeout.ms", how == BY_TIMEOUT ? "300" : "60000",
                        "max.inflight.batches", "1000", "block.if.queue.full", "true", NULL};
    upulsar_producer_t *victim = ft_producer(client, "victim", "fu-victim", 0, kv);
    upulsar_producer_t *witness = ft_producer(client, "witness", "fu-witness", 0, NULL);
    cr_assert_eq(upulsar_tb_freeze(tb, 1), UPULSAR_OK);
    static char body[MSG];
    memset(body, 'v', sizeof body);
    static upulsar_future_t *f[N];
    ft_send_n(victim, body, sizeof body, f, N);
    upulsar_err_t want = UPULSAR_ERR__MSG_TIMED_OUT;
    /* a stop: only what the connection's own writes take out counts (the
     * loop's tick would take the batches out too, a tick later) */
    atomic_store(&up_fault_tick_purge_off, how == BY_STOP);
    if (how == BY_TIMEOUT) {
        futs_t fs = {f};
        cr_assert(ft_wait_for(all_resolved, &fs), "messages still pending");
    } else {
        want = UPULSAR_ERR__CLOSED;
        cr_assert(ft_wait_for(all_taken_into_batches, victim), "messages still in the ring");
        cr_assert_eq(upulsar_producer_stop(victim, 300), UPULSAR_ERR__TIMED_OUT, "%s",
                     upulsar_last_error());
    }
    for (int i = 0; i < N; i++) {
        upulsar_err_t r = upulsar_future_poll(f[i], NULL);
        cr_assert_eq(r, want, "message %d: %s", i, upulsar_err_name(r));
        upulsar_future_release(f[i]);
    }
    ft_figure_wait_t little = {witness, "in_use", 8ll << 20};
    if (how == BY_TIMEOUT) /* the purge ends the tick that timed them out */
        cr_assert(ft_wait_for(ft_figure_at_most, &little));
    long long in_use = ft_mem_figure(witness, "in_use");
    cr_assert_leq(in_use, little.at_most,
                  "in_use %lld after the failures: batches whose messages failed with %s are "
                  "still queued on the connection",
                  in_use, upulsar_err_name(want));
    cr_assert_eq(upulsar_tb_freeze(tb, 0), UPULSAR_OK);
    ft_send_ok(witness, NULL); /* acknowledged: what was ahead of it was read */
    atomic_store(&up_fault_tick_purge_off, 0);
    uint64_t stored = ft_topic_messages(tb, "fu-victim");
    cr_assert_lt(stored, N / 2,
                 "%llu of %d messages failed with %s were stored after that: the connection "
                 "wrote batches it still held",
                 (unsigned long long)stored, N, upulsar_err_name(want));
    ft_figure_wait_t none = {witness, "in_use", 0};
    cr_assert(ft_wait_for(ft_figure_at_most, &none), "in_use stays %lld",
              ft_mem_figure(witness, "in_use"));
    if (how == BY_TIMEOUT)
        cr_assert_eq(upulsar_producer_stop(victim, 10000), UPULSAR_OK, "%s",
                     upulsar_last_error());
    cr_assert_eq(upulsar_producer_stop(witness, 10000), UPULSAR_OK, "%s", upulsar_last_error());
    ft_stop_client_and_broker(tb, client);
}

Test(fault_failed_unwritten, batches_a_stop_failed_are_not_written_later, .timeout = 120)
{
    failed_while_queued(BY_STOP);
}

/* send.timeout.ms: the failed batches are taken out at the end of the tick
 * that failed them. */
Test(fault_failed_unwritten, batches_that_timed_out_are_not_written_later, .timeout = 120)
{
    failed_while_queued(BY_TIMEOUT);
}

/* ---- the window between failing and taking out ---------------------------- */

static upulsar_tb_t *win_tb;
static _Atomic int win_resumed, win_slept;

/* partition 0's messages (loop 0): the first CLOSED resumes the broker, so
 * from then on loop 0's connection writes whatever it still holds */
static void on_closed_resume(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)id;
    (void)opaque;
    if (err == UPULSAR_ERR__CLOSED && !atomic_exchange(&win_resumed, 1))
        upulsar_tb_freeze(win_tb, 0); /* checked by its effect: the test reads what was stored */
}

/* partition 1's message (loop 1): its CLOSED callback takes a while, so
 * the stop's pass over loop 1 does too, and loop 0 runs meanwhile */
static void on_closed_linger(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)id;
    (void)opaque;
    if (err == UPULSAR_ERR__CLOSED && !atomic_exchange(&win_slept, 1))
        ft_pause_ms(500);
}

/* Scenario (two io threads; partition i of the victim on loop i, and the
 * witness, not partitioned, on loop 0 and its connection):
 *  1. The broker freezes; 32 MiB go to partition 0 of the victim and one
 *     message to partition 1 (its receipt held).
 *  2. The stop fails the messages loop by loop. Loop 0's first CLOSED
 *     callback resumes the broker; loop 1's callback lingers 500 ms.
 *  3. Had loop 0 taken its batches out of the queue only later (after
 *     every loop's failures), it would have written them to the reading
 *     broker meanwhile. Once the witness's message is acknowledged (queued
 *     behind all of that), partition 0 holds under half of what was sent. */
Test(fault_failed_unwritten, nothing_failed_is_written_while_other_loops_are_failing_theirs,
     .timeout = 120)
{
    win_tb = ft_broker();
    const char *ckv[] = {"keepalive.interval.ms", "0", "memory.limit.bytes", "268435456",
                         "io.threads", "2", NULL};
    upulsar_client_t *client = ft_client(win_tb, ckv);
    cr_assert_eq(upulsar_tb_set_partitions(win_tb, "fu-window", 2), UPULSAR_OK);
    const char *kv[] = {"send.timeout.ms", "60000", "max.inflight.batches", "1000",
                        "block.if.queue.full", "true", NULL};
    upulsar_producer_t *victim = ft_producer(client, "victim", "fu-window", 2, kv);
    upulsar_producer_t *witness = ft_producer(client, "witness", "fu-window-witness", 0, kv);
    char k0[32], k1[32];
    ft_key_for(victim, 0, k0, sizeof k0);
    ft_key_for(victim, 1, k1, sizeof k1);
    cr_assert_eq(upulsar_tb_hold_receipts(win_tb, "fu-window-partition-1"), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_freeze(win_tb, 1), UPULSAR_OK);
    static char body[MSG];
    memset(body, 'w', sizeof body);
    upulsar_send_opts_t o0 = {.partition_key = k0, .cb = on_closed_resume};
    upulsar_send_opts_t o1 = {.partition_key = k1, .cb = on_closed_linger};
    cr_assert_eq(upulsar_send(victim, body, sizeof body, &o1, NULL), UPULSAR_OK, "%s",
                 upulsar_last_error());
    for (int i = 0; i < N - 1; i++)
        cr_assert_eq(upulsar_send(victim, body, sizeof body, &o0, NULL), UPULSAR_OK,
                     "message %d: %s", i, upulsar_last_error());
    cr_assert(ft_wait_for(all_taken_into_batches, victim), "messages still in the rings");
    atomic_store(&up_fault_tick_purge_off, 1); /* as in failed_while_queued() */
    cr_assert_eq(upulsar_producer_stop(victim, 300), UPULSAR_ERR__TIMED_OUT, "%s",
                 upulsar_last_error());
    cr_assert(atomic_load(&win_resumed) && atomic_load(&win_slept),
              "the callbacks that open the window did not run");
    ft_send_ok(witness, NULL); /* acknowledged: what was ahead of it was read */
    atomic_store(&up_fault_tick_purge_off, 0);
    uint64_t stored = ft_topic_messages(win_tb, "fu-window-partition-0");
    cr_assert_lt(stored, N / 2,
                 "%llu of %d messages failed with CLOSED were stored after their failure",
                 (unsigned long long)stored, N - 1);
    cr_assert_eq(upulsar_producer_stop(witness, 10000), UPULSAR_OK, "%s", upulsar_last_error());
    ft_stop_client_and_broker(win_tb, client);
}
