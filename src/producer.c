/* producer.c -- one real Pulsar producer: the caller-side enqueue into its
 * ring, and on the loop thread: batching, the pending queue, receipts,
 * resends and failures. */
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "crc32c.h"
#include "engine.h"
#include "err.h"

/* Room kept in front of a batch's records for the frame header:
 * sizes, BaseCommand{SEND}, magic, CRC, MessageMetadata (with up to
 * UP_REPL_MAX_BYTES of replicate_to names). A header that needs more (long
 * keys) moves the records up when the batch is framed (frame_and_queue). */
#define UP_REPL_MAX_BYTES 512
#define HDR_ROOM 1024

/* Bounds of what an entry carries besides its payload, behind the rule
 * upulsar_send() documents (UPULSAR_MSG_OVERHEAD):
 *  UP_MD_SCALARS  every scalar MessageMetadata field the producer may set
 *                 (sequence ids, times, sizes, counts, compression, chunk
 *                 fields), each with its tag and its longest varint, plus
 *                 the tags and lengths of its strings (127 bytes);
 *  UP_NAME_BOUND  the producer name (rp->name);
 *  UP_UUID_BOUND  a chunk's uuid, "<producer name>-<sequence id>";
 *  UP_SMM_SCALARS a record's size word and its SingleMessageMetadata
 *                 fields besides keys and properties (at most 40 bytes);
 *  UP_HDR_FIXED   frame sizes, BaseCommand{SEND} (at most 64 bytes), magic,
 *                 checksum and metadata size, in front of the metadata. */
#define UP_MD_SCALARS 128
#define UP_NAME_BOUND 128
#define UP_UUID_BOUND (UP_NAME_BOUND + 21)
#define UP_SMM_SCALARS 48
#define UP_HDR_FIXED 96
_Static_assert(UP_MD_SCALARS + UP_NAME_BOUND + UP_SMM_SCALARS <= UPULSAR_MSG_OVERHEAD,
               "an entry's overhead exceeds what upulsar_send() documents");
_Static_assert(UP_MD_SCALARS + UP_NAME_BOUND + UP_UUID_BOUND <= UPULSAR_MSG_OVERHEAD,
               "a chunk's overhead exceeds what upulsar_send() documents");
_Static_assert(UP_NAME_BOUND >= sizeof(((up_rp_t *)0)->name), "producer names fit the bound");
_Static_assert(HDR_ROOM >= UP_HDR_FIXED + UP_MD_SCALARS + UP_NAME_BOUND + UP_REPL_MAX_BYTES +
                               2 * UPULSAR_MAX_REPLICATION_CLUSTERS,
               "a keyless batch's header fits the head room");

static const struct upulsar_conf *rp_conf(const up_rp_t *rp) { return &rp->handle->conf; }

/* ---- creation ------------------------------------------------------------ */

up_rp_t *up_rp_new(struct upulsar_producer *h, int partition, int index, const char *topic,
                   upulsar_err_t *err)
{
    up_rp_t *rp = calloc(1, sizeof *rp);
    if (!rp) {
        *err = up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
        return NULL;
    }
    rp->handle = h;
    rp->client = h->client;
    rp->partition = partition;
    rp->index = index;
    snprintf(rp->topic, sizeof rp->topic, "%s", topic);
    rp->producer_id = atomic_fetch_add(&h->client->next_producer_id, 1);
    /* partitions go round the loops; on each loop, producers go round the
     * connections to a broker */
    int p = partition < 0 ? 0 : partition, nloops = h->client->nloops;
    rp->loop = &h->client->loops[p % nloops];
    rp->conn_slot = (p / nloops * h->conf.producers_per_partition + index) %
                    h->client->conf.connections_per_broker;
    atomic_init(&rp->state, UPULSAR_STATE_CONNECTING);
    atomic_init(&rp->last_acked_seq, -1);
    pthread_mutex_init(&rp->broker_lock, NULL);
    if (up_ring_init(&rp->ring, (size_t)h->conf.queue_buffer_bytes)) {
        pthread_mutex_destroy(&rp->broker_lock);
        free(rp);
        *err = up_seterr(UPULSAR_ERR__NOMEM, "cannot allocate %lld ring bytes",
                         (long long)h->conf.queue_buffer_bytes);
        return NULL;
    }
    rp->backoff_ms = (uint64_t)h->client->conf.backoff_initial_ms; /* a client key */
    rp->wake_cells = up_ring_cells_for((size_t)h->conf.batch_max_bytes);
    return rp;
}

static void batch_free(up_batch_t *b)
{
    free(b->buf);
    free(b->zbuf);
    free(b->done);
    free(b->repl);
    free(b->kkey);
    free(b);
}

void up_batch_unref(up_batch_t *b)
{
    if (--b->outq_refs > 0 || !b->retired)
        return;
    if (!b->rp) {
        batch_free(b);
        return;
    }
    b->next = b->rp->free_batches;
    b->rp->free_batches = b;
}

/* The batch is resolved; recycle it once no connection queue points at it. */
static void batch_retire(up_rp_t *rp, up_batch_t *b)
{
    b->retired = true;
    if (b->outq_refs == 0) {
        b->next = rp->free_batches;
        rp->free_batches = b;
    }
}

static void free_chain(up_batch_t *b)
{
    while (b) {
        up_batch_t *n = b->next;
        if (b->outq_refs > 0) {
            b->rp = NULL; /* the connection queue frees it */
            b->retired = true;
        } else {
            batch_free(b);
        }
        b = n;
    }
}

void up_rp_free(up_rp_t *rp)
{
    if (!rp)
        return;
    if (rp->open)
        free_chain(rp->open);
    free_chain(rp->pend_head);
    free_chain(rp->free_batches);
    up_ring_destroy(&rp->ring);
    pthread_mutex_destroy(&rp->broker_lock);
    free(rp->scratch);
    free(rp);
}

/* ---- limits: max.pending.messages, memory.limit.bytes --------------------- */

/* Counted only when configured (the default path does no extra atomic).
 * Callers add per message; the loop subtracts per resolved batch. */
static inline bool rp_limited(const up_rp_t *rp)
{
    return rp->handle->conf.max_pending_messages > 0 || rp->client->conf.memory_limit_bytes > 0;
}

static void limits_release(up_rp_t *rp, uint64_t n, uint64_t bytes)
{
    if (!rp_limited(rp))
        return;
    if (rp->handle->conf.max_pending_messages > 0)
        atomic_fetch_sub_explicit(&rp->lim_msgs, (int64_t)n, memory_order_relaxed);
    if (rp->client->conf.memory_limit_bytes > 0)
        atomic_fetch_sub_explicit(&rp->client->mem_used, (int64_t)bytes, memory_order_relaxed);
}

/* One attempt to count a message of @p len bytes: 0, or 1 if
 * max.pending.messages, 2 if memory.limit.bytes is reached. */
static int limits_try(up_rp_t *rp, size_t len)
{
    int64_t maxp = rp->handle->conf.max_pending_messages;
    int64_t maxm = rp->client->conf.memory_limit_bytes;
    if (maxp > 0 && atomic_fetch_add_explicit(&rp->lim_msgs, 1, memory_order_relaxed) >= maxp) {
        atomic_fetch_sub_explicit(&rp->lim_msgs, 1, memory_order_relaxed);
        return 1;
    }
    if (maxm > 0) {
        int64_t was = atomic_fetch_add_explicit(&rp->client->mem_used, (int64_t)len,
                                                memory_order_relaxed);
        if (was > 0 && was + (int64_t)len > maxm) {
            atomic_fetch_sub_explicit(&rp->client->mem_used, (int64_t)len, memory_order_relaxed);
            if (maxp > 0)
                atomic_fetch_sub_explicit(&rp->lim_msgs, 1, memory_order_relaxed);
            return 2;
        }
    }
    return 0;
}

static upulsar_err_t limits_reserve(up_rp_t *rp, size_t len)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    int why = limits_try(rp, len);
    if (!why)
        return UPULSAR_OK;
    uint64_t deadline = UINT64_MAX;
    if (cf->block_if_queue_full && cf->send_timeout_ms > 0)
        deadline = up_now_us() + (uint64_t)cf->send_timeout_ms * 1000u;
    unsigned spins = 0;
    /* never in a callback: its thread may be the one that frees room */
    bool block = cf->block_if_queue_full && up_thread_role() == UP_THREAD_APP;
    while (block && why) {
        if (atomic_load_explicit(&rp->handle->closed, memory_order_relaxed))
            return up_seterr(UPULSAR_ERR__CLOSED, "producer is stopping");
        if (atomic_load_explicit(&rp->failed, memory_order_relaxed))
            return up_seterr((upulsar_err_t)atomic_load(&rp->failed), "%s: producer failed",
                             rp->topic);
        if (up_now_us() > deadline)
            break;
        /* what is counted leaves only once acknowledged: push it out */
        atomic_store_explicit(&rp->flush_req, 1, memory_order_relaxed);
        up_loop_wake(rp->loop);
        if (++spins < 8) {
            sched_yield();
        } else {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
        why = limits_try(rp, len);
    }
    if (!why)
        return UPULSAR_OK;
    if (why == 1)
        return up_seterr(UPULSAR_ERR__QUEUE_FULL, "%s: max.pending.messages %d reached",
                         rp->topic, cf->max_pending_messages);
    return up_seterr(UPULSAR_ERR__QUEUE_FULL, "memory.limit.bytes %lld reached",
                     (long long)rp->client->conf.memory_limit_bytes);
}

/* ---- caller side: enqueue ------------------------------------------------- */

/* lazy.start.partitions: the first message for a producer not started yet
 * hands it to the supervisor, which creates it at once (as after a graceful
 * close: no backoff). */
