/* fault_common.h -- shared harness of the client-side tests against the
 * test broker (tests/test_fault_*.c, test_e2e_*.c, test_features_*.c): a
 * broker + client pair (also as a suite fixture), producers, sender threads
 * that record every future and callback, and the check of the broker's
 * stored log.
 *
 * Every message carries "<thread>:<index>:" at the start of its payload, so
 * the log can be matched against what was sent. The log check proves, per
 * partition:
 *  - no duplicate: each sent message is stored at most once;
 *  - per producer name, consecutive sequence ids: no gap, no repeat;
 *  - per producer name and sender thread, log order == send order;
 *  - each stored message whose future succeeded has the id the future
 *    reported (partition, ledger, entry, batch index), or the "unknown
 *    position" id of a de-duplicated resend (ledger = entry =
 *    UPULSAR_ID_UNKNOWN, still the right partition and batch index);
 * and over every message: its future and its callback resolved exactly once
 * with the same result; a message whose future succeeded is stored.
 *
 * Helpers report problems through the return value or a counter; assertions
 * run on the test's main thread only. */
#ifndef UPULSAR_FAULT_COMMON_H
#define UPULSAR_FAULT_COMMON_H
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define FT_SCALE 10 /* sanitizers are slow: same shape, fewer messages */
#else
#define FT_SCALE 1
#endif

/* Generous bound for waits on conditions that must come true; a test that
 * runs into it fails (it never decides a pass). */
#define FT_WAIT_MS 60000

static inline uint64_t ft_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void ft_pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Poll @p cond(arg) until it holds or FT_WAIT_MS pass; returns whether it
 * held. */
static inline int ft_wait_for(int (*cond)(void *), void *arg)
{
    uint64_t end = ft_now_ms() + FT_WAIT_MS;
    while (!cond(arg)) {
        if (ft_now_ms() > end)
            return 0;
        ft_pause_ms(2);
    }
    return 1;
}

/* ---- broker and client ------------------------------------------------- */

/* A test broker started with @p o; fails the test if it does not start. */
static inline upulsar_tb_t *ft_broker_of(const upulsar_tb_opts_t *o)
{
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    return tb;
}

static inline upulsar_tb_t *ft_broker(void)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    /* these tests prove exactly once across reconnections, which needs the
     * broker to drop what it stored already: de-duplication on, as a
     * deployment that wants exactly once configures it (Pulsar's default
     * is off; see ft_broker_no_dedup()) */
    o.deduplication = 1;
    return ft_broker_of(&o);
}

/* A broker with Pulsar's defaults (de-duplication off) but a
 * max_message_size of @p max bytes. */
static inline upulsar_tb_t *ft_broker_max(int max)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.max_message_size = max;
    return ft_broker_of(&o);
}

/* Set @p kv (NULL-terminated key, value pairs; NULL: none) on @p conf;
 * fails the test on a refused pair. */
static inline void ft_conf_set_all(upulsar_conf_t *conf, const char *const *kv)
{
    for (size_t i = 0; kv && kv[i]; i += 2) {
        char err[256];
        cr_assert_eq(upulsar_conf_set(conf, kv[i], kv[i + 1], err, sizeof err), UPULSAR_CONF_OK,
                     "%s=%s: %s", kv[i], kv[i + 1], err);
    }
}

/* A conf with @p kv (NULL-terminated key, value pairs) applied. */
static inline upulsar_conf_t *ft_conf(const char *const *kv)
{
    upulsar_conf_t *conf = upulsar_conf_new();
    cr_assert_not_null(conf);
    ft_conf_set_all(conf, kv);
    return conf;
}

/* A client made from ft_conf(@p base), then @p kv1 and @p kv2 (either may
 * be NULL; later pairs override). */
static inline upulsar_client_t *ft_client_of_conf(const char *const *base, const char *const *kv1,
                                                  const char *const *kv2)
{
    upulsar_conf_t *conf = ft_conf(base);
    ft_conf_set_all(conf, kv1);
    ft_conf_set_all(conf, kv2);
    upulsar_client_t *c = NULL;
    cr_assert_eq(upulsar_client_new(conf, &c), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_conf_destroy(conf);
    return c;
}

/* A client of the broker at @p url with short reconnect backoff, plus
 * @p kv1 and then @p kv2 (either may be NULL; later pairs override). */
static inline upulsar_client_t *ft_client_with(const char *url, const char *const *kv1,
                                               const char *const *kv2)
{
    const char *base[] = {"service.url", url, "backoff.initial.ms", "10", "backoff.max.ms",
                          "200", NULL};
    return ft_client_of_conf(base, kv1, kv2);
}

/* A client of @p tb with short reconnect backoff, plus @p kv. */
static inline upulsar_client_t *ft_client(upulsar_tb_t *tb, const char *const *kv)
{
    return ft_client_with(upulsar_tb_url(tb), kv, NULL);
}

/* A client of @p tb with the library's default settings (reconnect
 * backoff included), plus @p kv (may be NULL). */
static inline upulsar_client_t *ft_plain_client(upulsar_tb_t *tb, const char *const *kv)
{
    const char *base[] = {"service.url", upulsar_tb_url(tb), NULL};
    return ft_client_of_conf(base, kv, NULL);
}

/* Suite fixtures: start a broker into *@p tb and a client of it into
 * *@p client, with short reconnect backoff (ft_client()) or the library's
 * defaults (ft_plain_client()), plus @p kv; and destroy both. */
static inline void ft_start_broker_and_client(upulsar_tb_t **tb, upulsar_client_t **client,
                                              const char *const *kv)
{
    *tb = ft_broker();
    *client = ft_client(*tb, kv);
}

static inline void ft_start_broker_and_plain_client(upulsar_tb_t **tb, upulsar_client_t **client,
                                                    const char *const *kv)
{
    *tb = ft_broker();
    *client = ft_plain_client(*tb, kv);
}

static inline void ft_stop_client_and_broker(upulsar_tb_t *tb, upulsar_client_t *client)
{
    upulsar_client_destroy(client);
    upulsar_tb_stop(tb);
}

/* A producer of @p client named @p name (NULL: chosen by the broker) on
 * @p topic over @p partitions (0: as the broker's metadata says), with
 * @p kv set on its conf (NULL: no conf). */
static inline upulsar_producer_t *ft_producer(upulsar_client_t *client, const char *name,
                                              const char *topic, int partitions,
                                              const char *const *kv)
{
    upulsar_conf_t *conf = kv ? ft_conf(kv) : NULL;
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(client, name, topic, partitions, conf, &p), UPULSAR_OK,
                 "%s: %s", topic, upulsar_last_error());
    if (conf)
        upulsar_conf_destroy(conf);
    return p;
}

