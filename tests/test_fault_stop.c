/* test_fault_stop.c -- upulsar_producer_stop() during an outage resolves
 * every future and callback within its own timeout, whatever the watchdog
 * is doing: by the time it returns, not later (checked at that moment,
 * and again once the client is gone: no callback ran late).
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

enum { PARTS = 2, N = 5000 / FT_SCALE };

/* What upulsar_producer_stop() promises once it has returned: every
 * accepted message of @p run resolved exactly once, future and callback,
 * with CLOSED (or OK for what was acknowledged before the outage). Nothing
 * is waited for: the state is read once, at the moment stop returned
 * (callbacks still to come, or still running, are a broken promise).
 * Records the results for ft_check(). Returns how many were CLOSED. */
static size_t check_all_closed(ft_run_t *run)
{
    size_t pending = 0, no_cb = 0, first_pending = SIZE_MAX, first_no_cb = SIZE_MAX;
    for (int i = 0; i < run->per_thread; i++) {
        ft_msg_t *m = ft_msg(run, 0, i);
        if (m->send_err != UPULSAR_OK)
            continue;
        if (upulsar_future_poll(m->f, NULL) == UPULSAR_ERR__PENDING && pending++ == 0)
            first_pending = (size_t)i;
        if (atomic_load_explicit(&m->cb_calls, memory_order_acquire) == 0 && no_cb++ == 0)
            first_no_cb = (size_t)i;
    }
    cr_assert_eq(pending, 0, "%zu futures unresolved when stop returned (first: message %zu)",
                 pending, first_pending);
    cr_assert_eq(no_cb, 0, "%zu callbacks not run when stop returned (first: message %zu)", no_cb,
                 first_no_cb);
    size_t closed = 0;
    for (int i = 0; i < run->per_thread; i++) {
        ft_msg_t *m = ft_msg(run, 0, i);
        if (m->send_err != UPULSAR_OK)
            continue;
        upulsar_err_t e = upulsar_future_poll(m->f, NULL);
        cr_assert(e == UPULSAR_OK || e == UPULSAR_ERR__CLOSED, "message %d: %s", i,
                  upulsar_err_name(e));
        m->err = e;
        cr_assert_eq(atomic_load(&m->cb_calls), 1, "message %d: %d callbacks", i,
                     atomic_load(&m->cb_calls));
        cr_assert_eq(m->cb_err, e, "message %d: callback %s, future %s", i,
                     upulsar_err_name(m->cb_err), upulsar_err_name(e));
        if (e == UPULSAR_ERR__CLOSED)
            closed++;
        upulsar_future_release(m->f);
        m->f = NULL;
    }
    return closed;
}

/* After the client is gone (every library thread joined): still exactly
 * one callback per accepted message, none ran after stop returned. */
static void check_no_late_callbacks(ft_run_t *run)
{
    for (int i = 0; i < run->per_thread; i++) {
        ft_msg_t *m = ft_msg(run, 0, i);
        if (m->send_err == UPULSAR_OK)
            cr_assert_eq(atomic_load(&m->cb_calls), 1, "message %d: %d callbacks", i,
                         atomic_load(&m->cb_calls));
    }
}

/* N messages of one thread on @p p, sent from this thread (they queue). */
static ft_run_t *send_n(upulsar_producer_t *p)
{
    ft_run_t *run = ft_run_new(p, 1, N, 0);
    ft_send_range(run, 0, N, 0);
    return run;
}

/* upulsar_producer_stop(p, 200) returns TIMED_OUT, and by then every
 * message of @p run has resolved with CLOSED (check_all_closed()). */
static void stop_closes_every_message(upulsar_producer_t *p, ft_run_t *run)
{
    cr_assert_eq(upulsar_producer_stop(p, 200), UPULSAR_ERR__TIMED_OUT);
    cr_assert_eq(check_all_closed(run), (size_t)N);
}

static int all_backing_off(void *a)
{
    upulsar_producer_info_t pi[PARTS];
    size_t n = 0;
    upulsar_producer_list(a, pi, PARTS, &n);
    for (size_t i = 0; i < n; i++)
        if (pi[i].state == UPULSAR_STATE_READY || pi[i].reconnects == 0)
            return 0;
    return 1;
}

/* Scenario:
 *  1. A producer over 2 partitions; the broker is stopped for good.
 *  2. 5,000 messages are sent: they queue (the producers are in backoff,
 *     reconnects fail).
 *  3. upulsar_producer_stop(p, 200) returns TIMED_OUT, and by then every
 *     future and callback resolved, with UPULSAR_ERR__CLOSED. */
