/* future.h -- pooled per-message futures.
 *
 * A future is a slot in a pool owned by the client: a state word, the
 * result and a free-list link. Slots live in fixed segments that are only
 * freed with the pool, so a pointer stays valid for the client's lifetime.
 *
 * Handles and generations. What callers hold (struct upulsar_future *) is
 * not the slot itself but one of UP_FUT_ALIASES one-byte aliases inside it:
 * each time the slot is handed out its generation goes up by one and the
 * handle is the alias numbered generation mod UP_FUT_ALIASES. The state word
 * carries that number too, so a handle from an earlier use of the slot (a
 * second release after the slot was handed out again) no longer matches
 * and is refused, unless the slot was handed out a multiple of
 * UP_FUT_ALIASES times in between.
 *
 * State word: bits 0-3 flags, bits 8-10 the generation's alias number.
 *  CLAIMED  a resolver owns the result (set once per generation, by CAS);
 *  DONE     the result is written;
 *  RELEASED the user gave it back (set once per generation, by CAS);
 *  WAITERS  someone sleeps in futex wait.
 * Whoever sets the second of DONE/RELEASED returns the slot to the free
 * list; CLAIMED and RELEASED can each be set only once per generation, so
 * that happens exactly once. The resolver claims (CAS, acquire), writes the
 * result, then fetch_or(DONE, acq_rel) (R1); waiters load-acquire the state
 * (A1) before reading the result, and are woken by futex only when WAITERS
 * was set, so an unobserved resolution costs no syscall.
 *
 * The result is the error code and, on success, the message id or, on
 * failure, a reference to the failure's detail text (up_detail_t, interned
 * in the pool's detail store); whoever puts the slot back on the free list
 * drops that reference.
 *
 * The free list is a Treiber stack whose head packs a 32-bit ABA tag with a
 * 32-bit slot index (+1, 0 = empty). @internal
 */
#ifndef UP_FUTURE_H
#define UP_FUTURE_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upulsar/upulsar.h"

#define UP_FUT_SEG_BITS 12
#define UP_FUT_SEG_SIZE (1u << UP_FUT_SEG_BITS)
#define UP_FUT_MAX_SEGS 4096
#define UP_FUT_ALIASES 8

/* A handle: alias number n of its slot, at &slot->alias[n], holding n. */
struct upulsar_future {
    uint8_t n;
};

/* A failure detail: an immutable, interned text (see the detail store
 * below). */
typedef struct up_detail {
    struct up_detail *next; /* hash chain (store lock) */
    _Atomic uint32_t refs;  /* futures resolved with it + sites using it */
    uint32_t hash;
    bool fixed;             /* the store's fallback: not counted, not freed */
    const char *text;
} up_detail_t;

/* A message id as a slot keeps it (32 bytes; upulsar_msg_id_t has 48):
 * the first chunk's position is implied (equal to the message's) unless
 * `index` is UP_FID_CHUNKED - delta, which marks a chunked message whose
 * first chunk is at ledger - delta, entry `first_entry` (batch index -1,
 * size 0). up_fid_pack() / up_fid_unpack() convert, future.c. */
typedef struct up_fid {
    uint64_t ledger, entry;
    int32_t partition;
    int32_t index;
    union {
        int32_t size;       /* not chunked: batch_size */
        uint64_t first_entry; /* chunked */
    } u;
} up_fid_t;
#define UP_FID_CHUNKED (-2)

typedef struct up_fslot {
    _Atomic uint32_t state;
    _Atomic uint32_t next; /* free-list link: index + 1, 0 = end */
    uint32_t idx;
    int32_t err;
    union {
        up_fid_t id;          /* err == UPULSAR_OK */
        up_detail_t *detail;  /* err != UPULSAR_OK: a reference, or NULL */
    } res;
    struct up_future_pool *pool;
    struct upulsar_future alias[UP_FUT_ALIASES];
} up_fslot_t;

/* The slot behind handle @p h (alias number h->n of it). */
static inline up_fslot_t *up_future_slot(const struct upulsar_future *h)
{
    return (up_fslot_t *)(void *)((char *)(uintptr_t)(h - h->n) - offsetof(up_fslot_t, alias));
}

struct upulsar_client;

/* Detail store: the texts of failed futures, interned by content, so a
 * run of failures with the same reason shares one allocation. An entry is
 * referenced by every future resolved with it (until the future goes back
 * to the free list) and by the failure site while it resolves futures and
 * calls callbacks. Unreferenced entries stay for reuse until the store is
 * full (UP_DETAIL_MAX entries), then are freed; when all UP_DETAIL_MAX are
 * referenced, a new failure gets the fixed fallback text. So the store
 * holds at most UP_DETAIL_MAX texts of at most UP_DETAIL_TEXT_MAX bytes
 * (about 600 KiB) whatever fails, and nothing is allocated per failure
 * while the reason repeats. */
#define UP_DETAIL_MAX 1024
#define UP_DETAIL_TEXT_MAX 512 /* bytes, NUL included; longer texts are cut */
#define UP_DETAIL_BUCKETS 256

typedef struct up_detail_store {
    pthread_mutex_t lock;
    up_detail_t *buckets[UP_DETAIL_BUCKETS]; /* (lock) */
    uint32_t count;                          /* entries held (lock) */
    _Atomic int idle_hint; /* an entry's references dropped to 0 */
} up_detail_store_t;

