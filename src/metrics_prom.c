/* metrics_prom.c -- upulsar_client_metrics_prometheus(): the client's
 * figures in the Prometheus text exposition format (0.0.4). Every metric
 * family is written whole (HELP, TYPE, then its samples), so the
 * per-producer families each walk the producers once. Off the hot path:
 * it reads the counters the engine keeps (stats.c), under the locks the
 * statistics take. METRICS.md documents each metric. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "err.h"
#include "io_backend.h"
#include "rp_state.h"
#include "stats.h"

/* One real producer as a scrape sees it: its handle, and its labels
 * (without braces), worked out once so that every family labels it alike. */
typedef struct {
    struct upulsar_producer *h;
    up_rp_t *rp;
    char *labels;
    bool twin; /* another producer before it has the same labels */
} prom_rp_t;

typedef struct {
    up_buf_t b;
    int oom;
    prom_rp_t *rps; /* every real producer of the client, in walk order */
    size_t nrps;
    const char *cur; /* the labels of the producer being written */
} prom_t;

static void pm(prom_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pm(prom_t *p, const char *fmt, ...)
{
    if (p->oom)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || up_buf_reserve(&p->b, (size_t)n + 1)) {
        p->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf((char *)p->b.data + p->b.len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    p->b.len += (size_t)n;
}

/* A label value: backslash, double quote and line feed escaped. */
static void pm_value(prom_t *p, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            pm(p, "\\%c", *s);
        else if (*s == '\n')
            pm(p, "\\n");
        else
            pm(p, "%c", *s);
    }
}

static void pm_head(prom_t *p, const char *name, const char *type, const char *help)
{
    pm(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Microseconds as seconds, exactly ("1.000250"). */
static void pm_seconds(prom_t *p, uint64_t us)
{
    pm(p, "%llu.%06llu", (unsigned long long)(us / 1000000u),
       (unsigned long long)(us % 1000000u));
}

/* ---- client-wide ---- */

static void client_metrics(prom_t *p, struct upulsar_client *c)
{
    int open, idle;
    up_conn_pool_stats(c, &open, &idle);
    pm_head(p, "upulsar_client_info", "gauge",
            "Always 1: the library version and the io backend of the client.");
    pm(p, "upulsar_client_info{version=\"%s\",io_backend=\"%s\"} 1\n", upulsar_version(),
       c->io->name);
    pm_head(p, "upulsar_client_connections_open", "gauge",
            "Broker connections connected and usable now.");
    pm(p, "upulsar_client_connections_open %d\n", open);
    pm_head(p, "upulsar_client_connections_idle", "gauge",
            "Open connections no producer and no request uses now.");
    pm(p, "upulsar_client_connections_idle %d\n", idle);
    static const struct {
        const char *name, *help;
        size_t off;
    } conns[] = {
        {"upulsar_client_connections_opened_total", "Connections opened since the client was created.",
         offsetof(struct upulsar_client, conns_opened)},
        {"upulsar_client_connections_closed_total",
         "Connections lost or closed since the client was created.",
         offsetof(struct upulsar_client, conns_closed)},
        {"upulsar_client_connections_idle_closed_total",
         "Connections closed by connection.idle.timeout.ms (part of closed).",
         offsetof(struct upulsar_client, conns_idle_closed)},
    };
    for (size_t i = 0; i < sizeof conns / sizeof conns[0]; i++) {
        _Atomic uint64_t *v = (_Atomic uint64_t *)((char *)c + conns[i].off);
        pm_head(p, conns[i].name, "counter", conns[i].help);
        pm(p, "%s %llu\n", conns[i].name,
           (unsigned long long)atomic_load_explicit(v, memory_order_relaxed));
    }
    uint64_t pool = 0;
    for (int i = 0; i < c->nloops; i++)
        pool += atomic_load_explicit(&c->loops[i].pool_bytes_pub, memory_order_relaxed);
    pm_head(p, "upulsar_client_memory_limit_bytes", "gauge",
            "memory.limit.bytes, the budget of messages not yet resolved (0: no bound).");
    pm(p, "upulsar_client_memory_limit_bytes %lld\n", (long long)c->conf.memory_limit_bytes);
    pm_head(p, "upulsar_client_memory_used_bytes", "gauge",
            "Bytes of the memory budget the producers hold now.");
    pm(p, "upulsar_client_memory_used_bytes %lld\n",
       (long long)atomic_load_explicit(&c->mem_used, memory_order_relaxed));
    pm_head(p, "upulsar_client_memory_peak_bytes", "gauge",
            "The highest memory_used_bytes since the client was created.");
    pm(p, "upulsar_client_memory_peak_bytes %lld\n",
       (long long)atomic_load_explicit(&c->mem_peak, memory_order_relaxed));
    pm_head(p, "upulsar_client_batch_pool_bytes", "gauge",
            "Batch buffers the io threads keep for reuse.");
    pm(p, "upulsar_client_batch_pool_bytes %llu\n", (unsigned long long)pool);
}

static void connection_metrics(prom_t *p, struct upulsar_client *c)
{
    pm_head(p, "upulsar_connection_info", "gauge",
            "Always 1, one sample per open broker connection: its broker (host:port), "
            "which of connections.per.broker it is (slot), its io thread, and the broker "
            "behind a proxy (proxy_to, empty without one).");
    pthread_mutex_lock(&c->pool_lock);
    for (size_t i = 0; i < c->npool; i++) {
        up_conn_t *k = c->pool[i];
        if (atomic_load(&k->state) != UP_CONN_OPEN)
            continue;
        pm(p, "upulsar_connection_info{broker=\"");
        pm_value(p, k->host);
        pm(p, ":%d\",slot=\"%d\",io_thread=\"%d\",proxy_to=\"", k->port, k->slot,
           (int)(k->loop - c->loops));
        pm_value(p, k->proxy_to);
        pm(p, "\"} 1\n");
    }
    pthread_mutex_unlock(&c->pool_lock);
}

/* ---- per producer ---- */

/* The labels of the producer being written (prom_rp_t), without braces. */
static void rp_labels(prom_t *p) { pm(p, "%s", p->cur); }

/* The labels of @p rp of @p h: topic, partition and producer (its name;
 * "#<producer id>", unique in the client, while it has none; with
 * @p twin, the name another producer of that topic and partition has
 * too, "<name>#<producer id>"). A malloc'd string, NULL when out of
 * memory. */
static char *labels_of(struct upulsar_producer *h, up_rp_t *rp, bool twin)
{
    prom_t t = {UP_BUF_INIT, 0, NULL, 0, NULL};
    pm(&t, "topic=\"");
    pm_value(&t, h->topic);
    pm(&t, "\",partition=\"%d\",producer=\"", rp->partition);
    const char *name = up_rp_name(rp);
    if (name[0])
        pm_value(&t, name);
    if (!name[0] || twin)
        pm(&t, "#%llu", (unsigned long long)rp->producer_id);
    pm(&t, "\"");
    if (t.oom || up_buf_reserve(&t.b, 1)) {
        up_buf_free(&t.b);
        return NULL;
    }
    t.b.data[t.b.len] = '\0';
    return (char *)t.b.data;
}

static int by_labels(const void *a, const void *b)
{
    const prom_rp_t *x = *(prom_rp_t *const *)a, *y = *(prom_rp_t *const *)b;
    int d = strcmp(x->labels, y->labels);
    return d ? d : (x > y ? -1 : x < y); /* then the latest in walk order first */
}

/* p->rps: every real producer of every handle and its labels. Producers
 * that would share their labels (two handles given one name on one
 * topic, the broker not having refused the second yet: lazy starts) are
 * told apart by their producer ids, but for the last of them in walk
 * order, the one of the handle started first (the newest handle is the
 * first of c->producers), which keeps its series: a series appears once
 * in a scrape (Prometheus refuses the scrape otherwise). (c->lock held) */
static void take_rps(prom_t *p, struct upulsar_client *c)
{
    size_t n = 0, cap = 0;
    for (struct upulsar_producer *h = c->producers; h && !p->oom; h = h->next) {
        int ng = atomic_load_explicit(&h->ngroups, memory_order_acquire);
        up_group_t *groups = atomic_load_explicit(&h->groups, memory_order_acquire);
        for (int g = 0; g < ng && !p->oom; g++)
            for (int i = 0; i < groups[g].nrps && !p->oom; i++) {
                if (n == cap) {
                    size_t nc = cap ? 2 * cap : 64;
                    prom_rp_t *r = realloc(p->rps, nc * sizeof *r);
                    if (!r) {
                        p->oom = 1;
                        break;
                    }
                    p->rps = r;
                    cap = nc;
                }
                up_rp_t *rp = groups[g].rps[i];
                p->rps[n] = (prom_rp_t){h, rp, labels_of(h, rp, false), false};
                p->oom |= p->rps[n].labels == NULL;
                n++;
            }
    }
    p->nrps = n;
    if (p->oom || n < 2)
        return;
    prom_rp_t **order = malloc(n * sizeof *order);
    if (!order) {
        p->oom = 1;
        return;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = &p->rps[i];
    qsort(order, n, sizeof *order, by_labels);
    /* sorted by labels, then by walk position, latest first: a run of
     * equal labels starts with the last of them in walk order */
    for (size_t i = 1, start = 0; i < n; i++) {
        if (strcmp(order[i]->labels, order[start]->labels))
            start = i;
        else
            order[i]->twin = true;
    }
    free(order);
    for (size_t i = 0; i < n && !p->oom; i++)
        if (p->rps[i].twin) {
            char *l = labels_of(p->rps[i].h, p->rps[i].rp, true);
            if (!l) {
                p->oom = 1;
                break;
            }
            free(p->rps[i].labels);
            p->rps[i].labels = l;
        }
}

typedef void (*rp_fn)(prom_t *p, const char *name, struct upulsar_producer *h, up_rp_t *rp);

/* fn for every real producer p->rps holds. (c->lock held) */
static void each_rp(prom_t *p, const char *name, rp_fn fn)
{
    for (size_t i = 0; i < p->nrps && !p->oom; i++) {
        p->cur = p->rps[i].labels;
        fn(p, name, p->rps[i].h, p->rps[i].rp);
    }
}

/* one sample of a plain per-producer value */
static void sample(prom_t *p, const char *name, struct upulsar_producer *h, up_rp_t *rp,
                   uint64_t v)
{
    pm(p, "%s{", name);
    rp_labels(p);
    pm(p, "} %llu\n", (unsigned long long)v);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void f_accepted(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    sample(p, n, h, rp, up_stats_accepted(rp));
}
static void f_acked(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    sample(p, n, h, rp, LOAD(rp->acked_msgs));
}
static void f_failed(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    sample(p, n, h, rp, LOAD(rp->failed_msgs));
}
static void f_bytes(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    sample(p, n, h, rp, LOAD(rp->acked_bytes));
}
static void f_pending(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    sample(p, n, h, rp, up_stats_pending(rp));
}
static void f_queue_bytes(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    sample(p, n, h, rp, up_ring_used(&rp->ring) * UP_RING_CELL);
}
static void f_timed_out(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    sample(p, n, h, rp, LOAD(rp->timed_out));
}
static void f_resent(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    sample(p, n, h, rp, LOAD(rp->resent_batches));
}
static void f_reconnects(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    sample(p, n, h, rp, LOAD(rp->reconnects));
}
static void f_unknown(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    sample(p, n, h, rp, LOAD(rp->unknown_ids));
}
static void f_ready(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    sample(p, n, h, rp, up_rp_public_state(rp) == UPULSAR_STATE_READY);
}

static void f_info(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    char broker[sizeof rp->broker];
    pthread_mutex_lock(&rp->broker_lock);
    snprintf(broker, sizeof broker, "%s", rp->broker);
    pthread_mutex_unlock(&rp->broker_lock);
    pm(p, "%s{", n);
    rp_labels(p);
    pm(p, ",state=\"%s\",broker=\"", upulsar_state_name(up_rp_public_state(rp)));
    pm_value(p, broker);
    pm(p, "\",connection=\"%d\"} 1\n", rp->conn_slot);
}

static void f_errors(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    for (unsigned s = 0; s < UP_ERR_SLOTS; s++) {
        uint64_t v = LOAD(rp->failed_by[s]);
        if (!v)
            continue;
        pm(p, "%s{", n);
        rp_labels(p);
        pm(p, ",error=\"%s\"} %llu\n", s ? upulsar_err_name(up_stats_slot_err(s)) : "other",
           (unsigned long long)v);
    }
}

static const char *const room_reason[UP_ROOM_REASONS] = {
    [UP_ROOM_RING] = "queue", [UP_ROOM_PENDING] = "max_pending", [UP_ROOM_MEMORY] = "memory"};

static void no_room(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp, int which)
{
    for (int r = 0; r < UP_ROOM_REASONS; r++) {
        pm(p, "%s{", n);
        rp_labels(p);
        pm(p, ",reason=\"%s\"} %llu\n", room_reason[r],
           (unsigned long long)LOAD(rp->no_room[which][r]));
    }
}
static void f_waits(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    no_room(p, n, h, rp, 0);
}
static void f_refused(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    no_room(p, n, h, rp, 1);
}

/* The latency histogram's buckets exposed: the upper bounds of sub-buckets
 * 7 and 15 of each power of two from 2^4 to 2^26 us (two per power of
 * two: 23, 31, 47, 63, 95, 127 ... 134217727 us), then +Inf. Each is the
 * bound of a bucket of the engine's histogram, so the counts are exact. */
static void f_latency(prom_t *p, const char *n, struct upulsar_producer *h, up_rp_t *rp)
{
    uint64_t cnt[UP_LAT_BUCKETS], total = 0;
    for (unsigned i = 0; i < UP_LAT_BUCKETS; i++)
        total += cnt[i] = LOAD(rp->h_lat[i]);
    uint64_t cum = 0;
    unsigned next = 0;
    for (unsigned msb = 4; msb <= 26; msb++)
        for (unsigned sub = 7; sub < UP_LAT_SUB; sub += 8) {
            unsigned idx = (msb - 3) * UP_LAT_SUB + sub;
            for (; next <= idx; next++)
                cum += cnt[next];
            pm(p, "%s_bucket{", n);
            rp_labels(p);
            pm(p, ",le=\"");
            pm_seconds(p, up_stats_lat_upper(idx));
            pm(p, "\"} %llu\n", (unsigned long long)cum);
        }
    pm(p, "%s_bucket{", n);
    rp_labels(p);
    pm(p, ",le=\"+Inf\"} %llu\n", (unsigned long long)total);
    pm(p, "%s_sum{", n);
    rp_labels(p);
    pm(p, "} ");
    pm_seconds(p, LOAD(rp->lat_sum_us));
    pm(p, "\n%s_count{", n);
    rp_labels(p);
    pm(p, "} %llu\n", (unsigned long long)total);
}

static const struct family {
    const char *name, *type, *help;
    rp_fn fn;
} families[] = {
    {"upulsar_producer_info", "gauge",
     "Always 1: the producer's state (CONNECTING, READY, BACKOFF, FAILED, CLOSED), the broker "
     "it was last created on and which of connections.per.broker it uses.",
     f_info},
    {"upulsar_producer_ready", "gauge", "1 while the producer is READY on its broker, else 0.",
     f_ready},
    {"upulsar_producer_messages_accepted_total", "counter",
     "Messages upulsar_send() and upulsar_send_many() accepted.", f_accepted},
    {"upulsar_producer_messages_acked_total", "counter",
     "Messages the broker acknowledged.", f_acked},
    {"upulsar_producer_messages_failed_total", "counter",
     "Messages resolved with an error (any kind; by kind: upulsar_producer_errors_total).",
     f_failed},
    {"upulsar_producer_errors_total", "counter",
     "Messages resolved with an error, by error (upulsar_err_name()); only errors seen.",
     f_errors},
    {"upulsar_producer_acked_bytes_total", "counter",
     "Payload bytes of the messages the broker acknowledged.", f_bytes},
    {"upulsar_producer_pending_messages", "gauge",
     "Messages accepted and not resolved yet: in the queue (ring), batched or in flight.",
     f_pending},
    {"upulsar_producer_queue_bytes", "gauge",
     "Bytes of the producer's queue (ring) in use.", f_queue_bytes},
    {"upulsar_producer_send_waits_total", "counter",
     "Sends that found no room and waited for it (block.if.queue.full), by reason: queue "
     "(queue.buffer.bytes), max_pending (max.pending.messages), memory (memory.limit.bytes).",
     f_waits},
    {"upulsar_producer_send_refused_total", "counter",
     "Sends refused with UPULSAR_ERR__QUEUE_FULL (at once, or after waiting send.timeout.ms), "
     "by reason as send_waits_total.",
     f_refused},
    {"upulsar_producer_timed_out_total", "counter", "Messages failed by send.timeout.ms.",
     f_timed_out},
    {"upulsar_producer_resent_batches_total", "counter",
     "Batches written again after the producer was re-created.", f_resent},
    {"upulsar_producer_reconnects_total", "counter",
     "Attempts to re-create the producer on a broker.", f_reconnects},
    {"upulsar_producer_unknown_ids_total", "counter",
     "Messages acknowledged without a position (a resend the broker had stored).", f_unknown},
    {"upulsar_producer_send_latency_seconds", "histogram",
     "Time from upulsar_send() to the broker's receipt, of the messages "
     "latency.sample.every samples.",
     f_latency},
};

upulsar_err_t upulsar_client_metrics_prometheus(upulsar_client_t *c, char **text, size_t *len)
{
    if (!c || !text)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "client and text must not be NULL");
    prom_t p = {UP_BUF_INIT, 0, NULL, 0, NULL};
    client_metrics(&p, c);
    connection_metrics(&p, c);
    /* producers are unlinked (and freed) only under c->lock */
    pthread_mutex_lock(&c->lock);
    take_rps(&p, c);
    uint64_t nrp = p.nrps, pending = 0;
    for (size_t i = 0; i < p.nrps; i++)
        pending += up_stats_pending(p.rps[i].rp);
    pm_head(&p, "upulsar_client_producers", "gauge",
            "Real producers of the client (one per partition and producers.per.partition).");
    pm(&p, "upulsar_client_producers %llu\n", (unsigned long long)nrp);
    pm_head(&p, "upulsar_client_pending_messages", "gauge",
            "Messages accepted and not resolved yet, over every producer.");
    pm(&p, "upulsar_client_pending_messages %llu\n", (unsigned long long)pending);
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        pm_head(&p, families[f].name, families[f].type, families[f].help);
        each_rp(&p, families[f].name, families[f].fn);
    }
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < p.nrps; i++)
        free(p.rps[i].labels);
    free(p.rps);
    if (p.oom || up_buf_reserve(&p.b, 1)) {
        up_buf_free(&p.b);
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    }
    p.b.data[p.b.len] = '\0';
    *text = (char *)p.b.data;
    if (len)
        *len = p.b.len;
    return UPULSAR_OK;
}
