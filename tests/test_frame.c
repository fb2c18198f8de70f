/* test_frame.c -- frame encoding is byte-exact and the decoder survives any
 * split of its input, rejects malformed frames with the documented error
 * and keeps going after a checksum mismatch. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "frame.h"
#include "upulsar/upulsar.h"

/* ---- builders ---------------------------------------------------------- */

static void put_ping(up_buf_t *b)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandPing ping = PULSAR__PROTO__COMMAND_PING__INIT;
    cmd.type = UP_CMD(PING);
    cmd.ping = &ping;
    cr_assert_eq(up_frame_put_cmd(b, &cmd), 0);
}

static void put_pong(up_buf_t *b)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandPong pong = PULSAR__PROTO__COMMAND_PONG__INIT;
    cmd.type = UP_CMD(PONG);
    cmd.pong = &pong;
    cr_assert_eq(up_frame_put_cmd(b, &cmd), 0);
}

static void put_receipt(up_buf_t *b, uint64_t seq)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSendReceipt r = PULSAR__PROTO__COMMAND_SEND_RECEIPT__INIT;
    Pulsar__Proto__MessageIdData id = PULSAR__PROTO__MESSAGE_ID_DATA__INIT;
    id.ledgerid = 10;
    id.entryid = seq;
    r.producer_id = 1;
    r.sequence_id = seq;
    r.message_id = &id;
    cmd.type = UP_CMD(SEND_RECEIPT);
    cmd.send_receipt = &r;
    cr_assert_eq(up_frame_put_cmd(b, &cmd), 0);
}

/* The SEND of protocol reference §1.3, with any payload. */
static void put_send(up_buf_t *b, uint64_t seq, const char *payload, bool crc)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSend send = PULSAR__PROTO__COMMAND_SEND__INIT;
    cmd.type = UP_CMD(SEND);
    cmd.send = &send;
    send.producer_id = 1;
    send.sequence_id = seq;
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    md.producer_name = "p";
    md.sequence_id = seq;
    md.publish_time = 1700000000000ull;
    struct iovec iov = {.iov_base = (void *)payload, .iov_len = strlen(payload)};
    cr_assert_eq(up_frame_put_payload(b, &cmd, &md, &iov, 1, crc), 0);
}

static const uint8_t SEND_EXAMPLE[] = {
    0x00, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00, 0x08, 0x08, 0x06, 0x32, 0x04, 0x08, 0x01,
    0x10, 0x00, 0x0e, 0x01, 0x5b, 0x4c, 0x69, 0xac, 0x00, 0x00, 0x00, 0x0c, 0x0a, 0x01,
    0x70, 0x10, 0x00, 0x18, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31, 0x68, 0x69};
#define SEND_CRC_AT 18   /* offset of the checksum in SEND_EXAMPLE */
#define SEND_MDSIZE_AT 22 /* offset of metadataSize */

/* Raw frame from pieces: [total][cs][cmd][rest]. */
static void put_raw(up_buf_t *b, const uint8_t *cmd, uint32_t cs, const uint8_t *rest,
                    size_t rl)
{
    uint8_t hdr[8];
    up_put_be32(hdr, (uint32_t)(4 + cs + rl));
    up_put_be32(hdr + 4, cs);
    cr_assert_eq(up_buf_append(b, hdr, 8), 0);
    cr_assert_eq(up_buf_append(b, cmd, cs), 0);
    cr_assert_eq(up_buf_append(b, rest, rl), 0);
}

/* BaseCommand{SEND{producer_id 1, sequence_id 0}} */
static const uint8_t SEND_CMD[] = {0x08, 0x06, 0x32, 0x04, 0x08, 0x01, 0x10, 0x00};
/* BaseCommand{MESSAGE{consumer_id 1, message_id{ledger 7, entry 9}}} */
static const uint8_t MESSAGE_CMD[] = {0x08, 0x09, 0x4a, 0x08, 0x08, 0x01, 0x12,
                                      0x04, 0x08, 0x07, 0x10, 0x09};

/* ---- decoding helpers ---------------------------------------------------- */

typedef struct {
    int type;
    size_t payload_len;
    char payload[32];
} seen_t;

/* Decode everything available into @p out; returns the count, or the error
 * that stopped it (as a negative number). */
static int drain(up_decoder_t *d, seen_t *out, int max, int *n)
{
    up_frame_t f;
    int rc;
    while ((rc = up_decoder_next(d, &f)) == 1) {
        cr_assert_lt(*n, max);
        out[*n].type = f.cmd->type;
        out[*n].payload_len = f.has_payload ? f.payload_len : 0;
        if (f.has_payload)
            memcpy(out[*n].payload, f.payload, f.payload_len < 32 ? f.payload_len : 32);
        cr_assert_eq(up_get_be32(f.raw), f.raw_len - 4);
        (*n)++;
    }
    return rc;
}

