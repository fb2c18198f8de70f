/* test_batch.c -- hand-encoded batch records equal protobuf-c's encoding,
 * decode back to the same fields, malformed batches are refused without
 * over-reading, and compression round-trips. */
#include <criterion/criterion.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"

typedef Pulsar__Proto__SingleMessageMetadata smm_pb_t;

static uint64_t rng_state = 0x0123456789ABCDEFull;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

static bool have_zstd(void) { return up_compress_bound(UP_COMP_ZSTD, 16) != 0; }
static bool have_zlib(void) { return up_compress_bound(UP_COMP_ZLIB, 16) != 0; }

/* protobuf-c's packing of the same SingleMessageMetadata. protobuf-c writes
 * fields in field-number order (1 properties, 2 partition_key,
 * 3 payload_size, 5 event_time, 7 ordering_key, 8 sequence_id), the order
 * the hand encoder uses too, so the bytes must be identical. */
static size_t pack_with_protobuf_c(const up_smm_t *m, const upulsar_property_t *props,
                                   size_t nprops, uint8_t *out)
{
    smm_pb_t s = PULSAR__PROTO__SINGLE_MESSAGE_METADATA__INIT;
    Pulsar__Proto__KeyValue kv[8], *kvp[8];
    cr_assert_leq(nprops, 8);
    for (size_t i = 0; i < nprops; i++) {
        pulsar__proto__key_value__init(&kv[i]);
        kv[i].key = (char *)props[i].key;
        kv[i].value = (char *)props[i].value;
        kvp[i] = &kv[i];
    }
    s.n_properties = nprops;
    s.properties = nprops ? kvp : NULL;
    char keybuf[300];
    if (m->key) {
        cr_assert_lt(m->key_len, sizeof keybuf);
        memcpy(keybuf, m->key, m->key_len);
        keybuf[m->key_len] = '\0';
        s.partition_key = keybuf;
    }
    s.payload_size = (int32_t)m->payload_size;
    if (m->event_time) {
        s.has_event_time = 1;
        s.event_time = m->event_time;
    }
    if (m->okey) {
        s.has_ordering_key = 1;
        s.ordering_key.data = (uint8_t *)m->okey;
        s.ordering_key.len = m->okey_len;
    }
    s.has_sequence_id = 1;
    s.sequence_id = m->sequence_id;
    return protobuf_c_message_pack(&s.base, out);
}

typedef struct {
    const char *key;
    const char *okey;
    size_t okey_len;
    upulsar_property_t props[3];
    size_t nprops;
    uint64_t event_time;
    uint64_t seq;
    uint32_t payload_size;
} case_t;

static const case_t cases[] = {
    {NULL, NULL, 0, {{0}}, 0, 0, 0, 0},
    {"k", NULL, 0, {{0}}, 0, 0, 1, 5},
    {"", NULL, 0, {{0}}, 0, 0, 2, 1},
    {NULL, "ord\0key", 7, {{0}}, 0, 0, 3, 100},
    {NULL, "", 0, {{0}}, 0, 0, 3, 100},
    {NULL, NULL, 0, {{"a", "b"}}, 1, 0, 4, 3},
    {NULL, NULL, 0, {{"", ""}}, 1, 0, 4, 3},
    {"user-42", "o", 1, {{"trace", "abc"}, {"x", ""}, {"h", "v"}}, 3, 1700000000123ull, 127,
     128},
    {"k", NULL, 0, {{0}}, 0, 1, 128, 16383},
    {"k", NULL, 0, {{0}}, 0, UINT64_MAX, UINT64_MAX, 16384},
    {NULL, NULL, 0, {{0}}, 0, 0, (1ull << 63), 5242880},
    {NULL, NULL, 0, {{0}}, 0, 0, 0, INT32_MAX},
};

static void to_smm(const case_t *c, up_smm_t *m, uint8_t *propbuf)
{
    memset(m, 0, sizeof *m);
    if (c->key) {
        m->key = c->key;
        m->key_len = (uint32_t)strlen(c->key);
    }
    if (c->okey) {
        m->okey = (const uint8_t *)c->okey;
        m->okey_len = (uint32_t)c->okey_len;
    }
    if (c->nprops) {
        m->props_len = (uint32_t)up_props_encode(propbuf, c->props, c->nprops);
        cr_assert_eq(m->props_len, up_props_size(c->props, c->nprops));
        m->props = propbuf;
    }
    m->event_time = c->event_time;
    m->sequence_id = c->seq;
    m->payload_size = c->payload_size;
}

