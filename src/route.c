/* route.c -- Murmur3 (x86, 32-bit) and Java String.hashCode for routing. */
#include "route.h"

#include "err.h"
#include "record.h"

static inline uint32_t rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

static inline uint32_t mix_k1(uint32_t k1)
{
    k1 *= 0xcc9e2d51u;
    k1 = rotl32(k1, 15);
    k1 *= 0x1b873593u;
    return k1;
}

uint32_t up_murmur3_32(const void *key, size_t len, uint32_t seed)
{
    const uint8_t *p = key;
    uint32_t h = seed;
    size_t blocks = len / 4;
    for (size_t i = 0; i < blocks; i++, p += 4) {
        uint32_t k = (uint32_t)p[0] | ((uint32_t)p[1] << 8) |
                     ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
        h ^= mix_k1(k);
        h = rotl32(h, 13);
        h = h * 5u + 0xe6546b64u;
    }
    uint32_t k = 0;
    switch (len & 3) {
    case 3:
        k ^= (uint32_t)p[2] << 16;
        /* fall through */
    case 2:
        k ^= (uint32_t)p[1] << 8;
        /* fall through */
    case 1:
        k ^= p[0];
        h ^= mix_k1(k);
        break;
    default:
        break;
    }
    h ^= (uint32_t)len; /* the reference takes the length as a 32-bit int */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* Decode one code point at s[*i..len), advancing *i. Ill-formed input
 * yields U+FFFD and consumes the maximal subpart (Unicode §3.9 "best
 * practice", which is also what Java's decoder replaces). */
static uint32_t next_cp(const uint8_t *s, size_t len, size_t *i)
{
    uint8_t b0 = s[*i];
    if (b0 < 0x80) {
        (*i)++;
        return b0;
    }
    int need;
    uint32_t cp;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
        cp = b0 & 0x1Fu;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        cp = b0 & 0x0Fu;
        if (b0 == 0xE0)
            lo = 0xA0; /* no overlongs */
        else if (b0 == 0xED)
            hi = 0x9F; /* no UTF-16 surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        cp = b0 & 0x07u;
        if (b0 == 0xF0)
            lo = 0x90; /* no overlongs */
        else if (b0 == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        (*i)++; /* stray continuation byte, C0/C1, F5..FF */
        return 0xFFFD;
    }
    size_t j = *i + 1;
    for (int k = 0; k < need; k++, j++) {
        uint8_t b = j < len ? s[j] : 0;
        uint8_t l = k == 0 ? lo : 0x80, h = k == 0 ? hi : 0xBF;
        if (j >= len || b < l || b > h) {
            *i = j; /* the lead and the valid continuations so far */
            return 0xFFFD;
        }
        cp = (cp << 6) | (b & 0x3Fu);
    }
    *i = j;
    return cp;
}

int32_t up_hash_java_string(const char *utf8, size_t len)
{
    const uint8_t *s = (const uint8_t *)utf8;
    uint32_t h = 0; /* unsigned: Java int overflow wraps */
    size_t i = 0;
    while (i < len) {
        uint32_t cp = next_cp(s, len, &i);
        if (cp >= 0x10000) {
            cp -= 0x10000;
            h = 31u * h + (0xD800u + (cp >> 10));
            h = 31u * h + (0xDC00u + (cp & 0x3FFu));
        } else {
            h = 31u * h + cp;
        }
    }
    /* two's-complement reinterpretation without implementation-defined
     * conversion */
    return h <= INT32_MAX ? (int32_t)h : -(int32_t)(~h) - 1;
}

uint32_t up_route_key(up_hash_scheme_t scheme, const char *key, size_t len,
                      uint32_t partitions)
{
    if (partitions <= 1)
        return 0;
    uint32_t h;
    if (scheme == UP_HASH_MURMUR3_32)
        h = up_murmur3_32(key, len, 0);
    else
        h = (uint32_t)up_hash_java_string(key, len);
    return (h & 0x7FFFFFFFu) % partitions;
}

/* Hash state fed the base64 text piece by piece: every piece
 * up_rec_b64_put() hands over is a multiple of 4 bytes, so Murmur3 sees
 * whole blocks only. */
typedef struct {
    up_hash_scheme_t scheme;
    uint32_t h;
    size_t len;
} b64_hash_t;

static void b64_hash_put(void *ctx, const void *p, size_t n)
{
    b64_hash_t *st = ctx;
    const uint8_t *s = p;
    st->len += n;
    if (st->scheme == UP_HASH_MURMUR3_32) {
        for (size_t i = 0; i + 4 <= n; i += 4) {
            uint32_t k = (uint32_t)s[i] | ((uint32_t)s[i + 1] << 8) | ((uint32_t)s[i + 2] << 16) |
                         ((uint32_t)s[i + 3] << 24);
            st->h ^= mix_k1(k);
            st->h = rotl32(st->h, 13);
            st->h = st->h * 5u + 0xe6546b64u;
        }
    } else {
        for (size_t i = 0; i < n; i++) /* ASCII: one UTF-16 unit each */
            st->h = 31u * st->h + s[i];
    }
}

uint32_t up_route_key_b64(up_hash_scheme_t scheme, const void *bytes, size_t len,
                          uint32_t partitions)
{
    if (partitions <= 1)
        return 0;
    b64_hash_t st = {scheme, 0, 0};
    up_rec_b64_put(bytes, len, b64_hash_put, &st);
    uint32_t h = st.h;
    if (scheme == UP_HASH_MURMUR3_32) {
        h ^= (uint32_t)st.len;
        h ^= h >> 16;
        h *= 0x85ebca6bu;
        h ^= h >> 13;
        h *= 0xc2b2ae35u;
        h ^= h >> 16;
    }
    return (h & 0x7FFFFFFFu) % partitions;
}

upulsar_err_t upulsar_conf_set_router(upulsar_conf_t *conf, upulsar_router_cb_t router,
                                      void *opaque)
{
    if (!conf)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "conf is NULL");
    conf->router = router;
    conf->router_opaque = router ? opaque : NULL;
    return UPULSAR_OK;
}