/* Decode @p len bytes in one feed; expect exactly one frame and rc. */
static int decode_one(const uint8_t *p, size_t len, up_frame_t *f, up_decoder_t *d)
{
    up_decoder_init(d, 0);
    cr_assert_eq(up_decoder_feed(d, p, len), 0);
    return up_decoder_next(d, f);
}

static int decode_err(const up_buf_t *b)
{
    up_decoder_t d;
    up_frame_t f;
    int rc = decode_one(b->data, b->len, &f, &d);
    if (rc < 0 && rc != UPULSAR_ERR__BAD_CHECKSUM) {
        /* fatal errors are sticky, even when good frames follow */
        up_buf_t more = UP_BUF_INIT;
        put_ping(&more);
        cr_assert_eq(up_decoder_feed(&d, more.data, more.len), 0);
        cr_assert_eq(up_decoder_next(&d, &f), rc);
        cr_assert_eq(up_decoder_next(&d, &f), rc);
        up_buf_free(&more);
    }
    up_decoder_free(&d);
    return rc;
}

/* ---- encoding ------------------------------------------------------------ */

Test(frame, ping_frame_is_byte_exact)
{
    up_buf_t b = UP_BUF_INIT;
    put_ping(&b);
    const uint8_t want[] = {0, 0, 0, 9, 0, 0, 0, 5, 0x08, 0x12, 0x92, 0x01, 0x00};
    cr_assert_eq(b.len, sizeof want);
    cr_assert_arr_eq(b.data, want, sizeof want);
    up_buf_free(&b);
}

Test(frame, pong_frame_is_byte_exact)
{
    up_buf_t b = UP_BUF_INIT;
    put_pong(&b);
    const uint8_t want[] = {0, 0, 0, 9, 0, 0, 0, 5, 0x08, 0x13, 0x9a, 0x01, 0x00};
    cr_assert_eq(b.len, sizeof want);
    cr_assert_arr_eq(b.data, want, sizeof want);
    up_buf_free(&b);
}

Test(frame, frames_append_to_existing_buffer_content)
{
    up_buf_t b = UP_BUF_INIT;
    cr_assert_eq(up_buf_append(&b, "xyz", 3), 0);
    put_ping(&b);
    cr_assert_eq(b.len, 3 + 13);
    cr_assert_eq(memcmp(b.data, "xyz", 3), 0);
    cr_assert_eq(up_get_be32(b.data + 3), 9u);
    up_buf_free(&b);
}

Test(frame, send_frame_matches_protocol_example)
{
    up_buf_t b = UP_BUF_INIT;
    put_send(&b, 0, "hi", true);
    cr_assert_eq(b.len, sizeof SEND_EXAMPLE);
    cr_assert_arr_eq(b.data, SEND_EXAMPLE, sizeof SEND_EXAMPLE);
    /* the checksum is CRC32C of metadataSize..end */
    cr_assert_eq(up_crc32c(0, SEND_EXAMPLE + SEND_MDSIZE_AT,
                           sizeof SEND_EXAMPLE - SEND_MDSIZE_AT),
                 up_get_be32(SEND_EXAMPLE + SEND_CRC_AT));

    /* decode it back, fed one byte at a time */
    up_decoder_t d;
    up_decoder_init(&d, 0);
    up_frame_t f;
    for (size_t i = 0; i < b.len; i++) {
        cr_assert_eq(up_decoder_next(&d, &f), 0);
        cr_assert_eq(up_decoder_feed(&d, b.data + i, 1), 0);
    }
    cr_assert_eq(up_decoder_next(&d, &f), 1);
    cr_assert_eq(f.cmd->type, UP_CMD(SEND));
    cr_assert_eq(f.cmd->send->producer_id, 1u);
    cr_assert(f.has_payload);
    cr_assert(f.has_crc);
    cr_assert_eq(f.crc, 0x5b4c69acu);
    cr_assert_eq(f.metadata_len, 12);
    cr_assert_arr_eq(f.metadata, SEND_EXAMPLE + 26, 12);
    cr_assert_eq(f.payload_len, 2);
    cr_assert_eq(memcmp(f.payload, "hi", 2), 0);
    cr_assert_eq(f.raw_len, sizeof SEND_EXAMPLE);
    cr_assert_arr_eq(f.raw, SEND_EXAMPLE, sizeof SEND_EXAMPLE);
    cr_assert_eq(up_decoder_next(&d, &f), 0);
    cr_assert_eq(up_decoder_pending(&d), 0);
    up_decoder_free(&d);
    up_buf_free(&b);
}

