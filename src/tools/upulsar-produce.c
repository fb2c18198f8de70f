/*
 * upulsar-produce -- a command-line Pulsar producer (in the spirit of kcat -P).
 *
 *   echo hello | upulsar-produce -b pulsar://localhost:6650 -t my-topic
 *   upulsar-produce --embedded -t hello <<< "hi"
 *
 * Reads messages, one per line (or separated by -D), from stdin or from
 * files (-f, repeatable), or whole files (-F), sends them through one
 * upulsar producer handle and prints one line per message once its receipt
 * arrived, in input order:
 *
 *   partition:ledger:entry:batch_index
 *
 * (-1 for a non-partitioned topic / an unbatched message / a position the
 * broker did not report). -q prints only the summary, --json prints one JSON
 * object per message (with "firstChunkId" beside "msgId", the last chunk's
 * position, for a message sent in chunks). Every message is resolved
 * (acknowledged or failed) before the program exits. While the input is
 * idle (or --rate paces it) receipts are still served: ids are printed as
 * they arrive, and written at once with --line-buffered or to a terminal.
 *
 * Exit status: 0 every message was acknowledged; 1 a message failed, or
 * connecting / creating the producer failed; 2 bad usage (unknown option,
 * unknown or invalid configuration key, unreadable file); 128+N after
 * signal N, 130 after Ctrl-C (input stops, what was read is still resolved).
 *
 * The parts are listed in produce.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "produce.h"
#include "upulsar/testbroker.h"

/* Futures outstanding before the oldest is waited for. */
#define WINDOW 8192
#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL

/* The exit status of a client (@p client: upulsar_client_new(), which
 * does no I/O) or producer that could not start: the configuration (a
 * value or a combination the library refuses: INVALID_ARG; a topic name
 * Pulsar refuses: INVALID_TOPIC; at client creation also TLS: a
 * certificate or key file that cannot be loaded, and INVALID_URL: a -b
 * that is no service URL) is bad usage, anything
 * else (a broker that cannot be reached, or is not a Pulsar broker) a
 * failure to connect or create. */
static int exit_for(upulsar_err_t err, bool client)
{
    return err == UPULSAR_ERR__INVALID_ARG || err == UPULSAR_ERR__INVALID_TOPIC ||
                   (client && (err == UPULSAR_ERR__TLS || err == UPULSAR_ERR__INVALID_URL))
               ? EXIT_USAGE
               : EXIT_FAIL;
}

_Noreturn void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(PROG ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die(EXIT_FAIL, "out of memory");
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die(EXIT_FAIL, "out of memory");
    return q;
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- signals and wake-ups ----------------------------------------------- */

volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    g_signal = sig;
}

static void set_signals_blocked(bool blocked, sigset_t *old)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &s, old);
}

/* The main thread sleeps in ppoll() on this eventfd while it waits for
 * input or for the pacer; a delivery callback wakes it, but only when it
 * said it is about to sleep (g_sleeping: with --line-buffered), so a busy
 * run costs one atomic exchange per message and no system call. */
static int g_wake_fd = -1;
static atomic_int g_sleeping;

static void on_delivery(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)err;
    (void)id;
    (void)opaque;
    if (atomic_exchange(&g_sleeping, 0)) {
        uint64_t one = 1;
        if (write(g_wake_fd, &one, sizeof one) < 0) {
            /* cannot fail short of a bad descriptor: the counter does not overflow */
        }
    }
}

/* ---- text helpers ------------------------------------------------------- */

