/* batcher_default.c -- the default batcher, on the producer's loop: one
 * open batch at a time, whose entry carries its first message's key (as the
 * official clients do); closed when full (batch.max.messages,
 * batch.max.bytes, or the broker's max_message_size), when the batch window
 * ends, or at once for a message that is an entry of its own. The single
 * batcher (batching.enabled=false) is the same with every record closed on
 * its own and no window. */
#include <stdlib.h>
#include <string.h>

#include "batcher.h"

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

void up_batcher_default_close(up_rp_t *rp)
{
    up_batch_t *b = rp->open;
    rp->open = NULL;
    up_batch_close(rp, b);
}

upulsar_err_t up_batcher_default_add(up_rp_t *rp, const up_add_t *a)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    const up_smm_t *m = a->m;
    up_batch_t *b = rp->open;
    /* an entry never outgrows the broker's max_message_size, metadata
     * included, whatever batch.max.bytes says (the broker would refuse it,
     * with every message in it) */
    if (b && (a->solo || b->n >= (uint32_t)cf->batch_max_messages ||
              b->rec_len + a->rs > (size_t)cf->batch_max_bytes ||
              batch_md_bound(b) + b->rec_len + a->rs > a->bmax))
        up_batcher_default_close(rp);
    if (!rp->open) {
        b = up_batch_get(rp);
        if (!b)
            return UPULSAR_ERR__NOMEM;
        rp->open = b;
        b->created_us = a->now;
        b->first_seq = m->sequence_id;
        rp->open_deadline_us = rp->window_end_us ? rp->window_end_us
                                                 : a->now + (uint64_t)cf->batch_max_delay_us;
        rp->window_end_us = 0;
    }
    b = rp->open;
    if (b->n == 0 && (m->key || m->okey) && !up_batch_key(b, m))
        return UPULSAR_ERR__NOMEM;
    if (!up_batch_reserve(b, HDR_ROOM + b->rec_len + a->rs))
        return UPULSAR_ERR__NOMEM;
    if (a->solo && !batch_set_solo(b, a->meta, a->names)) {
        rp->open = NULL;
        up_batch_retire(rp, b);
        return UPULSAR_ERR__NOMEM;
    }
    up_batch_append(b, a);
    rp->next_seq = m->sequence_id + 1;
    return UPULSAR_OK;
}

static uint32_t default_count(const up_rp_t *rp) { return rp->open->n; }

const up_batcher_t up_batcher_default = {
    .name = "default",
    .solo_flags = UP_META_SOLO,
    .window = true,
    .add = up_batcher_default_add,
    .close = up_batcher_default_close,
    .count = default_count,
};

const up_batcher_t up_batcher_single = {
    .name = "single",
    .solo_flags = UP_META_SOLO,
    .close_each = true,
    .add = up_batcher_default_add,
    .close = up_batcher_default_close,
    .count = default_count,
};