static void lazy_start(up_rp_t *rp)
{
    int one = 1;
    if (!atomic_compare_exchange_strong(&rp->lazy, &one, 2))
        return;
    atomic_store(&rp->closed_by_broker, 1);
    atomic_store(&rp->state, UPULSAR_STATE_BACKOFF);
    up_watchdog_kick(rp->client);
}

static void internal_free(void *payload, void *opaque) { free(payload); }

/* The "do not replicate" marker of the Java client's disableReplication(). */
static const char *const local_only[] = {"__local__"};

static const char *const *repl_names(const upulsar_send_opts_t *o, size_t *n)
{
    if (o->disable_replication) {
        *n = 1;
        return local_only;
    }
    *n = o->replication_clusters_cnt;
    return o->replication_clusters;
}

/* Validate the options that need a meta section and fill it. */
static upulsar_err_t rec_meta(const upulsar_send_opts_t *o, up_rec_meta_t *m)
{
    size_t n;
    const char *const *names = repl_names(o, &n);
    if (n > UPULSAR_MAX_REPLICATION_CLUSTERS)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "more than %d replication clusters",
                         UPULSAR_MAX_REPLICATION_CLUSTERS);
    if (n && !names)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "replication_clusters is NULL");
    for (size_t i = 0; i < n; i++) {
        size_t l = names[i] ? strlen(names[i]) : 0;
        if (l == 0 || l > 255)
            return up_seterr(UPULSAR_ERR__INVALID_ARG,
                             "replication cluster %zu must be 1 to 255 characters", i);
        m->repl_len += (uint32_t)l + 1;
    }
    if (m->repl_len > UP_REPL_MAX_BYTES)
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "replication cluster names longer than %d bytes in total",
                         UP_REPL_MAX_BYTES);
    m->nrepl = (uint16_t)n;
    if (o->flags & UPULSAR_SEND_SEQUENCE_ID) {
        if (o->sequence_id < 0)
            return up_seterr(UPULSAR_ERR__INVALID_ARG, "sequence_id must be >= 0");
        m->seq = (uint64_t)o->sequence_id;
        m->mflags |= UP_META_SEQ;
    }
    if (o->deliver_at_ms)
        m->deliver_at = o->deliver_at_ms;
    else if (o->deliver_after_ms)
        m->deliver_at = up_wall_ms() + o->deliver_after_ms;
    if (m->deliver_at || n)
        m->mflags |= UP_META_SOLO;
    return UPULSAR_OK;
}

/* Write the cluster names of rec_meta() at @p dst; returns their bytes. */
static size_t rec_meta_names(uint8_t *dst, const upulsar_send_opts_t *o)
{
    size_t n, off = 0;
    const char *const *names = repl_names(o, &n);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]) + 1;
        memcpy(dst + off, names[i], l);
        off += l;
    }
    return off;
}

/* The size rule of upulsar_send() (upulsar.h): @p keys and @p props are
 * already bounded (2 * 65535, 1 MiB) and @p repl by UP_REPL_MAX_BYTES, so
 * their sums cannot overflow; @p len is compared before it is added. */
static upulsar_err_t size_check(bool chunking, size_t maxsz, size_t len, size_t keys,
                                size_t props, size_t repl)
{
    size_t meta = props + 2 * keys + repl + UPULSAR_MSG_OVERHEAD;
    if (meta <= maxsz && len <= maxsz - meta)
        return UPULSAR_OK;
    if (!chunking)
        return up_seterr(UPULSAR_ERR__MSG_TOO_LARGE,
                         "message of %zu bytes with %zu bytes of keys and %zu of properties "
                         "exceeds the broker's max_message_size %zu (payload + properties + "
                         "2 x keys + %d must fit; chunking.enabled is off)",
                         len, keys, props, maxsz, UPULSAR_MSG_OVERHEAD);
    if (len > UPULSAR_MAX_CHUNKED_BYTES)
        return up_seterr(UPULSAR_ERR__MSG_TOO_LARGE,
                         "message of %zu bytes exceeds %d bytes, the largest Pulsar carries in "
                         "chunks (total_chunk_msg_size is int32)",
                         len, UPULSAR_MAX_CHUNKED_BYTES);
    if (props + keys + UPULSAR_MSG_OVERHEAD > maxsz / 2)
        return up_seterr(UPULSAR_ERR__MSG_TOO_LARGE,
                         "%zu bytes of keys and %zu of properties leave no room for payload in "
                         "chunks of the broker's max_message_size %zu (with %d bytes of "
                         "metadata they must fit in half of it)",
                         keys, props, maxsz, UPULSAR_MSG_OVERHEAD);
    return UPULSAR_OK;
}

/* Writes pieces of a record into the ring at a running offset. */
typedef struct ring_put {
    up_ring_t *r;
    uint64_t pos;
    size_t off;
} ring_put_t;

static void ring_put(void *ctx, const void *p, size_t len)
{
    ring_put_t *w = ctx;
    up_ring_write(w->r, w->pos, w->off, p, len);
    w->off += len;
}

upulsar_err_t up_rp_enqueue(up_rp_t *rp, const void *payload, size_t len,
                            const upulsar_send_opts_t *o, upulsar_future_t **future)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    int failed = atomic_load_explicit(&rp->failed, memory_order_relaxed);
    if (failed)
        return up_seterr((upulsar_err_t)failed, "%s: producer failed: %s", rp->topic,
                         upulsar_err_str((upulsar_err_t)failed));
    if (atomic_load_explicit(&rp->lazy, memory_order_relaxed) == 1)
        lazy_start(rp);
    int32_t maxsz = atomic_load_explicit(&rp->client->max_message_size, memory_order_relaxed);
    up_rec_t h = {0};
    up_rec_ext_t ext = {0};
    up_rec_meta_t meta = {0};
    size_t meta_len = 0;
    uint32_t flags = 0;
    size_t key_len = 0, okey_len = 0, props_len = 0;
    if (o) {
        if (o->partition_key) {
            key_len = strnlen(o->partition_key, UPULSAR_MAX_KEY_BYTES + 1);
            if (key_len > UPULSAR_MAX_KEY_BYTES)
                return up_seterr(UPULSAR_ERR__INVALID_ARG, "partition_key longer than 65535 bytes");
            flags |= UP_REC_KEY;
        }
        if (o->ordering_key) {
            okey_len = o->ordering_key_len;
            if (okey_len > UPULSAR_MAX_KEY_BYTES || okey_len == 0)
                return up_seterr(UPULSAR_ERR__INVALID_ARG,
                                 "ordering_key must be 1 to 65535 bytes");
        }
        if (o->properties_cnt) {
            if (!o->properties)
                return up_seterr(UPULSAR_ERR__INVALID_ARG, "properties is NULL");
            for (size_t i = 0; i < o->properties_cnt; i++)
                if (!o->properties[i].key || !o->properties[i].value)
                    return up_seterr(UPULSAR_ERR__INVALID_ARG, "property %zu has a NULL key or value", i);
            props_len = up_props_size_capped(o->properties, o->properties_cnt,
                                             UPULSAR_MAX_PROPERTIES_BYTES);
            if (props_len > UPULSAR_MAX_PROPERTIES_BYTES)
                return up_seterr(UPULSAR_ERR__INVALID_ARG,
                                 "properties larger than 1 MiB (%d bytes encoded)",
                                 UPULSAR_MAX_PROPERTIES_BYTES);
        }
        if (o->cb || (o->flags & UPULSAR_SEND_NOCOPY)) {
            flags |= UP_REC_EXT;
            ext.cb = o->cb;
            ext.opaque = o->opaque;
        }
        if (o->flags & UPULSAR_SEND_NOCOPY) {
            flags |= UP_REC_NOCOPY;
            ext.free_cb = o->free_cb;
            ext.payload = payload;
        }
        h.event_time = o->event_time_ms;
        if (o->deliver_at_ms | o->deliver_after_ms | o->replication_clusters_cnt |
            (uint64_t)o->disable_replication | (uint64_t)(o->flags & UPULSAR_SEND_SEQUENCE_ID)) {
            upulsar_err_t e = rec_meta(o, &meta);
            if (e)
                return e;
            flags |= UP_REC_META;
            meta_len = sizeof meta + meta.repl_len;
        }
    }
    size_t var = key_len + okey_len + props_len;
    /* a message whose entry (or, chunked, whose chunks) cannot fit in
     * max_message_size is refused here, with nothing else affected */
    upulsar_err_t se = size_check(cf->chunking_enabled, maxsz > 0 ? (size_t)maxsz : 0, len,
                                  key_len + okey_len, props_len,
                                  (size_t)meta.repl_len + 2u * meta.nrepl);
    if (se)
        return se;
    /* from here on len <= UPULSAR_MAX_CHUNKED_BYTES: every sum below fits */
    size_t size = sizeof h + ((flags & UP_REC_EXT) ? sizeof ext : 0) + meta_len + var +
                  ((flags & UP_REC_NOCOPY) ? 0 : len);
    uint64_t ncells = up_ring_cells_for(size);
    void *copy = NULL;
    if (ncells > rp->ring.cap / 4 && !(flags & UP_REC_NOCOPY)) {
        /* too big to share the ring: keep a private copy (one allocation
         * per large message, never on the small-message path) */
        copy = malloc(len ? len : 1);
        if (!copy)
            return up_seterr(UPULSAR_ERR__NOMEM, "out of memory copying a %zu byte message", len);
        memcpy(copy, payload, len);
        flags |= UP_REC_EXT | UP_REC_NOCOPY;
        ext.free_cb = internal_free;
        ext.payload = copy;
        if (!o || !o->cb)
            ext.cb = NULL;
        size = sizeof h + sizeof ext + meta_len + var;
        ncells = up_ring_cells_for(size);
    }
    if (ncells > rp->ring.cap / 2) {
        free(copy);
        return up_seterr(UPULSAR_ERR__MSG_TOO_LARGE,
                         "key and properties need %zu bytes, more than half of queue.buffer.bytes",
                         size);
    }
    bool limited = rp_limited(rp);
    if (limited) {
        upulsar_err_t e = limits_reserve(rp, len);
        if (e) {
            free(copy);
            return e;
        }
    }
    struct upulsar_future *f = NULL;
    if (future) {
        f = up_future_alloc(&rp->client->futures);
        if (!f) {
            free(copy);
            if (limited)
                limits_release(rp, 1, len);
            return up_seterr(UPULSAR_ERR__QUEUE_FULL, "future pool exhausted (max.futures)");
        }
    }
    uint64_t pos;
    if (!up_ring_reserve(&rp->ring, ncells, &pos)) {
        /* never in a callback: its thread may be the one that frees room */
        if (!cf->block_if_queue_full || up_thread_role() != UP_THREAD_APP)
            goto full;
        uint64_t deadline = cf->send_timeout_ms > 0
                                ? up_now_us() + (uint64_t)cf->send_timeout_ms * 1000u
                                : UINT64_MAX;
        unsigned spins = 0;
        while (!up_ring_reserve(&rp->ring, ncells, &pos)) {
            if (atomic_load_explicit(&rp->handle->closed, memory_order_relaxed) ||
                atomic_load_explicit(&rp->failed, memory_order_relaxed))
                goto full;
            up_loop_wake(rp->loop);
            if (++spins < 8) {
                sched_yield();
                continue;
            }
            uint64_t now = up_now_us();
            if (now > deadline)
                goto full;
            /* sleep until the loop frees space (bounded, in case the loop
             * is busy elsewhere) */
            up_ring_wait_space(&rp->ring, ncells, deadline - now < 2000 ? deadline - now : 2000);
        }
    }
    h.ncells_flags = (uint32_t)(ncells << 4) | flags;
    h.payload_len = (uint32_t)len;
    h.key_len = (uint16_t)key_len;
    h.okey_len = (uint16_t)okey_len;
    h.props_len = (uint32_t)props_len;
    h.future = f;
    up_ring_t *r = &rp->ring;
    uint8_t *cell = up_ring_cell(r, pos);
    bool contiguous = (pos & r->mask) + ncells <= r->cap;
    size_t off = sizeof h;
    if (contiguous) {
        memcpy(cell, &h, sizeof h);
        uint8_t *p = cell + off;
        if (flags & UP_REC_EXT) {
            memcpy(p, &ext, sizeof ext);
            p += sizeof ext;
        }
        if (flags & UP_REC_META) {
            memcpy(p, &meta, sizeof meta);
            p += sizeof meta;
            p += rec_meta_names(p, o);
        }
        if (key_len)
            memcpy(p, o->partition_key, key_len);
        p += key_len;
        if (okey_len)
            memcpy(p, o->ordering_key, okey_len);
        p += okey_len;
        if (props_len)
            p += up_props_encode(p, o->properties, o->properties_cnt);
        if (!(flags & UP_REC_NOCOPY) && len)
            memcpy(p, payload, len);
    } else {
        memcpy(cell, &h, sizeof h); /* the first cell never wraps */
        if (flags & UP_REC_EXT) {
            up_ring_write(r, pos, off, &ext, sizeof ext);
            off += sizeof ext;
        }
        if (flags & UP_REC_META) {
            up_ring_write(r, pos, off, &meta, sizeof meta);
            off += sizeof meta;
            uint8_t names[UP_REPL_MAX_BYTES];
            size_t nl = rec_meta_names(names, o);
            up_ring_write(r, pos, off, names, nl);
            off += nl;
        }
        up_ring_write(r, pos, off, o ? o->partition_key : NULL, key_len);
        off += key_len;
        up_ring_write(r, pos, off, o ? o->ordering_key : NULL, okey_len);
        off += okey_len;
        if (props_len) {
            /* encoded piece by piece straight into the ring: no copy */
            ring_put_t rw = {r, pos, off};
            up_props_encode_to(o->properties, o->properties_cnt, ring_put, &rw);
            off += props_len;
        }
        if (!(flags & UP_REC_NOCOPY))
            up_ring_write(r, pos, off, payload, len);
    }
    up_ring_commit(r, pos); /* R1 */
    /* pairs with the loop's store of `sleeping` + heavy fence (uring_loop.c) */
    if (up_fence_light_ok())
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
    int s = atomic_load_explicit(&rp->loop->sleeping, memory_order_relaxed);
    if (s == UP_SLEEP_IDLE || (s == UP_SLEEP_TIMED && up_ring_used(r) >= rp->wake_cells))
        up_loop_wake(rp->loop);
    if (future)
        *future = f;
    return UPULSAR_OK;
