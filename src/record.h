/* record.h -- the ring record: one message as upulsar_send() leaves it in a
 * producer's ring for the loop to batch.
 *
 * Layout, from a cell boundary (the record takes whole UP_RING_CELL cells):
 *   up_rec_t          header, the first cell (never wraps)
 *   up_rec_ext_t      if UP_REC_EXT: callback, opaque, free_cb, payload ptr;
 *                     with UP_REC_X_SHORTEXT (in props_len) only callback
 *                     and opaque (16 bytes), when free_cb and the payload
 *                     pointer are NULL (no UP_REC_NOCOPY)
 *   up_rec_meta_t     if UP_REC_META: deliver_at, explicit sequence id,
 *                     replicate_to; followed by repl_len bytes of
 *                     NUL-terminated cluster names
 *   key_len bytes     partition key (if UP_REC_KEY; may be empty; with
 *                     UP_REC_X_KEYB64 the base64 text of the binary key)
 *   okey_len bytes    ordering key
 *   props_len bytes   properties, encoded as SingleMessageMetadata field 1
 *   payload_len bytes the payload, unless UP_REC_NOCOPY (then ext.payload)
 *   ...
 *   8 bytes           if UP_REC_STAMPED (in payload_len): the send time
 *                     (up_now_us()), in the last 8 bytes of the last cell
 *                     (a cell never wraps)
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
#include <string.h>

#include "batch.h"
#include "copy.h"
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
/* In up_rec_t.payload_len (payloads are at most UPULSAR_MAX_CHUNKED_BYTES,
 * 2^31 - 1): the record carries its send time (sampled, latency.sample.every) */
#define UP_REC_STAMPED 0x80000000u

/** The payload length in header @p h. */
static inline uint32_t up_rec_plen(const up_rec_t *h) { return h->payload_len & ~UP_REC_STAMPED; }

/* In up_rec_t.props_len (properties are at most UPULSAR_MAX_PROPERTIES_BYTES,
 * 2^20, so the low 24 bits hold the length): options off the common path,
 * as the SingleMessageMetadata of the message carries them. */
#define UP_REC_PROPS_MASK 0x00ffffffu
#define UP_REC_X_NULLV 0x01000000u  /* null_value (UPULSAR_SEND_NULL_VALUE) */
#define UP_REC_X_KEYB64 0x02000000u /* the key is base64 (partition_key_b64_encoded) */
#define UP_REC_X_SHORTEXT 0x04000000u /* the extension is its callback and opaque only */

/* Bytes of a short extension: up_rec_ext_t's callback and opaque. */
#define UP_REC_SHORTEXT_BYTES (2 * sizeof(void *))

/** Append the base64 text of @p n bytes at @p src to what @p put writes
 *  (pieces of at most 64 bytes). Returns the text's length. record.c */
size_t up_rec_b64_put(const void *src, size_t n, void (*put)(void *ctx, const void *p, size_t len),
                      void *ctx);

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

/** Cells of the record whose header is @p h. */
static inline uint64_t up_rec_cells(const up_rec_t *h) { return h->ncells_flags >> 4; }

/** A record to write: what the caller's options become. The lengths are
 *  already validated (keys at most 65535 bytes, props_len as
 *  up_props_size() of @c props). */
typedef struct up_rec_in {
    uint32_t flags; /**< UP_REC_*; UP_REC_EXT when ext is used, UP_REC_META
                         when meta is */
    struct upulsar_future *future;
    uint64_t event_time;
    uint64_t sent_us;    /**< send time (up_now_us()) to carry, 0 = none */
    const void *payload; /**< copied unless UP_REC_NOCOPY */
    size_t payload_len;
    const char *key; /**< partition key (UP_REC_KEY); with UP_REC_X_KEYB64
                          in xflags the binary key, key_raw_len bytes, and
                          key_len its base64 length */
    size_t key_len;
    size_t key_raw_len;
    uint32_t xflags; /**< UP_REC_X_* */
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
    uint64_t sent_us;    /**< the send time it carries, 0 = none */
    const void *payload; /**< ext.payload with UP_REC_NOCOPY */
    /** key (NULL unless UP_REC_KEY), ordering key and properties (NULL
     *  when none), event time and payload size, as SingleMessageMetadata
     *  takes them (the drain adds the sequence id) */
    up_smm_t m;
    up_rec_ext_t ext;   /**< zero without UP_REC_EXT */
    up_rec_meta_t meta; /**< zero without UP_REC_META */
    const char *names;  /**< meta.repl_len bytes: meta.nrepl NUL-terminated
                             names, NULL when none */
} up_rec_view_t;

