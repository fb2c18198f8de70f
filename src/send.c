/* send.c -- upulsar_send()'s work on one real producer, on the caller's
 * thread: validate the options, check the size rule, count the message
 * against max.pending.messages and memory.limit.bytes (always counted;
 * ring cells by budget unit, see below), reserve ring cells
 * (waiting for room with block.if.queue.full), write the record
 * (record.c), commit it and wake the loop if it sleeps. Only
 * up_rp_limits_release() and up_rp_mem_idle() run on the loop, as messages
 * resolve. */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "producer_int.h"
#include "route.h"

/* ---- limits: max.pending.messages, memory.limit.bytes --------------------- */

/* memory.limit.bytes is always counted: what each message counts
 * (up_rec_mem(): its ring cells, plus its payload when that is kept out of
 * the ring) from its send until it resolves, over every producer of the
 * client (c->mem_used, checked against the budget at every take).
 *
 * Ring cells are charged ahead, by budget unit of the producer's ring
 * (ring.h, "Budget units": a page of cells, less for a small budget): the
 * sender whose reservation enters a unit takes the unit's bytes from the
 * client before its CAS publishes the reservation, so a send that stays
 * within a unit already charged takes nothing (with 100-byte messages one
 * send in ~40 takes a unit) and the send path's only locked instruction is
 * the CAS on the ring's head. A payload kept out of the ring (no-copy
 * sends, large messages) is taken by its send together with the units its
 * record enters (one take decides). Resolved messages give their bytes
 * back (the loop, per batch). What a producer holds (rp->mem_held) is thus
 * its counted messages plus the charged rest of its ring's current unit
 * (under one unit); a ring reset past the middle of the first page hands
 * that rest back (up_ring_idle()), and once none of the producer's
 * messages is counted and its ring is empty the loop moves the ring to a
 * unit boundary and gives the rest back (up_ring_realign()), so a producer
 * with nothing in flight holds nothing.
 *
 * Share (a dynamic threshold): a producer may take more only while what it
 * would then hold is no more than what the client would have left free, so
 * one busy producer holds at most half of the budget, k busy ones about
 * 1/(k+1) each, and room is always left for the others. A producer that
 * holds nothing may take one unit (or one message) whenever the budget has
 * room for it; a message larger than the whole budget is taken only when
 * the client has nothing else taken.
 *
 * Orders: every counter here is a relaxed atomic. Nothing is published
 * through them: the charge of a unit precedes the reservation in program
 * order only so that head never enters a unit not charged, and the rest a
 * realign gives back is decided by positions alone (ring.h). */

/* Bytes of one budget unit of @p rp's ring. */
static inline int64_t unit_bytes(const up_rp_t *rp)
{
    return (int64_t)(rp->ring.unit * UP_RING_CELL);
}

void up_rp_mem_init(up_rp_t *rp)
{
    /* at most a page of cells, and at most 1/4096 of the budget: the rest
     * a producer holds is then a tiny part of the budget, and a small
     * budget (under 4 MiB: 1 cell at 128 KiB) charges message by message,
     * exactly */
    int64_t lim = rp->client->conf.memory_limit_bytes;
    uint64_t cells = rp->ring.home;
    if (lim > 0 && (uint64_t)(lim / 4096) / UP_RING_CELL < cells)
        cells = (uint64_t)(lim / 4096) / UP_RING_CELL;
    up_ring_set_unit(&rp->ring, cells);
}

/* Give @p bytes that @p rp took back to the client. */
static void mem_give(up_rp_t *rp, int64_t bytes)
{
    atomic_fetch_sub_explicit(&rp->mem_held, bytes, memory_order_relaxed);
    atomic_fetch_sub_explicit(&rp->client->mem_used, bytes, memory_order_relaxed);
}

/* The loop, @p rp holding @p held: if that is only the charged rest of its
 * ring's unit (no message counted) and the ring is empty, realign the ring
 * and give the rest back. */
