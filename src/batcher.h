/* batcher.h -- how a real producer groups the records it drains from its
 * ring into entries: an ops table chosen when the producer is created.
 *   up_batcher_default  one open batch; its entry carries the first
 *                       message's key (batcher_default.c)
 *   up_batcher_single   batching.enabled=false: every message sent alone
 *                       as a plain entry (chunk.c), no window
 *   up_batcher_key      batching.type=key_based: one open batch per key,
 *                       sequence ids given per entry as they close
 *                       (batcher_key.c)
 * Whatever the batcher, a delayed message (deliver_at) goes alone as a
 * plain entry and a message larger than an entry in chunks (chunk.c), and
 * one with replicate_to is a batch of its own (the default batcher's
 * path). The drain that calls
 * the batcher (the batch window, the record read, the checks every message
 * goes through) is drain.c. Every function runs on the producer's loop.
 * @internal
 */
#ifndef UP_BATCHER_H
#define UP_BATCHER_H
#include "producer_int.h"

/** One message to add, as the drain prepared it: the record read from the
 *  ring (its SingleMessageMetadata with the sequence id set) by pointer, so
 *  that nothing of it is copied per message, and what the drain worked out
 *  about it. */
typedef struct up_add {
    up_rec_view_t *v;
    size_t rs;   /**< up_record_size(&v->m) */
    size_t bmax; /**< the broker's max_message_size now */
    uint64_t now;
    uint64_t pos; /**< the record's ring position: a batch it opens counts
                       send.timeout.ms from up_rp_accepted_by() of it */
    bool solo; /**< an entry of its own (default path only) */
} up_add_t;

typedef struct up_batcher {
    const char *name;
    /** meta flags (UP_META_*) that make a message an entry of its own */
    unsigned solo_flags;
    /** sequence ids are given per entry when batches close: records carry
     *  none, and what is open closes before a message takes an id */
    bool ids_at_close;
    /** records wait in the ring for the batch window (batch.max.delay.ms) */
    bool window;
    /** every message is sent alone as a plain entry, not a batch (chunk.c,
     *  as the official clients send a message without batching): add and
     *  would_close are never asked (NULL) */
    bool plain_entries;
    /** add is up_batcher_default_add(): the drain runs up_default_add()
     *  inline instead of calling it through the table */
    bool inline_add;
    /** Add @p a to an open batch, first closing what must close (full, or
     *  over the broker's size), opening one if needed. OK or NOMEM (the
     *  message is not added; the caller fails it). @thread loop */
    upulsar_err_t (*add)(up_rp_t *rp, const up_add_t *a);
    /** Would add(@p a) first close what is open (full, over a limit, a
     *  new key with no room for another open batch)? Lets the drain keep a
     *  record in the ring, without a sequence id, when closing would reach
     *  max.inflight.batches. @thread loop */
    bool (*would_close)(const up_rp_t *rp, const up_add_t *a);
    /** Close everything open into entries, queued in order. @thread loop */
    void (*close)(up_rp_t *rp);
    /** Messages open (rp->open is not NULL). @thread loop */
    uint32_t (*count)(const up_rp_t *rp);
} up_batcher_t;

extern const up_batcher_t up_batcher_default, up_batcher_single, up_batcher_key;

/** The batcher of a producer with configuration @p cf. @thread any */
const up_batcher_t *up_batcher_for(const struct upulsar_conf *cf);

/** Write the message of @p a into @p b, which has room for it. HOT PATH.
 *  @thread loop */
static inline void up_batch_append(up_batch_t *b, const up_add_t *a)
{
    const up_rec_view_t *v = a->v;
    b->rec_len += up_record_put(b->buf + HDR_ROOM + b->rec_len, &v->m, v->payload);
    b->last_seq = v->m.sequence_id;
    b->mem_bytes += up_rec_mem(v->ncells, v->flags, v->m.payload_size);
    b->payload_bytes += v->m.payload_size;
    up_done_t *d = &b->done[b->n++];
    d->f = v->future;
    d->cb = v->ext.cb;
    d->opaque = v->ext.opaque;
    d->sent_us = v->sent_us;
}

/** Close the one open batch (default, single, a solo entry). @thread loop */
void up_batcher_default_close(up_rp_t *rp);
/** Give the one open batch @p b, which carries a message that is an entry
 *  of its own, that message's entry-level metadata (its replicate_to
 *  names, copied out of the ring). False when out of memory. @thread loop */
bool up_batch_set_solo(up_batch_t *b, const up_rec_meta_t *meta, const char *names);

/** The default batcher's add: also the path of a message that is an entry
 *  of its own under any batcher. Inline, so that the drain runs it without
 *  a call for every message (it is the ops table's add of the default and
 *  single batchers too, up_batcher_default_add()). HOT PATH. @thread loop */
static inline bool up_default_would_close(const up_rp_t *rp, const up_add_t *a)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    const up_batch_t *b = rp->open;
    /* an entry never outgrows the broker's max_message_size, metadata
     * included, whatever batch.max.bytes says (the broker would refuse it,
     * with every message in it) */
    return b && (a->solo || b->n >= (uint32_t)cf->batch_max_messages ||
                 b->rec_len + a->rs > (size_t)cf->batch_max_bytes ||
                 batch_md_bound(b) + b->rec_len + a->rs > a->bmax);
}

static inline upulsar_err_t up_default_add(up_rp_t *rp, const up_add_t *a)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    const up_smm_t *m = &a->v->m;
    up_batch_t *b = rp->open;
    if (up_default_would_close(rp, a)) {
        up_batcher_default_close(rp);
        b = NULL;
    }
    if (!b) {
        b = up_batch_get(rp);
        if (!b)
            return UPULSAR_ERR__NOMEM;
        rp->open = b;
        b->created_us = up_rp_accepted_by(rp, a->pos, a->now);
        b->first_seq = m->sequence_id;
        rp->open_deadline_us = rp->window_end_us ? rp->window_end_us
                                                 : a->now + (uint64_t)cf->batch_max_delay_us;
        rp->window_end_us = 0;
    }
    if (b->n == 0 && (m->key || m->okey) && !up_batch_key(b, m))
        return UPULSAR_ERR__NOMEM;
    if (!up_batch_reserve(b, HDR_ROOM + b->rec_len + a->rs))
        return UPULSAR_ERR__NOMEM;
    if (a->solo && !up_batch_set_solo(b, &a->v->meta, a->v->names)) {
        rp->open = NULL;
        up_batch_retire(rp, b);
        return UPULSAR_ERR__NOMEM;
    }
    up_batch_append(b, a);
    rp->next_seq = m->sequence_id + 1;
    return UPULSAR_OK;
}

/** up_default_add() out of line: the add of the default and single
 *  batchers' ops tables. @thread loop */
upulsar_err_t up_batcher_default_add(up_rp_t *rp, const up_add_t *a);
/** up_default_would_close() out of line, for the same tables. @thread loop */
bool up_batcher_default_would_close(const up_rp_t *rp, const up_add_t *a);
#endif
