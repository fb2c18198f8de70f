/* test_record.c -- the ring record codec: for records with every optional
 * part (partition key, empty key, ordering key, properties, callback,
 * no-copy payload, explicit sequence id, replication names, deliver_at),
 * written at every cell of a small ring so that each part in turn straddles
 * the ring's end, up_rec_size() is the bytes the reader finds used, the
 * write touches no cell outside its own, and the reader gives back every
 * field and byte written. Malformed records are refused. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "record.h"
#include "ring.h"

#define RING_BYTES 2048 /* 64 cells */
#define FILL 0xA5

static void dummy_cb(upulsar_err_t e, const upulsar_msg_id_t *id, void *o)
{
    (void)e;
    (void)id;
    (void)o;
}
static void dummy_free(void *p, void *o)
{
    (void)p;
    (void)o;
}

static uint8_t payload_bytes[600];
static const char *const names2[] = {"east", "west-2"};
static const upulsar_property_t props2[] = {{"k1", "v1"}, {"a-longer-key", "and a value"}};

enum {
    V_KEY = 1,
    V_EMPTY_KEY = 2,
    V_OKEY = 4,
    V_PROPS = 8,
    V_CB = 16,
    V_NOCOPY = 32,
    V_SEQ = 64,
    V_REPL = 128,
    V_EVTIME = 256,
    V_ALL = 511
};

/* A record with the parts of @p variant and a payload of @p plen bytes. */
static up_rec_in_t make_in(unsigned variant, size_t plen)
{
    up_rec_in_t in = {0};
    in.payload = payload_bytes;
    in.payload_len = plen;
    in.future = (struct upulsar_future *)(uintptr_t)(0x1000 + variant);
    if (variant & V_KEY) {
        in.flags |= UP_REC_KEY;
        in.key = "partition-key-17";
        in.key_len = strlen(in.key);
    } else if (variant & V_EMPTY_KEY) {
        in.flags |= UP_REC_KEY;
        in.key = "";
        in.key_len = 0;
    }
    if (variant & V_OKEY) {
        in.okey = "\x00ord\x01key";
        in.okey_len = 8;
    }
    if (variant & V_PROPS) {
        in.props = props2;
        in.nprops = 2;
        in.props_len = up_props_size(props2, 2);
    }
    if (variant & (V_CB | V_NOCOPY)) {
        in.flags |= UP_REC_EXT;
        in.ext.cb = (variant & V_CB) ? dummy_cb : NULL;
        in.ext.opaque = (void *)(uintptr_t)0x77;
    }
    if (variant & V_NOCOPY) {
        in.flags |= UP_REC_NOCOPY;
        in.ext.free_cb = dummy_free;
        in.ext.payload = payload_bytes;
    }
    if (variant & (V_SEQ | V_REPL)) {
        in.flags |= UP_REC_META;
        if (variant & V_SEQ) {
            in.meta.seq = 0x123456789ull;
            in.meta.mflags |= UP_META_SEQ;
        }
        if (variant & V_REPL) {
            in.meta.nrepl = 2;
            in.meta.repl_len = (uint32_t)(strlen(names2[0]) + strlen(names2[1]) + 2);
            in.names = names2;
            in.meta.deliver_at = 1700000000123ull;
            in.meta.mflags |= UP_META_SOLO;
        }
    }
    if (variant & V_EVTIME)
        in.event_time = 1234567890123ull;
    return in;
}