static void mem_realign(up_rp_t *rp, int64_t held)
{
    up_ring_t *r = &rp->ring;
    uint64_t rest = up_ring_unit_rest(r, r->ctail);
    if (!rest || held != (int64_t)(rest * UP_RING_CELL))
        return;
    uint64_t got = up_ring_realign(r, up_now_us());
    if (got)
        mem_give(rp, (int64_t)(got * UP_RING_CELL));
}

void up_rp_mem_idle(up_rp_t *rp)
{
    mem_realign(rp, atomic_load_explicit(&rp->mem_held, memory_order_relaxed));
}

void up_rp_mem_return_all(up_rp_t *rp)
{
    int64_t held = atomic_exchange_explicit(&rp->mem_held, 0, memory_order_relaxed);
    if (held)
        atomic_fetch_sub_explicit(&rp->client->mem_used, held, memory_order_relaxed);
}

void up_rp_limits_release(up_rp_t *rp, uint64_t n, uint64_t bytes)
{
    if (rp->handle->conf.max_pending_messages > 0)
        atomic_fetch_sub_explicit(&rp->lim_msgs, (int64_t)n, memory_order_relaxed);
    if (bytes) {
        int64_t left = atomic_fetch_sub_explicit(&rp->mem_held, (int64_t)bytes,
                                                 memory_order_relaxed) -
                       (int64_t)bytes;
        atomic_fetch_sub_explicit(&rp->client->mem_used, (int64_t)bytes, memory_order_relaxed);
        if (left < unit_bytes(rp))
            mem_realign(rp, left);
    }
}

/* Take @p need bytes for @p rp from the client (see above). False when the
 * budget or the producer's share is reached. */
