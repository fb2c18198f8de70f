/* ring.c -- MPSC ring setup and wrap-aware copies (see ring.h). */
#include "ring.h"

#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <string.h>

int up_ring_init(up_ring_t *r, size_t bytes)
{
    memset(r, 0, sizeof *r);
    uint64_t cells = 64;
    while (cells * UP_RING_CELL < bytes)
        cells <<= 1;
    r->cap = cells;
    r->mask = cells - 1;
    r->cells = aligned_alloc(64, cells * UP_RING_CELL);
    r->commit = calloc(cells, sizeof *r->commit);
    if (!r->cells || !r->commit) {
        up_ring_destroy(r);
        return -1;
    }
    for (uint64_t i = 0; i < cells; i++)
        atomic_init(&r->commit[i], 0);
    /* touch every page now: no page faults on the send path later, and the
     * process's RSS shows the ring's real cost from the start */
    memset(r->cells, 0, cells * UP_RING_CELL);
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->tail_cache, 0);
    atomic_init(&r->space_seq, 0);
    atomic_init(&r->waiters, 0);
    return 0;
}

void up_ring_destroy(up_ring_t *r)
{
    free(r->cells);
    free((void *)r->commit);
    r->cells = NULL;
    r->commit = NULL;
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
    if (h + n - t > r->cap) {
        struct timespec ts = {(time_t)(timeout_us / 1000000u), (long)(timeout_us % 1000000u) * 1000};
        syscall(SYS_futex, (uint32_t *)&r->space_seq, FUTEX_WAIT_PRIVATE, seq, &ts, NULL, 0);
    }
    atomic_fetch_sub_explicit(&r->waiters, 1, memory_order_relaxed);
}
