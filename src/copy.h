/* copy.h -- copies of a few bytes without a library call.
 *
 * A partition key is a few bytes: memcpy() of a length known only at run
 * time is a call into the C library, which costs more than such a copy.
 * Used for the pieces of a record the general writer puts into the ring
 * (up_rec_put(): keys, extension, meta, properties, payload when it does
 * not wrap) and the keys the drain's fast path puts into a batch.
 * up_copy_short() copies up to 32 bytes with two fixed-size moves that may
 * overlap in the middle (the compiler makes each a load and a store), and
 * calls memcpy() beyond that. Source and destination must not overlap.
 * @internal
 */
#ifndef UP_COPY_H
#define UP_COPY_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline void up_copy_short(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (n > 32) {
        memcpy(d, s, n);
    } else if (n >= 16) {
        memcpy(d, s, 16);
        memcpy(d + n - 16, s + n - 16, 16);
    } else if (n >= 8) {
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else {
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
    }
}
#endif