Test(frame, send_without_checksum_omits_magic_and_crc)
{
    up_buf_t b = UP_BUF_INIT;
    put_send(&b, 0, "hi", false);
    /* same as the example minus the 6 bytes magic + crc */
    cr_assert_eq(b.len, sizeof SEND_EXAMPLE - 6);
    cr_assert_eq(up_get_be32(b.data), 0x24u - 6);
    cr_assert_arr_eq(b.data + 4, SEND_EXAMPLE + 4, 12);
    cr_assert_arr_eq(b.data + 16, SEND_EXAMPLE + SEND_MDSIZE_AT,
                     sizeof SEND_EXAMPLE - SEND_MDSIZE_AT);
    up_decoder_t d;
    up_frame_t f;
    cr_assert_eq(decode_one(b.data, b.len, &f, &d), 1);
    cr_assert(f.has_payload);
    cr_assert_not(f.has_crc);
    cr_assert_eq(f.payload_len, 2);
    up_decoder_free(&d);
    up_buf_free(&b);
}

Test(frame, payload_iovecs_and_raw_metadata_match_single_buffer)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSend send = PULSAR__PROTO__COMMAND_SEND__INIT;
    cmd.type = UP_CMD(SEND);
    cmd.send = &send;
    send.producer_id = 3;
    send.sequence_id = 44;
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    /* a producer name long enough to take the heap path of the packer */
    char name[1000];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    md.producer_name = name;
    md.sequence_id = 44;
    md.publish_time = 5;
    struct iovec one = {.iov_base = "abcdefgh", .iov_len = 8};
    struct iovec three[] = {{.iov_base = "abc", .iov_len = 3},
                            {.iov_base = "", .iov_len = 0},
                            {.iov_base = "defgh", .iov_len = 5}};
    up_buf_t a = UP_BUF_INIT, b = UP_BUF_INIT, c = UP_BUF_INIT;
    cr_assert_eq(up_frame_put_payload(&a, &cmd, &md, &one, 1, true), 0);
    cr_assert_eq(up_frame_put_payload(&b, &cmd, &md, three, 3, true), 0);
    cr_assert_eq(a.len, b.len);
    cr_assert_arr_eq(a.data, b.data, a.len);
    size_t ml = protobuf_c_message_get_packed_size(&md.base);
    uint8_t *mb = malloc(ml);
    protobuf_c_message_pack(&md.base, mb);
    cr_assert_eq(up_frame_put_payload_raw(&c, &cmd, mb, ml, three, 3, true), 0);
    cr_assert_eq(c.len, a.len);
    cr_assert_arr_eq(c.data, a.data, a.len);

    up_decoder_t d;
    up_frame_t f;
    cr_assert_eq(decode_one(a.data, a.len, &f, &d), 1);
    cr_assert_eq(f.metadata_len, ml);
    cr_assert_arr_eq(f.metadata, mb, ml);
    cr_assert_eq(f.payload_len, 8);
    cr_assert_eq(memcmp(f.payload, "abcdefgh", 8), 0);
    up_decoder_free(&d);
    free(mb);
    up_buf_free(&a);
    up_buf_free(&b);
    up_buf_free(&c);
}

Test(frame, empty_payload_frame_round_trips)
{
    up_buf_t b = UP_BUF_INIT;
    put_send(&b, 9, "", true);
    up_decoder_t d;
    up_frame_t f;
    cr_assert_eq(decode_one(b.data, b.len, &f, &d), 1);
    cr_assert(f.has_payload && f.has_crc);
    cr_assert_eq(f.payload_len, 0);
    cr_assert_eq(f.metadata_len, 12);
    up_decoder_free(&d);
    up_buf_free(&b);
}

/* ---- stream handling ----------------------------------------------------- */

/* PING, SEND(crc), PONG, SEND_RECEIPT, SEND(no crc): 5 frames. */
static void build_stream(up_buf_t *b)
{
    put_ping(b);
    put_send(b, 1, "first", true);
    put_pong(b);
    put_receipt(b, 1);
    put_send(b, 2, "second payload", false);
}

static void check_stream(const seen_t *s, int n)
{
    cr_assert_eq(n, 5);
    cr_assert_eq(s[0].type, UP_CMD(PING));
    cr_assert_eq(s[1].type, UP_CMD(SEND));
    cr_assert_eq(s[1].payload_len, 5);
    cr_assert_eq(memcmp(s[1].payload, "first", 5), 0);
    cr_assert_eq(s[2].type, UP_CMD(PONG));
    cr_assert_eq(s[3].type, UP_CMD(SEND_RECEIPT));
    cr_assert_eq(s[4].type, UP_CMD(SEND));
    cr_assert_eq(s[4].payload_len, 14);
    cr_assert_eq(memcmp(s[4].payload, "second payload", 14), 0);
}

