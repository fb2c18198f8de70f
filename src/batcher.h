/* batcher.h -- how a real producer groups the records it drains from its
 * ring into entries: an ops table chosen when the producer is created.
 *   up_batcher_default  one open batch; its entry carries the first
 *                       message's key (batcher_default.c)
 *   up_batcher_single   batching.enabled=false: the default batcher, every
 *                       record closed into an entry of its own, no window
 *   up_batcher_key      batching.type=key_based: one open batch per key,
 *                       sequence ids given per entry as they close
 *                       (batcher_key.c)
 * Whatever the batcher, a message with entry-level metadata (deliver_at,
 * replicate_to) is an entry of its own (the default batcher's path), and a
 * message larger than an entry is chunked (chunk.c). The drain that calls
 * the batcher (the batch window, the record read, the checks every message
 * goes through) is batcher.c. Every function runs on the producer's loop.
 * @internal
 */
#ifndef UP_BATCHER_H
#define UP_BATCHER_H
#include "producer_int.h"

/** One message to add, as the drain prepared it. */
typedef struct up_add {
    up_smm_t *m;         /**< its SingleMessageMetadata (sequence id set) */
    /* the result's future, callback and opaque are kept apart (not an
     * up_done_t): the drain stores them one by one, and a wide load of
     * adjacent fields just stored one by one stalls the loop */
    struct upulsar_future *future;
    const void *payload;
    upulsar_delivery_cb_t cb;
    size_t rs;           /**< up_record_size(&m) */
    void *opaque;
    size_t bmax;         /**< the broker's max_message_size now */
    bool solo;           /**< an entry of its own (default path only) */
    const up_rec_meta_t *meta; /**< with solo: deliver_at, names */
    const char *names;
    uint64_t now;
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
    /** every record closes into an entry of its own */
    bool close_each;
    /** Add @p a to an open batch, first closing what must close (full, or
     *  over the broker's size), opening one if needed. OK or NOMEM (the
     *  message is not added; the caller fails it). @thread loop */
    upulsar_err_t (*add)(up_rp_t *rp, const up_add_t *a);
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
    b->rec_len += up_record_put(b->buf + HDR_ROOM + b->rec_len, a->m, a->payload);
    b->last_seq = a->m->sequence_id;
    b->payload_bytes += a->m->payload_size;
    up_done_t *d = &b->done[b->n++];
    d->f = a->future;
    d->cb = a->cb;
    d->opaque = a->opaque;
}

/** The default batcher's add: also the path of a message that is an entry
 *  of its own under any batcher. @thread loop */
upulsar_err_t up_batcher_default_add(up_rp_t *rp, const up_add_t *a);
/** Close the one open batch (default, single, a solo entry). @thread loop */
void up_batcher_default_close(up_rp_t *rp);
#endif
