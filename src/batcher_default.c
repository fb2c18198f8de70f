/* batcher_default.c -- the default batcher, on the producer's loop: one
 * open batch at a time, whose entry carries its first message's key (as the
 * official clients do); closed when full (batch.max.messages,
 * batch.max.bytes, or the broker's max_message_size), when the batch window
 * ends, or at once for a message that is an entry of its own. The single
 * batcher (batching.enabled=false) sends every message alone, as a plain
 * entry (the drain hands it to chunk.c), with no window. */
#include <stdlib.h>
#include <string.h>

#include "batcher.h"

bool up_batch_set_solo(up_batch_t *b, const up_rec_meta_t *meta, const char *names)
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
    return up_default_add(rp, a);
}

bool up_batcher_default_would_close(const up_rp_t *rp, const up_add_t *a)
{
    return up_default_would_close(rp, a);
}

static uint32_t default_count(const up_rp_t *rp) { return rp->open->n; }

const up_batcher_t up_batcher_default = {
    .name = "default",
    .solo_flags = UP_META_SOLO,
    .window = true,
    .inline_add = true,
    .add = up_batcher_default_add,
    .would_close = up_batcher_default_would_close,
    .close = up_batcher_default_close,
    .count = default_count,
};

/* never asked to add: the drain sends every message as a plain entry, so
 * nothing is ever open (close and count stay for the drain's and the
 * statistics' generic calls) */
const up_batcher_t up_batcher_single = {
    .name = "single",
    .solo_flags = UP_META_SOLO,
    .plain_entries = true,
    .close = up_batcher_default_close,
    .count = default_count,
};
