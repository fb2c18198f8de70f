/* upulsar-soak -- bounded soak of the producer supervisor: load and random
 * faults against the embedded test broker, then a full check of what the
 * broker stored against what every callback and future reported.
 *
 *   upulsar-soak [--seconds N] [--messages M] [--threads T] [--partitions P]
 *                [--producers-per-partition K] [--fault-ms MS] [--faults LIST]
 *                [--send-timeout-ms MS] [--seed S] [-v]
 *
 * The run is a sequence of rounds, until --seconds (default 60) have passed
 * (at least one round). A round:
 *  1. starts a test broker and a client (short backoff, 100 ms keep-alive,
 *     no send timeout by default: with only retriable faults every message
 *     must succeed), and a producer over P partitions (default 8, K
 *     producers per partition, default 2);
 *  2. T sender threads (default 4) send M messages in total (default
 *     1,000,000), half of them keyed (1,000 keys), of random sizes; every
 *     message has a delivery callback, every 8th also a future;
 *  3. meanwhile a fault thread injects a random fault about every --fault-ms
 *     (default 50, randomised): connections dropped (all, or one
 *     partition's), broker restarted on its port, a partition unloaded
 *     (CLOSE_PRODUCER), PRODUCER refused a few times then unloaded, receipts
 *     withheld for a while (one partition or all), receipts delayed, a
 *     retriable SEND_ERROR (PersistenceError, ServiceNotReady, UnknownError;
 *     the broker closes the producers as Pulsar fences the topic), pings
 *     ignored, the broker frozen for a moment, connections refused for a
 *     moment (--faults drop,drop-partition,restart,unload,refuse-producer,
 *     hold,delay,send-error,ignore-pings,freeze,refuse-conn picks some;
 *     default all);
 *  4. faults end, every callback and future is awaited (bounded), the
 *     producer stops;
 *  5. the broker's log is read back and checked: each message stored at
 *     most once (duplicated), every acknowledged message stored (lost),
 *     per producer consecutive sequence ids and per producer and sender
 *     thread the send order (out-of-order), every callback/future resolved
 *     exactly once (unresolved), the position each one reported equal to the
 *     stored one or the documented unknown position of a de-duplicated
 *     resend (id mismatches), no failure (failed).
 * With --send-timeout-ms, messages may also fail with MSG_TIMED_OUT (counted
 * as timed out, not failed); such a message may still be stored (once), and
 * a producer's stored sequence ids may skip the ids of expired messages that
 * were never sent (they must still increase).
 * The 1,000,000-message version of tests/test_fault_drop.c is
 *   upulsar-soak --faults drop --messages 1000000 --threads 4 --partitions 8
 *                --producers-per-partition 1 --seconds 0
 * It prints a line per round and a summary; the exit status is 1 if any of
 * lost, duplicated, out-of-order, unresolved, failed, id mismatches is not
 * 0, 2 on a setup error.
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

/* ---- options -------------------------------------------------------------- */

static int opt_seconds = 60;
static uint64_t opt_messages = 1000000;
static int opt_threads = 4;
static int opt_partitions = 8;
static int opt_ppp = 2;
static int opt_fault_ms = 50;
static int opt_send_timeout_ms = 0;
static const char *const fault_names[] = {"drop",      "drop-partition", "restart",
                                          "unload",    "refuse-producer", "hold",
                                          "hold",      "delay",          "send-error",
                                          "ignore-pings", "freeze",      "refuse-conn"};
#define NFAULTS 12
static unsigned opt_faults = (1u << NFAULTS) - 1; /* bit per case of fault_main */
static uint64_t opt_seed;
static int opt_verbose;

#define MAX_THREADS 64
#define NKEYS 1000
#define WAIT_MS 120000 /* bound for callbacks/futures after the faults end */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void die(const char *what)
{
    fprintf(stderr, "upulsar-soak: %s: %s\n", what, upulsar_last_error());
    exit(2);
}

/* ---- per-message bookkeeping ---------------------------------------------- */

