/* test_edges_callbacks.c -- what a callback may call (the rules stated in
 * include/upulsar/upulsar.h, "Callbacks"): from a delivery callback (io loop
 * thread) upulsar_send() with block.if.queue.full=true never waits for room
 * (QUEUE_FULL at once, both for a full ring and for max.pending.messages),
 * upulsar_producer_flush() / upulsar_producer_stop() / upulsar_client_destroy()
 * return UPULSAR_ERR__STATE at once and change nothing; the same from the
 * statistics callback (watchdog thread) and the log callback; while a stop
 * is under way a second stop and a flush from another thread are refused.
 * Every message accepted along the way is stored exactly once, in order.
 *
 * A call that never returns is caught by a hang guard (HANG_GUARD_MS): the
 * test fails if the call has not returned by then. That bound decides only
 * "hung", never a pass.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

TestSuite(edges_callbacks, .timeout = 120);

#define HANG_GUARD_MS 20000
#define PAYLOAD_LEN 1024
#define MAX_FROM_CB 4096

static int flag_set(_Atomic int *f, int ms)
{
    uint64_t end = ft_now_ms() + (uint64_t)ms;
    while (!atomic_load_explicit(f, memory_order_acquire)) {
        if (ft_now_ms() > end)
            return 0;
        ft_pause_ms(2);
    }
    return 1;
}

/* "<tag>:<i>:" padded with 'x' to PAYLOAD_LEN */
static void mk_payload(char *buf, const char *tag, int i)
{
    memset(buf, 'x', PAYLOAD_LEN);
    int n = snprintf(buf, PAYLOAD_LEN, "%s:%d:", tag, i);
    buf[n] = 'x';
}

/* The broker's log of @p topic is exactly @p n messages, message k being
 * mk_payload(tags[k], idx[k]). */
static void expect_log(upulsar_tb_t *tb, const char *topic, const char *const *tags,
                       const int *idx, size_t n)
{
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), n, "stored %zu messages, sent %zu",
                 upulsar_tb_snapshot_count(s), n);
    char want[PAYLOAD_LEN];
    for (size_t k = 0; k < n; k++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, k);
        mk_payload(want, tags[k], idx[k]);
        cr_assert_eq(m->payload_len, (size_t)PAYLOAD_LEN, "message %zu", k);
        cr_assert_arr_eq(m->payload, want, PAYLOAD_LEN, "message %zu is not %s:%d", k, tags[k],
                         idx[k]);
    }
    upulsar_tb_snapshot_free(s);
}

/* ---- one action, run by the first delivery callback -------------------- */

typedef enum { ACT_SEND_UNTIL_REFUSED, ACT_FLUSH, ACT_STOP, ACT_DESTROY } act_t;

typedef struct {
    act_t act;
    int timeout_ms;
    upulsar_producer_t *p;
    upulsar_client_t *c;
    _Atomic int fired;
    _Atomic int done; /* the action returned */
    upulsar_err_t trigger_err;
    upulsar_err_t err;
    char detail[512];
    int accepted; /* ACT_SEND_UNTIL_REFUSED: sends accepted */
    upulsar_future_t *futs[MAX_FROM_CB];
} act_ctx_t;

static void act_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)id;
    act_ctx_t *a = opaque;
    if (atomic_exchange(&a->fired, 1))
        return;
    a->trigger_err = err;
    switch (a->act) {
    case ACT_SEND_UNTIL_REFUSED: {
        char payload[PAYLOAD_LEN];
        a->err = UPULSAR_OK;
        while (a->accepted < MAX_FROM_CB) {
            mk_payload(payload, "cb", a->accepted);
            a->err = upulsar_send(a->p, payload, PAYLOAD_LEN, NULL, &a->futs[a->accepted]);
            if (a->err)
                break;
            a->accepted++;
        }
        break;
    }
    case ACT_FLUSH:
        a->err = upulsar_producer_flush(a->p, a->timeout_ms);
        break;
    case ACT_STOP:
        a->err = upulsar_producer_stop(a->p, a->timeout_ms);
        break;
    case ACT_DESTROY:
        a->err = UPULSAR_ERR__PENDING; /* destroy returns nothing */
        upulsar_client_destroy(a->c);
        break;
    }
    snprintf(a->detail, sizeof a->detail, "%s", upulsar_last_error());
    atomic_store_explicit(&a->done, 1, memory_order_release);
}