Test(batch, hand_encoded_smm_is_byte_identical_to_protobuf_c)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        up_smm_t m;
        uint8_t propbuf[256], hand[512], ref[512];
        to_smm(&cases[i], &m, propbuf);
        size_t hl = up_record_put_header(hand, &m);
        size_t rl = pack_with_protobuf_c(&m, cases[i].props, cases[i].nprops, ref);
        cr_assert_eq(up_smm_size(&m), rl, "case %zu: size", i);
        cr_assert_eq(hl, 4 + rl, "case %zu: header length", i);
        cr_assert_eq(up_get_be32(hand), rl, "case %zu: size prefix", i);
        cr_assert_arr_eq(hand + 4, ref, rl, "case %zu: bytes differ", i);
        cr_assert_eq(up_record_size(&m), 4 + rl + m.payload_size);
    }
}

Test(batch, long_keys_and_properties_use_multibyte_lengths)
{
    /* lengths >= 128 need two-byte varints in tag-length-value */
    char key[200], val[300];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = '\0';
    upulsar_property_t props[] = {{key, val}, {"s", key}};
    uint8_t propbuf[1024], hand[2048], ref[2048];
    up_smm_t m = {0};
    m.key = key;
    m.key_len = (uint32_t)strlen(key);
    m.okey = (const uint8_t *)val;
    m.okey_len = 150;
    m.props_len = (uint32_t)up_props_encode(propbuf, props, 2);
    m.props = propbuf;
    m.sequence_id = 99;
    m.payload_size = 7;
    cr_assert_eq(m.props_len, up_props_size(props, 2));
    size_t hl = up_record_put_header(hand, &m);
    size_t rl = pack_with_protobuf_c(&m, props, 2, ref);
    cr_assert_eq(hl, 4 + rl);
    cr_assert_arr_eq(hand + 4, ref, rl);
}

/* Build a batch of @p n records with assorted fields into a new buffer;
 * with @p no_seq their metadata leaves sequence_id out. */
static uint8_t *build_batch_seq(size_t n, size_t *len, bool no_seq)
{
    size_t cap = 64, used = 0;
    uint8_t *buf = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        char key[32], payload[64], pv[32];
        snprintf(key, sizeof key, "key-%zu", i % 17);
        snprintf(pv, sizeof pv, "v%zu", i);
        int pl = snprintf(payload, sizeof payload, "payload number %zu", i);
        upulsar_property_t props[] = {{"idx", pv}, {"const", "c"}};
        uint8_t propbuf[128];
        up_smm_t m = {0};
        if (i % 3 != 0) {
            m.key = key;
            m.key_len = (uint32_t)strlen(key);
        }
        if (i % 5 == 1) {
            m.okey = (const uint8_t *)"ok";
            m.okey_len = 2;
        }
        if (i % 2 == 0) {
            m.props_len = (uint32_t)up_props_encode(propbuf, props, 2);
            m.props = propbuf;
        }
        m.event_time = i % 4 == 3 ? 1700000000000ull + i : 0;
        m.sequence_id = 1000 + i;
        m.no_seq = no_seq;
        m.payload_size = (uint32_t)pl;
        size_t need = up_record_size(&m);
        if (used + need > cap) {
            while (used + need > cap)
                cap *= 2;
            buf = realloc(buf, cap);
        }
        size_t w = up_record_put(buf + used, &m, payload);
        cr_assert_eq(w, need);
        used += w;
    }
    *len = used;
    return buf;
}

static uint8_t *build_batch(size_t n, size_t *len) { return build_batch_seq(n, len, false); }

