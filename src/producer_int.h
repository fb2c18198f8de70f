/* producer_int.h -- what the files of the real producer share:
 *   producer.c        lifecycle, pending queue, receipts, send errors,
 *                     failures, timeouts (loop)
 *   send.c            upulsar_send()'s side: validation, limits, reservation,
 *                     blocking, the record into the ring (caller)
 *   drain.c           draining the ring into batches (loop)
 *   batcher.c         batch objects, closing a batch into a SEND entry (loop)
 *   batcher_*.c       the batchers (batcher.h), chosen at creation (loop)
 *   chunk.c           a message sent as chunks (loop)
 * Every function here says which thread may call it.
 * @internal
 */
#ifndef UP_PRODUCER_INT_H
#define UP_PRODUCER_INT_H
#include "batch.h"
#include "engine.h"
#include "err.h"
#include "rp_state.h"

/* Room kept in front of a batch's records for the frame header:
 * sizes, BaseCommand{SEND}, magic, CRC, MessageMetadata (with up to
 * UP_REPL_MAX_BYTES of replicate_to names). A header that needs more (long
 * keys) moves the records up when the batch is framed (up_entry_frame). */
#define UP_REPL_MAX_BYTES 512
#define HDR_ROOM 1024

/* Bounds of what an entry carries besides its payload, behind the rule
 * upulsar_send() documents (UPULSAR_MSG_OVERHEAD):
 *  UP_MD_SCALARS  every scalar MessageMetadata field the producer may set
 *                 (sequence ids, times, sizes, counts, compression, chunk
 *                 fields), each with its tag and its longest varint, plus
 *                 the tags and lengths of its strings (127 bytes), and the
 *                 partition_key_b64_encoded and null_value flags (3 bytes
 *                 each);
 *  UP_NAME_BOUND  the producer name (rp->name);
 *  UP_UUID_BOUND  a chunk's uuid, "<producer name>-<sequence id>";
 *  UP_SMM_SCALARS a record's size word and its SingleMessageMetadata
 *                 fields besides keys and properties (at most 40 bytes);
 *  UP_HDR_FIXED   frame sizes, BaseCommand{SEND} (at most 64 bytes), magic,
 *                 checksum and metadata size, in front of the metadata. */
#define UP_MD_SCALARS 136
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

static inline const struct upulsar_conf *rp_conf(const up_rp_t *rp) { return &rp->handle->conf; }

/* The broker's max_message_size: no entry, metadata and payload together,
 * may be larger. @thread any */
static inline size_t broker_max(const up_rp_t *rp)
{
    int32_t m = atomic_load_explicit(&rp->client->max_message_size, memory_order_relaxed);
    return m > 0 ? (size_t)m : 0;
}

/* Upper bound of the MessageMetadata of an entry whose key (ordering key,
 * else partition key) has @p key_len bytes, with @p repl_wire bytes of
 * replicate_to names (each name + 3). */
static inline size_t md_bound(size_t key_len, size_t repl_wire)
{
    return UP_MD_SCALARS + UP_NAME_BOUND + key_len + repl_wire;
}

/* The same for batch @p b as it is (its keys and names are set when it
 * opens): with an ordering key, the partition key the entry also carries
 * counts too. */
static inline size_t batch_md_bound(const up_batch_t *b)
{
    return md_bound((b->kkind ? b->kkey_len : 0) + b->kpk_len, b->repl_len + 2u * b->nrepl);
}

/* ---- send.c: max.pending.messages, memory.limit.bytes ---- */

/* What one message counts against memory.limit.bytes, from its send until
 * it resolves: its ring record (@p ncells cells), plus its payload when
 * that is out of the ring (@p flags has UP_REC_NOCOPY: a no-copy send, or
 * the private copy of a large message). @thread any */
static inline uint64_t up_rec_mem(uint64_t ncells, uint32_t flags, uint64_t payload_len)
{
    return ncells * UP_RING_CELL + ((flags & UP_REC_NOCOPY) ? payload_len : 0);
}

/** Give back the room of @p n resolved messages that counted @p bytes
 *  (up_rec_mem() summed) against memory.limit.bytes, to the client; once
 *  nothing of the producer is counted and its ring is empty, also the
 *  charged rest of its ring's budget unit (send.c). @thread loop */
void up_rp_limits_release(up_rp_t *rp, uint64_t n, uint64_t bytes);
/** @p bytes that @p rp holds of the budget stop counting as the producer's
 *  (its share) but stay counted client-wide, until
 *  up_client_mem_release(): the memory of a resolved batch that a
 *  connection's queue still holds, which may outlive the producer
 *  (send.c). @thread loop */
void up_rp_mem_to_client(up_rp_t *rp, uint64_t bytes);
/** Give back @p bytes counted client-wide only (up_rp_mem_to_client()).
 *  @thread loop, or the thread destroying the client */
void up_client_mem_release(struct upulsar_client *c, uint64_t bytes);
/** Set the budget unit of @p rp's ring from the client's
 *  memory.limit.bytes (send.c). @thread the creating one, before any send */
void up_rp_mem_init(up_rp_t *rp);
/** @p rp has nothing pending: give back the charged rest of its ring's
 *  budget unit if nothing else is counted. @thread loop */
void up_rp_mem_idle(up_rp_t *rp);
/** Give back @p cells of a unit's rest that a reset of @p rp's ring handed
 *  back (up_ring_idle()'s result; 0: nothing). @thread loop */
