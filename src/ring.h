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
 *
 * Budget units (the owner's memory budget, send.c). The positions are cut
 * into units of `unit` cells (a power of two, at most a page of cells;
 * 1 unless the owner sets it with up_ring_set_unit()). A reservation
 * [h, h+n) "enters" the units whose first cell lies in it
 * (up_ring_units_entered()); up_ring_reserve_charged() asks its caller to
 * have charged them before the CAS that publishes the reservation, so
 * every unit head has entered is charged, and the cells of it not reserved
 * yet, [head, head rounded up to a unit), are charged and unused (the
 * unit's rest, up_ring_unit_rest()). A reset keeps head's offset within
 * its unit while that offset is in the first half of the ring's first
 * page (t' = the next lap's start + t mod unit), so the rest carries over
 * to the unit t' lies in and nothing is charged twice or lost; past it, the
 * reset moves to the lap's start and hands the rest back (up_ring_idle()'s
 * result), so low load still keeps to the first page. up_ring_realign()
 * moves an empty ring to a unit boundary whatever the offset, handing the
 * rest back. The budget counters themselves are the owner's
 * (relaxed atomics): correctness of the charge does not depend on their
 * ordering against head, only on the positions (a rest is returned only by
 * the consumer while it holds the claim, so no reservation can use it).
 *
 * Records counted without a per-record atomic (statistics): the consumer
 * counts the records it consumes (cnum, loop only) and publishes the count
 * with the position it belongs to in one of two slots, then the slot's
 * sequence number (every store atomic; one writer, the loop):
 *   publish: k = cseq + 1; store-release cnt_t[k & 1] = read position,
 *            store-release cnt_d[k & 1] = cnum; store-release cseq = k.  (R4)
 * (after each release's R2, and by each reset). A reader of any thread
 * (up_ring_records()):
 *   load-acquire cseq = k, cnt_t[k & 1], cnt_d[k & 1], cseq again (A4,
 *   pairs R4): an unchanged k means a consistent pair, since the next
 *   publish writes the other slot and the one after that, which rewrites
 *   this slot, stores k + 1 before it (release), which the second load
 *   would then see. A loop stopped between its stores never holds a
 *   reader up: the slot it writes is not the one k names.
 *   Then load-acquire head, and count the committed records that start in
 *   [t, head) from the commit words alone (load-acquire commit[p & mask]
 *   == p + 1 holds only for a record starting at p and committed, A1's
 *   pairing with R1; cells are never read). Records consumed after t are
 *   still committed there, so nothing is counted twice or missed, and the
 *   consumer publishing meanwhile changes nothing. A word is reused only
 *   by a record starting a lap after it, and then holds a larger position
 *   (positions only grow, a reset included): a scan that read such a word
 *   reads again, whatever head did meanwhile.
 *   A give-back zeroes the words of the pages it returns (madvise). The
 *   reset publishes the count at its position c (all consumed), then
 *   bumps gseq (store-release, R5), then calls madvise. The reader loads
 *   gseq first (acquire, A5) and again after its scan, and reads again if
 *   it changed: a scan that read a zeroed word saw the madvise, which came
 *   after the bump (a system call with its TLB shootdown). A reader whose
 *   first load already saw the bump reads a pair at c or later (R4 came
 *   before R5), so its scan starts past every word given back.
 *   The reader retries (yielding after a few tries) and never waits on the
 *   loop; a retry needs the senders to lap the ring, or a give-back,
 *   while it scans at most one lap of words.
 *
 * The io loop's sleep handshake (R6). A caller that commits a record must
 * see that the loop sleeps (and wake it), or the loop must see the record.
 * The reservation's CAS on head is seq_cst: on x86 a locked instruction,
 * a full fence no later load passes. So a caller reserves (CAS), writes,
 * commits, then loads the loop's `sleeping` (and the producer's `act`);
 * the loop stores `sleeping` (or `act` = 0), fences, then loads head
 * (up_ring_nonempty(), seq_cst). Either the caller's load sees the store,
 * or the loop's load sees the reservation: then the record is committed or
 * about to be, and the loop, finding head past its read position with no
 * committed record there, sleeps only briefly and looks again. No send
 * needs a fence of its own, and the loop needs no membarrier (whose IPIs
 * would interrupt every thread of the application on every sleep).
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
    char pad0[64 - 2 * sizeof(uint64_t)];
    _Alignas(64) _Atomic uint64_t tail; /* first position not yet released */
    /* the published record count (R4 / A4 above): two slots of (read
     * position, records consumed before it) and the sequence naming the
     * last one written; the loop's line, read by statistics only */
    _Atomic uint64_t cnt_t[2], cnt_d[2];
    _Atomic uint64_t cseq;
    _Atomic uint64_t gseq;              /* give-backs begun (R5 / A5 above) */
    char pad1[64 - 7 * sizeof(uint64_t)];
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
    uint64_t unit;                      /* cells per budget unit (power of two,
                                           1..home; read-only once set) */
    unsigned ushift;                    /* log2(unit) */
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
    uint64_t cnum;                      /* records consumed (loop only; see R4) */
    char pad4[64 - 6 * sizeof(uint64_t)];
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


/** Set the budget unit to @p cells (rounded down to a power of two, 1 to
 *  a page of cells). Before any reservation. @thread the creating one */
void up_ring_set_unit(up_ring_t *r, uint64_t cells);

/** Units (see "Budget units") whose first cell lies in [@p h, @p h + @p n):
 *  what a reservation of @p n cells at @p h enters. */
static inline uint64_t up_ring_units_entered(const up_ring_t *r, uint64_t h, uint64_t n)
{
    uint64_t u1 = r->unit - 1;
    return ((h + n + u1) >> r->ushift) - ((h + u1) >> r->ushift);
}

/** Cells charged and not reserved yet when head is at @p h: the rest of
 *  the unit @p h lies in (0 at a unit boundary). */
static inline uint64_t up_ring_unit_rest(const up_ring_t *r, uint64_t h)
{
    return (r->unit - (h & (r->unit - 1))) & (r->unit - 1);
}

typedef enum { UP_RING_OK = 0, UP_RING_FULL, UP_RING_CHARGE } up_ring_res_t;

/** Reserve @p n cells when the caller has charged @p have units. UP_RING_OK:
 *  *@p pos is the reservation and *@p units the units it entered (at most
 *  @p have; the caller gives back the others). UP_RING_CHARGE: at the
 *  current head the reservation enters *@p units units, more than @p have:
 *  charge them, then call again (head may have moved by then). UP_RING_FULL:
 *  no room now. The units are charged before the CAS that publishes the
 *  reservation (program order; the charge's own atomics are the owner's and
 *  relaxed, see "Budget units"). @thread any @lock none */
static inline up_ring_res_t up_ring_reserve_charged(up_ring_t *r, uint64_t n, uint64_t have,
                                                    uint64_t *pos, uint64_t *units)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire); /* A3 */
    uint64_t t = atomic_load_explicit(&r->tail_cache, memory_order_acquire);
    for (;;) {
        if (__builtin_expect((h & UP_RING_RESET) != 0, 0)) {
            h = up_ring_await_reset(r);
            t = atomic_load_explicit(&r->tail_cache, memory_order_acquire);
            continue;
        }
        if ((int64_t)(h + n - t) > (int64_t)r->cap) {
            t = atomic_load_explicit(&r->tail, memory_order_acquire); /* A2 */
            if ((int64_t)(h + n - t) > (int64_t)r->cap)
                return UP_RING_FULL;
            atomic_store_explicit(&r->tail_cache, t, memory_order_release);
        }
        uint64_t need = up_ring_units_entered(r, h, n);
        if (__builtin_expect(need > have, 0)) {
            *units = need;
            return UP_RING_CHARGE;
        }
        /* The reservation publishes no data (the commit store does, R1);
         * acquire so that a head written by a reset (R3) brings its tail
         * with it, and seq_cst because it is the caller's half of the io
         * loop's sleep handshake (R6 above). */
        if (atomic_compare_exchange_weak_explicit(&r->head, &h, h + n, memory_order_seq_cst,
                                                  memory_order_acquire)) {
            *pos = h;
            *units = need;
            return UP_RING_OK;
        }
    }
}