/* Iterate @p buf and check every record against what build_batch wrote. */
static void verify_batch(const uint8_t *buf, size_t len, size_t n)
{
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        up_batch_msg_t m;
        cr_assert_eq(up_batch_next(buf, len, &off, &m), 1, "record %zu", i);
        smm_pb_t *s = m.smm;
        char key[32], payload[64], pv[32];
        snprintf(key, sizeof key, "key-%zu", i % 17);
        snprintf(pv, sizeof pv, "v%zu", i);
        int pl = snprintf(payload, sizeof payload, "payload number %zu", i);
        if (i % 3 != 0)
            cr_assert_str_eq(s->partition_key, key);
        else
            cr_assert_null(s->partition_key);
        if (i % 5 == 1) {
            cr_assert(s->has_ordering_key);
            cr_assert_eq(s->ordering_key.len, 2);
            cr_assert_eq(memcmp(s->ordering_key.data, "ok", 2), 0);
        } else {
            cr_assert_not(s->has_ordering_key);
        }
        if (i % 2 == 0) {
            cr_assert_eq(s->n_properties, 2);
            cr_assert_str_eq(s->properties[0]->key, "idx");
            cr_assert_str_eq(s->properties[0]->value, pv);
            cr_assert_str_eq(s->properties[1]->key, "const");
            cr_assert_str_eq(s->properties[1]->value, "c");
        } else {
            cr_assert_eq(s->n_properties, 0);
        }
        if (i % 4 == 3) {
            cr_assert(s->has_event_time);
            cr_assert_eq(s->event_time, 1700000000000ull + i);
        } else {
            cr_assert_not(s->has_event_time);
        }
        cr_assert(s->has_sequence_id);
        cr_assert_eq(s->sequence_id, 1000 + i);
        cr_assert_eq(s->payload_size, pl);
        cr_assert_eq(m.payload_len, (uint32_t)pl);
        cr_assert_eq(memcmp(m.payload, payload, (size_t)pl), 0);
        pulsar__proto__single_message_metadata__free_unpacked(s, NULL);
    }
    up_batch_msg_t m;
    cr_assert_eq(up_batch_next(buf, len, &off, &m), 0);
    cr_assert_eq(off, len);
}

Test(batch, records_decode_with_protobuf_c_to_the_same_fields)
{
    size_t len;
    uint8_t *buf = build_batch(40, &len);
    verify_batch(buf, len, 40);
    free(buf);
}

/* key_based batches learn their ids when they close: the records written
 * without sequence_id get it in place, and read back exactly as records
 * written with it (whatever the varint sizes: 127 -> 128 crosses one). */
Test(batch, records_numbered_at_close_read_back_with_their_ids)
{
    size_t len;
    uint8_t *buf = build_batch_seq(300, &len, true);
    size_t extra = up_records_number_extra(300, 1000);
    cr_assert_eq(extra, 300 * 3);
    buf = realloc(buf, len + extra);
    size_t offs[300];
    size_t nl = up_records_number(buf, len, 300, 1000, offs);
    cr_assert_eq(nl, len + extra);
    verify_batch(buf, nl, 300);
    free(buf);
    /* ids crossing a varint size */
    buf = build_batch_seq(3, &len, true);
    extra = up_records_number_extra(3, 127);
    cr_assert_eq(extra, 2 + 3 + 3);
    buf = realloc(buf, len + extra);
    cr_assert_eq(up_records_number(buf, len, 3, 127, offs), len + extra);
    size_t off = 0;
    for (uint64_t i = 0; i < 3; i++) {
        up_batch_msg_t m;
        cr_assert_eq(up_batch_next(buf, len + extra, &off, &m), 1);
        cr_assert_eq(m.smm->sequence_id, 127 + i);
        pulsar__proto__single_message_metadata__free_unpacked(m.smm, NULL);
    }
    free(buf);
}

/* Records that are not what up_record_put_header() writes without ids
 * (cut short, a count that does not match, ids already there) are left
 * exactly as they were. */
Test(batch, numbering_leaves_malformed_records_untouched)
{
    size_t len, offs[8];
    uint8_t *buf = build_batch_seq(5, &len, true);
    buf = realloc(buf, len + 64);
    uint8_t *copy = malloc(len);
    memcpy(copy, buf, len);
    cr_assert_eq(up_records_number(buf, len - 1, 5, 0, offs), 0);
    cr_assert_eq(up_records_number(buf, len, 4, 0, offs), 0);
    cr_assert_eq(up_records_number(buf, len, 6, 0, offs), 0);
    cr_assert_eq(memcmp(buf, copy, len), 0);
    free(buf);
    free(copy);
    buf = build_batch_seq(5, &len, false);
    buf = realloc(buf, len + 64);
    copy = malloc(len);
    memcpy(copy, buf, len);
    cr_assert_eq(up_records_number(buf, len, 5, 0, offs), 0);
    cr_assert_eq(memcmp(buf, copy, len), 0);
    free(buf);
    free(copy);
}

Test(batch, empty_batch_has_no_records)
{
    size_t off = 0;
    up_batch_msg_t m;
    cr_assert_eq(up_batch_next((const uint8_t *)"", 0, &off, &m), 0);
    cr_assert_eq(off, 0);
}

/* Every prefix of a valid batch, as an exact-size heap block (ASan traps
 * any over-read): whole records come out, then 0 at a record boundary or
 * DECODE inside a record, and *off never moves on an error. */
