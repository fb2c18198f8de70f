/* ring.h -- bounded lock-free MPSC ring of variable-length records.
 *
 * Layout: `cap` cells of UP_RING_CELL bytes, plus one 64-bit commit word per
 * cell. Positions are free-running 64-bit cell counters below 2^63 (bit 63
 * of `head` is UP_RING_RESET, below); the array index is pos & mask.
 *
 * Producers (any thread):
 *   reserve: CAS `head` from h to h+n once  h + n - tail <= cap.
 *   write the record into cells [h, h+n) (it may wrap around the array end;
 *   up_ring_write() copies in two pieces), then
 *   commit:  store-release commit[h & mask] = h + 1.          (R1)
 * Consumer (the io loop thread, exactly one):
 *   peek:    load-acquire commit[t & mask] == t + 1 ?          (A1, pairs R1)
 *            A stale word from an older lap holds a smaller value, and a
 *            page never written (or given back) holds 0, so a record is
 *            never seen before it is committed.
 *   read the record, then release: store-release tail = t'.   (R2)
 * Producers load-acquire `tail` before reserving (A2, pairs R2), so they
 * never overwrite cells the consumer is still reading.
 *
 * Records are committed out of order but consumed in reservation order; a
 * producer preempted between reserve and commit delays the consumer (not
 * other producers). head and tail live on separate cache lines.
 *
 * Memory follows load. The arrays are reserved address space (mmap,
 * MAP_NORESERVE), never zeroed nor touched up front: a page costs memory
 * once a record is written into it. When the consumer finds the ring empty
 * it may reset it (up_ring_idle()):
 *   claim:   CAS head from t to t | UP_RING_RESET, t = its read position,
 *            so the ring is empty and no reservation is under way; a
 *            producer that reads a head with the bit set waits until it is
 *            cleared (a few stores, or one madvise) and never reports the
 *            ring full because of it.
 *   rebase:  t' = t rounded up to a multiple of cap (array index 0);
 *            store tail_cache = t', store-release tail = t' (R2 again).
 *   give back (once pages past the first went unused for
 *            queue.idle.release.ms): madvise(MADV_DONTNEED)
 *            the touched pages past the first one(s) of each array; they
 *            read as zero afterwards ("not committed", as above).
 *   open:    store-release head = t'.                          (R3)
 * Producers load head with acquire (A3, pairs R3; the initial load and a
 * failed CAS alike), so one that sees t' also sees tail and tail_cache at
 * t' and its writes come after the madvise. Positions only grow, so a
 * producer's stale h (from before a reset) fails its CAS, and a tail
 * already past a stale h is read as "retry", not "full" (signed compare).
 * Low load thus keeps reusing the first page(s): positions jump to the
 * next lap instead of walking the whole array.
 * @internal
 */
#ifndef UP_RING_H
#define UP_RING_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UP_RING_CELL 32u
/* bit 63 of head: the consumer is resetting the ring (see above) */
#define UP_RING_RESET (UINT64_C(1) << 63)

typedef struct up_ring {
    _Alignas(64) _Atomic uint64_t head; /* next position to reserve (| UP_RING_RESET) */
    /* Producers' copy of `tail`, on their own cache line: the real tail
     * (written by the consumer) is only read when this one says "full".
     * Stored with release after an acquire load of tail, loaded with
     * acquire, so the consumer's reads still happen-before our writes. A
     * late store may set it back below the real tail; that only sends the
     * next producer to read the real one. */
    _Atomic uint64_t tail_cache;
    /* A word of the ring's owner that its senders write with each
     * reservation (the producer's memory.limit.bytes credit, send.c): on
     * head's line, the line a sender has just taken for its reservation
     * costs no second cache miss. The ring itself never touches it. */
    _Atomic int64_t owner_credit;
    /* A second such word: the messages its senders accepted (statistics,
     * stats.c), one relaxed add per message on the same line. */
    _Atomic uint64_t owner_count;
    char pad0[64 - 4 * sizeof(uint64_t)];
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
    size_t cells_bytes;                 /* cells array, rounded up to pages; the
                                           commit array follows it in one mapping */
    size_t map_bytes;
    uint64_t home;                      /* cells kept when idle memory is given back
                                           (a page of cells; its commit words fit in
                                           one page) */
    uint64_t page;
    /* consumer's read position (loop only); its own line, since the loop
     * writes it per record and producers read the lines above per send */
    _Alignas(64) uint64_t ctail;
    /* loop only: where the current run of positions began (0 or a reset's
     * t'); the read position when the loop last looked; when it last saw a
     * run longer than `home` (pages past the first in use) */
    _Atomic uint64_t base;              /* written by the loop, read by stats */
    uint64_t idle_pos;
    uint64_t deep_us;
    /* cells from index 0 whose pages may be resident, as of the loop's last
     * look (written by the loop, read approximately by any thread) */
    _Atomic uint64_t touched;
    char pad4[64 - 5 * sizeof(uint64_t)];
} up_ring_t;