/* Every field of @p v is what @p in said. */
static void check_view(const up_rec_in_t *in, const up_rec_view_t *v, uint64_t ncells)
{
    cr_assert_eq(v->ncells, ncells);
    cr_assert_eq(v->flags, in->flags);
    cr_assert_eq(v->size, up_rec_size(in), "size %zu, written %zu", up_rec_size(in), v->size);
    cr_assert_eq(v->future, in->future);
    cr_assert_eq(v->m.event_time, in->event_time);
    cr_assert_eq(v->m.payload_size, in->payload_len);
    if (in->flags & UP_REC_NOCOPY)
        cr_assert_eq(v->payload, in->payload, "a no-copy payload is the caller's pointer");
    else if (in->payload_len)
        cr_assert_arr_eq(v->payload, in->payload, in->payload_len);
    if (in->flags & UP_REC_KEY) {
        cr_assert_not_null(v->m.key);
        cr_assert_eq(v->m.key_len, in->key_len);
        if (in->key_len)
            cr_assert_arr_eq(v->m.key, in->key, in->key_len);
    } else {
        cr_assert_null(v->m.key);
    }
    cr_assert_eq(v->m.okey_len, in->okey_len);
    if (in->okey_len)
        cr_assert_arr_eq(v->m.okey, in->okey, in->okey_len);
    else
        cr_assert_null(v->m.okey);
    cr_assert_eq(v->m.props_len, in->props_len);
    if (in->props_len) {
        uint8_t want[256];
        cr_assert_leq(in->props_len, sizeof want);
        cr_assert_eq(up_props_encode(want, in->props, in->nprops), in->props_len);
        cr_assert_arr_eq(v->m.props, want, in->props_len);
    } else {
        cr_assert_null(v->m.props);
    }
    if (in->flags & UP_REC_EXT) {
        cr_assert_eq(v->ext.cb, in->ext.cb);
        cr_assert_eq(v->ext.opaque, in->ext.opaque);
        cr_assert_eq(v->ext.free_cb, in->ext.free_cb);
        cr_assert_eq(v->ext.payload, in->ext.payload);
    } else {
        cr_assert_null(v->ext.cb);
        cr_assert_null(v->ext.free_cb);
    }
    cr_assert_eq(v->meta.seq, in->meta.seq);
    cr_assert_eq(v->meta.mflags, in->meta.mflags);
    cr_assert_eq(v->meta.deliver_at, in->meta.deliver_at);
    cr_assert_eq(v->meta.nrepl, in->meta.nrepl);
    cr_assert_eq(v->meta.repl_len, in->meta.repl_len);
    if (in->meta.nrepl) {
        const char *n = v->names;
        for (unsigned i = 0; i < in->meta.nrepl; i++) {
            cr_assert_str_eq(n, in->names[i]);
            n += strlen(n) + 1;
        }
        cr_assert_eq((size_t)(n - v->names), in->meta.repl_len);
    } else {
        cr_assert_null(v->names);
    }
}

/* Write @p in at every cell of the ring (on a later lap of the positions),
 * read it back and compare; the cells outside the record keep their fill. */
static void round_trip_everywhere(const up_rec_in_t *in)
{
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, RING_BYTES), 0);
    size_t total = (size_t)r.cap * UP_RING_CELL;
    uint64_t ncells = up_ring_cells_for(up_rec_size(in));
    cr_assert_leq(ncells, r.cap / 2, "test record too large for the test ring");
    uint8_t *scratch = NULL;
    size_t scap = 0;
    unsigned wrapped = 0;
    for (uint64_t start = 0; start < r.cap; start++) {
        uint64_t pos = 5 * r.cap + start;
        memset(r.cells, FILL, total);
        up_rec_write(&r, pos, ncells, in);
        for (uint64_t c = 0; c < r.cap; c++) {
            uint64_t rel = (c - (pos & r.mask)) & r.mask; /* cells from the record start */
            if (rel < ncells)
                continue;
            for (size_t b = 0; b < UP_RING_CELL; b++)
                cr_assert_eq(r.cells[c * UP_RING_CELL + b], FILL,
                             "write at cell %llu touched cell %llu",
                             (unsigned long long)start, (unsigned long long)c);
        }
        up_rec_view_t v;
        int rc = up_rec_read(&r, pos, &scratch, &scap, &v);
        cr_assert_eq(rc, 0, "read at cell %llu: %d", (unsigned long long)start, rc);
        check_view(in, &v, ncells);
        up_rec_t h;
        up_rec_ext_t ext;
        up_rec_read_head(&r, pos, &h, &ext);
        cr_assert_eq(up_rec_cells(&h), ncells);
        cr_assert_eq(h.future, in->future);
        cr_assert_eq(h.payload_len, in->payload_len);
        cr_assert_eq(ext.free_cb, in->ext.free_cb);
        cr_assert_eq(ext.cb, in->ext.cb);
        if (start + ncells > r.cap)
            wrapped++;
    }
    if (ncells > 1)
        cr_assert_eq(wrapped, ncells - 1, "every straddling offset was tried");
    free(scratch);
    up_ring_destroy(&r);
}

