/*
 * service.c -- the shape of a service that produces events with upulsar.
 *
 *   ./service [--threads N] [--events N] [--port N] [--dead-letters FILE]
 *             [--check] [SERVICE_URL]   (no URL: an embedded test broker)
 *
 * N worker threads (default 8) produce keyed events to a partitioned topic
 * ("events", 4 partitions) until Ctrl-C or SIGTERM (or N events each with
 * --events). upulsar itself reconnects and resends within send.timeout.ms;
 * what it still could not deliver, the service retries:
 *
 *   worker --send--> upulsar --delivery report (failed)--> retry queue
 *   retry thread: waits (backoff), sends again, at most MAX_ATTEMPTS
 *   attempts in all; then the dead-letter topic "events-dlq" (a second
 *   producer), or the dead-letter file if that fails too.
 *
 * Prometheus metrics (upulsar's and the service's own) are served at
 * http://127.0.0.1:9464/metrics (--port). On a signal it stops taking
 * work, flushes, drains the retries, stops its producers, destroys the
 * client and prints what became of every event: exit 0 when none was lost.
 *
 * --check runs against the embedded test broker, which refuses sends on
 * purpose, and exits 0 only if every event ends up exactly once either on
 * the main topic or among the dead letters (see service_check.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "example_broker.h"
#include "example_http.h"

#define TOPIC "events"
#define DLQ_TOPIC "events-dlq"
enum {
    PARTITIONS = 4,
    MAX_THREADS = 256,
    CHECK_EVENTS = 1000, /* per worker, with --check */
    KEYS = 100,          /* customers: the events' keys */
    MAX_ATTEMPTS = 4,    /* the first send and 3 retries */
    BACKOFF_MS = 50,     /* before retry n: BACKOFF_MS * 2^(n-1), at most 1 s */
    WINDOW = 4096,       /* events in flight at most (a power of two) */
    DRAIN_MS = 60000,    /* at shutdown, how long retries may still take */
    PAYLOAD_MAX = 256, KEY_MAX = 64, /* the largest event and key */
};

/* A failed event, with what it takes to send it again: the report's
 * payload and key are only valid during the callback, so they are copied. */
typedef struct retry_item {
    int attempt; /* attempts made so far */
    upulsar_err_t err;
    char why[160]; /* the failure's detail: partition topic, broker, reason */
    size_t len;
    char key[KEY_MAX + 1];
    char payload[PAYLOAD_MAX];
} retry_item_t;

/*
 * The retry queue: a bounded lock-free ring (Vyukov's, one consumer). The
 * delivery report callback pushes to it from an io thread, which writes
 * and acknowledges nothing while the callback runs; with a mutex it could
 * wait for a retry thread preempted while holding it, stalling every
 * producer of that io thread. A push never waits: it takes a cell or finds
 * the ring full. It is never full: every event holds a unit of the
 * in-flight window (the semaphore) from its first send until it is
 * acknowledged, dead-lettered or lost, and there is a cell per unit.
 */
typedef struct cell {
    atomic_size_t seq;
    retry_item_t item;
} cell_t;

typedef struct service {
    upulsar_producer_t *main, *dlq;
    sem_t window; /* free units of the in-flight window */
    cell_t cells[WINDOW]; /* the retry queue */
    atomic_size_t push_pos; /* next cell to fill */
    size_t pop_pos;         /* next cell to read (retry thread only) */
    FILE *dead_letters;     /* the dead-letter file */
    atomic_int stopping;    /* workers: take no more work */
    atomic_llong drain_end; /* retry thread: end when nothing is unresolved, or
                               at this time (now_ms(); 0 = not draining) */
    int events;             /* per worker, 0 = until stopped */
    /* once nothing is in flight: sent = acked + dead_topic + dead_file + lost */
    atomic_llong sent, acked, retried, dead_topic, dead_file, lost;
} service_t;

static volatile sig_atomic_t signalled;

static void on_signal(int sig) { signalled = sig; }

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long long unresolved(service_t *s)
{
    return s->sent - s->acked - s->dead_topic - s->dead_file - s->lost;
}

