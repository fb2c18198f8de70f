/* drain.c -- on the producer's loop: draining the ring into batches. The
 * batch window (up_rp_pump), each record read (record.c) and checked
 * (explicit sequence id, a failed producer, the broker's size, chunking)
 * and handed to the producer's batcher (batcher.h); plain records into the
 * default batcher's open batch the fast way (drain_plain()). */
#include <stdlib.h>
#include <string.h>

#include "batcher.h"
#include "copy.h"

/* ---- the drain ---- */

/* Would closing what @p rp has open leave no room under
 * max.inflight.batches for one more entry? (The default batchers have one
 * open batch at most, key_based one per key.) */
static bool no_room_after_close(const up_rp_t *rp, size_t max_inflight)
{
    size_t n = rp->npend + 1;
    if (!rp->batcher->inline_add)
        for (const up_batch_t *b = rp->open->next; b; b = b->next)
            n++;
    return n >= max_inflight;
}

/* The key bytes an entry that @p m opens carries in its MessageMetadata:
 * its ordering key and then its partition key too, else its partition
 * key (up_batch_key()). */
static inline size_t entry_keys_len(const up_smm_t *m)
{
    return m->okey ? m->okey_len + (m->key ? (size_t)m->key_len : 0)
                   : m->key ? m->key_len : 0;
}

/* Is the message of @p v an entry of its own (not joining, or with
 * entry-level metadata), or chunks (by the size it would take alone; the
 * drain's chunk decision is the exact one)? Out of line: asked only when
 * max.inflight.batches is near. */
static __attribute__((noinline)) bool own_entry(const up_rp_t *rp, const up_rec_view_t *v,
                                                bool joins)
{
    const up_smm_t *m = &v->m;
    return !joins || (v->meta.mflags & UP_META_SOLO) ||
           md_bound(entry_keys_len(m), (size_t)v->meta.repl_len + 2u * v->meta.nrepl) +
                   up_record_size(m) >
               broker_max(rp);
}

/* Take one record off the ring into the open batch (or fail it); returns
 * its cells. 0 and *@p stall when the record must wait in the ring: taking
 * it would close what is open (full, or it is an entry of its own, or
 * chunks) and that would leave no room under max.inflight.batches for the
 * batch it would be in. */
