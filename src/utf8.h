/* utf8.h -- strict UTF-8 validation of names the broker reads as protobuf
 * strings (topics, producer names). */
#ifndef UPULSAR_UTF8_H
#define UPULSAR_UTF8_H
#include <stdbool.h>
#include <stddef.h>

/** Whether @p s[0..n) is well-formed UTF-8 (RFC 3629): no overlong forms,
 *  no surrogates (U+D800..U+DFFF), nothing past U+10FFFF, no cut
 *  sequence. @thread any */
static inline bool up_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* past U+10FFFF */
        } else {
            return false; /* a continuation byte, 0xc0/0xc1, 0xf5.. */
        }
        if ((size_t)(end - p) < len || p[1] < lo || p[1] > hi)
            return false;
        for (size_t i = 2; i < len; i++)
            if ((p[i] & 0xc0) != 0x80)
                return false;
        p += len;
    }
    return true;
}

#endif