static inline void up_rp_mem_rest_back(up_rp_t *rp, uint64_t cells)
{
    if (__builtin_expect(cells != 0, 0)) {
        atomic_fetch_sub_explicit(&rp->mem_held, (int64_t)(cells * UP_RING_CELL),
                                  memory_order_relaxed);
        atomic_fetch_sub_explicit(&rp->client->mem_used, (int64_t)(cells * UP_RING_CELL),
                                  memory_order_relaxed);
    }
}
/** Give everything @p rp took from the client's budget back (the
 *  producer is being freed). @thread the freeing one */
void up_rp_mem_return_all(up_rp_t *rp);

/* ---- producer.c: results ---- */

/** The detail of messages of @p rp failing now: "<partition topic> via
 *  <broker>: <why>". A reference the caller drops with up_detail_put().
 *  @thread loop */
up_detail_t *up_rp_detail(up_rp_t *rp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Resolve one message: its future and its callback, which sees the
 * failure's detail through upulsar_last_error(). @thread loop */
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

/** Fail the record at the ring's tail with @p err (detail @p det, may be
 * NULL): its future, its own callback, its delivery report (payload still
 * in the ring), its free_cb, its room; returns its cells, for the caller to
 * move the tail past it. @thread loop */
uint64_t up_rp_fail_ring_head(up_rp_t *rp, upulsar_err_t err, up_detail_t *det);

/** Resolve every message of @p b (@p det: the failure's detail, NULL on
 *  success), give back their room, publish resolved_ring_pos. @thread loop */
void up_rp_resolve_batch(up_rp_t *rp, up_batch_t *b, upulsar_err_t err, uint64_t ledger,
                         uint64_t entry, up_detail_t *det);

/** Append framed entry @p b to the pending queue; written at once when the
 *  producer is ready. @thread loop */
void up_rp_queue_entry(up_rp_t *rp, up_batch_t *b);

/* ---- batcher.c: batch objects and entries ---- */

/** A cleared batch from the pool of the producer's loop, or a new one
 *  with small buffers; NULL when out of memory. @thread loop */
up_batch_t *up_batch_get(up_rp_t *rp);
/** @p b is resolved (or never used): back to the loop's pool (or freed,
 *  when the pool is full) once no connection queue points at it.
 *  @thread loop */
void up_batch_retire(up_rp_t *rp, up_batch_t *b);
/** Free a chain of batches (the producer is going away); those a connection
 *  queue still points at are freed by it. @thread loop or the freeing one */
void up_batch_free_chain(up_batch_t *b);
/** Make @p b's buffer hold at least @p total bytes (head room included)
 *  and its done array one more message; both grow geometrically.
 *  @thread loop */
bool up_batch_grow(up_batch_t *b, size_t total);
/** Make @p b's compression buffer hold at least @p total bytes: doubling,
 *  but not past @p hint unless @p total is larger. False when out of
 *  memory (the buffer is unchanged). @thread loop */
bool up_batch_zreserve(up_batch_t *b, size_t total, size_t hint);
static inline bool up_batch_reserve(up_batch_t *b, size_t total)
{
    return (b->cap >= total && b->n < b->done_cap) || up_batch_grow(b, total);
}
/** Give @p b the key its entry carries: @p m's ordering key, else its
 *  partition key. False when out of memory. @thread loop */
bool up_batch_key(up_batch_t *b, const up_smm_t *m);
/** The SEND command of entry @p b holding @p n messages (num_messages
 *  for a batch only: a plain entry leaves it out, meaning 1).
 *  @thread loop */
void up_send_cmd(const up_rp_t *rp, const up_batch_t *b, int32_t n, up_cmd_t *cmd,
                 Pulsar__Proto__CommandSend *send);
/** Frame entry @p b (see batcher.c) and queue it (up_rp_queue_entry()).
 *  0 or NOMEM. @thread loop */
upulsar_err_t up_entry_frame(up_rp_t *rp, up_batch_t *b, const up_cmd_t *cmd, const up_md_t *md,
                             const uint8_t *md_props, size_t md_props_len, uint8_t **bufp,
                             size_t *capp, size_t room, size_t plen);
/** Close batch @p b (no longer open): metadata, compression, frame, queue.
 *  On failure its messages fail and it is retired. 0 or -1. @thread loop */
int up_batch_close(up_rp_t *rp, up_batch_t *b);
/** Take every open batch (oldest first, linked by next) away from the
 *  batcher, to fail them. @thread loop */
up_batch_t *up_batcher_take_open(up_rp_t *rp);

/* ---- chunk.c ---- */

/** Upper bound of the MessageMetadata of each chunk of the message of
 *  record @p v (its fields @p m), replication clusters included.
 *  @thread any */
size_t up_chunk_md_bound(const up_smm_t *m, const up_rec_view_t *v);
/** Send the message of record @p v (its metadata @p m) as chunks of the
 *  broker's max_message_size, their send.timeout.ms counted from
 *  @p accepted_us (up_rp_accepted_by()). OK, NOMEM (nothing sent) or
 *  MSG_TOO_LARGE. @thread loop */
upulsar_err_t up_chunk_send(up_rp_t *rp, const up_smm_t *m, const up_rec_view_t *v,
                            uint64_t accepted_us);
#endif
