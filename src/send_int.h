/* send_int.h -- what upulsar_send() (send.c) and upulsar_send_many()
 * (send_many.c) share, so both validate and build a record the same way:
 *   - the options in this library's layout and their routing checks
 *     (up_send_opts());
 *   - the producer's checks before a message (up_send_prep(): failed,
 *     lazy start);
 *   - validation and the record to write (up_send_build(), the size rule
 *     included), the sampled send time (up_send_stamp());
 *   - writing a reserved record and committing it (up_send_write()), and
 *     what follows the commits (up_send_publish(): the active list and
 *     the wake check, the caller's side of the loop's sleep handshake).
 * Everything here runs on caller threads. @internal
 */
#ifndef UP_SEND_INT_H
#define UP_SEND_INT_H
#include <string.h>

#include "producer_int.h"
#include "record.h"
#include "route.h"

/* ---- partitioned.c ---- */

/** upulsar_send()'s checks of handle @p h and its choice of real producer
 *  for one message (routing, the group's failure): the producer, or NULL
 *  with *@p err set (and its detail). Advances the calling thread's round
 *  robin exactly as upulsar_send() does. @thread any */
up_rp_t *up_handle_route(struct upulsar_producer *h, const void *payload, size_t len,
                         const upulsar_send_opts_t *opts, upulsar_err_t *err);

/** The calling thread's round robin over handle @p h: its state when
 *  keyless messages of @p h are routed round robin (routing.mode, no
 *  router) and this thread's last round-robin message went through @p h
 *  (up_handle_route() of a keyless message makes it so); else NULL.
 *  @thread any (the state is the calling thread's) */
up_rr_t *up_handle_rr(struct upulsar_producer *h);

/** upulsar_send()'s checks of a message before it is routed (@p h not
 *  NULL): UPULSAR_OK or the error. */
static inline upulsar_err_t up_route_pre(struct upulsar_producer *h, const void *payload,
                                        size_t len, const upulsar_send_opts_t *opts)
{
    if (!payload && len)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "payload is NULL with length %zu", len);
    if (atomic_load_explicit(&h->closed, memory_order_relaxed))
        return up_seterr(UPULSAR_ERR__CLOSED, "producer for %s is stopped", h->topic);
    if (opts && (opts->flags & UPULSAR_SEND_NOCOPY) && !opts->free_cb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "UPULSAR_SEND_NOCOPY needs free_cb");
    return UPULSAR_OK;
}

/** The producer of slot @p s of @p groups (@p k producers per partition);
 *  its group in *@p gout. */
static inline up_rp_t *up_route_slot(up_group_t *groups, uint32_t s, int k, up_group_t **gout)
{
    if (__builtin_expect(k == 1, 1)) { /* one producer per partition: no division */
        *gout = &groups[s];
        return (*gout)->rps[0];
    }
    *gout = &groups[s / (uint32_t)k];
    return (*gout)->rps[s % (uint32_t)k];
}

/** upulsar_send()'s check of the group a message was routed to. */
static inline upulsar_err_t up_route_post(up_group_t *g)
{
    int gf = atomic_load_explicit(&g->failed, memory_order_relaxed);
    if (gf)
        return up_seterr((upulsar_err_t)gf, "%s: partition group failed: %s", g->topic,
                         upulsar_err_str((upulsar_err_t)gf));
    return UPULSAR_OK;
}

/** Whether options @p o leave a message to the round robin (when the
 *  handle has one): no key, no UPULSAR_SEND_PARTITION. */
static inline bool up_route_plain(const upulsar_send_opts_t *o)
{
    return !o || !(o->partition_key || o->partition_key_bytes ||
                   (o->flags & UPULSAR_SEND_PARTITION));
}

/** up_handle_route() of a message up_route_plain() leaves to the round
 *  robin @p rr (up_handle_rr() of @p h): the same checks and the same
 *  step of the round robin, without the rest of the routing's choices. */
static inline up_rp_t *up_route_rr(struct upulsar_producer *h, up_rr_t *rr, const void *payload,
                                   size_t len, const upulsar_send_opts_t *o, upulsar_err_t *err)
{
    if ((*err = up_route_pre(h, payload, len, o)))
        return NULL;
    int k = h->conf.producers_per_partition;
    /* count first, then the array (see struct upulsar_producer) */
    uint32_t ngroups = (uint32_t)atomic_load_explicit(&h->ngroups, memory_order_acquire);
    up_group_t *groups = atomic_load_explicit(&h->groups, memory_order_acquire);
    uint32_t s = up_rr_route(rr, &h->conf, len, ngroups * (uint32_t)k);
    up_group_t *g;
    up_rp_t *rp = up_route_slot(groups, s, k, &g);
    if ((*err = up_route_post(g)))
        return NULL;
    return rp;
}