full:
    free(copy);
    if (limited)
        limits_release(rp, 1, len);
    if (f) {
        upulsar_future_release(f);
        up_future_resolve(f, UPULSAR_ERR__QUEUE_FULL, NULL);
    }
    if (atomic_load_explicit(&rp->handle->closed, memory_order_relaxed))
        return up_seterr(UPULSAR_ERR__CLOSED, "producer is stopping");
    if (atomic_load_explicit(&rp->failed, memory_order_relaxed))
        return up_seterr((upulsar_err_t)atomic_load(&rp->failed), "%s: producer failed",
                         rp->topic);
    return up_seterr(UPULSAR_ERR__QUEUE_FULL, "%s: queue full (queue.buffer.bytes %lld)",
                     rp->topic, (long long)cf->queue_buffer_bytes);
}

/* ---- loop side: batching -------------------------------------------------- */

static up_batch_t *batch_get(up_rp_t *rp)
{
    up_batch_t *b = rp->free_batches;
    if (b) {
        rp->free_batches = b->next;
    } else {
        const struct upulsar_conf *cf = rp_conf(rp);
        b = calloc(1, sizeof *b);
        if (!b)
            return NULL;
        b->cap = HDR_ROOM + (size_t)cf->batch_max_bytes + 1024;
        b->buf = malloc(b->cap);
        b->done = malloc((size_t)cf->batch_max_messages * sizeof *b->done);
        if (!b->buf || !b->done) {
            batch_free(b);
            return NULL;
        }
        rp->nbatches_alloc++;
    }
    b->next = NULL;
    b->rec_len = 0;
    b->n = 0;
    b->payload_bytes = 0;
    b->deliver_at = 0;
    b->nrepl = 0;
    b->repl_len = 0;
    b->kkind = 0;
    b->retired = false;
    b->outq_refs = 0;
    b->rp = rp;
    b->frame = NULL;
    b->frame_len = 0;
    return b;
}

static void write_unsent(up_rp_t *rp)
{
    if (!rp->conn || atomic_load_explicit(&rp->state, memory_order_relaxed) != UPULSAR_STATE_READY)
        return;
    for (up_batch_t *b = rp->unsent; b; b = b->next)
        up_conn_write(rp->conn, b->frame, b->frame_len, NULL, b);
    rp->unsent = NULL;
}

/* ---- failure details (upulsar_future_error_detail) ---- */

/* The detail of messages of @p rp failing now: "<partition topic> via
 * <broker>: <why>", the broker being the one of its connection, else the
 * one it was last created on (without " via" before it ever was). Returns
 * a reference the caller drops with up_detail_put() once its futures and
 * callbacks are done. (loop) */
__attribute__((format(printf, 2, 3))) static up_detail_t *rp_detail(up_rp_t *rp,
                                                                      const char *fmt, ...)
{
    char why[UP_DETAIL_TEXT_MAX], broker[sizeof rp->broker];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (rp->conn && rp->conn->proxy_to[0]) {
        snprintf(broker, sizeof broker, "%s", rp->conn->proxy_to);
    } else if (rp->conn) {
        snprintf(broker, sizeof broker, "%s:%d", rp->conn->host, rp->conn->port);
    } else {
        pthread_mutex_lock(&rp->broker_lock);
        snprintf(broker, sizeof broker, "%s", rp->broker);
        pthread_mutex_unlock(&rp->broker_lock);
    }
    return up_detail_get(&rp->client->futures, "%s%s%s: %s", rp->topic, broker[0] ? " via " : "",
                         broker, why);
}

/* The producer's state, for a detail: "READY", or e.g. "BACKOFF, not
 * connected". */
static const char *rp_state_words(const up_rp_t *rp)
{
    if (!rp->ever_ready)
        return "never created on a broker yet";
    switch (atomic_load_explicit(&rp->state, memory_order_relaxed)) {
    case UPULSAR_STATE_READY:
        return "producer READY on its connection";
    case UPULSAR_STATE_BACKOFF:
        return "producer disconnected, waiting to reconnect (BACKOFF)";
    case UPULSAR_STATE_CONNECTING:
        return "producer disconnected, reconnecting (CONNECTING)";
    case UPULSAR_STATE_FAILED:
        return "producer FAILED";
    default:
        return "producer CLOSED";
    }
}

/* Anything left to fail (pending or open batches, records in the ring). */
static bool holds_messages(up_rp_t *rp)
{
    return rp->pend_head || rp->open || up_ring_peek(&rp->ring);
}

/* Why messages fail with @p err when the site gives no more: the detail of
 * up_rp_fail_all(). */
static up_detail_t *rp_default_detail(up_rp_t *rp, upulsar_err_t err)
{
    if (err == UPULSAR_ERR__CLOSED)
        return rp_detail(rp, "producer stopped before the message was acknowledged (%s)",
                         rp_state_words(rp));
    return rp_detail(rp, "%s: %s", upulsar_err_name(err), upulsar_err_str(err));
}

/* Resolve one message: its future and its callback, which sees the
 * failure's detail through upulsar_last_error(). */
static inline void resolve_one(upulsar_future_t *f, upulsar_delivery_cb_t cb, void *opaque,
                               upulsar_err_t err, const upulsar_msg_id_t *id, up_detail_t *det)
{
    if (err == UPULSAR_OK) {
        if (f)
            up_future_resolve(f, err, id);
        if (cb)
            cb(err, id, opaque);
        return;
    }
    if (f)
        up_future_fail(f, err, det);
    if (cb) {
        up_show_error(det ? up_detail_text(det) : upulsar_err_str(err));
        cb(err, NULL, opaque);
        up_show_error(NULL);
    }
}