/* ---- messages and senders ---------------------------------------------- */

typedef struct ft_msg {
    upulsar_future_t *f;
    upulsar_err_t send_err;   /* upulsar_send() result */
    upulsar_err_t err;        /* future result */
    upulsar_msg_id_t id;
    _Atomic int cb_calls;
    upulsar_err_t cb_err;
    upulsar_msg_id_t cb_id;
    uint64_t cb_seq;          /* order in which callbacks ran (process-wide) */
    int seen;                 /* times found in the log */
    int part;                 /* partition it was stored on, -1: not stored */
} ft_msg_t;

typedef struct ft_run {
    upulsar_producer_t *p;
    int threads, per_thread;
    int keyed;                /* 1: keys "k<i % 64>", 0: none; 2: every 2nd message */
    size_t payload_len;       /* >= 24 */
    ft_msg_t *msgs;           /* [threads][per_thread] */
    _Atomic uint64_t sent;    /* accepted by upulsar_send() */
    _Atomic uint64_t refused; /* refused by upulsar_send() with another error than QUEUE_FULL */
    _Atomic int stop;         /* ask senders to stop early */
    /* if non-zero: the senders together send no more than `limit` messages
     * until a fault thread raises it (pacing the stream by the faults) */
    _Atomic uint64_t limit;
    _Atomic uint64_t tickets;
    /* set when a wait of the run (a sender's, a fault thread's) went past
     * FT_WAIT_MS: what it waited for, in stuck_why (the first few such
     * waits, in the order they gave up) */
    _Atomic int stuck;
    _Atomic int stuck_said[4]; /* stuck_why[i] written */
    char stuck_why[4][512];
    pthread_t th[16];
    struct ft_sender {
        struct ft_run *run;
        int t;
    } args[16];
} ft_run_t;

static inline ft_msg_t *ft_msg(ft_run_t *r, int t, int i)
{
    return &r->msgs[(size_t)t * (size_t)r->per_thread + (size_t)i];
}

/* Callbacks run so far, process-wide (also the progress fault threads
 * watch: "every N resolved messages"). */
static _Atomic uint64_t ft_cb_counter;

static inline uint64_t ft_resolved_so_far(void)
{
    return atomic_load_explicit(&ft_cb_counter, memory_order_relaxed);
}

static inline void ft_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    ft_msg_t *m = opaque;
    m->cb_seq = atomic_fetch_add_explicit(&ft_cb_counter, 1, memory_order_relaxed) + 1;
    m->cb_err = err;
    if (id)
        m->cb_id = *id;
    atomic_fetch_add_explicit(&m->cb_calls, 1, memory_order_release);
}

/* A wait of @p r went past FT_WAIT_MS: keep what it waited for (see
 * ft_run_diag()) and stop the senders. Any thread; the test fails in
 * ft_collect() or ft_run_with_fault_thread(), on its own thread. */
static inline void ft_run_stuck(ft_run_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void ft_run_stuck(ft_run_t *r, const char *fmt, ...)
{
    int i = atomic_fetch_add(&r->stuck, 1);
    if (i < 4) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->stuck_why[i], sizeof r->stuck_why[i], fmt, ap);
        va_end(ap);
        atomic_store_explicit(&r->stuck_said[i], 1, memory_order_release);
    }
    atomic_store(&r->stop, 1);
}

/* What a run that does not end is waiting for, into @p out (@p n bytes):
 * the waits that went past FT_WAIT_MS (if any did), how many accepted
 * messages have not been called back and the first of them
 * ("thread:index"), and the state of every producer of the run's handle
 * (pending messages, last acknowledged sequence id: the first unresolved
 * one follows it; re-creations, broker). */
