/* ring.c -- MPSC ring setup and wrap-aware copies (see ring.h). */
#include "ring.h"

#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>

static size_t page_up(size_t n, size_t page)
{
    return (n + page - 1) / page * page;
}

int up_ring_init(up_ring_t *r, size_t bytes)
{
    memset(r, 0, sizeof *r);
    uint64_t cells = 64;
    while (cells * UP_RING_CELL < bytes)
        cells <<= 1;
    long pg = sysconf(_SC_PAGESIZE);
    r->page = pg > 0 ? (uint64_t)pg : 4096u;
    r->cap = cells;
    r->mask = cells - 1;
    r->home = r->page / UP_RING_CELL < cells ? r->page / UP_RING_CELL : cells;
    r->cells_bytes = page_up((size_t)cells * UP_RING_CELL, (size_t)r->page);
    r->map_bytes = r->cells_bytes + page_up((size_t)cells * sizeof *r->commit, (size_t)r->page);
    /* Address space only: untouched pages cost nothing and read as zero,
     * which is a valid "not committed" word (positions are never -1). */
    void *m = mmap(NULL, r->map_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        r->map_bytes = 0;
        return -1;
    }
    /* small pages, so that resident memory follows the pages written (a
     * huge page would make the first record cost 2 MiB) */
    (void)madvise(m, r->map_bytes, MADV_NOHUGEPAGE);
    r->cells = m;
    r->commit = (_Atomic uint64_t *)(void *)((uint8_t *)m + r->cells_bytes);
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->tail_cache, 0);
    for (int k = 0; k < 2; k++) {
        atomic_init(&r->cnt_t[k], 0);
        atomic_init(&r->cnt_d[k], 0);
    }
    atomic_init(&r->cseq, 0);
    atomic_init(&r->gseq, 0);
    r->unit = 1;
    r->ushift = 0;
    r->cnum = 0;
    atomic_init(&r->space_seq, 0);
    atomic_init(&r->waiters, 0);
    atomic_init(&r->base, 0);
    atomic_init(&r->touched, 0);
    return 0;
}

void up_ring_destroy(up_ring_t *r)
{
    if (r->map_bytes)
        munmap(r->cells, r->map_bytes);
    r->map_bytes = 0;
    r->cells = NULL;
    r->commit = NULL;
}

uint64_t up_ring_await_reset(up_ring_t *r)
{
    /* the consumer holds the ring for a few stores (or one madvise) */
    for (unsigned spins = 0;; spins++) {
        uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire); /* A3 */
        if (!(h & UP_RING_RESET))
            return h;
        if (spins < 64)
            atomic_signal_fence(memory_order_seq_cst);
        else
            sched_yield();
    }
}

/* Bytes of the pages holding cells [0, cells) of both arrays. */
static size_t pages_for(const up_ring_t *r, uint64_t cells)
{
    return page_up((size_t)cells * UP_RING_CELL, (size_t)r->page) +
           page_up((size_t)cells * sizeof *r->commit, (size_t)r->page);
}

/* Give back the pages of cells [home, touched) of both arrays. */
static void give_back(up_ring_t *r, uint64_t touched)
{
    size_t pg = (size_t)r->page;
    size_t from = page_up((size_t)r->home * UP_RING_CELL, pg),
           to = page_up((size_t)touched * UP_RING_CELL, pg);
    if (to > from)
        (void)madvise(r->cells + from, to - from, MADV_DONTNEED);
    uint8_t *commit = (uint8_t *)(void *)r->commit;
    from = page_up((size_t)r->home * sizeof *r->commit, pg);
    to = page_up((size_t)touched * sizeof *r->commit, pg);
    if (to > from)
        (void)madvise(commit + from, to - from, MADV_DONTNEED);
}

void up_ring_set_unit(up_ring_t *r, uint64_t cells)
{
    uint64_t u = 1;
    unsigned sh = 0;
    while (u * 2 <= cells && u * 2 <= r->home) {
        u *= 2;
        sh++;
    }
    r->unit = u;
    r->ushift = sh;
}

/* Records went through since the loop's last look: note how far the run
 * of positions reached (touched) and when it needed pages past the first. */