static bool mem_take(up_rp_t *rp, int64_t need)
{
    struct upulsar_client *c = rp->client;
    int64_t lim = c->conf.memory_limit_bytes;
    int64_t used = atomic_load_explicit(&c->mem_used, memory_order_relaxed);
    for (;;) {
        if (lim > 0) {
            int64_t held = atomic_load_explicit(&rp->mem_held, memory_order_relaxed);
            int64_t avail = lim - used;
            /* held + need <= avail - need */
            int64_t share = avail > held ? (avail - held) / 2 : 0;
            if (need <= share)
                ;
            else if (held == 0 && need <= avail)
                ; /* holds nothing: one unit (or message) while there is room */
            else if (used == 0 && need > lim)
                ; /* larger than the budget: alone */
            else
                return false;
        }
        if (atomic_compare_exchange_weak_explicit(&c->mem_used, &used, used + need,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            int64_t pk = atomic_load_explicit(&c->mem_peak, memory_order_relaxed);
            while (used + need > pk &&
                   !atomic_compare_exchange_weak_explicit(&c->mem_peak, &pk, used + need,
                                                          memory_order_relaxed,
                                                          memory_order_relaxed))
                ;
            atomic_fetch_add_explicit(&rp->mem_held, need, memory_order_relaxed);
            return true;
        }
    }
}

/* One attempt to count a message against max.pending.messages: true if
 * it fits. */
static bool pending_try(up_rp_t *rp, int64_t maxp)
{
    if (atomic_fetch_add_explicit(&rp->lim_msgs, 1, memory_order_relaxed) < maxp)
        return true;
    atomic_fetch_sub_explicit(&rp->lim_msgs, 1, memory_order_relaxed);
    return false;
}

/* Undo pending_reserve() for a message that was not accepted after all. */
static void pending_undo(up_rp_t *rp)
{
    if (rp->handle->conf.max_pending_messages > 0)
        atomic_fetch_sub_explicit(&rp->lim_msgs, 1, memory_order_relaxed);
}

/* The error of a send refused for want of memory (@p need bytes). */
static upulsar_err_t mem_refused(up_rp_t *rp, uint64_t need)
{
    return up_seterr(UPULSAR_ERR__QUEUE_FULL,
                     "%s: memory.limit.bytes %lld reached for %llu bytes (the client has %lld "
                     "taken, this producer %lld of it)",
                     rp->topic, (long long)rp->client->conf.memory_limit_bytes,
                     (unsigned long long)need,
                     (long long)atomic_load_explicit(&rp->client->mem_used, memory_order_relaxed),
                     (long long)atomic_load_explicit(&rp->mem_held, memory_order_relaxed));
}

/* Waiting for room (block.if.queue.full): CLOSED or the producer's
 * failure when the wait must end, else UPULSAR_OK. */
static upulsar_err_t wait_check(up_rp_t *rp)
{
    if (atomic_load_explicit(&rp->handle->closed, memory_order_relaxed))
        return up_seterr(UPULSAR_ERR__CLOSED, "producer is stopping");
    if (atomic_load_explicit(&rp->failed, memory_order_relaxed))
        return up_seterr((upulsar_err_t)atomic_load(&rp->failed), "%s: producer failed",
                         rp->topic);
    return UPULSAR_OK;
}

/* One pause of a wait for memory: what is counted leaves only once
 * acknowledged, so push it out. */
static void mem_pause(up_rp_t *rp, unsigned *spins)
{
    atomic_store_explicit(&rp->flush_req, 1, memory_order_relaxed);
    up_loop_wake(rp->loop);
    if (++*spins < 8) {
        sched_yield();
    } else {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

/* max.pending.messages (when set): count the message, waiting for room
 * with block.if.queue.full. */
static upulsar_err_t pending_reserve(up_rp_t *rp)
{
    int64_t maxp = rp->handle->conf.max_pending_messages;
    if (__builtin_expect(maxp <= 0 || pending_try(rp, maxp), 1))
        return UPULSAR_OK;
    up_stats_no_room(rp, UP_ROOM_PENDING, 0);
    const struct upulsar_conf *cf = rp_conf(rp);
    uint64_t deadline = UINT64_MAX;
    if (cf->block_if_queue_full && cf->send_timeout_ms > 0)
        deadline = up_now_us() + (uint64_t)cf->send_timeout_ms * 1000u;
    unsigned spins = 0;
    /* never in a callback: its thread may be the one that frees room */
    bool block = cf->block_if_queue_full && up_thread_role() == UP_THREAD_APP;
    while (block) {
        upulsar_err_t e = wait_check(rp);
        if (e)
            return e;
        if (up_now_us() > deadline)
            break;
        mem_pause(rp, &spins);
        if (pending_try(rp, maxp))
            return UPULSAR_OK;
    }
    up_stats_no_room(rp, UP_ROOM_PENDING, 1);
    return up_seterr(UPULSAR_ERR__QUEUE_FULL, "%s: max.pending.messages %d reached", rp->topic,
                     cf->max_pending_messages);
}

/* The ring reservation when the first attempt did not succeed (@p rc and
 * @p units are what it returned), or for a message whose payload stays out
 * of the ring (@p ext bytes, taken together with the units the reservation
 * enters, so one take decides whether the message fits). Charges the units
 * (memory.limit.bytes) before the reservation is published, waits for room
 * with block.if.queue.full (memory or ring space), and holds nothing
 * charged while it waits or once it fails. */
static __attribute__((noinline)) upulsar_err_t reserve_slow(up_rp_t *rp, uint64_t n,
                                                            uint64_t ext, up_ring_res_t rc,
                                                            uint64_t units, uint64_t *pos)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    up_ring_t *r = &rp->ring;
    int64_t ub = unit_bytes(rp);
    uint64_t have = 0, deadline = 0, ext_have = 0;
    bool waited = false;
    /* never in a callback: its thread may be the one that frees room */
    bool block = cf->block_if_queue_full && up_thread_role() == UP_THREAD_APP;
    unsigned spins = 0;
    int why;
    int64_t need = 0;
    if (ext) { /* nothing reserved yet: what the reservation enters now */
        rc = UP_RING_CHARGE;
        units = up_ring_units_entered(r, up_ring_head_pos(r), n);
    }
    for (;;) {
        why = rc == UP_RING_FULL ? UP_ROOM_RING : -1; /* -1: room */
        if (rc == UP_RING_CHARGE) {
            need = (int64_t)(units - have) * ub + (int64_t)(ext - ext_have);
            if (need <= 0 || mem_take(rp, need)) {
                have = units;
                ext_have = ext;
            } else {
                why = UP_ROOM_MEMORY;
            }
        }
        if (why >= 0) {
            if (have || ext_have) {
                mem_give(rp, (int64_t)have * ub + (int64_t)ext_have);
                have = ext_have = 0;
            }
            if (!waited) {
                waited = true;
                up_stats_no_room(rp, why, 0);
                if (!block)
                    break;
                deadline = cf->send_timeout_ms > 0
                               ? up_now_us() + (uint64_t)cf->send_timeout_ms * 1000u
                               : UINT64_MAX;
            }
            upulsar_err_t e = wait_check(rp);
            if (e)
                return e;
            if (why == UP_ROOM_MEMORY) {
                if (up_now_us() > deadline)
                    break;
                mem_pause(rp, &spins);
            } else {
                up_loop_wake(rp->loop);
                if (++spins >= 8) {
                    uint64_t now = up_now_us();
                    if (now > deadline)
                        break;
                    /* sleep until the loop frees space (bounded, in case
                     * the loop is busy elsewhere) */
                    up_ring_wait_space(r, n, deadline - now < 2000 ? deadline - now : 2000);
                } else {
                    sched_yield();
                }
            }
            if (ext) { /* the payload is taken with the units, as above */
                rc = UP_RING_CHARGE;
                units = up_ring_units_entered(r, up_ring_head_pos(r), n);
                continue;
            }
        }
        rc = up_ring_reserve_charged(r, n, have, pos, &units);
        if (rc == UP_RING_OK) {
            if (have > units)
                mem_give(rp, (int64_t)(have - units) * ub);
            return UPULSAR_OK;
        }
    }
    upulsar_err_t e = wait_check(rp);
    if (e)
        return e;
    up_stats_no_room(rp, why, 1);
    if (why == UP_ROOM_MEMORY)
        return mem_refused(rp, (uint64_t)need);
    return up_seterr(UPULSAR_ERR__QUEUE_FULL, "%s: queue full (queue.buffer.bytes %lld)",
                     rp->topic, (long long)cf->queue_buffer_bytes);
}

/* ---- caller side: enqueue ------------------------------------------------- */

/* lazy.start.partitions: the first message for a producer not started yet
 * hands it to the supervisor, which creates it at once (as after a graceful
 * close: no backoff). */
static void lazy_start(up_rp_t *rp)
{
    if (up_rp_transition(rp, UP_RP_BIT(UP_RP_LAZY), UP_RP_BACKOFF_NOW,
                         "its first message (lazy.start.partitions)"))
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

/* Validate the options that need a meta section and fill it (and the
 * cluster names to write after it). */
static upulsar_err_t rec_meta(const upulsar_send_opts_t *o, up_rec_meta_t *m,
                              const char *const **names_out)
{
    size_t n;
    const char *const *names = repl_names(o, &n);
    *names_out = names;
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
    if (props + keys + repl + UPULSAR_MSG_OVERHEAD > maxsz / 2)
        return up_seterr(UPULSAR_ERR__MSG_TOO_LARGE,
                         "%zu bytes of keys, %zu of properties and %zu of replication clusters "
                         "leave no room for payload in chunks of the broker's max_message_size "
                         "%zu (with %d bytes of metadata they must fit in half of it)",
                         keys, props, repl, maxsz, UPULSAR_MSG_OVERHEAD);
    return UPULSAR_OK;
}

/* How far ahead of its record a send asks for the ring's cells (cells). */
#define PF_AHEAD (512u / UP_RING_CELL)

/* A prefetch for writing: the line comes exclusive, not shared (x86-64
 * without -mprfchw makes a read prefetch of __builtin_prefetch(p, 1);
 * processors without PREFETCHW run it as a no-op) */
static inline void prefetch_w(const void *p)
{
#if defined(__x86_64__)
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1);
#endif
}

/* up_fence_light_ok(), asked once: it is settled when the first client is
 * created (up_fence_init()), before any send, and never changes */
static _Atomic int fence_light_ok = -1;

static inline bool fence_light(void)
{
    int v = atomic_load_explicit(&fence_light_ok, memory_order_relaxed);
    if (__builtin_expect(v < 0, 0)) {
        v = up_fence_light_ok();
        atomic_store_explicit(&fence_light_ok, v, memory_order_relaxed);
    }
    return v;
}

/* sends of this thread since its last sampled one (latency.sample.every) */
static _Thread_local unsigned lat_tick;

upulsar_err_t up_rp_enqueue(up_rp_t *rp, const void *payload, size_t len,
                            const upulsar_send_opts_t *o, upulsar_future_t **future)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    int failed = atomic_load_explicit(&rp->failed, memory_order_relaxed);
    if (failed)
        return up_seterr((upulsar_err_t)failed, "%s: producer failed: %s", rp->topic,
                         upulsar_err_str((upulsar_err_t)failed));
    if (up_rp_st_relaxed(rp) == UP_RP_LAZY)
        lazy_start(rp);
    int32_t maxsz = atomic_load_explicit(&rp->client->max_message_size, memory_order_relaxed);
    /* field by field: zeroing the whole struct at once (rep stos) and then
     * reading fields back costs the hot path a store-forwarding stall */
    up_rec_in_t in;
    in.flags = 0;
    in.future = NULL;
    in.event_time = 0;
    in.sent_us = 0;
    in.payload = payload;
    in.payload_len = len;
    in.key = NULL;
    in.key_len = 0;
    in.key_raw_len = 0;
    in.xflags = 0;
    in.okey = NULL;
    in.okey_len = 0;
    in.props = NULL;
    in.nprops = 0;
    in.props_len = 0;
    in.ext = (up_rec_ext_t){0};
    in.meta = (up_rec_meta_t){0};
    in.names = NULL;
    if (o) {
        if (o->partition_key) {
            in.key_len = strnlen(o->partition_key, UPULSAR_MAX_KEY_BYTES + 1);
            if (in.key_len > UPULSAR_MAX_KEY_BYTES)
                return up_seterr(UPULSAR_ERR__INVALID_ARG, "partition_key longer than 65535 bytes");
            in.key = o->partition_key;
            in.flags |= UP_REC_KEY;
        } else if (__builtin_expect(o->partition_key_bytes != NULL, 0)) {
            /* written as its base64 text (up_rec_write) */
            in.key = o->partition_key_bytes;
            in.key_raw_len = o->partition_key_bytes_len;
            in.key_len = up_b64_len(o->partition_key_bytes_len);
            in.xflags |= UP_REC_X_KEYB64;
            in.flags |= UP_REC_KEY;
        }
        if (__builtin_expect(o->flags & UPULSAR_SEND_NULL_VALUE, 0))
            in.xflags |= UP_REC_X_NULLV;
        if (o->ordering_key) {
            in.okey_len = o->ordering_key_len;
            if (in.okey_len > UPULSAR_MAX_KEY_BYTES || in.okey_len == 0)
                return up_seterr(UPULSAR_ERR__INVALID_ARG,
                                 "ordering_key must be 1 to 65535 bytes");
            in.okey = o->ordering_key;
        }
        if (o->properties_cnt) {
            if (!o->properties)
                return up_seterr(UPULSAR_ERR__INVALID_ARG, "properties is NULL");
            for (size_t i = 0; i < o->properties_cnt; i++)
                if (!o->properties[i].key || !o->properties[i].value)
                    return up_seterr(UPULSAR_ERR__INVALID_ARG, "property %zu has a NULL key or value", i);
            in.props_len = up_props_size_capped(o->properties, o->properties_cnt,
                                                UPULSAR_MAX_PROPERTIES_BYTES);
            if (in.props_len > UPULSAR_MAX_PROPERTIES_BYTES)
                return up_seterr(UPULSAR_ERR__INVALID_ARG,
                                 "properties larger than 1 MiB (%d bytes encoded)",
                                 UPULSAR_MAX_PROPERTIES_BYTES);
            in.props = o->properties;
            in.nprops = o->properties_cnt;
        }
        /* a delivery report hands the message's opaque back: kept then */
        if (o->cb || (o->flags & UPULSAR_SEND_NOCOPY) || (o->opaque && cf->dr_cb)) {
            in.flags |= UP_REC_EXT;
            in.ext.cb = o->cb;
            in.ext.opaque = o->opaque;
        }
        if (o->flags & UPULSAR_SEND_NOCOPY) {
            in.flags |= UP_REC_NOCOPY;
            in.ext.free_cb = o->free_cb;
            in.ext.payload = payload;
        }
        in.event_time = o->event_time_ms;
        if (o->deliver_at_ms | o->deliver_after_ms | o->replication_clusters_cnt |
            (uint64_t)o->disable_replication | (uint64_t)(o->flags & UPULSAR_SEND_SEQUENCE_ID)) {
            upulsar_err_t e = rec_meta(o, &in.meta, &in.names);
            if (e)
                return e;
            in.flags |= UP_REC_META;
        }
    }
    /* a message whose entry (or, chunked, whose chunks) cannot fit in
     * max_message_size is refused here, with nothing else affected */
    upulsar_err_t se = size_check(cf->chunking_enabled, maxsz > 0 ? (size_t)maxsz : 0, len,
                                  in.key_len + in.okey_len, in.props_len,
                                  (size_t)in.meta.repl_len + 2u * in.meta.nrepl);
    if (se)
        return se;
    /* from here on len <= UPULSAR_MAX_CHUNKED_BYTES: every sum below fits */
    /* latency.sample.every: one send in N of this thread carries its send
     * time for the latency histogram (a clock read costs about as much as
     * the rest of a send) */
    if (cf->latency_sample_every > 0 &&
        ++lat_tick >= (unsigned)cf->latency_sample_every) {
        lat_tick = 0;
        in.sent_us = up_now_us();
    }
    size_t size = up_rec_size(&in);
    uint64_t ncells = up_ring_cells_for(size);
    void *copy = NULL;
    if (ncells > rp->ring.cap / 4 && !(in.flags & UP_REC_NOCOPY)) {
        /* too big to share the ring: keep a private copy (one allocation
         * per large message, never on the small-message path) */
        copy = malloc(len ? len : 1);
        if (!copy)
            return up_seterr(UPULSAR_ERR__NOMEM, "out of memory copying a %zu byte message", len);
        memcpy(copy, payload, len);
        in.flags |= UP_REC_EXT | UP_REC_NOCOPY;
        in.ext.free_cb = internal_free;
        in.ext.payload = copy;
        if (!o || !o->cb)
            in.ext.cb = NULL;
        size = up_rec_size(&in);
        ncells = up_ring_cells_for(size);
    }
    if (ncells > rp->ring.cap / 2) {
        free(copy);
        return up_seterr(UPULSAR_ERR__MSG_TOO_LARGE,
                         "key and properties need %zu bytes, more than half of queue.buffer.bytes",
                         size);
    }
    upulsar_err_t le = pending_reserve(rp);
    if (le) {
        free(copy);
        return le;
    }
    struct upulsar_future *f = NULL;
    if (future) {
        f = up_future_alloc(&rp->client->futures);
        if (!f) {
            free(copy);
            pending_undo(rp);
            return up_seterr(UPULSAR_ERR__QUEUE_FULL,
                             "future pool exhausted: %llu futures not released, the most a "
                             "client holds (release resolved futures, or send without one)",
                             (unsigned long long)UP_FUT_MAX_SEGS * UP_FUT_SEG_SIZE);
        }
    }
    /* memory.limit.bytes: the ring's units the reservation enters, plus the
     * payload when it stays out of the ring (see "limits" above) */
    uint64_t ext = (in.flags & UP_REC_NOCOPY) ? (uint64_t)len : 0;
    up_ring_t *r = &rp->ring;
    uint64_t pos = 0, units = 0; /* pos: set by the reservation that succeeds */
    up_ring_res_t rc = ext ? UP_RING_CHARGE : up_ring_reserve_charged(r, ncells, 0, &pos, &units);
    if (__builtin_expect(rc != UP_RING_OK, 0)) {
        le = reserve_slow(rp, ncells, ext, rc, units, &pos);
        if (le) {
            free(copy);
            pending_undo(rp);
            if (f) {
                upulsar_future_release(f);
                up_future_resolve(f, UPULSAR_ERR__QUEUE_FULL, NULL);
            }
            return le;
        }
    }
    in.future = f;
    /* the cells the next records of this ring will take were last read by
     * the loop, on its core: ask for them for writing now, so that the
     * writes of a later send do not wait for them (the reservation's locked
     * instruction waits for every earlier store) */
    for (uint64_t i = 0; i < ncells && i < 8; i += 64 / UP_RING_CELL)
        prefetch_w(up_ring_cell(r, pos + PF_AHEAD + i));
    up_rec_write(r, pos, ncells, &in);
    up_ring_commit(r, pos); /* R1 */
    /* pairs with the loop's store of `sleeping` + heavy fence (uring_loop.c) */
    if (fence_light())
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
    up_rp_mark_active(rp); /* an idle producer joins its loop's active list */
    /* a loop sleeping until a deadline is woken when that deadline is not
     * this producer's (`armed`, batcher.c) or a full batch is waiting */
    int s = atomic_load_explicit(&rp->loop->sleeping, memory_order_relaxed);
    if (s == UP_SLEEP_IDLE ||
        (s == UP_SLEEP_TIMED && (!atomic_load_explicit(&rp->armed, memory_order_relaxed) ||
                                 up_ring_used(r) >= rp->wake_cells)))
        up_loop_wake(rp->loop);
    if (future)
        *future = f;
    return UPULSAR_OK;
}

/* ---- the public entry points: growth of upulsar_send_opts_t --------------- */

/* @p o as this library's layout: @p o itself when the caller was built
 * with it (the common case: nothing copied), else a copy in @p tmp with
 * the fields the caller's layout lacks zeroed. NULL with the error set when
 * the layout is unusable (see "Growth of upulsar_send_opts_t", upulsar.h). */
static const upulsar_send_opts_t *opts_layout(const upulsar_send_opts_t *o, size_t size,
                                              upulsar_send_opts_t *tmp, upulsar_err_t *err)
{
    if (!o || __builtin_expect(size == sizeof *o, 1))
        return o;
    if (size < UPULSAR_SEND_OPTS_SIZE_0_2) {
        *err = up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "send options of %zu bytes: smaller than the first layout (%zu bytes)",
                         size, (size_t)UPULSAR_SEND_OPTS_SIZE_0_2);
        return NULL;
    }
    if (size > sizeof *o) {
        /* a newer header's fields: refused unless unset */
        const unsigned char *extra = (const unsigned char *)o + sizeof *o;
        for (size_t i = 0; i < size - sizeof *o; i++)
            if (extra[i]) {
                *err = up_seterr(UPULSAR_ERR__INVALID_ARG,
                                 "send options of %zu bytes set a field at byte %zu that this "
                                 "library (upulsar %s, %zu bytes of options) does not know",
                                 size, sizeof *o + i, UPULSAR_VERSION_STR, sizeof *o);
                return NULL;
            }
        return o;
    }
    memset(tmp, 0, sizeof *tmp);
    memcpy(tmp, o, size);
    if ((tmp->flags & UPULSAR_SEND_PARTITION) &&
        size < offsetof(upulsar_send_opts_t, partition) + sizeof tmp->partition) {
        *err = up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "UPULSAR_SEND_PARTITION needs upulsar_send_opts_t.partition, which send "
                         "options of %zu bytes (an older layout) do not have",
                         size);
        return NULL;
    }
    return tmp;
}