static uint64_t drain_one(up_rp_t *rp, uint64_t now, bool *stall)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    up_rec_view_t v;
    upulsar_err_t err = UPULSAR_OK;
    up_detail_t *det = NULL; /* why it failed, when not just NOMEM */
    int rc = up_rec_read(&rp->ring, rp->ring.ctail, &rp->scratch, &rp->scratch_cap, &v);
    if (rc) {
        /* out of memory making a wrapped record contiguous (a record the
         * callers wrote is never malformed) */
        err = (upulsar_err_t)rc;
        det = up_rp_detail(rp, "%s while batching the message", upulsar_err_str(err));
        uint64_t cells = up_rp_fail_ring_head(rp, err, det);
        up_detail_put(&rp->client->futures, det);
        return cells;
    }
    up_smm_t *m = &v.m;
    m->sequence_id = rp->next_seq;
    /* a message the batcher does not batch (key_based: one with its own
     * sequence id or entry-level metadata) is an entry of its own; with ids
     * given at close, after what is open has taken its ids */
    const up_batcher_t *bt = rp->batcher;
    bool joins = !(v.meta.mflags & bt->solo_flags);
    /* closing what is open would reach max.inflight.batches (rare: checked
     * once here, the stalls below only then) */
    bool tight = __builtin_expect(rp->open != NULL &&
                                      no_room_after_close(rp, (size_t)cf->max_inflight_batches),
                                  0);
    if (tight && own_entry(rp, &v, joins)) {
        *stall = true;
        return 0;
    }
    if (!joins && bt->ids_at_close) {
        if (rp->open)
            bt->close(rp);
        v.meta.mflags |= UP_META_SOLO;
        m->sequence_id = rp->next_seq;
    }
    if (joins && bt->ids_at_close)
        m->no_seq = true; /* ids are given per batch when they close */
    if (v.meta.mflags & UP_META_SEQ) {
        /* explicit ids must increase (Pulsar de-duplication drops the rest) */
        if (v.meta.seq < rp->next_seq) {
            err = UPULSAR_ERR__INVALID_ARG;
            det = up_rp_detail(rp, "explicit sequence_id %llu is below %llu, the next one this "
                                "producer may use",
                            (unsigned long long)v.meta.seq, (unsigned long long)rp->next_seq);
            goto out_fail;
        }
        m->sequence_id = v.meta.seq;
    }
    /* a broker reads sequence ids as signed 64-bit: one past INT64_MAX
     * would be negative and, with de-duplication, every later message
     * dropped as a duplicate while it reports success (ids near the end
     * come only from explicit or initial ids, or the broker's last one);
     * key_based numbers its open batches' messages first */
    uint64_t id = m->no_seq ? rp->next_seq + rp->kb.n : m->sequence_id;
    if (id > (uint64_t)INT64_MAX) {
        err = UPULSAR_ERR__INVALID_ARG;
        det = up_rp_detail(rp, "sequence id %llu is past INT64_MAX, which the broker cannot "
                            "take: this producer has used up its sequence ids",
                        (unsigned long long)id);
        goto out_fail;
    }
    size_t rs = up_record_size(m);
    size_t bmax = broker_max(rp);
    /* the entry this message would make on its own */
    size_t alone = md_bound(entry_keys_len(m), (size_t)v.meta.repl_len + 2u * v.meta.nrepl) + rs;

    int failed = atomic_load_explicit(&rp->failed, memory_order_relaxed);
    if (failed) {
        err = (upulsar_err_t)failed;
        det = up_rp_detail(rp, "producer failed (%s) before the message was sent",
                        upulsar_err_name(err));
        goto out_fail;
    }
    if (alone > bmax && !cf->chunking_enabled) {
        /* upulsar_send() checked against the limit it knew; the broker's
         * may have shrunk since: this message fails, alone */
        err = UPULSAR_ERR__MSG_TOO_LARGE;
        det = up_rp_detail(rp, "message of %u bytes makes an entry of up to %zu bytes with its "
                            "metadata, over the broker's max_message_size %zu (learnt after the "
                            "message was accepted; chunking.enabled is off)",
                        v.m.payload_size, alone, bmax);
        goto out_fail;
    }
    /* a message sent alone (chunk.c): in chunks when it is larger than an
     * entry; else as a plain entry when the official clients would not
     * batch it either (batching.enabled=false, or a delayed message) */
    if (alone > bmax || bt->plain_entries || v.meta.deliver_at) {
        if (rp->open) {
            bt->close(rp);
            if (!(v.meta.mflags & UP_META_SEQ))
                m->sequence_id = rp->next_seq; /* key_based: ids given at close */
        }
        err = up_chunk_send(rp, m, &v, up_rp_accepted_by(rp, rp->ring.ctail, now));
        if (err == UPULSAR_ERR__MSG_TOO_LARGE && cf->chunking_enabled)
            det = up_rp_detail(rp, "message of %u bytes cannot be sent in chunks of the broker's "
                                "max_message_size %zu (learnt after the message was accepted): "
                                "its keys and properties take up to %zu bytes of every chunk",
                            v.m.payload_size, bmax, up_chunk_md_bound(m, &v));
        else if (err == UPULSAR_ERR__MSG_TOO_LARGE)
            det = up_rp_detail(rp, "message of %u bytes with up to %zu bytes of metadata is over "
                                "the broker's max_message_size %zu (learnt after the message was "
                                "accepted; chunking.enabled is off)",
                            v.m.payload_size, up_chunk_md_bound(m, &v), bmax);
        if (err)
            goto out_fail;
        rp->next_seq = m->sequence_id + 1;
        if (v.ext.free_cb)
            v.ext.free_cb((void *)v.ext.payload, v.ext.opaque);
        return v.ncells;
    }
    bool solo = v.meta.mflags & UP_META_SOLO;
    const up_add_t add = {.v = &v,
                          .rs = rs,
                          .bmax = bmax,
                          .now = now,
                          .pos = rp->ring.ctail,
                          .solo = solo};
    /* closing what is open would reach max.inflight.batches: it closes (at
     * the end of the pump) and this record waits in the ring, without a
     * sequence id, for a receipt; an open batch never waits at the limit
     * holding ids that could expire unsent */
    if (__builtin_expect(tight, 0) && rp->open &&
        (!joins || bt->inline_add ? up_batcher_default_would_close(rp, &add)
                                  : bt->would_close(rp, &add))) {
        *stall = true; /* read again then (its payload not released) */
        return 0;
    }
    /* the default batcher's add (and any batcher's for a message that is
     * an entry of its own) inline; another batcher's through its table */
    if (!joins || bt->inline_add)
        err = up_default_add(rp, &add);
    else
        err = bt->add(rp, &add);
    if (err)
        goto out_fail;
    if (v.ext.free_cb)
        v.ext.free_cb((void *)v.ext.payload, v.ext.opaque);
    if (solo) {
        rp->open->ring_end = rp->ring.ctail + v.ncells;
        up_batcher_default_close(rp);
    }
    return v.ncells;