Test(batch, truncated_batches_are_decode_errors_without_over_read)
{
    size_t len;
    uint8_t *buf = build_batch(6, &len);
    size_t bounds[7], nb = 0, off = 0;
    bounds[nb++] = 0;
    up_batch_msg_t m;
    while (up_batch_next(buf, len, &off, &m) == 1) {
        pulsar__proto__single_message_metadata__free_unpacked(m.smm, NULL);
        bounds[nb++] = off;
    }
    cr_assert_eq(nb, 7);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, buf, cut);
        size_t o = 0, recs = 0;
        int rc;
        while ((rc = up_batch_next(p, cut, &o, &m)) == 1) {
            pulsar__proto__single_message_metadata__free_unpacked(m.smm, NULL);
            recs++;
        }
        size_t whole = 0;
        while (whole + 1 < nb && bounds[whole + 1] <= cut)
            whole++;
        cr_assert_eq(recs, whole, "cut %zu", cut);
        cr_assert_eq(o, bounds[whole], "cut %zu", cut);
        if (bounds[whole] == cut)
            cr_assert_eq(rc, 0, "cut %zu at a boundary", cut);
        else
            cr_assert_eq(rc, UPULSAR_ERR__DECODE, "cut %zu", cut);
        free(p);
    }
    free(buf);
}

Test(batch, malformed_records_are_decode_errors)
{
    uint8_t b[64];
    size_t off;
    up_batch_msg_t m;
    /* size prefix larger than what follows */
    up_put_be32(b, 10);
    memcpy(b + 4, "\x18\x00", 2);
    off = 0;
    cr_assert_eq(up_batch_next(b, 6, &off, &m), UPULSAR_ERR__DECODE);
    cr_assert_eq(off, 0);
    /* size prefix 0xffffffff */
    up_put_be32(b, 0xffffffffu);
    cr_assert_eq(up_batch_next(b, 8, &off, &m), UPULSAR_ERR__DECODE);
    /* metadata without the required payload_size */
    up_put_be32(b, 2);
    memcpy(b + 4, "\x40\x01", 2);
    cr_assert_eq(up_batch_next(b, 6, &off, &m), UPULSAR_ERR__DECODE);
    /* payload_size larger than the bytes left */
    up_put_be32(b, 2);
    memcpy(b + 4, "\x18\x05" "abcd", 6);
    cr_assert_eq(up_batch_next(b, 10, &off, &m), UPULSAR_ERR__DECODE);
    cr_assert_eq(off, 0);
    /* payload_size negative (int32 -1 as a 10-byte varint) */
    static const uint8_t neg[] = {0x18, 0xff, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0x01};
    up_put_be32(b, sizeof neg);
    memcpy(b + 4, neg, sizeof neg);
    memset(b + 4 + sizeof neg, 'x', 8);
    cr_assert_eq(up_batch_next(b, 4 + sizeof neg + 8, &off, &m), UPULSAR_ERR__DECODE);
    /* not protobuf at all */
    up_put_be32(b, 3);
    memcpy(b + 4, "\xff\xff\xff", 3);
    cr_assert_eq(up_batch_next(b, 7, &off, &m), UPULSAR_ERR__DECODE);
    /* 1..3 stray bytes after a complete record */
    up_put_be32(b, 2);
    memcpy(b + 4, "\x18\x01" "p" "\x00\x00", 5);
    for (size_t extra = 1; extra <= 3; extra++) {
        off = 0;
        cr_assert_eq(up_batch_next(b, 7 + extra, &off, &m), 1);
        pulsar__proto__single_message_metadata__free_unpacked(m.smm, NULL);
        cr_assert_eq(off, 7);
        cr_assert_eq(up_batch_next(b, 7 + extra, &off, &m), UPULSAR_ERR__DECODE);
        cr_assert_eq(off, 7);
    }
}

Test(batch, garbage_batches_end_without_over_read)
{
    for (int iter = 0; iter < 5000; iter++) {
        size_t len = rnd() % 128;
        uint8_t *p = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            p[i] = (uint8_t)rnd();
        if (len >= 6 && iter % 2) { /* plausible: small size, payload_size tag */
            up_put_be32(p, rnd() % (uint32_t)(len - 4));
            p[4] = 0x18;
        }
        size_t off = 0;
        up_batch_msg_t m;
        int rc, guard = 0;
        while ((rc = up_batch_next(p, len, &off, &m)) == 1) {
            cr_assert(m.payload + m.payload_len <= p + len);
            cr_assert_leq(off, len);
            pulsar__proto__single_message_metadata__free_unpacked(m.smm, NULL);
            cr_assert_lt(++guard, 100);
        }
        cr_assert(rc == 0 || rc == UPULSAR_ERR__DECODE);
        free(p);
    }
}

