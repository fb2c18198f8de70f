/* record.c -- the ring record codec: its size, its one write path (which
 * handles a record wrapping around the ring's end) and its reader.
 * up_rec_size() and up_rec_write() run on caller threads, up_rec_read() and
 * up_rec_read_head() on the loop consuming the ring, up_rec_parse() on any.
 * Layout: record.h. */
#include "record.h"

#include <stdlib.h>
#include <string.h>

#include "batch.h"

size_t up_rec_size(const up_rec_in_t *in)
{
    size_t n = sizeof(up_rec_t) + in->key_len + in->okey_len + in->props_len;
    if (in->flags & UP_REC_EXT)
        n += sizeof(up_rec_ext_t);
    if (in->flags & UP_REC_META)
        n += sizeof(up_rec_meta_t) + in->meta.repl_len;
    if (!(in->flags & UP_REC_NOCOPY))
        n += in->payload_len;
    return n;
}

/* A write cursor over the ring's cells: the byte index of the next write,
 * wrapping at the array's end. */
typedef struct rec_put {
    uint8_t *cells;
    size_t total; /* bytes of the cell array */
    size_t at;
} rec_put_t;

static inline void put(rec_put_t *w, const void *p, size_t len)
{
    if (len == 0)
        return; /* p may be NULL then */
    size_t first = w->total - w->at;
    if (len < first) {
        memcpy(w->cells + w->at, p, len);
        w->at += len;
        return;
    }
    memcpy(w->cells + w->at, p, first);
    if (len > first)
        memcpy(w->cells, (const uint8_t *)p + first, len - first);
    w->at = len - first;
}

static void put_cb(void *ctx, const void *p, size_t len) { put(ctx, p, len); }

void up_rec_write(up_ring_t *r, uint64_t pos, uint64_t ncells, const up_rec_in_t *in)
{
    up_rec_t h = {
        .ncells_flags = (uint32_t)(ncells << 4) | in->flags,
        .payload_len = (uint32_t)in->payload_len,
        .key_len = (uint16_t)in->key_len,
        .okey_len = (uint16_t)in->okey_len,
        .props_len = (uint32_t)in->props_len,
        .future = in->future,
        .event_time = in->event_time,
    };
    size_t total = (size_t)r->cap * UP_RING_CELL;
    size_t at = (size_t)(pos & r->mask) * UP_RING_CELL;
    memcpy(r->cells + at, &h, sizeof h); /* the first cell never wraps */
    at += sizeof h;
    rec_put_t w = {r->cells, total, at == total ? 0 : at};
    if (in->flags & UP_REC_EXT)
        put(&w, &in->ext, sizeof in->ext);
    if (in->flags & UP_REC_META) {
        put(&w, &in->meta, sizeof in->meta);
        for (size_t i = 0; i < in->meta.nrepl; i++)
            put(&w, in->names[i], strlen(in->names[i]) + 1);
    }
    put(&w, in->key, in->key_len);
    put(&w, in->okey, in->okey_len);
    if (in->props_len) {
        if (w.total - w.at >= in->props_len) {
            up_props_encode(w.cells + w.at, in->props, in->nprops);
            w.at += in->props_len;
            if (w.at == w.total)
                w.at = 0;
        } else {
            /* encoded piece by piece across the end: no copy */
            up_props_encode_to(in->props, in->nprops, put_cb, &w);
        }
    }
    if (!(in->flags & UP_REC_NOCOPY))
        put(&w, in->payload, in->payload_len);
}

int up_rec_parse(const uint8_t *rec, size_t len, up_rec_view_t *v)
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
    const uint8_t *p = rec + off;
    v->ncells = ncells;
    v->flags = flags;
    v->future = h.future;
    v->event_time = h.event_time;
    if (flags & UP_REC_EXT) {
        if (room - off < sizeof v->ext)
            return UPULSAR_ERR__DECODE;
        memcpy(&v->ext, p, sizeof v->ext);
        off += sizeof v->ext;
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
    v->key = (flags & UP_REC_KEY) ? (const char *)p : NULL;
    v->key_len = (flags & UP_REC_KEY) ? h.key_len : 0;
    p += h.key_len;
    v->okey = h.okey_len ? p : NULL;
    v->okey_len = h.okey_len;
    p += h.okey_len;
    v->props = h.props_len ? p : NULL;
    v->props_len = h.props_len;
    p += h.props_len;
    v->payload = (flags & UP_REC_NOCOPY) ? v->ext.payload : p;
    v->payload_len = h.payload_len;
    v->size = off + var + body;
    return 0;
}

int up_rec_read(const up_ring_t *r, uint64_t pos, uint8_t **scratch, size_t *scratch_cap,
                up_rec_view_t *v)
{
    const uint8_t *cell = up_ring_cell(r, pos);
    uint32_t nf;
    memcpy(&nf, cell, sizeof nf);
    uint64_t ncells = nf >> 4;
    if (ncells == 0 || ncells > r->cap)
        return UPULSAR_ERR__DECODE;
    size_t size = (size_t)ncells * UP_RING_CELL;
    if ((pos & r->mask) + ncells <= r->cap)
        return up_rec_parse(cell, size, v);
    /* wraps: made contiguous in the scratch buffer */
    if (*scratch_cap < size) {
        uint8_t *s = realloc(*scratch, size);
        if (!s)
            return UPULSAR_ERR__NOMEM;
        *scratch = s;
        *scratch_cap = size;
    }
    up_ring_read(r, pos, 0, *scratch, size);
    return up_rec_parse(*scratch, size, v);
}

void up_rec_read_head(const up_ring_t *r, uint64_t pos, up_rec_t *h, up_rec_ext_t *ext)
{
    memcpy(h, up_ring_cell(r, pos), sizeof *h);
    if (h->ncells_flags & UP_REC_EXT)
        up_ring_read(r, pos, sizeof *h, ext, sizeof *ext);
    else
        memset(ext, 0, sizeof *ext);
}
