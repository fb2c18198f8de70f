/* frame.c -- Pulsar frame encoding and the incremental decoder. */
#include "frame.h"
#include "fault.h"

#include <stdlib.h>

#include "crc32c.h"
#include "upulsar/upulsar.h"

/* ---- encoding ---------------------------------------------------------- */

int up_frame_put_cmd(up_buf_t *out, const up_cmd_t *cmd)
{
    size_t cs = protobuf_c_message_get_packed_size(&cmd->base);
    if (cs > UINT32_MAX - 8)
        return UPULSAR_ERR__INVALID_ARG;
    if (up_buf_reserve(out, 8 + cs))
        return UPULSAR_ERR__NOMEM;
    uint8_t *p = out->data + out->len;
    up_put_be32(p, (uint32_t)(4 + cs));
    up_put_be32(p + 4, (uint32_t)cs);
    protobuf_c_message_pack(&cmd->base, p + 8);
    out->len += 8 + cs;
    return 0;
}

int up_frame_put_payload_raw(up_buf_t *out, const up_cmd_t *cmd,
                             const uint8_t *md_bytes, size_t md_len,
                             const struct iovec *iov, int iovcnt, bool with_crc)
{
    size_t cs = protobuf_c_message_get_packed_size(&cmd->base);
    size_t plen = 0;
    for (int i = 0; i < iovcnt; i++)
        plen += iov[i].iov_len;
    size_t total = 4 + cs + (with_crc ? 6 : 0) + 4 + md_len + plen;
    if (total > UINT32_MAX - 4)
        return UPULSAR_ERR__FRAME_TOO_LARGE;
    if (up_buf_reserve(out, 4 + total))
        return UPULSAR_ERR__NOMEM;
    uint8_t *start = out->data + out->len;
    uint8_t *p = start;
    up_put_be32(p, (uint32_t)total);
    up_put_be32(p + 4, (uint32_t)cs);
    protobuf_c_message_pack(&cmd->base, p + 8);
    p += 8 + cs;
    uint8_t *crc_at = NULL;
    if (with_crc) {
        p[0] = 0x0e;
        p[1] = 0x01;
        crc_at = p + 2;
        p += 6;
    }
    uint8_t *covered = p;
    up_put_be32(p, (uint32_t)md_len);
    memcpy(p + 4, md_bytes, md_len);
    p += 4 + md_len;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len)
            memcpy(p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    if (crc_at)
        up_put_be32(crc_at, up_crc32c(0, covered, (size_t)(p - covered)));
    out->len += (size_t)(p - start);
    return 0;
}

int up_frame_put_payload(up_buf_t *out, const up_cmd_t *cmd, const up_md_t *md,
                         const struct iovec *iov, int iovcnt, bool with_crc)
{
    size_t ml = protobuf_c_message_get_packed_size(&md->base);
    uint8_t stackbuf[512];
    uint8_t *mb = ml <= sizeof stackbuf ? stackbuf : malloc(ml);
    if (!mb)
        return UPULSAR_ERR__NOMEM;
    protobuf_c_message_pack(&md->base, mb);
    int rc = up_frame_put_payload_raw(out, cmd, mb, ml, iov, iovcnt, with_crc);
    if (mb != stackbuf)
        free(mb);
    return rc;
}

/* ---- decoding ---------------------------------------------------------- */

void up_decoder_init(up_decoder_t *d, uint32_t max_frame)
{
    memset(d, 0, sizeof *d);
    d->max_frame = max_frame ? max_frame : UP_DEFAULT_MAX_FRAME + UP_FRAME_PADDING;
}

static void *arena_alloc(void *ad, size_t n)
{
    up_decoder_t *d = ad;
    size_t at = (d->arena_used + 15) & ~(size_t)15;
    if (at + n <= sizeof d->arena) {
        d->arena_used = at + n;
        return d->arena + at;
    }
    return malloc(n);
}

static void arena_free(void *ad, void *p)
{
    up_decoder_t *d = ad;
    if ((uint8_t *)p >= d->arena && (uint8_t *)p < d->arena + sizeof d->arena)
        return; /* released wholesale when the command is dropped */
    free(p);
}

static ProtobufCAllocator arena_of(up_decoder_t *d)
{
    ProtobufCAllocator a = {arena_alloc, arena_free, d};
    return a;
}

static void drop_cmd(up_decoder_t *d)
{
    if (d->cmd) {
        ProtobufCAllocator a = arena_of(d);
        pulsar__proto__base_command__free_unpacked(d->cmd, &a);
        d->cmd = NULL;
    }
    d->arena_used = 0;
}

_Atomic int up_fault_reply_copy_nomem;

up_cmd_t *up_decoder_steal(up_decoder_t *d)
{
    if (!d->cmd || up_fault_hit(&up_fault_reply_copy_nomem))
        return NULL;
    size_t n = protobuf_c_message_get_packed_size(&d->cmd->base);
    uint8_t stackbuf[1024];
    uint8_t *b = n <= sizeof stackbuf ? stackbuf : malloc(n);
    if (!b)
        return NULL;
    protobuf_c_message_pack(&d->cmd->base, b);
    up_cmd_t *copy = pulsar__proto__base_command__unpack(NULL, n, b);
    if (b != stackbuf)
        free(b);
    return copy;
}

void up_decoder_free(up_decoder_t *d)
{
    drop_cmd(d);
    up_buf_free(&d->buf);
    d->off = 0;
}