/** The error upulsar_send() returns for @p err, a refusal of up_rp_enqueue()
 *  on handle @p h (in a callback, a QUEUE_FULL says that it did not wait).
 *  @thread any */
upulsar_err_t up_handle_send_err(struct upulsar_producer *h, upulsar_err_t err);

/* ---- send.c ---- */

/** The slow parts of up_send_opts(): @p o in another layout than this
 *  library's (NULL, with *@p err, when unusable), and the routing checks of
 *  binary keys and null values. */
const upulsar_send_opts_t *up_send_opts_layout(const upulsar_send_opts_t *o, size_t size,
                                               upulsar_send_opts_t *tmp, upulsar_err_t *err);
upulsar_err_t up_send_opts_check(const upulsar_send_opts_t *o, size_t len);

/** The options @p opts (@p size bytes, the caller's layout) as this library
 *  reads them, in *@p out (@p opts itself, or a copy in @p tmp; NULL when
 *  none), checked as far as routing needs: UPULSAR_OK or the error. */
static inline upulsar_err_t up_send_opts(const upulsar_send_opts_t *opts, size_t size,
                                         size_t len, upulsar_send_opts_t *tmp,
                                         const upulsar_send_opts_t **out)
{
    upulsar_err_t err = UPULSAR_OK;
    const upulsar_send_opts_t *o = opts;
    if (opts && __builtin_expect(size != sizeof *opts, 0)) {
        o = up_send_opts_layout(opts, size, tmp, &err);
        if (!o)
            return err;
    }
    /* what needs a look: a binary key, a null value, a flag bit nobody knows */
    if (__builtin_expect(o && (o->partition_key_bytes ||
                               (o->flags & ~(UPULSAR_SEND_NOCOPY | UPULSAR_SEND_SEQUENCE_ID |
                                             UPULSAR_SEND_PARTITION))),
                         0) &&
        (err = up_send_opts_check(o, len)))
        return err;
    *out = o;
    return UPULSAR_OK;
}

/** Cold parts of up_send_prep() and up_send_build(). */
upulsar_err_t up_send_failed(up_rp_t *rp, int failed);
void up_send_lazy_start(up_rp_t *rp);
upulsar_err_t up_send_rec_meta(const upulsar_send_opts_t *o, up_rec_meta_t *m,
                               const char *const **names_out);
upulsar_err_t up_send_size_slow(bool chunking, size_t maxsz, size_t len, size_t keys,
                                size_t props, size_t repl);

/** Before a message of @p rp: the producer's failure, if it failed; starts
 *  a lazily started producer. */
static inline upulsar_err_t up_send_prep(up_rp_t *rp)
{
    int failed = atomic_load_explicit(&rp->failed, memory_order_relaxed);
    if (failed)
        return up_send_failed(rp, failed);
    if (up_rp_st_relaxed(rp) == UP_RP_LAZY)
        up_send_lazy_start(rp);
    return UPULSAR_OK;
}

/* The size rule of upulsar_send() (upulsar.h): @p keys and @p props are
 * already bounded (2 * 65535, 1 MiB) and @p repl by UP_REPL_MAX_BYTES, so
 * their sums cannot overflow; @p len is compared before it is added. */
static inline upulsar_err_t up_send_size_check(bool chunking, size_t maxsz, size_t len,
                                               size_t keys, size_t props, size_t repl)
{
    size_t meta = props + 2 * keys + repl + UPULSAR_MSG_OVERHEAD;
    if (meta <= maxsz && len <= maxsz - meta)
        return UPULSAR_OK;
    return up_send_size_slow(chunking, maxsz, len, keys, props, repl);
}

/** The broker's max_message_size as up_send_build() takes it. */
static inline int32_t up_send_maxsz(const up_rp_t *rp)
{
    return atomic_load_explicit(&rp->client->max_message_size, memory_order_relaxed);
}

/** Validate the message (@p payload, @p len, options @p o as up_send_opts()
 *  gave them) for @p rp, whose client's max_message_size is @p maxsz
 *  (up_send_maxsz()), and fill *@p in, the record to write (no send time,
 *  no future yet): UPULSAR_OK, or the error with nothing changed
 *  anywhere. */
