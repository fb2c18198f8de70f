/* test_ring.c -- the ring's memory follows its load: nothing is touched at
 * creation, low load keeps reusing the first page (the consumer moves the
 * positions back to array index 0 when it finds the ring empty), pages are
 * given back after the ring has been idle, and none of this loses, reorders
 * or corrupts a record, or makes a reservation fail, under 4 producer
 * threads.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SCALE 10 /* sanitizers are slow: same shape, fewer records */
#else
#define SCALE 1
#endif

/* bound on waits for what must happen (guards against hangs only) */
#define WAIT_MS 60000

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* Is each page of [p, p + len) resident? Counts the resident ones. A page
 * only read (the shared zero page) counts as resident too. */
static size_t resident_pages(const void *p, size_t len, unsigned char *vec)
{
    cr_assert_eq(mincore((void *)(uintptr_t)p, len, vec), 0);
    size_t n = 0;
    for (size_t i = 0; i < (len + page_size() - 1) / page_size(); i++)
        n += vec[i] & 1;
    return n;
}

/* ---- records: [u32 producer][u32 seq][u32 len][len bytes of (seq*3 + k + producer)] ---- */

static uint32_t rec_len(uint32_t id, uint32_t i)
{
    return (i * 37u + id * 11u) % 300u; /* up to 10 cells with the header */
}

static uint64_t rec_cells(uint32_t id, uint32_t i)
{
    return up_ring_cells_for(12u + rec_len(id, i));
}

static void rec_fill(uint8_t *buf, uint32_t id, uint32_t i)
{
    uint32_t len = rec_len(id, i), hdr[3] = {id, i, len};
    memcpy(buf, hdr, sizeof hdr);
    for (uint32_t k = 0; k < len; k++)
        buf[12 + k] = (uint8_t)(i * 3u + k + id);
}

/* Read the record at the read position and check it is record @p i of
 * producer @p id (when @p id >= 0) or the next one of its producer
 * (next[producer]); steps over it. Returns its producer. */
static uint32_t rec_take(up_ring_t *r, uint32_t *next, uint32_t nprod)
{
    uint32_t hdr[3];
    up_ring_read(r, r->ctail, 0, hdr, sizeof hdr);
    cr_assert_lt(hdr[0], nprod, "record of an unknown producer %u", hdr[0]);
    cr_assert_eq(hdr[1], next[hdr[0]], "producer %u: record %u where %u was due", hdr[0], hdr[1],
                 next[hdr[0]]);
    cr_assert_eq(hdr[2], rec_len(hdr[0], hdr[1]), "producer %u record %u: length", hdr[0], hdr[1]);
    uint8_t got[512], want[512];
    up_ring_read(r, r->ctail, 0, got, 12u + hdr[2]);
    rec_fill(want, hdr[0], hdr[1]);
    cr_assert_arr_eq(got, want, 12u + hdr[2], "producer %u record %u: bytes", hdr[0], hdr[1]);
    next[hdr[0]]++;
    r->ctail += up_ring_cells_for(12u + hdr[2]);
    return hdr[0];
}

static void rec_put(up_ring_t *r, uint32_t id, uint32_t i)
{
    uint8_t buf[512];
    rec_fill(buf, id, i);
    uint64_t pos = 0;
    cr_assert(up_ring_reserve(r, rec_cells(id, i), &pos));
    up_ring_write(r, pos, 0, buf, 12u + rec_len(id, i));
    up_ring_commit(r, pos);
}

TestSuite(ring, .timeout = 300);

/* ---- single thread: what is touched, reused and given back ---- */

Test(ring, creation_touches_no_page)
{
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, 1u << 20), 0);
    static unsigned char vec[1u << 12];
    cr_assert_eq(resident_pages(r.cells, r.map_bytes, vec), 0);
    cr_assert_eq(up_ring_resident_bytes(&r), 0);
    up_ring_destroy(&r);
}

/* Write @p cells cells worth of records of producer 0 from record *@p i on
 * without consuming; returns how many records. */
static uint32_t put_cells(up_ring_t *r, uint32_t *i, uint64_t cells)
{
    uint32_t n = 0;
    for (uint64_t c = 0; c < cells; n++, (*i)++) {
        c += rec_cells(0, *i);
        rec_put(r, 0, *i);
    }
    return n;
}

static void take_all(up_ring_t *r, uint32_t *next, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        cr_assert(up_ring_peek(r), "record %u of %u not committed", k, n);
        rec_take(r, next, 1);
    }
    cr_assert_not(up_ring_peek(r));
    up_ring_release(r);
}