/* @p det: the failure's detail (NULL on success) */
static void resolve_batch(up_rp_t *rp, up_batch_t *b, upulsar_err_t err, uint64_t ledger,
                          uint64_t entry, up_detail_t *det)
{
    upulsar_msg_id_t id = {ledger, entry, rp->partition, 0, (int32_t)b->n};
    /* room first: once a message resolved, its room is back */
    limits_release(rp, b->n, b->payload_bytes);
    for (uint32_t i = 0; i < b->n; i++) {
        up_done_t *d = &b->done[i];
        id.batch_index = (int32_t)i;
        resolve_one(d->f, d->cb, d->opaque, err, &id, det);
    }
    if (err)
        atomic_fetch_add_explicit(&rp->failed_msgs, b->n, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&rp->acked_msgs, b->n, memory_order_relaxed);
    atomic_store_explicit(&rp->resolved_ring_pos, b->ring_end, memory_order_release);
}

/* Pop the head of the pending queue, resolve it, recycle it. */
static void complete_head(up_rp_t *rp, upulsar_err_t err, uint64_t ledger, uint64_t entry,
                          up_detail_t *det)
{
    up_batch_t *b = rp->pend_head;
    rp->pend_head = b->next;
    if (!rp->pend_head)
        rp->pend_tail = NULL;
    if (rp->unsent == b)
        rp->unsent = b->next;
    rp->npend--;
    if (!err) {
        atomic_store_explicit(&rp->last_acked_seq, (int64_t)b->last_seq, memory_order_relaxed);
        up_stats_batch_acked(rp, b->n, up_now_us() - b->created_us);
        if (ledger == UPULSAR_ID_UNKNOWN || entry == UPULSAR_ID_UNKNOWN) {
            /* a resend the broker had stored already (receipt lost) */
            ledger = entry = UPULSAR_ID_UNKNOWN;
            atomic_fetch_add_explicit(&rp->unknown_ids, b->n, memory_order_relaxed);
        }
    }
    resolve_batch(rp, b, err, ledger, entry, det);
    batch_retire(rp, b);
}

/* The SEND command of entry @p b holding @p n messages (a chunk: 1). */
static void send_cmd(const up_rp_t *rp, const up_batch_t *b, int32_t n, up_cmd_t *cmd,
                     Pulsar__Proto__CommandSend *send)
{
    cmd->type = UP_CMD(SEND);
    cmd->send = send;
    send->producer_id = rp->producer_id;
    send->sequence_id = b->first_seq;
    send->has_num_messages = 1;
    send->num_messages = n;
}

/* Frame entry @p b and append it to the pending queue (written at once when
 * the producer is ready). Its payload is the @p plen bytes at
 * *@p bufp + @p room; the header (sizes, SEND, magic, CRC32C, metadata,
 * then @p md_props: a property block in SingleMessageMetadata's encoding,
 * sent as MessageMetadata.properties) goes right in front of it. A header
 * larger than @p room moves the payload up, growing the buffer (*@p capp)
 * if it must; the buffer keeps its size when the batch is reused, so this
 * allocates only when long keys first appear. Returns 0 or NOMEM. */
static upulsar_err_t frame_and_queue(up_rp_t *rp, up_batch_t *b, const up_cmd_t *cmd,
                                     const up_md_t *md, const uint8_t *md_props,
                                     size_t md_props_len, uint8_t **bufp, size_t *capp,
                                     size_t room, size_t plen)
{
    size_t cs = protobuf_c_message_get_packed_size(&cmd->base);
    size_t mp = protobuf_c_message_get_packed_size(&md->base);
    size_t ms = mp + md_props_len;
    size_t hdr = 4 + 4 + cs + 2 + 4 + 4 + ms;
    if (hdr > room) {
        if (*capp < hdr + plen) {
            size_t cap = hdr + plen + 1024;
            uint8_t *nb = realloc(*bufp, cap);
            if (!nb)
                return UPULSAR_ERR__NOMEM;
            *bufp = nb;
            *capp = cap;
        }
        memmove(*bufp + hdr, *bufp + room, plen);
        room = hdr;
    }
    uint8_t *payload = *bufp + room;
    uint8_t *start = payload - hdr, *p = start;
    up_put_be32(p, (uint32_t)(hdr - 4 + plen));
    up_put_be32(p + 4, (uint32_t)cs);
    protobuf_c_message_pack(&cmd->base, p + 8);
    p += 8 + cs;
    p[0] = 0x0e;
    p[1] = 0x01;
    uint8_t *crc_at = p + 2;
    p += 6;
    up_put_be32(p, (uint32_t)ms);
    protobuf_c_message_pack(&md->base, p + 4);
    if (md_props_len) {
        memcpy(p + 4 + mp, md_props, md_props_len);
        up_props_retag(p + 4 + mp, md_props_len, UP_TAG_MD_PROPS);
    }
    up_put_be32(crc_at, up_crc32c(up_crc32c(0, p, 4 + ms), payload, plen));
    b->frame = start;
    b->frame_len = hdr + plen;
    if (rp->pend_tail)
        rp->pend_tail->next = b;
    else
        rp->pend_head = b;
    rp->pend_tail = b;
    rp->npend++;
    if (!rp->unsent)
        rp->unsent = b;
    atomic_fetch_add_explicit(&rp->sent_msgs, b->n, memory_order_relaxed);
    write_unsent(rp);
    return UPULSAR_OK;
}

/* Upper bound of the MessageMetadata of an entry whose key (ordering key,
 * else partition key) has @p key_len bytes, with @p repl_wire bytes of
 * replicate_to names (each name + 3). */
static inline size_t md_bound(size_t key_len, size_t repl_wire)
{
    return UP_MD_SCALARS + UP_NAME_BOUND + key_len + repl_wire;
}

/* The same for batch @p b as it is (its key and names are set when it
 * opens). */
static inline size_t batch_md_bound(const up_batch_t *b)
{
    return md_bound(b->kkind ? b->kkey_len : 0, b->repl_len + 2u * b->nrepl);
}

/* The broker's max_message_size: no entry, metadata and payload together,
 * may be larger. */
static inline size_t broker_max(const up_rp_t *rp)
{
    int32_t m = atomic_load_explicit(&rp->client->max_message_size, memory_order_relaxed);
    return m > 0 ? (size_t)m : 0;
}

static int close_batch(up_rp_t *rp)
{
    up_batch_t *b = rp->open;
    rp->open = NULL;
    const struct upulsar_conf *cf = rp_conf(rp);
    uint8_t **bufp = &b->buf;
    size_t *capp = &b->cap;
    size_t plen = b->rec_len;
    upulsar_err_t err;
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    if (cf->compression != UP_COMP_NONE) {
        size_t bound = up_compress_bound(cf->compression, plen);
        if (bound > SIZE_MAX - HDR_ROOM) { /* HDR_ROOM + bound would wrap */
            err = UPULSAR_ERR__COMPRESSION;
            goto fail;
        }
        if (b->zcap < HDR_ROOM + bound) {
            uint8_t *z = realloc(b->zbuf, HDR_ROOM + bound);
            if (!z) {
                err = UPULSAR_ERR__NOMEM;
                goto fail;
            }
            b->zbuf = z;
            b->zcap = HDR_ROOM + bound;
        }
        long cl = up_compress(cf->compression, b->buf + HDR_ROOM, plen, b->zbuf + HDR_ROOM, bound);
        if (cl < 0) {
            err = UPULSAR_ERR__COMPRESSION;
            goto fail;
        }
        /* data the codec makes larger could push the entry past the
         * broker's limit: it goes uncompressed then (the metadata says so) */
        if ((size_t)cl < plen || batch_md_bound(b) + (size_t)cl <= broker_max(rp)) {
            md.compression = (Pulsar__Proto__CompressionType)cf->compression;
            md.has_compression = 1;
            md.uncompressed_size = (uint32_t)plen;
            md.has_uncompressed_size = 1;
            bufp = &b->zbuf;
            capp = &b->zcap;
            plen = (size_t)cl;
        }
    }
    md.producer_name = rp->name;
    md.sequence_id = b->first_seq;
    md.publish_time = up_wall_ms();
    md.has_schema_version = rp->schema_version.len != 0; /* as the official clients */
    md.schema_version = (ProtobufCBinaryData){rp->schema_version.len, rp->schema_version.v};
    md.has_num_messages_in_batch = 1;
    md.num_messages_in_batch = (int32_t)b->n;
    md.has_highest_sequence_id = 1;
    md.highest_sequence_id = b->last_seq;
    char *repl[UPULSAR_MAX_REPLICATION_CLUSTERS];
    if (b->kkind == 1) {
        md.partition_key = b->kkey;
    } else if (b->kkind == 2) {
        md.has_ordering_key = 1;
        md.ordering_key.data = (uint8_t *)b->kkey;
        md.ordering_key.len = b->kkey_len;
    }
    if (b->deliver_at) {
        md.has_deliver_at_time = 1;
        md.deliver_at_time = (int64_t)b->deliver_at;
    }
    if (b->nrepl) {
        size_t off = 0;
        for (uint32_t i = 0; i < b->nrepl && i < UPULSAR_MAX_REPLICATION_CLUSTERS; i++) {
            repl[i] = b->repl + off;
            off += strlen(repl[i]) + 1;
        }
        md.replicate_to = repl;
        md.n_replicate_to = b->nrepl;
    }

    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSend send = PULSAR__PROTO__COMMAND_SEND__INIT;
    send_cmd(rp, b, (int32_t)b->n, &cmd, &send);
    send.has_highest_sequence_id = 1;
    send.highest_sequence_id = b->last_seq;

    err = frame_and_queue(rp, b, &cmd, &md, NULL, 0, bufp, capp, HDR_ROOM, plen);
    if (err == UPULSAR_OK)
        return 0;
fail:;
    up_detail_t *det =
        err == UPULSAR_ERR__COMPRESSION
            ? rp_detail(rp, "the codec failed to compress a batch of %u messages", b->n)
            : rp_detail(rp, "out of memory while framing a batch of %u messages", b->n);
    resolve_batch(rp, b, err, 0, 0, det);
    up_detail_put(&rp->client->futures, det);
    batch_retire(rp, b);
    return -1;
}