Test(record, every_part_combination_round_trips_at_every_wrap_offset)
{
    for (size_t i = 0; i < sizeof payload_bytes; i++)
        payload_bytes[i] = (uint8_t)(i * 7 + 3);
    static const size_t plens[] = {0, 1, 31, 32, 33, 250};
    unsigned tried = 0;
    for (unsigned variant = 0; variant <= V_ALL; variant++) {
        if ((variant & V_KEY) && (variant & V_EMPTY_KEY))
            continue;
        for (size_t k = 0; k < sizeof plens / sizeof plens[0]; k++) {
            up_rec_in_t in = make_in(variant, plens[k]);
            round_trip_everywhere(&in);
            tried++;
        }
    }
    cr_assert_gt(tried, 0);
}

Test(record, size_counts_each_part_once)
{
    up_rec_in_t in = make_in(0, 10);
    size_t base = up_rec_size(&in);
    cr_assert_eq(base, sizeof(up_rec_t) + 10);
    in = make_in(V_KEY, 10);
    cr_assert_eq(up_rec_size(&in), base + in.key_len);
    in = make_in(V_NOCOPY, 10);
    cr_assert_eq(up_rec_size(&in), sizeof(up_rec_t) + sizeof(up_rec_ext_t),
                 "a no-copy record carries no payload bytes");
    in = make_in(V_REPL | V_SEQ, 10);
    cr_assert_eq(up_rec_size(&in), base + sizeof(up_rec_meta_t) + in.meta.repl_len);
    in = make_in(V_CB, 10);
    cr_assert_eq(up_rec_size(&in), base + UP_REC_SHORTEXT_BYTES,
                 "a callback alone takes the short extension");
    cr_assert_eq(UP_REC_SHORTEXT_BYTES, 16);
    in = make_in(V_CB | V_NOCOPY, 10);
    cr_assert_eq(up_rec_size(&in), sizeof(up_rec_t) + sizeof(up_rec_ext_t),
                 "a no-copy record keeps the whole extension");
}

/* The contiguous bytes of one valid record with every part. */
static size_t valid_record(uint8_t *out, size_t cap, up_rec_in_t *in)
{
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, RING_BYTES), 0);
    *in = make_in(V_ALL & ~V_EMPTY_KEY & ~V_NOCOPY, 40);
    uint64_t ncells = up_ring_cells_for(up_rec_size(in));
    size_t n = (size_t)ncells * UP_RING_CELL;
    cr_assert_leq(n, cap);
    up_rec_write(&r, 0, ncells, in);
    memcpy(out, r.cells, n);
    up_ring_destroy(&r);
    return n;
}