/* Never waits (see above); 0 if the ring is full. */
static int queue_push(service_t *s, int attempt, upulsar_err_t err, const char *why,
                      const char *key, size_t key_len, const void *payload, size_t len)
{
    size_t pos = atomic_load_explicit(&s->push_pos, memory_order_relaxed);
    cell_t *c;
    for (;;) {
        c = &s->cells[pos & (WINDOW - 1)];
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        if (seq == pos) { /* free: claim it */
            if (atomic_compare_exchange_weak_explicit(&s->push_pos, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        } else if (seq < pos) {
            return 0; /* still holds an item of the previous lap */
        } else {
            pos = atomic_load_explicit(&s->push_pos, memory_order_relaxed);
        }
    }
    retry_item_t *it = &c->item;
    it->attempt = attempt, it->err = err, it->len = len;
    snprintf(it->why, sizeof it->why, "%s", why ? why : "");
    memcpy(it->key, key, key_len);
    it->key[key_len] = '\0';
    memcpy(it->payload, payload, len);
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release); /* publish */
    return 1;
}

static int queue_pop(service_t *s, retry_item_t *out)
{
    cell_t *c = &s->cells[s->pop_pos & (WINDOW - 1)];
    if (atomic_load_explicit(&c->seq, memory_order_acquire) != s->pop_pos + 1)
        return 0;
    *out = c->item;
    atomic_store_explicit(&c->seq, s->pop_pos + WINDOW, memory_order_release);
    s->pop_pos++;
    return 1;
}

/* An event that cannot be kept: counted, its window unit given back. */
static void lose(service_t *s, const char *why)
{
    fprintf(stderr, "service: event lost: %s\n", why);
    s->lost++;
    sem_post(&s->window);
}

static void retry_later(service_t *s, int attempt, upulsar_err_t err, const char *why,
                        const char *key, size_t key_len, const void *payload, size_t len)
{
    if (len > PAYLOAD_MAX || key_len > KEY_MAX)
        lose(s, "too large to keep for a retry");
    else if (!queue_push(s, attempt, err, why, key, key_len, payload, len))
        lose(s, "retry queue full"); /* cannot happen: see the retry queue */
}

/* Every event's delivery report (main topic), on an io thread: count it,
 * or copy it into the retry queue. Nothing here waits (sem_post does
 * not). The attempt number rides in the message's opaque. */
static void on_report(const upulsar_delivery_report_t *dr, void *opaque)
{
    service_t *s = opaque;
    if (dr->err == UPULSAR_OK) {
        s->acked++;
        sem_post(&s->window);
    } else if (!dr->payload_kept) {
        lose(s, "payload not kept (a chunked message)");
    } else {
        retry_later(s, (int)(uintptr_t)dr->msg_opaque, dr->err, dr->detail, dr->key,
                    dr->key_len, dr->payload, dr->len);
    }
}

/* One attempt; a failure comes back through the report (or at once). */
static void send_event(service_t *s, const char *key, const char *payload, size_t len,
                       int attempt)
{
    upulsar_send_opts_t o = {0};
    o.partition_key = key; /* same customer, same partition */
    o.opaque = (void *)(uintptr_t)attempt;
    upulsar_err_t err = upulsar_send(s->main, payload, len, &o, NULL);
    if (err != UPULSAR_OK) /* not accepted: as a failed attempt */
        retry_later(s, attempt, err, upulsar_last_error(), key, strlen(key), payload, len);
}

static service_t svc; /* large (the retry queue's cells): not on a stack */

static void *worker_main(void *arg)
{
    service_t *s = &svc;
    int index = (int)(intptr_t)arg;
    for (int i = 0; (!s->events || i < s->events) && !s->stopping; i++) {
        while (sem_trywait(&s->window) != 0 && !s->stopping)
            sleep_ms(1); /* WINDOW events in flight: wait for one to resolve */
        if (s->stopping)
            break;
        int customer = (index * 7919 + i) % KEYS;
        char key[32], payload[128];
        snprintf(key, sizeof key, "customer-%d", customer);
        int len = snprintf(payload, sizeof payload, "{\"worker\":%d,\"seq\":%d,\"customer\":%d}",
                           index, i, customer);
        s->sent++;
        send_event(s, key, payload, (size_t)len, 1);
        if (!s->events && i % 50 == 49)
            sleep_ms(1); /* a demo: events arrive at a pace */
    }
    return NULL;
}

/* A failed event the retry thread holds until it is due. */
typedef struct pending {
    struct pending *next;
    long long due_ms;
    upulsar_future_t *future; /* as a dead letter on its way to the topic */
    retry_item_t it;
} pending_t;

/* The last resort: one record per event, "dead-letter key=K error=E
 * attempts=N len=L\n", the L payload bytes and "\n"; on disk before it
 * counts as dead-lettered. */
static void dead_letter_file(service_t *s, const pending_t *p)
{
    FILE *f = s->dead_letters;
    if (fprintf(f, "dead-letter key=%s error=%s attempts=%d len=%zu\n", p->it.key,
                upulsar_err_name(p->it.err), p->it.attempt, p->it.len) > 0 &&
        fwrite(p->it.payload, 1, p->it.len, f) == p->it.len && fputc('\n', f) != EOF &&
        fflush(f) == 0 && fsync(fileno(f)) == 0) {
        s->dead_file++;
        sem_post(&s->window);
    } else {
        lose(s, "the dead-letter topic and file both failed");
    }
}

/* Send to the dead-letter topic with why it failed (as properties). */
static void dead_letter_send(service_t *s, pending_t *p)
{
    char attempts[16];
    snprintf(attempts, sizeof attempts, "%d", p->it.attempt);
    upulsar_property_t props[] = {{"dlq.topic", TOPIC},
                                  {"dlq.error", upulsar_err_name(p->it.err)},
                                  {"dlq.reason", p->it.why},
                                  {"dlq.attempts", attempts}};
    upulsar_send_opts_t o = {0};
    o.partition_key = p->it.key;
    o.properties = props;
    o.properties_cnt = sizeof props / sizeof props[0];
    if (upulsar_send(s->dlq, p->it.payload, p->it.len, &o, &p->future) != UPULSAR_OK)
        p->future = NULL;
}

/* Wait for a round's dead letters (each resolves within send.timeout.ms);
 * the file takes those the topic did not. One that timed out may still
 * have been stored: then it is in both (at least once, never nowhere). */
static void dead_letters_done(service_t *s, pending_t *dead)
{
    while (dead) {
        pending_t *p = dead;
        dead = p->next;
        upulsar_err_t err = UPULSAR_ERR__STATE;
        if (p->future)
            err = upulsar_future_wait(p->future, -1, NULL), upulsar_future_release(p->future);
        if (err == UPULSAR_OK) {
            s->dead_topic++;
            sem_post(&s->window);
        } else {
            dead_letter_file(s, p);
        }
        free(p);
    }
}

/* The retry thread is the application's, so it may wait (for room in a
 * ring, for dead-letter receipts, for the disk). A retry goes behind newer
 * events of its key: a service that needs per-key order would hold back a
 * key's later events while one of them waits for its retry. */
static void *retry_main(void *arg)
{
    service_t *s = arg;
    pending_t *waiting = NULL;
    for (;;) {
        long long now = now_ms();
        retry_item_t it;
        while (queue_pop(s, &it)) {
            pending_t *p = malloc(sizeof *p);
            if (!p) {
                lose(s, "out of memory");
                continue;
            }
            long long backoff = (long long)BACKOFF_MS << (it.attempt - 1);
            *p = (pending_t){waiting, now + (backoff > 1000 ? 1000 : backoff), NULL, it};
            waiting = p; /* (a real service adds jitter to the backoff) */
        }
        pending_t **pp = &waiting, *dead = NULL;
        while (*pp) {
            pending_t *p = *pp;
            if (p->it.attempt < MAX_ATTEMPTS && p->due_ms > now) {
                pp = &p->next; /* not due yet */
                continue;
            }
            *pp = p->next;
            if (p->it.attempt < MAX_ATTEMPTS) {
                s->retried++;
                send_event(s, p->it.key, p->it.payload, p->it.len, p->it.attempt + 1);
                free(p);
            } else { /* the last attempt failed */
                dead_letter_send(s, p);
                p->next = dead;
                dead = p;
            }
        }
        dead_letters_done(s, dead);
        if (s->drain_end && (unresolved(s) == 0 || now > s->drain_end))
            break;
        sleep_ms(5);
    }
    for (pending_t *p; (p = waiting);) /* given up on: they show as lost */
        waiting = p->next, free(p);
    return NULL;
}

/* A logfmt value in quotes: " and \ escaped, control characters dropped. */
static void logfmt_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s >= 0x20)
            fputc(*s, f);
    }
    fputc('"', f);
}