/* Checks of the options that decide the routing too. */
static upulsar_err_t opts_check(const upulsar_send_opts_t *o, size_t len)
{
    if (!o)
        return UPULSAR_OK;
    if (__builtin_expect(o->partition_key_bytes != NULL, 0)) {
        if (o->partition_key)
            return up_seterr(UPULSAR_ERR__INVALID_ARG,
                             "partition_key and partition_key_bytes are both set (one key)");
        if (o->partition_key_bytes_len > UPULSAR_MAX_KEY_BYTES_BINARY)
            return up_seterr(UPULSAR_ERR__INVALID_ARG,
                             "partition_key_bytes of %zu bytes: at most %d (its base64 text "
                             "must fit in %d bytes)",
                             o->partition_key_bytes_len, UPULSAR_MAX_KEY_BYTES_BINARY,
                             UPULSAR_MAX_KEY_BYTES);
    }
    if ((o->flags & UPULSAR_SEND_NULL_VALUE) && len)
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "UPULSAR_SEND_NULL_VALUE with a payload of %zu bytes (a null value has "
                         "none)",
                         len);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_send_sized(upulsar_producer_t *p, const void *payload, size_t len,
                                 const upulsar_send_opts_t *opts, upulsar_future_t **future,
                                 size_t opts_size)
{
    upulsar_send_opts_t tmp;
    upulsar_err_t err = UPULSAR_OK;
    const upulsar_send_opts_t *o = opts_layout(opts, opts_size, &tmp, &err);
    if (opts && !o) {
        if (future)
            *future = NULL;
        return err;
    }
    if (__builtin_expect(o && (o->partition_key_bytes || (o->flags & UPULSAR_SEND_NULL_VALUE)),
                         0) &&
        (err = opts_check(o, len))) {
        if (future)
            *future = NULL;
        return err;
    }
    return up_handle_send(p, payload, len, o, future);
}

