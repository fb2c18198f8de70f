/* upulsar-perf -- producer throughput and latency harness, in the spirit of
 * `pulsar-perf produce`.
 *
 * By default it forks the project's test broker (perf mode: entries stored
 * as units, checksums verified) into a child process on a free port, so the
 * client's CPU time, peak RSS and allocation counts are its own; --url
 * points it at a real broker instead. With --tls the embedded broker serves
 * TLS with a throwaway CA and server certificate made by the openssl CLI in
 * a private temporary directory, removed at exit.
 *
 * Every second it prints a progress line; at the end a summary (and with
 * --json one JSON object). Latency is send -> receipt, per message, from a
 * log-bucket histogram (16 sub-buckets per power of two: <= 6.25 % error).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "perf_ceiling.h"
#include "perf_common.h"
#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

/* ---- allocation counting: this process (the client) only ---------------- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static _Atomic uint64_t n_allocs;

void *malloc(size_t n)
{
    atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t al, size_t n)
{
    atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
    return __libc_memalign(al, n);
}

/* ---- options -------------------------------------------------------------- */

static struct {
    const char *url;
    const char *topic;
    int partitions;
    int threads;
    int size;
    double rate; /* msgs/s overall, 0 = max */
    double seconds;
    uint64_t messages; /* 0 = by time */
    int batch_max_messages;
    int batch_max_bytes;
    const char *batch_delay_ms;
    const char *batch_mode; /* batch.mode, NULL = the library's default */
    const char *sets[16];   /* --set KEY=VALUE, in order */
    int nsets;
    const char *compression;
    int keyed;
    int producers_per_partition;
    int io_threads;
    const char *queue_bytes;
    int json;
    int quiet;
    double warmup;
    int tls;            /* embedded broker over TLS */
    const char *tls_ca; /* tls.ca.file for --url pulsar+ssl://... */
    double idle;        /* seconds of idling measured after the start, 0 = none */
    int send_many;      /* messages per upulsar_send_many() call, 0 = upulsar_send() */
    int ceiling;        /* run upulsar-ceiling after, report the ratio */
} opt = {NULL, "perf", 4, 2, 100, 0, 10, 0, 1000, 131072, "1", NULL, {NULL}, 0, "none", 0, 1, 1, NULL, 0, 0, 1.0,
         0, NULL, 0, 0, 0};

static void usage(FILE *fp)
{
    fputs("usage: upulsar-perf [options]\n"
          "  --url URL              broker service URL, pulsar:// or pulsar+ssl://\n"
          "                         (default: fork the embedded test broker)\n"
          "  --tls                  embedded broker over TLS (pulsar+ssl://): a throwaway CA and\n"
          "                         server certificate are made with the openssl CLI in a\n"
          "                         temporary directory, removed at exit\n"
          "  --tls-ca FILE          with --url pulsar+ssl://...: CA certificates (PEM) to trust\n"
          "                         for the broker (tls.ca.file; default: the system store)\n"
          "  --topic NAME           topic (default perf)\n"
          "  -p, --partitions N     partitions (default 4; the embedded broker is given that\n"
          "                         many, a real broker's own count is used; partitions.max is\n"
          "                         raised to N when N is larger)\n"
          "  -t, --threads N        sender threads (default 2)\n"
          "  -s, --size BYTES       message size (default 100)\n"
          "  -r, --rate MSGS        total messages per second, 0 = as fast as possible (default 0)\n"
          "  -d, --seconds S        duration (default 10)\n"
          "  -n, --messages N       stop after N messages instead of a duration\n"
          "  --warmup S             seconds excluded from the figures (default 1)\n"
          "  --batch-max-messages N (default 1000)\n"
          "  --batch-max-bytes N    (default 131072)\n"
          "  --batch-delay-ms MS    (default 1; fractions allowed)\n"
          "  --batch-mode M         adaptive|linger (batch.mode; default: the library's, adaptive)\n"
          "  --set KEY=VALUE        any other configuration key (repeatable, up to 16)\n"
          "  --compression C        none|lz4|zstd|zlib (default none)\n"
          "  --keyed                give each message one of 1000 keys\n"
          "  --producers-per-partition N (default 1)\n"
          "  --io-threads N         (default 1)\n"
          "  --queue-bytes N        ring bytes per producer (queue.buffer.bytes)\n"
          "  --idle S               after the start, send nothing for S seconds and report the\n"
          "                         client's CPU time over them (then run as usual)\n"
          "  --send-many N          send in upulsar_send_many() calls of N messages (default:\n"
          "                         upulsar_send(), one message per call)\n"
          "  --ceiling              then run upulsar-ceiling (the hand-rolled batch writer, next\n"
          "                         to this program) on the same broker, topic, partitions,\n"
          "                         size and seconds, and report upulsar's rate as a share of\n"
          "                         its rate\n"
          "                         (max rate only; it writes keyless, uncompressed batches)\n"
          "  --json                 print the summary as one JSON object\n"
          "  -q, --quiet            no progress lines\n",
          fp);
}

/* ---- latency histogram ----------------------------------------------------- */

#define SUB 16
#define POW 40
typedef struct {
    _Atomic uint64_t b[POW * SUB];
    _Atomic uint64_t max;
} hist_t;

static unsigned bucket_of(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned sub = (unsigned)(v >> (msb - 4)) & (SUB - 1);
    unsigned idx = (msb - 3) * SUB + sub;
    return idx < POW * SUB ? idx : POW * SUB - 1;
}

static uint64_t bucket_value(unsigned idx)
{
    if (idx < SUB)
        return idx;
    unsigned msb = idx / SUB + 3, sub = idx % SUB;
    return ((uint64_t)(SUB + sub) << (msb - 4)) + ((uint64_t)1 << (msb - 4)) / 2;
}

/* Delivery callbacks of one io thread run in order on that thread: with
 * the default io.threads=1 each bucket has one writer and a relaxed
 * load+store is exact (no locked instruction per message); with more io
 * threads the counters use atomic increments. */
static int single_io_thread = 1;

