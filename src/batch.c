/* batch.c -- batch records (hand-encoded SingleMessageMetadata) and
 * payload compression. */
#include "batch.h"

#include <lz4.h>
#ifdef UPULSAR_HAVE_ZLIB
#include <zlib.h>
#endif
#ifdef UPULSAR_HAVE_ZSTD
#include <zstd.h>
#endif

/* KeyValue field tags (the SingleMessageMetadata ones are in batch.h) */
#define TAG_KV_KEY 0x0a   /* KeyValue.key */
#define TAG_KV_VALUE 0x12 /* KeyValue.value */

size_t up_smm_size_any(const up_smm_t *m)
{
    size_t n = m->props_len;
    if (m->key)
        n += 1 + up_varint_size(m->key_len) + m->key_len;
    n += 1 + up_varint_size(m->payload_size);
    if (m->event_time)
        n += 1 + up_varint_size(m->event_time);
    if (m->okey)
        n += 1 + up_varint_size(m->okey_len) + m->okey_len;
    if (!m->no_seq)
        n += 1 + up_varint_size(m->sequence_id);
    if (__builtin_expect(m->key_b64 | m->null_value, 0))
        n += (m->key_b64 && m->key ? 2 : 0) + (m->null_value ? 2 : 0);
    return n;
}

size_t up_record_put_header_any(uint8_t *dst, const up_smm_t *m)
{
    uint8_t *p = dst + 4;
    if (m->props_len) {
        memcpy(p, m->props, m->props_len);
        p += m->props_len;
    }
    if (m->key) {
        *p++ = UP_SMM_TAG_KEY;
        p += up_put_varint(p, m->key_len);
        memcpy(p, m->key, m->key_len);
        p += m->key_len;
    }
    *p++ = UP_SMM_TAG_PSIZE;
    p += up_put_varint(p, m->payload_size);
    if (m->event_time) {
        *p++ = UP_SMM_TAG_EVTIME;
        p += up_put_varint(p, m->event_time);
    }
    if (m->okey) {
        *p++ = UP_SMM_TAG_OKEY;
        p += up_put_varint(p, m->okey_len);
        memcpy(p, m->okey, m->okey_len);
        p += m->okey_len;
    }
    if (!m->no_seq) {
        *p++ = UP_SMM_TAG_SEQ;
        p += up_put_varint(p, m->sequence_id);
    }
    if (__builtin_expect(m->key_b64 | m->null_value, 0)) {
        if (m->key_b64 && m->key) {
            *p++ = UP_SMM_TAG_KEYB64;
            *p++ = 1;
        }
        if (m->null_value) {
            *p++ = UP_SMM_TAG_NULLV;
            *p++ = 1;
        }
    }
    up_put_be32(dst, (uint32_t)(p - dst - 4));
    return (size_t)(p - dst);
}

/* One protobuf varint at p[*i, len): false when truncated or too long. */
static bool get_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *v)
{
    *v = 0;
    int shift = 0;
    do {
        if (*i >= len || shift > 63)
            return false;
        *v |= (uint64_t)(p[*i] & 0x7f) << shift;
        shift += 7;
    } while (p[(*i)++] & 0x80);
    return true;
}

int up_record_info(const uint8_t *buf, size_t len, size_t *off, up_rec_info_t *out)
{
    size_t at = *off;
    if (at >= len)
        return 0;
    if (len - at < 4)
        return UPULSAR_ERR__DECODE;
    uint32_t sl = up_get_be32(buf + at);
    if (sl > len - at - 4)
        return UPULSAR_ERR__DECODE;
    const uint8_t *p = buf + at + 4;
    memset(out, 0, sizeof *out);
    bool have_size = false;
    size_t i = 0;
    while (i < sl) {
        uint8_t tag = p[i++];
        uint64_t v;
        switch (tag & 7) {
        case 0:
            if (!get_varint(p, sl, &i, &v))
                return UPULSAR_ERR__DECODE;
            if (tag == UP_SMM_TAG_PSIZE) {
                out->payload_len = (uint32_t)v;
                have_size = v <= UINT32_MAX;
            } else if (tag == UP_SMM_TAG_SEQ) {
                out->seq = v;
                out->has_seq = true;
            } else if (tag == UP_SMM_TAG_KEYB64) {
                out->key_b64 = v != 0;
            } else if (tag == UP_SMM_TAG_NULLV) {
                out->null_value = v != 0;
            }
            break;
        case 2:
            if (!get_varint(p, sl, &i, &v) || v > sl - i)
                return UPULSAR_ERR__DECODE;
            if (tag == UP_SMM_TAG_KEY) {
                out->key = (const char *)p + i;
                out->key_len = (uint32_t)v;
            }
            i += (size_t)v;
            break;
        case 1:
            if (sl - i < 8)
                return UPULSAR_ERR__DECODE;
            i += 8;
            break;
        case 5:
            if (sl - i < 4)
                return UPULSAR_ERR__DECODE;
            i += 4;
            break;
        default:
            return UPULSAR_ERR__DECODE;
        }
    }
    if (!have_size || out->payload_len > len - at - 4 - sl)
        return UPULSAR_ERR__DECODE;
    out->payload = p + sl;
    *off = at + 4 + sl + out->payload_len;
    return 1;
}