/* Replace "%d" by @p index and "%%" by "%" in @p tmpl. Caller frees. */
static char *expand(const char *tmpl, uint64_t index)
{
    char num[24];
    int nl = snprintf(num, sizeof num, "%" PRIu64, index);
    size_t n = 0;
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '%' && p[1] == 'd') {
            n += (size_t)nl;
            p++;
        } else {
            if (p[0] == '%' && p[1] == '%')
                p++;
            n++;
        }
    }
    char *out = xmalloc(n + 1), *o = out;
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '%' && p[1] == 'd') {
            memcpy(o, num, (size_t)nl);
            o += nl;
            p++;
        } else {
            if (p[0] == '%' && p[1] == '%')
                p++;
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

/* ---- messages in flight ------------------------------------------------- */

typedef struct inflight {
    upulsar_future_t *f;
    uint64_t index;
    size_t len;
    /* kept for --json only */
    char *payload;
    char *key;
    char **props; /* expanded values, o->nprops */
} inflight_t;

typedef struct state {
    const opts_t *o;
    upulsar_producer_t *p;
    inflight_t *q; /* FIFO of WINDOW slots */
    size_t head, len;
    tally_t t;
    bool gave_up;         /* timed out: the producer was stopped */
    int64_t next_tick;    /* next progress line (--progress) */
    int64_t next_send;    /* earliest time of the next message (--rate) */
    int64_t interval_ns;  /* 1 s / rate; 0 = no pacing */
} state_t;

static void free_props(const opts_t *o, char **vals)
{
    if (vals) {
        for (size_t k = 0; k < o->nprops; k++)
            free(vals[k]);
        free(vals);
    }
}

static void tick(state_t *st)
{
    if (!st->o->progress)
        return;
    int64_t now = now_ns();
    if (now < st->next_tick)
        return;
    print_progress(&st->t);
    while (st->next_tick <= now)
        st->next_tick += NS_PER_S;
}

/* The result of message @p m: its id printed, or the failure with the
 * library's detail (@p why: partition topic, broker, reason; NULL: the
 * error's general text). */
static void report(state_t *st, inflight_t *m, upulsar_err_t err, const upulsar_msg_id_t *id,
                   const char *why)
{
    const opts_t *o = st->o;
    if (err == UPULSAR_OK) {
        st->t.acked++;
        st->t.bytes += m->len;
        sent_msg_t s = {m->index, m->payload, m->len, m->key, m->props};
        print_id(o, &s, id);
    } else {
        st->t.failed++;
        if (!why)
            why = upulsar_err_str(err);
        fprintf(stderr, PROG ": message %" PRIu64 " failed: %s (%s)\n", m->index,
                upulsar_err_name(err), why);
        if (o->json && !o->quiet)
            print_error_json(m->index, upulsar_err_name(err), why);
    }
    free(m->payload);
    free(m->key);
    free_props(o, m->props);
    memset(m, 0, sizeof *m);
}

/* Stop the producer after a receipt wait timed out: every message still
 * unresolved fails (CLOSED), so every future below resolves at once. */
static void give_up(state_t *st)
{
    fprintf(stderr, PROG ": no receipt within %ld ms; failing what is still in flight\n",
            st->o->timeout_ms);
    upulsar_producer_stop(st->p, 0);
    st->p = NULL;
    st->gave_up = true;
}

/* Milliseconds from @p now until @p at (rounded up), at least 0. */
static int ms_until(int64_t at, int64_t now)
{
    int64_t ms = at > now ? (at - now + NS_PER_MS - 1) / NS_PER_MS : 0;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* Wait for the oldest message; progress lines meanwhile. */
static upulsar_err_t wait_oldest(state_t *st, upulsar_future_t *f, upulsar_msg_id_t *id)
{
    const opts_t *o = st->o;
    int64_t deadline = st->gave_up || o->timeout_ms < 0
                           ? -1
                           : now_ns() + (int64_t)o->timeout_ms * NS_PER_MS;
    for (;;) {
        int64_t now = now_ns();
        int t = deadline < 0 ? -1 : ms_until(deadline, now);
        if (o->progress && !st->gave_up) {
            int tt = ms_until(st->next_tick, now);
            t = t < 0 || tt < t ? tt : t;
        }
        upulsar_err_t err = upulsar_future_wait(f, t, id);
        if (err != UPULSAR_ERR__PENDING)
            return err;
        tick(st);
        if (deadline >= 0 && now_ns() >= deadline) {
            give_up(st);
            return upulsar_future_wait(f, -1, id);
        }
    }
}

/* Resolve the oldest message: wait for it if @p block, else only if it is
 * resolved already. Returns true if one was resolved. */
static bool resolve_oldest(state_t *st, bool block)
{
    if (!st->len)
        return false;
    inflight_t *m = &st->q[st->head];
    upulsar_msg_id_t id;
    upulsar_err_t err;
    if (!block) {
        /* q[head] is set: st->len counts the entries send_one() wrote (the analyzer
         * forgets it once &st.p escapes to upulsar_producer_start()), so m->f is too.
         * NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage) */
        err = upulsar_future_poll(m->f, &id);
        if (err == UPULSAR_ERR__PENDING)
            return false;
    } else {
        /* as above: q[head] is set. NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage) */
        err = wait_oldest(st, m->f, &id);
    }
    /* the detail lives until the future is released */
    report(st, m, err, &id, err ? upulsar_future_error_detail(m->f) : NULL);
    upulsar_future_release(m->f);
    st->head = (st->head + 1) % WINDOW;
    st->len--;
    return true;
}

/* Serve receipts (ids printed as they arrive) and progress lines until
 * @p fd (-1: none) can be read or @p deadline (-1: none) has passed.
 * Returns 1 when @p fd is readable, 0 at the deadline, -1 after a signal. */
static int serve(state_t *st, int fd, int64_t deadline)
{
    for (;;) {
        /* signals are blocked from the check of g_signal until ppoll()
         * unblocks them, so one that arrives in between ends the sleep */
        sigset_t old;
        set_signals_blocked(true, &old);
        /* a receipt wakes this thread only when its id is to be written at
         * once; block-buffered ids wait for the next input or the end */
        atomic_store(&g_sleeping, st->o->line_buffered);
        while (resolve_oldest(st, false))
            ;
        tick(st);
        int64_t now = now_ns();
        int64_t until = deadline;
        if (st->o->progress && (until < 0 || st->next_tick < until))
            until = st->next_tick;
        if (g_signal || (deadline >= 0 && now >= deadline)) {
            atomic_store(&g_sleeping, 0);
            set_signals_blocked(false, NULL);
            return g_signal ? -1 : 0;
        }
        struct timespec ts = {0, 0}, *tsp = NULL;
        if (until >= 0) {
            int64_t d = until > now ? until - now : 0;
            ts.tv_sec = (time_t)(d / NS_PER_S);
            ts.tv_nsec = (long)(d % NS_PER_S);
            tsp = &ts;
        }
        struct pollfd pf[2] = {{.fd = g_wake_fd, .events = POLLIN},
                               {.fd = fd, .events = POLLIN}};
        int n = ppoll(pf, fd >= 0 ? 2 : 1, tsp, &old);
        int saved = errno;
        atomic_store(&g_sleeping, 0);
        set_signals_blocked(false, NULL);
        if (n < 0) {
            if (saved == EINTR)
                continue;
            die(EXIT_FAIL, "poll: %s", strerror(saved));
        }
        if (pf[0].revents & POLLIN) {
            uint64_t v;
            if (read(g_wake_fd, &v, sizeof v) < 0) {
                /* an eventfd with a non-zero count reads; nothing to do otherwise */
            }
        }
        if (fd >= 0 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            while (resolve_oldest(st, false))
                ;
            return 1;
        }
    }
}

static bool wait_readable(void *ctx, int fd)
{
    return serve(ctx, fd, -1) > 0;
}

/* --rate: sleep (serving receipts) until the next message's time. At most
 * one interval of delay is made up afterwards, so a stalled input does
 * not turn into a burst. False after a signal. */
static bool pace(state_t *st)
{
    if (!st->interval_ns)
        return true;
    if (st->next_send > now_ns() && serve(st, -1, st->next_send) < 0)
        return false;
    int64_t now = now_ns();
    if (st->next_send < now - st->interval_ns)
        st->next_send = now;
    st->next_send += st->interval_ns;
    return true;
}

/* Send one message. Returns false when nothing more can be sent. */
static bool send_one(state_t *st, uint64_t index, const char *payload, size_t len,
                     const char *key)
{
    const opts_t *o = st->o;
    while (resolve_oldest(st, false))
        ;
    tick(st);
    if (st->len == WINDOW)
        resolve_oldest(st, true);
    if (st->gave_up)
        return false;

    inflight_t *m = &st->q[(st->head + st->len) % WINDOW];
    memset(m, 0, sizeof *m);
    m->index = index;
    char *key_owned = NULL;
    if (o->key)
        key_owned = expand(o->key, index);
    else if (key)
        key_owned = xstrndup(key, strlen(key));
    upulsar_property_t *props = NULL;
    char **vals = NULL;
    if (o->nprops) {
        props = xmalloc(o->nprops * sizeof *props);
        vals = xmalloc(o->nprops * sizeof *vals);
        for (size_t k = 0; k < o->nprops; k++) {
            vals[k] = expand(o->prop_values[k], index);
            props[k] = (upulsar_property_t){o->prop_names[k], vals[k]};
        }
    }
    upulsar_send_opts_t so = {.partition_key = key_owned,
                              .properties = props,
                              .properties_cnt = o->nprops,
                              .cb = on_delivery};
    upulsar_err_t err;
    for (;;) {
        err = upulsar_send(st->p, payload, len, &so, &m->f);
        /* still full after waiting send.timeout.ms: make room if we can */
        if (err != UPULSAR_ERR__QUEUE_FULL || !st->len)
            break;
        resolve_oldest(st, true);
        if (st->gave_up) {
            err = UPULSAR_ERR__CLOSED;
            break;
        }
        m = &st->q[(st->head + st->len) % WINDOW];
        memset(m, 0, sizeof *m);
        m->index = index;
    }
    free(props);
    if (err != UPULSAR_OK) {
        st->t.failed++;
        fprintf(stderr, PROG ": message %" PRIu64 " not sent: %s: %s\n", index,
                upulsar_err_name(err), upulsar_last_error());
        if (o->json && !o->quiet)
            print_error_json(index, upulsar_err_name(err), upulsar_last_error());
        free(key_owned);
        free_props(o, vals);
        /* a closed producer takes nothing more; other errors concern
         * this message (too large) or one partition */
        return err != UPULSAR_ERR__CLOSED;
    }
    st->t.sent++;
    m->len = len;
    if (o->json) {
        m->payload = xstrndup(payload, len);
        m->key = key_owned;
        m->props = vals;
    } else {
        free(key_owned);
        free_props(o, vals);
    }
    st->len++;
    return true;
}

/* ---- the input loops ---------------------------------------------------- */

/* A message that cannot be sent as given (--base64 it is not): counted
 * as failed, reported like a send that failed. */
static void refuse(state_t *st, uint64_t index, const char *name, const char *why)
{
    st->t.failed++;
    fprintf(stderr, PROG ": message %" PRIu64 " not sent: %s: %s\n", index, name, why);
    if (st->o->json && !st->o->quiet)
        print_error_json(index, name, why);
}

/* Send every input record; false if reading failed. */
static bool send_input(state_t *st, input_t *in)
{
    const opts_t *o = st->o;
    unsigned char *dec = NULL;
    size_t dec_cap = 0;
    uint64_t index = 0;
    bool ok = true;
    in->wait = wait_readable;
    in->ctx = st;
    const char *rec;
    ssize_t n;
    while (!g_signal && (n = input_next(in, &rec)) != -1) {
        if (n == -2) {
            ok = false;
            break;
        }
        const char *payload = rec, *key = NULL;
        char *key_buf = NULL;
        size_t len = (size_t)n;
        /* -K splits delimited records, not whole files (-F) */
        if (o->key_delim && !in->whole) {
            const char *d = memmem(rec, len, o->key_delim, o->key_delim_len);
            if (d && memchr(rec, '\0', (size_t)(d - rec))) {
                /* a partition key is text: cut at the NUL it would be
                 * another key, so the message is not sent */
                refuse(st, index++, "INVALID_KEY", "its key holds a NUL byte");
                continue;
            }
            if (d) {
                key_buf = xstrndup(rec, (size_t)(d - rec));
                key = key_buf;
                payload = d + o->key_delim_len;
                len -= (size_t)(payload - rec);
            }
        }
        if (o->base64) {
            if (dec_cap < len / 4 * 3 + 3) {
                dec_cap = len / 4 * 3 + 3;
                free(dec);
                dec = xmalloc(dec_cap);
            }
            size_t bad = 0;
            ssize_t dl = base64_decode(payload, len, dec, &bad);
            if (dl < 0) {
                char why[96];
                snprintf(why, sizeof why, "not base64 (at byte %zu of its value)", bad);
                refuse(st, index++, "INVALID_BASE64", why);
                free(key_buf);
                continue;
            }
            payload = (const char *)dec;
            len = (size_t)dl;
        }
        bool go_on = pace(st) && send_one(st, index++, payload, len, key);
        free(key_buf);
        if (!go_on)
            break;
    }
    free(dec);
    return ok;
}

static void send_generated(state_t *st)
{
    const opts_t *o = st->o;
    size_t plen = strlen(o->prefix);
    char *buf = xmalloc(plen + 24);
    memcpy(buf, o->prefix, plen);
    for (uint64_t index = 0; index < (uint64_t)o->count && !g_signal; index++) {
        int nl = snprintf(buf + plen, 24, "%" PRIu64, index);
        if (!pace(st) || !send_one(st, index, buf, plen + (size_t)nl, NULL))
            break;
    }
    free(buf);
}

/* ---- main --------------------------------------------------------------- */

/* -X stats.interval.ms=N: each statistics report, one JSON object per
 * line, on stderr */
static void print_stats_report(const char *json, void *opaque)
{
    (void)opaque;
    fprintf(stderr, "%s\n", json);
}

static upulsar_conf_t *make_conf(const opts_t *o)
{
    upulsar_conf_t *conf = upulsar_conf_new();
    if (!conf)
        die(EXIT_FAIL, "out of memory");
    char err[512] = "";
    /* --stats: every message's latency, unless -X says otherwise */
    if (o->stats &&
        upulsar_conf_set(conf, "latency.sample.every", "1", err, sizeof err) != UPULSAR_CONF_OK)
        die(EXIT_FAIL, "latency.sample.every: %s", err);
    for (size_t i = 0; i < o->nconf; i++) {
        upulsar_conf_res_t r = upulsar_conf_set(conf, o->conf[i].key, o->conf[i].value, err,
                                                sizeof err);
        if (r == UPULSAR_CONF_UNKNOWN)
            die(EXIT_USAGE, "%s %s: unknown configuration key (-X list shows every key)",
                o->conf[i].what, o->conf[i].key);
        if (r != UPULSAR_CONF_OK)
            die(EXIT_USAGE, "%s %s: invalid value: %s", o->conf[i].what, o->conf[i].key, err);
    }
    return conf;
}

static void print_created(const opts_t *o, upulsar_producer_t *p, int nparts)
{
    fputs("{\"event\":\"created\",\"topic\":", stdout);
    json_cstr(stdout, o->topic);
    printf(",\"partitions\":%d", nparts);
    upulsar_producer_info_t info[2];
    size_t ninfo = 0;
    if (upulsar_producer_list(p, info, 2, &ninfo) == UPULSAR_OK && ninfo == 1) {
        fputs(",\"producerName\":", stdout);
        json_cstr(stdout, info[0].name);
    }
    fputs("}\n", stdout);
}

/* ---- starting the producer, Ctrl-C still heard --------------------------- */

typedef struct {
    _Atomic int done;
    upulsar_err_t err;
    upulsar_producer_t *p;
    char why[512];
} start_wait_t;

static void on_started(upulsar_err_t err, upulsar_producer_t *p, void *opaque)
{
    start_wait_t *w = opaque;
    w->err = err;
    w->p = p;
    if (err)
        snprintf(w->why, sizeof w->why, "%s", upulsar_last_error());
    atomic_store_explicit(&w->done, 1, memory_order_release);
    uint64_t one = 1;
    if (write(g_wake_fd, &one, sizeof one) < 0) {
        /* a full eventfd still wakes the reader */
    }
}

/* Start the producer on its own thread (upulsar_producer_start_async())
 * while this thread waits with SIGINT/SIGTERM unblocked: a signal ends the
 * wait with UPULSAR_ERR__CLOSED (the caller destroys the client, which
 * cancels the start). Otherwise what the start ended with, its detail in
 * @p why. Called, and returns, with the signals blocked (the start's
 * thread inherits that). */
static upulsar_err_t start_producer(upulsar_client_t *client, const opts_t *o,
                                    const upulsar_conf_t *conf, upulsar_producer_t **out,
                                    char *why, size_t why_len)
{
    static start_wait_t w;
    memset(&w, 0, sizeof w);
    upulsar_err_t err = upulsar_producer_start_async(client, o->name, o->topic,
                                                     (int)o->partitions, conf, on_started, &w);
    if (err) {
        snprintf(why, why_len, "%s", upulsar_last_error());
        return err;
    }
    sigset_t unblocked;
    pthread_sigmask(SIG_BLOCK, NULL, &unblocked);
    sigdelset(&unblocked, SIGINT);
    sigdelset(&unblocked, SIGTERM);
    while (!atomic_load_explicit(&w.done, memory_order_acquire)) {
        if (g_signal)
            return UPULSAR_ERR__CLOSED;
        struct pollfd pf = {.fd = g_wake_fd, .events = POLLIN};
        if (ppoll(&pf, 1, NULL, &unblocked) > 0) {
            uint64_t v;
            if (read(g_wake_fd, &v, sizeof v) < 0) {
                /* nothing to read: look again */
            }
        }
    }
    *out = w.p;
    snprintf(why, why_len, "%s", w.why);
    return w.err;
}

int main(int argc, char **argv)
{
    opts_t o;
    parse_args(argc, argv, &o);
    if (o.line_buffered)
        setvbuf(stdout, NULL, _IOLBF, 0);

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: a blocked read returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    g_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g_wake_fd < 0)
        die(EXIT_FAIL, "eventfd: %s", strerror(errno));

    upulsar_conf_t *conf = make_conf(&o);
    input_t in;
    bool reading = o.count < 0;
    if (reading)
        input_open(&in, &o);

    /* the library's and the broker's threads inherit this mask: signals
     * go to this thread, where they interrupt reading */
    set_signals_blocked(true, NULL);
    upulsar_tb_t *tb = NULL;
    if (o.embedded) {
        upulsar_tb_opts_t tbo;
        upulsar_tb_opts_init(&tbo);
        if (upulsar_tb_start(&tbo, &tb) != UPULSAR_OK)
            die(EXIT_FAIL, "cannot start the embedded test broker: %s", upulsar_last_error());
        if (o.partitions > 0 &&
            upulsar_tb_set_partitions(tb, o.topic, (int)o.partitions) != UPULSAR_OK)
            die(EXIT_USAGE, "topic '%s': %s", o.topic, upulsar_last_error());
        char err[256];
        if (upulsar_conf_set(conf, "service.url", upulsar_tb_url(tb), err, sizeof err) !=
            UPULSAR_CONF_OK)
            die(EXIT_FAIL, "service.url: %s", err);
        fprintf(stderr, PROG ": embedded test broker at %s\n", upulsar_tb_url(tb));
    }

    char url[512] = "";
    upulsar_conf_get(conf, "service.url", url, sizeof url);
    upulsar_client_t *client = NULL;
    upulsar_err_t err = upulsar_client_new(conf, &client);
    if (err != UPULSAR_OK)
        die(exit_for(err, true), "client for %s: %s: %s", url, upulsar_err_name(err),
            upulsar_last_error());
    char stats_iv[32] = "";
    upulsar_conf_get(conf, "stats.interval.ms", stats_iv, sizeof stats_iv);
    if (strcmp(stats_iv, "0") != 0)
        upulsar_client_set_stats_cb(client, print_stats_report, NULL);
    state_t st;
    memset(&st, 0, sizeof st);
    st.o = &o;
    char why[512] = "";
    err = start_producer(client, &o, conf, &st.p, why, sizeof why);
    if (err != UPULSAR_OK) {
        bool interrupted = err == UPULSAR_ERR__CLOSED && g_signal; /* Ctrl-C while starting */
        if (!interrupted)
            fprintf(stderr, PROG ": cannot produce to '%s' at %s: %s: %s\n", o.topic, url,
                    upulsar_err_name(err), why);
        if (!interrupted && !tb && (err == UPULSAR_ERR__CONNECT || err == UPULSAR_ERR__TIMED_OUT))
            fprintf(stderr, PROG ": is a broker running there? (--embedded starts a test "
                    "broker in this process)\n");
        upulsar_client_destroy(client);
        upulsar_conf_destroy(conf);
        upulsar_tb_stop(tb);
        if (reading)
            input_close(&in);
        opts_free(&o);
        close(g_wake_fd);
        return interrupted ? 128 + g_signal : exit_for(err, false);
    }
    set_signals_blocked(false, NULL);
    int nparts = upulsar_producer_partitions(st.p);
    if (o.json && !o.quiet)
        print_created(&o, st.p, nparts);

    st.q = xmalloc(WINDOW * sizeof *st.q);
    st.t.t0_ns = now_ns();
    st.next_tick = st.t.t0_ns + NS_PER_S;
    if (o.rate > 0) {
        double ns = 1e9 / o.rate;
        st.interval_ns = ns < 1 ? 1 : (int64_t)ns;
    }
    bool input_failed = false;
    if (reading) {
        input_failed = !send_input(&st, &in);
        input_close(&in);
    } else {
        send_generated(&st);
    }

    /* resolve everything: flush, then wait in order */
    if (st.p && !st.gave_up)
        upulsar_producer_flush(st.p, 0);
    while (st.len)
        resolve_oldest(&st, true);
    int64_t end_ns = now_ns();
    latency_t lat = {0};
    if (o.stats && st.p) {
        char *json = NULL;
        if (upulsar_producer_stats_json(st.p, &json) == UPULSAR_OK)
            latency_from_stats(json, &lat);
        free(json);
    }
    if (st.p) {
        err = upulsar_producer_stop(st.p, o.timeout_ms > 0 ? (int)o.timeout_ms : 10000);
        if (err != UPULSAR_OK)
            fprintf(stderr, PROG ": stopping the producer: %s\n", upulsar_err_name(err));
    }
    upulsar_client_destroy(client);
    upulsar_conf_destroy(conf);
    upulsar_tb_stop(tb);

    if (o.stats)
        print_stats(&o, &st.t, end_ns, &lat);
    if (o.json)
        printf("{\"event\":\"done\",\"sent\":%" PRIu64 ",\"failed\":%" PRIu64 "}\n",
               st.t.acked, st.t.failed);
    fflush(stdout);
    bool out_failed = ferror(stdout) != 0;
    char where[64] = "not partitioned";
    if (nparts > 0)
        snprintf(where, sizeof where, "%d partition%s", nparts, nparts == 1 ? "" : "s");
    fprintf(stderr, PROG ": %" PRIu64 " message%s acknowledged, %" PRIu64 " failed (%s, %s)\n",
            st.t.acked, st.t.acked == 1 ? "" : "s", st.t.failed, o.topic, where);
    if (out_failed)
        fprintf(stderr, PROG ": writing the output failed\n");

    free(st.q);
    opts_free(&o);
    close(g_wake_fd);
    if (g_signal)
        return 128 + g_signal;
    return (st.t.failed || input_failed || out_failed) ? EXIT_FAIL : 0;
}