static inline void ft_run_diag(ft_run_t *r, char *out, size_t n)
{
    size_t at = 0;
#define FT_DIAG(...)                                                                   \
    do {                                                                               \
        if (at < n) {                                                                  \
            int w_ = snprintf(out + at, n - at, __VA_ARGS__);                          \
            at += w_ > 0 ? (size_t)w_ : 0;                                             \
        }                                                                              \
    } while (0)
    out[0] = '\0';
    for (int i = 0; i < 4; i++)
        if (atomic_load_explicit(&r->stuck_said[i], memory_order_acquire))
            FT_DIAG("%s; ", r->stuck_why[i]);
    size_t total = (size_t)r->threads * (size_t)r->per_thread, accepted = 0, open = 0;
    for (size_t k = 0; k < total; k++)
        if (r->msgs[k].send_err == UPULSAR_OK) {
            accepted++;
            open += atomic_load_explicit(&r->msgs[k].cb_calls, memory_order_acquire) == 0;
        }
    FT_DIAG("%zu of %zu accepted messages not called back (%llu resolved in the process)",
            open, accepted, (unsigned long long)ft_resolved_so_far());
    int shown = 0;
    for (size_t k = 0; k < total && shown < 8; k++)
        if (r->msgs[k].send_err == UPULSAR_OK &&
            atomic_load_explicit(&r->msgs[k].cb_calls, memory_order_acquire) == 0)
            FT_DIAG("%s%d:%d", shown++ ? " " : ", first: ", (int)(k / (size_t)r->per_thread),
                    (int)(k % (size_t)r->per_thread));
    upulsar_producer_info_t pi[64];
    size_t np = 0;
    if (upulsar_producer_list(r->p, pi, 64, &np) != UPULSAR_OK) {
        FT_DIAG("; producer list: %s", upulsar_last_error());
    } else {
        FT_DIAG("; producers:");
        for (size_t i = 0; i < np && i < 64; i++)
            FT_DIAG(" [%s p%d/%d %s pending %llu last acked seq %lld reconnects %llu "
                    "timed out %llu on %s conn %d]",
                    pi[i].name, pi[i].partition, pi[i].index, upulsar_state_name(pi[i].state),
                    (unsigned long long)pi[i].pending, (long long)pi[i].last_sequence_id,
                    (unsigned long long)pi[i].reconnects, (unsigned long long)pi[i].timed_out,
                    pi[i].broker[0] ? pi[i].broker : "-", pi[i].connection);
    }
#undef FT_DIAG
}

static inline void *ft_sender(void *a)
{
    struct ft_sender *s = a;
    ft_run_t *r = s->run;
    char payload[256];
    char key[16];
    for (int i = 0; i < r->per_thread && !atomic_load(&r->stop); i++) {
        ft_msg_t *m = ft_msg(r, s->t, i);
        memset(payload, 'x', r->payload_len);
        int n = snprintf(payload, sizeof payload, "%d:%d:", s->t, i);
        payload[n] = 'x';
        upulsar_send_opts_t o = {.cb = ft_cb, .opaque = m};
        if (r->keyed == 1 || (r->keyed == 2 && (i & 1))) {
            snprintf(key, sizeof key, "k%d", i % 64);
            o.partition_key = key;
        }
        if (atomic_load(&r->limit)) {
            uint64_t ticket = atomic_fetch_add(&r->tickets, 1);
            uint64_t end = ft_now_ms() + FT_WAIT_MS;
            while (ticket >= atomic_load(&r->limit) && !atomic_load(&r->stop)) {
                if (ft_now_ms() > end) {
                    ft_run_stuck(r, "sender %d: message %d waited %d ms to be let through "
                                 "(ticket %llu, limit %llu: the fault thread never raised it; "
                                 "%llu sent)",
                                 s->t, i, FT_WAIT_MS, (unsigned long long)ticket,
                                 (unsigned long long)atomic_load(&r->limit),
                                 (unsigned long long)atomic_load(&r->sent));
                    return NULL;
                }
                ft_pause_ms(1);
            }
            if (ticket >= atomic_load(&r->limit))
                return NULL; /* stopped while waiting: not sent */
        }
        upulsar_err_t err;
        uint64_t full_since = 0;
        while ((err = upulsar_send(r->p, payload, r->payload_len, &o, &m->f)) ==
               UPULSAR_ERR__QUEUE_FULL) {
            if (atomic_load(&r->stop))
                break;
            uint64_t now = ft_now_ms();
            if (!full_since) {
                full_since = now;
            } else if (now - full_since > FT_WAIT_MS) {
                ft_run_stuck(r, "sender %d: message %d refused with QUEUE_FULL for %d ms "
                             "(nothing made room; %llu sent)",
                             s->t, i, FT_WAIT_MS, (unsigned long long)atomic_load(&r->sent));
                break;
            }
            sched_yield();
        }
        m->send_err = err;
        if (err == UPULSAR_OK)
            atomic_fetch_add(&r->sent, 1);
        else
            atomic_fetch_add(&r->refused, 1);
    }
    return NULL;
}

static inline ft_run_t *ft_run_new(upulsar_producer_t *p, int threads, int per_thread, int keyed)
{
    cr_assert_leq(threads, 16);
    ft_run_t *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    r->p = p;
    r->threads = threads;
    r->per_thread = per_thread;
    r->keyed = keyed;
    r->payload_len = 48;
    r->msgs = calloc((size_t)threads * (size_t)per_thread, sizeof *r->msgs);
    cr_assert_not_null(r->msgs);
    for (size_t i = 0; i < (size_t)threads * (size_t)per_thread; i++) {
        r->msgs[i].send_err = UPULSAR_ERR__PENDING; /* not attempted */
        r->msgs[i].part = -1;
    }
    return r;
}

/* Let the senders send up to @p n messages in total (see ft_run_t.limit;
 * n >= the run's total lifts the limit). */
static inline void ft_run_allow(ft_run_t *r, uint64_t n)
{
    uint64_t total = (uint64_t)r->threads * (uint64_t)r->per_thread;
    atomic_store(&r->limit, n < total ? n : total);
}

static inline void ft_run_start(ft_run_t *r)
{
    for (int t = 0; t < r->threads; t++) {
        r->args[t] = (struct ft_sender){r, t};
        cr_assert_eq(pthread_create(&r->th[t], NULL, ft_sender, &r->args[t]), 0);
    }
}

static inline void ft_run_join(ft_run_t *r)
{
    for (int t = 0; t < r->threads; t++)
        pthread_join(r->th[t], NULL);
}