/** Whether @p in's extension is written short (UP_REC_X_SHORTEXT): it has
 *  one, and no free_cb or payload pointer. @thread any */
static inline bool up_rec_short_ext(const up_rec_in_t *in)
{
    return (in->flags & (UP_REC_EXT | UP_REC_NOCOPY)) == UP_REC_EXT && !in->ext.free_cb &&
           !in->ext.payload;
}

/** Bytes @p in takes in the ring (header included); its cells are
 *  up_ring_cells_for() of it. @thread any */

static inline size_t up_rec_size(const up_rec_in_t *in)
{
    size_t n = sizeof(up_rec_t) + in->key_len + in->okey_len + in->props_len;
    if (in->flags & UP_REC_EXT)
        n += up_rec_short_ext(in) ? UP_REC_SHORTEXT_BYTES : sizeof(up_rec_ext_t);
    if (in->flags & UP_REC_META)
        n += sizeof(up_rec_meta_t) + in->meta.repl_len;
    if (!(in->flags & UP_REC_NOCOPY))
        n += in->payload_len;
    if (in->sent_us)
        n += sizeof in->sent_us;
    return n;
}

/* A write cursor over the ring's cells: the byte index of the next write,
 * wrapping at the array's end. */
typedef struct rec_put {
    uint8_t *cells;
    size_t total; /* bytes of the cell array */
    size_t at;
} up_rec_put_t;

static inline void up_rec_put(up_rec_put_t *w, const void *p, size_t len)
{
    if (len == 0)
        return; /* p may be NULL then */
    size_t first = w->total - w->at;
    if (len < first) {
        up_copy_short(w->cells + w->at, p, len); /* keys are mostly a few bytes */
        w->at += len;
        return;
    }
    memcpy(w->cells + w->at, p, first);
    if (len > first)
        memcpy(w->cells, (const uint8_t *)p + first, len - first);
    w->at = len - first;
}

static inline void up_rec_put_cb(void *ctx, const void *p, size_t len) { up_rec_put(ctx, p, len); }

/** Write @p in into the @p ncells cells reserved at @p pos (ncells from
 *  up_rec_size()), wrapping at the ring's end where it must. No allocation.
 *  @thread caller, between up_ring_reserve() and up_ring_commit() */