size_t up_records_number_extra(uint32_t n, uint64_t first)
{
    size_t extra = 0;
    for (uint32_t i = 0; i < n; i++)
        extra += 1 + up_varint_size(first + i);
    return extra;
}

/* The payload_size of the SingleMessageMetadata @p p[0, @p len), which has
 * no sequence_id yet; false if it does not parse or has one. */
static bool smm_payload_size(const uint8_t *p, size_t len, uint64_t *psize)
{
    bool have = false;
    size_t i = 0;
    while (i < len) {
        uint8_t tag = p[i++];
        uint64_t v = 0;
        int shift = 0;
        do { /* a varint: the value of a wire-type-0 field, else a length */
            if (i >= len || shift > 63)
                return false;
            v |= (uint64_t)(p[i] & 0x7f) << shift;
            shift += 7;
        } while (p[i++] & 0x80);
        if ((tag & 7) == 2) {
            if (v > len - i)
                return false;
            i += (size_t)v;
        } else if ((tag & 7) != 0 || tag == UP_SMM_TAG_SEQ) {
            return false;
        } else if (tag == UP_SMM_TAG_PSIZE) {
            *psize = v;
            have = true;
        }
    }
    return have;
}

size_t up_records_number(uint8_t *buf, size_t len, uint32_t n, uint64_t first, size_t *offs)
{
    /* find every record first: nothing moves unless all of them parse */
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (len - off < 4)
            return 0;
        uint32_t sl = up_get_be32(buf + off);
        uint64_t ps;
        if (sl > len - off - 4 || !smm_payload_size(buf + off + 4, sl, &ps) ||
            ps > len - off - 4 - sl)
            return 0;
        offs[i] = off;
        off += 4 + sl + (size_t)ps;
    }
    if (off != len)
        return 0;
    /* then move them up from the last, each with its id appended to its
     * metadata (field order does not matter in protobuf) */
    size_t nlen = len + up_records_number_extra(n, first), end = len, dst = nlen;
    for (uint32_t i = n; i-- > 0;) {
        size_t at = offs[i];
        uint32_t sl = up_get_be32(buf + at);
        size_t body = end - at - 4 - sl; /* the payload */
        uint64_t seq = first + i;
        size_t add = 1 + up_varint_size(seq);
        dst -= body;
        memmove(buf + dst, buf + at + 4 + sl, body);
        uint8_t tagged[11];
        tagged[0] = UP_SMM_TAG_SEQ;
        up_put_varint(tagged + 1, seq);
        dst -= add;
        memcpy(buf + dst, tagged, add);
        dst -= sl;
        memmove(buf + dst, buf + at + 4, sl);
        dst -= 4;
        up_put_be32(buf + dst, (uint32_t)(sl + add));
        end = at;
    }
    return nlen;
}

static size_t kv_body_size(size_t kl, size_t vl)
{
    return 1 + up_varint_size(kl) + kl + 1 + up_varint_size(vl) + vl;
}

size_t up_props_size(const upulsar_property_t *props, size_t n)
{
    return up_props_size_capped(props, n, SIZE_MAX / 4);
}

