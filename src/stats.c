/* stats.c -- statistics: per-producer histograms written by the loop, the
 * JSON snapshot (upulsar_producer_stats_json) and the periodic callback run
 * by the watchdog. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "err.h"
#include "io_backend.h"
#include "producer_int.h"
#include "rp_state.h"
#include "stats.h"

static unsigned log2_bucket(uint64_t v)
{
    unsigned b = v ? 64u - (unsigned)__builtin_clzll(v) : 0; /* v in (2^(b-1), 2^b] */
    return b < UP_HIST_BUCKETS ? b : UP_HIST_BUCKETS - 1;
}

/* one writer per producer (its loop): a relaxed load + store is exact */
static void bump(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

void up_stats_batch_acked(up_rp_t *rp, uint32_t msgs, uint64_t rtt_us)
{
    bump(&rp->h_batch_msgs[log2_bucket(msgs)]);
    bump(&rp->h_batch_rtt[log2_bucket(rtt_us)]);
}

static unsigned lat_bucket(uint64_t v)
{
    if (v < UP_LAT_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= 4 */
    unsigned idx = (msb - 3) * UP_LAT_SUB + (unsigned)(v >> (msb - 4)) % UP_LAT_SUB;
    return idx < UP_LAT_BUCKETS ? idx : UP_LAT_BUCKETS - 1;
}

/* The largest value bucket @p idx holds. */
static uint64_t lat_upper(unsigned idx)
{
    if (idx < UP_LAT_SUB)
        return idx;
    unsigned msb = idx / UP_LAT_SUB + 3, sub = idx % UP_LAT_SUB;
    return ((uint64_t)(UP_LAT_SUB + sub + 1) << (msb - 4)) - 1;
}

uint64_t up_stats_lat_upper(unsigned idx) { return lat_upper(idx); }

upulsar_producer_state_t up_stats_group_state(up_group_t *g)
{
    /* as partitioned.c's upulsar_producer_groups() */
    static const int rank[] = {[UPULSAR_STATE_READY] = 0, [UPULSAR_STATE_CONNECTING] = 1,
                               [UPULSAR_STATE_BACKOFF] = 2, [UPULSAR_STATE_CLOSED] = 3,
                               [UPULSAR_STATE_FAILED] = 4};
    if (atomic_load(&g->failed))
        return UPULSAR_STATE_FAILED;
    upulsar_producer_state_t st = UPULSAR_STATE_READY;
    for (int i = 0; i < g->nrps; i++) {
        upulsar_producer_state_t s = up_rp_public_state(g->rps[i]);
        if (rank[s] > rank[st])
            st = s;
    }
    return st;
}

void up_stats_batch_bytes(up_rp_t *rp, const up_batch_t *b)
{
    /* the last chunk of a message an earlier chunk of which failed: the
     * message fails (producer.c, up_rp_resolve_batch) */
    if (b->chunk == UP_CHUNK_LAST && rp->chunk_err)
        return;
    if (b->payload_bytes)
        atomic_store_explicit(&rp->acked_bytes,
                              atomic_load_explicit(&rp->acked_bytes, memory_order_relaxed) +
                                  b->payload_bytes,
                              memory_order_relaxed);
}

void up_stats_latency(up_rp_t *rp, uint64_t sent_us, uint64_t now_us)
{
    uint64_t v = now_us > sent_us ? now_us - sent_us : 0;
    bump(&rp->h_lat[lat_bucket(v)]);
    if (v)
        atomic_store_explicit(&rp->lat_sum_us,
                              atomic_load_explicit(&rp->lat_sum_us, memory_order_relaxed) + v,
                              memory_order_relaxed);
}

/* failed_by[] slot of @p err: library errors -1..-31 in 1..31, broker
 * errors 1000..1031 in 32..63, anything else in 0 */
unsigned up_stats_err_slot(upulsar_err_t err)
{
    int e = (int)err;
    if (e < 0 && e >= -31)
        return (unsigned)-e;
    if (e >= UPULSAR_ERR_BROKER_BASE && e < UPULSAR_ERR_BROKER_BASE + 32)
        return 32u + (unsigned)(e - UPULSAR_ERR_BROKER_BASE);
    return 0;
}

upulsar_err_t up_stats_slot_err(unsigned slot)
{
    if (slot == 0 || slot >= UP_ERR_SLOTS)
        return UPULSAR_OK;
    return slot < 32 ? (upulsar_err_t) - (int)slot
                     : (upulsar_err_t)(UPULSAR_ERR_BROKER_BASE + (int)slot - 32);
}

void up_stats_failed(up_rp_t *rp, upulsar_err_t err, uint64_t n)
{
    if (!n)
        return;
    atomic_fetch_add_explicit(&rp->failed_msgs, n, memory_order_relaxed);
    atomic_fetch_add_explicit(&rp->failed_by[up_stats_err_slot(err)], n, memory_order_relaxed);
}

void up_stats_no_room(up_rp_t *rp, int reason, int refused)
{
    if (reason < 0 || reason >= UP_ROOM_REASONS)
        return;
    /* a wait: what send.c does next (block.if.queue.full, never on a
     * library thread) */
    if (!refused && !(rp_conf(rp)->block_if_queue_full && up_thread_role() == UP_THREAD_APP))
        return;
    atomic_fetch_add_explicit(&rp->no_room[refused ? 1 : 0][reason], 1, memory_order_relaxed);
}

uint64_t up_stats_accepted(up_rp_t *rp)
{
    /* the loop's count of the records it consumed plus the committed ones
     * waiting in the ring (ring.h, R4 / A4): never below the records
     * committed before the call; two readers may return in either order,
     * so keep the highest returned so far (the figure never goes down) */
    uint64_t n = up_ring_records(&rp->ring);
    uint64_t seen = atomic_load_explicit(&rp->acc_seen, memory_order_relaxed);
    while (n > seen && !atomic_compare_exchange_weak_explicit(&rp->acc_seen, &seen, n,
                                                              memory_order_relaxed,
                                                              memory_order_relaxed))
        ;
    return n > seen ? n : seen;
}

uint64_t up_stats_pending(up_rp_t *rp)
{
    /* resolved first, accepted second (a message is accepted before it
     * resolves); the loads are relaxed, so a message resolving right now
     * may still look resolved before it looks accepted: the clamp */
    uint64_t done = atomic_load_explicit(&rp->acked_msgs, memory_order_relaxed) +
                    atomic_load_explicit(&rp->failed_msgs, memory_order_relaxed);
    uint64_t acc = up_stats_accepted(rp);
    return acc > done ? acc - done : 0;
}

/* ---- a small JSON writer ---- */

typedef struct {
    up_buf_t b;
    int oom;
} js_t;

static void js(js_t *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void js(js_t *j, const char *fmt, ...)
{
    if (j->oom)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || up_buf_reserve(&j->b, (size_t)n + 1)) {
        j->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf((char *)j->b.data + j->b.len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    j->b.len += (size_t)n;
}

/* JSON string: names and topics are printable ASCII in practice; escape
 * quotes, backslashes and control characters anyway. */
static void js_str(js_t *j, const char *s)
{
    js(j, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            js(j, "\\%c", ch);
        else if (ch < 0x20)
            js(j, "\\u%04x", ch);
        else
            js(j, "%c", ch);
    }
    js(j, "\"");
}

static void js_hist(js_t *j, const char *name, _Atomic uint64_t *h)
{
    uint64_t c[UP_HIST_BUCKETS], total = 0;
    for (unsigned i = 0; i < UP_HIST_BUCKETS; i++)
        total += c[i] = atomic_load_explicit(&h[i], memory_order_relaxed);
    uint64_t p50 = 0, p99 = 0, seen = 0;
    for (unsigned i = 0; i < UP_HIST_BUCKETS && total; i++) {
        seen += c[i];
        uint64_t upper = i ? (uint64_t)1 << (i - 1) : 0;
        if (!p50 && seen * 2 >= total)
            p50 = upper;
        if (!p99 && seen * 100 >= total * 99)
            p99 = upper;
    }
    js(j, "\"%s\":{\"count\":%llu,\"p50\":%llu,\"p99\":%llu,\"buckets\":[", name,
       (unsigned long long)total, (unsigned long long)p50, (unsigned long long)p99);
    int first = 1;
    for (unsigned i = 0; i < UP_HIST_BUCKETS; i++)
        if (c[i]) {
            js(j, "%s[%llu,%llu]", first ? "" : ",",
               (unsigned long long)(i ? (uint64_t)1 << (i - 1) : 0), (unsigned long long)c[i]);
            first = 0;
        }
    js(j, "]}");
}

/* "latency_us":{count, sum, p50, p90, p99, p999, buckets [[upper, count]...]}:
 * percentiles are the upper bound of the bucket they fall in */
static void js_lat(js_t *j, up_rp_t *rp)
{
    uint64_t c[UP_LAT_BUCKETS], total = 0;
    for (unsigned i = 0; i < UP_LAT_BUCKETS; i++)
        total += c[i] = atomic_load_explicit(&rp->h_lat[i], memory_order_relaxed);
    static const unsigned per_mille[4] = {500, 900, 990, 999};
    uint64_t pct[4] = {0, 0, 0, 0}, seen = 0;
    int k = 0;
    for (unsigned i = 0; i < UP_LAT_BUCKETS && total && k < 4; i++) {
        seen += c[i];
        while (k < 4 && seen * 1000 >= total * per_mille[k])
            pct[k++] = lat_upper(i);
    }
    js(j, "\"latency_us\":{\"count\":%llu,\"sum\":%llu,\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,"
          "\"p999\":%llu,\"buckets\":[",
       (unsigned long long)total,
       (unsigned long long)atomic_load_explicit(&rp->lat_sum_us, memory_order_relaxed),
       (unsigned long long)pct[0], (unsigned long long)pct[1], (unsigned long long)pct[2],
       (unsigned long long)pct[3]);
    int first = 1;
    for (unsigned i = 0; i < UP_LAT_BUCKETS; i++)
        if (c[i]) {
            js(j, "%s[%llu,%llu]", first ? "" : ",", (unsigned long long)lat_upper(i),
               (unsigned long long)c[i]);
            first = 0;
        }
    js(j, "]}");
}

/* "memory":{...}: the client's memory.limit.bytes budget and its batch
 * pools (upulsar.h, upulsar_producer_stats_json) */
static void memory_json(js_t *j, struct upulsar_client *c)
{
    uint64_t pool = 0;
    for (int i = 0; i < c->nloops; i++)
        pool += atomic_load_explicit(&c->loops[i].pool_bytes_pub, memory_order_relaxed);
    js(j, "\"memory\":{\"budget\":%lld,\"in_use\":%lld,\"peak\":%lld,\"batch_pool_bytes\":%llu}",
       (long long)c->conf.memory_limit_bytes,
       (long long)atomic_load_explicit(&c->mem_used, memory_order_relaxed),
       (long long)atomic_load_explicit(&c->mem_peak, memory_order_relaxed),
       (unsigned long long)pool);
}

static void producer_json(js_t *j, struct upulsar_producer *h)
{
    js(j, "{\"topic\":");
    js_str(j, h->topic);
    js(j, ",\"partitions\":%d,\"ts_ms\":%llu,\"io_backend\":\"%s\",", h->npart,
       (unsigned long long)up_wall_ms(), h->client->io->name);
    memory_json(j, h->client);
    js(j, ",\"groups\":[");
    for (int g = 0; g < h->ngroups; g++) {
        up_group_t *grp = &h->groups[g];
        int gf = atomic_load(&grp->failed);
        js(j, "%s{\"partition\":%d,\"topic\":", g ? "," : "", grp->partition);
        js_str(j, grp->topic);
        js(j, ",\"state\":\"%s\",\"failed\":", upulsar_state_name(up_stats_group_state(grp)));
        js_str(j, gf ? upulsar_err_name((upulsar_err_t)gf) : "");
        js(j, ",\"producers\":[");
        for (int i = 0; i < grp->nrps; i++) {
            up_rp_t *rp = grp->rps[i];
            uint64_t pending = up_stats_pending(rp), accepted = up_stats_accepted(rp);
            uint64_t sent = atomic_load(&rp->sent_msgs), acked = atomic_load(&rp->acked_msgs),
                     failed = atomic_load(&rp->failed_msgs);
            js(j, "%s{\"name\":", i ? "," : "");
            js_str(j, up_rp_name(rp));
            char broker[sizeof rp->broker];
            pthread_mutex_lock(&rp->broker_lock);
            snprintf(broker, sizeof broker, "%s", rp->broker);
            pthread_mutex_unlock(&rp->broker_lock);
            js(j, ",\"broker\":");
            js_str(j, broker);
            js(j, ",\"connection\":%d", rp->conn_slot);
            js(j, ",\"state\":\"%s\",\"accepted\":%llu,\"sent\":%llu,\"acked\":%llu,"
                  "\"failed\":%llu,\"pending\":%llu,\"acked_bytes\":%llu,"
                  "\"timed_out\":%llu,\"resent_batches\":%llu,"
                  "\"reconnects\":%llu,\"unknown_ids\":%llu,\"queue_bytes\":%llu,"
                  "\"ring_resident_bytes\":%llu,\"queue_capacity_bytes\":%llu,"
                  "\"last_sequence_id\":%lld,",
               upulsar_state_name(up_rp_public_state(rp)),
               (unsigned long long)accepted, (unsigned long long)sent,
               (unsigned long long)acked, (unsigned long long)failed,
               (unsigned long long)pending, (unsigned long long)atomic_load(&rp->acked_bytes),
               (unsigned long long)atomic_load(&rp->timed_out),
               (unsigned long long)atomic_load(&rp->resent_batches),
               (unsigned long long)atomic_load(&rp->reconnects),
               (unsigned long long)atomic_load(&rp->unknown_ids),
               (unsigned long long)(up_ring_used(&rp->ring) * UP_RING_CELL),
               (unsigned long long)up_ring_resident_bytes(&rp->ring),
               (unsigned long long)(rp->ring.cap * UP_RING_CELL),
               (long long)atomic_load(&rp->last_acked_seq));
            js_hist(j, "batch_msgs", rp->h_batch_msgs);
            js(j, ",");
            js_hist(j, "batch_rtt_us", rp->h_batch_rtt);
            js(j, ",");
            js_lat(j, rp);
            js(j, "}");
        }
        js(j, "]}");
    }
    js(j, "]}");
}

static upulsar_err_t finish(js_t *j, char **json)
{
    if (j->oom || up_buf_reserve(&j->b, 1)) {
        up_buf_free(&j->b);
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    }
    j->b.data[j->b.len] = '\0';
    *json = (char *)j->b.data;
    return UPULSAR_OK;
}

upulsar_err_t upulsar_producer_stats_json(upulsar_producer_t *h, char **json)
{
    if (!h || !json)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "producer and json must not be NULL");
    js_t j = {UP_BUF_INIT, 0};
    producer_json(&j, h);
    return finish(&j, json);
}

upulsar_err_t upulsar_client_set_stats_cb(upulsar_client_t *c, upulsar_stats_cb_t cb,
                                          void *opaque)
{
    if (!c)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "client is NULL");
    pthread_mutex_lock(&c->lock);
    c->stats_cb = cb;
    c->stats_opaque = opaque;
    pthread_mutex_unlock(&c->lock);
    return UPULSAR_OK;
}

/* @thread watchdog, c->lock NOT held */
void up_stats_tick(struct upulsar_client *c, uint64_t now)
{
    up_log_tick(c, now);
    int iv = c->conf.stats_interval_ms;
    if (iv <= 0 || now < c->stats_next_us)
        return;
    c->stats_next_us = now + (uint64_t)iv * 1000u;
    /* read before opened/closed are: a connection counted open was opened */
    int open, idle;
    up_conn_pool_stats(c, &open, &idle);
    unsigned long long closed = atomic_load(&c->conns_closed),
                       idle_closed = atomic_load(&c->conns_idle_closed),
                       opened = atomic_load(&c->conns_opened);
    pthread_mutex_lock(&c->lock);
    upulsar_stats_cb_t cb = c->stats_cb;
    void *opaque = c->stats_opaque;
    js_t j = {UP_BUF_INIT, 0};
    if (cb) {
        js(&j, "{\"ts_ms\":%llu,\"connections\":{\"open\":%d,\"idle\":%d,\"opened\":%llu,"
               "\"closed\":%llu,\"idle_closed\":%llu},",
           (unsigned long long)up_wall_ms(), open, idle, opened, closed, idle_closed);
        memory_json(&j, c);
        js(&j, ",\"producers\":[");
        /* producers are unlinked (and freed) only under c->lock */
        for (struct upulsar_producer *h = c->producers; h; h = h->next) {
            producer_json(&j, h);
            if (h->next)
                js(&j, ",");
        }
        js(&j, "]}");
    }
    pthread_mutex_unlock(&c->lock);
    char *json = NULL;
    if (!cb) {
        up_buf_free(&j.b);
        return;
    }
    if (finish(&j, &json) == UPULSAR_OK) {
        cb(json, opaque);
        free(json);
    }
}