static inline void up_rec_write(up_ring_t *r, uint64_t pos, uint64_t ncells, const up_rec_in_t *in)
{
    size_t total = (size_t)r->cap * UP_RING_CELL;
    size_t at = (size_t)(pos & r->mask) * UP_RING_CELL;
    /* the header straight into its cell (the first cell never wraps; cells
     * are aligned for it) */
    up_rec_t *h = (up_rec_t *)(void *)(r->cells + at);
    h->ncells_flags = (uint32_t)(ncells << 4) | in->flags;
    h->payload_len = (uint32_t)in->payload_len | (in->sent_us ? UP_REC_STAMPED : 0u);
    if (in->sent_us) /* beyond everything else: up_rec_size() counted it */
        memcpy(r->cells + (size_t)((pos + ncells - 1) & r->mask) * UP_RING_CELL + UP_RING_CELL -
                   sizeof in->sent_us,
               &in->sent_us, sizeof in->sent_us);
    bool short_ext = up_rec_short_ext(in);
    h->key_len = (uint16_t)in->key_len;
    h->okey_len = (uint16_t)in->okey_len;
    h->props_len = (uint32_t)in->props_len | (in->xflags & ~UP_REC_X_SHORTEXT) |
                   (short_ext ? UP_REC_X_SHORTEXT : 0u);
    h->future = in->future;
    h->event_time = in->event_time;
    at += sizeof *h;
    up_rec_put_t w = {r->cells, total, at == total ? 0 : at};
    if (in->flags & UP_REC_EXT)
        up_rec_put(&w, &in->ext, short_ext ? UP_REC_SHORTEXT_BYTES : sizeof in->ext);
    if (in->flags & UP_REC_META) {
        up_rec_put(&w, &in->meta, sizeof in->meta);
        for (size_t i = 0; i < in->meta.nrepl; i++)
            up_rec_put(&w, in->names[i], strlen(in->names[i]) + 1);
    }
    if (__builtin_expect(in->xflags & UP_REC_X_KEYB64, 0))
        up_rec_b64_put(in->key, in->key_raw_len, up_rec_put_cb, &w);
    else
        up_rec_put(&w, in->key, in->key_len);
    up_rec_put(&w, in->okey, in->okey_len);
    if (in->props_len) {
        if (w.total - w.at >= in->props_len) {
            up_props_encode(w.cells + w.at, in->props, in->nprops);
            w.at += in->props_len;
            if (w.at == w.total)
                w.at = 0;
        } else {
            /* encoded piece by piece across the end: no copy */
            up_props_encode_to(in->props, in->nprops, up_rec_put_cb, &w);
        }
    }
    if (!(in->flags & UP_REC_NOCOPY))
        up_rec_put(&w, in->payload, in->payload_len);
}

/** A plain record: a message whose options need nothing past the record's
 *  header and extension, and its partition key as text (no binary key,
 *  ordering key, properties, meta or NOCOPY): its payload (copied into the
 *  ring), its event time, with @c ext a callback and its opaque (flags
 *  UP_REC_EXT, a short extension: UP_REC_X_SHORTEXT), with @c key its
 *  partition key (UP_REC_KEY). */
typedef struct up_rec_plain {
    const void *payload;
    size_t len;
    const char *key; /**< NULL: none; else key_len bytes (at most 65535) */
    size_t key_len;
    uint64_t sent_us;    /**< the send time it carries, 0 = none */
    uint64_t event_time;
    bool ext;
    upulsar_delivery_cb_t cb;
    void *opaque;
} up_rec_plain_t;

/** Cells of a plain record of @p len payload bytes, with the extension
 *  when @p ext, with a send time when @p stamped: up_ring_cells_for(
 *  up_rec_size()) of the same record. @thread any */
static inline uint64_t up_rec_plain_cells_of(size_t len, bool ext, bool stamped)
{
    return up_ring_cells_for(sizeof(up_rec_t) + (ext ? UP_REC_SHORTEXT_BYTES : 0) + len +
                             (stamped ? sizeof(uint64_t) : 0));
}

/** Cells of plain record @p m (up_rec_plain_cells_of(), and its key).
 *  @thread any */
static inline uint64_t up_rec_plain_cells(const up_rec_plain_t *m)
{
    return up_rec_plain_cells_of(m->len + m->key_len, m->ext, m->sent_us != 0);
}

/** up_rec_write() of plain record @p m with future @p future: the same
 *  bytes in the same cells, without a up_rec_in_t to fill and read back
 *  (the sends of messages without options, or with only a callback, an
 *  opaque, an event time and a partition key as text). @p ncells is up_rec_plain_cells(m). No
 *  allocation. @thread caller, between up_ring_reserve() and
 *  up_ring_commit() */