Test(ring, idle_ring_gives_pages_back_and_stays_usable)
{
    const size_t pg = page_size();
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, 64 * 1024), 0);
    static unsigned char vec[64];
    uint32_t i = 0, next = 0;
    /* a burst: records over about 3/4 of the ring, then all consumed */
    uint32_t n = put_cells(&r, &i, r.cap * 3 / 4);
    size_t written = (size_t)(r.ctail + r.cap * 3 / 4) * UP_RING_CELL; /* at least */
    take_all(&r, &next, n);
    cr_assert_geq(resident_pages(r.cells, r.cells_bytes, vec), written / pg,
                  "the pages written are resident");
    uint64_t end = r.ctail;
    /* empty, past the first page: back to index 0 of the next lap */
    up_ring_idle(&r, 1000, 5000);
    cr_assert_eq(r.ctail, (end | r.mask) + 1, "not moved to the next lap's index 0");
    cr_assert_eq(up_ring_head_pos(&r), r.ctail);
    cr_assert_eq(atomic_load(&r.tail), r.ctail);
    size_t burst = up_ring_resident_bytes(&r);
    cr_assert_geq(burst, written, "the figure counts the burst's pages");
    /* not idle long enough yet: nothing given back */
    up_ring_idle(&r, 1000 + 4999, 5000);
    cr_assert_eq(up_ring_resident_bytes(&r), burst);
    cr_assert_geq(resident_pages(r.cells, r.cells_bytes, vec), written / pg);
    /* idle long enough: only the first page of each array stays */
    up_ring_idle(&r, 1000 + 5000, 5000);
    cr_assert_eq(up_ring_resident_bytes(&r), 2 * pg, "%zu bytes", up_ring_resident_bytes(&r));
    cr_assert_leq(resident_pages(r.cells, r.cells_bytes, vec), 1, "cells pages kept");
    cr_assert_leq(resident_pages((const uint8_t *)r.commit, r.map_bytes - r.cells_bytes, vec), 1,
                  "commit pages kept");
    /* given-back pages (the commit words past the first page) read as
     * "not committed" */
    for (uint64_t c = pg / sizeof *r.commit; c < r.cap; c++)
        cr_assert_eq(atomic_load(&r.commit[c]), 0, "commit word %llu", (unsigned long long)c);
    /* the ring works as before: another burst over the given-back pages,
     * read back intact and in order */
    n = put_cells(&r, &i, r.cap * 3 / 4);
    take_all(&r, &next, n);
    cr_assert_eq(next, i);
    up_ring_destroy(&r);
}

Test(ring, release_ms_0_never_gives_back)
{
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, 64 * 1024), 0);
    uint32_t i = 0, next = 0;
    take_all(&r, &next, put_cells(&r, &i, r.cap / 2));
    up_ring_idle(&r, 1, 0);
    size_t burst = up_ring_resident_bytes(&r);
    cr_assert_gt(burst, 2 * page_size());
    up_ring_idle(&r, UINT64_MAX / 2, 0);
    cr_assert_eq(up_ring_resident_bytes(&r), burst);
    up_ring_destroy(&r);
}

/* After a burst, a trickle of records (one at a time, the ring never
 * empty for long) keeps using the first page only: the burst's pages are
 * given back once they went unused for the release time, and the records
 * keep flowing intact. */
Test(ring, pages_of_a_burst_are_given_back_under_a_trickle)
{
    const size_t pg = page_size();
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, 64 * 1024), 0);
    static unsigned char vec[64];
    uint32_t i = 0, next = 0;
    take_all(&r, &next, put_cells(&r, &i, r.cap * 3 / 4));
    uint64_t now = 1000;
    up_ring_idle(&r, now, 5000);
    size_t burst = up_ring_resident_bytes(&r);
    cr_assert_gt(burst, 2 * pg);
    /* one record per 500 us: never empty for the release time */
    int k = 0;
    for (; k < 100 && up_ring_resident_bytes(&r) == burst; k++) {
        now += 500;
        rec_put(&r, 0, i++);
        take_all(&r, &next, 1);
        up_ring_idle(&r, now, 5000);
    }
    cr_assert_eq(up_ring_resident_bytes(&r), 2 * pg);
    cr_assert_geq(k, 5000 / 500, "given back after %d records only", k);
    cr_assert_leq(resident_pages(r.cells, r.cells_bytes, vec), 1);
    for (k = 0; k < 1000; k++) {
        rec_put(&r, 0, i++);
        take_all(&r, &next, 1);
        up_ring_idle(&r, now += 500, 5000);
    }
    cr_assert_eq(next, i);
    cr_assert_eq(up_ring_resident_bytes(&r), 2 * pg);
    up_ring_destroy(&r);
}

/* Low load: one record at a time, each consumed before the next; the ring
 * keeps using its first page however many records go through. */