enum { ST_NONE = 0, ST_OK = 1, ST_FAILED = 2 };

/* what a callback reported: status, and the position packed as
 * entry (32 bits) | partition (8) | batch index + 1 (16); entry all ones for
 * the unknown position */
typedef struct {
    _Atomic uint8_t status;
    _Atomic uint8_t calls;
    int32_t err;
    uint64_t pos;
} rec_t;

#define POS_UNKNOWN_ENTRY 0xffffffffu

static uint64_t pack_pos(uint64_t entry, int partition, int batch_index)
{
    uint64_t e = entry == UPULSAR_ID_UNKNOWN ? POS_UNKNOWN_ENTRY : (entry & 0xffffffffu);
    return e << 24 | (uint64_t)(partition & 0xff) << 16 | (uint64_t)((batch_index + 1) & 0xffff);
}

typedef struct round round_t;

typedef struct {
    round_t *rd;
    int t;
    uint64_t n;            /* messages of this thread */
    rec_t *recs;           /* [n] */
    upulsar_future_t **futs; /* [n / 8 + 1]: message 8k */
    uint64_t sent;
    uint64_t send_errors;
} sender_t;

struct round {
    upulsar_tb_t *tb;
    char topic[64];
    upulsar_producer_t *p;
    sender_t s[MAX_THREADS];
    _Atomic int senders_done;
    _Atomic uint64_t callbacks;
    uint64_t seed;
    /* fault counters */
    unsigned long f_drop_all, f_drop_topic, f_restart, f_unload, f_refuse_producer, f_hold,
        f_delay, f_send_error, f_ignore_pings, f_freeze, f_refuse_conn, f_restart_failed;
};

static void on_delivery(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    rec_t *r = opaque;
    r->err = err;
    if (!err)
        r->pos = pack_pos(id->entry_id, id->partition, id->batch_index);
    atomic_store_explicit(&r->status, err ? ST_FAILED : ST_OK, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->calls, 1, memory_order_release);
}

static void *sender_main(void *a)
{
    sender_t *s = a;
    round_t *rd = s->rd;
    uint64_t rnd = rd->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(s->t + 1));
    char payload[256], key[16];
    for (uint64_t i = 0; i < s->n; i++) {
        size_t len = 24 + xorshift(&rnd) % 200;
        int n = snprintf(payload, sizeof payload, "%d:%" PRIu64 ":", s->t, i);
        memset(payload + n, 'a' + (int)(i % 26), len - (size_t)n);
        upulsar_send_opts_t o = {.cb = on_delivery, .opaque = &s->recs[i]};
        if (xorshift(&rnd) & 1) {
            snprintf(key, sizeof key, "key-%d", (int)(xorshift(&rnd) % NKEYS));
            o.partition_key = key;
        }
        upulsar_future_t **fp = (i % 8 == 0) ? &s->futs[i / 8] : NULL;
        upulsar_err_t err;
        while ((err = upulsar_send(rd->p, payload, len, &o, fp)) == UPULSAR_ERR__QUEUE_FULL)
            sleep_ms(1);
        if (err) {
            s->send_errors++;
            fprintf(stderr, "send %d:%" PRIu64 " refused: %s (%s)\n", s->t, i,
                    upulsar_err_name(err), upulsar_last_error());
            atomic_store(&s->recs[i].status, ST_FAILED);
            atomic_store(&s->recs[i].calls, 1);
            if (fp)
                *fp = NULL;
            continue;
        }
        s->sent++;
    }
    atomic_fetch_add(&rd->senders_done, 1);
    return NULL;
}

/* ---- faults ----------------------------------------------------------------- */

static void partition_topic(round_t *rd, int part, char *out, size_t size)
{
    snprintf(out, size, "%s-partition-%d", rd->topic, part);
}