Test(fault_stop, stop_with_the_broker_gone_resolves_everything, .timeout = 60)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(client, "sg", "gone", PARTS, NULL);
    upulsar_tb_stop(tb);
    cr_assert(ft_wait_for(all_backing_off, p));
    ft_run_t *run = send_n(p);
    stop_closes_every_message(p, run);
    upulsar_client_destroy(client);
    check_no_late_callbacks(run);
    ft_run_free(run);
}

typedef struct {
    upulsar_tb_t *tb;
    upulsar_producer_t *p;
} refused_t;

/* Every producer is backing off and the broker has refused at least one
 * reconnect attempt already (the fault is in effect before anything is
 * sent, not left to the timing of the first retry). */
static int refused_and_backing_off(void *a)
{
    refused_t *r = a;
    upulsar_tb_stats_t st;
    upulsar_tb_stats(r->tb, &st);
    return st.connections_refused > 0 && all_backing_off(r->p);
}

/* Scenario:
 *  1. A producer over 2 partitions; the broker resets every new
 *     connection (refuse_connections) and the existing ones are dropped;
 *     the test waits until a reconnect attempt has been refused.
 *  2. 5,000 messages are sent and queue.
 *  3. upulsar_producer_stop(p, 200) returns TIMED_OUT with every future and
 *     callback resolved (CLOSED); the log check: nothing of it reached the
 *     broker. */
Test(fault_stop, stop_while_connections_are_refused_resolves_everything, .timeout = 60)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(client, "sr", "refusing", PARTS, NULL);
    cr_assert_eq(upulsar_tb_refuse_connections(tb, 3600000), UPULSAR_OK);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    refused_t r = {tb, p};
    cr_assert(ft_wait_for(refused_and_backing_off, &r), "the fault did not happen");
    ft_run_t *run = send_n(p);
    stop_closes_every_message(p, run);
    ft_check_opts_t o = {.topic = "refusing", .partitions = PARTS};
    ft_check_res_t res = ft_check(tb, run, &o);
    cr_assert_eq(res.stored, 0);
    cr_assert_eq(res.failed, (size_t)N);
    ft_stop_client_and_broker(tb, client);
    check_no_late_callbacks(run);
    ft_run_free(run);
}

typedef struct {
    upulsar_tb_t *tb;
    upulsar_producer_t *p;
    uint64_t accepted_before;
} stuck_t;

/* The watchdog is inside a reconnect attempt: a producer is CONNECTING and
 * the (hung) broker has accepted a new TCP connection from it. */
static int watchdog_stuck(void *a)
{
    stuck_t *s = a;
    upulsar_tb_stats_t st;
    upulsar_tb_stats(s->tb, &st);
    if (st.connections_accepted <= s->accepted_before)
        return 0;
    upulsar_producer_info_t pi[PARTS];
    size_t n = 0;
    upulsar_producer_list(s->p, pi, PARTS, &n);
    for (size_t i = 0; i < n; i++)
        if (pi[i].state == UPULSAR_STATE_CONNECTING)
            return 1;
    return 0;
}

/* Scenario:
 *  1. connection.timeout.ms and operation.timeout.ms are one hour. A
 *     producer over 2 partitions; the broker hangs (freeze) and its
 *     connections are dropped.
 *  2. 5,000 messages are sent and queue. The watchdog starts a reconnect
 *     attempt: TCP connects (the kernel accepts for the hung broker), then
 *     it waits for CONNECTED, which would take an hour to time out.
 *  3. upulsar_producer_stop(p, 200) returns (TIMED_OUT) while the broker is
 *     still hung, i.e. without waiting for that attempt, and every future
 *     and callback has resolved with CLOSED. (If stop waited for the
 *     attempt, this test would hang until its timeout and fail.)
 *  4. The broker resumes; the client is destroyed cleanly; the log check:
 *     none of the messages reached the broker. */
