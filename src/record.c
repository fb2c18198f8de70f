/* record.c -- the out-of-line parts of the ring record codec (record.h,
 * which holds the size function, the write path and the reader inline: they
 * run once per message): reading a record that wraps around the ring's end
 * (loop) and reading just a record's head to fail it (loop). */
#include "record.h"

#include "fault.h"

#include <stdlib.h>
#include <string.h>


_Atomic int up_fault_rec_scratch_nomem;

int up_rec_read_wrapped(const up_ring_t *r, uint64_t pos, uint64_t ncells, uint8_t **scratch,
                        size_t *scratch_cap, up_rec_view_t *v)
{
    size_t size = (size_t)ncells * UP_RING_CELL;
    if (up_fault_hit(&up_fault_rec_scratch_nomem))
        return UPULSAR_ERR__NOMEM;
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
    memset(ext, 0, sizeof *ext);
    /* short only without NOCOPY, as up_rec_parse() insists: a payload out
     * of the ring always has its free_cb read */
    bool short_ext = (h->props_len & UP_REC_X_SHORTEXT) && !(h->ncells_flags & UP_REC_NOCOPY);
    if (h->ncells_flags & UP_REC_EXT)
        up_ring_read(r, pos, sizeof *h, ext, short_ext ? UP_REC_SHORTEXT_BYTES : sizeof *ext);
}

size_t up_rec_b64_put(const void *src, size_t n, void (*put)(void *ctx, const void *p, size_t len),
                      void *ctx)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *s = src;
    char out[64];
    size_t o = 0, total = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        size_t left = n - i;
        if (left > 1)
            v |= (uint32_t)s[i + 1] << 8;
        if (left > 2)
            v |= s[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = left > 1 ? tab[(v >> 6) & 63] : '=';
        out[o++] = left > 2 ? tab[v & 63] : '=';
        if (o == sizeof out) {
            put(ctx, out, o);
            total += o;
            o = 0;
        }
    }
    if (o) {
        put(ctx, out, o);
        total += o;
    }
    return total;
}
