/* batcher_key.c -- batching.type=key_based, on the producer's loop: one
 * open batch per key (ordering key, else partition key, else none), each
 * its own entry carrying that key, so that Key_Shared subscriptions route
 * every message by its own key. Sequence ids are given per entry when the
 * batches close, consecutive in the order of their first message. At most
 * max.inflight.batches batches are open, so memory stays bounded with many
 * keys. A message with its own sequence id or entry-level metadata is an
 * entry of its own, after what is open (drain.c). */
#include <stdlib.h>
#include <string.h>

#include "batcher.h"

/* Largest SingleMessageMetadata.sequence_id field: a tag and a varint. */
#define SEQ_FIELD_MAX 11u

/* Give @p b's records their sequence ids (SingleMessageMetadata.sequence_id,
 * as the official clients write for every batched message), known only now
 * that the batch closes. Without memory for it they stay without (the
 * consumer then counts from the entry's sequence id, as it may). */
static void kb_number(up_rp_t *rp, up_batch_t *b)
{
    size_t extra = up_records_number_extra(b->n, b->first_seq);
    if (!up_batch_reserve(b, HDR_ROOM + b->rec_len + extra))
        return;
    if (rp->kb.offs_cap < b->n) { /* grows to one batch's worth, kept */
        size_t *no = realloc(rp->kb.offs, (size_t)b->n * sizeof *no);
        if (!no)
            return;
        rp->kb.offs = no;
        rp->kb.offs_cap = b->n;
    }
    size_t nl = up_records_number(b->buf + HDR_ROOM, b->rec_len, b->n, b->first_seq,
                                  rp->kb.offs);
    if (nl)
        b->rec_len = nl;
}

/* Close every open per-key batch, each its own entry, in ascending order of
 * first sequence id. All but the last
 * resolve to the ring position where they began, so resolved_ring_pos
 * never runs ahead of a batch still pending. */
static void kb_close(up_rp_t *rp)
{
    up_batch_t *l = rp->open;
    rp->open = NULL;
    uint64_t end = rp->ring.ctail;
    while (l) {
        up_batch_t *n = l->next;
        l->next = NULL;
        l->ring_end = n ? rp->kb.start : end;
        /* consecutive ids per entry, so that de-duplication (which keeps
         * the highest id seen) accepts each entry after the previous one */
        l->first_seq = rp->next_seq;
        l->last_seq = rp->next_seq + l->n - 1;
        rp->next_seq += l->n;
        kb_number(rp, l);
        up_batch_close(rp, l);
        l = n;
    }
    rp->open = NULL;
    rp->kb.n = 0;
    rp->kb.bytes = 0;
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

/* The open batch for @p m's key (ordering key, else partition key, else
 * none), opened if needed (for the record at ring position @p pos, whose
 * send.timeout.ms it then counts from up_rp_accepted_by()). NULL on out of
 * memory. */
static up_batch_t *kb_batch(up_rp_t *rp, const up_smm_t *m, uint64_t now, uint64_t pos)
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
     * a batch.max.bytes buffer), so memory stays bounded as without keys,
     * and no more than the room left under it by the batches in flight, so
     * that closing them all never sends more than max.inflight.batches */
    size_t max = (size_t)rp_conf(rp)->max_inflight_batches;
    size_t room = rp->npend < max ? max - rp->npend : 0;
    if (nopen && (nopen >= max || nopen >= room)) {
        kb_close(rp);
        last = NULL;
    }
    up_batch_t *b = up_batch_get(rp);
    if (!b)
        return NULL;
    if (!up_batch_key(b, m)) {
        up_batch_retire(rp, b);
        return NULL;
    }
    b->created_us = up_rp_accepted_by(rp, pos, now);
    b->first_seq = m->sequence_id;
    if (last) {
        last->next = b;
    } else {
        const struct upulsar_conf *cf = rp_conf(rp);
        rp->open = b;
        rp->open_deadline_us = rp->window_end_us ? rp->window_end_us
                                                 : now + (uint64_t)cf->batch_max_delay_us;
        rp->window_end_us = 0;
        rp->kb.start = rp->ring.ctail;
        rp->kb.n = 0;
        rp->kb.bytes = 0;
    }
    return b;
}

/* Must what is open close before @p a is added: the batches together
 * full, or @p a's own batch over the broker's size (an entry never
 * outgrows max_message_size, metadata included, whatever batch.max.bytes
 * says)? */
static bool kb_full_for(const up_rp_t *rp, const up_add_t *a, const up_batch_t *t)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    return rp->kb.n >= (uint32_t)cf->batch_max_messages ||
           rp->kb.bytes + a->rs > (size_t)cf->batch_max_bytes ||
           (t && batch_md_bound(t) + t->rec_len + a->rs + SEQ_FIELD_MAX * ((size_t)t->n + 1) >
                     a->bmax);
}

/* Would adding @p a close what is open: full (kb_full_for()), or a new key
 * with no room for another open batch (kb_batch())? */
static bool kb_would_close(const up_rp_t *rp, const up_add_t *a)
{
    if (!rp->open)
        return false;
    const up_batch_t *t = kb_find(rp, &a->v->m);
    if (kb_full_for(rp, a, t))
        return true;
    if (t)
        return false;
    size_t nopen = 0;
    for (const up_batch_t *b = rp->open; b; b = b->next)
        nopen++;
    size_t max = (size_t)rp_conf(rp)->max_inflight_batches;
    size_t room = rp->npend < max ? max - rp->npend : 0;
    return nopen >= max || nopen >= room;
}

static upulsar_err_t kb_add(up_rp_t *rp, const up_add_t *a)
{
    if (rp->open && kb_full_for(rp, a, kb_find(rp, &a->v->m)))
        kb_close(rp);
    up_batch_t *b = kb_batch(rp, &a->v->m, a->now, a->pos);
    if (!b)
        return UPULSAR_ERR__NOMEM;
    if (!up_batch_reserve(b, HDR_ROOM + b->rec_len + a->rs))
        return UPULSAR_ERR__NOMEM;
    up_batch_append(b, a);
    rp->kb.n++;
    rp->kb.bytes += a->rs;
    return UPULSAR_OK;
}

static uint32_t kb_count(const up_rp_t *rp) { return rp->kb.n; }

const up_batcher_t up_batcher_key = {
    .name = "key_based",
    .solo_flags = UP_META_SEQ | UP_META_SOLO,
    .ids_at_close = true,
    .window = true,
    .add = kb_add,
    .would_close = kb_would_close,
    .close = kb_close,
    .count = kb_count,
};