/** Reserve @p n cells without the budget's units (tests and tools that
 *  keep no budget). Returns true and *@p pos, or false if they do not fit
 *  now. @thread any @lock none */
static inline bool up_ring_reserve(up_ring_t *r, uint64_t n, uint64_t *pos)
{
    uint64_t units;
    return up_ring_reserve_charged(r, n, UINT64_MAX, pos, &units) == UP_RING_OK;
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

/** Consumer: publish the record count with the read position (R4).
 *  @thread loop */
static inline void up_ring_publish_count(up_ring_t *r)
{
    uint64_t k = atomic_load_explicit(&r->cseq, memory_order_relaxed) + 1;
    atomic_store_explicit(&r->cnt_t[k & 1], r->ctail, memory_order_release);
    atomic_store_explicit(&r->cnt_d[k & 1], r->cnum, memory_order_release);
    atomic_store_explicit(&r->cseq, k, memory_order_release);
}

/** Consumer: step over the record of @p cells cells at the read position
 *  (read or failed), counting it (see R4). @thread loop */
static inline void up_ring_consume(up_ring_t *r, uint64_t cells)
{
    r->ctail += cells;
    r->cnum++;
}

/** Consumer: make every cell before the read position reusable, and wake
 *  producers sleeping in up_ring_wait_space(). @thread loop */
static inline void up_ring_release(up_ring_t *r)
{
    atomic_store_explicit(&r->tail, r->ctail, memory_order_release); /* R2 */
    up_ring_publish_count(r);                                        /* R4 */
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

/** Whether a record is reserved past the read position (committed or
 *  not yet: its commit follows); the loop's half of R6. @thread loop */
static inline bool up_ring_nonempty(up_ring_t *r)
{
    /* seq_cst: the loop's half of the handshake R6 (after its store of
     * `sleeping` or `act`), on x86 the same load as acquire */
    return (atomic_load_explicit(&r->head, memory_order_seq_cst) & ~UP_RING_RESET) != r->ctail;
}

/** The work of up_ring_idle() when there may be some; its result.
 *  @thread loop */
uint64_t up_ring_maintain(up_ring_t *r, uint64_t now_us, uint64_t release_after_us);

/** Consumer, when it found no committed record at its read position: if
 *  the ring is empty and its read position is past the middle of its first
 *  page, move the positions on to the next lap, array index 0 or the
 *  read position's offset within its budget unit if that is below the
 *  middle (see "Budget units"), so low load keeps using the page it
 *  already has; if no run of records has needed more than the first page
 *  for @p release_after_us (0 = never), give back the pages past the first
 *  one(s). Returns the cells of a unit's rest it handed back (the caller
 *  gives them back to its budget), usually 0. Cheap when there is nothing
 *  to do. @thread loop */
static inline uint64_t up_ring_idle(up_ring_t *r, uint64_t now_us, uint64_t release_after_us)
{
    if (r->ctail == r->idle_pos && (r->ctail & r->mask) < r->home / 2 &&
        (!release_after_us || now_us - r->deep_us < release_after_us ||
         atomic_load_explicit(&r->touched, memory_order_relaxed) <= r->home))
        return 0;
    return up_ring_maintain(r, now_us, release_after_us);
}

/** Bytes of the ring's pages written and not given back (approximate from
 *  other threads: pages the loop has not looked at yet are counted from
 *  the reserved positions). @thread any */
size_t up_ring_resident_bytes(up_ring_t *r);

/** Consumer, with the ring empty: move it to the start of the next lap (a
 *  unit boundary) and return the cells of the rest of head's unit (charged,
 *  never to be used: the caller gives them back to its budget); 0 if the
 *  ring is not empty, a reservation is under way, or head is at a unit
 *  boundary already. @thread loop */
uint64_t up_ring_realign(up_ring_t *r, uint64_t now_us);

/** Records committed: those consumed plus those committed and waiting,
 *  also behind a record still being written (see R4 above; counted from
 *  the commit words, O(cells in use)). At least every record whose commit
 *  happened-before the call, at most those committed by its return. It
 *  reads again while the senders lap the ring during its scan (lock-free,
 *  not wait-free; see above). @thread any */
uint64_t up_ring_records(up_ring_t *r);
#endif