Test(decoder, several_frames_in_one_feed_come_out_in_order)
{
    up_buf_t b = UP_BUF_INIT;
    build_stream(&b);
    up_decoder_t d;
    up_decoder_init(&d, 0);
    cr_assert_eq(up_decoder_feed(&d, b.data, b.len), 0);
    seen_t s[8];
    int n = 0;
    cr_assert_eq(drain(&d, s, 8, &n), 0);
    check_stream(s, n);
    cr_assert_eq(up_decoder_pending(&d), 0);
    up_decoder_free(&d);
    up_buf_free(&b);
}

Test(decoder, every_two_way_and_three_way_split_gives_the_same_frames)
{
    up_buf_t b = UP_BUF_INIT;
    build_stream(&b);
    for (size_t i = 0; i <= b.len; i++) {
        for (size_t j = i; j <= b.len; j++) {
            up_decoder_t d;
            up_decoder_init(&d, 0);
            seen_t s[8];
            int n = 0;
            cr_assert_eq(up_decoder_feed(&d, b.data, i), 0);
            cr_assert_eq(drain(&d, s, 8, &n), 0);
            cr_assert_eq(up_decoder_feed(&d, b.data + i, j - i), 0);
            cr_assert_eq(drain(&d, s, 8, &n), 0);
            cr_assert_eq(up_decoder_feed(&d, b.data + j, b.len - j), 0);
            cr_assert_eq(drain(&d, s, 8, &n), 0, "split %zu/%zu", i, j);
            check_stream(s, n);
            cr_assert_eq(up_decoder_pending(&d), 0);
            up_decoder_free(&d);
        }
    }
    up_buf_free(&b);
}

Test(decoder, zero_copy_wbuf_commit_with_partial_reads)
{
    up_buf_t b = UP_BUF_INIT;
    for (int k = 0; k < 20; k++)
        build_stream(&b);
    /* "read()" at most 7, 1, 13, 64 ... bytes into the area the decoder lends,
     * sometimes committing 0, sometimes less than asked */
    static const size_t reads[] = {7, 1, 13, 64, 0, 3, 200, 5};
    up_decoder_t d;
    up_decoder_init(&d, 0);
    static seen_t s[100];
    int n = 0;
    size_t pos = 0;
    for (int r = 0; pos < b.len; r++) {
        size_t want = 16, avail = 0;
        uint8_t *w = up_decoder_wbuf(&d, want, &avail);
        cr_assert_not_null(w);
        cr_assert_geq(avail, want);
        size_t got = reads[r % 8];
        if (got > avail)
            got = avail;
        if (got > b.len - pos)
            got = b.len - pos;
        memcpy(w, b.data + pos, got);
        up_decoder_commit(&d, got);
        pos += got;
        cr_assert_eq(drain(&d, s, 100, &n), 0);
    }
    cr_assert_eq(n, 100);
    for (int k = 0; k < 20; k++)
        check_stream(s + 5 * k, 5);
    cr_assert_eq(up_decoder_pending(&d), 0);
    up_decoder_free(&d);
    up_buf_free(&b);
}

Test(decoder, frame_pointers_stay_valid_until_next_call)
{
    up_buf_t b = UP_BUF_INIT;
    put_send(&b, 1, "first", true);
    put_send(&b, 2, "second", true);
    up_decoder_t d;
    up_decoder_init(&d, 0);
    cr_assert_eq(up_decoder_feed(&d, b.data, b.len), 0);
    up_frame_t f;
    cr_assert_eq(up_decoder_next(&d, &f), 1);
    cr_assert_eq(f.cmd->send->sequence_id, 1u);
    cr_assert_eq(memcmp(f.payload, "first", 5), 0);
    cr_assert_eq(f.raw, d.buf.data);
    cr_assert_eq(up_decoder_pending(&d), b.len - f.raw_len);
    cr_assert_eq(up_decoder_next(&d, &f), 1);
    cr_assert_eq(f.cmd->send->sequence_id, 2u);
    cr_assert_eq(memcmp(f.payload, "second", 6), 0);
    up_decoder_free(&d);
    up_buf_free(&b);
}