/* Structured log records as logfmt lines. They come on library threads: a
 * real service hands them to its logger; here, a short write to stderr
 * (flockfile keeps one record's line whole). */
static void on_log(const upulsar_log_record_t *r, void *opaque)
{
    (void)opaque;
    static const char *names[] = {"error", "warning", "notice", "info", "debug"};
    int l = r->level < UPULSAR_LOG_ERR ? 0 : r->level > UPULSAR_LOG_DEBUG ? 4 : r->level - 3;
    flockfile(stderr);
    fprintf(stderr, "level=%s err=%s topic=", names[l], upulsar_err_name(r->err));
    logfmt_quoted(stderr, r->topic);
    fprintf(stderr, " partition=%d broker=", r->partition);
    logfmt_quoted(stderr, r->broker);
    fputs(" msg=", stderr);
    logfmt_quoted(stderr, r->line);
    fputc('\n', stderr);
    funlockfile(stderr);
}

/* The service's own metrics, appended to upulsar's in every scrape. */
static void service_metrics(service_t *s, char *buf, size_t size)
{
    const struct { const char *name, *type, *help; long long value; } m[] = {
        {"service_events_sent_total", "counter", "Events taken from the workers.", s->sent},
        {"service_events_acked_total", "counter", "Events acknowledged.", s->acked},
        {"service_retries_total", "counter", "Sends made again after a failure.", s->retried},
        {"service_dead_letters_topic_total", "counter", "To the dead-letter topic.", s->dead_topic},
        {"service_dead_letters_file_total", "counter", "To the dead-letter file.", s->dead_file},
        {"service_events_lost_total", "counter", "Neither acked nor dead-lettered.", s->lost},
        {"service_events_in_flight", "gauge", "Events not resolved yet.", unresolved(s)},
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof m / sizeof m[0] && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n",
                              m[i].name, m[i].help, m[i].name, m[i].type, m[i].name, m[i].value);
}