/* ---- compression ------------------------------------------------------------ */

static void round_trip(int codec, const uint8_t *src, size_t n)
{
    size_t bound = up_compress_bound(codec, n);
    cr_assert_gt(bound, 0, "codec %d", codec);
    uint8_t *c = malloc(bound);
    long cl = up_compress(codec, src, n, c, bound);
    cr_assert_geq(cl, 0, "codec %d compress -> %ld", codec, cl);
    uint8_t *d = malloc(n ? n : 1);
    cr_assert_eq(up_decompress(codec, c, (size_t)cl, d, n), 0, "codec %d", codec);
    cr_assert_eq(memcmp(d, src, n), 0);
    free(c);
    free(d);
}

Test(compression, lz4_writes_raw_blocks_that_round_trip)
{
    const char *text = "hello hello hello hello hello pulsar pulsar pulsar";
    size_t n = strlen(text);
    uint8_t c[256];
    long cl = up_compress(UP_COMP_LZ4, (const uint8_t *)text, n, c, sizeof c);
    cr_assert_gt(cl, 0);
    cr_assert_lt((size_t)cl, n, "repetitive text must shrink");
    /* a raw block: LZ4's own block decoder reads it, no frame magic */
    char out[128];
    cr_assert_eq(LZ4_decompress_safe((const char *)c, out, (int)cl, (int)sizeof out), (int)n);
    cr_assert_eq(memcmp(out, text, n), 0);
    cr_assert_neq(up_get_be32(c), 0x04224D18u);
    round_trip(UP_COMP_LZ4, (const uint8_t *)text, n);
    round_trip(UP_COMP_LZ4, (const uint8_t *)"", 0);
    uint8_t rnd_buf[3000];
    for (size_t i = 0; i < sizeof rnd_buf; i++)
        rnd_buf[i] = (uint8_t)rnd();
    round_trip(UP_COMP_LZ4, rnd_buf, sizeof rnd_buf); /* incompressible */
    round_trip(UP_COMP_NONE, rnd_buf, sizeof rnd_buf);
}

Test(compression, thousand_message_batch_round_trips_through_every_codec)
{
    size_t len;
    uint8_t *batch = build_batch(1000, &len);
    int codecs[] = {UP_COMP_NONE, UP_COMP_LZ4, UP_COMP_ZSTD};
    for (size_t k = 0; k < 3; k++) {
        int codec = codecs[k];
        if (codec == UP_COMP_ZSTD && !have_zstd())
            continue;
        size_t bound = up_compress_bound(codec, len);
        uint8_t *c = malloc(bound);
        long cl = up_compress(codec, batch, len, c, bound);
        cr_assert_gt(cl, 0, "codec %d", codec);
        if (codec != UP_COMP_NONE)
            cr_assert_lt((size_t)cl, len / 2, "codec %d: %ld of %zu", codec, cl, len);
        uint8_t *d = malloc(len);
        cr_assert_eq(up_decompress(codec, c, (size_t)cl, d, len), 0, "codec %d", codec);
        verify_batch(d, len, 1000);
        free(c);
        free(d);
    }
    free(batch);
}