/* A SEND whose totalSize is exactly @p total (payload of 'a'+i%26). */
static void put_send_total(up_buf_t *b, uint32_t total)
{
    up_buf_t probe = UP_BUF_INIT;
    put_send(&probe, 7, "", true);
    uint32_t base = up_get_be32(probe.data); /* totalSize with no payload */
    up_buf_free(&probe);
    cr_assert_geq(total, base);
    size_t plen = total - base;
    char *payload = malloc(plen + 1);
    for (size_t i = 0; i < plen; i++)
        payload[i] = (char)('a' + i % 26);
    payload[plen] = '\0';
    size_t at = b->len;
    put_send(b, 7, payload, true);
    cr_assert_eq(up_get_be32(b->data + at), total);
    free(payload);
}

Test(decoder, large_frames_across_many_reads_decode_intact)
{
    /* 1.5 MiB then the largest frame accepted by default, read 64 KiB at a
     * time: the decoder compacts and grows its buffer under the frames */
    const uint32_t max = UP_DEFAULT_MAX_FRAME + UP_FRAME_PADDING;
    up_buf_t b = UP_BUF_INIT;
    put_send_total(&b, 3u << 19);
    size_t first = b.len;
    put_send_total(&b, max);
    put_ping(&b);
    up_decoder_t d;
    up_decoder_init(&d, 0);
    size_t pos = 0;
    int frames = 0;
    while (pos < b.len) {
        size_t avail;
        uint8_t *w = up_decoder_wbuf(&d, 65536, &avail);
        cr_assert_not_null(w);
        size_t n = b.len - pos < 65536 ? b.len - pos : 65536;
        memcpy(w, b.data + pos, n);
        up_decoder_commit(&d, n);
        pos += n;
        up_frame_t f;
        int rc;
        while ((rc = up_decoder_next(&d, &f)) == 1) {
            const uint8_t *src = b.data + (frames == 0 ? 0 : first);
            if (frames < 2) {
                cr_assert_eq(f.cmd->type, UP_CMD(SEND));
                cr_assert_eq(f.raw_len, up_get_be32(src) + 4);
                cr_assert_eq(memcmp(f.raw, src, f.raw_len), 0, "frame %d", frames);
            } else {
                cr_assert_eq(f.cmd->type, UP_CMD(PING));
            }
            frames++;
        }
        cr_assert_eq(rc, 0);
    }
    cr_assert_eq(frames, 3);
    up_decoder_free(&d);

    /* one byte more than the limit is refused */
    b.len = 0;
    put_send_total(&b, max + 1);
    up_decoder_init(&d, 0);
    cr_assert_eq(up_decoder_feed(&d, b.data, b.len), 0);
    up_frame_t f;
    cr_assert_eq(up_decoder_next(&d, &f), UPULSAR_ERR__FRAME_TOO_LARGE);
    up_decoder_free(&d);
    up_buf_free(&b);
}

/* ---- malformed input ------------------------------------------------------ */

Test(decoder, total_size_over_max_is_frame_too_large_from_the_header_alone)
{
    up_decoder_t d;
    up_frame_t f;
    uint8_t hdr[4];
    /* default limit: 5 MiB + 10 KiB */
    up_put_be32(hdr, UP_DEFAULT_MAX_FRAME + UP_FRAME_PADDING + 1);
    cr_assert_eq(decode_one(hdr, 4, &f, &d), UPULSAR_ERR__FRAME_TOO_LARGE);
    cr_assert_eq(up_decoder_next(&d, &f), UPULSAR_ERR__FRAME_TOO_LARGE);
    up_decoder_free(&d);
    up_put_be32(hdr, UP_DEFAULT_MAX_FRAME + UP_FRAME_PADDING);
    cr_assert_eq(decode_one(hdr, 4, &f, &d), 0); /* at the limit: wait for it */
    up_decoder_free(&d);
    up_put_be32(hdr, 0xffffffffu);
    cr_assert_eq(decode_one(hdr, 4, &f, &d), UPULSAR_ERR__FRAME_TOO_LARGE);
    up_decoder_free(&d);

    /* a configured limit: PING's totalSize is 9 */
    up_buf_t b = UP_BUF_INIT;
    put_ping(&b);
    up_decoder_init(&d, 9);
    cr_assert_eq(up_decoder_feed(&d, b.data, b.len), 0);
    cr_assert_eq(up_decoder_next(&d, &f), 1);
    up_decoder_free(&d);
    up_decoder_init(&d, 8);
    cr_assert_eq(up_decoder_feed(&d, b.data, b.len), 0);
    cr_assert_eq(up_decoder_next(&d, &f), UPULSAR_ERR__FRAME_TOO_LARGE);
    up_decoder_free(&d);
    up_buf_free(&b);
}