/* Make the record at the read position contiguous: returns a pointer to the
 * bytes after the header (extension, key, ordering key, props, payload). */
static const uint8_t *record_body(up_rp_t *rp, uint64_t ncells, size_t size)
{
    up_ring_t *r = &rp->ring;
    if ((r->ctail & r->mask) + ncells <= r->cap)
        return up_ring_cell(r, r->ctail) + sizeof(up_rec_t);
    if (rp->scratch_cap < size) {
        uint8_t *s = realloc(rp->scratch, size);
        if (!s)
            return NULL;
        rp->scratch = s;
        rp->scratch_cap = size;
    }
    up_ring_read(r, r->ctail, sizeof(up_rec_t), rp->scratch, size - sizeof(up_rec_t));
    return rp->scratch;
}

/* The batch carries one message sent as an entry of its own: keep its
 * entry-level metadata (the cluster names are copied out of the ring). */
static bool batch_set_solo(up_batch_t *b, const up_rec_meta_t *meta, const char *names)
{
    if (b->repl_cap < meta->repl_len) {
        char *r = realloc(b->repl, meta->repl_len);
        if (!r)
            return false;
        b->repl = r;
        b->repl_cap = meta->repl_len;
    }
    if (meta->repl_len)
        memcpy(b->repl, names, meta->repl_len);
    b->repl_len = meta->repl_len;
    b->nrepl = meta->nrepl;
    b->deliver_at = meta->deliver_at;
    return true;
}

/* ---- key-based batching ---- */

static inline bool key_based(const struct upulsar_conf *cf)
{
    return cf->batching_type == UP_BATCH_KEY_BASED && cf->batching_enabled;
}

/* Messages and bytes of what is open (rp->open is not NULL). */
static inline uint32_t open_n(const up_rp_t *rp)
{
    return key_based(rp_conf(rp)) ? rp->kb_n : rp->open->n;
}

static inline size_t open_bytes(const up_rp_t *rp)
{
    return key_based(rp_conf(rp)) ? rp->kb_bytes : rp->open->rec_len;
}

/* Close what is open: the batch, or with key_based every per-key batch, each
 * its own entry, in ascending order of first sequence id. All but the last
 * resolve to the ring position where they began, so resolved_ring_pos
 * never runs ahead of a batch still pending. */
static void close_open(up_rp_t *rp)
{
    if (!key_based(rp_conf(rp))) {
        close_batch(rp);
        return;
    }
    up_batch_t *l = rp->open;
    uint64_t end = rp->ring.ctail;
    while (l) {
        up_batch_t *n = l->next;
        l->next = NULL;
        l->ring_end = n ? rp->kb_start : end;
        /* consecutive ids per entry, so that de-duplication (which keeps
         * the highest id seen) accepts each entry after the previous one */
        l->first_seq = rp->next_seq;
        l->last_seq = rp->next_seq + l->n - 1;
        rp->next_seq += l->n;
        rp->open = l;
        close_batch(rp);
        l = n;
    }
    rp->open = NULL;
    rp->kb_n = 0;
    rp->kb_bytes = 0;
}

/* The open batch for @p m's key (ordering key, else partition key, else
 * none), opened if needed. NULL on out of memory. */
/* The key @p b's entry carries (MessageMetadata ordering_key if @p m has
 * one, else partition_key), which Key_Shared subscriptions route entries
 * by: every message's in key_based batches, the first message's in default
 * ones (as the official clients do). Returns false when out of memory. */
static bool batch_key(up_batch_t *b, const up_smm_t *m)
{
    int kind = m->okey ? 2 : m->key ? 1 : 0;
    const char *k = kind == 2 ? (const char *)m->okey : m->key;
    size_t klen = kind == 2 ? m->okey_len : kind == 1 ? m->key_len : 0;
    if (b->kkey_cap < klen + 1) {
        char *nk = realloc(b->kkey, klen + 1);
        if (!nk)
            return false;
        b->kkey = nk;
        b->kkey_cap = klen + 1;
    }
    if (klen)
        memcpy(b->kkey, k, klen);
    b->kkey[klen] = '\0';
    b->kkey_len = klen;
    b->kkind = kind;
    return true;
}

static inline bool kb_same_key(const up_batch_t *b, int kind, const char *k, size_t klen)
{
    return b->kkind == kind && b->kkey_len == klen && (!klen || memcmp(b->kkey, k, klen) == 0);
}

/* The open key_based batch @p m would join, NULL if none is open yet. */
static up_batch_t *kb_find(const up_rp_t *rp, const up_smm_t *m)
{
    int kind = m->okey ? 2 : m->key ? 1 : 0;
    const char *k = kind == 2 ? (const char *)m->okey : m->key;
    size_t klen = kind == 2 ? m->okey_len : kind == 1 ? m->key_len : 0;
    for (up_batch_t *b = rp->open; b; b = b->next)
        if (kb_same_key(b, kind, k, klen))
            return b;
    return NULL;
}

static up_batch_t *kb_batch(up_rp_t *rp, const up_smm_t *m, uint64_t now)
{
    int kind = m->okey ? 2 : m->key ? 1 : 0;
    const char *k = kind == 2 ? (const char *)m->okey : m->key;
    size_t klen = kind == 2 ? m->okey_len : kind == 1 ? m->key_len : 0;
    up_batch_t *last = NULL;
    size_t nopen = 0;
    for (up_batch_t *b = rp->open; b; last = b, b = b->next, nopen++)
        if (kb_same_key(b, kind, k, klen))
            return b;
    /* many keys: no more open batches than max.inflight.batches (each holds
     * a batch.max.bytes buffer), so memory stays bounded as without keys */
    if (nopen >= (size_t)rp_conf(rp)->max_inflight_batches) {
        close_open(rp);
        last = NULL;
    }
    up_batch_t *b = batch_get(rp);
    if (!b)
        return NULL;
    if (!batch_key(b, m)) {
        batch_retire(rp, b);
        return NULL;
    }
    b->created_us = now;
    b->first_seq = m->sequence_id;
    if (last) {
        last->next = b;
    } else {
        const struct upulsar_conf *cf = rp_conf(rp);
        rp->open = b;
        rp->open_deadline_us = rp->window_end_us ? rp->window_end_us
                                                 : now + (uint64_t)cf->batch_max_delay_us;
        rp->window_end_us = 0;
        rp->kb_start = rp->ring.ctail;
        rp->kb_n = 0;
        rp->kb_bytes = 0;
    }
    return b;
}

/* Make @p b's buffer hold at least @p total bytes (head room included). */
static bool batch_reserve(up_batch_t *b, size_t total)
{
    if (b->cap >= total)
        return true;
    size_t cap = total + 1024;
    uint8_t *nb = realloc(b->buf, cap);
    if (!nb)
        return false;
    b->buf = nb;
    b->cap = cap;
    return true;
}

static bool grow_batch(up_batch_t *b, size_t need)
{
    return batch_reserve(b, HDR_ROOM + b->rec_len + need);
}

/* ---- chunking (chunking.enabled) ---- */

/* Upper bound of the MessageMetadata of each chunk of @p m: the fixed
 * fields, its uuid, both keys and its properties (every chunk repeats
 * them). */
static size_t chunk_md_bound(const up_smm_t *m)
{
    return UP_MD_SCALARS + UP_NAME_BOUND + UP_UUID_BOUND + (m->key ? m->key_len : 0) +
           (m->okey ? m->okey_len : 0) + m->props_len;
}

/* Build and queue the SEND of one chunk, its payload already at
 * b->buf + @p room (b->rec_len bytes); @p key is a NUL-terminated copy of
 * m's partition key (NULL: none). */
static upulsar_err_t close_chunk(up_rp_t *rp, up_batch_t *b, const up_smm_t *m, const char *key,
                                 const char *uuid, size_t room, int32_t id, int32_t n,
                                 int32_t total)
{
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    md.producer_name = rp->name;
    md.sequence_id = b->first_seq;
    md.publish_time = up_wall_ms();
    md.has_schema_version = rp->schema_version.len != 0; /* as the official clients */
    md.schema_version = (ProtobufCBinaryData){rp->schema_version.len, rp->schema_version.v};
    md.uuid = (char *)uuid;
    md.has_chunk_id = md.has_num_chunks_from_msg = md.has_total_chunk_msg_size = 1;
    md.chunk_id = id;
    md.num_chunks_from_msg = n;
    md.total_chunk_msg_size = total;
    md.partition_key = (char *)key;
    if (m->okey) {
        md.has_ordering_key = 1;
        md.ordering_key.data = (uint8_t *)m->okey;
        md.ordering_key.len = m->okey_len;
    }
    if (m->event_time) {
        md.has_event_time = 1;
        md.event_time = m->event_time;
    }
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSend send = PULSAR__PROTO__COMMAND_SEND__INIT;
    send_cmd(rp, b, 1, &cmd, &send);
    send.has_is_chunk = 1;
    send.is_chunk = 1;
    return frame_and_queue(rp, b, &cmd, &md, m->props, m->props_len, &b->buf, &b->cap, room,
                           b->rec_len);
}

/* Send one message as chunks: uuid "<producer>-<sequence id>", every
 * chunk with the message's sequence id; only the last chunk carries the
 * message's result (future, callback, limits). Each chunk's metadata and
 * payload together fit in the broker's max_message_size. All batches are
 * taken first, so that nothing is sent when memory runs out. */