static void bump(_Atomic uint64_t *c)
{
    if (single_io_thread)
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void hist_add(hist_t *h, uint64_t v)
{
    bump(&h->b[bucket_of(v)]);
    if (v > atomic_load_explicit(&h->max, memory_order_relaxed))
        atomic_store_explicit(&h->max, v, memory_order_relaxed);
}

/* percentiles of h (and optionally subtract a baseline snapshot) */
static void hist_pct(const uint64_t *counts, const double *q, uint64_t *out, int nq)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < POW * SUB; i++)
        total += counts[i];
    for (int k = 0; k < nq; k++) {
        out[k] = 0;
        if (!total)
            continue;
        uint64_t want = (uint64_t)ceil(q[k] * (double)total), seen = 0;
        if (want == 0)
            want = 1;
        for (unsigned i = 0; i < POW * SUB; i++) {
            seen += counts[i];
            if (seen >= want) {
                out[k] = bucket_value(i);
                break;
            }
        }
    }
}

static void hist_snap(hist_t *h, uint64_t *out)
{
    for (unsigned i = 0; i < POW * SUB; i++)
        out[i] = atomic_load_explicit(&h->b[i], memory_order_relaxed);
}

/* The histogram @p name ("latency_us", "batch_msgs": objects with
 * "buckets":[[upper,count]...]) of every producer in statistics @p sj,
 * added up: its count and the upper bounds where quantiles @p q fall. */
static uint64_t lib_hist_pct(const char *sj, const char *name, const double *q, uint64_t *out,
                             int nq)
{
    enum { MAXB = 1024 };
    static uint64_t up[MAXB], cnt[MAXB];
    int nb = 0;
    uint64_t total = 0;
    char key[64];
    snprintf(key, sizeof key, "\"%s\":{", name);
    for (const char *o = strstr(sj, key); o; o = strstr(o + 1, key)) {
        const char *b = strstr(o, "\"buckets\":[");
        if (!b)
            break;
        b += strlen("\"buckets\":[");
        /* [[upper,count],...]: parsed by hand (sscanf measures the whole
         * rest of the string at each call, quadratic at 10,000 producers) */
        for (;;) {
            while (*b == ',')
                b++;
            if (*b != '[')
                break;
            char *e;
            unsigned long long u = strtoull(b + 1, &e, 10);
            if (e == b + 1 || *e != ',')
                break;
            const char *cs = e + 1;
            unsigned long long c = strtoull(cs, &e, 10);
            if (e == cs || *e != ']')
                break;
            int i = 0;
            while (i < nb && up[i] != u)
                i++;
            if (i == nb && nb < MAXB) {
                up[nb] = u;
                cnt[nb++] = 0;
            }
            if (i < nb)
                cnt[i] += c;
            total += c;
            b = e + 1;
        }
    }
    for (int i = 1; i < nb; i++) /* by upper bound */
        for (int j = i; j > 0 && up[j - 1] > up[j]; j--) {
            uint64_t t = up[j]; up[j] = up[j - 1]; up[j - 1] = t;
            t = cnt[j]; cnt[j] = cnt[j - 1]; cnt[j - 1] = t;
        }
    for (int k = 0; k < nq; k++) {
        out[k] = 0;
        uint64_t want = (uint64_t)ceil(q[k] * (double)total), seen = 0;
        for (int i = 0; i < nb && total; i++) {
            seen += cnt[i];
            if (seen >= (want ? want : 1)) {
                out[k] = up[i];
                break;
            }
        }
    }
    return total;
}

/* ---- shared state ------------------------------------------------------------ */

static hist_t lat;              /* microseconds, measured part only */
static _Atomic uint64_t acked, failed;
static struct sender *senders;
static int nsenders;
static uint64_t sent_total(void);
static _Atomic int measuring;
static _Atomic int stop_flag;
static struct timespec t0;
static upulsar_producer_t *producer;
static char batch_mode_eff[16]; /* batch.mode in effect */
static char compression_eff[16], delay_eff[32]; /* compression, batch.max.delay.ms in effect */
static _Atomic uint64_t last_ack_ns; /* -n: when the last of the messages was resolved */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)(ts.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)ts.tv_nsec -
           (uint64_t)t0.tv_nsec;
}

/* With -n: the time the last message was resolved (the measured window's
 * end, not the next poll of the main loop). */
static inline void note_last(void)
{
    if (opt.messages && atomic_load_explicit(&acked, memory_order_relaxed) +
                                atomic_load_explicit(&failed, memory_order_relaxed) ==
                            opt.messages)
        atomic_store_explicit(&last_ack_ns, now_ns(), memory_order_relaxed);
}

/* Called on the io loop thread, in order, once per message. The clock is
 * read once per batch entry (batch_index 0) to keep the loop cheap. */
static _Thread_local uint64_t cb_now;
static void on_delivery(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    if (err) {
        atomic_fetch_add_explicit(&failed, 1, memory_order_relaxed);
        note_last();
        return;
    }
    if (id->batch_index <= 0 || !cb_now)
        cb_now = now_ns();
    uint64_t sent_at = (uint64_t)(uintptr_t)opaque;
    if (sent_at && atomic_load_explicit(&measuring, memory_order_relaxed))
        hist_add(&lat, cb_now > sent_at ? (cb_now - sent_at) / 1000u : 0);
    bump(&acked);
    note_last();
}

typedef struct sender {
    _Alignas(64) int id;
    uint64_t quota; /* messages, 0 = until stop */
    double rate;    /* this thread's msgs/s, 0 = max */
    _Atomic uint64_t sent; /* written by its thread only, read by main */
    uint64_t errors;
    uint64_t enqueue_ns; /* time spent inside upulsar_send, measured part */
    uint64_t enqueue_n;
} sender_t;

static uint64_t sent_total(void)
{
    uint64_t n = 0;
    for (int i = 0; i < nsenders; i++)
        n += atomic_load_explicit(&senders[i].sent, memory_order_relaxed);
    return n;
}

static char keys[1000][16];

/* The rate limit: sleep ~200 us at a time (no spinning: the harness must
 * not steal the cores it measures) until message @p i is due; the time
 * now. */
static uint64_t pace(uint64_t start, uint64_t i, double interval)
{
    uint64_t t = now_ns();
    while (interval > 0 && start + (uint64_t)((double)i * interval) > t) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
        t = now_ns();
        if (atomic_load_explicit(&stop_flag, memory_order_relaxed))
            break;
    }
    return t;
}

/* The sender's loop with --send-many: calls of opt.send_many messages,
 * each with its options (the send time to measure latency, a key with
 * --keyed), the rate checked per call. */