/* Wait for every accepted message's future (FT_WAIT_MS for them all; not
 * at all once a wait of the run went past FT_WAIT_MS: ft_run_stuck()),
 * record its result and release it. Returns the number of futures that did
 * not resolve in time: 0, since the test fails here otherwise, saying what
 * the run waited for (ft_run_diag()). Test thread only. */
static inline size_t ft_collect(ft_run_t *r)
{
    size_t pending = 0;
    bool stuck = atomic_load(&r->stuck);
    uint64_t end = stuck ? 0 : ft_now_ms() + FT_WAIT_MS;
    for (size_t k = 0; k < (size_t)r->threads * (size_t)r->per_thread; k++) {
        ft_msg_t *m = &r->msgs[k];
        if (m->send_err != UPULSAR_OK)
            continue;
        uint64_t now = ft_now_ms();
        int left = now < end ? (int)(end - now) : 0;
        m->err = upulsar_future_wait(m->f, left, &m->id);
        if (m->err == UPULSAR_ERR__PENDING)
            pending++;
    }
    if (stuck || pending) {
        char diag[4096];
        ft_run_diag(r, diag, sizeof diag);
        cr_assert_fail("the run did not end: %zu futures pending; %s", pending, diag);
    }
    for (size_t k = 0; k < (size_t)r->threads * (size_t)r->per_thread; k++) {
        ft_msg_t *m = &r->msgs[k];
        if (m->send_err != UPULSAR_OK)
            continue;
        upulsar_future_release(m->f);
        m->f = NULL;
    }
    return pending;
}

/* Fail the test unless every accepted message of @p r has been called back
 * (waited for, FT_WAIT_MS at most), saying what is still open
 * (ft_run_diag()). Test thread only. */
static inline void ft_assert_cbs_done(ft_run_t *r);

/* Run the senders of @p r while @p fault(@p arg) runs on a thread of its
 * own; wait for every accepted message's future (none may be left
 * pending, see ft_collect()); then stop the fault thread (*@p done = 1)
 * and join it. A fault thread that waits for the run's progress bounds its
 * wait too and, past FT_WAIT_MS, says what it waited for with
 * ft_run_stuck(): the test then fails with that and ft_run_diag(). */
static inline void ft_run_with_fault_thread(ft_run_t *r, void *(*fault)(void *), void *arg,
                                            _Atomic int *done)
{
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fault, arg), 0);
    ft_run_start(r);
    ft_run_join(r);
    if (atomic_load(&r->stuck)) {
        /* a sender gave up: the fault thread, told to end, may say what it
         * was waiting for before ft_collect() fails the test */
        atomic_store(done, 1);
        pthread_join(th, NULL);
        ft_collect(r);
    }
    size_t pending = ft_collect(r);
    atomic_store(done, 1);
    pthread_join(th, NULL);
    cr_assert_eq(pending, 0, "futures left pending");
    if (atomic_load(&r->stuck)) { /* the fault thread gave up waiting */
        char diag[4096];
        ft_run_diag(r, diag, sizeof diag);
        cr_assert_fail("the fault thread did not end its work: %s", diag);
    }
}

static inline void ft_run_free(ft_run_t *r)
{
    free(r->msgs);
    free(r);
}

/* Wait until every accepted message's callback has run (the futures may be
 * resolved a moment before the callbacks of the same batch). */
static inline int ft_cbs_done(void *a)
{
    ft_run_t *r = a;
    for (size_t k = 0; k < (size_t)r->threads * (size_t)r->per_thread; k++)
        if (r->msgs[k].send_err == UPULSAR_OK &&
            atomic_load_explicit(&r->msgs[k].cb_calls, memory_order_acquire) == 0)
            return 0;
    return 1;
}

static inline void ft_assert_cbs_done(ft_run_t *r)
{
    if (ft_wait_for(ft_cbs_done, r))
        return;
    char diag[4096];
    ft_run_diag(r, diag, sizeof diag);
    cr_assert_fail("callbacks still to run after %d ms: %s", FT_WAIT_MS, diag);
}

/* Send messages [@p from, @p to) of thread 0 of @p r from the calling
 * thread, each with ft_cb and a future, as ft_sender() would. A QUEUE_FULL
 * is retried if @p retry_full; any other refusal fails the test. */
static inline void ft_send_range(ft_run_t *r, int from, int to, int retry_full)
{
    for (int i = from; i < to; i++) {
        ft_msg_t *m = ft_msg(r, 0, i);
        char payload[64];
        memset(payload, 'x', r->payload_len);
        int n = snprintf(payload, sizeof payload, "0:%d:", i);
        payload[n] = 'x';
        upulsar_send_opts_t o = {.cb = ft_cb, .opaque = m};
        upulsar_err_t err;
        while ((err = upulsar_send(r->p, payload, r->payload_len, &o, &m->f)) ==
                   UPULSAR_ERR__QUEUE_FULL &&
               retry_full)
            sched_yield();
        m->send_err = err;
        cr_assert_eq(err, UPULSAR_OK, "message %d: %s", i, upulsar_last_error());
    }
}

/* Send one message ("x", with @p opts, may be NULL) and wait for its
 * receipt, which must be a success; returns its id. */
static inline upulsar_msg_id_t ft_send_ok(upulsar_producer_t *p, const upulsar_send_opts_t *opts)
{
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(p, "x", 1, opts, &f), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_msg_id_t id;
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, &id), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_future_release(f);
    return id;
}

/* Send @p n messages of @p len bytes at @p body to @p p, the future of
 * message i into @p f[i]; each must be accepted. */
static inline void ft_send_n(upulsar_producer_t *p, const void *body, size_t len,
                             upulsar_future_t **f, int n)
{
    for (int i = 0; i < n; i++) {
        upulsar_err_t e = upulsar_send(p, body, len, NULL, &f[i]);
        cr_assert_eq(e, UPULSAR_OK, "message %d: %s (%s)", i, upulsar_err_name(e),
                     upulsar_last_error());
    }
}