static void note_run(up_ring_t *r, uint64_t c, uint64_t now_us)
{
    if (c == r->idle_pos)
        return;
    uint64_t base = atomic_load_explicit(&r->base, memory_order_relaxed);
    uint64_t touched = atomic_load_explicit(&r->touched, memory_order_relaxed);
    /* cells [base, c) were written (all of them once the run is a lap long) */
    uint64_t run = c - base < r->cap ? c - base : r->cap;
    if (run > touched)
        atomic_store_explicit(&r->touched, run, memory_order_relaxed);
    if (run > r->home) /* pages past the first in use */
        r->deep_us = now_us;
    r->idle_pos = c;
}

/* The claim: only from an empty ring (head == the read position @p c),
 * with no reservation under way. */
static bool claim(up_ring_t *r, uint64_t c)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    return h == c && atomic_compare_exchange_strong_explicit(&r->head, &h, c | UP_RING_RESET,
                                                             memory_order_acquire,
                                                             memory_order_relaxed);
}

/* Open the claimed ring at position @p nb, its run starting at the lap
 * start @p lap (nb - lap < unit). */
static void open_at(up_ring_t *r, uint64_t nb, uint64_t lap)
{
    r->ctail = nb;
    r->idle_pos = nb;
    atomic_store_explicit(&r->base, lap, memory_order_relaxed);
    atomic_store_explicit(&r->tail_cache, nb, memory_order_relaxed);
    atomic_store_explicit(&r->tail, nb, memory_order_release);  /* R2 */
    up_ring_publish_count(r); /* R4: the count is unchanged, its position moved */
    atomic_store_explicit(&r->head, nb, memory_order_release);  /* R3 */
    atomic_thread_fence(memory_order_seq_cst); /* as in up_ring_release() */
    if (atomic_load_explicit(&r->waiters, memory_order_relaxed))
        up_ring_wake_space(r);
}

uint64_t up_ring_maintain(up_ring_t *r, uint64_t now_us, uint64_t release_after_us)
{
    uint64_t c = r->ctail;
    note_run(r, c, now_us);
    uint64_t touched = atomic_load_explicit(&r->touched, memory_order_relaxed);
    bool rebase = (c & r->mask) >= r->home / 2;
    bool give = release_after_us && touched > r->home && now_us - r->deep_us >= release_after_us;
    if (!rebase && !give)
        return 0;
    if (!claim(r, c))
        return 0;
    /* Every record before c was committed and read (A1), so nothing writes
     * the arrays until head is opened again. */
    uint64_t lap = (c & r->mask) ? (c | r->mask) + 1 : c;
    /* the offset within the unit carries its charged rest over (ring.h);
     * past the middle of the first page, the rest is handed back instead */
    uint64_t off = c & (r->unit - 1), keep = off < r->home / 2 ? off : 0;
    uint64_t back = keep != off ? up_ring_unit_rest(r, c) : 0;
    if (give) {
        /* the count at c first, then the give-back's generation (R5): a
         * count read that began before it and read a zeroed word sees
         * gseq change and reads again; one that began after it reads a
         * pair at c or later, past every word given back */
        up_ring_publish_count(r);
        atomic_store_explicit(&r->gseq, atomic_load_explicit(&r->gseq, memory_order_relaxed) + 1,
                              memory_order_release);
        /* one cell more: the consumer's peeks at c read (and so mapped) the
         * commit word past the run */
        give_back(r, touched < r->cap ? touched + 1 : r->cap);
        touched = r->home < touched ? r->home : touched;
        atomic_store_explicit(&r->touched, touched, memory_order_relaxed);
    }
    open_at(r, lap + keep, lap);
    return back;
}

uint64_t up_ring_realign(up_ring_t *r, uint64_t now_us)
{
    uint64_t c = r->ctail, rest = up_ring_unit_rest(r, c);
    if (!rest)
        return 0;
    note_run(r, c, now_us);
    if (!claim(r, c))
        return 0;
    /* c is not at a unit boundary, so not at a lap start: the next lap's
     * start is ahead of it, and no reservation ever entered its unit */
    uint64_t lap = (c | r->mask) + 1;
    open_at(r, lap, lap);
    return rest;
}

