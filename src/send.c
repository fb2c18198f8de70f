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

#include "send_int.h"

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

void up_rp_mem_to_client(up_rp_t *rp, uint64_t bytes)
{
    int64_t left = atomic_fetch_sub_explicit(&rp->mem_held, (int64_t)bytes,
                                             memory_order_relaxed) -
                   (int64_t)bytes;
    if (left < unit_bytes(rp))
        mem_realign(rp, left);
}

void up_client_mem_release(struct upulsar_client *c, uint64_t bytes)
{
    atomic_fetch_sub_explicit(&c->mem_used, (int64_t)bytes, memory_order_relaxed);
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
 * budget or the producer's share is reached. @p one: @p need is one
 * message's (or one unit's), which may use the allowances for a single
 * message; a run of several (upulsar_send_many) only fits its share, so
 * that it never takes more than its messages would one by one. */
static bool mem_take_as(up_rp_t *rp, int64_t need, bool one)
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
            else if (!one)
                return false;
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

static bool mem_take(up_rp_t *rp, int64_t need) { return mem_take_as(rp, need, true); }

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

/* Ask @p rp's loop to send what it holds now (a flush: the batch window
 * ends), and wake it. */
static void ask_drain(up_rp_t *rp)
{
    atomic_store_explicit(&rp->flush_req, 1, memory_order_seq_cst); /* before `sleeping` */
    up_loop_wake(rp->loop);
}

/* One pause of a wait for memory: what is counted leaves only once
 * acknowledged, so push it out. */