size_t up_props_size_capped(const upulsar_property_t *props, size_t n, size_t cap)
{
    /* each term is at most 2 * cap + 24 (key and value up to cap each, 3
     * tags, 3 varints) and the sum, at most cap before a term is added, is
     * checked against cap after every term: no overflow for any cap up to
     * SIZE_MAX / 4 */
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t kl = strnlen(props[i].key, cap + 1), vl = strnlen(props[i].value, cap + 1);
        if (kl > cap || vl > cap)
            return SIZE_MAX;
        size_t b = kv_body_size(kl, vl);
        total += 1 + up_varint_size(b) + b;
        if (total > cap)
            return SIZE_MAX;
    }
    return total;
}

size_t up_props_encode_to(const upulsar_property_t *props, size_t n,
                          void (*put)(void *ctx, const void *p, size_t len), void *ctx)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(props[i].key), vl = strlen(props[i].value);
        uint8_t pre[1 + 10 + 1 + 10], mid[1 + 10];
        size_t np = 0, nm = 0;
        pre[np++] = UP_SMM_TAG_PROPS;
        np += up_put_varint(pre + np, kv_body_size(kl, vl));
        pre[np++] = TAG_KV_KEY;
        np += up_put_varint(pre + np, kl);
        mid[nm++] = TAG_KV_VALUE;
        nm += up_put_varint(mid + nm, vl);
        put(ctx, pre, np);
        put(ctx, props[i].key, kl);
        put(ctx, mid, nm);
        put(ctx, props[i].value, vl);
        total += np + kl + nm + vl;
    }
    return total;
}

size_t up_props_encode(uint8_t *dst, const upulsar_property_t *props, size_t n)
{
    uint8_t *p = dst;
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(props[i].key), vl = strlen(props[i].value);
        *p++ = UP_SMM_TAG_PROPS;
        p += up_put_varint(p, kv_body_size(kl, vl));
        *p++ = TAG_KV_KEY;
        p += up_put_varint(p, kl);
        memcpy(p, props[i].key, kl);
        p += kl;
        *p++ = TAG_KV_VALUE;
        p += up_put_varint(p, vl);
        memcpy(p, props[i].value, vl);
        p += vl;
    }
    return (size_t)(p - dst);
}

void up_props_retag(uint8_t *p, size_t n, uint8_t tag)
{
    size_t o = 0;
    while (o < n) {
        p[o++] = tag;
        uint64_t l = 0;
        int shift = 0;
        while (o < n && shift < 64) {
            uint8_t c = p[o++];
            l |= (uint64_t)(c & 0x7f) << shift;
            shift += 7;
            if (!(c & 0x80))
                break;
        }
        if (l > n - o)
            return; /* not ours: stop at the end of what is well formed */
        o += (size_t)l;
    }
}

int up_batch_next(const uint8_t *buf, size_t len, size_t *off, up_batch_msg_t *out)
{
    size_t o = *off;
    if (o >= len)
        return 0;
    if (len - o < 4)
        return UPULSAR_ERR__DECODE;
    uint32_t sl = up_get_be32(buf + o);
    if (sl > len - o - 4)
        return UPULSAR_ERR__DECODE;
    Pulsar__Proto__SingleMessageMetadata *smm =
        pulsar__proto__single_message_metadata__unpack(NULL, sl, buf + o + 4);
    if (!smm)
        return UPULSAR_ERR__DECODE;
    size_t rest = len - o - 4 - sl;
    if (smm->payload_size < 0 || (size_t)smm->payload_size > rest) {
        pulsar__proto__single_message_metadata__free_unpacked(smm, NULL);
        return UPULSAR_ERR__DECODE;
    }
    out->smm = smm;
    out->payload = buf + o + 4 + sl;
    out->payload_len = (uint32_t)smm->payload_size;
    *off = o + 4 + sl + (size_t)smm->payload_size;
    return 1;
}

size_t up_compress_bound(int codec, size_t n)
{
    switch (codec) {
    case UP_COMP_LZ4:
        return n > (size_t)LZ4_MAX_INPUT_SIZE ? 0 : (size_t)LZ4_compressBound((int)n);
#ifdef UPULSAR_HAVE_ZSTD
    case UP_COMP_ZSTD:
        return ZSTD_compressBound(n);
#endif
#ifdef UPULSAR_HAVE_ZLIB
    case UP_COMP_ZLIB:
        return n > (size_t)UINT32_MAX / 2 ? 0 : (size_t)compressBound((uLong)n);
#endif
    case UP_COMP_NONE:
        return n;
    default:
        return 0;
    }
}