out_fail:;
    bool dr = cf->dr_cb != NULL;
    if (v.ext.free_cb && !dr)
        v.ext.free_cb((void *)v.ext.payload, v.ext.opaque);
    up_rp_limits_release(rp, 1, up_rec_mem(v.ncells, v.flags, v.m.payload_size));
    if (!det)
        det = up_rp_detail(rp, "%s while batching the message", upulsar_err_str(err));
    resolve_one(v.future, v.ext.cb, v.ext.opaque, err, NULL, det);
    if (dr) /* its report (payload still in the ring), then its free_cb */
        up_dr_view(rp, &v, err, det);
    up_detail_put(&rp->client->futures, det);
    up_stats_failed(rp, err, 1);
    return v.ncells;
}

/* The drain's prefetch: how far ahead of the read position, and the cells
 * of one cache line (three lines per record cover a 100-byte message's
 * record, five cells) */
#define PF_CELLS (512u / UP_RING_CELL)
#define PF_LINE_CELLS (64u / UP_RING_CELL)

/* How far ahead of its records the fast path asks for the batch's lines */
#define DRAIN_PFW_AHEAD 1024

/* Ask for the lines of the record PF_CELLS ahead of @p pos, when the
 * callers finished writing them before the drain began (@p pf_end). */
static inline void drain_prefetch(const up_ring_t *r, uint64_t pos, uint64_t pf_end)
{
    uint64_t pf = pos + PF_CELLS;
    if (pf + PF_LINE_CELLS * 3 <= pf_end) {
        __builtin_prefetch(up_ring_cell(r, pf));
        __builtin_prefetch(up_ring_cell(r, pf + PF_LINE_CELLS));
        __builtin_prefetch(up_ring_cell(r, pf + 2 * PF_LINE_CELLS));
        __builtin_prefetch(&r->commit[pf & r->mask]);
    }
}

/* The drain of plain records (what up_rec_write_plain() writes: no key,
 * ordering key, properties, meta or NOCOPY), and of plain records with a
 * partition key (text, UP_REC_KEY: the default batcher batches them alike,
 * the entry carrying its first message's key), into the default batcher's
 * open batch @p b, up to @p budget records: each is appended as
 * up_default_add() appends it, from its header and extension, without the
 * general record view, while the batch has room for it. What it does not
 * take (another kind of record, one that wraps at the ring's end, one the
 * batch has no room for: the batch closes first) drain_one() takes.
 * Nothing closes here, so max.inflight.batches is not in question (at the
 * limit, drain_one() adds a record the batch has room for as this does);
 * the caller checked the producer has not failed. Returns the records
 * taken. */