static inline void up_rec_write_plain(up_ring_t *r, uint64_t pos, uint64_t ncells,
                                      const up_rec_plain_t *m, struct upulsar_future *future)
{
    size_t total = (size_t)r->cap * UP_RING_CELL;
    size_t at = (size_t)(pos & r->mask) * UP_RING_CELL;
    size_t len = m->len;
    up_rec_t *h = (up_rec_t *)(void *)(r->cells + at);
    h->ncells_flags =
        (uint32_t)(ncells << 4) | (m->ext ? UP_REC_EXT : 0u) | (m->key ? UP_REC_KEY : 0u);
    h->payload_len = (uint32_t)len | (m->sent_us ? UP_REC_STAMPED : 0u);
    h->key_len = (uint16_t)m->key_len;
    h->okey_len = 0;
    h->props_len = m->ext ? UP_REC_X_SHORTEXT : 0u;
    h->future = future;
    h->event_time = m->event_time;
    if (m->sent_us)
        memcpy(r->cells + (size_t)((pos + ncells - 1) & r->mask) * UP_RING_CELL + UP_RING_CELL -
                   sizeof m->sent_us,
               &m->sent_us, sizeof m->sent_us);
    at += sizeof *h;
    if (at == total)
        at = 0;
    if (m->ext) {
        /* short, at a cell boundary: never wraps */
        up_rec_ext_t *x = (up_rec_ext_t *)(void *)(r->cells + at);
        x->cb = m->cb;
        x->opaque = m->opaque;
        at += UP_REC_SHORTEXT_BYTES;
    }
    if (m->key) { /* may wrap at the ring's end (an empty one writes nothing) */
        up_rec_put_t w = {r->cells, total, at};
        up_rec_put(&w, m->key, m->key_len);
        at = w.at;
    }
    uint8_t *d = r->cells + at;
    const uint8_t *s = m->payload;
    if (len >= 64 && len <= 128 && total - at >= len) {
        /* the common message size in two overlapping fixed-size copies,
         * inlined (a library call costs as much as the copy) */
        memcpy(d, s, 64);
        memcpy(d + len - 64, s + len - 64, 64);
    } else if (len) {
        up_rec_put_t w = {r->cells, total, at};
        up_rec_put(&w, s, len);
    }
}

/** Take the record at the start of @p rec (@p len bytes, contiguous):
 *  0 and *@p v, or UPULSAR_ERR__DECODE when the header's cell count, flags
 *  or lengths do not describe a record inside those bytes (names must be
 *  NUL-terminated inside repl_len). Never reads outside @p rec[0..len).
 *  @thread any */