static inline __attribute__((always_inline)) upulsar_err_t
up_send_build(const struct upulsar_conf *cf, int32_t maxsz, const void *payload, size_t len,
              const upulsar_send_opts_t *o, up_rec_in_t *in)
{
    /* field by field: zeroing the whole struct at once (rep stos) and then
     * reading fields back costs the hot path a store-forwarding stall */
    in->flags = 0;
    in->future = NULL;
    in->event_time = 0;
    in->sent_us = 0;
    in->payload = payload;
    in->payload_len = len;
    in->key = NULL;
    in->key_len = 0;
    in->key_raw_len = 0;
    in->xflags = 0;
    in->okey = NULL;
    in->okey_len = 0;
    in->props = NULL;
    in->nprops = 0;
    in->props_len = 0;
    in->ext = (up_rec_ext_t){0};
    in->meta = (up_rec_meta_t){0};
    in->names = NULL;
    if (o) {
        if (o->partition_key) {
            in->key_len = strnlen(o->partition_key, UPULSAR_MAX_KEY_BYTES + 1);
            if (in->key_len > UPULSAR_MAX_KEY_BYTES)
                return up_seterr(UPULSAR_ERR__INVALID_ARG, "partition_key longer than 65535 bytes");
            in->key = o->partition_key;
            in->flags |= UP_REC_KEY;
        } else if (__builtin_expect(o->partition_key_bytes != NULL, 0)) {
            /* written as its base64 text (up_rec_write) */
            in->key = o->partition_key_bytes;
            in->key_raw_len = o->partition_key_bytes_len;
            in->key_len = up_b64_len(o->partition_key_bytes_len);
            in->xflags |= UP_REC_X_KEYB64;
            in->flags |= UP_REC_KEY;
        }
        if (__builtin_expect(o->flags & UPULSAR_SEND_NULL_VALUE, 0))
            in->xflags |= UP_REC_X_NULLV;
        if (o->ordering_key) {
            in->okey_len = o->ordering_key_len;
            if (in->okey_len > UPULSAR_MAX_KEY_BYTES || in->okey_len == 0)
                return up_seterr(UPULSAR_ERR__INVALID_ARG,
                                 "ordering_key must be 1 to 65535 bytes");
            in->okey = o->ordering_key;
        }
        if (o->properties_cnt) {
            if (!o->properties)
                return up_seterr(UPULSAR_ERR__INVALID_ARG, "properties is NULL");
            for (size_t i = 0; i < o->properties_cnt; i++)
                if (!o->properties[i].key || !o->properties[i].value)
                    return up_seterr(UPULSAR_ERR__INVALID_ARG,
                                     "property %zu has a NULL key or value", i);
            in->props_len = up_props_size_capped(o->properties, o->properties_cnt,
                                                 UPULSAR_MAX_PROPERTIES_BYTES);
            if (in->props_len > UPULSAR_MAX_PROPERTIES_BYTES)
                return up_seterr(UPULSAR_ERR__INVALID_ARG,
                                 "properties larger than 1 MiB (%d bytes encoded)",
                                 UPULSAR_MAX_PROPERTIES_BYTES);
            in->props = o->properties;
            in->nprops = o->properties_cnt;
        }
        /* a delivery report hands the message's opaque back: kept then */
        if (o->cb || (o->flags & UPULSAR_SEND_NOCOPY) || (o->opaque && cf->dr_cb)) {
            in->flags |= UP_REC_EXT;
            in->ext.cb = o->cb;
            in->ext.opaque = o->opaque;
        }
        if (o->flags & UPULSAR_SEND_NOCOPY) {
            in->flags |= UP_REC_NOCOPY;
            in->ext.free_cb = o->free_cb;
            in->ext.payload = payload;
        }
        in->event_time = o->event_time_ms;
        if (o->deliver_at_ms | o->deliver_after_ms | o->replication_clusters_cnt |
            (uint64_t)o->disable_replication | (uint64_t)(o->flags & UPULSAR_SEND_SEQUENCE_ID)) {
            upulsar_err_t e = up_send_rec_meta(o, &in->meta, &in->names);
            if (e)
                return e;
            in->flags |= UP_REC_META;
        }
    }
    /* a message whose entry (or, chunked, whose chunks) cannot fit in
     * max_message_size is refused here, with nothing else affected */
    return up_send_size_check(cf->chunking_enabled, maxsz > 0 ? (size_t)maxsz : 0, len,
                              in->key_len + in->okey_len, in->props_len,
                              (size_t)in->meta.repl_len + 2u * in->meta.nrepl);
}

