/* future.c -- pooled futures (see future.h). */
#include "future.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "err.h"
#include "producer_int.h"

#define F_CLAIMED 1u
#define F_DONE 2u
#define F_RELEASED 4u
#define F_WAITERS 8u
#define F_GEN_SHIFT 8
#define F_GEN_MASK (UP_FUT_ALIASES - 1u)

_Static_assert((UP_FUT_ALIASES & (UP_FUT_ALIASES - 1)) == 0, "aliases: a power of two");
_Static_assert(sizeof(up_fslot_t) == 64, "one slot per cache line");
_Static_assert(sizeof(upulsar_msg_id_t) == 48, "upulsar_msg_id_t has no padding");

static inline uint32_t gen_of(uint32_t s) { return (s >> F_GEN_SHIFT) & F_GEN_MASK; }

/* The slot a handle belongs to (handle n sits at &slot->alias[n]). */

static up_fslot_t *slot(up_future_pool_t *p, uint32_t idx)
{
    up_fslot_t *seg = atomic_load_explicit(&p->segs[idx >> UP_FUT_SEG_BITS], memory_order_acquire);
    return &seg[idx & (UP_FUT_SEG_SIZE - 1)];
}

/* The calling thread's shard (assigned on its first use, round robin over
 * the threads, of every pool alike). */
static _Atomic unsigned next_shard;
static _Thread_local unsigned my_shard; /* shard + 1, 0: not assigned yet */

static up_fshard_t *own_shard(up_future_pool_t *p)
{
    if (__builtin_expect(!my_shard, 0))
        my_shard = atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) %
                       UP_FUT_SHARDS + 1;
    return &p->shard[my_shard - 1];
}

/* A shard's head after a change from @p old: its tag bumped (so a CAS
 * holding an older head fails), its top @p top (index + 1, 0 = empty). */
static inline uint64_t head_after(uint64_t old, uint32_t top)
{
    return (((old >> 32) + 1) << 32) | top;
}

/* Push the chain first..last (linked through next) onto shard @p sh. */
static void push_chain(up_fshard_t *sh, up_fslot_t *first, up_fslot_t *last)
{
    uint64_t old = atomic_load_explicit(&sh->head, memory_order_relaxed);
    for (;;) {
        atomic_store_explicit(&last->next, (uint32_t)old, memory_order_relaxed);
        uint64_t nw = head_after(old, first->idx + 1);
        /* release: the chain's links and states are visible to the popper */
        if (atomic_compare_exchange_weak_explicit(&sh->head, &old, nw, memory_order_release,
                                                  memory_order_relaxed))
            return;
    }
}

static void put(up_fslot_t *f)
{
    /* both the resolver and the releaser are done with the slot: the
     * detail's reference goes with it */
    if (f->err != UPULSAR_OK && f->res.detail) {
        up_detail_put(f->pool, f->res.detail);
        f->res.detail = NULL;
    }
    up_fshard_t *sh = own_shard(f->pool);
    atomic_fetch_sub_explicit(&sh->taken, 1, memory_order_relaxed);
    push_chain(sh, f, f);
}

int64_t up_future_pool_in_use(up_future_pool_t *p)
{
    int64_t n = 0;
    for (int i = 0; i < UP_FUT_SHARDS; i++)
        n += atomic_load_explicit(&p->shard[i].taken, memory_order_relaxed);
    return n;
}

/* ---- detail store (future.h) ------------------------------------------- */

#define UP_STR_(x) #x
#define UP_STR(x) UP_STR_(x)

/* What a failure gets when UP_DETAIL_MAX different details are all held by
 * unreleased futures at once. */
static up_detail_t fallback = {
    .fixed = true,
    .text = "no detail kept: more than " UP_STR(UP_DETAIL_MAX) " different failure details are "
            "held by futures not yet released (see the error code)"};

static uint32_t text_hash(const char *t)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *t; t++)
        h = (h ^ (uint8_t)*t) * 16777619u;
    return h;
}

/* Free the entries nobody references. An entry's references grow from 0
 * only under the lock (up_detail_get), so one seen at 0 here stays there;
 * acquire pairs with the release of the last up_detail_put(), whose
 * thread's reads of the text come before the free. (lock held) */