static upulsar_err_t send_chunks(up_rp_t *rp, const up_smm_t *m, const void *payload,
                                 const up_rec_t *h, const up_rec_ext_t *ext, uint64_t ncells,
                                 uint64_t now)
{
    size_t len = h->payload_len, max = broker_max(rp), mdb = chunk_md_bound(m);
    /* upulsar_send() checked both against the limit it knew; the broker's
     * may have shrunk since */
    if (mdb > max / 2 || len > UPULSAR_MAX_CHUNKED_BYTES)
        return UPULSAR_ERR__MSG_TOO_LARGE;
    size_t cs = max - mdb, n = len ? (len + cs - 1) / cs : 1;
    size_t room = UP_HDR_FIXED + mdb; /* the header never has to move the payload */
    up_batch_t *head = NULL, **tail = &head;
    upulsar_err_t err = UPULSAR_OK;
    for (size_t i = 0; i < n; i++) {
        up_batch_t *b = batch_get(rp);
        if (!b) {
            err = UPULSAR_ERR__NOMEM;
            break;
        }
        *tail = b;
        tail = &b->next;
        size_t off = i * cs, sl = len - off < cs ? len - off : cs;
        if (!batch_reserve(b, room + sl)) {
            err = UPULSAR_ERR__NOMEM;
            break;
        }
        if (sl)
            memcpy(b->buf + room, (const uint8_t *)payload + off, sl);
        b->rec_len = sl;
    }
    /* one NUL-terminated copy of the key, in the first chunk's batch (it is
     * used while the chunks are framed, below) */
    const char *key = NULL;
    if (!err && m->key) {
        if (head->kkey_cap < (size_t)m->key_len + 1) {
            char *k = realloc(head->kkey, (size_t)m->key_len + 1);
            if (!k) {
                err = UPULSAR_ERR__NOMEM;
            } else {
                head->kkey = k;
                head->kkey_cap = (size_t)m->key_len + 1;
            }
        }
        if (!err) {
            memcpy(head->kkey, m->key, m->key_len);
            head->kkey[m->key_len] = '\0';
            key = head->kkey;
        }
    }
    char uuid[UP_UUID_BOUND + 8];
    snprintf(uuid, sizeof uuid, "%s-%llu", rp->name, (unsigned long long)m->sequence_id);
    uint64_t ring_start = rp->ring.ctail;
    for (size_t i = 0; !err && i < n; i++) {
        up_batch_t *b = head;
        head = b->next;
        b->next = NULL;
        bool last = i == n - 1;
        b->created_us = now;
        b->first_seq = b->last_seq = m->sequence_id;
        b->ring_end = last ? ring_start + ncells : ring_start;
        if (last) {
            b->done[0] = (up_done_t){h->future, ext->cb, ext->opaque};
            b->n = 1;
            b->payload_bytes = len;
        }
        upulsar_err_t e = close_chunk(rp, b, m, key, uuid, room, (int32_t)i, (int32_t)n,
                                      (int32_t)len);
        if (e) {
            /* only when out of memory, before the first chunk is queued
             * (the others need no more room than it) */
            b->n = 0;
            batch_retire(rp, b);
            err = e;
        }
    }
    while (head) {
        up_batch_t *b = head;
        head = b->next;
        b->next = NULL;
        batch_retire(rp, b);
    }
    return err;
}

/* Take one record off the ring into the open batch (or fail it). */
static void drain_one(up_rp_t *rp, const up_rec_t *h, uint64_t now)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    uint64_t ncells = h->ncells_flags >> 4;
    uint32_t flags = h->ncells_flags & 0xf;
    const uint8_t *p = record_body(rp, ncells, (size_t)ncells * UP_RING_CELL);
    up_rec_ext_t ext = {0};
    up_rec_meta_t meta = {0};
    const char *names = NULL;
    upulsar_err_t err = UPULSAR_OK;
    up_detail_t *det = NULL; /* why it failed, when not just NOMEM */
    if (!p) {
        err = UPULSAR_ERR__NOMEM;
        goto out_fail_noext;
    }
    if (flags & UP_REC_EXT) {
        memcpy(&ext, p, sizeof ext);
        p += sizeof ext;
    }
    if (flags & UP_REC_META) {
        memcpy(&meta, p, sizeof meta);
        names = (const char *)p + sizeof meta;
        p += sizeof meta + meta.repl_len;
    }
    up_smm_t m = {0};
    if (flags & UP_REC_KEY) {
        m.key = (const char *)p;
        m.key_len = h->key_len;
    }
    p += h->key_len;
    if (h->okey_len) {
        m.okey = p;
        m.okey_len = h->okey_len;
    }
    p += h->okey_len;
    if (h->props_len) {
        m.props = p;
        m.props_len = h->props_len;
    }
    p += h->props_len;
    const void *payload = (flags & UP_REC_NOCOPY) ? ext.payload : p;
    m.event_time = h->event_time;
    m.payload_size = h->payload_len;
    m.sequence_id = rp->next_seq;
    /* key_based: a message with its own sequence id or entry-level metadata
     * is sent as an entry of its own, after what is open */
    bool kb = key_based(cf) && !(meta.mflags & (UP_META_SEQ | UP_META_SOLO));
    if (key_based(cf) && !kb) {
        if (rp->open)
            close_open(rp);
        meta.mflags |= UP_META_SOLO;
        m.sequence_id = rp->next_seq;
    }
    if (kb)
        m.no_seq = true; /* ids are given per batch when they close */
    if (meta.mflags & UP_META_SEQ) {
        /* explicit ids must increase (Pulsar de-duplication drops the rest) */
        if (meta.seq < rp->next_seq) {
            err = UPULSAR_ERR__INVALID_ARG;
            det = rp_detail(rp, "explicit sequence_id %llu is below %llu, the next one this "
                                "producer may use",
                            (unsigned long long)meta.seq, (unsigned long long)rp->next_seq);
            goto out_fail;
        }
        m.sequence_id = meta.seq;
    }
    size_t rs = up_record_size(&m);
    size_t bmax = broker_max(rp);
    /* the entry this message would make on its own */
    size_t alone = md_bound(m.okey ? m.okey_len : m.key ? m.key_len : 0,
                            (size_t)meta.repl_len + 2u * meta.nrepl) + rs;

    int failed = atomic_load_explicit(&rp->failed, memory_order_relaxed);
    if (failed) {
        err = (upulsar_err_t)failed;
        det = rp_detail(rp, "producer failed (%s) before the message was sent",
                        upulsar_err_name(err));
        goto out_fail;
    }
    if (alone > bmax && !cf->chunking_enabled) {
        /* upulsar_send() checked against the limit it knew; the broker's
         * may have shrunk since: this message fails, alone */
        err = UPULSAR_ERR__MSG_TOO_LARGE;
        det = rp_detail(rp, "message of %u bytes makes an entry of up to %zu bytes with its "
                            "metadata, over the broker's max_message_size %zu (learnt after the "
                            "message was accepted; chunking.enabled is off)",
                        h->payload_len, alone, bmax);
        goto out_fail;
    }
    if (alone > bmax) {
        if (rp->open) {
            close_open(rp);
            if (!(meta.mflags & UP_META_SEQ))
                m.sequence_id = rp->next_seq; /* key_based: ids given at close */
        }
        err = send_chunks(rp, &m, payload, h, &ext, ncells, now);
        if (err == UPULSAR_ERR__MSG_TOO_LARGE)
            det = rp_detail(rp, "message of %u bytes cannot be sent in chunks of the broker's "
                                "max_message_size %zu (learnt after the message was accepted): "
                                "its keys and properties take up to %zu bytes of every chunk",
                            h->payload_len, bmax, chunk_md_bound(&m));
        if (err)
            goto out_fail;
        rp->next_seq = m.sequence_id + 1;
        if (ext.free_cb)
            ext.free_cb((void *)ext.payload, ext.opaque);
        return;
    }
    bool solo = meta.mflags & UP_META_SOLO;
    /* an entry never outgrows the broker's max_message_size, metadata
     * included, whatever batch.max.bytes says (the broker would refuse it,
     * with every message in it) */
    if (rp->open) {
        const up_batch_t *t = kb ? kb_find(rp, &m) : rp->open;
        if (solo || open_n(rp) >= (uint32_t)cf->batch_max_messages ||
            open_bytes(rp) + rs > (size_t)cf->batch_max_bytes ||
            (t && batch_md_bound(t) + t->rec_len + rs > bmax))
            close_open(rp);
    }
    up_batch_t *b;
    if (kb) {
        b = kb_batch(rp, &m, now);
        if (!b) {
            err = UPULSAR_ERR__NOMEM;
            goto out_fail;
        }
    } else if (!rp->open) {
        rp->open = batch_get(rp);
        if (!rp->open) {
            err = UPULSAR_ERR__NOMEM;
            goto out_fail;
        }
        rp->open->created_us = now;
        rp->open->first_seq = m.sequence_id;
        rp->open_deadline_us = rp->window_end_us ? rp->window_end_us
                                                 : now + (uint64_t)cf->batch_max_delay_us;
        rp->window_end_us = 0;
    }
    if (!kb)
        b = rp->open;
    if (!kb && b->n == 0 && (m.key || m.okey) && !batch_key(b, &m)) {
        err = UPULSAR_ERR__NOMEM;
        goto out_fail;
    }
    if (!grow_batch(b, rs)) {
        err = UPULSAR_ERR__NOMEM;
        goto out_fail;
    }
    if (solo && !batch_set_solo(b, &meta, names)) {
        rp->open = NULL;
        batch_retire(rp, b);
        err = UPULSAR_ERR__NOMEM;
        goto out_fail;
    }
    b->rec_len += up_record_put(b->buf + HDR_ROOM + b->rec_len, &m, payload);
    b->last_seq = m.sequence_id;
    b->payload_bytes += h->payload_len;
    b->done[b->n++] = (up_done_t){h->future, ext.cb, ext.opaque};
    if (!kb)
        rp->next_seq = m.sequence_id + 1;
    if (kb) {
        rp->kb_n++;
        rp->kb_bytes += rs;
    }
    if (ext.free_cb)
        ext.free_cb((void *)ext.payload, ext.opaque);
    if (solo) {
        b->ring_end = rp->ring.ctail + ncells;
        close_batch(rp);
    }
    return;