Test(decoder, sizes_that_do_not_add_up_are_protocol_errors)
{
    up_buf_t b = UP_BUF_INIT;
    /* totalSize below 4 cannot even hold commandSize */
    for (uint32_t t = 0; t < 4; t++) {
        b.len = 0;
        uint8_t hdr[8] = {0};
        up_put_be32(hdr, t);
        cr_assert_eq(up_buf_append(&b, hdr, 4 + t), 0);
        cr_assert_eq(decode_err(&b), UPULSAR_ERR__PROTOCOL, "totalSize %u", t);
    }
    /* commandSize > totalSize - 4 */
    static const uint8_t ping_cmd[] = {0x08, 0x12, 0x92, 0x01, 0x00};
    b.len = 0;
    uint8_t hdr[8];
    up_put_be32(hdr, 9);
    up_put_be32(hdr + 4, 6);
    cr_assert_eq(up_buf_append(&b, hdr, 8), 0);
    cr_assert_eq(up_buf_append(&b, ping_cmd, 5), 0);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__PROTOCOL);
    b.len = 0;
    up_put_be32(hdr + 4, 0xffffffffu);
    cr_assert_eq(up_buf_append(&b, hdr, 8), 0);
    cr_assert_eq(up_buf_append(&b, ping_cmd, 5), 0);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__PROTOCOL);
    up_buf_free(&b);
}

Test(decoder, truncated_payload_sections_are_protocol_errors)
{
    up_buf_t b = UP_BUF_INIT;
    /* SEND with nothing after the command */
    put_raw(&b, SEND_CMD, sizeof SEND_CMD, NULL, 0);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__PROTOCOL, "no payload section");
    /* magic with less than the 4 CRC bytes */
    static const uint8_t magic_short[] = {0x0e, 0x01, 0x00, 0x00, 0x00};
    for (size_t n = 2; n <= sizeof magic_short; n++) {
        b.len = 0;
        put_raw(&b, SEND_CMD, sizeof SEND_CMD, magic_short, n);
        cr_assert_eq(decode_err(&b), UPULSAR_ERR__PROTOCOL, "magic + %zu", n - 2);
    }
    /* checksum section, then less than the 4 metadataSize bytes */
    static const uint8_t crc_then_short[] = {0x0e, 0x01, 1, 2, 3, 4, 0, 0, 0};
    for (size_t n = 6; n <= sizeof crc_then_short; n++) {
        b.len = 0;
        put_raw(&b, SEND_CMD, sizeof SEND_CMD, crc_then_short, n);
        cr_assert_eq(decode_err(&b), UPULSAR_ERR__PROTOCOL, "%zu metadataSize bytes", n - 6);
    }
    /* no checksum, 1..3 bytes */
    static const uint8_t three[] = {0, 0, 0};
    for (size_t n = 1; n <= 3; n++) {
        b.len = 0;
        put_raw(&b, SEND_CMD, sizeof SEND_CMD, three, n);
        cr_assert_eq(decode_err(&b), UPULSAR_ERR__PROTOCOL);
    }
    /* metadataSize larger than what is left (by one) */
    static const uint8_t md_over[] = {0, 0, 0, 3, 0x0a, 0x01};
    b.len = 0;
    put_raw(&b, SEND_CMD, sizeof SEND_CMD, md_over, sizeof md_over);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__PROTOCOL);
    static const uint8_t md_huge[] = {0xff, 0xff, 0xff, 0xff, 0x0a};
    b.len = 0;
    put_raw(&b, SEND_CMD, sizeof SEND_CMD, md_huge, sizeof md_huge);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__PROTOCOL);
    /* broker-entry-metadata section cut short or overlong */
    static const uint8_t bem_short[] = {0x0e, 0x02, 0, 0, 0};
    b.len = 0;
    put_raw(&b, MESSAGE_CMD, sizeof MESSAGE_CMD, bem_short, sizeof bem_short);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__PROTOCOL);
    static const uint8_t bem_over[] = {0x0e, 0x02, 0, 0, 0, 9, 0x08, 0x01};
    b.len = 0;
    put_raw(&b, MESSAGE_CMD, sizeof MESSAGE_CMD, bem_over, sizeof bem_over);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__PROTOCOL);
    /* broker-entry-metadata consuming everything: no metadataSize left */
    static const uint8_t bem_all[] = {0x0e, 0x02, 0, 0, 0, 2, 0x08, 0x01};
    b.len = 0;
    put_raw(&b, MESSAGE_CMD, sizeof MESSAGE_CMD, bem_all, sizeof bem_all);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__PROTOCOL);
    up_buf_free(&b);
}