#include "service_check.h" /* --check: faults, and the log read back */

int main(int argc, char **argv)
{
    service_t *s = &svc;
    pthread_t workers[MAX_THREADS], retry;
    int threads = 8, port = 9464, check = 0, nargs = 1;
    char *args[2] = {argv[0], NULL}, tmp_path[] = "/tmp/upulsar-service-XXXXXX";
    const char *dead_path = "service-dead-letters.log";
    for (int i = 1; i < argc; i++) {
        int more = i + 1 < argc;
        if (more && !strcmp(argv[i], "--threads"))
            threads = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--events"))
            s->events = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--port"))
            port = atoi(argv[++i]);
        else if (more && !strcmp(argv[i], "--dead-letters"))
            dead_path = argv[++i];
        else if (!strcmp(argv[i], "--check"))
            check = 1;
        else if (argv[i][0] != '-' && nargs < 2)
            args[nargs++] = argv[i];
        else
            threads = 0; /* usage */
    }
    if (threads < 1 || threads > MAX_THREADS || s->events < 0)
        return fprintf(stderr, "usage: %s [--threads 1-%d] [--events N] [--port N] "
                       "[--dead-letters FILE] [--check] [SERVICE_URL]\n", argv[0], MAX_THREADS), 2;
    if (check) /* the embedded broker, any free port, a fresh file */
        nargs = 1, port = 0, s->events = CHECK_EVENTS, dead_path = tmp_path;
    if (check && close(mkstemp(tmp_path)) != 0)
        return perror("mkstemp"), 1;
    /* Signals go to the main thread only: blocked before any thread (ours
     * or the library's) exists, so they all inherit the mask, and
     * unblocked here once they run. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL), sigaction(SIGTERM, &sa, NULL);

    example_broker_t broker = example_broker_open(nargs, args, TOPIC, PARTITIONS);
    upulsar_tb_t *tb = broker.embedded;
    upulsar_client_t *client = example_client(broker.url);
    upulsar_client_set_log_record_cb(client, on_log, NULL);
    /* Workers and the retry thread may wait for room in a ring (the
     * callback never sends). upulsar gives a message up after 10 s
     * (send.timeout.ms); then the service's retries begin. Dead letters are
     * rare: one entry each (batching off), so a refused one costs one. */
    upulsar_conf_t *conf = upulsar_conf_new();
    char err[256];
    if (!conf || upulsar_conf_set(conf, "block.if.queue.full", "true", err, sizeof err) ||
        upulsar_conf_set(conf, "send.timeout.ms", "10000", err, sizeof err) ||
        upulsar_conf_set(conf, "batching.enabled", "false", err, sizeof err))
        return fprintf(stderr, "conf: %s\n", conf ? err : "out of memory"), 1;
    upulsar_err_t e = upulsar_producer_start(client, NULL, DLQ_TOPIC, 0, conf, &s->dlq);
    upulsar_conf_set(conf, "batching.enabled", "true", NULL, 0);
    upulsar_conf_set_delivery_report_cb(conf, on_report, s); /* the main topic's */
    if (e == UPULSAR_OK)
        e = upulsar_producer_start(client, NULL, TOPIC, 0, conf, &s->main);
    upulsar_conf_destroy(conf);
    if (e != UPULSAR_OK)
        return fprintf(stderr, "producer: %s: %s\n", upulsar_err_name(e), upulsar_last_error()), 1;
    if (!(s->dead_letters = fopen(dead_path, "a")))
        return perror(dead_path), 1;
    int bound = 0, lfd = http_listen(port, &bound);
    if (lfd < 0)
        return fprintf(stderr, "cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno)), 1;
    if (check)
        check_break(tb); /* the broker refuses sends (see service_check.h) */

    for (size_t i = 0; i < WINDOW; i++)
        atomic_init(&s->cells[i].seq, i);
    sem_init(&s->window, 0, WINDOW);
    pthread_create(&retry, NULL, retry_main, s);
    for (int t = 0; t < threads; t++)
        pthread_create(&workers[t], NULL, worker_main, (void *)(intptr_t)t);
    pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
    fprintf(stderr, "%d workers producing to %s; metrics at http://127.0.0.1:%d/metrics; dead "
            "letters to %s, else %s (Ctrl-C stops)\n", threads, TOPIC, bound, DLQ_TOPIC, dead_path);

    /* Serve scrapes until a signal or, with --events, every event sent
     * (--check: and the broken partition healed, or nothing left to do). */
    int healed = 0;
    long long total = (long long)threads * s->events;
    while (!signalled && !(s->events && s->sent == total &&
                           (!check || healed || unresolved(s) == 0))) {
        struct pollfd pf = {lfd, POLLIN, 0};
        if (poll(&pf, 1, check ? 5 : 100) > 0) {
            char extra[2048];
            int cfd = accept(lfd, NULL, NULL);
            service_metrics(s, extra, sizeof extra);
            if (cfd >= 0)
                http_serve_metrics(cfd, client, extra), close(cfd);
        }
        if (check && !healed && s->dead_topic > 0)
            healed = check_heal(tb); /* the broken partition is back */
    }

    /* Shutdown: take no more work, flush what was sent, let the retries
     * run out (each attempt resolves within send.timeout.ms; after
     * MAX_ATTEMPTS, a dead letter) for DRAIN_MS at most (plus a round of
     * dead letters under way), then stop. */
    fprintf(stderr, "stopping: %lld events in flight\n", unresolved(s));
    s->stopping = 1;
    for (int t = 0; t < threads; t++)
        pthread_join(workers[t], NULL);
    s->drain_end = now_ms() + DRAIN_MS;
    upulsar_producer_flush(s->main, DRAIN_MS); /* retries go on meanwhile */
    pthread_join(retry, NULL);
    int ok = !check || check_scrape(s, client, lfd, bound);
    close(lfd);
    e = upulsar_producer_stop(s->main, 10000);
    ok = upulsar_producer_stop(s->dlq, 10000) == UPULSAR_OK && e == UPULSAR_OK && ok;
    upulsar_client_destroy(client);
    fclose(s->dead_letters);
    sem_destroy(&s->window);
    long long sent = s->sent, acked = s->acked, topic = s->dead_topic, file = s->dead_file;
    printf("sent %lld, acknowledged %lld, retried %lld, dead-lettered %lld (topic %lld, file "
           "%lld), lost %lld\n", sent, acked, (long long)s->retried, topic + file, topic, file,
           sent - acked - topic - file);
    if (check) {
        ok = check_outcome(s, tb, dead_path, (int)total) && ok;
        unlink(dead_path);
    }
    example_broker_close(&broker);
    return ok && s->lost == 0 && unresolved(s) == 0 ? 0 : 1;
}