Test(ring, low_load_stays_on_the_first_page)
{
    const size_t pg = page_size();
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, 1u << 20), 0);
    static unsigned char vec[1u << 12];
    uint32_t i = 0, next = 0;
    for (int k = 0; k < 20000; k++) {
        rec_put(&r, 0, i++);
        take_all(&r, &next, 1);
        up_ring_idle(&r, (uint64_t)k, 0);
    }
    cr_assert_gt(r.ctail, r.cap, "positions moved on through laps");
    cr_assert_eq(up_ring_resident_bytes(&r), 2 * pg);
    /* one page of cells, one of commit words, and the zero page a peek
     * may have read beyond them */
    cr_assert_leq(resident_pages(r.cells, r.map_bytes, vec), 3);
    up_ring_destroy(&r);
}

/* A record reserved and not committed holds the ring: no reset moves it or
 * gives its page back, however long the consumer waits. */
Test(ring, no_reset_while_a_reservation_is_under_way)
{
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, 64 * 1024), 0);
    uint32_t i = 0, next = 0;
    take_all(&r, &next, put_cells(&r, &i, r.cap / 2));
    uint64_t c = r.ctail;
    uint8_t buf[512];
    rec_fill(buf, 0, i);
    uint64_t pos;
    cr_assert(up_ring_reserve(&r, rec_cells(0, i), &pos));
    cr_assert_eq(pos, c);
    for (uint64_t t = 0; t < 10; t++)
        up_ring_idle(&r, t * 1000000, 1);
    cr_assert_eq(r.ctail, c, "reset under a reservation");
    up_ring_write(&r, pos, 0, buf, 12u + rec_len(0, i));
    up_ring_commit(&r, pos);
    i++;
    take_all(&r, &next, 1);
    cr_assert_eq(next, i);
    up_ring_idle(&r, 20000000, 1);
    cr_assert_eq(r.ctail & r.mask, 0, "reset once the record was consumed");
    up_ring_destroy(&r);
}

/* A producer that finds a reset under way waits for it: it neither fails
 * nor reserves until the reset ends. */
typedef struct {
    up_ring_t *r;
    _Atomic int done;
    bool ok;
    uint64_t pos;
} waiter_t;

static void *reserve_once(void *a)
{
    waiter_t *w = a;
    w->ok = up_ring_reserve(w->r, 3, &w->pos);
    atomic_store(&w->done, 1);
    return NULL;
}

Test(ring, reservation_waits_for_a_reset_instead_of_failing)
{
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, 64 * 1024), 0);
    uint32_t i = 0, next = 0;
    take_all(&r, &next, put_cells(&r, &i, 200));
    uint64_t c = r.ctail, nb = (c | r.mask) + 1;
    /* the consumer's claim, as up_ring_idle() makes it */
    uint64_t h = c;
    cr_assert(atomic_compare_exchange_strong(&r.head, &h, c | UP_RING_RESET));
    waiter_t w = {.r = &r};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, reserve_once, &w), 0);
    for (int k = 0; k < 200; k++) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
        cr_assert_eq(atomic_load(&w.done), 0, "returned during the reset (ok=%d)", w.ok);
    }
    r.ctail = nb;
    atomic_store(&r.tail_cache, nb);
    atomic_store(&r.tail, nb);
    atomic_store(&r.head, nb);
    pthread_join(th, NULL);
    cr_assert(w.ok, "failed after the reset");
    cr_assert_eq(w.pos, nb);
    up_ring_destroy(&r);
}

/* ---- 4 producers, a consumer that resets whenever it can ---- */

enum { NPROD = 4 };

typedef struct {
    up_ring_t r;
    pthread_barrier_t start, end;
    int rounds;
    uint32_t per_round[64]; /* records per producer in each round */
    bool fail_fast;         /* count a failed reservation instead of retrying */
    _Atomic uint64_t failures;
} stress_t;

typedef struct {
    stress_t *s;
    uint32_t id;
} prod_arg_t;

static void *stress_producer(void *a)
{
    prod_arg_t *pa = a;
    stress_t *s = pa->s;
    uint32_t i = 0;
    uint8_t buf[512];
    for (int round = 0; round < s->rounds; round++) {
        pthread_barrier_wait(&s->start);
        for (uint32_t k = 0; k < s->per_round[round]; k++, i++) {
            rec_fill(buf, pa->id, i);
            uint64_t pos, n = rec_cells(pa->id, i);
            while (!up_ring_reserve(&s->r, n, &pos)) {
                if (s->fail_fast)
                    atomic_fetch_add(&s->failures, 1);
                sched_yield();
            }
            up_ring_write(&s->r, pos, 0, buf, 12u + rec_len(pa->id, i));
            up_ring_commit(&s->r, pos);
        }
        pthread_barrier_wait(&s->end);
    }
    return NULL;
}

typedef struct {
    uint64_t resets, give_backs, records;
} stress_res_t;