out_fail:
    if (ext.free_cb)
        ext.free_cb((void *)ext.payload, ext.opaque);
out_fail_noext:
    limits_release(rp, 1, h->payload_len);
    if (!det)
        det = rp_detail(rp, "%s while batching the message", upulsar_err_str(err));
    resolve_one(h->future, ext.cb, ext.opaque, err, NULL, det);
    up_detail_put(&rp->client->futures, det);
    atomic_fetch_add_explicit(&rp->failed_msgs, 1, memory_order_relaxed);
}

bool up_rp_pump(up_rp_t *rp, uint64_t now, uint64_t *deadline)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    up_ring_t *r = &rp->ring;
    bool consumed = false;
    size_t max_inflight = (size_t)cf->max_inflight_batches;
    unsigned budget = 4096; /* records per call, so other producers get a turn */
    /* Batch window: the first record seen opens it; records stay in the
     * ring until it ends or a full batch is there, and are then drained in
     * one go. The loop does not chase the callers record by record (that
     * bounces cache lines between cores for every message). */
    /* Nothing is framed before the producer was created once: its first
     * sequence id (initial.sequence.id, or the broker's last_sequence_id + 1)
     * and its name come from PRODUCER_SUCCESS. Until then (lazy start,
     * partition growth, a first creation that failed) records wait in the
     * ring, where send.timeout.ms still applies. */
    rp->holding = !rp->ever_ready;
    if (rp->holding)
        return false;
    if (!rp->open && cf->batching_enabled && up_ring_peek(r) &&
        !atomic_load_explicit(&rp->flush_req, memory_order_relaxed)) {
        if (!rp->window_end_us)
            rp->window_end_us = now + (uint64_t)cf->batch_max_delay_us;
        if (now < rp->window_end_us && up_ring_used(r) < rp->wake_cells) {
            rp->holding = true;
            if (rp->window_end_us < *deadline)
                *deadline = rp->window_end_us;
            return false;
        }
    }
    while (budget-- && rp->npend < max_inflight && up_ring_peek(r)) {
        up_rec_t h;
        memcpy(&h, up_ring_cell(r, r->ctail), sizeof h);
        drain_one(rp, &h, now);
        uint64_t ncells = h.ncells_flags >> 4;
        r->ctail += ncells;
        if (rp->open)
            rp->open->ring_end = r->ctail;
        consumed = true;
        if (!cf->batching_enabled && rp->open)
            close_open(rp);
    }
    if (consumed)
        up_ring_release(r); /* R2 */
    if (rp->open) {
        bool flush = atomic_exchange_explicit(&rp->flush_req, 0, memory_order_acq_rel);
        if (flush || now >= rp->open_deadline_us ||
            open_n(rp) >= (uint32_t)cf->batch_max_messages)
            close_open(rp);
        else if (rp->open_deadline_us < *deadline)
            *deadline = rp->open_deadline_us;
    } else if (atomic_load_explicit(&rp->flush_req, memory_order_relaxed) && !up_ring_peek(r)) {
        atomic_store_explicit(&rp->flush_req, 0, memory_order_relaxed);
    }
    if (!rp->open && rp->pend_head == NULL)
        atomic_store_explicit(&rp->resolved_ring_pos, r->ctail, memory_order_release);
    return consumed && up_ring_peek(r);
}

/* ---- loop side: receipts and errors -------------------------------------- */

void up_rp_on_receipt(up_rp_t *rp, const Pulsar__Proto__CommandSendReceipt *r)
{
    /* The head may be waiting for its resend (not READY, or READY and not
     * yet rewritten): a receipt naming it on this connection still proves it
     * stored, from an earlier write of the same bytes, and carries its real
     * position. */
    up_batch_t *b = rp->pend_head;
    if (!b || r->sequence_id < b->first_seq)
        return; /* stale: already failed (timeout) or not ours */
    if (r->sequence_id > b->last_seq) {
        if (atomic_load_explicit(&rp->state, memory_order_relaxed) != UPULSAR_STATE_READY)
            return; /* the broker closed us: it may answer out of line */
        up_seterr(UPULSAR_ERR__PROTOCOL,
                  "%s: receipt for sequence id %llu while %llu..%llu is pending", rp->topic,
                  (unsigned long long)r->sequence_id, (unsigned long long)b->first_seq,
                  (unsigned long long)b->last_seq);
        up_conn_fail(rp->conn, UPULSAR_ERR__PROTOCOL);
        return;
    }
    uint64_t ledger = r->message_id ? r->message_id->ledgerid : UINT64_MAX;
    uint64_t entry = r->message_id ? r->message_id->entryid : UINT64_MAX;
    complete_head(rp, UPULSAR_OK, ledger, entry, NULL);
}

void up_rp_close_cmd(up_rp_t *rp, up_cmd_t *cmd, Pulsar__Proto__CommandCloseProducer *cp)
{
    cmd->type = UP_CMD(CLOSE_PRODUCER);
    cmd->close_producer = cp;
    cp->producer_id = rp->producer_id;
    cp->request_id = atomic_fetch_add(&rp->client->next_request_id, 1);
}

static void send_close_producer(up_rp_t *rp)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandCloseProducer cp = PULSAR__PROTO__COMMAND_CLOSE_PRODUCER__INIT;
    up_rp_close_cmd(rp, &cmd, &cp);
    up_conn_write_cmd(rp->conn, &cmd);
}

void up_rp_on_send_error(up_rp_t *rp, const Pulsar__Proto__CommandSendError *e)
{
    up_batch_t *b = rp->pend_head;
    if (!b || b == rp->unsent || e->sequence_id < b->first_seq || e->sequence_id > b->last_seq)
        return;
    /* not attached (closed, being re-created): everything pending is resent
     * anyway, and the resend gets its own answer */
    if (atomic_load_explicit(&rp->state, memory_order_relaxed) != UPULSAR_STATE_READY)
        return;
    upulsar_err_t err = up_err_from_server(e->error);
    char why[UP_DETAIL_TEXT_MAX];
    switch (err) {
    case UPULSAR_ERR_CHECKSUM_ERROR:
    case UPULSAR_ERR_NOT_ALLOWED: {
        /* this entry is refused; the ones behind it are unaffected */
        up_detail_t *det = rp_detail(rp, "broker refused the send: %s%s%s",
                                     up_server_error_name(e->error),
                                     e->message && e->message[0] ? ": " : "",
                                     e->message ? e->message : "");
        complete_head(rp, err, 0, 0, det);
        up_detail_put(&rp->client->futures, det);
        break;
    }
    case UPULSAR_ERR_TOPIC_TERMINATED:
    case UPULSAR_ERR_PRODUCER_FENCED:
    case UPULSAR_ERR_AUTHORIZATION_ERROR:
        snprintf(why, sizeof why, "broker refused the send: %s%s%s",
                 up_server_error_name(e->error), e->message && e->message[0] ? ": " : "",
                 e->message ? e->message : "");
        up_rp_fail_why(rp, err, why); /* the watchdog fails the group */
        up_watchdog_kick(rp->client);
        break;
    default:
        /* transient: the connection is closed, as the official clients do;
         * its producers are re-created on a new one and resend from their
         * head. (A CLOSE_PRODUCER and a new PRODUCER on the same connection
         * could be answered for the producer still closing, whose SENDs then
         * fail again.) */
        up_conn_fail(rp->conn, err);
        break;
    }
}

/* ---- loop side: attach / detach / fail ----------------------------------- */

void up_rp_detach(up_rp_t *rp, bool kick)
{
    up_conn_t *c = rp->conn;
    if (rp->registered && c) {
        for (size_t i = 0; i < c->nrps; i++)
            if (c->rps[i] == rp) {
                c->rps[i] = c->rps[--c->nrps];
                break;
            }
    }
    rp->registered = false;
    if (c) {
        rp->conn = NULL;
        up_conn_unref(c);
    }
    rp->unsent = rp->pend_head;
    if (!rp->closing && !atomic_load(&rp->failed))
        atomic_store(&rp->state, UPULSAR_STATE_BACKOFF);
    if (kick)
        up_watchdog_kick(rp->client);
}

void up_rp_suspend(up_rp_t *rp, bool kick)
{
    rp->unsent = rp->pend_head;
    if (!rp->closing && !atomic_load(&rp->failed))
        atomic_store(&rp->state, UPULSAR_STATE_BACKOFF);
    if (kick)
        up_watchdog_kick(rp->client);
}

static void fail_all(up_rp_t *rp, upulsar_err_t err, up_detail_t *det);

void up_rp_fail(up_rp_t *rp, upulsar_err_t err) { up_rp_fail_why(rp, err, NULL); }

void up_rp_fail_why(up_rp_t *rp, upulsar_err_t err, const char *why)
{
    atomic_store(&rp->failed, err);
    atomic_store(&rp->state, UPULSAR_STATE_FAILED);
    up_detail_t *det = !holds_messages(rp) ? NULL
                       : why            ? rp_detail(rp, "%s", why)
                                        : rp_default_detail(rp, err);
    fail_all(rp, err, det);
    up_detail_put(&rp->client->futures, det);
    if (rp->conn) {
        if (atomic_load(&rp->conn->state) == UP_CONN_OPEN) {
            send_close_producer(rp);
            up_conn_flush(rp->conn);
        }
        up_rp_detach(rp, false);
    }
}