/** Create a ring of at least @p bytes (rounded up to a power of two of
 *  cells). Only address space is reserved: pages are faulted in as records
 *  are written. Returns 0 or -1 (out of memory / address space). */
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

/** Producer: wait until the consumer's reset ends; returns head then
 *  (acquire, A3). @thread any */
uint64_t up_ring_await_reset(up_ring_t *r);

/** Reserve @p n cells. Returns true and *@p pos, or false if they do not fit
 *  now. @thread any @lock none */
static inline bool up_ring_reserve(up_ring_t *r, uint64_t n, uint64_t *pos)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire); /* A3 */
    uint64_t t = atomic_load_explicit(&r->tail_cache, memory_order_acquire);
    for (;;) {
        if (__builtin_expect((h & UP_RING_RESET) != 0, 0)) {
            h = up_ring_await_reset(r);
            t = atomic_load_explicit(&r->tail_cache, memory_order_acquire);
            continue;
        }
        /* signed: a tail already past a stale h means "retry", not "full" */
        if ((int64_t)(h + n - t) > (int64_t)r->cap) {
            t = atomic_load_explicit(&r->tail, memory_order_acquire); /* A2 */
            if ((int64_t)(h + n - t) > (int64_t)r->cap)
                return false;
            atomic_store_explicit(&r->tail_cache, t, memory_order_release);
        }
        /* The reservation itself publishes nothing (data is published by
         * the commit store, R1); acquire so that a head written by a reset
         * (R3) brings its tail with it. */
        if (atomic_compare_exchange_weak_explicit(&r->head, &h, h + n,
                                                  memory_order_acquire,
                                                  memory_order_acquire)) {
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

/** Next position to reserve, without the reset bit (a flush's mark: every
 *  record before it was reserved before the call). @thread any */
static inline uint64_t up_ring_head_pos(up_ring_t *r)
{
    return atomic_load_explicit(&r->head, memory_order_acquire) & ~UP_RING_RESET;
}

/** Cells in use (reserved and not released); approximate from other threads. */
static inline uint64_t up_ring_used(up_ring_t *r)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed) & ~UP_RING_RESET;
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    return h > t ? h - t : 0;
}

/** Non-zero if a committed record is waiting; callable from any thread
 *  (used by the loop before it sleeps). */
static inline bool up_ring_nonempty(up_ring_t *r)
{
    return (atomic_load_explicit(&r->head, memory_order_acquire) & ~UP_RING_RESET) != r->ctail;
}

/** The work of up_ring_idle() when there may be some. @thread loop */
void up_ring_maintain(up_ring_t *r, uint64_t now_us, uint64_t release_after_us);

/** Consumer, when it found no committed record at its read position: if
 *  the ring is empty and its read position is past the middle of its first
 *  page, move the positions on to array index 0 of the next lap, so low
 *  load keeps using the page it already has; if no run of records has
 *  needed more than the first page for @p release_after_us (0 = never),
 *  give back the pages past the first one(s). Cheap when there is nothing
 *  to do. @thread loop */
static inline void up_ring_idle(up_ring_t *r, uint64_t now_us, uint64_t release_after_us)
{
    if (r->ctail == r->idle_pos && (r->ctail & r->mask) < r->home / 2 &&
        (!release_after_us || now_us - r->deep_us < release_after_us ||
         atomic_load_explicit(&r->touched, memory_order_relaxed) <= r->home))
        return;
    up_ring_maintain(r, now_us, release_after_us);
}

/** Bytes of the ring's pages written and not given back (approximate from
 *  other threads: pages the loop has not looked at yet are counted from
 *  the reserved positions). @thread any */
size_t up_ring_resident_bytes(up_ring_t *r);
#endif