Test(compression, corrupt_or_mis_sized_input_is_a_compression_error)
{
    size_t len;
    uint8_t *batch = build_batch(50, &len);
    int codecs[] = {UP_COMP_LZ4, UP_COMP_ZSTD};
    for (size_t k = 0; k < 2; k++) {
        int codec = codecs[k];
        if (codec == UP_COMP_ZSTD && !have_zstd())
            continue;
        size_t bound = up_compress_bound(codec, len);
        uint8_t *c = malloc(bound);
        long cl = up_compress(codec, batch, len, c, bound);
        cr_assert_gt(cl, 0);
        uint8_t *d = malloc(len + 100);
        /* wrong uncompressed size, either way */
        cr_assert_eq(up_decompress(codec, c, (size_t)cl, d, len - 1), UPULSAR_ERR__COMPRESSION,
                     "codec %d: short", codec);
        cr_assert_eq(up_decompress(codec, c, (size_t)cl, d, len + 1), UPULSAR_ERR__COMPRESSION,
                     "codec %d: long", codec);
        /* truncated input */
        cr_assert_eq(up_decompress(codec, c, (size_t)cl / 2, d, len), UPULSAR_ERR__COMPRESSION,
                     "codec %d: truncated", codec);
        cr_assert_eq(up_decompress(codec, c, 0, d, len), UPULSAR_ERR__COMPRESSION);
        /* random garbage */
        for (int iter = 0; iter < 200; iter++) {
            uint8_t g[256];
            size_t gl = 1 + rnd() % sizeof g;
            for (size_t i = 0; i < gl; i++)
                g[i] = (uint8_t)rnd();
            int rc = up_decompress(codec, g, gl, d, len);
            cr_assert_eq(rc, UPULSAR_ERR__COMPRESSION, "codec %d garbage -> %d", codec, rc);
        }
        free(c);
        free(d);
    }
    /* a corrupted LZ4 block: bit flips in the token/offset stream */
    size_t bound = up_compress_bound(UP_COMP_LZ4, len);
    uint8_t *c = malloc(bound), *d = malloc(len);
    long cl = up_compress(UP_COMP_LZ4, batch, len, c, bound);
    int detected = 0;
    for (long i = 0; i < cl; i += 3) {
        c[i] ^= 0xff;
        int rc = up_decompress(UP_COMP_LZ4, c, (size_t)cl, d, len);
        cr_assert(rc == 0 || rc == UPULSAR_ERR__COMPRESSION);
        detected += rc == UPULSAR_ERR__COMPRESSION;
        c[i] ^= 0xff;
    }
    cr_assert_gt(detected, 0);
    cr_assert_eq(up_decompress(UP_COMP_LZ4, c, (size_t)cl, d, len), 0);
    free(c);
    free(d);
    free(batch);
}

Test(compression, none_requires_matching_sizes)
{
    uint8_t d[8];
    cr_assert_eq(up_decompress(UP_COMP_NONE, (const uint8_t *)"abcd", 4, d, 4), 0);
    cr_assert_eq(memcmp(d, "abcd", 4), 0);
    cr_assert_eq(up_decompress(UP_COMP_NONE, (const uint8_t *)"abcd", 4, d, 3),
                 UPULSAR_ERR__COMPRESSION);
    cr_assert_eq(up_compress(UP_COMP_NONE, (const uint8_t *)"abcd", 4, d, 3),
                 UPULSAR_ERR__INVALID_ARG);
}

Test(compression, output_buffer_too_small_fails_cleanly)
{
    uint8_t src[1000], dst[16];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)rnd();
    cr_assert_eq(up_compress(UP_COMP_LZ4, src, sizeof src, dst, sizeof dst),
                 UPULSAR_ERR__COMPRESSION);
    if (have_zstd())
        cr_assert_eq(up_compress(UP_COMP_ZSTD, src, sizeof src, dst, sizeof dst),
                     UPULSAR_ERR__COMPRESSION);
}

Test(compression, codecs_not_built_in_are_not_supported)
{
    uint8_t d[64];
    cr_assert_eq(up_compress_bound(UP_COMP_SNAPPY, 10), 0);
    cr_assert_eq(up_compress(UP_COMP_SNAPPY, (const uint8_t *)"x", 1, d, sizeof d),
                 UPULSAR_ERR__NOT_SUPPORTED);
    if (!have_zlib()) {
        cr_assert_eq(up_compress(UP_COMP_ZLIB, (const uint8_t *)"x", 1, d, sizeof d),
                     UPULSAR_ERR__NOT_SUPPORTED);
        cr_assert_eq(up_decompress(UP_COMP_ZLIB, (const uint8_t *)"x", 1, d, 1),
                     UPULSAR_ERR__NOT_SUPPORTED);
    } else {
        /* not a zlib stream */
        cr_assert_eq(up_decompress(UP_COMP_ZLIB, (const uint8_t *)"x", 1, d, 1),
                     UPULSAR_ERR__COMPRESSION);
    }
    cr_assert_eq(up_decompress(99, (const uint8_t *)"x", 1, d, 1), UPULSAR_ERR__NOT_SUPPORTED);
    if (!have_zstd()) {
        cr_assert_eq(up_compress(UP_COMP_ZSTD, (const uint8_t *)"x", 1, d, sizeof d),
                     UPULSAR_ERR__NOT_SUPPORTED);
        cr_assert_eq(up_decompress(UP_COMP_ZSTD, (const uint8_t *)"x", 1, d, 1),
                     UPULSAR_ERR__NOT_SUPPORTED);
    }
}
