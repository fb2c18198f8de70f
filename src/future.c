/* future.c -- pooled futures (see future.h). */
#include "future.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "err.h"

#define F_DONE 1u
#define F_RELEASED 2u
#define F_WAITERS 4u

static struct upulsar_future *slot(up_future_pool_t *p, uint32_t idx)
{
    struct upulsar_future *seg =
        atomic_load_explicit(&p->segs[idx >> UP_FUT_SEG_BITS], memory_order_acquire);
    return &seg[idx & (UP_FUT_SEG_SIZE - 1)];
}

/* Push the chain first..last (linked through next) onto the free list. */
static void push_chain(up_future_pool_t *p, struct upulsar_future *first,
                       struct upulsar_future *last)
{
    uint64_t old = atomic_load_explicit(&p->head, memory_order_relaxed);
    for (;;) {
        atomic_store_explicit(&last->next, (uint32_t)old, memory_order_relaxed);
        uint64_t nw = (((old >> 32) + 1) << 32) | (uint64_t)(first->idx + 1);
        /* release: the chain's links and states are visible to the popper */
        if (atomic_compare_exchange_weak_explicit(&p->head, &old, nw, memory_order_release,
                                                  memory_order_relaxed))
            return;
    }
}

static void put(struct upulsar_future *f)
{
    atomic_fetch_sub_explicit(&f->pool->in_use, 1, memory_order_relaxed);
    push_chain(f->pool, f, f);
}

int up_future_pool_init(up_future_pool_t *p, uint64_t max_futures)
{
    memset(p, 0, sizeof *p);
    uint64_t segs = (max_futures + UP_FUT_SEG_SIZE - 1) / UP_FUT_SEG_SIZE;
    if (segs == 0)
        segs = 1;
    if (segs > UP_FUT_MAX_SEGS)
        segs = UP_FUT_MAX_SEGS;
    p->max_segs = (uint32_t)segs;
    atomic_init(&p->head, 0);
    atomic_init(&p->nsegs, 0);
    atomic_init(&p->in_use, 0);
    return pthread_mutex_init(&p->grow_lock, NULL) ? -1 : 0;
}

void up_future_pool_destroy(up_future_pool_t *p)
{
    uint32_t n = atomic_load(&p->nsegs);
    for (uint32_t i = 0; i < n; i++)
        free(atomic_load(&p->segs[i]));
    pthread_mutex_destroy(&p->grow_lock);
}

static int grow(up_future_pool_t *p, uint64_t seen_head)
{
    pthread_mutex_lock(&p->grow_lock);
    int rc = 0;
    /* someone else grew (or released) meanwhile: just retry */
    if (atomic_load_explicit(&p->head, memory_order_acquire) != seen_head)
        goto out;
    uint32_t n = atomic_load_explicit(&p->nsegs, memory_order_relaxed);
    if (n >= p->max_segs) {
        rc = -1;
        goto out;
    }
    struct upulsar_future *seg = calloc(UP_FUT_SEG_SIZE, sizeof *seg);
    if (!seg) {
        rc = -1;
        goto out;
    }
    for (uint32_t i = 0; i < UP_FUT_SEG_SIZE; i++) {
        seg[i].idx = (n << UP_FUT_SEG_BITS) | i;
        seg[i].pool = p;
        atomic_init(&seg[i].state, 0);
        atomic_init(&seg[i].next, i + 1 < UP_FUT_SEG_SIZE ? seg[i].idx + 2 : 0);
    }
    atomic_store_explicit(&p->segs[n], seg, memory_order_release);
    atomic_store_explicit(&p->nsegs, n + 1, memory_order_release);
    push_chain(p, &seg[0], &seg[UP_FUT_SEG_SIZE - 1]);
out:
    pthread_mutex_unlock(&p->grow_lock);
    return rc;
}

struct upulsar_future *up_future_alloc(up_future_pool_t *p)
{
    uint64_t old = atomic_load_explicit(&p->head, memory_order_acquire);
    for (;;) {
        uint32_t top = (uint32_t)old;
        if (top == 0) {
            if (grow(p, old))
                return NULL;
            old = atomic_load_explicit(&p->head, memory_order_acquire);
            continue;
        }
        struct upulsar_future *f = slot(p, top - 1);
        uint32_t next = atomic_load_explicit(&f->next, memory_order_relaxed);
        uint64_t nw = (((old >> 32) + 1) << 32) | next;
        if (atomic_compare_exchange_weak_explicit(&p->head, &old, nw, memory_order_acquire,
                                                  memory_order_acquire)) {
            atomic_store_explicit(&f->state, 0, memory_order_relaxed);
            atomic_fetch_add_explicit(&p->in_use, 1, memory_order_relaxed);
            return f;
        }
    }
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

void up_future_resolve(struct upulsar_future *f, upulsar_err_t err, const upulsar_msg_id_t *id)
{
    f->err = err;
    if (id)
        f->id = *id;
    else
        memset(&f->id, 0, sizeof f->id);
    uint32_t old = atomic_fetch_or_explicit(&f->state, F_DONE, memory_order_acq_rel); /* R1 */
    if (old & F_WAITERS)
        futex(&f->state, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
    if (old & F_RELEASED)
        put(f);
}

static upulsar_err_t result(struct upulsar_future *f, upulsar_msg_id_t *id)
{
    if (id && f->err == UPULSAR_OK)
        *id = f->id;
    return (upulsar_err_t)f->err;
}

upulsar_err_t upulsar_future_poll(upulsar_future_t *f, upulsar_msg_id_t *id)
{
    if (!f)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "future is NULL");
    if (atomic_load_explicit(&f->state, memory_order_acquire) & F_DONE) /* A1 */
        return result(f, id);
    return UPULSAR_ERR__PENDING;
}

upulsar_err_t upulsar_future_wait(upulsar_future_t *f, int timeout_ms, upulsar_msg_id_t *id)
{
    if (!f)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "future is NULL");
    uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
    if (s & F_DONE)
        return result(f, id);
    if (timeout_ms == 0)
        return UPULSAR_ERR__PENDING;
    /* in a callback the future may be one only the calling thread resolves */
    if (up_thread_role() != UP_THREAD_APP)
        return up_seterr(UPULSAR_ERR__PENDING, "upulsar_future_wait() does not wait in a "
                                               "upulsar callback (timeout treated as 0)");
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    if (timeout_ms > 0) {
        end.tv_sec += timeout_ms / 1000;
        end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (end.tv_nsec >= 1000000000L) {
            end.tv_sec++;
            end.tv_nsec -= 1000000000L;
        }
    }
    s = atomic_fetch_or_explicit(&f->state, F_WAITERS, memory_order_acq_rel) | F_WAITERS;
    while (!(s & F_DONE)) {
        struct timespec rel, *relp = NULL;
        if (timeout_ms > 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            long long ns = (long long)(end.tv_sec - now.tv_sec) * 1000000000LL +
                           (end.tv_nsec - now.tv_nsec);
            if (ns <= 0)
                return UPULSAR_ERR__PENDING;
            rel.tv_sec = (time_t)(ns / 1000000000LL);
            rel.tv_nsec = (long)(ns % 1000000000LL);
            relp = &rel;
        }
        futex(&f->state, FUTEX_WAIT_PRIVATE, s, relp);
        s = atomic_load_explicit(&f->state, memory_order_acquire);
    }
    return result(f, id);
}

void upulsar_future_release(upulsar_future_t *f)
{
    if (!f)
        return;
    uint32_t old = atomic_fetch_or_explicit(&f->state, F_RELEASED, memory_order_acq_rel);
    if (old & F_DONE)
        put(f);
}
