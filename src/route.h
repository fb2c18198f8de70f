/* route.h -- key hashing for partition routing (protocol reference §6).
 * @internal */
#ifndef UP_ROUTE_H
#define UP_ROUTE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

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

/**
 * up_route_key() of the base64 text of the binary key @p bytes[0..@p len)
 * (what the wire carries with partition_key_b64_encoded, and what the Java
 * client's routers hash for a keyBytes() message: its key string), without
 * writing the text anywhere. Thread safety: any. Allocates: no. HOT PATH.
 */
uint32_t up_route_key_b64(up_hash_scheme_t scheme, const void *bytes, size_t len,
                          uint32_t partitions);

/** Length of the base64 text of @p n bytes (with padding). */
static inline size_t up_b64_len(size_t n) { return (n + 2) / 3 * 4; }

/** Round-robin state of one calling thread for one handle. */
typedef struct {
    uint32_t cursor;   /**< current slot, in [0, slots) */
    uint32_t count;    /**< messages routed to it since the cursor last moved */
    uint64_t bytes;    /**< their payload bytes */
    uint64_t rbytes;   /**< what their records take in the ring (up_rr_route) */
    uint64_t moved_us; /**< up_coarse_us() when the cursor last moved */
} up_rr_t;

/** Monotonic microseconds from the coarse clock: a vDSO read of the time
 *  of the last timer tick (resolution clock_getres(CLOCK_MONOTONIC_COARSE),
 *  typically 1 to 10 ms), no system call, a few nanoseconds. */
static inline uint64_t up_coarse_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/** Round robin reads the clock for each of the first UP_RR_CLOCK_FIRST
 *  messages after a move, then for every UP_RR_CLOCK_EVERY-th (a power of
 *  two). */
#define UP_RR_CLOCK_FIRST 8u
#define UP_RR_CLOCK_EVERY 32u
/** What round robin counts for a message's record in the ring besides its
 *  payload: its header cell and half a cell of rounding (record.h). */
#define UP_RR_REC_BYTES 48u

/**
 * Route one keyless message of @p len payload bytes round robin over
 * @p slots (> 0) slots, with the batching keys of @p cf, as the official
 * clients' RoundRobinMessageRouter: without batching the cursor moves with
 * every message; with batching it stays while the messages routed there
 * since it last moved fill one batch, and moves when this message would
 * not fit: when batch.max.messages messages are already there, when their
 * bytes plus @p len would reach batch.max.bytes (so a message of
 * batch.max.bytes or more always moves it), or when batch.max.delay.ms has
 * passed since it last moved (the batch has been sent by then, so a slow
 * sender moves with every message), and also before the run's records
 * would pass half of the producer's ring (cf->ring_bytes / 2, each message
 * counted as its payload plus UP_RR_REC_BYTES, a payload over a quarter of
 * the ring, kept out of it, as UP_RR_REC_BYTES only; none when ring_bytes
 * is 0):
 * a ring smaller than a batch (many producers share the budget, see
 * up_rp_ring_bytes) then takes a run without its senders waiting for the
 * loop to drain it. The message that moves the cursor is
 * the first of the new slot. Returns the slot.
 * The delay is measured with up_coarse_us(), read with each of the first
 * UP_RR_CLOCK_FIRST messages after a move and then with every
 * UP_RR_CLOCK_EVERY-th (a fast sender, the common case, reads it about
 * batch.max.messages / UP_RR_CLOCK_EVERY times per batch instead of once
 * per message), so a sender that slows down after a burst of more than
 * UP_RR_CLOCK_FIRST messages may put up to UP_RR_CLOCK_EVERY - 1 more on
 * the slot before the delay is seen; no clock read without batching or
 * with batch.max.delay.ms 0.
 * Thread safety: @p st belongs to the calling thread. Allocates: no.
 * HOT PATH.
 */
/* What the round robin reads of a producer's configuration (per message
 * in up_rr_route(), once for a run of messages in up_rr_stay_lim()). */
