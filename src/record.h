/* record.h -- the ring record: one message as upulsar_send() leaves it in a
 * producer's ring for the loop to batch.
 *
 * Layout, from a cell boundary (the record takes whole UP_RING_CELL cells):
 *   up_rec_t          header, the first cell (never wraps)
 *   up_rec_ext_t      if UP_REC_EXT: callback, opaque, free_cb, payload ptr
 *   up_rec_meta_t     if UP_REC_META: deliver_at, explicit sequence id,
 *                     replicate_to; followed by repl_len bytes of
 *                     NUL-terminated cluster names
 *   key_len bytes     partition key (if UP_REC_KEY; may be empty)
 *   okey_len bytes    ordering key
 *   props_len bytes   properties, encoded as SingleMessageMetadata field 1
 *   payload_len bytes the payload, unless UP_REC_NOCOPY (then ext.payload)
 * Everything after the header may wrap around the ring's end.
 *
 * Threads: up_rec_size() and up_rec_write() run on caller threads (between
 * up_ring_reserve() and up_ring_commit()); up_rec_read() on the loop that
 * consumes the ring; up_rec_parse() on any thread (it touches only what it
 * is given). The module knows nothing of batches.
 * @internal
 */
#ifndef UP_RECORD_H
#define UP_RECORD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"
#include "upulsar/upulsar.h"

/* Ring record header, in the record's first cell. */
typedef struct up_rec {
    uint32_t ncells_flags; /* cells << 4 | flags */
    uint32_t payload_len;
    uint16_t key_len;
    uint16_t okey_len;
    uint32_t props_len;
    struct upulsar_future *future;
    uint64_t event_time;
} up_rec_t;
_Static_assert(sizeof(up_rec_t) == 32, "record header is one cell");

#define UP_REC_KEY 0x1u    /* has a partition key (may be empty) */
#define UP_REC_EXT 0x2u    /* up_rec_ext_t follows the header */
#define UP_REC_NOCOPY 0x4u /* payload is by pointer (ext.payload) */
#define UP_REC_META 0x8u   /* up_rec_meta_t (+ repl_len bytes) follows the ext */

typedef struct up_rec_ext {
    upulsar_delivery_cb_t cb;
    void *opaque;
    void (*free_cb)(void *payload, void *opaque);
    const void *payload;
} up_rec_ext_t;
_Static_assert(sizeof(up_rec_ext_t) == 32, "record extension is one cell");

/* Per-message options off the common path (deliver_at, an explicit sequence
 * id, replicate_to); followed by repl_len bytes of NUL-terminated cluster
 * names. */
#define UP_META_SEQ 0x1u  /* seq is explicit */
#define UP_META_SOLO 0x2u /* an entry of its own (deliver_at, replicate_to) */
typedef struct up_rec_meta {
    uint64_t deliver_at;
    uint64_t seq;
    uint32_t repl_len;
    uint16_t nrepl;
    uint16_t mflags;
} up_rec_meta_t;
_Static_assert(sizeof(up_rec_meta_t) == 24, "record meta size");

/** A record to write: what the caller's options become. The lengths are
 *  already validated (keys at most 65535 bytes, props_len as
 *  up_props_size() of @c props). */
typedef struct up_rec_in {
    uint32_t flags; /**< UP_REC_*; UP_REC_EXT when ext is used, UP_REC_META
                         when meta is */
    struct upulsar_future *future;
    uint64_t event_time;
    const void *payload; /**< copied unless UP_REC_NOCOPY */
    size_t payload_len;
    const char *key; /**< partition key (UP_REC_KEY) */
    size_t key_len;
    const void *okey; /**< ordering key, okey_len > 0 */
    size_t okey_len;
    const upulsar_property_t *props;
    size_t nprops;
    size_t props_len; /**< their encoded size */
    up_rec_ext_t ext;
    up_rec_meta_t meta; /**< meta.nrepl names at @c names, meta.repl_len
                             bytes with their NULs */
    const char *const *names;
} up_rec_in_t;

/** A record read back. Pointers point into the ring or into the reader's
 *  scratch buffer, valid until the record is released or the next read. */
typedef struct up_rec_view {
    uint64_t ncells;
    uint32_t flags;
    size_t size; /**< bytes used of ncells * UP_RING_CELL */
    struct upulsar_future *future;
    uint64_t event_time;
    const void *payload; /**< ext.payload with UP_REC_NOCOPY */
    uint32_t payload_len;
    const char *key; /**< NULL unless UP_REC_KEY */
    uint32_t key_len;
    const uint8_t *okey; /**< NULL when none */
    uint32_t okey_len;
    const uint8_t *props; /**< NULL when none */
    uint32_t props_len;
    up_rec_ext_t ext;   /**< zero without UP_REC_EXT */
    up_rec_meta_t meta; /**< zero without UP_REC_META */
    const char *names;  /**< meta.repl_len bytes: meta.nrepl NUL-terminated
                             names, NULL when none */
} up_rec_view_t;

/** Bytes @p in takes in the ring (header included); its cells are
 *  up_ring_cells_for() of it. @thread any */
size_t up_rec_size(const up_rec_in_t *in);

/** Write @p in into the @p ncells cells reserved at @p pos (ncells from
 *  up_rec_size()), wrapping at the ring's end where it must. No allocation.
 *  @thread caller, between up_ring_reserve() and up_ring_commit() */
void up_rec_write(up_ring_t *r, uint64_t pos, uint64_t ncells, const up_rec_in_t *in);

/** Take the record at the start of @p rec (@p len bytes, contiguous):
 *  0 and *@p v, or UPULSAR_ERR__DECODE when the header's cell count, flags
 *  or lengths do not describe a record inside those bytes (names must be
 *  NUL-terminated inside repl_len). Never reads outside @p rec[0..len).
 *  @thread any */
int up_rec_parse(const uint8_t *rec, size_t len, up_rec_view_t *v);

/** Read the committed record at @p pos of @p r: a record that wraps is
 *  copied into *@p scratch (grown with realloc to *@p scratch_cap; freed by
 *  the owner). 0, UPULSAR_ERR__NOMEM (scratch could not grow) or
 *  UPULSAR_ERR__DECODE (see up_rec_parse(); also a cell count over the
 *  ring's capacity). @thread loop (the ring's consumer) */
int up_rec_read(const up_ring_t *r, uint64_t pos, uint8_t **scratch, size_t *scratch_cap,
                up_rec_view_t *v);

/** Just the header and extension of the record at @p pos (no allocation):
 *  enough to fail it unread. @p ext is zeroed without UP_REC_EXT.
 *  @thread loop (the ring's consumer) */
void up_rec_read_head(const up_ring_t *r, uint64_t pos, up_rec_t *h, up_rec_ext_t *ext);

/** Cells of the record whose header is @p h. */
static inline uint64_t up_rec_cells(const up_rec_t *h) { return h->ncells_flags >> 4; }
#endif