static unsigned drain_plain(up_rp_t *rp, up_batch_t *b, unsigned budget, uint64_t pf_end)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    up_ring_t *r = &rp->ring;
    /* the bytes of records the entry may hold: batch.max.bytes, and the
     * broker's max_message_size less the entry's metadata (its first
     * message's key; the entry never outgrows the broker's limit). A batch
     * left empty (its first add ran out of memory) has no key yet: the
     * general way opens it. */
    if (b->n == 0)
        return 0;
    size_t lim = (size_t)cf->batch_max_bytes, bmax = broker_max(rp), md = batch_md_bound(b);
    if (bmax <= md)
        return 0;
    if (bmax - md < lim)
        lim = bmax - md;
    uint32_t nmax = (uint32_t)cf->batch_max_messages;
    uint64_t seq = rp->next_seq;
    unsigned k = 0;
    /* ids past INT64_MAX: the general way fails such records */
    while (k < budget && b->n < nmax && seq <= (uint64_t)INT64_MAX && up_ring_peek(r)) {
        uint64_t pos = r->ctail;
        drain_prefetch(r, pos, pf_end);
        const uint8_t *cell = up_ring_cell(r, pos);
        up_rec_t h;
        memcpy(&h, cell, sizeof h);
        uint32_t flags = h.ncells_flags & 0xfu;
        uint64_t ncells = up_rec_cells(&h);
        /* no ordering key or properties, a key (if any) as text, and an
         * extension (if any) short: a callback and its opaque */
        bool ext = flags & UP_REC_EXT, keyed = flags & UP_REC_KEY;
        if ((flags & ~(UP_REC_EXT | UP_REC_KEY)) | h.okey_len | (keyed ? 0u : h.key_len) ||
            h.props_len != (ext ? UP_REC_X_SHORTEXT : 0u))
            break;
        uint32_t plen = up_rec_plen(&h);
        size_t klen = keyed ? h.key_len : 0;
        bool stamped = (h.payload_len & UP_REC_STAMPED) != 0;
        size_t off = sizeof h + (ext ? UP_REC_SHORTEXT_BYTES : 0);
        /* whole inside its cells, which do not wrap (else drain_one(),
         * which copies a wrapped record out, or fails a malformed one) */
        if ((pos & r->mask) + ncells > r->cap ||
            off + klen + plen + (stamped ? sizeof(uint64_t) : 0) > (size_t)ncells * UP_RING_CELL)
            break;
        /* the short extension's callback and opaque */
        up_rec_ext_t x = {0};
        if (ext)
            memcpy(&x, cell + sizeof h, UP_REC_SHORTEXT_BYTES);
        /* [size][partition_key, payload_size, event_time, sequence_id]
         * [payload], as up_record_put_header_any() orders the fields */
        size_t smm = 2 + up_varint_size(plen) + up_varint_size(seq) +
                     (h.event_time ? 1 + up_varint_size(h.event_time) : 0) +
                     (keyed ? 1 + up_varint_size(klen) + klen : 0);
        size_t rs = 4 + smm + plen;
        if (b->rec_len > lim || rs > lim - b->rec_len ||
            !up_batch_reserve(b, HDR_ROOM + b->rec_len + rs))
            break; /* full: drain_one() closes it (or fails the record) */
        uint8_t *dst = b->buf + HDR_ROOM + b->rec_len, *p = dst + 4;
        /* the batch's lines a few records ahead asked for writing: a
         * buffer comes back from the pool after its receipt, when the
         * batches in flight since (max.inflight.batches per producer) have
         * pushed it out of the cache, and each record's first store would
         * otherwise wait for its line (a prefetch never faults, past the
         * buffer's end included) */
        __builtin_prefetch(dst + DRAIN_PFW_AHEAD, 1);
        __builtin_prefetch(dst + DRAIN_PFW_AHEAD + 64, 1);
        up_put_be32(dst, (uint32_t)smm);
        if (keyed) {
            *p++ = UP_SMM_TAG_KEY;
            p += up_put_varint(p, klen);
            up_copy_short(p, cell + off, klen);
            p += klen;
        }
        *p++ = UP_SMM_TAG_PSIZE;
        p += up_put_varint(p, plen);
        if (h.event_time) {
            *p++ = UP_SMM_TAG_EVTIME;
            p += up_put_varint(p, h.event_time);
        }
        *p++ = UP_SMM_TAG_SEQ;
        p += up_put_varint(p, seq);
        memcpy(p, cell + off + klen, plen);
        b->rec_len += rs;
        b->last_seq = seq++;
        b->mem_bytes += up_rec_mem(ncells, flags, plen);
        b->payload_bytes += plen;
        up_done_t *d = &b->done[b->n++];
        d->f = h.future;
        d->cb = x.cb;
        d->opaque = x.opaque;
        d->sent_us = 0;
        if (stamped)
            memcpy(&d->sent_us, cell + (size_t)ncells * UP_RING_CELL - sizeof d->sent_us,
                   sizeof d->sent_us);
        up_ring_consume(r, ncells);
        k++;
    }
    if (k) {
        rp->next_seq = seq;
        b->ring_end = r->ctail;
    }
    return k;
}