Test(record, malformed_records_are_refused)
{
    uint8_t buf[1024], bad[1024];
    up_rec_in_t in;
    size_t n = valid_record(buf, sizeof buf, &in);
    up_rec_view_t v;
    cr_assert_eq(up_rec_parse(buf, n, &v), 0);
    check_view(&in, &v, n / UP_RING_CELL);
    /* truncated: fewer bytes than the header's cell count */
    cr_assert_eq(up_rec_parse(buf, n - 1, &v), UPULSAR_ERR__DECODE);
    cr_assert_eq(up_rec_parse(buf, 31, &v), UPULSAR_ERR__DECODE);
    up_rec_t h;
    /* zero cells */
    memcpy(bad, buf, n);
    memcpy(&h, bad, sizeof h);
    h.ncells_flags &= 0xfu;
    memcpy(bad, &h, sizeof h);
    cr_assert_eq(up_rec_parse(bad, n, &v), UPULSAR_ERR__DECODE);
    /* no-copy without its extension */
    memcpy(bad, buf, n);
    memcpy(&h, bad, sizeof h);
    h.ncells_flags = (h.ncells_flags & ~UP_REC_EXT) | UP_REC_NOCOPY;
    memcpy(bad, &h, sizeof h);
    cr_assert_eq(up_rec_parse(bad, n, &v), UPULSAR_ERR__DECODE);
    /* a payload longer than the cells */
    memcpy(bad, buf, n);
    memcpy(&h, bad, sizeof h);
    h.payload_len = (uint32_t)n;
    memcpy(bad, &h, sizeof h);
    cr_assert_eq(up_rec_parse(bad, n, &v), UPULSAR_ERR__DECODE);
    /* a short extension with NOCOPY (it holds no payload pointer), or
     * without an extension */
    memcpy(&h, buf, sizeof h);
    cr_assert(h.props_len & UP_REC_X_SHORTEXT, "a callback alone: a short extension");
    memcpy(bad, buf, n);
    h.ncells_flags |= UP_REC_NOCOPY;
    memcpy(bad, &h, sizeof h);
    cr_assert_eq(up_rec_parse(bad, n, &v), UPULSAR_ERR__DECODE);
    memcpy(&h, buf, sizeof h);
    h.ncells_flags &= ~UP_REC_EXT;
    memcpy(bad, &h, sizeof h);
    cr_assert_eq(up_rec_parse(bad, n, &v), UPULSAR_ERR__DECODE);
    /* a cluster name without its NUL */
    memcpy(bad, buf, n);
    size_t names_at = sizeof(up_rec_t) + UP_REC_SHORTEXT_BYTES + sizeof(up_rec_meta_t);
    cr_assert_eq(bad[names_at + strlen(names2[0])], 0);
    bad[names_at + strlen(names2[0])] = 'x';
    bad[names_at + in.meta.repl_len - 1] = 'y';
    cr_assert_eq(up_rec_parse(bad, n, &v), UPULSAR_ERR__DECODE);
    /* more names than the names hold */
    memcpy(bad, buf, n);
    up_rec_meta_t meta;
    memcpy(&meta, bad + names_at - sizeof meta, sizeof meta);
    meta.nrepl = 3;
    memcpy(bad + names_at - sizeof meta, &meta, sizeof meta);
    cr_assert_eq(up_rec_parse(bad, n, &v), UPULSAR_ERR__DECODE);
    /* names longer than the record */
    memcpy(bad, buf, n);
    meta.nrepl = 2;
    meta.repl_len = (uint32_t)n;
    memcpy(bad + names_at - sizeof meta, &meta, sizeof meta);
    cr_assert_eq(up_rec_parse(bad, n, &v), UPULSAR_ERR__DECODE);
}

Test(record, a_cell_count_over_the_ring_is_refused_by_the_ring_reader)
{
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, RING_BYTES), 0);
    up_rec_t h = {.ncells_flags = (uint32_t)((r.cap + 1) << 4)};
    memcpy(up_ring_cell(&r, 3), &h, sizeof h);
    uint8_t *scratch = NULL;
    size_t scap = 0;
    up_rec_view_t v;
    cr_assert_eq(up_rec_read(&r, 3, &scratch, &scap, &v), UPULSAR_ERR__DECODE);
    cr_assert_null(scratch, "nothing allocated for a record that cannot be");
    up_ring_destroy(&r);
}

/* up_rec_write_plain() (sends of messages without options, or with only a
 * callback, an opaque, an event time and a partition key as text) writes
 * the very bytes up_rec_write() writes for the same record, and no others,
 * at every cell of the ring (the key and the payload straddling its end),
 * for lengths around a cell and a cache line, with and without a send
 * time, a callback, an event time and a key (empty, short, longer than a
 * cell); up_rec_plain_cells() is the record's size in cells. */