static void *fault_main(void *a)
{
    round_t *rd = a;
    upulsar_tb_t *tb = rd->tb;
    uint64_t rnd = rd->seed * 31 + 7;
    while (atomic_load(&rd->senders_done) < opt_threads) {
        uint64_t until = now_ms() + (uint64_t)opt_fault_ms / 2 +
                         xorshift(&rnd) % (uint64_t)(opt_fault_ms + 1);
        while (now_ms() < until && atomic_load(&rd->senders_done) < opt_threads)
            sleep_ms(5);
        if (atomic_load(&rd->senders_done) >= opt_threads)
            break;
        char t[128];
        int part = (int)(xorshift(&rnd) % (uint64_t)opt_partitions);
        partition_topic(rd, part, t, sizeof t);
        unsigned kind;
        do
            kind = (unsigned)(xorshift(&rnd) % NFAULTS);
        while (!(opt_faults & (1u << kind)));
        switch (kind) {
        case 0:
            upulsar_tb_drop_connections(tb, NULL);
            rd->f_drop_all++;
            break;
        case 1:
            upulsar_tb_drop_connections(tb, t);
            rd->f_drop_topic++;
            break;
        case 2:
            if (upulsar_tb_restart(tb) != UPULSAR_OK) {
                rd->f_restart_failed++;
                while (upulsar_tb_restart(tb) != UPULSAR_OK)
                    sleep_ms(10);
            }
            rd->f_restart++;
            break;
        case 3:
            upulsar_tb_unload_topic(tb, t);
            rd->f_unload++;
            break;
        case 4:
            upulsar_tb_fail_producers(tb, t, 1 + (int)(xorshift(&rnd) % 3), 6 /* ServiceNotReady */);
            upulsar_tb_unload_topic(tb, t);
            rd->f_refuse_producer++;
            break;
        case 5:
        case 6: {
            bool all = xorshift(&rnd) & 1;
            upulsar_tb_hold_receipts(tb, all ? NULL : t);
            sleep_ms(10 + (int)(xorshift(&rnd) % 200));
            upulsar_tb_release_receipts(tb, all ? NULL : t);
            rd->f_hold++;
            break;
        }
        case 7:
            upulsar_tb_delay_receipts(tb, 5 + (int)(xorshift(&rnd) % 50));
            sleep_ms(50 + (int)(xorshift(&rnd) % 100));
            upulsar_tb_delay_receipts(tb, 0);
            rd->f_delay++;
            break;
        case 8: {
            static const int codes[] = {2 /* PersistenceError */, 6 /* ServiceNotReady */,
                                        0 /* UnknownError */, 1 /* MetadataError */};
            upulsar_tb_fail_writes(tb, t, 1 + (int)(xorshift(&rnd) % 3),
                                   codes[xorshift(&rnd) % 4]);
            rd->f_send_error++;
            break;
        }
        case 9:
            upulsar_tb_ignore_pings(tb, 1);
            sleep_ms(100 + (int)(xorshift(&rnd) % 300));
            upulsar_tb_ignore_pings(tb, 0);
            rd->f_ignore_pings++;
            break;
        case 10:
            upulsar_tb_freeze(tb, 1);
            sleep_ms(50 + (int)(xorshift(&rnd) % 400));
            upulsar_tb_freeze(tb, 0);
            rd->f_freeze++;
            break;
        case 11:
            upulsar_tb_refuse_connections(tb, 50 + (int)(xorshift(&rnd) % 200));
            upulsar_tb_drop_connections(tb, NULL);
            rd->f_refuse_conn++;
            break;
        }
    }
    /* end every fault still in effect */
    upulsar_tb_release_receipts(tb, NULL);
    upulsar_tb_delay_receipts(tb, 0);
    upulsar_tb_ignore_pings(tb, 0);
    upulsar_tb_freeze(tb, 0);
    upulsar_tb_refuse_connections(tb, 0);
    upulsar_tb_fail_sends(tb, NULL, 0, 0);
    upulsar_tb_fail_producers(tb, NULL, 0, 0);
    for (int i = 0; i < opt_partitions; i++) {
        char t[128];
        partition_topic(rd, i, t, sizeof t);
        upulsar_tb_fail_writes(tb, t, 0, 0);
        upulsar_tb_fail_producers(tb, t, 0, 0);
    }
    return NULL;
}