Test(fault_stop, stop_does_not_wait_for_a_reconnect_attempt, .timeout = 60)
{
    upulsar_tb_t *tb = ft_broker();
    const char *kv[] = {"connection.timeout.ms", "3600000", "operation.timeout.ms", "3600000",
                        NULL};
    upulsar_client_t *client = ft_client(tb, kv);
    upulsar_producer_t *p = ft_producer(client, "sw", "stuck", PARTS, NULL);
    upulsar_tb_stats_t st;
    upulsar_tb_stats(tb, &st);
    stuck_t s = {tb, p, st.connections_accepted};
    cr_assert_eq(upulsar_tb_freeze(tb, 1), UPULSAR_OK);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    ft_run_t *run = send_n(p);
    cr_assert(ft_wait_for(watchdog_stuck, &s), "the watchdog never started an attempt");
    stop_closes_every_message(p, run);
    cr_assert_eq(upulsar_tb_freeze(tb, 0), UPULSAR_OK);
    upulsar_client_destroy(client);
    check_no_late_callbacks(run);
    ft_check_opts_t o = {.topic = "stuck", .partitions = PARTS};
    ft_check_res_t res = ft_check(tb, run, &o);
    cr_assert_eq(res.stored, 0);
    cr_assert_eq(res.failed, (size_t)N);
    ft_run_free(run);
    upulsar_tb_stop(tb);
}

/* Scenario:
 *  1. A producer over 2 partitions; the broker hangs (freeze) with its
 *     connections open (nothing tells the client: keep-alive is 30 s).
 *  2. 5,000 messages are sent: written, never answered.
 *  3. upulsar_producer_stop(p, 200) returns TIMED_OUT while the broker is
 *     still hung, with every future and callback resolved (CLOSED): the
 *     waits for the brokers' answers to CLOSE_PRODUCER get no more than
 *     what is left of the timeout, and come after every producer failed
 *     what it held. (Were they unbounded, this test would hang.)
 *  4. The broker resumes and stores what it had read; the log check: no
 *     duplicate, order kept (messages failed by stop may be stored: they
 *     were on the wire). */
Test(fault_stop, stop_with_a_hung_broker_and_open_connections, .timeout = 60)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(client, "sh", "hung", PARTS, NULL);
    cr_assert_eq(upulsar_tb_freeze(tb, 1), UPULSAR_OK);
    ft_run_t *run = send_n(p);
    stop_closes_every_message(p, run);
    cr_assert_eq(upulsar_tb_freeze(tb, 0), UPULSAR_OK);
    upulsar_client_destroy(client);
    check_no_late_callbacks(run);
    ft_check_opts_t o = {.topic = "hung", .partitions = PARTS, .failed_may_be_stored = 1};
    ft_check_res_t res = ft_check(tb, run, &o);
    cr_assert_eq(res.failed, (size_t)N);
    ft_run_free(run);
    upulsar_tb_stop(tb);
}

static int one_backing_off(void *a)
{
    upulsar_producer_info_t pi[4];
    size_t n = 0;
    upulsar_producer_list(a, pi, 4, &n);
    return n == 1 && pi[0].state == UPULSAR_STATE_BACKOFF;
}

/* Scenario: the connection drops, 10 messages are sent while the producer
 * backs off (300 ms), and the stop (3 s) begins at once. The broker is up:
 * the stop's flush re-creates the producer and delivers them (the handle
 * is supervised until its stop's own flush is over); stop returns OK and
 * each message is stored once, in order. */
Test(fault_stop, stop_right_after_a_drop_flushes_through_the_reconnect, .timeout = 60)
{
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"backoff.initial.ms", "300", NULL};
    upulsar_client_t *c = ft_client(tb, ckv);
    const char *kv[] = {"send.timeout.ms", "0", NULL};
    upulsar_producer_t *p = ft_producer(c, "sd", "stop-drop", 0, kv);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    cr_assert(ft_wait_for(one_backing_off, p));
    enum { M = 10 };
    upulsar_future_t *f[M];
    for (int i = 0; i < M; i++) {
        char body[8];
        int len = snprintf(body, sizeof body, "m%d", i);
        cr_assert_eq(upulsar_send(p, body, (size_t)len, NULL, &f[i]), UPULSAR_OK);
    }
    upulsar_err_t e = upulsar_producer_stop(p, 3000);
    cr_assert_eq(e, UPULSAR_OK, "stop: %s (%s)", upulsar_err_name(e), upulsar_last_error());
    for (int i = 0; i < M; i++) {
        cr_assert_eq(upulsar_future_poll(f[i], NULL), UPULSAR_OK, "message %d", i);
        upulsar_future_release(f[i]);
    }
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "stop-drop", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), M);
    for (int i = 0; i < M; i++) {
        char body[8];
        int len = snprintf(body, sizeof body, "m%d", i);
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        cr_assert_eq(m->payload_len, (size_t)len, "message %d", i);
        cr_assert_arr_eq(m->payload, body, (size_t)len, "message %d", i);
    }
    upulsar_tb_snapshot_free(s);
    ft_stop_client_and_broker(tb, c);
}