/* The free list is cut into UP_FUT_SHARDS lists (shards), each a Treiber
 * stack of slot indices: a thread takes from and gives back to its own
 * shard (chosen once per thread), so threads that send with futures do not
 * take turns on one head; a thread whose shard is empty takes from the
 * others, and grows the pool only when all are empty. A shard is 128
 * bytes, the pair of lines a core fetches together, so no two shards'
 * words share one whatever the pool's alignment (it sits in the client,
 * from calloc). */
#define UP_FUT_SHARDS 8

typedef struct up_fshard {
    _Atomic uint64_t head; /* (tag << 32) | (index + 1); every change bumps the tag */
    /* futures taken from this shard less those given back to it: their sum
     * over the shards is the pool's in_use (one may go out of one shard and
     * back into another, so one shard's count may be negative) */
    _Atomic int64_t taken;
    char pad[128 - 2 * sizeof(uint64_t)];
} up_fshard_t;

typedef struct up_future_pool {
    up_fshard_t shard[UP_FUT_SHARDS];
    _Atomic(up_fslot_t *) segs[UP_FUT_MAX_SEGS];
    _Atomic uint32_t nsegs;
    uint32_t max_segs;
    pthread_mutex_t grow_lock;
    /* where misuse (a future given back twice) is logged; NULL: nowhere */
    struct upulsar_client *client;
    up_detail_store_t details;
} up_future_pool_t;

/** Pool that grows by segments of 4096 futures up to @p max_futures. */
int up_future_pool_init(up_future_pool_t *p, uint64_t max_futures);
void up_future_pool_destroy(up_future_pool_t *p);

/** Futures taken and not back in the pool (statistics and tests; exact
 *  when nothing takes or gives back meanwhile). @thread any */
int64_t up_future_pool_in_use(up_future_pool_t *p);

/** Take a fresh pending future, or NULL when the pool is at its maximum
 *  (or out of memory). @thread any. Allocates only when growing. */
struct upulsar_future *up_future_alloc(up_future_pool_t *p);

/** Take @p n fresh pending futures into @p out[0..n) (one exchange on the
 *  free list when it holds n): how many were taken, fewer than @p n only
 *  when the pool is at its maximum (or out of memory). @thread any.
 *  Allocates only when growing. */
unsigned up_future_alloc_many(up_future_pool_t *p, struct upulsar_future **out, unsigned n);

/** Resolve @p f. Only the first resolution of a future counts: a later one
 *  (or one through a handle whose slot was handed out again) changes
 *  nothing and returns false. @thread loop/watchdog */
bool up_future_resolve(struct upulsar_future *f, upulsar_err_t err,
                       const upulsar_msg_id_t *id);

/** Resolve @p f with @p err (not UPULSAR_OK) and the detail @p d (may be
 *  NULL: upulsar_future_error_detail() then gives the error's generic
 *  text). The future takes its own reference to @p d if this resolution
 *  counts; the caller keeps its own. @thread loop/watchdog */
bool up_future_fail(struct upulsar_future *f, upulsar_err_t err, up_detail_t *d);

/** The interned detail "<printf>" (cut to UP_DETAIL_TEXT_MAX - 1 bytes),
 *  with one reference for the caller, who drops it with up_detail_put().
 *  Never NULL: when the store is full of referenced texts (or memory runs
 *  out) the fixed fallback. Takes the store's lock; allocates only for a
 *  text not held yet. @thread any */
up_detail_t *up_detail_get(up_future_pool_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** Drop a reference taken by up_detail_get(). NULL is ignored. Lock-free.
 *  @thread any */
void up_detail_put(up_future_pool_t *p, up_detail_t *d);

/** Texts the store holds now (referenced or kept for reuse; the fallback
 *  is not counted): at most UP_DETAIL_MAX. @thread any */
uint32_t up_detail_count(up_future_pool_t *p);

/** The text of @p d (NULL: NULL). */
static inline const char *up_detail_text(const up_detail_t *d) { return d ? d->text : NULL; }

/* ---- delivery reports (upulsar_conf_set_delivery_report_cb()) ----------
 * Called only when the producer's conf has a report callback; each runs
 * the report after the message's future and its own callback resolved
 * (see the callers). @thread loop */
struct up_rp;
struct up_batch;
struct up_rec_view;

/** Resolve every message of batch @p b (futures, callbacks) and report
 *  each, its payload and key read back from the batch's records (a
 *  chunked message's are not kept). @p id is the batch's id, its
 *  batch_index set per message here; @p det the failure's detail. */
void up_dr_resolve_batch(struct up_rp *rp, struct up_batch *b, upulsar_err_t err,
                         upulsar_msg_id_t *id, up_detail_t *det);

/** Report the message read as @p v that failed with @p err while it was
 *  being batched (its future already resolved), then call its free_cb. */
void up_dr_view(struct up_rp *rp, const struct up_rec_view *v, upulsar_err_t err,
                up_detail_t *det);

/** Report the record at ring position @p pos of @p rp (not released yet),
 *  failed unread with @p err (its future already resolved), then call its
 *  free_cb. */
void up_dr_ring(struct up_rp *rp, uint64_t pos, upulsar_err_t err, up_detail_t *det);
#endif