static void sweep(up_detail_store_t *s)
{
    for (size_t b = 0; b < UP_DETAIL_BUCKETS; b++)
        for (up_detail_t **pp = &s->buckets[b]; *pp;) {
            up_detail_t *d = *pp;
            if (atomic_load_explicit(&d->refs, memory_order_acquire) == 0) {
                *pp = d->next;
                free(d);
                s->count--;
            } else {
                pp = &d->next;
            }
        }
}

up_detail_t *up_detail_get(up_future_pool_t *p, const char *fmt, ...)
{
    char text[UP_DETAIL_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    uint32_t h = text_hash(text);
    up_detail_store_t *s = &p->details;
    pthread_mutex_lock(&s->lock);
    up_detail_t **bucket = &s->buckets[h % UP_DETAIL_BUCKETS], *d;
    for (d = *bucket; d; d = d->next)
        if (d->hash == h && strcmp(d->text, text) == 0) {
            /* also from 0: entries are freed only under the lock */
            atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
            pthread_mutex_unlock(&s->lock);
            return d;
        }
    if (s->count >= UP_DETAIL_MAX &&
        atomic_exchange_explicit(&s->idle_hint, 0, memory_order_acquire))
        sweep(s);
    size_t len = strlen(text);
    d = s->count < UP_DETAIL_MAX ? malloc(sizeof *d + len + 1) : NULL;
    if (!d) {
        pthread_mutex_unlock(&s->lock);
        return &fallback;
    }
    char *t = (char *)(d + 1);
    memcpy(t, text, len + 1);
    d->text = t;
    d->hash = h;
    d->fixed = false;
    atomic_init(&d->refs, 1);
    d->next = *bucket;
    *bucket = d;
    s->count++;
    pthread_mutex_unlock(&s->lock);
    return d;
}

void up_detail_put(up_future_pool_t *p, up_detail_t *d)
{
    if (!d || d->fixed)
        return;
    /* release: our reads of the text come before a sweep that frees it */
    if (atomic_fetch_sub_explicit(&d->refs, 1, memory_order_release) == 1)
        atomic_store_explicit(&p->details.idle_hint, 1, memory_order_release);
}

uint32_t up_detail_count(up_future_pool_t *p)
{
    pthread_mutex_lock(&p->details.lock);
    uint32_t n = p->details.count;
    pthread_mutex_unlock(&p->details.lock);
    return n;
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
    for (int i = 0; i < UP_FUT_SHARDS; i++) {
        atomic_init(&p->shard[i].head, 0);
        atomic_init(&p->shard[i].taken, 0);
    }
    atomic_init(&p->nsegs, 0);
    atomic_init(&p->details.idle_hint, 0);
    if (pthread_mutex_init(&p->grow_lock, NULL))
        return -1;
    if (pthread_mutex_init(&p->details.lock, NULL)) {
        pthread_mutex_destroy(&p->grow_lock);
        return -1;
    }
    return 0;
}

void up_future_pool_destroy(up_future_pool_t *p)
{
    uint32_t n = atomic_load(&p->nsegs);
    for (uint32_t i = 0; i < n; i++)
        free(atomic_load(&p->segs[i]));
    pthread_mutex_destroy(&p->grow_lock);
    for (size_t b = 0; b < UP_DETAIL_BUCKETS; b++)
        for (up_detail_t *d = p->details.buckets[b], *nx; d; d = nx) {
            nx = d->next;
            free(d);
        }
    pthread_mutex_destroy(&p->details.lock);
}

/* Add a segment, its slots onto @p sh, unless a shard changed since the
 * caller found it empty (its head then, tag included, in @p seen): 0 (take
 * again), or -1 (the pool is at its maximum, or out of memory). A head
 * unchanged since it was seen empty was empty the whole time in between
 * (every push bumps its tag), so with all of them unchanged there was an
 * instant with every shard empty: the pool was exhausted, not just
 * looked so while slots moved from shard to shard. */
static int grow(up_future_pool_t *p, up_fshard_t *sh, const uint64_t *seen)
{
    pthread_mutex_lock(&p->grow_lock);
    int rc = 0;
    for (int i = 0; i < UP_FUT_SHARDS; i++)
        if (atomic_load_explicit(&p->shard[i].head, memory_order_acquire) != seen[i])
            goto out;
    uint32_t n = atomic_load_explicit(&p->nsegs, memory_order_relaxed);
    if (n >= p->max_segs) {
        rc = -1;
        goto out;
    }
    up_fslot_t *seg = calloc(UP_FUT_SEG_SIZE, sizeof *seg);
    if (!seg) {
        rc = -1;
        goto out;
    }
    for (uint32_t i = 0; i < UP_FUT_SEG_SIZE; i++) {
        seg[i].idx = (n << UP_FUT_SEG_BITS) | i;
        seg[i].pool = p;
        for (uint8_t a = 0; a < UP_FUT_ALIASES; a++)
            seg[i].alias[a].n = a;
        atomic_init(&seg[i].state, 0);
        atomic_init(&seg[i].next, i + 1 < UP_FUT_SEG_SIZE ? seg[i].idx + 2 : 0);
    }
    atomic_store_explicit(&p->segs[n], seg, memory_order_release);
    atomic_store_explicit(&p->nsegs, n + 1, memory_order_release);
    push_chain(sh, &seg[0], &seg[UP_FUT_SEG_SIZE - 1]);
out:
    pthread_mutex_unlock(&p->grow_lock);
    return rc;
}

/* A slot just taken off a free list: a new generation, no flags; its
 * handle. A slot on a free list has CLAIMED and RELEASED set, so no late
 * release or resolution through an old handle writes the state meanwhile;
 * after this store, such a handle names another generation and is refused.
 * Relaxed: the new owner passes the handle on through its own
 * synchronisation (the ring's commit). */
static struct upulsar_future *renew(up_fslot_t *f)
{
    uint32_t gen =
        (gen_of(atomic_load_explicit(&f->state, memory_order_relaxed)) + 1) & F_GEN_MASK;
    atomic_store_explicit(&f->state, gen << F_GEN_SHIFT, memory_order_relaxed);
    return &f->alias[gen];
}

/* Pop one slot off @p sh: NULL when it is empty (*@p seen: its head then). */
static up_fslot_t *pop(up_future_pool_t *p, up_fshard_t *sh, uint64_t *seen)
{
    uint64_t old = atomic_load_explicit(&sh->head, memory_order_acquire);
    for (;;) {
        uint32_t top = (uint32_t)old;
        if (top == 0) {
            *seen = old;
            return NULL;
        }
        up_fslot_t *f = slot(p, top - 1);
        uint32_t next = atomic_load_explicit(&f->next, memory_order_relaxed);
        uint64_t nw = head_after(old, next);
        if (atomic_compare_exchange_weak_explicit(&sh->head, &old, nw, memory_order_acquire,
                                                  memory_order_acquire))
            return f;
    }
}

struct upulsar_future *up_future_alloc(up_future_pool_t *p)
{
    up_fshard_t *own = own_shard(p);
    uint64_t seen[UP_FUT_SHARDS];
    for (;;) {
        /* the own shard first, then the others in turn */
        up_fshard_t *sh = own;
        for (int i = 0; i < UP_FUT_SHARDS; i++) {
            up_fslot_t *f = pop(p, sh, &seen[sh - p->shard]);
            if (f) {
                atomic_fetch_add_explicit(&sh->taken, 1, memory_order_relaxed);
                return renew(f);
            }
            sh = sh + 1 == p->shard + UP_FUT_SHARDS ? p->shard : sh + 1;
        }
        if (grow(p, own, seen))
            return NULL;
    }
}

/* up_future_alloc_many() one by one: how many were taken. */
static unsigned alloc_each(up_future_pool_t *p, struct upulsar_future **out, unsigned n)
{
    unsigned k;
    for (k = 0; k < n; k++)
        if (!(out[k] = up_future_alloc(p)))
            break;
    return k;
}

unsigned up_future_alloc_many(up_future_pool_t *p, struct upulsar_future **out, unsigned n)
{
    if (n == 0)
        return 0;
    up_fshard_t *sh = own_shard(p);
    uint64_t old = atomic_load_explicit(&sh->head, memory_order_acquire);
    for (int tries = 0;; tries++) {
        if (tries == 4) /* the list keeps changing under the walk */
            return alloc_each(p, out, n);
        /* walk n slots down from the top of the own shard: every change of
         * its head (push or pop) bumps the tag, so while the CAS below
         * succeeds no slot of the walk was taken or put back meanwhile and
         * the links read are the list's; a walk that raced with a change
         * reads links that are still slot indices (or 0) and fails its CAS */
        uint32_t top = (uint32_t)old, next = top;
        up_fslot_t *first = NULL;
        unsigned k = 0;
        while (k < n && next) {
            up_fslot_t *f = slot(p, next - 1);
            if (!first)
                first = f;
            next = atomic_load_explicit(&f->next, memory_order_relaxed);
            k++;
        }
        if (k < n) /* not enough on the shard: one by one (others, growth) */
            return alloc_each(p, out, n);
        uint64_t nw = head_after(old, next);
        if (atomic_compare_exchange_weak_explicit(&sh->head, &old, nw, memory_order_acquire,
                                                  memory_order_acquire)) {
            up_fslot_t *f = first;
            for (unsigned i = 0; i < n; i++) {
                uint32_t nx = atomic_load_explicit(&f->next, memory_order_relaxed);
                out[i] = renew(f);
                if (i + 1 < n)
                    f = slot(p, nx - 1);
            }
            atomic_fetch_add_explicit(&sh->taken, n, memory_order_relaxed);
            return n;
        }
    }
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

/* Claim the result of @p h's slot: only one resolution per generation gets
 * past this CAS; a second one (or one through a handle of an earlier
 * generation) writes nothing. Relaxed is enough: the CAS only has to be
 * atomic to pick one winner, and nobody reads the result on the strength of
 * CLAIMED (readers wait for DONE, published with release in publish()). */
static up_fslot_t *claim(struct upulsar_future *h)
{
    up_fslot_t *f = up_future_slot(h);
    uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
    do {
        if (gen_of(s) != h->n || (s & F_CLAIMED))
            return NULL;
    } while (!atomic_compare_exchange_weak_explicit(&f->state, &s, s | F_CLAIMED,
                                                    memory_order_relaxed, memory_order_relaxed));
    return f;
}

static void publish(up_fslot_t *f)
{
    /* R1: release publishes the result to waiters (A1); acquire pairs with
     * a release that came first, so the caller is done with the slot before
     * it goes back to the free list */
    uint32_t old = atomic_fetch_or_explicit(&f->state, F_DONE, memory_order_acq_rel);
    if (old & F_WAITERS)
        futex(&f->state, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
    if (old & F_RELEASED)
        put(f);
}

/* Keep @p id in @p f: a chunked message's first chunk as a delta from its
 * last (ledger ids only grow on a topic; a first chunk "after" the last or
 * a delta out of range cannot be kept: the first chunk's position is then
 * reported unknown). */
static void fid_pack(up_fid_t *f, const upulsar_msg_id_t *id)
{
    f->ledger = id->ledger_id;
    f->entry = id->entry_id;
    f->partition = id->partition;
    if (id->first_chunk_ledger_id == id->ledger_id && id->first_chunk_entry_id == id->entry_id) {
        f->index = id->batch_index;
        f->u.first_entry = 0;
        f->u.size = id->batch_size;
        return;
    }
    uint64_t delta = id->ledger_id - id->first_chunk_ledger_id;
    bool ok = id->first_chunk_ledger_id <= id->ledger_id &&
              delta <= (uint64_t)INT32_MAX + (uint64_t)UP_FID_CHUNKED;
    f->index = ok ? UP_FID_CHUNKED - (int32_t)delta : UP_FID_CHUNKED;
    f->u.first_entry = ok ? id->first_chunk_entry_id : UPULSAR_ID_UNKNOWN;
}

static void fid_unpack(const up_fid_t *f, upulsar_msg_id_t *id)
{
    id->ledger_id = f->ledger;
    id->entry_id = f->entry;
    id->partition = f->partition;
    id->reserved = 0;
    if (f->index > UP_FID_CHUNKED) {
        id->batch_index = f->index;
        id->batch_size = f->u.size;
        id->first_chunk_ledger_id = f->ledger;
        id->first_chunk_entry_id = f->entry;
        return;
    }
    id->batch_index = -1;
    id->batch_size = 0;
    if (f->u.first_entry == UPULSAR_ID_UNKNOWN) {
        id->first_chunk_ledger_id = id->first_chunk_entry_id = UPULSAR_ID_UNKNOWN;
    } else {
        id->first_chunk_ledger_id = f->ledger - (uint64_t)(UP_FID_CHUNKED - f->index);
        id->first_chunk_entry_id = f->u.first_entry;
    }
}

bool up_future_resolve(struct upulsar_future *h, upulsar_err_t err, const upulsar_msg_id_t *id)
{
    up_fslot_t *f = claim(h);
    if (!f)
        return false;
    f->err = err;
    if (err != UPULSAR_OK)
        f->res.detail = NULL;
    else if (id)
        fid_pack(&f->res.id, id);
    else
        memset(&f->res.id, 0, sizeof f->res.id);
    publish(f);
    return true;
}

bool up_future_fail(struct upulsar_future *h, upulsar_err_t err, up_detail_t *d)
{
    up_fslot_t *f = claim(h);
    if (!f)
        return false;
    /* the caller holds a reference, so this one is not taken from 0 */
    if (d && !d->fixed)
        atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
    f->err = err;
    f->res.detail = d;
    publish(f);
    return true;
}

static upulsar_err_t result(up_fslot_t *f, upulsar_msg_id_t *id)
{
    if (id && f->err == UPULSAR_OK)
        fid_unpack(&f->res.id, id);
    return (upulsar_err_t)f->err;
}

/* A handle given back already, or of an earlier use of its slot. */
static upulsar_err_t stale(const struct upulsar_future *h, uint32_t s)
{
    if (gen_of(s) != h->n)
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "future %p was released and its slot handed out again", (void *)h);
    return up_seterr(UPULSAR_ERR__INVALID_ARG, "future %p was released", (void *)h);
}

upulsar_err_t upulsar_future_poll(upulsar_future_t *h, upulsar_msg_id_t *id)
{
    if (!h)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "future is NULL");
    up_fslot_t *f = up_future_slot(h);
    uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire); /* A1 */
    if (gen_of(s) != h->n || (s & F_RELEASED))
        return stale(h, s);
    if (s & F_DONE)
        return result(f, id);
    return UPULSAR_ERR__PENDING;
}

