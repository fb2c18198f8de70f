/* test_future.c -- the future pool at the unit level: a future resolves
 * exactly once (a second resolution changes nothing), a future given back
 * twice never reaches the free list twice, and after any of that the pool
 * still hands out distinct futures that each carry their own result.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "future.h"

static up_future_pool_t pool;

static void setup(void) { cr_assert_eq(up_future_pool_init(&pool, 8 * UP_FUT_SEG_SIZE), 0); }
static void teardown(void) { up_future_pool_destroy(&pool); }

TestSuite(future_once, .init = setup, .fini = teardown);

static upulsar_msg_id_t id_of(uint64_t n)
{
    upulsar_msg_id_t id = {n, n + 1, (int32_t)(n % 7), (int32_t)(n % 5), 9, 0, n, n + 1};
    return id;
}

static int64_t in_use(void) { return up_future_pool_in_use(&pool); }

/* The pool is sound: @p n futures taken at once are distinct, each resolves
 * with its own result, and once all are given back none is in use. */
static void assert_pool_sound(int n)
{
    upulsar_future_t **fs = calloc((size_t)n, sizeof *fs);
    cr_assert_not_null(fs);
    for (int i = 0; i < n; i++) {
        fs[i] = up_future_alloc(&pool);
        cr_assert_not_null(fs[i], "future %d", i);
        cr_assert_eq(upulsar_future_poll(fs[i], NULL), UPULSAR_ERR__PENDING,
                     "future %d handed out already resolved", i);
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            cr_assert_neq(fs[i], fs[j], "futures %d and %d are the same object", i, j);
    for (int i = 0; i < n; i++) {
        upulsar_msg_id_t id = id_of((uint64_t)i);
        up_future_resolve(fs[i], UPULSAR_OK, &id);
    }
    for (int i = 0; i < n; i++) {
        upulsar_msg_id_t got;
        cr_assert_eq(upulsar_future_poll(fs[i], &got), UPULSAR_OK);
        cr_assert_eq(got.ledger_id, (uint64_t)i, "future %d carries the result of %llu", i,
                     (unsigned long long)got.ledger_id);
        cr_assert_eq(got.entry_id, (uint64_t)i + 1);
    }
    for (int i = 0; i < n; i++)
        upulsar_future_release(fs[i]);
    cr_assert_eq(in_use(), 0);
    free(fs);
}

/* A future keeps every field of an id it resolves with, the first chunk of
 * a chunked message included (in the same ledger as the last, an earlier
 * one, or unknown when its last chunk's position is). */
Test(future_once, ids_of_whole_and_chunked_messages_read_back_exactly)
{
    const upulsar_msg_id_t ids[] = {
        {7, 9, 3, 4, 10, 0, 7, 9},                                /* in a batch */
        {7, 9, -1, -1, 0, 0, 7, 9},                               /* a plain entry */
        {7, 9, 2, -1, 0, 0, 7, 5},                                /* chunks, one ledger */
        {12, 0, 2, -1, 0, 0, 11, 40},                             /* across ledgers */
        {UPULSAR_ID_UNKNOWN, UPULSAR_ID_UNKNOWN, 1, -1, 0, 0, UPULSAR_ID_UNKNOWN,
         UPULSAR_ID_UNKNOWN},                                     /* de-duplicated */
        {UPULSAR_ID_UNKNOWN, UPULSAR_ID_UNKNOWN, 1, 5, 6, 0, UPULSAR_ID_UNKNOWN,
         UPULSAR_ID_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        upulsar_future_t *f = up_future_alloc(&pool);
        cr_assert(up_future_resolve(f, UPULSAR_OK, &ids[i]));
        upulsar_msg_id_t got;
        memset(&got, 0xab, sizeof got);
        cr_assert_eq(upulsar_future_poll(f, &got), UPULSAR_OK);
        cr_assert_eq(got.ledger_id, ids[i].ledger_id, "id %zu", i);
        cr_assert_eq(got.entry_id, ids[i].entry_id, "id %zu", i);
        cr_assert_eq(got.partition, ids[i].partition, "id %zu", i);
        cr_assert_eq(got.batch_index, ids[i].batch_index, "id %zu", i);
        cr_assert_eq(got.batch_size, ids[i].batch_size, "id %zu", i);
        cr_assert_eq(got.first_chunk_ledger_id, ids[i].first_chunk_ledger_id, "id %zu", i);
        cr_assert_eq(got.first_chunk_entry_id, ids[i].first_chunk_entry_id, "id %zu", i);
        cr_assert_eq(memcmp(&got, &ids[i], sizeof got), 0, "id %zu: bytes differ", i);
        upulsar_future_release(f);
    }
}

Test(future_once, resolving_twice_keeps_the_first_result)
{
    upulsar_future_t *f = up_future_alloc(&pool);
    cr_assert_not_null(f);
    upulsar_msg_id_t first = id_of(42);
    cr_assert(up_future_resolve(f, UPULSAR_OK, &first));
    cr_assert_not(up_future_resolve(f, UPULSAR_ERR__MSG_TIMED_OUT, NULL),
                  "a second resolution must report that it did nothing");
    upulsar_msg_id_t got;
    cr_assert_eq(upulsar_future_poll(f, &got), UPULSAR_OK, "the second resolution overwrote");
    cr_assert_eq(got.ledger_id, 42);
    cr_assert_eq(got.entry_id, 43);
    cr_assert_eq(upulsar_future_wait(f, 0, &got), UPULSAR_OK);
    upulsar_future_release(f);
    cr_assert_eq(in_use(), 0);
    assert_pool_sound(1000);
}

/* Released first, then resolved twice: the first resolution gives the slot
 * back, the second must not give it back again. */
Test(future_once, resolving_twice_after_release_gives_the_slot_back_once)
{
    upulsar_future_t *f = up_future_alloc(&pool);
    cr_assert_not_null(f);
    upulsar_future_release(f);
    cr_assert_eq(in_use(), 1, "a pending future is in use until it resolves");
    upulsar_msg_id_t id = id_of(1);
    cr_assert(up_future_resolve(f, UPULSAR_OK, &id));
    cr_assert_eq(in_use(), 0);
    cr_assert_not(up_future_resolve(f, UPULSAR_ERR__CLOSED, NULL));
    cr_assert_eq(in_use(), 0, "the slot went back to the pool twice");
    assert_pool_sound(1000);
}

/* Resolved, released, released again: the slot goes back once. */
Test(future_once, releasing_twice_after_resolution_keeps_the_pool_sound)
{
    upulsar_future_t *f = up_future_alloc(&pool);
    cr_assert_not_null(f);
    upulsar_msg_id_t id = id_of(7);
    up_future_resolve(f, UPULSAR_OK, &id);
    cr_assert_eq(upulsar_future_release(f), UPULSAR_OK);
    cr_assert_eq(in_use(), 0);
    cr_assert_eq(upulsar_future_release(f), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(in_use(), 0, "the slot went back to the pool twice");
    assert_pool_sound(1000);
}

/* Released twice while pending, then resolved: the slot goes back once. */
Test(future_once, releasing_twice_before_resolution_keeps_the_pool_sound)
{
    upulsar_future_t *f = up_future_alloc(&pool);
    cr_assert_not_null(f);
    cr_assert_eq(upulsar_future_release(f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_release(f), UPULSAR_ERR__INVALID_ARG);
    upulsar_msg_id_t id = id_of(3);
    up_future_resolve(f, UPULSAR_OK, &id);
    cr_assert_eq(in_use(), 0);
    assert_pool_sound(1000);
}

/* A stale second release after the slot was handed out again must leave
 * the new owner's future alone: still pending, then its own result, then
 * given back once. (The free list is LIFO: the next future taken reuses the
 * slot just given back.) */
Test(future_once, a_late_second_release_leaves_the_next_owner_alone)
{
    upulsar_future_t *f = up_future_alloc(&pool);
    cr_assert_not_null(f);
    upulsar_msg_id_t a = id_of(10);
    up_future_resolve(f, UPULSAR_OK, &a);
    upulsar_future_release(f);
    upulsar_future_t *g = up_future_alloc(&pool);
    cr_assert_not_null(g);
    /* the caller's bug: f was given back already */
    cr_assert_eq(upulsar_future_release(f), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(in_use(), 1);
    cr_assert_eq(upulsar_future_poll(g, NULL), UPULSAR_ERR__PENDING);
    upulsar_msg_id_t b = id_of(20);
    up_future_resolve(g, UPULSAR_OK, &b);
    cr_assert_eq(in_use(), 1, "g went back to the pool while its owner still holds it");
    upulsar_msg_id_t got;
    cr_assert_eq(upulsar_future_poll(g, &got), UPULSAR_OK);
    cr_assert_eq(got.ledger_id, 20);
    cr_assert_eq(upulsar_future_release(g), UPULSAR_OK);
    cr_assert_eq(in_use(), 0);
    assert_pool_sound(1000);
}

/* ---- concurrent resolutions of one future ---- */

enum { RACE_N = 20000 };

typedef struct {
    upulsar_future_t **fs;
    upulsar_err_t err;
    uint64_t base;
    atomic_int *go;
    unsigned char *won; /* [RACE_N]: this racer's resolution counted */
} racer_t;

static void *racer(void *a)
{
    racer_t *r = a;
    while (!atomic_load(r->go))
        ;
    for (int i = 0; i < RACE_N; i++) {
        upulsar_msg_id_t id = id_of(r->base + (uint64_t)i);
        bool w = up_future_resolve(r->fs[i], r->err, r->err == UPULSAR_OK ? &id : NULL);
        if (r->won)
            r->won[i] = w;
    }
    return NULL;
}

/* Two threads resolve the same futures at the same time, one with a
 * success, one with an error: each future ends with exactly one of the two
 * results, never a mix (an error with a position, or a success with the
 * other's zeroed position). */
Test(future_once, concurrent_resolutions_leave_one_whole_result)
{
    upulsar_future_t **fs = calloc(RACE_N, sizeof *fs);
    cr_assert_not_null(fs);
    for (int i = 0; i < RACE_N; i++) {
        fs[i] = up_future_alloc(&pool);
        cr_assert_not_null(fs[i]);
    }
    atomic_int go = 0;
    static unsigned char won_ok[RACE_N], won_bad[RACE_N];
    racer_t ok = {fs, UPULSAR_OK, 1000000, &go, won_ok};
    racer_t bad = {fs, UPULSAR_ERR__MSG_TIMED_OUT, 0, &go, won_bad};
    pthread_t t1, t2;
    cr_assert_eq(pthread_create(&t1, NULL, racer, &ok), 0);
    cr_assert_eq(pthread_create(&t2, NULL, racer, &bad), 0);
    atomic_store(&go, 1);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    for (int i = 0; i < RACE_N; i++) {
        upulsar_msg_id_t got = {0};
        upulsar_err_t e = upulsar_future_poll(fs[i], &got);
        cr_assert_eq(won_ok[i] + won_bad[i], 1, "future %d: %d resolutions counted", i,
                     won_ok[i] + won_bad[i]);
        cr_assert_eq(e, won_ok[i] ? UPULSAR_OK : UPULSAR_ERR__MSG_TIMED_OUT,
                     "future %d: the result is not the winner's", i);
        if (e == UPULSAR_OK) {
            cr_assert_eq(got.ledger_id, 1000000u + (uint64_t)i, "future %d: mixed result", i);
            cr_assert_eq(got.entry_id, 1000001u + (uint64_t)i, "future %d: mixed result", i);
        } else {
            cr_assert_eq(e, UPULSAR_ERR__MSG_TIMED_OUT, "future %d: %d", i, (int)e);
        }
        upulsar_future_release(fs[i]);
    }
    cr_assert_eq(in_use(), 0);
    free(fs);
    assert_pool_sound(1000);
}

typedef struct {
    upulsar_future_t **fs;
    atomic_int *go;
} releaser_t;

static void *releaser(void *a)
{
    releaser_t *r = a;
    while (!atomic_load(r->go))
        ;
    for (int i = 0; i < RACE_N; i++)
        upulsar_future_release(r->fs[i]);
    return NULL;
}

/* One thread resolves while another gives the same futures back: whichever
 * comes second returns each slot to the pool, exactly once. */
Test(future_once, release_racing_resolution_gives_each_slot_back_once)
{
    upulsar_future_t **fs = calloc(RACE_N, sizeof *fs);
    cr_assert_not_null(fs);
    for (int i = 0; i < RACE_N; i++) {
        fs[i] = up_future_alloc(&pool);
        cr_assert_not_null(fs[i]);
    }
    atomic_int go = 0;
    racer_t res = {fs, UPULSAR_OK, 0, &go, NULL};
    releaser_t rel = {fs, &go};
    pthread_t t1, t2;
    cr_assert_eq(pthread_create(&t1, NULL, racer, &res), 0);
    cr_assert_eq(pthread_create(&t2, NULL, releaser, &rel), 0);
    atomic_store(&go, 1);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert_eq(in_use(), 0);
    free(fs);
    assert_pool_sound(1000);
}

/* A released future is refused by poll and wait (INVALID_ARG), whether its
 * slot is still free or was handed out again; the new owner's future is
 * unaffected. */
Test(future_once, a_released_future_is_refused_by_poll_and_wait)
{
    upulsar_future_t *f = up_future_alloc(&pool);
    cr_assert_not_null(f);
    upulsar_msg_id_t id = id_of(5);
    up_future_resolve(f, UPULSAR_OK, &id);
    cr_assert_eq(upulsar_future_release(f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_poll(f, NULL), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_future_wait(f, 1000, NULL), UPULSAR_ERR__INVALID_ARG);
    upulsar_future_t *g = up_future_alloc(&pool);
    cr_assert_not_null(g);
    cr_assert_eq(upulsar_future_poll(f, NULL), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_future_wait(f, -1, NULL), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_future_poll(g, NULL), UPULSAR_ERR__PENDING);
    cr_assert_eq(upulsar_future_release(g), UPULSAR_OK);
    cr_assert_eq(upulsar_future_release(NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_future_poll(NULL, NULL), UPULSAR_ERR__INVALID_ARG);
    up_future_resolve(g, UPULSAR_OK, &id);
    cr_assert_eq(in_use(), 0);
    assert_pool_sound(1000);
}

/* ---- the free list's shards (future.h UP_FUT_SHARDS) ---- */

/* Take @p n futures on this thread (its own shard, then the others). */
static void take_n(upulsar_future_t **fs, int n)
{
    for (int i = 0; i < n; i++) {
        fs[i] = up_future_alloc(&pool);
        cr_assert_not_null(fs[i], "future %d of %d", i, n);
    }
}

typedef struct {
    upulsar_future_t **fs;
    int n;
    bool resolve, release;
} shard_job_t;

static void *shard_worker(void *a)
{
    shard_job_t *j = a;
    if (!j->resolve && !j->release) {
        take_n(j->fs, j->n);
        return NULL;
    }
    for (int i = 0; i < j->n; i++) {
        if (j->resolve) {
            upulsar_msg_id_t id = id_of((uint64_t)i);
            up_future_resolve(j->fs[i], UPULSAR_OK, &id);
        }
        if (j->release)
            upulsar_future_release(j->fs[i]);
    }
    return NULL;
}

static void on_thread(shard_job_t *j)
{
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, shard_worker, j), 0);
    pthread_join(t, NULL);
}

/* The shards holding free slots now: a bit each. */
static unsigned nonempty_shards(void)
{
    unsigned m = 0;
    for (int i = 0; i < UP_FUT_SHARDS; i++)
        if ((uint32_t)atomic_load(&pool.shard[i].head))
            m |= 1u << i;
    return m;
}

/* Scenario: one thread takes a whole segment's futures and gives them back
 * (onto its shard), then other threads (other shards) take them again: they
 * are taken from the shard they were given back to, and the pool does not
 * grow; each thread gives back onto a shard of its own; the count in use is
 * right whichever shard a future left and came back to. */
Test(future_once, a_thread_takes_what_another_gave_back_before_the_pool_grows)
{
    int n = UP_FUT_SEG_SIZE;
    upulsar_future_t **fs = calloc((size_t)n, sizeof *fs);
    cr_assert_not_null(fs);
    shard_job_t take = {fs, n, false, false}, give = {fs, n, true, true};
    on_thread(&take);
    cr_assert_eq(atomic_load(&pool.nsegs), 1);
    cr_assert_eq(in_use(), n);
    on_thread(&give);
    cr_assert_eq(in_use(), 0, "taken on one shard, given back on another");
    unsigned held = nonempty_shards(), shards_used = held;
    cr_assert(held && !(held & (held - 1)), "given back onto one shard: %#x", held);
    for (int round = 0; round < 3; round++) {
        on_thread(&take); /* a new thread each time: another shard */
        cr_assert_eq(atomic_load(&pool.nsegs), 1, "round %d: grew with %d futures free", round,
                     n);
        cr_assert_eq(nonempty_shards(), 0, "round %d: every free future taken", round);
        cr_assert_eq(in_use(), n);
        on_thread(&give);
        cr_assert_eq(in_use(), 0);
        held = nonempty_shards();
        cr_assert(held && !(held & (held - 1)), "round %d: given back onto one shard: %#x",
                  round, held);
        cr_assert(!(shards_used & held), "round %d: a new thread gave back onto shard %#x, "
                  "used by an earlier one", round, held);
        shards_used |= held;
    }
    /* one more than a segment: the pool grows, once */
    take_n(fs, n);
    upulsar_future_t *extra = up_future_alloc(&pool);
    cr_assert_not_null(extra);
    cr_assert_eq(atomic_load(&pool.nsegs), 2);
    upulsar_future_release(extra);
    upulsar_msg_id_t id = id_of(1);
    up_future_resolve(extra, UPULSAR_OK, &id);
    for (int i = 0; i < n; i++) {
        up_future_resolve(fs[i], UPULSAR_OK, &id);
        upulsar_future_release(fs[i]);
    }
    cr_assert_eq(in_use(), 0);
    assert_pool_sound(2 * n);
    cr_assert_eq(atomic_load(&pool.nsegs), 2);
    free(fs);
}