static void set_armed(up_rp_t *rp, int v)
{
    if (atomic_load_explicit(&rp->armed, memory_order_relaxed) != v)
        atomic_store_explicit(&rp->armed, v, memory_order_relaxed);
}

bool up_rp_pump(up_rp_t *rp, uint64_t now, uint64_t *deadline)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    up_ring_t *r = &rp->ring;
    bool consumed = false;
    size_t max_inflight = (size_t)cf->max_inflight_batches;
    unsigned budget = 4096; /* records per call, so other producers get a turn */
    /* Nothing is framed before the producer was created once: its first
     * sequence id (initial.sequence.id, or the broker's last_sequence_id + 1)
     * and its name come from PRODUCER_SUCCESS. Until then (lazy start,
     * partition growth, a first creation that failed) records wait in the
     * ring, where send.timeout.ms still applies; the attach runs the pump. */
    rp->holding = !up_rp_created(rp);
    if (rp->holding) {
        /* a producer that failed before it was ever created: what a sender
         * committed after its failure emptied the ring (a send that was
         * waiting for room) is failed too, not held for good */
        int failed = atomic_load_explicit(&rp->failed, memory_order_relaxed);
        if (failed && up_ring_peek(r)) {
            up_rp_fail_all(rp, (upulsar_err_t)failed);
            return true;
        }
        set_armed(rp, 1);
        return false;
    }
    const up_batcher_t *bt = rp->batcher;
    uint64_t delay = (uint64_t)cf->batch_max_delay_us;
    /* A deadline is taken as reached `ahead` before it: the loop's learnt
     * wake-up delay (loop.h wake_ahead_us), at most half the delay, so a
     * window ends by its deadline and not a wake-up after it. The loop is
     * given the deadline less `ahead`, the time it is reached, so it never
     * wakes for a deadline not reached yet; windows are set from `now`. */
    uint64_t ahead = up_deadline_ahead(rp->loop->wake_ahead_us, delay);
    uint64_t due = now + ahead;
    /* batch.mode=adaptive: the connection can take a batch now when nothing
     * of this producer is in flight; then what is there goes at once */
    bool go_now = cf->batch_mode == UP_BATCH_ADAPTIVE && rp->npend == 0;
    int armed = 0;
    /* Batch window: records stay in the ring until it ends or a full batch
     * is there, and are then drained in one go; the loop does not chase the
     * callers record by record (that bounces cache lines between cores for
     * every message). linger: the first record seen opens it (the send of
     * that record wakes the loop, see `armed`, so the window starts a wake-up
     * after the send, not when the loop next looks for another reason, up to
     * a whole window later). adaptive: it lasts while batches are
     * in flight (a receipt that empties the pending queue ends it, see
     * producer.c), at most batch.max.delay.ms. */
    if (!rp->open && bt->window && !atomic_load_explicit(&rp->flush_req, memory_order_relaxed) &&
        !go_now) {
        if (up_ring_peek(r)) {
            if (!rp->window_end_us)
                rp->window_end_us = now + delay;
            if (due < rp->window_end_us && up_ring_used(r) < rp->wake_cells) {
                rp->holding = true;
                set_armed(rp, 1);
                if (rp->window_end_us - ahead < *deadline)
                    *deadline = rp->window_end_us - ahead;
                return false;
            }
        } else if (cf->batch_mode == UP_BATCH_ADAPTIVE && delay > 0) {
            /* batches in flight, the ring empty: a record that comes now
             * waits for a receipt, at most until window_end_us (so a
             * send need not wake the loop for it); renewed when it passes
             * (with no delay there is no window: a send wakes the loop).
             * The renewal alone sends nothing: it is not taken early, so
             * an idle wait wakes the loop once a delay, not more often */
            if (!rp->window_end_us || now >= rp->window_end_us)
                rp->window_end_us = now + delay;
            if (rp->window_end_us < *deadline)
                *deadline = rp->window_end_us;
            armed = 1;
        } else {
            rp->window_end_us = 0;
        }
    }
    bool stall = false;
    /* the callers wrote the records on their cores: each record's lines are
     * asked for a few records ahead of the one batched (reading them when
     * their turn comes is the drain's largest stall), up to where head was
     * when the drain began (no line a caller is about to write) */
    uint64_t pf_end = up_ring_head_pos(r);
    /* plain records into an open batch of the default batcher go the fast
     * way (drain_plain()) while the producer has not failed */
    bool plain = bt == &up_batcher_default;
    while (budget && rp->npend < max_inflight && up_ring_peek(r)) {
        if (plain && rp->open && !atomic_load_explicit(&rp->failed, memory_order_relaxed)) {
            unsigned k = drain_plain(rp, rp->open, budget, pf_end);
            if (k) {
                budget -= k;
                consumed = true;
                continue;
            }
        }
        budget--;
        drain_prefetch(r, r->ctail, pf_end);
        uint64_t cells = drain_one(rp, now, &stall);
        if (stall)
            break;
        up_ring_consume(r, cells);
        if (rp->open)
            rp->open->ring_end = r->ctail;
        consumed = true;
    }
    if (consumed)
        up_ring_release(r); /* R2 */
    /* max.inflight.batches bounds what is sent, however the open batch is
     * asked to go (full, a stalled record behind it, its deadline, a
     * flush, adaptive's go_now). The drain leaves nothing open once the
     * limit is reached (it stalls instead, and what is open closes here),
     * and the batchers keep the open batches within the room left
     * (key_based: kb_batch()), so closing them all never passes the limit.
     * Should a batch still be open at the limit, it waits for a receipt
     * (holding, below), a flush asked meanwhile kept. */
    if (rp->open && rp->npend < max_inflight) {
        bool flush = atomic_exchange_explicit(&rp->flush_req, 0, memory_order_acq_rel);
        if (stall || flush || go_now || due >= rp->open_deadline_us ||
            bt->count(rp) >= (uint32_t)cf->batch_max_messages) {
            bt->close(rp);
        } else {
            if (rp->open_deadline_us - ahead < *deadline)
                *deadline = rp->open_deadline_us - ahead;
            armed = 1;
        }
    } else if (rp->open) {
        /* at the limit: waits for a receipt (holding, below) */
    } else if (atomic_load_explicit(&rp->flush_req, memory_order_relaxed) && !up_ring_peek(r)) {
        atomic_store_explicit(&rp->flush_req, 0, memory_order_relaxed);
    }
    if (go_now)
        rp->window_end_us = 0;
    if (rp->npend >= max_inflight && (up_ring_peek(r) || rp->open)) {
        /* max.inflight.batches reached: nothing to do until a receipt
         * (complete_head() clears holding then), so the loop may sleep */
        rp->holding = true;
        armed = 1;
    }
    set_armed(rp, armed);
    if (!up_ring_peek(r)) /* back to the ring's first page; idle pages given back */
        up_rp_mem_rest_back(rp, up_ring_idle(r, now, (uint64_t)cf->queue_idle_release_ms * 1000u));
    if (!rp->open && rp->pend_head == NULL)
        atomic_store_explicit(&rp->resolved_ring_pos, r->ctail, memory_order_release);
    return consumed && up_ring_peek(r);
}
