/* fuzz_frame.c -- libFuzzer target for the frame decoder and everything a
 * receiver does with a payload frame (metadata unpack, decompression, batch
 * iteration).
 *
 * Input: [ctl][stream bytes...]
 *   ctl bits 0-1  how the stream reaches the decoder:
 *                 0 one feed, 1 one byte per feed, 2 pseudo-random chunks
 *                 through up_decoder_feed, 3 pseudo-random chunks through
 *                 up_decoder_wbuf/up_decoder_commit
 *   ctl bits 2-6  seed of the chunk-size generator
 *   ctl bit 7     small max frame (256 bytes) instead of the default
 * Seeds: tests/fuzz/seeds/fuzz_frame/, each a ctl byte followed by frames written by
 * the library's own encoder (PING, PONG+PING, the §1.3 SEND, batched SENDs
 * plain / LZ4 / ZSTD, a MESSAGE with a 0x0e02 section, a SEND_RECEIPT).
 *
 * Checked beyond "no crash, no sanitizer report": frames lie inside the
 * bytes fed, fatal errors are sticky, every decoded frame (unless it holds
 * unknown protobuf fields, see has_unknown) re-encodes to a
 * frame that decodes again to the same command type, metadata and payload.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "frame.h"
#include "upulsar/upulsar.h"
#include "fuzz_check.h"

#define UNCOMPRESSED_MAX (1u << 20)
#define BATCH_MAX_MSGS 100000

/* The receiver's work on one payload frame: unpack metadata, decompress
 * with a bounded size, iterate the batch records. */
static void consume_payload(const up_frame_t *f)
{
    up_md_t *md = pulsar__proto__message_metadata__unpack(NULL, f->metadata_len, f->metadata);
    if (!md)
        return;
    const uint8_t *data = f->payload;
    size_t len = f->payload_len;
    uint8_t *plain = NULL;
    int codec = md->has_compression ? (int)md->compression : UP_COMP_NONE;
    if (codec != UP_COMP_NONE) {
        size_t usize = md->uncompressed_size;
        if (usize > UNCOMPRESSED_MAX)
            goto out;
        plain = malloc(usize + 1);
        if (!plain)
            goto out;
        int rc = up_decompress(codec, data, len, plain, usize);
        CHECK(rc == 0 || rc == UPULSAR_ERR__COMPRESSION || rc == UPULSAR_ERR__NOT_SUPPORTED);
        if (rc)
            goto out;
        data = plain;
        len = usize;
    }
    if (md->has_num_messages_in_batch) {
        size_t off = 0;
        for (int n = 0; n < BATCH_MAX_MSGS; n++) {
            up_batch_msg_t m;
            size_t before = off;
            int rc = up_batch_next(data, len, &off, &m);
            if (rc != 1) {
                CHECK(rc == 0 || rc == UPULSAR_ERR__DECODE);
                CHECK(off == before);
                CHECK(rc == UPULSAR_ERR__DECODE || off >= len);
                break;
            }
            CHECK(off > before && off <= len);
            CHECK(m.payload >= data && m.payload + m.payload_len <= data + len);
            CHECK(m.payload + m.payload_len == data + off);
            pulsar__proto__single_message_metadata__free_unpacked(m.smm, NULL);
        }
    }
out:
    free(plain);
    pulsar__proto__message_metadata__free_unpacked(md, NULL);
}

/* Does @p m or any sub-message hold unknown fields? protobuf-c keeps them
 * verbatim but re-packs them canonically, and it accepts an overlong
 * encoding of field number 0 that it then refuses once packed canonically;
 * such commands are left out of the re-encode check. */
static bool has_unknown(const ProtobufCMessage *m)
{
    if (m->n_unknown_fields)
        return true;
    const ProtobufCMessageDescriptor *desc = m->descriptor;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &desc->fields[i];
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)m + fd->offset;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + fd->quantifier_offset);
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)base;
            for (size_t k = 0; k < n; k++)
                if (has_unknown(arr[k]))
                    return true;
        } else {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)base;
            if (sub && has_unknown(sub))
                return true;
        }
    }
    return false;
}