/* ---- the check ---------------------------------------------------------------- */

typedef struct {
    uint64_t messages, stored, lost, duplicated, out_of_order, unresolved, failed,
        id_mismatch, unknown_ids, foreign, twice, timed_out;
} counts_t;

#define MAX_NAMES 256

typedef struct {
    char name[128];
    int64_t last_seq;
    int64_t last_idx[MAX_THREADS];
} track_t;

static void check_round(round_t *rd, counts_t *c)
{
    uint8_t *seen[MAX_THREADS];
    for (int t = 0; t < opt_threads; t++) {
        seen[t] = calloc(rd->s[t].n ? rd->s[t].n : 1, 1);
        if (!seen[t])
            die("out of memory");
    }
    track_t *tr = calloc(MAX_NAMES, sizeof *tr);
    if (!tr)
        die("out of memory");
    for (int part = 0; part < opt_partitions; part++) {
        char topic[128];
        partition_topic(rd, part, topic, sizeof topic);
        upulsar_tb_snapshot_t *snap;
        if (upulsar_tb_snapshot(rd->tb, topic, &snap) != UPULSAR_OK)
            die("snapshot");
        if (upulsar_tb_snapshot_skipped(snap)) {
            fprintf(stderr, "%s: %zu entries could not be read back\n", topic,
                    upulsar_tb_snapshot_skipped(snap));
            c->foreign += upulsar_tb_snapshot_skipped(snap);
        }
        int ntr = 0;
        size_t n = upulsar_tb_snapshot_count(snap);
        for (size_t j = 0; j < n; j++) {
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(snap, j);
            int t = -1;
            uint64_t i = 0;
            char buf[48];
            size_t bl = m->payload_len < sizeof buf - 1 ? m->payload_len : sizeof buf - 1;
            memcpy(buf, m->payload, bl);
            buf[bl] = 0;
            if (sscanf(buf, "%d:%" SCNu64 ":", &t, &i) != 2 || t < 0 || t >= opt_threads ||
                i >= rd->s[t].n) {
                c->foreign++;
                continue;
            }
            c->stored++;
            if (seen[t][i]++) {
                c->duplicated++;
                if (opt_verbose)
                    fprintf(stderr, "%s: %d:%" PRIu64 " stored again at entry %" PRIu64 "\n",
                            topic, t, i, m->entry_id);
                continue;
            }
            int k = 0;
            while (k < ntr && strcmp(tr[k].name, m->producer_name))
                k++;
            if (k == ntr && ntr < MAX_NAMES) {
                snprintf(tr[k].name, sizeof tr[k].name, "%s", m->producer_name);
                tr[k].last_seq = (int64_t)m->sequence_id - 1;
                for (int x = 0; x < MAX_THREADS; x++)
                    tr[k].last_idx[x] = -1;
                ntr++;
                if (m->sequence_id != 0 && opt_send_timeout_ms <= 0) {
                    c->out_of_order++;
                    fprintf(stderr, "%s: %s starts at sequence id %" PRIu64 "\n", topic,
                            m->producer_name, m->sequence_id);
                }
            }
            if (k < ntr) {
                bool gap_ok = opt_send_timeout_ms > 0 && (int64_t)m->sequence_id > tr[k].last_seq;
                if ((int64_t)m->sequence_id != tr[k].last_seq + 1 && !gap_ok) {
                    c->out_of_order++;
                    if (opt_verbose)
                        fprintf(stderr, "%s: %s sequence id %" PRIu64 " after %" PRId64 "\n",
                                topic, m->producer_name, m->sequence_id, tr[k].last_seq);
                }
                tr[k].last_seq = (int64_t)m->sequence_id;
                if ((int64_t)i <= tr[k].last_idx[t]) {
                    c->out_of_order++;
                    if (opt_verbose)
                        fprintf(stderr, "%s: %s thread %d: %" PRIu64 " after %" PRId64 "\n",
                                topic, m->producer_name, t, i, tr[k].last_idx[t]);
                }
                tr[k].last_idx[t] = (int64_t)i;
            }
            rec_t *r = &rd->s[t].recs[i];
            if (atomic_load(&r->status) == ST_OK) {
                uint64_t want = pack_pos(m->entry_id, part, m->batch_index);
                if ((r->pos >> 24) == POS_UNKNOWN_ENTRY) {
                    c->unknown_ids++;
                    want = (uint64_t)POS_UNKNOWN_ENTRY << 24 | (want & 0xffffff);
                }
                if (r->pos != want) {
                    c->id_mismatch++;
                    if (opt_verbose)
                        fprintf(stderr, "%s: %d:%" PRIu64 " reported %" PRIx64 ", stored %" PRIx64 "\n",
                                topic, t, i, r->pos, want);
                }
            }
        }
        memset(tr, 0, (size_t)ntr * sizeof *tr);
        upulsar_tb_snapshot_free(snap);
    }
    for (int t = 0; t < opt_threads; t++) {
        sender_t *s = &rd->s[t];
        c->messages += s->n;
        for (uint64_t i = 0; i < s->n; i++) {
            rec_t *r = &s->recs[i];
            int calls = atomic_load_explicit(&r->calls, memory_order_acquire);
            int st = atomic_load(&r->status);
            if (calls == 0) {
                c->unresolved++;
                continue;
            }
            if (calls > 1)
                c->twice++;
            if (st == ST_FAILED && r->err == UPULSAR_ERR__MSG_TIMED_OUT && opt_send_timeout_ms > 0)
                c->timed_out++;
            else if (st == ST_FAILED)
                c->failed++;
            else if (!seen[t][i]) {
                c->lost++;
                if (opt_verbose)
                    fprintf(stderr, "lost: %d:%" PRIu64 "\n", t, i);
            }
        }
        free(seen[t]);
    }
    free(tr);
}