Test(decoder, undecodable_command_is_decode_error)
{
    up_buf_t b = UP_BUF_INIT;
    /* a varint that never ends */
    static const uint8_t bad_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    put_raw(&b, bad_varint, sizeof bad_varint, NULL, 0);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__DECODE);
    /* an empty command lacks the required type */
    b.len = 0;
    put_raw(&b, NULL, 0, NULL, 0);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__DECODE);
    /* a length-delimited field running past commandSize */
    static const uint8_t overrun[] = {0x08, 0x12, 0x92, 0x01, 0x05, 0x00};
    b.len = 0;
    put_raw(&b, overrun, sizeof overrun, NULL, 0);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__DECODE);
    /* SEND body missing its required producer_id */
    static const uint8_t send_noid[] = {0x08, 0x06, 0x32, 0x02, 0x10, 0x00};
    static const uint8_t md[] = {0, 0, 0, 0};
    b.len = 0;
    put_raw(&b, send_noid, sizeof send_noid, md, sizeof md);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__DECODE);
    up_buf_free(&b);
}

Test(decoder, type_and_body_mismatch_is_decode_error)
{
    up_buf_t b = UP_BUF_INIT;
    /* type PING, body in the pong field */
    static const uint8_t ping_pong[] = {0x08, 0x12, 0x9a, 0x01, 0x00};
    put_raw(&b, ping_pong, sizeof ping_pong, NULL, 0);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__DECODE);
    /* type PING with no body at all */
    static const uint8_t ping_only[] = {0x08, 0x12};
    b.len = 0;
    put_raw(&b, ping_only, sizeof ping_only, NULL, 0);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__DECODE);
    /* type SEND with a SEND_RECEIPT body (field 7) */
    static const uint8_t send_receipt_body[] = {0x08, 0x06, 0x3a, 0x04, 0x08, 0x01, 0x10, 0x00};
    static const uint8_t md[] = {0, 0, 0, 0};
    b.len = 0;
    put_raw(&b, send_receipt_body, sizeof send_receipt_body, md, sizeof md);
    cr_assert_eq(decode_err(&b), UPULSAR_ERR__DECODE);
    up_buf_free(&b);
}

Test(decoder, bad_checksum_is_reported_and_stream_stays_usable)
{
    up_buf_t b = UP_BUF_INIT;
    cr_assert_eq(up_buf_append(&b, SEND_EXAMPLE, sizeof SEND_EXAMPLE), 0);
    b.data[sizeof SEND_EXAMPLE - 1] ^= 0x01; /* payload "hi" -> "hh" */
    cr_assert_eq(up_buf_append(&b, SEND_EXAMPLE, sizeof SEND_EXAMPLE), 0);
    b.data[sizeof SEND_EXAMPLE + SEND_CRC_AT] ^= 0x80; /* the checksum itself */
    put_ping(&b);
    cr_assert_eq(up_buf_append(&b, SEND_EXAMPLE, sizeof SEND_EXAMPLE), 0);

    for (size_t split = 0; split <= b.len; split += 7) {
        up_decoder_t d;
        up_decoder_init(&d, 0);
        up_frame_t f;
        int got[4], n = 0, rc;
        cr_assert_eq(up_decoder_feed(&d, b.data, split), 0);
        for (int pass = 0; pass < 2; pass++) {
            while ((rc = up_decoder_next(&d, &f)) != 0) {
                cr_assert(rc == 1 || rc == UPULSAR_ERR__BAD_CHECKSUM, "rc %d", rc);
                cr_assert_lt(n, 4);
                if (rc == UPULSAR_ERR__BAD_CHECKSUM) {
                    /* the frame is filled in for the caller to answer */
                    cr_assert_eq(f.cmd->type, UP_CMD(SEND));
                    cr_assert_eq(f.cmd->send->sequence_id, 0u);
                    cr_assert(f.has_crc && f.has_payload);
                    cr_assert_eq(f.payload_len, 2);
                }
                got[n++] = rc == 1 ? (int)f.cmd->type : rc;
            }
            if (pass == 0)
                cr_assert_eq(up_decoder_feed(&d, b.data + split, b.len - split), 0);
        }
        cr_assert_eq(n, 4);
        cr_assert_eq(got[0], UPULSAR_ERR__BAD_CHECKSUM);
        cr_assert_eq(got[1], UPULSAR_ERR__BAD_CHECKSUM);
        cr_assert_eq(got[2], UP_CMD(PING));
        cr_assert_eq(got[3], UP_CMD(SEND));
        up_decoder_free(&d);
    }
    up_buf_free(&b);
}