upulsar_err_t upulsar_future_wait(upulsar_future_t *h, int timeout_ms, upulsar_msg_id_t *id)
{
    if (!h)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "future is NULL");
    up_fslot_t *f = up_future_slot(h);
    uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire); /* A1 */
    if (gen_of(s) != h->n || (s & F_RELEASED))
        return stale(h, s);
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

const char *upulsar_future_error_detail(const upulsar_future_t *h)
{
    if (!h)
        return NULL;
    up_fslot_t *f = up_future_slot(h);
    uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire); /* A1 */
    if (gen_of(s) != h->n || (s & F_RELEASED) || !(s & F_DONE) || f->err == UPULSAR_OK)
        return NULL;
    return f->res.detail ? f->res.detail->text : upulsar_err_str((upulsar_err_t)f->err);
}

upulsar_err_t upulsar_future_release(upulsar_future_t *h)
{
    if (!h)
        return UPULSAR_OK;
    up_fslot_t *f = up_future_slot(h);
    /* RELEASED is set once per generation, by CAS: a second release (or
     * one through a handle of an earlier generation) changes nothing. The
     * CAS is acq_rel: acquire pairs with the resolver's R1 (it is done with
     * the slot before we put it back), release orders the caller's reads
     * of the result before a resolver that comes second puts it back. */
    uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
    do {
        if (gen_of(s) != h->n || (s & F_RELEASED)) {
            upulsar_err_t e = stale(h, s);
            if (f->pool->client)
                up_log(f->pool->client, UPULSAR_LOG_ERR,
                       "upulsar_future_release: %s (a future must be released exactly once); "
                       "ignored",
                       upulsar_last_error());
            return e;
        }
    } while (!atomic_compare_exchange_weak_explicit(&f->state, &s, s | F_RELEASED,
                                                    memory_order_acq_rel, memory_order_relaxed));
    if (s & F_DONE)
        put(f);
    return UPULSAR_OK;
}