void up_rp_register(up_rp_t *rp, up_conn_t *c)
{
    if (rp->conn == c && rp->registered) {
        atomic_store(&rp->closed_by_broker, 0); /* re-created where it is */
        return;
    }
    if (rp->conn)
        up_rp_detach(rp, false);
    /* callers pass the connection to register on, never NULL.
     * NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
    if (c->nrps == c->crps) {
        size_t n = c->crps ? c->crps * 2 : 8;
        up_rp_t **nr = realloc(c->rps, n * sizeof *nr);
        if (!nr)
            return; /* not registered: the create request will be refused */
        c->rps = nr;
        c->crps = n;
    }
    c->rps[c->nrps++] = rp;
    up_conn_ref(c);
    rp->conn = c;
    rp->registered = true;
    atomic_store(&rp->closed_by_broker, 0);
}

bool up_rp_attach(up_rp_t *rp, up_conn_t *c, int64_t last_seq)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    if (rp->conn == c && atomic_load(&rp->failed)) {
        /* its group failed while the PRODUCER request was out: the broker
         * has a producer we will not use */
        if (atomic_load(&c->state) == UP_CONN_OPEN) {
            send_close_producer(rp);
            up_conn_flush(c);
        }
        up_rp_detach(rp, false);
        return false;
    }
    if (rp->conn != c || atomic_load(&c->state) != UP_CONN_OPEN ||
        atomic_load(&rp->closed_by_broker) || rp->closing)
        return false;
    if (!rp->ever_ready) {
        rp->next_seq = cf->initial_sequence_id >= 0 ? (uint64_t)cf->initial_sequence_id + 1
                                                    : (uint64_t)(last_seq + 1);
        rp->ever_ready = true;
    } else if (last_seq >= 0 && (uint64_t)last_seq + 1 > rp->next_seq) {
        rp->next_seq = (uint64_t)last_seq + 1;
    }
    rp->unsent = rp->pend_head;
    if (rp->pend_head)
        atomic_fetch_add(&rp->resent_batches, rp->npend);
    atomic_store(&rp->state, UPULSAR_STATE_READY);
    write_unsent(rp);
    up_conn_flush(c);
    return true;
}

/* Resolve the record at the ring's read position with @p err and the
 * detail @p det (it never joins a batch, gets no sequence id) and step over
 * it. */
static void fail_ring_record(up_rp_t *rp, upulsar_err_t err, up_detail_t *det)
{
    up_ring_t *r = &rp->ring;
    up_rec_t h;
    memcpy(&h, up_ring_cell(r, r->ctail), sizeof h);
    up_rec_ext_t ext = {0};
    if (h.ncells_flags & UP_REC_EXT)
        up_ring_read(r, r->ctail, sizeof h, &ext, sizeof ext);
    if (ext.free_cb)
        ext.free_cb((void *)ext.payload, ext.opaque);
    limits_release(rp, 1, h.payload_len);
    resolve_one(h.future, ext.cb, ext.opaque, err, NULL, det);
    atomic_fetch_add_explicit(&rp->failed_msgs, 1, memory_order_relaxed);
    r->ctail += h.ncells_flags >> 4;
}

/* Fail the open batch and every pending batch, in order, with the detail
 * @p det. */
static void fail_batches(up_rp_t *rp, upulsar_err_t err, up_detail_t *det)
{
    while (rp->pend_head)
        complete_head(rp, err, 0, 0, det);
    while (rp->open) { /* key_based: several */
        up_batch_t *b = rp->open;
        rp->open = b->next;
        b->next = NULL;
        resolve_batch(rp, b, err, 0, 0, det);
        batch_retire(rp, b);
    }
    rp->kb_n = 0;
    rp->kb_bytes = 0;
}

static void fail_all(up_rp_t *rp, upulsar_err_t err, up_detail_t *det)
{
    fail_batches(rp, err, det);
    up_ring_t *r = &rp->ring;
    while (up_ring_peek(r))
        fail_ring_record(rp, err, det);
    up_ring_release(r);
    rp->age_n = 0;
    atomic_store_explicit(&rp->resolved_ring_pos, r->ctail, memory_order_release);
}

void up_rp_fail_all(up_rp_t *rp, upulsar_err_t err)
{
    up_detail_t *det = holds_messages(rp) ? rp_default_detail(rp, err) : NULL;
    fail_all(rp, err, det);
    up_detail_put(&rp->client->futures, det);
}

/* The detail of messages failed by send.timeout.ms: written and not
 * acknowledged (@p queued false), or still in the ring. */
static up_detail_t *timeout_detail(up_rp_t *rp, bool queued)
{
    int to = rp_conf(rp)->send_timeout_ms;
    if (queued)
        return rp_detail(rp, "send timed out after %d ms (send.timeout.ms): still queued, never "
                             "sent (%s)",
                         to,
                         rp->ever_ready ? "max.inflight.batches batches awaiting receipts"
                                        : "the producer was never created on a broker yet");
    return rp_detail(rp, "send timed out after %d ms (send.timeout.ms): no receipt from the "
                         "broker (%s)",
                     to, rp_state_words(rp));
}

/* Records still in the ring (not drained because max.inflight.batches
 * batches wait for receipts, e.g. while disconnected) expire too. Their
 * acceptance time is not recorded per record (that would cost a clock read
 * per message): every tick samples the ring's head with the time, and the
 * records before a sample at least send.timeout.ms old are expired. A record
 * thus fails between send.timeout.ms and about 1/8 more after it was
 * accepted. Everything ahead of it (pending and open batches) was accepted
 * earlier still and fails first, so results stay in order. */
static void expire_ring(up_rp_t *rp, uint64_t now, uint64_t limit)
{
    up_ring_t *r = &rp->ring;
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (head == r->ctail) {
        rp->age_n = 0; /* empty: later records are younger than any sample */
        return;
    }
    uint64_t step = limit / 8;
    if (rp->age_n == 0 || now - rp->age_us[rp->age_last] >= step) {
        rp->age_last = rp->age_n == 0 ? 0 : (rp->age_last + 1) % UP_AGE_SAMPLES;
        rp->age_pos[rp->age_last] = head;
        rp->age_us[rp->age_last] = now;
        if (rp->age_n < UP_AGE_SAMPLES)
            rp->age_n++;
    }
    uint64_t cutoff = 0;
    for (unsigned k = 0, i = rp->age_last; k < rp->age_n;
         k++, i = (i + UP_AGE_SAMPLES - 1) % UP_AGE_SAMPLES)
        if (now - rp->age_us[i] >= limit) {
            cutoff = rp->age_pos[i];
            break;
        }
    if (cutoff <= r->ctail || !up_ring_peek(r))
        return;
    uint64_t before = atomic_load_explicit(&rp->failed_msgs, memory_order_relaxed);
    if (rp->pend_head || rp->open) {
        up_detail_t *det = timeout_detail(rp, false);
        fail_batches(rp, UPULSAR_ERR__MSG_TIMED_OUT, det);
        up_detail_put(&rp->client->futures, det);
    }
    up_detail_t *det = timeout_detail(rp, true);
    while (r->ctail < cutoff && up_ring_peek(r))
        fail_ring_record(rp, UPULSAR_ERR__MSG_TIMED_OUT, det);
    up_detail_put(&rp->client->futures, det);
    up_ring_release(r);
    atomic_fetch_add_explicit(&rp->timed_out,
                              atomic_load_explicit(&rp->failed_msgs, memory_order_relaxed) - before,
                              memory_order_relaxed);
    if (!rp->open && !rp->pend_head)
        atomic_store_explicit(&rp->resolved_ring_pos, r->ctail, memory_order_release);
}

void up_rp_check_timeouts(up_rp_t *rp, uint64_t now)
{
    int to = rp_conf(rp)->send_timeout_ms;
    if (to <= 0)
        return;
    uint64_t limit = (uint64_t)to * 1000u;
    up_detail_t *det = NULL;
    while (rp->pend_head && now - rp->pend_head->created_us > limit) {
        atomic_fetch_add_explicit(&rp->timed_out, rp->pend_head->n, memory_order_relaxed);
        if (!det)
            det = timeout_detail(rp, false);
        complete_head(rp, UPULSAR_ERR__MSG_TIMED_OUT, 0, 0, det);
    }
    up_detail_put(&rp->client->futures, det);
    expire_ring(rp, now, limit);
}

/* ---- events raised by the producer's connection (loop) --------------------- */

void up_rp_on_close_producer(up_rp_t *rp, const char *assigned_url)
{
    if (assigned_url && assigned_url[0]) {
        pthread_mutex_lock(&rp->broker_lock);
        snprintf(rp->assigned, sizeof rp->assigned, "%s", assigned_url);
        pthread_mutex_unlock(&rp->broker_lock);
    }
    atomic_store(&rp->closed_by_broker, assigned_url && assigned_url[0] ? 1 : 2); /* 2: back off */
    up_rp_suspend(rp, true);
}

void up_rp_on_topic_migrated(up_rp_t *rp, const char *cluster_url)
{
    if (cluster_url && cluster_url[0]) {
        pthread_mutex_lock(&rp->broker_lock);
        snprintf(rp->cluster, sizeof rp->cluster, "%s", cluster_url);
        pthread_mutex_unlock(&rp->broker_lock);
    }
    atomic_store(&rp->closed_by_broker, 1);
    up_rp_suspend(rp, true);
}

/* Fail every message @p rp holds (pending and open batches, records in the
 * ring), oldest first, with @p err and the detail "<topic> via <broker>:
 * @p why", without failing the producer itself: it stays in its state and
 * is re-created as usual (a backlog quota's producer_exception refusal).
 * (loop) */
void up_rp_fail_pending_why(up_rp_t *rp, upulsar_err_t err, const char *why)
{
    if (!holds_messages(rp))
        return;
    up_detail_t *det = rp_detail(rp, "%s", why);
    fail_all(rp, err, det);
    up_detail_put(&rp->client->futures, det);
}
