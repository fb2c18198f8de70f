/* future.h -- pooled per-message futures.
 *
 * A future is a slot in a pool owned by the client: a state word, the
 * result and a free-list link. Slots live in fixed segments that are only
 * freed with the pool, so a pointer stays valid for the client's lifetime.
 *
 * State word bits: DONE (result written), RELEASED (the user gave it back),
 * WAITERS (someone sleeps in futex wait). Whoever sets the second of
 * DONE/RELEASED returns the slot to the free list. The resolver writes the
 * result, then fetch_or(DONE, acq_rel) (R1); waiters load-acquire the state
 * (A1) before reading the result, and are woken by futex only when WAITERS
 * was set, so an unobserved resolution costs no syscall.
 *
 * The free list is a Treiber stack whose head packs a 32-bit ABA tag with a
 * 32-bit slot index (+1, 0 = empty). @internal
 */
#ifndef UP_FUTURE_H
#define UP_FUTURE_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "upulsar/upulsar.h"

#define UP_FUT_SEG_BITS 12
#define UP_FUT_SEG_SIZE (1u << UP_FUT_SEG_BITS)
#define UP_FUT_MAX_SEGS 4096

struct upulsar_future {
    _Atomic uint32_t state;
    _Atomic uint32_t next; /* free-list link: index + 1, 0 = end */
    uint32_t idx;
    int32_t err;
    upulsar_msg_id_t id;
    struct up_future_pool *pool;
};

typedef struct up_future_pool {
    _Atomic uint64_t head; /* (tag << 32) | (index + 1) */
    _Atomic(struct upulsar_future *) segs[UP_FUT_MAX_SEGS];
    _Atomic uint32_t nsegs;
    uint32_t max_segs;
    pthread_mutex_t grow_lock;
    _Atomic uint64_t in_use; /* statistics */
} up_future_pool_t;

/** Pool that grows by segments of 4096 futures up to @p max_futures. */
int up_future_pool_init(up_future_pool_t *p, uint64_t max_futures);
void up_future_pool_destroy(up_future_pool_t *p);

/** Take a fresh pending future, or NULL when the pool is at its maximum
 *  (or out of memory). @thread any. Allocates only when growing. */
struct upulsar_future *up_future_alloc(up_future_pool_t *p);

/** Resolve @p f exactly once. @thread loop/watchdog */
void up_future_resolve(struct upulsar_future *f, upulsar_err_t err,
                       const upulsar_msg_id_t *id);
#endif