Test(record, a_plain_record_is_written_as_the_general_writer_writes_it)
{
    for (size_t i = 0; i < sizeof payload_bytes; i++)
        payload_bytes[i] = (uint8_t)(i * 13 + 5);
    static const size_t lens[] = {0, 1, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 250, 600};
    up_ring_t a, b;
    cr_assert_eq(up_ring_init(&a, RING_BYTES), 0);
    cr_assert_eq(up_ring_init(&b, RING_BYTES), 0);
    size_t total = (size_t)a.cap * UP_RING_CELL;
    struct upulsar_future *fut = (struct upulsar_future *)(uintptr_t)0x1234560;
    unsigned compared = 0;
    /* no key, an empty one, a short one, one past a cell */
    static const char *const keys[] = {NULL, "", "k-17", "a-partition-key-of-more-than-32-bytes"};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        for (int variant = 0; variant < 32; variant++) {
            int stamped = variant & 1, ext = variant & 2, evt = variant & 4;
            const char *key = keys[variant >> 3];
            up_rec_in_t in;
            memset(&in, 0, sizeof in);
            in.future = fut;
            in.payload = payload_bytes;
            in.payload_len = lens[k];
            in.sent_us = stamped ? UINT64_C(0x0123456789abcdef) : 0;
            in.event_time = evt ? UINT64_C(0x1122334455667788) : 0;
            if (ext) {
                in.flags = UP_REC_EXT;
                in.ext.cb = dummy_cb;
                in.ext.opaque = (void *)(uintptr_t)0xabcdef0;
            }
            if (key) {
                in.flags |= UP_REC_KEY;
                in.key = key;
                in.key_len = strlen(key);
            }
            up_rec_plain_t m = {.payload = payload_bytes,
                                .len = lens[k],
                                .key = key,
                                .key_len = key ? strlen(key) : 0,
                                .sent_us = in.sent_us,
                                .event_time = in.event_time,
                                .ext = ext != 0,
                                .cb = in.ext.cb,
                                .opaque = in.ext.opaque};
            uint64_t ncells = up_ring_cells_for(up_rec_size(&in));
            cr_assert_eq(up_rec_plain_cells(&m), ncells, "length %zu, variant %d", lens[k],
                         variant);
            for (uint64_t start = 0; start < a.cap; start++) {
                uint64_t pos = 3 * a.cap + start;
                memset(a.cells, FILL, total);
                memset(b.cells, FILL, total);
                up_rec_write(&a, pos, ncells, &in);
                up_rec_write_plain(&b, pos, ncells, &m, fut);
                cr_assert(!memcmp(a.cells, b.cells, total),
                          "length %zu, variant %d at cell %llu: the bytes differ", lens[k],
                          variant, (unsigned long long)start);
                compared++;
            }
        }
    }
    cr_assert_eq(compared, 32 * (sizeof lens / sizeof lens[0]) * a.cap);
    up_ring_destroy(&a);
    up_ring_destroy(&b);
}

/* up_copy_short() (copy.h, the keys' copy): for every length 0..80 and
 * every offset 0..7 of source and destination, exactly the n bytes are
 * copied and not a byte around them is written. */
Test(record, short_copy_writes_exactly_its_bytes_at_every_length)
{
    uint8_t src[96], dst[128];
    for (int i = 0; i < 96; i++)
        src[i] = (uint8_t)(i * 7 + 1);
    for (size_t n = 0; n <= 80; n++)
        for (size_t so = 0; so < 8; so++)
            for (size_t d0 = 0; d0 < 8; d0++) {
                memset(dst, 0xee, sizeof dst);
                up_copy_short(dst + 16 + d0, src + so, n);
                for (size_t i = 0; i < sizeof dst; i++) {
                    size_t at = 16 + d0;
                    uint8_t want = i >= at && i < at + n ? src[so + i - at] : 0xee;
                    cr_assert_eq(dst[i], want, "n %zu, offsets %zu/%zu: byte %zu is %u, not %u",
                                 n, so, d0, i, dst[i], want);
                }
            }
}