/* Re-encode @p f and decode the result: same type, metadata and payload. */
static void reencode(const up_frame_t *f)
{
    if (has_unknown(&f->cmd->base))
        return;
    up_buf_t b = UP_BUF_INIT;
    int rc;
    if (f->has_payload) {
        struct iovec iov = {.iov_base = (void *)f->payload, .iov_len = f->payload_len};
        rc = up_frame_put_payload_raw(&b, f->cmd, f->metadata, f->metadata_len, &iov, 1,
                                      f->has_crc);
    } else {
        rc = up_frame_put_cmd(&b, f->cmd);
    }
    CHECK(rc == 0);
    up_decoder_t d;
    up_decoder_init(&d, 0);
    CHECK(up_decoder_feed(&d, b.data, b.len) == 0);
    up_frame_t g;
    rc = up_decoder_next(&d, &g);
    CHECK(rc == 1);
    CHECK(g.cmd->type == f->cmd->type);
    CHECK(g.has_payload == f->has_payload);
    CHECK(g.has_crc == f->has_crc);
    CHECK(g.raw == d.buf.data && g.raw_len == b.len);
    if (f->has_payload) {
        CHECK(g.metadata_len == f->metadata_len && g.payload_len == f->payload_len);
        CHECK(memcmp(g.metadata, f->metadata, f->metadata_len) == 0);
        CHECK(g.payload_len == 0 || memcmp(g.payload, f->payload, f->payload_len) == 0);
    }
    CHECK(up_decoder_next(&d, &g) == 0);
    up_decoder_free(&d);
    up_buf_free(&b);
}

static void check_frame(const up_decoder_t *d, const up_frame_t *f)
{
    const uint8_t *lo = d->buf.data, *hi = d->buf.data + d->buf.len;
    CHECK(f->cmd != NULL);
    CHECK(f->raw >= lo && f->raw + f->raw_len <= hi);
    CHECK(f->raw_len >= 8 && up_get_be32(f->raw) == f->raw_len - 4);
    if (f->has_payload) {
        CHECK(f->metadata >= f->raw && f->metadata + f->metadata_len <= f->raw + f->raw_len);
        CHECK(f->payload == f->metadata + f->metadata_len);
        CHECK(f->payload + f->payload_len == f->raw + f->raw_len);
    }
    (void)up_cmd_name(f->cmd->type);
}

/* Take every frame the decoder has; returns 0 to go on, -1 once the stream
 * failed. */
static int drain(up_decoder_t *d)
{
    for (;;) {
        up_frame_t f;
        int rc = up_decoder_next(d, &f);
        if (rc == 0)
            return 0;
        if (rc == 1 || rc == UPULSAR_ERR__BAD_CHECKSUM) {
            check_frame(d, &f);
            if (f.has_payload)
                consume_payload(&f);
            reencode(&f);
            continue;
        }
        CHECK(rc == UPULSAR_ERR__FRAME_TOO_LARGE || rc == UPULSAR_ERR__PROTOCOL ||
              rc == UPULSAR_ERR__DECODE);
        CHECK(up_decoder_next(d, &f) == rc); /* sticky */
        return -1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctl = data[0];
    data++;
    size--;
    int mode = ctl & 3;
    uint32_t rng = 0x9e3779b9u * (uint32_t)(((ctl >> 2) & 31) + 1);

    up_decoder_t d;
    up_decoder_init(&d, (ctl & 0x80) ? 256 : 0);
    size_t pos = 0;
    while (pos < size) {
        size_t n;
        if (mode == 0) {
            n = size - pos;
        } else if (mode == 1) {
            n = 1;
        } else {
            rng = rng * 1664525u + 1013904223u;
            n = 1 + (rng >> 16) % 64;
            if (n > size - pos)
                n = size - pos;
        }
        if (mode == 3) {
            size_t avail = 0;
            uint8_t *w = up_decoder_wbuf(&d, n, &avail);
            CHECK(w != NULL && avail >= n);
            memcpy(w, data + pos, n);
            up_decoder_commit(&d, n);
        } else {
            CHECK(up_decoder_feed(&d, data + pos, n) == 0);
        }
        pos += n;
        if (drain(&d) < 0)
            break;
    }
    up_decoder_free(&d);
    return 0;
}
