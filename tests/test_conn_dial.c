/* test_conn_dial.c -- a connection whose hand-over to its I/O loop fails is
 * never used: the attempt that opened it fails with a clear error, the
 * connection is closed, and the next attempt opens a new one.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * A new connection is connected and handshaken on the calling thread, then
 * handed to its loop (an attach task posted to it), which reads it from
 * then on. The post fails only when memory runs out; the test makes it fail
 * on demand with the internal fault point up_fault_dial_post (src/fault.h).
 * Were the connection left in the client's connection pool, every later
 * request on it (lookup, PRODUCER) would be written and never answered, as
 * nothing reads the socket, until operation.timeout.ms, again and again.
 *
 * Scenarios:
 *  1. upulsar_producer_start(): its first connection cannot be handed
 *     over. The start fails with NOMEM naming the broker; the broker sees
 *     that connection closed; a second start succeeds and its message is
 *     stored once, byte for byte.
 *  2. Re-creation after a dropped connection: the watchdog's first new
 *     connection cannot be handed over. Every message sent across the drop
 *     succeeds and is stored exactly once, in send order, byte for byte. */
#include "fault_common.h"

#include "fault.h"

/* A long request timeout: a request stuck on a connection nobody reads
 * fails only after it, so reaching it shows the defect, never a pass. */
static const char *const KV[] = {"operation.timeout.ms", "10000", NULL};

static int no_connection_left(void *a)
{
    upulsar_tb_stats_t st;
    upulsar_tb_stats((upulsar_tb_t *)a, &st);
    return st.connections_active == 0;
}

/* Send @p payload on @p p and wait for its result. */
static upulsar_err_t send_one(upulsar_producer_t *p, const char *payload)
{
    upulsar_future_t *f = NULL;
    upulsar_err_t err = upulsar_send(p, payload, strlen(payload), NULL, &f);
    if (err)
        return err;
    err = upulsar_future_wait(f, FT_WAIT_MS, NULL);
    upulsar_future_release(f);
    return err;
}

/* The log of @p topic is exactly @p want[0..n), in order, byte for byte. */
static void assert_log_is(upulsar_tb_t *tb, const char *topic, const char *const *want, size_t n)
{
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), n, "stored %zu messages, sent %zu",
                 upulsar_tb_snapshot_count(s), n);
    for (size_t i = 0; i < n; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, i);
        cr_assert_eq(m->payload_len, strlen(want[i]), "message %zu: length", i);
        cr_assert_arr_eq(m->payload, want[i], m->payload_len, "message %zu: bytes", i);
    }
    upulsar_tb_snapshot_free(s);
}

Test(conn_dial, start_whose_connection_cannot_reach_its_loop_fails_and_next_start_works)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, KV);
    char port[16];
    snprintf(port, sizeof port, ":%d", upulsar_tb_port(tb));

    atomic_store(&up_fault_dial_post, 1);
    upulsar_producer_t *p = NULL;
    upulsar_err_t err = upulsar_producer_start(client, NULL, "dial-post", 0, NULL, &p);
    cr_assert_eq(atomic_load(&up_fault_dial_post), 0, "the fault point was not reached");
    cr_assert_eq(err, UPULSAR_ERR__NOMEM, "first start: %s (%s)", upulsar_err_name(err),
                 upulsar_last_error());
    cr_assert_null(p);
    char why[256];
    snprintf(why, sizeof why, "%s", upulsar_last_error());
    /* the connection that could not be handed over is closed, not kept */
    cr_assert(ft_wait_for(no_connection_left, tb), "the unused connection is still open");

    err = upulsar_producer_start(client, NULL, "dial-post", 0, NULL, &p);
    cr_assert_eq(err, UPULSAR_OK, "second start: %s (%s)", upulsar_err_name(err),
                 upulsar_last_error());
    const char *msgs[] = {"after-a-failed-hand-over"};
    cr_assert_eq(send_one(p, msgs[0]), UPULSAR_OK, "%s", upulsar_last_error());
    assert_log_is(tb, "dial-post", msgs, 1);
    cr_assert(strstr(why, port), "the first start's error names the broker: %s", why);

    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    ft_stop_client_and_broker(tb, client);
}

Test(conn_dial, recreation_whose_connection_cannot_reach_its_loop_retries_on_a_new_one)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, KV);
    upulsar_producer_t *p = ft_producer(client, "dp", "dial-post-re", 0, NULL);
    const char *msgs[] = {"before-the-drop", "after-the-drop-1", "after-the-drop-2"};
    cr_assert_eq(send_one(p, msgs[0]), UPULSAR_OK, "%s", upulsar_last_error());

    atomic_store(&up_fault_dial_post, 1);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    for (size_t i = 1; i < sizeof msgs / sizeof *msgs; i++)
        cr_assert_eq(send_one(p, msgs[i]), UPULSAR_OK, "message %zu: %s", i,
                     upulsar_last_error());
    cr_assert_eq(atomic_load(&up_fault_dial_post), 0, "the fault point was not reached");
    assert_log_is(tb, "dial-post-re", msgs, sizeof msgs / sizeof *msgs);

    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    ft_stop_client_and_broker(tb, client);
}