upulsar_err_t(upulsar_send)(upulsar_producer_t *p, const void *payload, size_t len,
                            const upulsar_send_opts_t *opts, upulsar_future_t **future)
{
    return upulsar_send_sized(p, payload, len, opts, future, UPULSAR_SEND_OPTS_SIZE_0_2);
}

upulsar_err_t upulsar_send_many_sized(upulsar_producer_t *p, const upulsar_msg_t *msgs, size_t n,
                                      upulsar_future_t **futures, size_t *accepted,
                                      size_t opts_size)
{
    if (accepted)
        *accepted = 0;
    if (!msgs && n)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "msgs is NULL");
    for (size_t i = 0; i < n; i++) {
        upulsar_err_t err = upulsar_send_sized(p, msgs[i].payload, msgs[i].len, msgs[i].opts,
                                               futures ? &futures[i] : NULL, opts_size);
        if (err)
            return err;
        if (accepted)
            *accepted = i + 1;
    }
    return UPULSAR_OK;
}

upulsar_err_t(upulsar_send_many)(upulsar_producer_t *p, const upulsar_msg_t *msgs, size_t n,
                                 upulsar_future_t **futures, size_t *accepted)
{
    return upulsar_send_many_sized(p, msgs, n, futures, accepted, UPULSAR_SEND_OPTS_SIZE_0_2);
}

upulsar_err_t upulsar_conf_set_delivery_report_cb(upulsar_conf_t *conf,
                                                  upulsar_delivery_report_cb_t cb, void *opaque)
{
    if (!conf)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "conf is NULL");
    conf->dr_cb = cb;
    conf->dr_opaque = cb ? opaque : NULL;
    return UPULSAR_OK;
}