/* ---- delivery reports ----------------------------------------------------- */

static void dr_call(up_rp_t *rp, upulsar_delivery_report_t *dr, upulsar_err_t err,
                    const upulsar_msg_id_t *id, up_detail_t *det)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    dr->err = err;
    dr->partition = rp->partition;
    if (err == UPULSAR_OK) {
        dr->id = id;
        dr->detail = NULL;
        cf->dr_cb(dr, cf->dr_opaque);
        return;
    }
    dr->id = NULL;
    dr->detail = det ? up_detail_text(det) : upulsar_err_str(err);
    up_show_error(dr->detail);
    cf->dr_cb(dr, cf->dr_opaque);
    up_show_error(NULL);
}

/* Where @p b's records are: in front of the entry's header when the frame
 * was built in the record buffer (the header may have moved them up), else
 * (compressed: the frame is in zbuf; not framed yet) where they were
 * written. Compared as integers: the frame may be in another buffer. */
static const uint8_t *batch_records(const up_batch_t *b)
{
    uintptr_t f = (uintptr_t)b->frame, lo = (uintptr_t)b->buf;
    if (b->frame && f >= lo && f - lo < b->cap && b->frame_len >= b->rec_len)
        return b->frame + b->frame_len - b->rec_len;
    return b->buf + HDR_ROOM;
}