/* Wait for every future of the round (bounded) and compare it with the
 * callback of the same message. */
static void check_futures(round_t *rd, counts_t *c, uint64_t deadline)
{
    for (int t = 0; t < opt_threads; t++) {
        sender_t *s = &rd->s[t];
        for (uint64_t i = 0; i < s->n; i += 8) {
            upulsar_future_t *f = s->futs[i / 8];
            if (!f)
                continue;
            uint64_t now = now_ms();
            upulsar_msg_id_t id;
            upulsar_err_t e = upulsar_future_wait(f, now < deadline ? (int)(deadline - now) : 0, &id);
            rec_t *r = &s->recs[i];
            /* the future resolves just before the callback runs: compare
             * once the callback's record is published */
            if (e != UPULSAR_ERR__PENDING && !atomic_load_explicit(&r->calls, memory_order_acquire))
                continue; /* counted as unresolved by check_round */
            if (e == UPULSAR_ERR__PENDING) {
                c->unresolved++;
            } else if ((e == UPULSAR_OK) != (atomic_load(&r->status) == ST_OK) ||
                       (e == UPULSAR_OK &&
                        pack_pos(id.entry_id, id.partition, id.batch_index) != r->pos)) {
                c->id_mismatch++;
                if (opt_verbose)
                    fprintf(stderr, "future %d:%" PRIu64 " disagrees with its callback\n", t, i);
            }
            upulsar_future_release(f);
        }
    }
}

static int all_called(round_t *rd)
{
    uint64_t want = 0;
    for (int t = 0; t < opt_threads; t++)
        want += rd->s[t].sent;
    return atomic_load(&rd->callbacks) >= want;
}

/* ---- a round ---------------------------------------------------------------- */

