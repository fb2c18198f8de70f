/* buf.h -- growable byte buffer (off the per-message hot path). @internal */
#ifndef UP_BUF_H
#define UP_BUF_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct up_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} up_buf_t;

#define UP_BUF_INIT {NULL, 0, 0}

/** Ensure room for @p extra more bytes. Returns 0 or -1 (out of memory; the
 *  buffer is unchanged). */
int up_buf_reserve(up_buf_t *b, size_t extra);
/** Append @p n bytes. Returns 0 or -1. */
int up_buf_append(up_buf_t *b, const void *p, size_t n);
/** Drop the first @p n bytes (memmove of the rest). */
void up_buf_consume(up_buf_t *b, size_t n);
void up_buf_free(up_buf_t *b);

static inline void up_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t up_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint16_t up_get_be16(const uint8_t *p)
{
    return (uint16_t)(((unsigned)p[0] << 8) | p[1]);
}

/* Protobuf varint helpers used by the hand-encoded per-message path. */
static inline size_t up_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline size_t up_put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}
#endif