void up_dr_resolve_batch(up_rp_t *rp, up_batch_t *b, upulsar_err_t err, upulsar_msg_id_t *id,
                         up_detail_t *det)
{
    const uint8_t *recs = b->chunk == UP_CHUNK_NONE ? batch_records(b) : NULL;
    size_t off = 0;
    bool readable = recs != NULL;
    for (uint32_t i = 0; i < b->n; i++) {
        up_done_t *d = &b->done[i];
        if (b->chunk == UP_CHUNK_NONE)
            id->batch_index = (int32_t)i;
        resolve_one(d->f, d->cb, d->opaque, err, id, det);
        upulsar_delivery_report_t dr = {.sequence_id = (int64_t)(b->first_seq + i),
                                        .msg_opaque = d->opaque};
        up_rec_info_t ri;
        if (b->chunk == UP_CHUNK_ONLY && (b->dr_flags & UP_DR_KEPT)) {
            /* a message sent whole, as it kept itself (chunk.c) */
            dr.payload = b->dr_len ? b->dr_payload : NULL;
            dr.len = b->dr_len;
            dr.payload_kept = 1;
            dr.null_value = (b->dr_flags & UP_DR_NULL) != 0;
            if (b->dr_flags & UP_DR_KEY) {
                dr.key = b->kkey;
                dr.key_len = b->kkey_len;
                dr.key_b64 = (b->dr_flags & UP_DR_B64) != 0;
            }
            dr.sequence_id = (int64_t)b->first_seq;
        } else if (readable && up_record_info(recs, b->rec_len, &off, &ri) == 1) {
            dr.payload = ri.payload_len ? ri.payload : NULL;
            dr.len = ri.payload_len;
            dr.payload_kept = 1;
            dr.null_value = ri.null_value;
            dr.key = ri.key;
            dr.key_len = ri.key_len;
            dr.key_b64 = ri.key_b64 && ri.key;
            if (ri.has_seq)
                dr.sequence_id = (int64_t)ri.seq;
        } else {
            readable = false; /* never for records the drain wrote */
            if (b->chunk != UP_CHUNK_NONE)
                dr.sequence_id = (int64_t)b->first_seq;
        }
        dr_call(rp, &dr, err, id, det);
    }
}