long up_compress(int codec, const uint8_t *src, size_t n, uint8_t *dst, size_t dst_cap)
{
    switch (codec) {
    case UP_COMP_NONE:
        if (dst_cap < n)
            return UPULSAR_ERR__INVALID_ARG;
        memcpy(dst, src, n);
        return (long)n;
    case UP_COMP_LZ4: {
        if (n > (size_t)LZ4_MAX_INPUT_SIZE || dst_cap > INT32_MAX)
            return UPULSAR_ERR__INVALID_ARG;
        int r = LZ4_compress_default((const char *)src, (char *)dst, (int)n, (int)dst_cap);
        return r > 0 || n == 0 ? (long)r : UPULSAR_ERR__COMPRESSION;
    }
#ifdef UPULSAR_HAVE_ZSTD
    case UP_COMP_ZSTD: {
        size_t r = ZSTD_compress(dst, dst_cap, src, n, 3);
        return ZSTD_isError(r) ? UPULSAR_ERR__COMPRESSION : (long)r;
    }
#endif
#ifdef UPULSAR_HAVE_ZLIB
    case UP_COMP_ZLIB: {
        /* a complete zlib stream (header, deflate, Adler-32), as Java's
         * Inflater and every Pulsar client read it */
        uLongf out = (uLongf)dst_cap;
        if (n > (size_t)UINT32_MAX / 2)
            return UPULSAR_ERR__INVALID_ARG;
        int r = compress2(dst, &out, src, (uLong)n, Z_DEFAULT_COMPRESSION);
        return r == Z_OK ? (long)out : UPULSAR_ERR__COMPRESSION;
    }
#endif
    default:
        return UPULSAR_ERR__NOT_SUPPORTED;
    }
}

int up_decompress(int codec, const uint8_t *src, size_t n, uint8_t *dst,
                  size_t uncompressed_size)
{
    switch (codec) {
    case UP_COMP_NONE:
        if (n != uncompressed_size)
            return UPULSAR_ERR__COMPRESSION;
        memcpy(dst, src, n);
        return 0;
    case UP_COMP_LZ4: {
        if (n > INT32_MAX || uncompressed_size > INT32_MAX)
            return UPULSAR_ERR__COMPRESSION;
        int r = LZ4_decompress_safe((const char *)src, (char *)dst, (int)n,
                                    (int)uncompressed_size);
        return r >= 0 && (size_t)r == uncompressed_size ? 0 : UPULSAR_ERR__COMPRESSION;
    }
#ifdef UPULSAR_HAVE_ZSTD
    case UP_COMP_ZSTD: {
        size_t r = ZSTD_decompress(dst, uncompressed_size, src, n);
        return !ZSTD_isError(r) && r == uncompressed_size ? 0 : UPULSAR_ERR__COMPRESSION;
    }
#endif
#ifdef UPULSAR_HAVE_ZLIB
    case UP_COMP_ZLIB: {
        /* The Java client ends its zlib output with a SYNC_FLUSH, not
         * Z_STREAM_END: accept a stream that stops there, provided all of
         * the input is used and it yields exactly uncompressed_size bytes. */
        if (n > UINT32_MAX || uncompressed_size > UINT32_MAX)
            return UPULSAR_ERR__COMPRESSION;
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit(&zs) != Z_OK)
            return UPULSAR_ERR__NOMEM;
        zs.next_in = (Bytef *)(uintptr_t)src;
        zs.avail_in = (uInt)n;
        zs.next_out = dst;
        zs.avail_out = (uInt)uncompressed_size;
        int r = inflate(&zs, Z_SYNC_FLUSH);
        bool ok = (r == Z_STREAM_END || ((r == Z_OK || r == Z_BUF_ERROR) && zs.avail_in == 0)) &&
                  zs.total_out == uncompressed_size;
        if (ok && r != Z_STREAM_END && zs.avail_out == 0) {
            /* all output produced: anything more in the stream is an error */
            uint8_t extra;
            zs.next_out = &extra;
            zs.avail_out = 1;
            int r2 = inflate(&zs, Z_SYNC_FLUSH);
            ok = (r2 == Z_OK || r2 == Z_BUF_ERROR || r2 == Z_STREAM_END) && zs.avail_out == 1;
        }
        inflateEnd(&zs);
        return ok ? 0 : UPULSAR_ERR__COMPRESSION;
    }
#endif
    default:
        return UPULSAR_ERR__NOT_SUPPORTED;
    }
}