static void sender_many(sender_t *s, const char *payload)
{
    size_t b = (size_t)opt.send_many;
    upulsar_msg_t *msgs = calloc(b, sizeof *msgs);
    upulsar_send_opts_t *o = calloc(b, sizeof *o);
    if (!msgs || !o) {
        s->errors++;
        free(msgs);
        free(o);
        return;
    }
    for (size_t j = 0; j < b; j++) {
        o[j].cb = on_delivery;
        msgs[j] = (upulsar_msg_t){payload, (size_t)opt.size, &o[j]};
    }
    uint64_t start = now_ns(), t;
    double interval = s->rate > 0 ? 1e9 / s->rate : 0;
    uint32_t rnd = (uint32_t)s->id * 2654435761u + 1;
    uint64_t i = 0;
    while (!s->quota || i < s->quota) {
        if (atomic_load_explicit(&stop_flag, memory_order_relaxed))
            break;
        t = pace(start, i, interval);
        size_t n = s->quota && s->quota - i < b ? (size_t)(s->quota - i) : b;
        for (size_t j = 0; j < n; j++) {
            if (opt.keyed) {
                rnd = rnd * 1664525u + 1013904223u;
                o[j].partition_key = keys[(rnd >> 8) % 1000];
            }
            o[j].opaque = (void *)(uintptr_t)t;
        }
        size_t acc = 0;
        upulsar_err_t err = upulsar_send_many(producer, msgs, n, NULL, &acc);
        /* a refused message is not retried, as with upulsar_send(); the
         * ones after it were not attempted and go in the next call */
        i += err ? acc + 1 : n;
        atomic_store_explicit(&s->sent,
                              atomic_load_explicit(&s->sent, memory_order_relaxed) + acc,
                              memory_order_relaxed);
        if (err) {
            s->errors++;
            if (err == UPULSAR_ERR__CLOSED)
                break;
        }
    }
    free(msgs);
    free(o);
}

static void *sender_main(void *arg)
{
    sender_t *s = arg;
    char *payload = malloc((size_t)opt.size + 1);
    for (int i = 0; i < opt.size; i++)
        payload[i] = (char)('a' + (i * 7 + s->id) % 26);
    upulsar_send_opts_t o = {.cb = on_delivery};
    uint64_t start = now_ns(), t = start;
    double interval = s->rate > 0 ? 1e9 / s->rate : 0;
    uint32_t rnd = (uint32_t)s->id * 2654435761u + 1;
    if (opt.send_many > 0) {
        sender_many(s, payload);
        free(payload);
        return NULL;
    }
    for (uint64_t i = 0; !s->quota || i < s->quota; i++) {
        if ((i & 15) == 0 || interval > 0) {
            if (atomic_load_explicit(&stop_flag, memory_order_relaxed))
                break;
            t = pace(start, i, interval); /* send what is due */
        }
        if (opt.keyed) {
            rnd = rnd * 1664525u + 1013904223u;
            o.partition_key = keys[(rnd >> 8) % 1000];
        }
        o.opaque = (void *)(uintptr_t)t;
        upulsar_err_t err = upulsar_send(producer, payload, (size_t)opt.size, &o, NULL);
        if (err) {
            s->errors++;
            if (err == UPULSAR_ERR__CLOSED)
                break;
            continue;
        }
        atomic_store_explicit(&s->sent, atomic_load_explicit(&s->sent, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    }
    free(payload);
    return NULL;
}

/* ---- throwaway TLS certificates (--tls) --------------------------------------- */

/* Every file the openssl commands below create, so that removing the
 * directory needs only unlink() and rmdir() (async-signal-safe). */
enum { CERT_CA_KEY, CERT_CA, CERT_SRV_KEY, CERT_SRV_CSR, CERT_SRV, CERT_SRV_EXT, CERT_LOG, CERT_N };
static const char *const cert_names[CERT_N] = {"ca.key",  "ca.pem",  "srv.key",    "srv.csr",
                                               "srv.pem", "srv.ext", "openssl.log"};
static char cert_dir[256]; /* "" = none */
static char cert_path[CERT_N][sizeof cert_dir + 16];
/* signals whose handler removes the directory, and their previous actions
 * (restored in the broker child) */
static const int cert_sigs[3] = {SIGINT, SIGTERM, SIGHUP};
static struct sigaction cert_sig_old[3];
static bool cert_sig_set[3];

static void certs_remove(void)
{
    if (!cert_dir[0])
        return;
    for (int i = 0; i < CERT_N; i++)
        unlink(cert_path[i]);
    rmdir(cert_dir);
    cert_dir[0] = 0;
}

/* SIGINT/SIGTERM/SIGHUP with --tls: stop the broker child, remove the
 * directory, then die of the signal (the handler is installed with
 * SA_RESETHAND). */
static void certs_on_signal(int sig)
{
    if (broker_live)
        kill(broker_pid, SIGTERM);
    certs_remove();
    raise(sig);
}

/* Run openssl with argv in cert_dir, its output appended to the log file.
 * Returns 0 on exit status 0. */
static int run_openssl(const char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "upulsar-perf: --tls: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int fd = open(cert_path[CERT_LOG], O_WRONLY | O_CREAT | O_APPEND, 0600);
        int in = open("/dev/null", O_RDONLY);
        if (fd < 0 || in < 0 || chdir(cert_dir) || dup2(in, 0) < 0 || dup2(fd, 1) < 0 ||
            dup2(fd, 2) < 0)
            _exit(126);
        execvp("openssl", (char *const *)argv); /* execvp does not write to argv */
        dprintf(2, "cannot run openssl: %s\n", strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "upulsar-perf: --tls: waitpid: %s\n", strerror(errno));
            return -1;
        }
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    fprintf(stderr, "upulsar-perf: --tls: 'openssl %s' failed (%s %d); its output:\n", argv[1],
            WIFEXITED(st) ? "exit status" : "signal",
            WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    FILE *f = fopen(cert_path[CERT_LOG], "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            fprintf(stderr, "  %s", line);
        fclose(f);
    }
    return -1;
}

/* A CA and a server certificate for localhost / 127.0.0.1 signed by it
 * (EC prime256v1, valid one day) in a new private directory under $TMPDIR
 * (or /tmp). The directory is removed at exit, on SIGINT/SIGTERM/SIGHUP,
 * or here on failure. Returns 0, or -1 with a message on stderr. */
static int certs_make(void)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    if ((size_t)snprintf(cert_dir, sizeof cert_dir, "%s/upulsar-perf-tls-XXXXXX", tmp) >=
        sizeof cert_dir) {
        fprintf(stderr, "upulsar-perf: --tls: TMPDIR path too long: %s\n", tmp);
        cert_dir[0] = 0;
        return -1;
    }
    if (!mkdtemp(cert_dir)) {
        fprintf(stderr, "upulsar-perf: --tls: cannot create a directory in %s: %s\n", tmp,
                strerror(errno));
        cert_dir[0] = 0;
        return -1;
    }
    for (int i = 0; i < CERT_N; i++)
        snprintf(cert_path[i], sizeof cert_path[i], "%s/%s", cert_dir, cert_names[i]);
    atexit(certs_remove);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = certs_on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++) {
        /* a signal the caller ignores (nohup, background jobs) stays ignored */
        if (sigaction(cert_sigs[i], NULL, &cert_sig_old[i]) == 0 &&
            cert_sig_old[i].sa_handler != SIG_IGN)
            cert_sig_set[i] = sigaction(cert_sigs[i], &sa, NULL) == 0;
    }

    FILE *ext = fopen(cert_path[CERT_SRV_EXT], "w");
    if (!ext || fputs("subjectAltName=DNS:localhost,IP:127.0.0.1\n", ext) < 0 || fclose(ext)) {
        fprintf(stderr, "upulsar-perf: --tls: cannot write %s: %s\n", cert_path[CERT_SRV_EXT],
                strerror(errno));
        certs_remove();
        return -1;
    }
    char serial[32];
    snprintf(serial, sizeof serial, "%lld", (long long)time(NULL));
    const char *const ca[] = {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                              "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key",
                              "-out", "ca.pem", "-days", "1", "-subj",
                              "/CN=upulsar-perf throwaway CA", NULL};
    const char *const csr[] = {"openssl", "req", "-newkey", "ec", "-pkeyopt",
                               "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "srv.key",
                               "-out", "srv.csr", "-subj", "/CN=localhost", NULL};
    const char *const sign[] = {"openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem",
                                "-CAkey", "ca.key", "-set_serial", serial, "-days", "1",
                                "-extfile", "srv.ext", "-out", "srv.pem", NULL};
    if (run_openssl(ca) || run_openssl(csr) || run_openssl(sign)) {
        certs_remove();
        return -1;
    }
    return 0;
}