uint64_t up_ring_records(up_ring_t *r)
{
    for (unsigned tries = 0;; tries++) {
        if (tries >= 8)
            sched_yield(); /* the loop or the senders are mid-step: let them on */
        /* A5: a give-back after this load changes it (see ring.h) */
        uint64_t g = atomic_load_explicit(&r->gseq, memory_order_acquire);
        /* A4: a consistent (position, count) pair */
        uint64_t k = atomic_load_explicit(&r->cseq, memory_order_acquire);
        uint64_t t = atomic_load_explicit(&r->cnt_t[k & 1], memory_order_acquire);
        uint64_t d = atomic_load_explicit(&r->cnt_d[k & 1], memory_order_acquire);
        if (atomic_load_explicit(&r->cseq, memory_order_acquire) != k)
            continue; /* published meanwhile: read the newer pair */
        uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire) & ~UP_RING_RESET;
        if ((int64_t)(h - t) > (int64_t)r->cap)
            continue; /* the ring moved on between the loads: read them again */
        /* acquire (A1's pairing with R1): a record counted here was
         * committed, with everything its sender did before. A word holding
         * a later lap's position was overwritten before it was read: the
         * record it held (if any) is not in d, so read again. */
        uint64_t s = 0, late = 0;
        for (uint64_t p = t; (int64_t)(h - p) > 0; p++) {
            uint64_t w = atomic_load_explicit(&r->commit[p & r->mask], memory_order_acquire);
            s += w == p + 1;
            late |= w > p + 1;
        }
        if (late)
            continue;
        /* a give-back during the scan may have zeroed words it read */
        if (atomic_load_explicit(&r->gseq, memory_order_acquire) != g)
            continue;
        return d + s;
    }
}

size_t up_ring_resident_bytes(up_ring_t *r)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire) & ~UP_RING_RESET;
    uint64_t base = atomic_load_explicit(&r->base, memory_order_relaxed);
    uint64_t touched = atomic_load_explicit(&r->touched, memory_order_relaxed);
    /* reserved since the loop's last look (a stale pair reads as 0) */
    uint64_t run = h > base ? h - base : 0;
    if (run > r->cap)
        run = r->cap;
    return pages_for(r, run > touched ? run : touched);
}

void up_ring_write(up_ring_t *r, uint64_t pos, size_t off, const void *src, size_t len)
{
    if (len == 0)
        return; /* src may be NULL then (no key, no properties) */
    size_t total = r->cap * UP_RING_CELL;
    size_t at = (size_t)((pos & r->mask) * UP_RING_CELL + off) % total;
    size_t first = total - at < len ? total - at : len;
    memcpy(r->cells + at, src, first);
    if (len > first)
        memcpy(r->cells, (const uint8_t *)src + first, len - first);
}

void up_ring_read(const up_ring_t *r, uint64_t pos, size_t off, void *dst, size_t len)
{
    if (len == 0)
        return;
    size_t total = r->cap * UP_RING_CELL;
    size_t at = (size_t)((pos & r->mask) * UP_RING_CELL + off) % total;
    size_t first = total - at < len ? total - at : len;
    memcpy(dst, r->cells + at, first);
    if (len > first)
        memcpy((uint8_t *)dst + first, r->cells, len - first);
}

void up_ring_wake_space(up_ring_t *r)
{
    atomic_fetch_add_explicit(&r->space_seq, 1, memory_order_release);
    syscall(SYS_futex, (uint32_t *)&r->space_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

void up_ring_wait_space(up_ring_t *r, uint64_t n, uint64_t timeout_us)
{
    uint32_t seq = atomic_load_explicit(&r->space_seq, memory_order_acquire);
    atomic_fetch_add_explicit(&r->waiters, 1, memory_order_seq_cst);
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_seq_cst);
    /* a reset under way ends in a few stores: retry instead of sleeping */
    if (!(h & UP_RING_RESET) && (int64_t)(h + n - t) > (int64_t)r->cap) {
        struct timespec ts = {(time_t)(timeout_us / 1000000u), (long)(timeout_us % 1000000u) * 1000};
        syscall(SYS_futex, (uint32_t *)&r->space_seq, FUTEX_WAIT_PRIVATE, seq, &ts, NULL, 0);
    }
    atomic_fetch_sub_explicit(&r->waiters, 1, memory_order_relaxed);
}