/* The consumer (this thread): drains every round, and whenever it finds
 * no record it calls up_ring_idle() with a clock that advances by 1 us per
 * call and a release after 1 us, so it resets the ring at every chance and
 * gives pages back whenever it finds the empty ring unchanged since its
 * last look, producers running or not. In round 0 it reads nothing before
 * the producers are done (the round fits in the ring), so the ring is used
 * deep and then found idle: one reset and one give-back at least. */
static stress_res_t stress_run(stress_t *s)
{
    stress_res_t res = {0, 0, 0};
    cr_assert_eq(up_ring_init(&s->r, 64 * 1024), 0);
    pthread_barrier_init(&s->start, NULL, NPROD + 1);
    pthread_barrier_init(&s->end, NULL, NPROD + 1);
    pthread_t th[NPROD];
    prod_arg_t args[NPROD];
    for (uint32_t p = 0; p < NPROD; p++) {
        args[p] = (prod_arg_t){s, p};
        cr_assert_eq(pthread_create(&th[p], NULL, stress_producer, &args[p]), 0);
    }
    uint32_t next[NPROD] = {0};
    uint64_t now = 0;
    for (int round = 0; round < s->rounds; round++) {
        pthread_barrier_wait(&s->start);
        uint64_t want = (uint64_t)s->per_round[round] * NPROD, got = 0;
        uint64_t deadline = mono_ms() + WAIT_MS;
        bool ended = false;
        if (round == 0) {
            pthread_barrier_wait(&s->end);
            ended = true;
        }
        /* after the round's records: two more looks at the empty ring (the
         * producers wait at the barrier): a reset, then a give-back */
        for (int extra = 0; extra < 2;) {
            if (got < want && up_ring_peek(&s->r)) {
                rec_take(&s->r, next, NPROD);
                got++;
                if (got % 16 == 0)
                    up_ring_release(&s->r);
                continue;
            }
            up_ring_release(&s->r);
            uint64_t c = s->r.ctail, touched = atomic_load(&s->r.touched);
            up_ring_idle(&s->r, ++now, 1);
            res.resets += s->r.ctail != c;
            res.give_backs += atomic_load(&s->r.touched) < touched;
            if (got == want) {
                if (!ended) {
                    pthread_barrier_wait(&s->end);
                    ended = true;
                }
                extra++;
            } else {
                cr_assert_lt(mono_ms(), deadline, "round %d: %llu of %llu records seen (lost?)",
                             round, (unsigned long long)got, (unsigned long long)want);
                sched_yield();
            }
        }
        res.records += got;
    }
    for (uint32_t p = 0; p < NPROD; p++) {
        pthread_join(th[p], NULL);
        uint32_t total = 0;
        for (int round = 0; round < s->rounds; round++)
            total += s->per_round[round];
        cr_assert_eq(next[p], total, "producer %u: %u of %u records seen", p, next[p], total);
    }
    cr_assert_eq(up_ring_head_pos(&s->r), s->r.ctail, "records left over");
    pthread_barrier_destroy(&s->start);
    pthread_barrier_destroy(&s->end);
    up_ring_destroy(&s->r);
    return res;
}

/* Rounds of at most 50 records per producer (each at most 10 cells): a
 * round fits in the 2048-cell ring even if the consumer reads none of it,
 * so a failed reservation can only come from a reset. */
Test(ring, resets_never_fail_a_reservation)
{
    static stress_t s;
    memset(&s, 0, sizeof s);
    s.rounds = 64;
    for (int k = 0; k < s.rounds; k++)
        s.per_round[k] = 25 + (uint32_t)(k * 7) % 26;
    s.fail_fast = true;
    for (int rep = 0; rep < 40 / SCALE; rep++) {
        stress_res_t res = stress_run(&s);
        cr_assert_eq(atomic_load(&s.failures), 0, "%llu reservations failed in a ring with room",
                     (unsigned long long)atomic_load(&s.failures));
        cr_assert_gt(res.resets, 0);
        cr_assert_gt(res.give_backs, 0);
    }
}

/* Rounds far larger than the ring: producers also wait for room, while
 * the consumer resets and gives pages back at every chance. Every record
 * is seen exactly once, in its producer's order, with its exact bytes. */
Test(ring, resets_and_give_backs_keep_order_and_bytes_under_4_producers)
{
    static stress_t s;
    memset(&s, 0, sizeof s);
    s.rounds = 17;
    s.per_round[0] = 40;
    for (int k = 1; k < s.rounds; k++)
        s.per_round[k] = k % 2 ? 20000u / SCALE : 37u;
    stress_res_t res = stress_run(&s);
    cr_log_info("%llu records, %llu resets, %llu give-backs", (unsigned long long)res.records,
                (unsigned long long)res.resets, (unsigned long long)res.give_backs);
    cr_assert_gt(res.resets, 0);
    cr_assert_gt(res.give_backs, 0);
}