/* ---- embedded broker in a child process -------------------------------------- */

/* In the broker child: the certificate directory is the parent's to remove. */
static void certs_forget(void)
{
    for (int i = 0; i < 3; i++)
        if (cert_sig_set[i])
            sigaction(cert_sigs[i], &cert_sig_old[i], NULL);
}

/* The 1-minute load average (/proc/loadavg), -1 if unknown: the machine
 * may be shared, and the figures are only as quiet as it was. */
static double loadavg1(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* Real producers READY now (upulsar_producer_list()). */
static int count_ready(upulsar_producer_t *p)
{
    size_t n = 0;
    if (upulsar_producer_list(p, NULL, 0, &n) || n == 0)
        return 0;
    upulsar_producer_info_t *pi = calloc(n, sizeof *pi);
    int ready = 0;
    if (pi && upulsar_producer_list(p, pi, n, &n) == UPULSAR_OK)
        for (size_t i = 0; i < n; i++)
            ready += pi[i].state == UPULSAR_STATE_READY;
    free(pi);
    return ready;
}

/* ---- main -------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"url", 1, 0, 'u'},       {"topic", 1, 0, 'T'},      {"partitions", 1, 0, 'p'},
        {"threads", 1, 0, 't'},   {"size", 1, 0, 's'},        {"rate", 1, 0, 'r'},
        {"seconds", 1, 0, 'd'},   {"messages", 1, 0, 'n'},    {"batch-max-messages", 1, 0, 1},
        {"batch-max-bytes", 1, 0, 2}, {"batch-delay-ms", 1, 0, 3}, {"compression", 1, 0, 4},
        {"keyed", 0, 0, 5},       {"producers-per-partition", 1, 0, 6},
        {"io-threads", 1, 0, 7},  {"json", 0, 0, 8},          {"quiet", 0, 0, 'q'},
        {"warmup", 1, 0, 9},      {"queue-bytes", 1, 0, 10},      {"help", 0, 0, 'h'},
        {"tls", 0, 0, 11},        {"tls-ca", 1, 0, 12},       {"batch-mode", 1, 0, 13}, {"set", 1, 0, 14},
        {"idle", 1, 0, 15},       {"send-many", 1, 0, 16},   {"ceiling", 0, 0, 17},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "p:t:s:r:d:n:qh", lo, NULL)) != -1) {
        switch (c) {
        case 'u': opt.url = optarg; break;
        case 'T': opt.topic = optarg; break;
        case 'p': opt.partitions = atoi(optarg); break;
        case 't': opt.threads = atoi(optarg); break;
        case 's': opt.size = atoi(optarg); break;
        case 'r': opt.rate = atof(optarg); break;
        case 'd': opt.seconds = atof(optarg); break;
        case 'n': opt.messages = strtoull(optarg, NULL, 10); break;
        case 1: opt.batch_max_messages = atoi(optarg); break;
        case 2: opt.batch_max_bytes = atoi(optarg); break;
        case 3: opt.batch_delay_ms = optarg; break;
        case 13: opt.batch_mode = optarg; break;
        case 14:
            if (opt.nsets == 16 || !strchr(optarg, '=')) {
                fprintf(stderr, "--set KEY=VALUE, at most 16\n");
                return 2;
            }
            opt.sets[opt.nsets++] = optarg;
            break;
        case 4: opt.compression = optarg; break;
        case 5: opt.keyed = 1; break;
        case 6: opt.producers_per_partition = atoi(optarg); break;
        case 7: opt.io_threads = atoi(optarg); break;
        case 8: opt.json = 1; break;
        case 9: opt.warmup = atof(optarg); break;
        case 10: opt.queue_bytes = optarg; break;
        case 11: opt.tls = 1; break;
        case 12: opt.tls_ca = optarg; break;
        case 15: opt.idle = atof(optarg); break;
        case 16: opt.send_many = atoi(optarg); break;
        case 17: opt.ceiling = 1; break;
        case 'q': opt.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    const char *bad = opt.threads < 1 || opt.threads > 256 ? "-t/--threads must be 1 to 256"
                      : opt.size < 0                       ? "-s/--size must be 0 or more"
                      : opt.partitions < 0                 ? "-p/--partitions must be 0 or more"
                      : !(opt.seconds > 0)                 ? "-d/--seconds must be more than 0"
                      : !(opt.warmup >= 0)                 ? "--warmup must be 0 or more"
                      : !(opt.idle >= 0)                   ? "--idle must be 0 or more"
                      : opt.send_many < 0 || opt.send_many > 1000000
                          ? "--send-many must be 0 to 1000000"
                          : NULL;
    if (bad) {
        fprintf(stderr, "upulsar-perf: %s (see --help)\n", bad);
        return 2;
    }
    bool url_tls = opt.url && strncmp(opt.url, "pulsar+ssl://", 13) == 0;
    if (opt.ceiling && (opt.rate > 0 || opt.tls || url_tls)) {
        fprintf(stderr, "upulsar-perf: --ceiling compares max rates over plain TCP: not with "
                        "--rate, --tls or a pulsar+ssl:// URL\n");
        return 2;
    }
    if (opt.tls && opt.url) {
        fprintf(stderr, "upulsar-perf: --tls is for the embedded broker; with --url give a "
                        "pulsar+ssl:// URL (and --tls-ca FILE if needed)\n");
        return 2;
    }
    if (opt.tls_ca && !url_tls) {
        fprintf(stderr, "upulsar-perf: --tls-ca needs --url pulsar+ssl://...%s\n",
                opt.tls ? " (--tls makes its own CA)" : "");
        return 2;
    }
    for (int i = 0; i < 1000; i++)
        snprintf(keys[i], sizeof keys[i], "key-%d", i);

    char url[256];
    if (opt.url) {
        snprintf(url, sizeof url, "%s", opt.url);
    } else {
        if (opt.tls && certs_make())
            return 1;
        if (broker_fork(opt.tls ? cert_path[CERT_SRV] : NULL,
                        opt.tls ? cert_path[CERT_SRV_KEY] : NULL, opt.topic, opt.partitions,
                        certs_forget, url, sizeof url)) {
            fprintf(stderr, "cannot start the embedded broker%s\n", opt.tls ? " with TLS" : "");
            return 1;
        }
    }
    const char *transport = opt.tls || url_tls ? "tls" : "plain";
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double load_start = loadavg1();

    upulsar_conf_t *conf = upulsar_conf_new();
    char err[256], num[32];
    int fail_rc = 1;
    /* a value the library refuses is a usage error (exit 2) */
#define SET(k, v)                                                                    \
    do {                                                                             \
        if (upulsar_conf_set(conf, k, v, err, sizeof err) != UPULSAR_CONF_OK) {      \
            fprintf(stderr, "upulsar-perf: %s\n", err);                              \
            fail_rc = 2;                                                             \
            goto fail;                                                               \
        }                                                                            \
    } while (0)
    SET("service.url", url);
    SET("block.if.queue.full", "true");
    SET("compression", opt.compression);
    SET("batch.max.delay.ms", opt.batch_delay_ms);
    if (opt.batch_mode)
        SET("batch.mode", opt.batch_mode);
    snprintf(num, sizeof num, "%d", opt.batch_max_messages);
    SET("batch.max.messages", num);
    snprintf(num, sizeof num, "%d", opt.batch_max_bytes);
    SET("batch.max.bytes", num);
    snprintf(num, sizeof num, "%d", opt.producers_per_partition);
    SET("producers.per.partition", num);
    snprintf(num, sizeof num, "%d", opt.io_threads);
    SET("io.threads", num);
    if (opt.queue_bytes)
        SET("queue.buffer.bytes", opt.queue_bytes);
    if (opt.partitions > 1024) { /* partitions.max's default */
        snprintf(num, sizeof num, "%d", opt.partitions);
        SET("partitions.max", num);
    }
    if (opt.tls)
        SET("tls.ca.file", cert_path[CERT_CA]);
    else if (opt.tls_ca)
        SET("tls.ca.file", opt.tls_ca);
    /* --set last: it overrides the options above and the harness's own */
    for (int i = 0; i < opt.nsets; i++) {
        char key[128];
        const char *eq = strchr(opt.sets[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - opt.sets[i]), opt.sets[i]);
        SET(key, eq + 1);
    }
    /* what is in effect (the library's default when not given, or what
     * --set made of it), for the summary */
    if (upulsar_conf_get(conf, "batch.mode", batch_mode_eff, sizeof batch_mode_eff) !=
        UPULSAR_CONF_OK)
        snprintf(batch_mode_eff, sizeof batch_mode_eff, "?");
    if (upulsar_conf_get(conf, "compression", compression_eff, sizeof compression_eff) !=
        UPULSAR_CONF_OK)
        snprintf(compression_eff, sizeof compression_eff, "?");
    if (upulsar_conf_get(conf, "batch.max.delay.ms", delay_eff, sizeof delay_eff) !=
        UPULSAR_CONF_OK)
        snprintf(delay_eff, sizeof delay_eff, "?");

    upulsar_client_t *client;
    if (upulsar_client_new(conf, &client)) {
        fprintf(stderr, "client: %s\n", upulsar_last_error());
        goto fail;
    }
    /* start time: upulsar_producer_start() returns once every producer is
     * created on its broker (READY) */
    uint64_t start0 = now_ns();
    if (upulsar_producer_start(client, "perf", opt.topic, opt.partitions, conf, &producer)) {
        fprintf(stderr, "producer: %s\n", upulsar_last_error());
        upulsar_client_destroy(client);
        goto fail;
    }
    double start_ms = (double)(now_ns() - start0) / 1e6;
    int nready = count_ready(producer);
    /* the topic's partitions as the broker has them (0: none), what the
     * figures and the ceiling are about */
    int parts = (int)upulsar_producer_partitions(producer);
    if (!opt.quiet)
        fprintf(stderr, "start: %d partitions, %d producers READY in %.1f ms\n", parts, nready,
                start_ms);
    /* idle cost: the client's CPU time while nothing is sent */
    double idle_cpu_s = 0;
    if (opt.idle > 0) {
        double c0 = cpu_self();
        struct timespec its = {(time_t)opt.idle, (long)((opt.idle - (double)(time_t)opt.idle) * 1e9)};
        while (nanosleep(&its, &its) && errno == EINTR)
            ;
        idle_cpu_s = cpu_self() - c0;
        if (!opt.quiet)
            fprintf(stderr, "idle: %.3f s of client CPU over %.1f s (%.2f %% of one core)\n",
                    idle_cpu_s, opt.idle, 100.0 * idle_cpu_s / opt.idle);
    }

    single_io_thread = opt.io_threads <= 1;
    sender_t *snd = aligned_alloc(64, (size_t)opt.threads * sizeof *snd);
    memset(snd, 0, (size_t)opt.threads * sizeof *snd);
    senders = snd;
    nsenders = opt.threads;
    pthread_t *th = calloc((size_t)opt.threads, sizeof *th);
    for (int i = 0; i < opt.threads; i++) {
        snd[i].id = i;
        snd[i].rate = opt.rate > 0 ? opt.rate / opt.threads : 0;
        snd[i].quota = opt.messages ? opt.messages / (uint64_t)opt.threads +
                                          ((uint64_t)i < opt.messages % (uint64_t)opt.threads)
                                    : 0;
    }
    /* warm-up, then measure */
    uint64_t warm_end = now_ns() + (uint64_t)(opt.warmup * 1e9); /* after start and --idle */
    uint64_t end = warm_end + (uint64_t)(opt.seconds * 1e9);
    uint64_t m_start_ns = 0, m_sent0 = 0, m_acked0 = 0, m_allocs0 = 0;
    double m_cpu0 = 0, m_bcpu0 = 0;
    static uint64_t prev[POW * SUB], cur[POW * SUB], diff[POW * SUB];
    /* the measured window begins (at time @p t, never 0) */
#define MEASURE_BEGIN(t)                                                                 \
    do {                                                                                 \
        m_start_ns = (t) ? (t) : 1;                                                      \
        m_sent0 = sent_total();                                                          \
        m_acked0 = atomic_load(&acked);                                                  \
        m_allocs0 = atomic_load(&n_allocs);                                              \
        m_cpu0 = cpu_self();                                                             \
        m_bcpu0 = broker_pid ? proc_cpu(broker_pid) : 0;                                 \
        atomic_store(&measuring, 1);                                                     \
        hist_snap(&lat, prev);                                                           \
    } while (0)
    /* without a warm-up, from the first send on (a short -n run may be
     * over before the first look below) */
    if (opt.warmup <= 0)
        MEASURE_BEGIN(now_ns());
    for (int i = 0; i < opt.threads; i++)
        pthread_create(&th[i], NULL, sender_main, &snd[i]);
    uint64_t last_ns = now_ns(), last_acked = 0;
    bool done = false;
    while (!done) {
        struct timespec ts = {0, opt.messages ? 10000000 : 100000000};
        nanosleep(&ts, NULL);
        uint64_t t = now_ns();
        if (!m_start_ns && t >= warm_end)
            MEASURE_BEGIN(t);
        if (opt.messages) {
            uint64_t a = atomic_load(&acked) + atomic_load(&failed);
            done = a >= opt.messages;
        } else {
            done = t >= end;
        }
        if (!opt.quiet && (t - last_ns >= 1000000000u || done)) {
            uint64_t a = atomic_load(&acked);
            double dt = (double)(t - last_ns) / 1e9;
            double rate = (double)(a - last_acked) / dt;
            uint64_t pct[2] = {0, 0}, nlat = 0;
            if (m_start_ns) {
                hist_snap(&lat, cur);
                for (unsigned i = 0; i < POW * SUB; i++)
                    nlat += diff[i] = cur[i] - prev[i];
                memcpy(prev, cur, sizeof prev);
                const double q[2] = {0.5, 0.99};
                hist_pct(diff, q, pct, 2);
            }
            /* "-" for a second without receipts measured (the warm-up's
             * are not recorded), not a latency of 0 */
            char l50[24] = "-", l99[24] = "-";
            if (nlat) {
                snprintf(l50, sizeof l50, "%" PRIu64, pct[0]);
                snprintf(l99, sizeof l99, "%" PRIu64, pct[1]);
            }
            uint64_t s = sent_total();
            fprintf(stderr,
                    "%6.1fs  rate %9.0f msg/s  %7.2f MB/s  pending %8" PRIu64
                    "  lat_us p50 %6s p99 %7s  err %" PRIu64 "%s\n",
                    (double)t / 1e9, rate, rate * opt.size / 1e6, s - a - atomic_load(&failed),
                    l50, l99, atomic_load(&failed), m_start_ns ? "" : "  (warm-up)");
            last_ns = t;
            last_acked = a;
        }
    }
    atomic_store(&stop_flag, 1);
    uint64_t m_end_ns = now_ns();
    /* -n: the window ends with the last message's receipt */
    uint64_t last = atomic_load(&last_ack_ns);
    if (opt.messages && last && last < m_end_ns && last > m_start_ns)
        m_end_ns = last;
    uint64_t m_sent = sent_total() - m_sent0;
    uint64_t m_acked = atomic_load(&acked) - m_acked0;
    uint64_t m_allocs = atomic_load(&n_allocs) - m_allocs0;
    double m_cpu = cpu_self() - m_cpu0;
    double m_bcpu = broker_pid ? proc_cpu(broker_pid) - m_bcpu0 : 0;
    atomic_store(&measuring, 0);
    for (int i = 0; i < opt.threads; i++)
        pthread_join(th[i], NULL);
    /* the client's memory budget and the most of it taken (statistics) */
    long long mem_budget = 0, mem_peak = 0, ring_bytes = 0;
    char io_backend[16] = "unknown"; /* the client's (statistics) */
    char *sj = NULL;
    /* the library's own figures (statistics, whole run with the warm-up):
     * its sampled send->receipt histogram and the batch sizes */
    const double lq[3] = {0.5, 0.99, 0.999};
    uint64_t lib_lat[3] = {0, 0, 0}, lib_bm[3] = {0, 0, 0}, lib_lat_n = 0;
    if (upulsar_producer_stats_json(producer, &sj) == UPULSAR_OK) {
        lib_lat_n = lib_hist_pct(sj, "latency_us", lq, lib_lat, 3);
        lib_hist_pct(sj, "batch_msgs", lq, lib_bm, 3);
        const char *m = strstr(sj, "\"memory\":{");
        const char *b = m ? strstr(m, "\"budget\":") : NULL, *pk = m ? strstr(m, "\"peak\":") : NULL;
        if (b)
            mem_budget = strtoll(b + strlen("\"budget\":"), NULL, 10);
        if (pk)
            mem_peak = strtoll(pk + strlen("\"peak\":"), NULL, 10);
        /* every ring of the handle has the same size (decided at start) */
        const char *qc = strstr(sj, "\"queue_capacity_bytes\":");
        if (qc)
            ring_bytes = strtoll(qc + strlen("\"queue_capacity_bytes\":"), NULL, 10);
        const char *io = strstr(sj, "\"io_backend\":\"");
        if (io)
            sscanf(io + strlen("\"io_backend\":\""), "%15[a-z_]", io_backend);
        free(sj);
    }
    double load_end = loadavg1();
    uint64_t stop0 = now_ns();
    upulsar_err_t serr = upulsar_producer_stop(producer, 10000);
    double stop_ms = (double)(now_ns() - stop0) / 1e6;
    uint64_t total_sent = sent_total(), total_acked = atomic_load(&acked),
             total_failed = atomic_load(&failed);
    upulsar_client_destroy(client);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss_kb = ru.ru_maxrss, broker_rss_kb = 0;
    broker_stop(&broker_rss_kb);

    double secs = (double)(m_end_ns - (m_start_ns ? m_start_ns : 0)) / 1e9;
    double rate = (double)m_acked / secs;
    hist_snap(&lat, cur);
    const double q[5] = {0.5, 0.95, 0.99, 0.999, 1.0};
    uint64_t pct[5];
    hist_pct(cur, q, pct, 5);
    uint64_t lmax = atomic_load(&lat.max);
    /* a percentile is its bucket's bound: never past the largest seen */
    for (int i = 0; i < 5; i++)
        if (pct[i] > lmax)
            pct[i] = lmax;
    char qb[32];
    upulsar_conf_get(conf, "queue.buffer.bytes", qb, sizeof qb);
    /* the rings' size: the library's (statistics), which may be less than
     * queue.buffer.bytes with many producers */
    double qbytes = ring_bytes > 0 ? (double)ring_bytes : atof(qb);
    int nprod = (parts > 0 ? parts : 1) * opt.producers_per_partition;
    /* what memory can grow to: the budget (messages held) plus the rings
     * at their most resident (1.25 x their size with the commit words) */
    double mem_bound = (double)mem_budget + nprod * 1.25 * qbytes;
    double cpu_per_msg_ns = m_acked ? m_cpu * 1e9 / (double)m_acked : 0;
    double bcpu_per_msg_ns = m_acked ? m_bcpu * 1e9 / (double)m_acked : 0;
    uint64_t enq_total = 0;
    for (int i = 0; i < opt.threads; i++)
        enq_total += snd[i].errors;
    bool ok = serr == UPULSAR_OK && total_failed == 0 && total_acked == total_sent;
    /* nothing measured: the run ended within the warm-up (or its last
     * receipt came before the window began) */
    if (m_start_ns && m_acked == 0 && m_sent == 0)
        m_start_ns = 0;
    if (!m_start_ns) {
        fprintf(stderr,
                "upulsar-perf: the run ended within the --warmup of %g s: nothing was measured "
                "(send more messages with -n, or give --warmup 0)\n",
                opt.warmup);
        ok = false;
    }
    /* the wire's own rate on the same broker, partitions, size and window */
    ceiling_result_t cl = {0};
    bool ceiling_ok = false;
    if (opt.ceiling && m_start_ns) {
        char cerr[512];
        if (ceiling_run(opt.url, opt.topic, parts, opt.size, opt.messages ? secs : opt.seconds,
                        opt.warmup, &cl, cerr, sizeof cerr) == 0)
            ceiling_ok = true;
        else {
            fprintf(stderr, "upulsar-perf: --ceiling: %s\n", cerr);
            ok = false;
        }
    }

    if (!m_start_ns) {
        /* no figures (said above) */
    } else if (opt.json) {
        printf("{\"messages_sent\":%" PRIu64 ",\"messages_acked\":%" PRIu64
               ",\"messages_failed\":%" PRIu64 ",\"send_errors\":%" PRIu64
               ",\"measured_seconds\":%.6f,\"msgs_per_sec\":%.0f,\"mb_per_sec\":%.2f,"
               "\"latency_us\":{\"p50\":%" PRIu64 ",\"p95\":%" PRIu64 ",\"p99\":%" PRIu64
               ",\"p999\":%" PRIu64 ",\"max\":%" PRIu64 "},"
               "\"client_cpu_ns_per_msg\":%.1f,\"broker_cpu_ns_per_msg\":%.1f,"
               "\"client_msgs_per_cpu_sec\":%.0f,\"allocs_per_msg\":%.4f,"
               "\"client_peak_rss_kb\":%ld,\"broker_peak_rss_kb\":%ld,\"client_memory_bound_bytes\":%.0f,"
               "\"client_memory_budget_bytes\":%lld,\"client_memory_peak_bytes\":%lld,"
               "\"start_ms\":%.1f,\"ready_producers\":%d,\"stop_ms\":%.1f,"
               "\"loadavg_start\":%.2f,\"loadavg_end\":%.2f,\"idle_seconds\":%.1f,"
               "\"idle_client_cpu_seconds\":%.3f,"
               "\"partitions\":%d,\"threads\":%d,\"size\":%d,\"rate_limit\":%.0f,"
               "\"compression\":\"%s\",\"keyed\":%s,\"embedded_broker\":%s,"
               "\"transport\":\"%s\",\"io_backend\":\"%s\",\"batch_mode\":\"%s\","
               "\"batch_delay_ms\":\"%s\",\"send_many\":%d,"
               "\"lib_latency_us\":{\"count\":%" PRIu64 ",\"p50\":%" PRIu64 ",\"p99\":%" PRIu64
               ",\"p999\":%" PRIu64 "},\"batch_msgs\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64 "}",
               total_sent, total_acked, total_failed, enq_total, secs, rate,
               rate * opt.size / 1e6, pct[0], pct[1], pct[2], pct[3], lmax, cpu_per_msg_ns,
               bcpu_per_msg_ns, m_cpu > 0 ? (double)m_acked / m_cpu : 0,
               m_acked ? (double)m_allocs / (double)m_acked : 0, rss_kb, broker_rss_kb, mem_bound,
               mem_budget, mem_peak, start_ms, nready, stop_ms, load_start, load_end, opt.idle,
               idle_cpu_s, parts,
               opt.threads, opt.size, opt.rate, compression_eff,
               opt.keyed ? "true" : "false", broker_pid ? "true" : "false", transport, io_backend,
               batch_mode_eff, delay_eff, opt.send_many, lib_lat_n,
               lib_lat[0], lib_lat[1], lib_lat[2], lib_bm[0], lib_bm[1]);
        if (ceiling_ok)
            printf(",\"ceiling\":{\"msgs_per_sec\":%.0f,\"client_cpu_ns_per_msg\":%.1f,"
                   "\"broker_cpu_ns_per_msg\":%.1f,\"measured_seconds\":%.3f,"
                   "\"batch_messages\":%d,\"partitions\":%d,\"size\":%d},"
                   "\"ratio_to_ceiling\":%.4f,\"client_cpu_to_ceiling\":%.3f",
                   cl.msgs_per_sec, cl.client_ns, cl.broker_ns, cl.measured_seconds,
                   cl.batch_messages, cl.partitions, cl.size, rate / cl.msgs_per_sec,
                   cl.client_ns > 0 ? cpu_per_msg_ns / cl.client_ns : 0);
        printf("}\n");
    } else {
        printf("%% %" PRIu64 " messages produced (%" PRIu64 " bytes), %" PRIu64 " acked, %" PRIu64
               " failed in %.3f s measured: %.0f msgs/s and %.2f MB/s, %s compression, %s "
               "transport, %s io%s\n",
               m_sent, m_sent * (uint64_t)opt.size, m_acked, total_failed, secs, rate,
               rate * opt.size / 1e6, compression_eff, transport, io_backend,
               opt.send_many ? ", upulsar_send_many()" : "");
        printf("%% latency send->receipt us: p50 %" PRIu64 "  p95 %" PRIu64 "  p99 %" PRIu64
               "  p99.9 %" PRIu64 "  max %" PRIu64 "\n",
               pct[0], pct[1], pct[2], pct[3], lmax);
        printf("%% library latency_us (sampled, whole run): count %" PRIu64 "  p50 %" PRIu64
               "  p99 %" PRIu64 "  p99.9 %" PRIu64 "; messages per batch: p50 %" PRIu64
               "  p99 %" PRIu64 " (log2 bucket bounds)\n",
               lib_lat_n, lib_lat[0], lib_lat[1], lib_lat[2], lib_bm[0], lib_bm[1]);
        printf("%% cpu per message: client %.0f ns (%.2fM msg/cpu-s), broker %.0f ns%s\n",
               cpu_per_msg_ns, m_cpu > 0 ? (double)m_acked / m_cpu / 1e6 : 0, bcpu_per_msg_ns,
               broker_pid ? "" : " (external broker: not measured)");
        printf("%% allocations per message (client, measured part): %.4f\n",
               m_acked ? (double)m_allocs / (double)m_acked : 0);
        char brss[48] = "not measured (external)";
        if (broker_pid)
            snprintf(brss, sizeof brss, "%.1f MiB", (double)broker_rss_kb / 1024);
        printf("%% peak RSS: client %.1f MiB, broker %s; client memory budget "
               "(memory.limit.bytes, messages in flight) %.1f MiB, peak taken %.1f MiB; rings "
               "%d x %.2f MiB\n",
               (double)rss_kb / 1024, brss,
               (double)mem_budget / 1048576, (double)mem_peak / 1048576, nprod,
               (double)qbytes / 1048576);
        printf("%% start: %d producers READY in %.1f ms; stop took %.1f ms", nready, start_ms,
               stop_ms);
        if (opt.idle > 0)
            printf("; idle: %.3f s of client CPU over %.1f s", idle_cpu_s, opt.idle);
        printf("\n");
        printf("%% load average (1 min): %.2f at start, %.2f before stop; %ld CPUs online\n",
               load_start, load_end, sysconf(_SC_NPROCESSORS_ONLN));
        /* one row of perf/README.md's scale table: partitions, offered
         * load, start, peak RSS (budget), msgs/s, p99, client CPU/msg */
        char offered[32];
        if (opt.rate > 0)
            snprintf(offered, sizeof offered, "%.0f msgs/s", opt.rate);
        else
            snprintf(offered, sizeof offered, "max rate");
        printf("%% row: | %d | %s | %.0f ms | %.1f MiB (%.0f MiB) | %.0f | %" PRIu64
               " us | %.0f ns | %.2f / %.2f |\n",
               parts, offered, start_ms, (double)rss_kb / 1024,
               (double)mem_budget / 1048576, rate, pct[2], cpu_per_msg_ns, load_start, load_end);
        if (ceiling_ok)
            printf("%% ceiling (upulsar-ceiling after this run, same broker, partitions, size and "
                   "seconds, %d messages per frame): %.0f msgs/s at %.0f ns of client CPU per "
                   "message; ratio upulsar/ceiling %.3f, client CPU %.2fx the ceiling's\n",
                   cl.batch_messages, cl.msgs_per_sec, cl.client_ns, rate / cl.msgs_per_sec,
                   cl.client_ns > 0 ? cpu_per_msg_ns / cl.client_ns : 0);
        if (ceiling_ok && opt.url)
            printf("%% (with --url the ceiling wrote to the broker after this run, on top of what "
                   "this run left there; a broker that slows down as it fills makes the ratio "
                   "too high)\n");
        printf("%% totals: sent %" PRIu64 ", acked %" PRIu64 ", failed %" PRIu64
               ", send errors %" PRIu64 ", stop: %s\n",
               total_sent, total_acked, total_failed, enq_total, upulsar_err_name(serr));
    }
    free(snd);
    free(th);
    upulsar_conf_destroy(conf);
    return ok ? 0 : 1;
fail:
    upulsar_conf_destroy(conf);
    broker_stop(NULL);
    return fail_rc;
}