typedef struct {
    upulsar_tb_t *tb;
    upulsar_client_t *c;
    upulsar_producer_t *p;
    const char *topic;
} env_t;

static env_t env_start(const char *topic, const char *const *producer_kv)
{
    env_t e = {.topic = topic};
    e.tb = ft_broker();
    e.c = ft_client(e.tb, NULL);
    e.p = ft_producer(e.c, "cbp", topic, 0, producer_kv);
    return e;
}

/* Send "trig:0" with act_cb and wait (hang guard) until the action ran in
 * its callback. */
static void run_action(env_t *e, act_ctx_t *a)
{
    a->p = e->p;
    a->c = e->c;
    char payload[PAYLOAD_LEN];
    mk_payload(payload, "trig", 0);
    upulsar_send_opts_t o = {.cb = act_cb, .opaque = a};
    cr_assert_eq(upulsar_send(e->p, payload, PAYLOAD_LEN, &o, NULL), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert(flag_set(&a->done, HANG_GUARD_MS),
              "the call made from the delivery callback has not returned after %d ms: it "
              "hangs the io loop",
              HANG_GUARD_MS);
    cr_assert_eq(a->trigger_err, UPULSAR_OK);
}

/* The producer still works: one more message "after:0" is stored. */
static void send_after(env_t *e)
{
    char payload[PAYLOAD_LEN];
    mk_payload(payload, "after", 0);
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(e->p, payload, PAYLOAD_LEN, NULL, &f), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, NULL), UPULSAR_OK);
    upulsar_future_release(f);
}

