/* route.h -- key hashing for partition routing (protocol reference §6).
 * @internal */
#ifndef UP_ROUTE_H
#define UP_ROUTE_H
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

/**
 * MurmurHash3, x86 32-bit variant, over @p len bytes at @p key, unmasked.
 * Pulsar's Murmur3_32Hash is this with seed 0, masked with 0x7FFFFFFF.
 * Thread safety: any. Allocates: no.
 */
uint32_t up_murmur3_32(const void *key, size_t len, uint32_t seed);

/**
 * Java's String.hashCode() (h = 31*h + c over UTF-16 code units) of the
 * string whose UTF-8 encoding is @p utf8[0..len). Characters above U+FFFF
 * contribute their surrogate pair. Malformed UTF-8 (which no Java String
 * can produce) is handled deterministically: each maximal ill-formed
 * subpart becomes one U+FFFD, Unicode's recommended practice (overlongs,
 * encoded surrogates and values above U+10FFFF are ill-formed). Never
 * reads outside utf8[0..len).
 * Thread safety: any. Allocates: no.
 */
int32_t up_hash_java_string(const char *utf8, size_t len);

/**
 * Partition of a keyed message: (hash(key) & 0x7FFFFFFF) % @p partitions,
 * hash being the scheme's (Murmur3 with seed 0 over the UTF-8 bytes, or
 * up_hash_java_string()). Returns 0 when @p partitions is 0 or 1.
 * Thread safety: any. Allocates: no. HOT PATH.
 */
uint32_t up_route_key(up_hash_scheme_t scheme, const char *key, size_t len,
                      uint32_t partitions);
#endif