static void count_cb(round_t *rd)
{
    /* callbacks are counted from the records: cheaper than a shared counter
     * in the callback itself */
    uint64_t n = 0;
    for (int t = 0; t < opt_threads; t++)
        for (uint64_t i = 0; i < rd->s[t].n; i++)
            n += atomic_load_explicit(&rd->s[t].recs[i].calls, memory_order_relaxed) != 0;
    atomic_store(&rd->callbacks, n);
}

static void run_round(int no, counts_t *total, uint64_t *faults_total)
{
    round_t *rd = calloc(1, sizeof *rd);
    if (!rd)
        die("out of memory");
    rd->seed = opt_seed + (uint64_t)no * 0x100000001b3ull;
    snprintf(rd->topic, sizeof rd->topic, "soak-%d", no);
    upulsar_tb_opts_t bo;
    upulsar_tb_opts_init(&bo);
    bo.ping_interval_ms = 1000;
    bo.deduplication = 1; /* the oracle is exactly once across reconnections */
    if (upulsar_tb_start(&bo, &rd->tb) != UPULSAR_OK)
        die("broker start");
    /* a partitioned topic on the broker, as on a cluster (start asks the
     * broker for the count; an undeclared topic is a non-partitioned one) */
    if (opt_partitions > 0 &&
        upulsar_tb_set_partitions(rd->tb, rd->topic, opt_partitions) != UPULSAR_OK)
        die("declaring the topic's partitions");
    char num[32];
    upulsar_conf_t *conf = upulsar_conf_new();
    struct {
        const char *k, *v;
    } kv[] = {{"service.url", upulsar_tb_url(rd->tb)},
              {"backoff.initial.ms", "10"},
              {"backoff.max.ms", "500"},
              {"keepalive.interval.ms", "100"},
              {"connection.timeout.ms", "1000"},
              {"operation.timeout.ms", "2000"},
              {"send.timeout.ms", NULL},
              {"queue.buffer.bytes", "1048576"},
              {"producers.per.partition", NULL}};
    char sto[32];
    snprintf(sto, sizeof sto, "%d", opt_send_timeout_ms);
    kv[6].v = sto;
    snprintf(num, sizeof num, "%d", opt_ppp);
    kv[8].v = num;
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        char err[256];
        if (upulsar_conf_set(conf, kv[i].k, kv[i].v, err, sizeof err) != UPULSAR_CONF_OK) {
            fprintf(stderr, "upulsar-soak: %s: %s\n", kv[i].k, err);
            exit(2);
        }
    }
    upulsar_client_t *client;
    if (upulsar_client_new(conf, &client) != UPULSAR_OK)
        die("client");
    if (upulsar_producer_start(client, "soak", rd->topic, opt_partitions, conf, &rd->p) !=
        UPULSAR_OK)
        die("producer start");
    upulsar_conf_destroy(conf);

    uint64_t per = opt_messages / (uint64_t)opt_threads;
    for (int t = 0; t < opt_threads; t++) {
        sender_t *s = &rd->s[t];
        s->rd = rd;
        s->t = t;
        s->n = per + (t == 0 ? opt_messages % (uint64_t)opt_threads : 0);
        s->recs = calloc(s->n ? s->n : 1, sizeof *s->recs);
        s->futs = calloc(s->n / 8 + 1, sizeof *s->futs);
        if (!s->recs || !s->futs)
            die("out of memory");
    }
    uint64_t t0 = now_ms();
    pthread_t th[MAX_THREADS], ft;
    for (int t = 0; t < opt_threads; t++)
        pthread_create(&th[t], NULL, sender_main, &rd->s[t]);
    pthread_create(&ft, NULL, fault_main, rd);
    for (int t = 0; t < opt_threads; t++)
        pthread_join(th[t], NULL);
    pthread_join(ft, NULL);
    uint64_t t_sent = now_ms();

    /* every callback, bounded */
    uint64_t deadline = now_ms() + WAIT_MS;
    for (;;) {
        count_cb(rd);
        if (all_called(rd) || now_ms() > deadline)
            break;
        sleep_ms(20);
    }
    uint64_t t_done = now_ms();
    counts_t c;
    memset(&c, 0, sizeof c);
    check_futures(rd, &c, deadline);
    upulsar_producer_info_t pi[512];
    size_t np = 0;
    upulsar_producer_list(rd->p, pi, 512, &np);
    uint64_t reconnects = 0;
    for (size_t i = 0; i < np && i < 512; i++)
        reconnects += pi[i].reconnects;
    upulsar_err_t stop_err = upulsar_producer_stop(rd->p, 30000);
    check_round(rd, &c);
    upulsar_tb_stats_t bst;
    upulsar_tb_stats(rd->tb, &bst);
    uint64_t dups = 0;
    for (int part = 0; part < opt_partitions; part++) {
        char t[128];
        partition_topic(rd, part, t, sizeof t);
        upulsar_tb_topic_stats_t ts;
        upulsar_tb_topic_stats(rd->tb, t, &ts);
        dups += ts.duplicates;
    }
    unsigned long faults = rd->f_drop_all + rd->f_drop_topic + rd->f_restart + rd->f_unload +
                           rd->f_refuse_producer + rd->f_hold + rd->f_delay + rd->f_send_error +
                           rd->f_ignore_pings + rd->f_freeze + rd->f_refuse_conn;
    printf("round %d: %" PRIu64 " messages, sent in %.1f s, all resolved %.1f s later; %lu faults "
           "(drop %lu, drop-partition %lu, restart %lu, unload %lu, refuse-producer %lu, hold %lu, "
           "delay %lu, send-error %lu, ignore-pings %lu, freeze %lu, refuse-conn %lu); "
           "%" PRIu64 " re-creations, %" PRIu64 " resends de-duplicated by the broker, %" PRIu64
           " unknown ids; stop %s\n",
           no, c.messages, (double)(t_sent - t0) / 1000.0, (double)(t_done - t_sent) / 1000.0,
           faults, rd->f_drop_all, rd->f_drop_topic, rd->f_restart, rd->f_unload,
           rd->f_refuse_producer, rd->f_hold, rd->f_delay, rd->f_send_error, rd->f_ignore_pings,
           rd->f_freeze, rd->f_refuse_conn, reconnects, dups, c.unknown_ids,
           upulsar_err_name(stop_err));
    printf("round %d: lost %" PRIu64 ", duplicated %" PRIu64 ", out-of-order %" PRIu64
           ", unresolved %" PRIu64 ", failed %" PRIu64 ", id mismatches %" PRIu64
           ", resolved twice %" PRIu64 ", foreign %" PRIu64 "; timed out %" PRIu64 "\n",
           no, c.lost, c.duplicated, c.out_of_order, c.unresolved, c.failed, c.id_mismatch,
           c.twice, c.foreign, c.timed_out);
    fflush(stdout);
    total->messages += c.messages;
    total->stored += c.stored;
    total->lost += c.lost;
    total->duplicated += c.duplicated;
    total->out_of_order += c.out_of_order;
    total->unresolved += c.unresolved;
    total->failed += c.failed;
    total->id_mismatch += c.id_mismatch;
    total->unknown_ids += c.unknown_ids;
    total->foreign += c.foreign;
    total->twice += c.twice;
    total->timed_out += c.timed_out;
    *faults_total += faults;
    upulsar_client_destroy(client);
    upulsar_tb_stop(rd->tb);
    for (int t = 0; t < opt_threads; t++) {
        free(rd->s[t].recs);
        free(rd->s[t].futs);
    }
    free(rd);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: upulsar-soak [--seconds N] [--messages M] [--threads T] [--partitions P]\n"
            "                    [--producers-per-partition K] [--fault-ms MS] [--faults LIST]\n"
            "                    [--send-timeout-ms MS] [--seed S] [-v]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {{"seconds", required_argument, NULL, 'd'},
                                       {"messages", required_argument, NULL, 'n'},
                                       {"threads", required_argument, NULL, 't'},
                                       {"partitions", required_argument, NULL, 'p'},
                                       {"producers-per-partition", required_argument, NULL, 'k'},
                                       {"fault-ms", required_argument, NULL, 'f'},
                                       {"send-timeout-ms", required_argument, NULL, 'T'},
                                       {"faults", required_argument, NULL, 'F'},
                                       {"seed", required_argument, NULL, 's'},
                                       {"verbose", no_argument, NULL, 'v'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    opt_seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20;
    int ch;
    while ((ch = getopt_long(argc, argv, "d:n:t:p:k:f:T:F:s:vh", lo, NULL)) != -1) {
        switch (ch) {
        case 'd': opt_seconds = atoi(optarg); break;
        case 'n': opt_messages = strtoull(optarg, NULL, 10); break;
        case 't': opt_threads = atoi(optarg); break;
        case 'p': opt_partitions = atoi(optarg); break;
        case 'k': opt_ppp = atoi(optarg); break;
        case 'f': opt_fault_ms = atoi(optarg); break;
        case 'T': opt_send_timeout_ms = atoi(optarg); break;
        case 'F': {
            opt_faults = 0;
            char *list = strdup(optarg);
            for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
                 tok = strtok_r(NULL, ",", &save)) {
                unsigned before = opt_faults;
                for (int k = 0; k < NFAULTS; k++)
                    if (!strcmp(tok, fault_names[k]))
                        opt_faults |= 1u << k;
                if (opt_faults == before) {
                    fprintf(stderr, "upulsar-soak: unknown fault \"%s\"\n", tok);
                    usage();
                }
            }
            free(list);
            break;
        }
        case 's': opt_seed = strtoull(optarg, NULL, 0); break;
        case 'v': opt_verbose = 1; break;
        default: usage();
        }
    }
    if (opt_seconds < 0 || opt_threads < 1 || opt_threads > MAX_THREADS || opt_partitions < 1 ||
        opt_partitions > 255 || opt_ppp < 1 || opt_ppp > 8 || opt_fault_ms < 1 ||
        opt_send_timeout_ms < 0 || opt_faults == 0 ||
        opt_messages < (uint64_t)opt_threads)
        usage();
    if (!opt_seed)
        opt_seed = 1;
    printf("upulsar-soak: %d s, rounds of %" PRIu64 " messages, %d threads, %d partitions x %d "
           "producers, a fault every ~%d ms, send timeout %d ms, seed %" PRIu64 "\n",
           opt_seconds, opt_messages, opt_threads, opt_partitions, opt_ppp, opt_fault_ms,
           opt_send_timeout_ms, opt_seed);
    counts_t total;
    memset(&total, 0, sizeof total);
    uint64_t faults = 0;
    uint64_t start = now_ms();
    int rounds = 0;
    do {
        run_round(rounds, &total, &faults);
        rounds++;
    } while (now_ms() - start < (uint64_t)opt_seconds * 1000u);
    double secs = (double)(now_ms() - start) / 1000.0;
    printf("soak: %d rounds, %" PRIu64 " messages in %.1f s, %" PRIu64 " faults, %" PRIu64
           " unknown ids, %" PRIu64 " timed out\n",
           rounds, total.messages, secs, faults, total.unknown_ids, total.timed_out);
    printf("soak: lost %" PRIu64 ", duplicated %" PRIu64 ", out-of-order %" PRIu64
           ", unresolved %" PRIu64 " (failed %" PRIu64 ", id mismatches %" PRIu64
           ", resolved twice %" PRIu64 ", foreign %" PRIu64 ")\n",
           total.lost, total.duplicated, total.out_of_order, total.unresolved, total.failed,
           total.id_mismatch, total.twice, total.foreign);
    bool bad = total.lost || total.duplicated || total.out_of_order || total.unresolved ||
               total.failed || total.id_mismatch || total.twice || total.foreign;
    printf("soak: %s\n", bad ? "FAILED" : "ok");
    return bad ? 1 : 0;
}
