/* ring.h -- bounded lock-free MPSC ring of variable-length records.
 *
 * Layout: `cap` cells of UP_RING_CELL bytes, plus one 64-bit commit word per
 * cell. Positions are free-running 64-bit cell counters (they never wrap in
 * practice: 2^64 cells); the array index is pos & mask.
 *
 * Producers (any thread):
 *   reserve: CAS `head` from h to h+n once  h + n - tail <= cap.
 *   write the record into cells [h, h+n) (it may wrap around the array end;
 *   up_ring_write() copies in two pieces), then
 *   commit:  store-release commit[h & mask] = h + 1.          (R1)
 * Consumer (the io loop thread, exactly one):
 *   peek:    load-acquire commit[t & mask] == t + 1 ?          (A1, pairs R1)
 *            A stale word from an older lap holds a smaller value, so a
 *            record is never seen before it is committed.
 *   read the record, then release: store-release tail = t'.   (R2)
 * Producers load-acquire `tail` before reserving (A2, pairs R2), so they
 * never overwrite cells the consumer is still reading.
 *
 * Records are committed out of order but consumed in reservation order; a
 * producer preempted between reserve and commit delays the consumer (not
 * other producers). head and tail live on separate cache lines.
 * @internal
 */
#ifndef UP_RING_H
#define UP_RING_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UP_RING_CELL 32u

typedef struct up_ring {
    _Alignas(64) _Atomic uint64_t head; /* next position to reserve */
    /* Producers' copy of `tail`, on their own cache line: the real tail
     * (written by the consumer) is only read when this one says "full".
     * Stored with release after an acquire load of tail, loaded with
     * acquire, so the consumer's reads still happen-before our writes. */
    _Atomic uint64_t tail_cache;
    char pad0[64 - 2 * sizeof(uint64_t)];
    _Alignas(64) _Atomic uint64_t tail; /* first position not yet released */
    char pad1[64 - sizeof(uint64_t)];
    _Alignas(64) _Atomic uint32_t space_seq; /* bumped when space is freed and
                                                someone waits (futex word) */
    _Atomic uint32_t waiters;           /* producers sleeping for space */
    char pad2[64 - 2 * sizeof(uint32_t)];
    _Alignas(64) uint64_t cap;          /* cells, power of two (read-only) */
    uint64_t mask;
    uint8_t *cells;
    _Atomic uint64_t *commit;
    char pad3[64 - 4 * sizeof(uint64_t)];
    /* consumer's read position (loop only); its own line, since the loop
     * writes it per record and producers read the line above per send */
    _Alignas(64) uint64_t ctail;
    char pad4[64 - sizeof(uint64_t)];
} up_ring_t;

/** Create a ring of at least @p bytes (rounded up to a power of two of
 *  cells). Returns 0 or -1 (out of memory). */
int up_ring_init(up_ring_t *r, size_t bytes);
void up_ring_destroy(up_ring_t *r);

static inline uint64_t up_ring_cells_for(size_t bytes)
{
    return (bytes + UP_RING_CELL - 1) / UP_RING_CELL;
}

void up_ring_wake_space(up_ring_t *r);

/** Producer: sleep until the consumer frees space (or @p timeout_us
 *  passes); then retry up_ring_reserve(). @thread any */
void up_ring_wait_space(up_ring_t *r, uint64_t n, uint64_t timeout_us);

/** Reserve @p n cells. Returns true and *@p pos, or false if they do not fit
 *  now. @thread any @lock none */
static inline bool up_ring_reserve(up_ring_t *r, uint64_t n, uint64_t *pos)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&r->tail_cache, memory_order_acquire);
    for (;;) {
        if (h + n - t > r->cap) {
            t = atomic_load_explicit(&r->tail, memory_order_acquire); /* A2 */
            if (h + n - t > r->cap)
                return false;
            atomic_store_explicit(&r->tail_cache, t, memory_order_release);
        }
        /* relaxed: the reservation itself publishes nothing; data is
         * published by the commit store (R1). */
        if (atomic_compare_exchange_weak_explicit(&r->head, &h, h + n,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *pos = h;
            return true;
        }
    }
}

/** Pointer to the cell at @p pos. */
static inline uint8_t *up_ring_cell(const up_ring_t *r, uint64_t pos)
{
    return r->cells + (pos & r->mask) * UP_RING_CELL;
}

/** Copy @p len bytes into the ring at byte offset @p off from the start of
 *  cell @p pos, wrapping at the array end. */
void up_ring_write(up_ring_t *r, uint64_t pos, size_t off, const void *src, size_t len);
/** Copy out, the mirror of up_ring_write(). */
void up_ring_read(const up_ring_t *r, uint64_t pos, size_t off, void *dst, size_t len);

/** Publish the record reserved at @p pos. @thread any */
static inline void up_ring_commit(up_ring_t *r, uint64_t pos)
{
    atomic_store_explicit(&r->commit[pos & r->mask], pos + 1, memory_order_release); /* R1 */
}

/** Consumer: is a committed record waiting at the read position?
 *  @thread loop */
static inline bool up_ring_peek(const up_ring_t *r)
{
    return atomic_load_explicit(&r->commit[r->ctail & r->mask], memory_order_acquire) ==
           r->ctail + 1; /* A1 */
}

/** Consumer: make every cell before the read position reusable, and wake
 *  producers sleeping in up_ring_wait_space(). @thread loop */
static inline void up_ring_release(up_ring_t *r)
{
    atomic_store_explicit(&r->tail, r->ctail, memory_order_release); /* R2 */
    /* pairs with the waiter's increment of `waiters` before it re-reads tail */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&r->waiters, memory_order_relaxed))
        up_ring_wake_space(r);
}

/** Cells in use (reserved and not released); approximate from other threads. */
static inline uint64_t up_ring_used(up_ring_t *r)
{
    return atomic_load_explicit(&r->head, memory_order_relaxed) -
           atomic_load_explicit(&r->tail, memory_order_relaxed);
}

/** Non-zero if a committed record is waiting; callable from any thread
 *  (used by the loop before it sleeps). */
static inline bool up_ring_nonempty(up_ring_t *r)
{
    return atomic_load_explicit(&r->head, memory_order_acquire) != r->ctail;
}
#endif