/* The report of a message read back from its record. */
static void dr_of_view(upulsar_delivery_report_t *dr, const up_rec_view_t *v)
{
    dr->payload = v->m.payload_size ? v->payload : NULL;
    dr->len = v->m.payload_size;
    dr->payload_kept = 1;
    dr->null_value = v->m.null_value;
    dr->key = v->m.key;
    dr->key_len = v->m.key ? v->m.key_len : 0;
    dr->key_b64 = v->m.key_b64;
    dr->msg_opaque = v->ext.opaque;
    /* it was never given an id, unless it came with its own */
    dr->sequence_id = (v->meta.mflags & UP_META_SEQ) ? (int64_t)v->meta.seq : -1;
}

void up_dr_view(up_rp_t *rp, const up_rec_view_t *v, upulsar_err_t err, up_detail_t *det)
{
    upulsar_delivery_report_t dr = {0};
    dr_of_view(&dr, v);
    dr_call(rp, &dr, err, NULL, det);
    if (v->ext.free_cb)
        v->ext.free_cb((void *)v->ext.payload, v->ext.opaque);
}

void up_dr_ring(up_rp_t *rp, uint64_t pos, upulsar_err_t err, up_detail_t *det)
{
    up_rec_view_t v;
    if (up_rec_read(&rp->ring, pos, &rp->scratch, &rp->scratch_cap, &v) == 0) {
        up_dr_view(rp, &v, err, det);
        return;
    }
    /* out of memory copying a record that wraps: what its head says */
    up_rec_t h;
    up_rec_ext_t ext;
    up_rec_read_head(&rp->ring, pos, &h, &ext);
    upulsar_delivery_report_t dr = {.sequence_id = -1, .msg_opaque = ext.opaque};
    dr_call(rp, &dr, err, NULL, det);
    if (ext.free_cb)
        ext.free_cb((void *)ext.payload, ext.opaque);
}