/* sends of this thread since its last sampled one (latency.sample.every);
 * shared by upulsar_send() and upulsar_send_many() (send.c) */
extern _Thread_local unsigned up_lat_tick __attribute__((visibility("hidden")));

/** latency.sample.every: one send in N of this thread carries its send
 *  time for the latency histogram (a clock read costs about as much as the
 *  rest of a send). The send time the message is to carry (up_now_us()),
 *  or 0 when it carries none; counts the message. */
static inline uint64_t up_send_stamp_us(const struct upulsar_conf *cf)
{
    if (cf->latency_sample_every > 0 && ++up_lat_tick >= (unsigned)cf->latency_sample_every) {
        up_lat_tick = 0;
        return up_now_us();
    }
    return 0;
}

/** up_send_stamp_us() into @p in. After up_send_build(), before the
 *  record's size. */
static inline void up_send_stamp(const struct upulsar_conf *cf, up_rec_in_t *in)
{
    uint64_t t = up_send_stamp_us(cf);
    if (t)
        in->sent_us = t;
}

/** Whether options @p o (as up_send_opts() gave them; NULL = none) make a
 *  plain record (record.h up_rec_plain_t): none, or nothing but a
 *  callback, an opaque and an event time, and with @p key_ok a partition
 *  key as text. If so, *@p m is the record of @p payload, @p len as
 *  up_send_build() would make it (no send time yet: up_send_stamp_us());
 *  its size rule is still to be checked (up_send_size_check() with
 *  m->key_len of keys, no properties or clusters). */
static inline bool up_send_plain_as(const struct upulsar_conf *cf, const upulsar_send_opts_t *o,
                                    const void *payload, size_t len, up_rec_plain_t *m,
                                    bool key_ok)
{
    m->payload = payload;
    m->len = len;
    m->sent_us = 0;
    m->key = NULL;
    m->key_len = 0;
    if (!o) {
        m->event_time = 0;
        m->ext = false;
        m->cb = NULL;
        m->opaque = NULL;
        return true;
    }
    if ((o->partition_key && !key_ok) || o->partition_key_bytes || o->ordering_key ||
        o->properties_cnt || o->flags ||
        (o->deliver_at_ms | o->deliver_after_ms | o->replication_clusters_cnt |
         (uint64_t)o->disable_replication))
        return false;
    if (o->partition_key) {
        /* as up_send_build() takes it; a longer one goes its way (refused) */
        m->key_len = strnlen(o->partition_key, UPULSAR_MAX_KEY_BYTES + 1);
        if (m->key_len > UPULSAR_MAX_KEY_BYTES)
            return false;
        m->key = o->partition_key;
    }
    m->event_time = o->event_time_ms;
    /* a delivery report hands the message's opaque back: kept then (as
     * up_send_build()) */
    m->ext = o->cb || (o->opaque && cf->dr_cb);
    m->cb = o->cb;
    m->opaque = o->opaque;
    return true;
}

static inline bool up_send_plain(const struct upulsar_conf *cf, const upulsar_send_opts_t *o,
                                 const void *payload, size_t len, up_rec_plain_t *m)
{
    return up_send_plain_as(cf, o, payload, len, m, false);
}

/** up_send_plain(), and also a message whose only option besides those is
 *  a partition key as text (upulsar_send(): its size rule counts the key,
 *  m->key_len). */
static inline bool up_send_plain_keyed(const struct upulsar_conf *cf,
                                       const upulsar_send_opts_t *o, const void *payload,
                                       size_t len, up_rec_plain_t *m)
{
    return up_send_plain_as(cf, o, payload, len, m, true);
}

/** up_send_build() of plain record @p m (its size rule passed) into
 *  *@p in, stamped as @p m is. */
static inline void up_send_plain_in(const struct upulsar_conf *cf, int32_t maxsz,
                                    const up_rec_plain_t *m, up_rec_in_t *in)
{
    upulsar_err_t e = up_send_build(cf, maxsz, m->payload, m->len, NULL, in);
    (void)e; /* the size rule passed (with the key's bytes, if any) */
    in->event_time = m->event_time;
    if (m->key) {
        in->flags |= UP_REC_KEY;
        in->key = m->key;
        in->key_len = m->key_len;
    }
    if (m->ext) {
        in->flags |= UP_REC_EXT;
        in->ext.cb = m->cb;
        in->ext.opaque = m->opaque;
    }
    in->sent_us = m->sent_us;
}