static inline int up_rec_parse(const uint8_t *rec, size_t len, up_rec_view_t *v)
{
    up_rec_t h;
    if (len < sizeof h)
        return UPULSAR_ERR__DECODE;
    memcpy(&h, rec, sizeof h);
    uint64_t ncells = up_rec_cells(&h);
    uint32_t flags = h.ncells_flags & 0xfu;
    if (ncells == 0 || ncells > len / UP_RING_CELL)
        return UPULSAR_ERR__DECODE;
    if ((flags & UP_REC_NOCOPY) && !(flags & UP_REC_EXT))
        return UPULSAR_ERR__DECODE;
    /* every length below is at most 2^32: the sums cannot overflow */
    size_t room = (size_t)ncells * UP_RING_CELL, off = sizeof h;
    uint32_t xflags = h.props_len & ~UP_REC_PROPS_MASK;
    h.props_len &= UP_REC_PROPS_MASK;
    /* a short extension holds no payload pointer: never with NOCOPY */
    if ((xflags & UP_REC_X_SHORTEXT) && (flags & (UP_REC_EXT | UP_REC_NOCOPY)) != UP_REC_EXT)
        return UPULSAR_ERR__DECODE;
    const uint8_t *p = rec + off;
    v->ncells = ncells;
    v->flags = flags;
    v->future = h.future;
    v->sent_us = 0;
    if (h.payload_len & UP_REC_STAMPED) {
        if (room - off < sizeof v->sent_us)
            return UPULSAR_ERR__DECODE;
        h.payload_len &= ~UP_REC_STAMPED;
        memcpy(&v->sent_us, rec + room - sizeof v->sent_us, sizeof v->sent_us);
        room -= sizeof v->sent_us;
    }
    if (flags & UP_REC_EXT) {
        size_t xl = (xflags & UP_REC_X_SHORTEXT) ? UP_REC_SHORTEXT_BYTES : sizeof v->ext;
        if (room - off < xl)
            return UPULSAR_ERR__DECODE;
        memset(&v->ext, 0, sizeof v->ext);
        memcpy(&v->ext, p, xl);
        off += xl;
    } else {
        memset(&v->ext, 0, sizeof v->ext);
    }
    v->names = NULL;
    if (flags & UP_REC_META) {
        if (room - off < sizeof v->meta)
            return UPULSAR_ERR__DECODE;
        memcpy(&v->meta, rec + off, sizeof v->meta);
        off += sizeof v->meta;
        size_t rl = v->meta.repl_len;
        if (rl > room - off || v->meta.nrepl > UPULSAR_MAX_REPLICATION_CLUSTERS)
            return UPULSAR_ERR__DECODE;
        /* exactly nrepl NUL-terminated names fill repl_len */
        const char *names = (const char *)rec + off;
        size_t o = 0;
        for (unsigned i = 0; i < v->meta.nrepl; i++) {
            const char *z = memchr(names + o, 0, rl - o);
            if (!z)
                return UPULSAR_ERR__DECODE;
            o = (size_t)(z - names) + 1;
        }
        if (o != rl)
            return UPULSAR_ERR__DECODE;
        if (rl)
            v->names = names;
        off += rl;
    } else {
        memset(&v->meta, 0, sizeof v->meta);
    }
    size_t var = (size_t)h.key_len + h.okey_len + h.props_len;
    size_t body = (flags & UP_REC_NOCOPY) ? 0 : h.payload_len;
    if (var + body > room - off)
        return UPULSAR_ERR__DECODE;
    p = rec + off;
    v->m.key = (flags & UP_REC_KEY) ? (const char *)p : NULL;
    v->m.key_len = (flags & UP_REC_KEY) ? h.key_len : 0;
    p += h.key_len;
    v->m.okey = h.okey_len ? p : NULL;
    v->m.okey_len = h.okey_len;
    p += h.okey_len;
    v->m.props = h.props_len ? p : NULL;
    v->m.props_len = h.props_len;
    p += h.props_len;
    v->payload = (flags & UP_REC_NOCOPY) ? v->ext.payload : p;
    v->m.payload_size = h.payload_len;
    v->m.event_time = h.event_time;
    v->m.null_value = (xflags & UP_REC_X_NULLV) != 0;
    v->m.key_b64 = (xflags & UP_REC_X_KEYB64) && (flags & UP_REC_KEY);
    v->m.sequence_id = 0;
    v->m.no_seq = false;
    v->size = off + var + body;
    return 0;
}


/** The part of up_rec_read() for a record that wraps: copied into
 *  *@p scratch first. @thread loop */
int up_rec_read_wrapped(const up_ring_t *r, uint64_t pos, uint64_t ncells, uint8_t **scratch,
                        size_t *scratch_cap, up_rec_view_t *v);

/** Read the committed record at @p pos of @p r: a record that wraps is
 *  copied into *@p scratch (grown with realloc to *@p scratch_cap; freed by
 *  the owner). 0, UPULSAR_ERR__NOMEM (scratch could not grow) or
 *  UPULSAR_ERR__DECODE (see up_rec_parse(); also a cell count over the
 *  ring's capacity). @thread loop (the ring's consumer) */
static inline int up_rec_read(const up_ring_t *r, uint64_t pos, uint8_t **scratch,
                              size_t *scratch_cap, up_rec_view_t *v)
{
    const uint8_t *cell = up_ring_cell(r, pos);
    uint32_t nf;
    memcpy(&nf, cell, sizeof nf);
    uint64_t ncells = nf >> 4;
    if (ncells == 0 || ncells > r->cap)
        return UPULSAR_ERR__DECODE;
    if ((pos & r->mask) + ncells <= r->cap)
        return up_rec_parse(cell, (size_t)ncells * UP_RING_CELL, v);
    return up_rec_read_wrapped(r, pos, ncells, scratch, scratch_cap, v);
}

/** Just the header and extension of the record at @p pos (no allocation):
 *  enough to fail it unread. @p ext is zeroed without UP_REC_EXT.
 *  @thread loop (the ring's consumer) */
void up_rec_read_head(const up_ring_t *r, uint64_t pos, up_rec_t *h, up_rec_ext_t *ext);

#endif