/* Move unread bytes to the front once the consumed prefix dominates. */
static void compact(up_decoder_t *d)
{
    if (d->off == 0)
        return;
    if (d->off == d->buf.len) {
        d->buf.len = d->off = 0;
    } else if (d->off >= d->buf.len / 2 || d->off > (1u << 20)) {
        memmove(d->buf.data, d->buf.data + d->off, d->buf.len - d->off);
        d->buf.len -= d->off;
        d->off = 0;
    }
}

uint8_t *up_decoder_wbuf(up_decoder_t *d, size_t want, size_t *avail)
{
    drop_cmd(d);
    compact(d);
    if (up_buf_reserve(&d->buf, want ? want : 1))
        return NULL;
    *avail = d->buf.cap - d->buf.len;
    return d->buf.data + d->buf.len;
}

void up_decoder_commit(up_decoder_t *d, size_t n)
{
    d->buf.len += n;
}

int up_decoder_feed(up_decoder_t *d, const void *data, size_t len)
{
    size_t avail;
    uint8_t *w = up_decoder_wbuf(d, len, &avail);
    if (!w)
        return UPULSAR_ERR__NOMEM;
    memcpy(w, data, len);
    up_decoder_commit(d, len);
    return 0;
}

/* The sub-message whose field number equals the type must be present. */
static bool type_matches_body(const up_cmd_t *cmd)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(
        &pulsar__proto__base_command__descriptor, (unsigned)cmd->type);
    if (!fd || fd->type != PROTOBUF_C_TYPE_MESSAGE)
        return true; /* a type we do not model: the caller decides */
    const void *body = *(void *const *)((const char *)cmd + fd->offset);
    return body != NULL;
}

static int fail(up_decoder_t *d, int err)
{
    d->failed = err;
    return err;
}

int up_decoder_next(up_decoder_t *d, up_frame_t *f)
{
    if (d->failed)
        return d->failed;
    drop_cmd(d);
    size_t avail = d->buf.len - d->off;
    if (avail < 4)
        return 0;
    const uint8_t *p = d->buf.data + d->off;
    uint32_t total = up_get_be32(p);
    if (total > d->max_frame)
        return fail(d, UPULSAR_ERR__FRAME_TOO_LARGE);
    if (total < 4)
        return fail(d, UPULSAR_ERR__PROTOCOL);
    if (avail - 4 < total)
        return 0;
    uint32_t cs = up_get_be32(p + 4);
    if (cs > total - 4)
        return fail(d, UPULSAR_ERR__PROTOCOL);
    ProtobufCAllocator a = arena_of(d);
    up_cmd_t *cmd = pulsar__proto__base_command__unpack(&a, cs, p + 8);
    if (!cmd)
        return fail(d, UPULSAR_ERR__DECODE);
    d->cmd = cmd;
    if (!type_matches_body(cmd))
        return fail(d, UPULSAR_ERR__DECODE);

    memset(f, 0, sizeof *f);
    f->cmd = cmd;
    f->raw = p;
    f->raw_len = 4 + (size_t)total;

    const uint8_t *q = p + 8 + cs;
    size_t r = total - 4 - cs;
    int rc = 1;
    bool payload_cmd = cmd->type == UP_CMD(SEND) || cmd->type == UP_CMD(MESSAGE);
    if (r == 0) {
        if (payload_cmd)
            return fail(d, UPULSAR_ERR__PROTOCOL);
    } else {
        if (r >= 2 && up_get_be16(q) == UP_MAGIC_BROKER_ENTRY_METADATA) {
            if (r < 6)
                return fail(d, UPULSAR_ERR__PROTOCOL);
            uint32_t bl = up_get_be32(q + 2);
            if (bl > r - 6)
                return fail(d, UPULSAR_ERR__PROTOCOL);
            q += 6 + bl;
            r -= 6 + bl;
        }
        if (r >= 2 && up_get_be16(q) == UP_MAGIC_CRC32C) {
            if (r < 6)
                return fail(d, UPULSAR_ERR__PROTOCOL);
            f->has_crc = true;
            f->crc = up_get_be32(q + 2);
            q += 6;
            r -= 6;
        }
        if (r < 4)
            return fail(d, UPULSAR_ERR__PROTOCOL);
        uint32_t ml = up_get_be32(q);
        if (ml > r - 4)
            return fail(d, UPULSAR_ERR__PROTOCOL);
        f->has_payload = true;
        f->metadata = q + 4;
        f->metadata_len = ml;
        f->payload = q + 4 + ml;
        f->payload_len = r - 4 - ml;
        if (f->has_crc && up_crc32c(0, q, r) != f->crc)
            rc = UPULSAR_ERR__BAD_CHECKSUM;
    }
    d->off += 4 + (size_t)total;
    return rc;
}

const char *up_cmd_name(int type)
{
    switch (type) {
#define N(t) case UP_CMD(t): return #t;
    N(CONNECT) N(CONNECTED) N(SUBSCRIBE) N(PRODUCER) N(SEND) N(SEND_RECEIPT)
    N(SEND_ERROR) N(MESSAGE) N(ACK) N(FLOW) N(UNSUBSCRIBE) N(SUCCESS) N(ERROR)
    N(CLOSE_PRODUCER) N(CLOSE_CONSUMER) N(PRODUCER_SUCCESS) N(PING) N(PONG)
    N(REDELIVER_UNACKNOWLEDGED_MESSAGES) N(PARTITIONED_METADATA)
    N(PARTITIONED_METADATA_RESPONSE) N(LOOKUP) N(LOOKUP_RESPONSE)
    N(REACHED_END_OF_TOPIC) N(AUTH_CHALLENGE) N(AUTH_RESPONSE) N(ACK_RESPONSE)
    N(TOPIC_MIGRATED)
#undef N
    default:
        return "UNKNOWN";
    }
}