/** The rest of upulsar_send() for the record @p in built by up_send_build()
 *  (and stamped): its size, the private copy of a large payload, the
 *  limits, the future, the reservation (waiting with block.if.queue.full),
 *  the write, the commit and the wake. *@p future (when not NULL) is set
 *  on success only. */
upulsar_err_t up_rp_enqueue_in(up_rp_t *rp, up_rec_in_t *in, upulsar_future_t **future);

/** The rest of upulsar_send() for plain record @p m (record.h; its size
 *  rule passed with the client's max_message_size @p maxsz, and stamped):
 *  as up_rp_enqueue_in() of up_send_plain_in(), written with
 *  up_rec_write_plain() unless its payload needs a private copy. */
upulsar_err_t up_rp_enqueue_plain(up_rp_t *rp, int32_t maxsz, const up_rec_plain_t *m,
                                  upulsar_future_t **future);

/** Reserve @p n cells of @p rp's ring now, if the ring and the memory
 *  budget have room for them and for @p ext bytes of payload kept out of
 *  the ring: true and *@p pos, charged as up_rp_enqueue() charges; false
 *  with nothing taken and nothing counted (no waiting, no statistics). */
bool up_rp_reserve_now(up_rp_t *rp, uint64_t n, uint64_t ext, uint64_t *pos);

/** max.pending.messages (@p maxp > 0): count @p n messages at once if they
 *  all fit now; false with nothing counted. */
static inline bool up_send_pending_take(up_rp_t *rp, int64_t maxp, int64_t n)
{
    if (atomic_fetch_add_explicit(&rp->lim_msgs, n, memory_order_relaxed) + n <= maxp)
        return true;
    atomic_fetch_sub_explicit(&rp->lim_msgs, n, memory_order_relaxed);
    return false;
}

/* How far ahead of its record a send asks for the ring's cells (cells). */
#define UP_SEND_PF_AHEAD (512u / UP_RING_CELL)

/* A prefetch for writing: the line comes exclusive, not shared (x86-64
 * without -mprfchw makes a read prefetch of __builtin_prefetch(p, 1);
 * processors without PREFETCHW run it as a no-op) */
static inline void up_send_prefetch_w(const void *p)
{
#if defined(__x86_64__)
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1);
#endif
}

/** Write @p in into the @p ncells cells reserved at @p pos of @p r and
 *  commit it (R1, ring.h). */
/** Before writing the record of @p ncells cells at @p pos of @p r: the
 *  cells the next records of this ring will take were last read by the
 *  loop, on its core: ask for them for writing now, so that the writes of
 *  a later send do not wait for them (the reservation's locked instruction
 *  waits for every earlier store). */
static inline void up_send_prefetch_ahead(up_ring_t *r, uint64_t pos, uint64_t ncells)
{
    for (uint64_t i = 0; i < ncells && i < 8; i += 64 / UP_RING_CELL)
        up_send_prefetch_w(up_ring_cell(r, pos + UP_SEND_PF_AHEAD + i));
}

static inline void up_send_write(up_ring_t *r, uint64_t pos, uint64_t ncells,
                                 const up_rec_in_t *in)
{
    up_send_prefetch_ahead(r, pos, ncells);
    up_rec_write(r, pos, ncells, in);
    up_ring_commit(r, pos); /* R1 */
}

/** After the commits of one or more records of @p rp (their reservation's
 *  CAS was the fence of the loop's sleep handshake, ring.h R6): @p rp on
 *  its loop's active list, and the loop woken if it sleeps and should
 *  not. */
static inline void up_send_publish(up_rp_t *rp)
{
    /* no fence: the reservation's seq_cst CAS came before these loads
     * (ring.h R6, the sleep handshake) */
    up_rp_mark_active(rp); /* an idle producer joins its loop's active list */
    /* a loop sleeping until a deadline is woken when that deadline is not
     * this producer's (`armed`, drain.c) or a full batch is waiting */
    int s = atomic_load_explicit(&rp->loop->sleeping, memory_order_seq_cst);
    if (s == UP_SLEEP_IDLE ||
        (s == UP_SLEEP_TIMED && (!atomic_load_explicit(&rp->armed, memory_order_relaxed) ||
                                 up_ring_used(&rp->ring) >= rp->wake_cells)))
        up_loop_wake(rp->loop);
}
#endif