static void env_stop(env_t *e)
{
    cr_assert_eq(upulsar_producer_stop(e->p, 10000), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_client_destroy(e->c);
    upulsar_tb_stop(e->tb);
}

/* Sends from the callback until one is refused: the refusal is QUEUE_FULL,
 * at once; every accepted one is stored after the trigger, in order. */
static void send_until_refused(const char *topic, const char *const *kv)
{
    env_t e = env_start(topic, kv);
    act_ctx_t *a = calloc(1, sizeof *a);
    cr_assert_not_null(a);
    a->act = ACT_SEND_UNTIL_REFUSED;
    run_action(&e, a);
    cr_assert_eq(a->err, UPULSAR_ERR__QUEUE_FULL, "got %s: %s", upulsar_err_name(a->err),
                 a->detail);
    cr_assert_not_null(strstr(a->detail, "callback"), "detail: %s", a->detail);
    cr_assert_gt(a->accepted, 0);
    for (int i = 0; i < a->accepted; i++) {
        cr_assert_eq(upulsar_future_wait(a->futs[i], FT_WAIT_MS, NULL), UPULSAR_OK,
                     "message %d sent from the callback", i);
        upulsar_future_release(a->futs[i]);
    }
    int n = a->accepted + 1;
    const char **tags = calloc((size_t)n, sizeof *tags);
    int *idx = calloc((size_t)n, sizeof *idx);
    cr_assert(tags && idx);
    tags[0] = "trig";
    for (int i = 0; i < a->accepted; i++) {
        tags[i + 1] = "cb";
        idx[i + 1] = i;
    }
    expect_log(e.tb, topic, tags, idx, (size_t)n);
    free(tags);
    free(idx);
    free(a);
    env_stop(&e);
}

Test(edges_callbacks, blocking_send_from_a_callback_fails_fast_when_the_ring_is_full)
{
    const char *kv[] = {"block.if.queue.full", "true", "send.timeout.ms", "0",
                        "queue.buffer.bytes", "65536", NULL};
    send_until_refused("cb-ring-full", kv);
}

Test(edges_callbacks, blocking_send_from_a_callback_fails_fast_at_max_pending_messages)
{
    const char *kv[] = {"block.if.queue.full", "true", "send.timeout.ms", "0",
                        "max.pending.messages", "8", NULL};
    send_until_refused("cb-max-pending", kv);
}

/* flush (with and without a timeout), stop and client destroy from a
 * delivery callback: refused at once with a detail naming the cause; the
 * producer and the client carry on. */
static void refused_from_callback(const char *topic, act_t act, int timeout_ms)
{
    env_t e = env_start(topic, NULL);
    act_ctx_t *a = calloc(1, sizeof *a);
    cr_assert_not_null(a);
    a->act = act;
    a->timeout_ms = timeout_ms;
    run_action(&e, a);
    if (act != ACT_DESTROY)
        cr_assert_eq(a->err, UPULSAR_ERR__STATE, "got %s: %s", upulsar_err_name(a->err),
                     a->detail);
    cr_assert_not_null(strstr(a->detail, "callback"), "detail: %s", a->detail);
    send_after(&e);
    static const char *const tags[] = {"trig", "after"};
    static const int idx[] = {0, 0};
    expect_log(e.tb, topic, tags, idx, 2);
    free(a);
    env_stop(&e);
}

Test(edges_callbacks, flush_without_timeout_from_a_callback_is_refused)
{
    refused_from_callback("cb-flush-forever", ACT_FLUSH, -1);
}

Test(edges_callbacks, flush_with_timeout_from_a_callback_is_refused_at_once)
{
    refused_from_callback("cb-flush-2s", ACT_FLUSH, 2000);
}

Test(edges_callbacks, stop_from_a_callback_is_refused_and_the_producer_carries_on)
{
    refused_from_callback("cb-stop", ACT_STOP, 2000);
}

Test(edges_callbacks, client_destroy_from_a_callback_does_nothing)
{
    refused_from_callback("cb-destroy", ACT_DESTROY, 0);
}

/* ---- statistics and log callbacks ---------------------------------------- */

typedef struct {
    upulsar_producer_t *_Atomic p;
    _Atomic int fired, done;
    upulsar_err_t flush_err, stop_err;
    char detail[512];
} lib_cb_ctx_t;

/* Once a producer is published: flush it, then (if refused as it must be)
 * try to stop it. */
static void lib_cb_act(lib_cb_ctx_t *x)
{
    upulsar_producer_t *p = atomic_load(&x->p);
    if (!p || atomic_exchange(&x->fired, 1))
        return;
    x->flush_err = upulsar_producer_flush(p, -1);
    snprintf(x->detail, sizeof x->detail, "%s", upulsar_last_error());
    /* a stop that were not refused would free p under the test's feet */
    x->stop_err = x->flush_err == UPULSAR_ERR__STATE ? upulsar_producer_stop(p, 1000)
                                                      : UPULSAR_ERR__PENDING;
    atomic_store_explicit(&x->done, 1, memory_order_release);
}

static lib_cb_ctx_t stats_ctx;

static void on_stats(const char *json, void *opaque)
{
    (void)json;
    lib_cb_act(opaque);
}

Test(edges_callbacks, flush_and_stop_from_the_statistics_callback_are_refused)
{
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"stats.interval.ms", "20", NULL};
    upulsar_client_t *c = ft_client(tb, ckv);
    cr_assert_eq(upulsar_client_set_stats_cb(c, on_stats, &stats_ctx), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(c, "st", "cb-stats", 0, NULL);
    ft_send_ok(p, NULL);
    atomic_store(&stats_ctx.p, p);
    cr_assert(flag_set(&stats_ctx.done, HANG_GUARD_MS),
              "flush/stop from the statistics callback did not return");
    cr_assert_eq(stats_ctx.flush_err, UPULSAR_ERR__STATE, "flush: %s: %s",
                 upulsar_err_name(stats_ctx.flush_err), stats_ctx.detail);
    cr_assert_eq(stats_ctx.stop_err, UPULSAR_ERR__STATE, "stop: %s",
                 upulsar_err_name(stats_ctx.stop_err));
    cr_assert_not_null(strstr(stats_ctx.detail, "callback"), "detail: %s", stats_ctx.detail);
    ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_client_set_stats_cb(c, NULL, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

static lib_cb_ctx_t log_ctx;

static void on_log(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)level;
    (void)line;
    lib_cb_act(opaque);
}

Test(edges_callbacks, flush_and_stop_from_the_log_callback_are_refused)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(c, "lg", "cb-log", 0, NULL);
    ft_send_ok(p, NULL);
    atomic_store(&log_ctx.p, p);
    cr_assert_eq(upulsar_client_set_log_cb(c, on_log, &log_ctx), UPULSAR_OK);
    /* a dropped connection is logged (io loop), so is the re-creation */
    cr_assert_geq(upulsar_tb_drop_connections(tb, NULL), 1);
    cr_assert(flag_set(&log_ctx.done, HANG_GUARD_MS),
              "flush/stop from the log callback did not return");
    cr_assert_eq(log_ctx.flush_err, UPULSAR_ERR__STATE, "flush: %s: %s",
                 upulsar_err_name(log_ctx.flush_err), log_ctx.detail);
    cr_assert_eq(log_ctx.stop_err, UPULSAR_ERR__STATE, "stop: %s",
                 upulsar_err_name(log_ctx.stop_err));
    ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

/* ---- a second stop while the first one runs ------------------------------ */

typedef struct {
    upulsar_producer_t *p;
    int timeout_ms;
    upulsar_err_t err;
    char detail[512];
    _Atomic int done;
} stop_call_t;

static void *stop_thread(void *arg)
{
    stop_call_t *s = arg;
    s->err = upulsar_producer_stop(s->p, s->timeout_ms);
    snprintf(s->detail, sizeof s->detail, "%s", upulsar_last_error());
    atomic_store_explicit(&s->done, 1, memory_order_release);
    return NULL;
}

Test(edges_callbacks, second_stop_and_flush_during_a_stop_are_refused)
{
    env_t e = env_start("cb-stop-twice", NULL);
    cr_assert_eq(upulsar_tb_hold_receipts(e.tb, NULL), UPULSAR_OK);
    char payload[PAYLOAD_LEN];
    mk_payload(payload, "held", 0);
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(e.p, payload, PAYLOAD_LEN, NULL, &f), UPULSAR_OK);

    /* the first stop waits for the withheld receipt */
    stop_call_t first = {.p = e.p, .timeout_ms = 4 * HANG_GUARD_MS};
    pthread_t th1;
    cr_assert_eq(pthread_create(&th1, NULL, stop_thread, &first), 0);
    /* once it has begun, sends are refused with CLOSED */
    upulsar_err_t se = UPULSAR_OK;
    uint64_t end = ft_now_ms() + HANG_GUARD_MS;
    int late = 0; /* accepted before the stop began: acknowledged by it */
    while (se == UPULSAR_OK && ft_now_ms() < end) {
        mk_payload(payload, "late", late);
        se = upulsar_send(e.p, payload, PAYLOAD_LEN, NULL, NULL);
        if (se == UPULSAR_OK) {
            late++;
            ft_pause_ms(1);
        }
    }
    cr_assert_eq(se, UPULSAR_ERR__CLOSED, "send during stop: %s", upulsar_err_name(se));
    cr_assert_eq(atomic_load(&first.done), 0, "the first stop did not wait for its receipt");

    /* a second stop and a flush from another thread: refused at once */
    stop_call_t second = {.p = e.p, .timeout_ms = 1000};
    pthread_t th2;
    cr_assert_eq(pthread_create(&th2, NULL, stop_thread, &second), 0);
    cr_assert(flag_set(&second.done, HANG_GUARD_MS), "the second stop did not return");
    pthread_join(th2, NULL);
    cr_assert_eq(second.err, UPULSAR_ERR__STATE, "second stop: %s: %s",
                 upulsar_err_name(second.err), second.detail);
    cr_assert_eq(atomic_load(&first.done), 0);
    upulsar_err_t fe = upulsar_producer_flush(e.p, 1000);
    cr_assert_eq(fe, UPULSAR_ERR__CLOSED, "flush during stop: %s", upulsar_err_name(fe));

    /* the first stop completes once the receipts come */
    cr_assert_eq(upulsar_tb_release_receipts(e.tb, NULL), UPULSAR_OK);
    cr_assert(flag_set(&first.done, HANG_GUARD_MS), "the first stop did not return");
    pthread_join(th1, NULL);
    cr_assert_eq(first.err, UPULSAR_OK, "first stop: %s", first.detail);
    cr_assert_eq(upulsar_future_wait(f, 0, NULL), UPULSAR_OK);
    upulsar_future_release(f);
    const char **tags = calloc((size_t)late + 1, sizeof *tags);
    int *idx = calloc((size_t)late + 1, sizeof *idx);
    cr_assert(tags && idx);
    tags[0] = "held";
    for (int i = 0; i < late; i++) {
        tags[i + 1] = "late";
        idx[i + 1] = i;
    }
    expect_log(e.tb, "cb-stop-twice", tags, idx, (size_t)late + 1);
    free(tags);
    free(idx);
    upulsar_client_destroy(e.c);
    upulsar_tb_stop(e.tb);
}