/* Messages [from, to) of thread 0 of @p run: ft_range_resolved() says
 * whether every one of them has resolved (polled, not waited for). */
typedef struct {
    ft_run_t *run;
    int from, to;
} ft_range_t;

static inline int ft_range_resolved(void *a)
{
    ft_range_t *r = a;
    for (int i = r->from; i < r->to; i++)
        if (upulsar_future_poll(ft_msg(r->run, 0, i)->f, NULL) == UPULSAR_ERR__PENDING)
            return 0;
    return 1;
}

/* How many accepted messages of @p r have a resolved future (polled, not
 * waited for). */
static inline size_t ft_resolved(ft_run_t *r)
{
    size_t n = 0;
    for (size_t k = 0; k < (size_t)r->threads * (size_t)r->per_thread; k++)
        if (r->msgs[k].send_err == UPULSAR_OK &&
            upulsar_future_poll(r->msgs[k].f, NULL) != UPULSAR_ERR__PENDING)
            n++;
    return n;
}

/* For ft_wait_for(ft_stored_at_least, &s): has the broker stored at least
 * s.n messages, on s.topic or (NULL) on all topics together? */
typedef struct ft_stored {
    upulsar_tb_t *tb;
    const char *topic;
    uint64_t n;
} ft_stored_t;

static inline int ft_stored_at_least(void *a)
{
    ft_stored_t *s = a;
    if (s->topic) {
        upulsar_tb_topic_stats_t st;
        upulsar_tb_topic_stats(s->tb, s->topic, &st);
        return st.messages >= s->n;
    }
    upulsar_tb_stats_t st;
    upulsar_tb_stats(s->tb, &st);
    return st.messages >= s->n;
}

/* The hot-partition scenario of the memory budget (receipts held, fail
 * fast): send @p len bytes of @p buf with @p hot until it is refused, which
 * must happen with QUEUE_FULL before @p max messages; their futures into
 * @p f. Returns how many were accepted. */
static inline int ft_fill_until_refused(upulsar_producer_t *p, const upulsar_send_opts_t *hot,
                                        const char *buf, size_t len, upulsar_future_t **f,
                                        int max)
{
    int n = 0;
    upulsar_err_t e = UPULSAR_OK;
    while (n < max && (e = upulsar_send(p, buf, len, hot, &f[n])) == UPULSAR_OK)
        n++;
    cr_assert_lt(n, max, "the hot partition was never refused");
    cr_assert_eq(e, UPULSAR_ERR__QUEUE_FULL, "%s", upulsar_last_error());
    return n;
}

/* ...then @p count messages with @p cold, each accepted and acknowledged
 * while the hot partition holds its share, and the hot one still refused
 * (its messages unresolved: otherwise the scenario proves nothing). */
static inline void ft_cold_pass_while_hot_refused(upulsar_producer_t *p,
                                                  const upulsar_send_opts_t *cold,
                                                  const upulsar_send_opts_t *hot,
                                                  const char *buf, size_t len, int count)
{
    for (int i = 0; i < count; i++) {
        upulsar_future_t *cf = NULL;
        cr_assert_eq(upulsar_send(p, buf, len, cold, &cf), UPULSAR_OK,
                     "cold message %d refused: %s", i, upulsar_last_error());
        cr_assert_eq(upulsar_future_wait(cf, FT_WAIT_MS, NULL), UPULSAR_OK, "cold message %d", i);
        upulsar_future_release(cf);
    }
    cr_assert_eq(upulsar_send(p, buf, len, hot, NULL), UPULSAR_ERR__QUEUE_FULL,
                 "the hot partition's messages resolved: the test proves nothing");
}

/* ...then every one of the @p n hot futures @p f resolves OK (receipts
 * released by the caller), each released. */
static inline void ft_all_acked(upulsar_future_t **f, int n)
{
    for (int i = 0; i < n; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, NULL), UPULSAR_OK, "message %d", i);
        upulsar_future_release(f[i]);
    }
}

/* The client's memory figure @p name ("budget", "in_use", "peak",
 * "batch_pool_bytes") from @p p's statistics. */
static inline long long ft_mem_figure(upulsar_producer_t *p, const char *name)
{
    char *json = NULL;
    cr_assert_eq(upulsar_producer_stats_json(p, &json), UPULSAR_OK);
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *m = strstr(json, "\"memory\":{");
    cr_assert_not_null(m, "no memory figures: %.200s", json);
    const char *k = strstr(m, key);
    cr_assert_not_null(k, "no %s: %.200s", name, json);
    long long v = strtoll(k + strlen(key), NULL, 10);
    free(json);
    return v;
}

/* For ft_wait_for(): @p p's memory figure @p figure is at most @p at_most. */
typedef struct {
    upulsar_producer_t *p;
    const char *figure;
    long long at_most;
} ft_figure_wait_t;

static inline int ft_figure_at_most(void *a)
{
    ft_figure_wait_t *w = a;
    return ft_mem_figure(w->p, w->figure) <= w->at_most;
}

/* A key that @p p routes to partition @p part, written into @p key ("key-N"
 * for the first such N). */
static inline void ft_key_for(upulsar_producer_t *p, int part, char *key, size_t size)
{
    for (int i = 0; i < 1000000; i++) {
        snprintf(key, size, "key-%d", i);
        if (upulsar_producer_partition_for_key(p, key) == part)
            return;
    }
    cr_assert_fail("no key for partition %d", part);
}