Test(decoder, broker_entry_metadata_section_is_skipped)
{
    /* MESSAGE [0e02][4][BrokerEntryMetadata{1:1, 2:2}] then either a checksum
     * section or none, then metadata and payload */
    static const uint8_t bem[] = {0x0e, 0x02, 0, 0, 0, 4, 0x08, 0x01, 0x10, 0x02};
    static const uint8_t md_payload[] = {0, 0, 0, 7, 0x0a, 0x01, 0x70, 0x10, 0x00, 0x18, 0x01,
                                         'x', 'y'};
    for (int with_crc = 0; with_crc < 2; with_crc++) {
        uint8_t rest[64];
        size_t rl = 0;
        memcpy(rest, bem, sizeof bem);
        rl += sizeof bem;
        if (with_crc) {
            rest[rl++] = 0x0e;
            rest[rl++] = 0x01;
            up_put_be32(rest + rl, up_crc32c(0, md_payload, sizeof md_payload));
            rl += 4;
        }
        memcpy(rest + rl, md_payload, sizeof md_payload);
        rl += sizeof md_payload;
        up_buf_t b = UP_BUF_INIT;
        put_raw(&b, MESSAGE_CMD, sizeof MESSAGE_CMD, rest, rl);
        put_ping(&b);
        up_decoder_t d;
        up_frame_t f;
        cr_assert_eq(decode_one(b.data, b.len, &f, &d), 1, "with_crc %d", with_crc);
        cr_assert_eq(f.cmd->type, UP_CMD(MESSAGE));
        cr_assert_eq(f.cmd->message->message_id->entryid, 9u);
        cr_assert_eq(f.has_crc, with_crc == 1);
        cr_assert(f.has_payload);
        cr_assert_eq(f.metadata_len, 7);
        cr_assert_arr_eq(f.metadata, md_payload + 4, 7);
        cr_assert_eq(f.payload_len, 2);
        cr_assert_eq(memcmp(f.payload, "xy", 2), 0);
        up_md_t *md = pulsar__proto__message_metadata__unpack(NULL, f.metadata_len, f.metadata);
        cr_assert_not_null(md);
        cr_assert_str_eq(md->producer_name, "p");
        pulsar__proto__message_metadata__free_unpacked(md, NULL);
        cr_assert_eq(up_decoder_next(&d, &f), 1);
        cr_assert_eq(f.cmd->type, UP_CMD(PING));
        up_decoder_free(&d);
        up_buf_free(&b);
    }
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

Test(decoder, garbage_never_yields_out_of_bounds_frames)
{
    /* random bytes, random small max frames, random chunking; every frame
     * that comes out lies inside the fed bytes and errors are sticky */
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = rnd() % 300;
        uint8_t *buf = malloc(len + 1);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rnd();
        /* make a plausible header more often than chance would */
        if (len >= 8 && iter % 2) {
            up_put_be32(buf, (uint32_t)(len - 4 - rnd() % 4));
            up_put_be32(buf + 4, rnd() % 16);
            buf[8] = 0x08;
        }
        up_decoder_t d;
        up_decoder_init(&d, iter % 3 ? 0 : 64);
        size_t pos = 0;
        int err = 0;
        while (pos < len && !err) {
            size_t n = 1 + rnd() % 40;
            if (n > len - pos)
                n = len - pos;
            cr_assert_eq(up_decoder_feed(&d, buf + pos, n), 0);
            pos += n;
            up_frame_t f;
            int rc;
            while ((rc = up_decoder_next(&d, &f)) != 0) {
                if (rc != 1 && rc != UPULSAR_ERR__BAD_CHECKSUM) {
                    cr_assert(rc == UPULSAR_ERR__PROTOCOL || rc == UPULSAR_ERR__DECODE ||
                                  rc == UPULSAR_ERR__FRAME_TOO_LARGE,
                              "rc %d", rc);
                    cr_assert_eq(up_decoder_next(&d, &f), rc);
                    err = rc;
                    break;
                }
                cr_assert(f.raw >= d.buf.data && f.raw + f.raw_len <= d.buf.data + d.buf.len);
                if (f.has_payload)
                    cr_assert(f.payload + f.payload_len == f.raw + f.raw_len);
            }
        }
        up_decoder_free(&d);
        free(buf);
    }
}

Test(frame, command_names_cover_producer_commands)
{
    cr_assert_str_eq(up_cmd_name(UP_CMD(SEND_RECEIPT)), "SEND_RECEIPT");
    cr_assert_str_eq(up_cmd_name(UP_CMD(PING)), "PING");
    cr_assert_str_eq(up_cmd_name(UP_CMD(TOPIC_MIGRATED)), "TOPIC_MIGRATED");
    cr_assert_str_eq(up_cmd_name(0), "UNKNOWN");
    cr_assert_str_eq(up_cmd_name(-5), "UNKNOWN");
    cr_assert_str_eq(up_cmd_name(1000), "UNKNOWN");
}
