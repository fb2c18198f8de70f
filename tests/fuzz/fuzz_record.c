/* fuzz_record.c -- libFuzzer target for the ring record reader.
 *
 * Input: [ctl][record bytes...]
 *   ctl bit 0     0: up_rec_parse() on the bytes as they are;
 *                 1: the bytes are copied into a 64-cell ring starting at
 *                    cell (ctl >> 1) (wrapping at its end) and read back
 *                    with up_rec_read(), which copies a wrapping record into
 *                    its scratch buffer
 * Checked beyond "no crash, no sanitizer report": a record accepted lies
 * inside the bytes given (its cells, every part it points at), and a
 * refused one is refused with UPULSAR_ERR__DECODE.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "ring.h"
#include "fuzz_check.h"

static void inside(const void *p, size_t n, const uint8_t *lo, size_t len)
{
    if (!p) {
        CHECK(n == 0);
        return;
    }
    const uint8_t *q = p;
    CHECK(q >= lo && q <= lo + len && n <= (size_t)(lo + len - q));
}

/* Every part of accepted record @p v lies within @p rec[0..len); a short
 * extension reads back with no free_cb and no payload pointer. */
static void check_view(const up_rec_view_t *v, const uint8_t *rec, size_t len)
{
    up_rec_t h;
    memcpy(&h, rec, sizeof h);
    if (h.props_len & UP_REC_X_SHORTEXT)
        CHECK((v->flags & (UP_REC_EXT | UP_REC_NOCOPY)) == UP_REC_EXT && !v->ext.free_cb &&
              !v->ext.payload);
    CHECK(v->ncells >= 1 && v->ncells <= len / UP_RING_CELL);
    CHECK(v->size >= sizeof(up_rec_t) && v->size <= v->ncells * UP_RING_CELL);
    inside(v->m.key, v->m.key_len, rec, v->size);
    inside(v->m.okey, v->m.okey_len, rec, v->size);
    inside(v->m.props, v->m.props_len, rec, v->size);
    inside(v->names, v->names ? v->meta.repl_len : 0, rec, v->size);
    if (!(v->flags & UP_REC_NOCOPY))
        inside(v->payload, v->m.payload_size, rec, v->size);
    if (v->names) { /* exactly nrepl NUL-terminated names */
        size_t o = 0;
        for (unsigned i = 0; i < v->meta.nrepl; i++)
            o += strlen(v->names + o) + 1;
        CHECK(o == v->meta.repl_len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    data++;
    size--;
    up_rec_view_t v;
    if (!(ctl & 1)) {
        /* a private copy of exactly the bytes: reading past them is caught */
        uint8_t *rec = malloc(size ? size : 1);
        CHECK(rec != NULL);
        if (size)
            memcpy(rec, data, size);
        int rc = up_rec_parse(rec, size, &v);
        CHECK(rc == 0 || rc == UPULSAR_ERR__DECODE);
        if (rc == 0)
            check_view(&v, rec, size);
        free(rec);
        return 0;
    }
    up_ring_t r;
    CHECK(up_ring_init(&r, 64 * UP_RING_CELL) == 0);
    size_t total = (size_t)r.cap * UP_RING_CELL;
    uint64_t pos = 7 * r.cap + (uint64_t)(ctl >> 1) % r.cap;
    memset(r.cells, 0, total);
    up_ring_write(&r, pos, 0, data, size < total ? size : total);
    uint8_t *scratch = NULL;
    size_t scap = 0;
    int rc = up_rec_read(&r, pos, &scratch, &scap, &v);
    CHECK(rc == 0 || rc == UPULSAR_ERR__DECODE);
    if (rc == 0) {
        bool wraps = (pos & r.mask) + v.ncells > r.cap;
        if (wraps)
            check_view(&v, scratch, scap);
        else
            check_view(&v, up_ring_cell(&r, pos), (size_t)(r.cap - (pos & r.mask)) * UP_RING_CELL);
    }
    free(scratch);
    up_ring_destroy(&r);
    return 0;
}