/* Messages stored on @p topic so far. */
static inline uint64_t ft_topic_messages(upulsar_tb_t *tb, const char *topic)
{
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, topic, &st), UPULSAR_OK, "%s", topic);
    return st.messages;
}

/* ---- the log check ------------------------------------------------------- */

typedef struct ft_check_opts {
    const char *topic;  /* base topic */
    int partitions;     /* > 0: "<topic>-partition-<i>"; 0: the topic itself */
    /* a message that failed may still be stored (timeouts of stored
     * messages); otherwise a failed message must not be in the log */
    int failed_may_be_stored;
    /* sequence ids of one producer may skip ids whose messages failed
     * without being stored (never reached the broker) */
    int gaps_of_failed_allowed;
    /* messages whose payload starts with "late:" were sent outside the run
     * (their order and ids are the test's business): only their sequence
     * ids are checked */
    int late_allowed;
    /* batching.type=key_based with a run keyed 1 (keys "k<i % 64>"): the
     * batcher keeps order per key, not across keys, so send order and
     * callback order are checked per thread and key */
    int order_per_key;
} ft_check_opts_t;

typedef struct ft_check_res {
    size_t stored;         /* messages of this run found in the log */
    size_t ok;             /* futures that succeeded */
    size_t failed;         /* futures that failed */
    size_t unknown_ids;    /* successes reported with the de-duplicated id */
    size_t per_error[8];   /* failures counted by ft_err_slot() */
} ft_check_res_t;

#define FT_MAX_NAMES 64
#define FT_KEY_SLOTS 64 /* the keys of a run keyed 1 */

typedef struct {
    char name[128];
    int64_t last_seq;
    int last_idx[16][FT_KEY_SLOTS]; /* [thread][key slot, 0 unless per key] */
    uint64_t last_cb[16][FT_KEY_SLOTS];
} ft_prod_track_t;

/* Check the log against @p r (see the top of this file). Fails the test
 * with a message on the first violation. */
static inline ft_check_res_t ft_check(upulsar_tb_t *tb, ft_run_t *r, const ft_check_opts_t *o)
{
    ft_check_res_t res;
    memset(&res, 0, sizeof res);
    int nparts = o->partitions > 0 ? o->partitions : 1;
    for (int part = 0; part < nparts; part++) {
        char topic[256];
        if (o->partitions > 0)
            snprintf(topic, sizeof topic, "%s-partition-%d", o->topic, part);
        else
            snprintf(topic, sizeof topic, "%s", o->topic);
        upulsar_tb_snapshot_t *s = NULL;
        cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
        cr_assert_eq(upulsar_tb_snapshot_skipped(s), 0, "%s: undecodable entries", topic);
        ft_prod_track_t *tr = calloc(FT_MAX_NAMES, sizeof *tr);
        cr_assert_not_null(tr);
        int ntr = 0;
        for (size_t j = 0; j < upulsar_tb_snapshot_count(s); j++) {
            const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, j);
            int late = o->late_allowed && sm->payload_len >= 5 && !memcmp(sm->payload, "late:", 5);
            int t = -1, i = -1;
            if (late) {
                /* sequence ids only */
                int k = 0;
                while (k < ntr && strcmp(tr[k].name, sm->producer_name))
                    k++;
                cr_assert_lt(k, ntr, "%s: late message first", topic);
                cr_assert_gt((int64_t)sm->sequence_id, tr[k].last_seq);
                if (!o->gaps_of_failed_allowed)
                    cr_assert_eq((int64_t)sm->sequence_id, tr[k].last_seq + 1);
                tr[k].last_seq = (int64_t)sm->sequence_id;
                continue;
            }
            cr_assert_eq(sscanf((const char *)sm->payload, "%d:%d:", &t, &i), 2,
                         "%s: foreign message at %zu", topic, j);
            cr_assert(t >= 0 && t < r->threads && i >= 0 && i < r->per_thread,
                      "%s: message %d:%d out of range", topic, t, i);
            ft_msg_t *m = ft_msg(r, t, i);
            cr_assert_eq(m->seen, 0, "%s: message %d:%d stored twice", topic, t, i);
            m->seen = 1;
            m->part = part;
            res.stored++;
            cr_assert_eq(sm->payload_len, r->payload_len, "%s: %d:%d payload length", topic, t, i);
            cr_assert_eq(m->send_err, UPULSAR_OK, "%s: %d:%d stored though refused", topic, t, i);
            /* per producer: consecutive sequence ids, send order */
            int k = 0;
            while (k < ntr && strcmp(tr[k].name, sm->producer_name))
                k++;
            if (k == ntr) {
                cr_assert_lt(ntr, FT_MAX_NAMES);
                snprintf(tr[k].name, sizeof tr[k].name, "%s", sm->producer_name);
                tr[k].last_seq = -1;
                for (int x = 0; x < 16; x++)
                    for (int y = 0; y < FT_KEY_SLOTS; y++) {
                        tr[k].last_idx[x][y] = -1;
                        tr[k].last_cb[x][y] = 0;
                    }
                ntr++;
                if (!o->gaps_of_failed_allowed)
                    cr_assert_eq(sm->sequence_id, 0, "%s: %s starts at sequence id %llu", topic,
                                 sm->producer_name, (unsigned long long)sm->sequence_id);
            } else if (o->gaps_of_failed_allowed) {
                cr_assert_gt((int64_t)sm->sequence_id, tr[k].last_seq,
                             "%s: %s sequence id %llu after %lld", topic, sm->producer_name,
                             (unsigned long long)sm->sequence_id, (long long)tr[k].last_seq);
            } else {
                cr_assert_eq((int64_t)sm->sequence_id, tr[k].last_seq + 1,
                             "%s: %s sequence id %llu after %lld (gap or repeat)", topic,
                             sm->producer_name, (unsigned long long)sm->sequence_id,
                             (long long)tr[k].last_seq);
            }
            tr[k].last_seq = (int64_t)sm->sequence_id;
            int ks = o->order_per_key ? i % FT_KEY_SLOTS : 0;
            cr_assert_gt(i, tr[k].last_idx[t][ks], "%s: %s thread %d: %d stored after %d", topic,
                         sm->producer_name, t, i, tr[k].last_idx[t][ks]);
            tr[k].last_idx[t][ks] = i;
            /* callbacks of one producer run in its send order */
            cr_assert_gt(m->cb_seq, tr[k].last_cb[t][ks],
                         "%s: %s thread %d: callback of %d ran early", topic, sm->producer_name,
                         t, i);
            tr[k].last_cb[t][ks] = m->cb_seq;
            /* the id its future reported */
            if (m->err == UPULSAR_OK) {
                cr_assert_eq(m->id.partition, o->partitions > 0 ? part : -1,
                             "%d:%d partition", t, i);
                cr_assert_eq(m->id.batch_index, sm->batch_index, "%d:%d batch index", t, i);
                cr_assert_eq(m->id.batch_size, sm->batch_size, "%d:%d batch size", t, i);
                if (m->id.ledger_id == UPULSAR_ID_UNKNOWN) {
                    cr_assert_eq(m->id.entry_id, UPULSAR_ID_UNKNOWN);
                    res.unknown_ids++;
                } else {
                    cr_assert_eq(m->id.ledger_id, sm->ledger_id, "%d:%d ledger", t, i);
                    cr_assert_eq(m->id.entry_id, sm->entry_id, "%d:%d entry", t, i);
                }
            } else {
                cr_assert(o->failed_may_be_stored, "%s: %d:%d stored though its future failed (%s)",
                          topic, t, i, upulsar_err_name(m->err));
            }
        }
        free(tr);
        upulsar_tb_snapshot_free(s);
    }
    /* every future and callback, once, the same way */
    for (int t = 0; t < r->threads; t++)
        for (int i = 0; i < r->per_thread; i++) {
            ft_msg_t *m = ft_msg(r, t, i);
            if (m->send_err != UPULSAR_OK) {
                cr_assert_eq(atomic_load(&m->cb_calls), 0, "%d:%d refused but called back", t, i);
                continue;
            }
            cr_assert_neq(m->err, UPULSAR_ERR__PENDING, "%d:%d future never resolved", t, i);
            cr_assert_eq(atomic_load(&m->cb_calls), 1, "%d:%d callback ran %d times", t, i,
                         atomic_load(&m->cb_calls));
            cr_assert_eq(m->cb_err, m->err, "%d:%d callback %s, future %s", t, i,
                         upulsar_err_name(m->cb_err), upulsar_err_name(m->err));
            if (m->err == UPULSAR_OK) {
                res.ok++;
                cr_assert_eq(memcmp(&m->cb_id, &m->id, sizeof m->id), 0, "%d:%d callback id", t, i);
                cr_assert_eq(m->seen, 1, "%d:%d acknowledged but not stored (lost)", t, i);
            } else {
                res.failed++;
            }
        }
    return res;
}