static void mem_pause(up_rp_t *rp, unsigned *spins)
{
    ask_drain(rp);
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
            if (why == UP_ROOM_RING && !waited) {
                /* a full ring ends its batch window, whatever remains of
                 * the window and however small the ring (it may be smaller
                 * than a batch, see up_rp_ring_bytes): ask the loop to drain
                 * it now, so the room comes back before the next send */
                ask_drain(rp);
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
            /* the wait may have ended because the producer failed (its
             * ring emptied): refuse rather than queue into it */
            if ((e = wait_check(rp)))
                return e;
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
    return up_seterr(UPULSAR_ERR__QUEUE_FULL, "%s: queue full (a ring of %llu bytes: "
                     "queue.buffer.bytes, or less with many producers)",
                     rp->topic, (unsigned long long)(r->cap * UP_RING_CELL));
}

/* ---- caller side: enqueue ------------------------------------------------- */

/* lazy.start.partitions: the first message for a producer not started yet
 * hands it to the supervisor, which creates it at once (as after a graceful
 * close: no backoff). */
void up_send_lazy_start(up_rp_t *rp)
{
    if (up_rp_transition(rp, UP_RP_BIT(UP_RP_LAZY), UP_RP_BACKOFF_NOW,
                         "its first message (lazy.start.partitions)"))
        up_watchdog_kick(rp->client);
}

upulsar_err_t up_send_failed(up_rp_t *rp, int failed)
{
    return up_seterr((upulsar_err_t)failed, "%s: producer failed: %s", rp->topic,
                     upulsar_err_str((upulsar_err_t)failed));
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
upulsar_err_t up_send_rec_meta(const upulsar_send_opts_t *o, up_rec_meta_t *m,
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
        /* the ids after it continue from it: INT64_MAX would leave them
         * none a broker reads as positive */
        if (o->sequence_id < 0 || o->sequence_id == INT64_MAX)
            return up_seterr(UPULSAR_ERR__INVALID_ARG,
                             "sequence_id must be 0 to INT64_MAX - 1 (got %lld)",
                             (long long)o->sequence_id);
        m->seq = (uint64_t)o->sequence_id;
        m->mflags |= UP_META_SEQ;
    }
    /* deliver_at_time is a signed 64-bit count of ms on the wire: a time
     * past it (or a delay that gets there) would read as one long past */
    if (o->deliver_at_ms) {
        if (o->deliver_at_ms > (uint64_t)INT64_MAX)
            return up_seterr(UPULSAR_ERR__INVALID_ARG,
                             "deliver_at_ms %llu is past the largest time Pulsar carries",
                             (unsigned long long)o->deliver_at_ms);
        m->deliver_at = o->deliver_at_ms;
    } else if (o->deliver_after_ms) {
        uint64_t now = up_wall_ms();
        if (o->deliver_after_ms > (uint64_t)INT64_MAX - now)
            return up_seterr(UPULSAR_ERR__INVALID_ARG,
                             "deliver_after_ms %llu is past the largest time Pulsar carries",
                             (unsigned long long)o->deliver_after_ms);
        m->deliver_at = now + o->deliver_after_ms;
    }
    if (m->deliver_at || n)
        m->mflags |= UP_META_SOLO;
    return UPULSAR_OK;
}

/* up_send_size_check() past its first test (send_int.h): a message larger
 * than max_message_size, accepted only in chunks. */
upulsar_err_t up_send_size_slow(bool chunking, size_t maxsz, size_t len, size_t keys,
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

/* sends of this thread since its last sampled one (latency.sample.every) */
_Thread_local unsigned up_lat_tick;

bool up_rp_reserve_now(up_rp_t *rp, uint64_t n, uint64_t ext, uint64_t *pos)
{
    up_ring_t *r = &rp->ring;
    int64_t ub = unit_bytes(rp);
    uint64_t units = 0, have = 0, ext_have = 0;
    up_ring_res_t rc = ext ? UP_RING_CHARGE : up_ring_reserve_charged(r, n, 0, pos, &units);
    if (rc == UP_RING_OK)
        return true;
    if (ext) /* the payload is taken with the units the reservation enters */
        units = up_ring_units_entered(r, up_ring_head_pos(r), n);
    /* a few rounds: head may move on between the charge and the CAS */
    for (int round = 0; rc == UP_RING_CHARGE && round < 4; round++) {
        int64_t need = (int64_t)(units - have) * ub + (int64_t)(ext - ext_have);
        if (need > 0 && !mem_take_as(rp, need, false)) /* a run: its share only */
            break;
        have = units;
        ext_have = ext;
        rc = up_ring_reserve_charged(r, n, have, pos, &units);
        if (rc == UP_RING_OK) {
            if (have > units)
                mem_give(rp, (int64_t)(have - units) * ub);
            return true;
        }
    }
    if (have || ext_have)
        mem_give(rp, (int64_t)have * ub + (int64_t)ext_have);
    return false;
}

/* The limits, the future (when @p want_future) and the reservation of a
 * record of @p ncells cells, @p ext bytes of its payload kept out of the
 * ring (waiting with block.if.queue.full): UPULSAR_OK with *@p pos and
 * *@p fout, or the error with nothing taken (@p copy, a private copy of
 * the payload, freed then). */
static inline __attribute__((always_inline)) upulsar_err_t
enqueue_take(up_rp_t *rp, uint64_t ncells, uint64_t ext, void *copy, bool want_future,
             struct upulsar_future **fout, uint64_t *pos)
{
    *fout = NULL;
    *pos = 0; /* set by the reservation that succeeds */
    /* max.pending.messages: the call only when it is set (two callers of
     * this function: the compiler no longer inlines pending_reserve()) */
    upulsar_err_t le =
        rp->handle->conf.max_pending_messages > 0 ? pending_reserve(rp) : UPULSAR_OK;
    if (le) {
        free(copy);
        return le;
    }
    struct upulsar_future *f = NULL;
    if (want_future) {
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
    up_ring_t *r = &rp->ring;
    uint64_t units = 0;
    up_ring_res_t rc = ext ? UP_RING_CHARGE : up_ring_reserve_charged(r, ncells, 0, pos, &units);
    if (__builtin_expect(rc != UP_RING_OK, 0)) {
        le = reserve_slow(rp, ncells, ext, rc, units, pos);
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
    *fout = f;
    return UPULSAR_OK;
}

/* up_rp_enqueue() once the record is built and stamped */
static inline __attribute__((always_inline)) upulsar_err_t
enqueue_in(up_rp_t *rp, up_rec_in_t *in, upulsar_future_t **future)
{
    size_t len = in->payload_len;
    size_t size = up_rec_size(in);
    uint64_t ncells = up_ring_cells_for(size);
    void *copy = NULL;
    if (ncells > rp->ring.cap / 4 && !(in->flags & UP_REC_NOCOPY)) {
        /* too big to share the ring: keep a private copy (one allocation
         * per large message, never on the small-message path) */
        copy = malloc(len ? len : 1);
        if (!copy)
            return up_seterr(UPULSAR_ERR__NOMEM, "out of memory copying a %zu byte message", len);
        memcpy(copy, in->payload, len);
        in->flags |= UP_REC_EXT | UP_REC_NOCOPY;
        in->ext.free_cb = internal_free;
        in->ext.payload = copy;
        size = up_rec_size(in);
        ncells = up_ring_cells_for(size);
    }
    if (ncells > rp->ring.cap / 2) {
        free(copy);
        return up_seterr(UPULSAR_ERR__MSG_TOO_LARGE,
                         "key and properties need %zu bytes, more than half of the producer's "
                         "ring of %llu bytes (queue.buffer.bytes, or less with many producers: "
                         "see queue_capacity_bytes in the statistics)",
                         size, (unsigned long long)(rp->ring.cap * UP_RING_CELL));
    }
    uint64_t ext = (in->flags & UP_REC_NOCOPY) ? (uint64_t)len : 0;
    uint64_t pos;
    struct upulsar_future *f = NULL;
    upulsar_err_t le = enqueue_take(rp, ncells, ext, copy, future != NULL, &f, &pos);
    if (le)
        return le;
    in->future = f;
    up_send_write(&rp->ring, pos, ncells, in);
    up_send_publish(rp);
    if (future)
        *future = f;
    return UPULSAR_OK;
}

upulsar_err_t up_rp_enqueue_in(up_rp_t *rp, up_rec_in_t *in, upulsar_future_t **future)
{
    return enqueue_in(rp, in, future);
}

/* up_rp_enqueue_plain() once the plain record is stamped */
static inline __attribute__((always_inline)) upulsar_err_t
enqueue_plain(up_rp_t *rp, int32_t maxsz, const up_rec_plain_t *m, upulsar_future_t **future)
{
    uint64_t ncells = up_rec_plain_cells(m);
    if (__builtin_expect(ncells <= rp->ring.cap / 4, 1)) {
        uint64_t pos;
        struct upulsar_future *f = NULL;
        upulsar_err_t e = enqueue_take(rp, ncells, 0, NULL, future != NULL, &f, &pos);
        if (e)
            return e;
        up_send_prefetch_ahead(&rp->ring, pos, ncells);
        up_rec_write_plain(&rp->ring, pos, ncells, m, f);
        up_ring_commit(&rp->ring, pos); /* R1 */
        up_send_publish(rp);
        if (future)
            *future = f;
        return UPULSAR_OK;
    }
    /* its payload needs a private copy: the general way */
    up_rec_in_t in;
    up_send_plain_in(rp_conf(rp), maxsz, m, &in);
    return enqueue_in(rp, &in, future);
}

upulsar_err_t up_rp_enqueue_plain(up_rp_t *rp, int32_t maxsz, const up_rec_plain_t *m,
                                  upulsar_future_t **future)
{
    return enqueue_plain(rp, maxsz, m, future);
}

upulsar_err_t up_rp_enqueue(up_rp_t *rp, const void *payload, size_t len,
                            const upulsar_send_opts_t *o, upulsar_future_t **future)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    upulsar_err_t e = up_send_prep(rp);
    if (e)
        return e;
    int32_t maxsz = up_send_maxsz(rp);
    up_rec_plain_t m;
    if (up_send_plain_keyed(cf, o, payload, len, &m) &&
        up_send_size_check(cf->chunking_enabled, maxsz > 0 ? (size_t)maxsz : 0, len, m.key_len, 0,
                           0) == UPULSAR_OK) {
        /* no options but a callback, an event time and a text key: a plain
         * record (record.h up_rec_write_plain()) */
        m.sent_us = up_send_stamp_us(cf);
        return enqueue_plain(rp, maxsz, &m, future);
    }
    up_rec_in_t in;
    e = up_send_build(cf, maxsz, payload, len, o, &in);
    if (e)
        return e;
    /* from here on len <= UPULSAR_MAX_CHUNKED_BYTES: every sum fits */
    up_send_stamp(cf, &in);
    return enqueue_in(rp, &in, future);
}

/* ---- the public entry points: growth of upulsar_send_opts_t --------------- */

/* @p o as this library's layout: @p o itself when the caller was built
 * with it (the common case: nothing copied), else a copy in @p tmp with
 * the fields the caller's layout lacks zeroed. NULL with the error set when
 * the layout is unusable (see "Growth of upulsar_send_opts_t", upulsar.h). */
const upulsar_send_opts_t *up_send_opts_layout(const upulsar_send_opts_t *o, size_t size,
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
upulsar_err_t up_send_opts_check(const upulsar_send_opts_t *o, size_t len)
{
    enum {
        KNOWN = UPULSAR_SEND_NOCOPY | UPULSAR_SEND_SEQUENCE_ID | UPULSAR_SEND_PARTITION |
                UPULSAR_SEND_NULL_VALUE
    };
    if (!o)
        return UPULSAR_OK;
    if (__builtin_expect((o->flags & ~KNOWN) != 0, 0))
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "send flags 0x%x: no UPULSAR_SEND_* of upulsar %s has these bits",
                         (unsigned)(o->flags & ~KNOWN), UPULSAR_VERSION_STR);
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
    const upulsar_send_opts_t *o = NULL;
    upulsar_err_t err = up_send_opts(opts, opts_size, len, &tmp, &o);
    if (err) {
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

upulsar_err_t upulsar_conf_set_delivery_report_cb(upulsar_conf_t *conf,
                                                  upulsar_delivery_report_cb_t cb, void *opaque)
{
    if (!conf)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "conf is NULL");
    conf->dr_cb = cb;
    conf->dr_opaque = cb ? opaque : NULL;
    return UPULSAR_OK;
}