typedef struct up_rr_limits {
    uint64_t max_bytes; /* batch.max.bytes */
    uint64_t run;       /* the bytes of records a slot's run may take in the
                           ring: half of it */
    uint32_t max_msgs;  /* batch.max.messages */
    bool timed;         /* batching on with a delay: the cursor stays */
} up_rr_limits_t;

static inline up_rr_limits_t up_rr_limits(const struct upulsar_conf *cf)
{
    /* the run's records in the ring: payloads plus about a header cell and
     * a cell's rounding each; a payload over a quarter of the ring is kept
     * out of it (send.c), its record only counts */
    return (up_rr_limits_t){
        .max_bytes = (uint64_t)cf->batch_max_bytes,
        .run = cf->ring_bytes > 0 ? (uint64_t)cf->ring_bytes / 2 : UINT64_MAX,
        .max_msgs = (uint32_t)cf->batch_max_messages,
        .timed = cf->batching_enabled && cf->batch_max_delay_us > 0};
}

/* up_rr_route()'s rule without the clock (batching on, a delay): whether
 * a message of @p len bytes moves the cursor by count or size (limits
 * @p l); *@p rec is what its record counts in the ring. */
static inline bool up_rr_full_lim(const up_rr_t *st, const up_rr_limits_t *l, size_t len,
                                  uint64_t *rec)
{
    *rec = ((uint64_t)len > l->run / 2 ? 0 : (uint64_t)len) + UP_RR_REC_BYTES;
    return st->count >= l->max_msgs || (uint64_t)len >= l->max_bytes ||
           st->bytes >= l->max_bytes - (uint64_t)len || st->rbytes + *rec > l->run;
}

static inline uint32_t up_rr_route(up_rr_t *st, const struct upulsar_conf *cf, size_t len,
                                   uint32_t slots)
{
    bool move;
    uint64_t now = 0, rec = 0;
    up_rr_limits_t l = up_rr_limits(cf);
    if (!l.timed) {
        move = true; /* every batch holds one message */
    } else {
        move = up_rr_full_lim(st, &l, len, &rec);
        if (move) {
            now = up_coarse_us();
        } else if (st->count < UP_RR_CLOCK_FIRST || st->count % UP_RR_CLOCK_EVERY == 0) {
            now = up_coarse_us();
            move = now - st->moved_us >= (uint64_t)cf->batch_max_delay_us;
        }
    }
    if (move) {
        st->cursor = st->cursor + 1 < slots ? st->cursor + 1 : 0;
        st->count = 1;
        st->bytes = len;
        st->rbytes = rec;
        st->moved_us = now;
    } else {
        st->count++;
        st->bytes += len;
        st->rbytes += rec;
        if (st->cursor >= slots) /* fewer slots than when it was set */
            st->cursor %= slots;
    }
    return st->cursor;
}

/**
 * up_rr_route() of a message of @p len bytes when it keeps the cursor
 * where it is without reading the clock: counts the message as
 * up_rr_route() does and returns true. False, with @p st unchanged, when
 * up_rr_route() would move the cursor or read the clock (the caller then
 * routes the message with up_rr_route()). For a caller that routes a run
 * of messages to the slot it already holds (upulsar_send_many()), with
 * the limits @p l of the producer's configuration taken once for the run
 * (up_rr_limits()).
 * Thread safety: @p st belongs to the calling thread. Allocates: no.
 */
static inline bool up_rr_stay_lim(up_rr_t *st, const up_rr_limits_t *l, size_t len)
{
    uint64_t rec;
    if (!l->timed || up_rr_full_lim(st, l, len, &rec) || st->count < UP_RR_CLOCK_FIRST ||
        st->count % UP_RR_CLOCK_EVERY == 0)
        return false;
    st->count++;
    st->bytes += len;
    st->rbytes += rec;
    return true;
}

#endif