/* Stop the producer of @p r (every message resolved by then), then check
 * the log against @p r (ft_check()). */
static inline ft_check_res_t ft_stop_and_check(upulsar_tb_t *tb, ft_run_t *r,
                                               const ft_check_opts_t *o)
{
    cr_assert_eq(upulsar_producer_stop(r->p, 10000), UPULSAR_OK);
    return ft_check(tb, r, o);
}

/* Producer list helpers. */
typedef struct ft_stats {
    uint64_t reconnects, resent_batches, unknown_ids, timed_out;
} ft_stats_t;

/* The per-producer counters of upulsar_producer_list(), summed. */
static inline ft_stats_t ft_stats(upulsar_producer_t *p)
{
    upulsar_producer_info_t pi[64];
    size_t n = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, 64, &n), UPULSAR_OK);
    ft_stats_t s = {0, 0, 0, 0};
    for (size_t i = 0; i < n && i < 64; i++) {
        s.reconnects += pi[i].reconnects;
        s.resent_batches += pi[i].resent_batches;
        s.unknown_ids += pi[i].unknown_ids;
        s.timed_out += pi[i].timed_out;
    }
    return s;
}

static inline uint64_t ft_reconnects(upulsar_producer_t *p)
{
    upulsar_producer_info_t pi[64];
    size_t n = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, 64, &n), UPULSAR_OK);
    uint64_t sum = 0;
    for (size_t i = 0; i < n && i < 64; i++)
        sum += pi[i].reconnects;
    return sum;
}

/* For ft_wait_for(ft_reconnects_at_least, &w): have the producers of w.p
 * been re-created (or tried to be) at least w.n times in all? */
typedef struct ft_reconnects_wait {
    upulsar_producer_t *p;
    uint64_t n;
} ft_reconnects_wait_t;

static inline int ft_reconnects_at_least(void *a)
{
    ft_reconnects_wait_t *w = a;
    return ft_reconnects(w->p) >= w->n;
}

static inline upulsar_producer_state_t ft_group_state(upulsar_producer_t *p, int g)
{
    upulsar_group_info_t gi[64];
    size_t n = 0;
    cr_assert_eq(upulsar_producer_groups(p, gi, 64, &n), UPULSAR_OK);
    cr_assert_lt((size_t)g, n);
    return gi[g].state;
}

/* Is every producer of @p p READY? */
static inline int ft_all_ready(void *a)
{
    upulsar_producer_t *p = a;
    upulsar_producer_info_t pi[64];
    size_t n = 0;
    if (upulsar_producer_list(p, pi, 64, &n) != UPULSAR_OK)
        return 0;
    for (size_t i = 0; i < n && i < 64; i++)
        if (pi[i].state != UPULSAR_STATE_READY)
            return 0;
    return 1;
}

/* Every producer of @p a is READY again after at least one re-creation. */
static inline int ft_all_recreated(void *a)
{
    upulsar_producer_t *p = a;
    upulsar_producer_info_t pi[64];
    size_t n = 0;
    if (upulsar_producer_list(p, pi, 64, &n) != UPULSAR_OK || n == 0)
        return 0;
    for (size_t i = 0; i < n && i < 64; i++)
        if (pi[i].state != UPULSAR_STATE_READY || pi[i].reconnects < 1)
            return 0;
    return 1;
}

/* Wait until every producer of @p p was re-created and is READY again (one
 * condition: a producer may still look READY before its client has noticed
 * the dropped connection). */
static inline void ft_assert_every_producer_recreated(upulsar_producer_t *p)
{
    cr_assert(ft_wait_for(ft_all_recreated, p), "not every producer was re-created");
}

/* ---- attempts without clocks --------------------------------------------
 *
 * Tests of backoff count attempts between observable events instead of
 * timing them. A backoff no test outlives makes "no further attempt" a
 * structural fact: with backoff.initial.ms = backoff.max.ms = FT_NEVER_MS
 * (and send.timeout.ms = 0, so no mandatory stop shortens it), a producer
 * whose attempt failed is not tried again while the test runs; one that is
 * tried again anyway ignored its backoff.
 *
 * The observable event that makes "not tried again" mean something is a
 * supervision pass of the client's watchdog: with stats.interval.ms = 1
 * the periodic statistics callback runs on the watchdog thread after each
 * of its passes over the producers (wd_main in src/watchdog.c), so once two
 * callbacks have begun after a moment X, at least one whole pass started
 * after X and had its chance to start an attempt that was due. */

/* A backoff (ms) no test outlives: one hour (the largest backoff.initial.ms). */
#define FT_NEVER_MS "3600000"

/* Watchdog passes to watch before concluding that no attempt follows: a
 * pass that retried at once would show up in the first of them. */
#define FT_PASSES 10

/* Counts the periodic statistics callbacks of one client. */
typedef struct ft_passes {
    _Atomic uint64_t n;
} ft_passes_t;

static inline void ft_count_pass(const char *json, void *opaque)
{
    (void)json;
    atomic_fetch_add(&((ft_passes_t *)opaque)->n, 1);
}

/* Count @p c's watchdog passes into @p w (the client needs
 * stats.interval.ms = 1; see above). */
static inline void ft_passes_watch(upulsar_client_t *c, ft_passes_t *w)
{
    atomic_store(&w->n, 0);
    cr_assert_eq(upulsar_client_set_stats_cb(c, ft_count_pass, w), UPULSAR_OK);
}

typedef struct ft_passes_wait {
    ft_passes_t *w;
    uint64_t until;
} ft_passes_wait_t;

static inline int ft_passes_reached(void *a)
{
    ft_passes_wait_t *pw = a;
    return atomic_load(&pw->w->n) >= pw->until;
}

/* Wait (hang guard only) until @p k + 1 more watchdog passes than when
 * called have begun, so @p k whole passes started after the call. Returns
 * whether they came. */
static inline int ft_passes_wait(ft_passes_t *w, uint64_t k)
{
    ft_passes_wait_t pw = {w, atomic_load(&w->n) + k + 1};
    return ft_wait_for(ft_passes_reached, &pw);
}

/* For ft_wait_for(ft_backing_off_after, &w): is every producer of w.p in
 * BACKOFF after at least w.n attempts in all? */
static inline int ft_backing_off_after(void *a)
{
    ft_reconnects_wait_t *w = a;
    upulsar_producer_info_t pi[64];
    size_t n = 0;
    if (upulsar_producer_list(w->p, pi, 64, &n) != UPULSAR_OK || n == 0)
        return 0;
    uint64_t sum = 0;
    for (size_t i = 0; i < n && i < 64; i++) {
        if (pi[i].state != UPULSAR_STATE_BACKOFF)
            return 0;
        sum += pi[i].reconnects;
    }
    return sum >= w->n;
}

/* The answers @p tb gave to PRODUCER requests for @p topic (see
 * upulsar_tb_producer_answers()) into @p out (room for @p max); returns
 * how many there were (fails the test if more than @p max). */
static inline size_t ft_producer_answers(upulsar_tb_t *tb, const char *topic, int *out,
                                         size_t max)
{
    int n = upulsar_tb_producer_answers(tb, topic, out, max);
    cr_assert_geq(n, 0, "%s", upulsar_last_error());
    cr_assert_leq((size_t)n, max, "%s: %d PRODUCER answers", topic, n);
    return (size_t)n;
}

/* The partition of @p p each key "k<i>" (i < 64, the keys ft_sender uses)
 * is routed to. */
static inline void ft_partitions_of_keys(upulsar_producer_t *p, int part_of[64])
{
    char key[16];
    for (int i = 0; i < 64; i++) {
        snprintf(key, sizeof key, "k%d", i);
        part_of[i] = upulsar_producer_partition_for_key(p, key);
    }
}

/* An address where nothing listens and nothing else can start listening
 * while the test runs: a loopback port bound but never listened on, so a
 * connect() to it is refused. (A port freed by stopping a broker can be
 * taken by another test running in parallel.) Writes "127.0.0.1:port" to
 * @p hostport; returns the socket, to close at the end of the test. */
static inline int ft_dead_address(char *hostport, size_t n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(hostport, n, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    return fd;
}
#endif
