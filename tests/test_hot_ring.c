/* test_hot_ring.c -- the send path's one locked instruction: what the ring
 * does so that the memory budget and the accepted count need no other.
 *  - Budget units: a reservation asks its caller to charge exactly the
 *    units it enters before it is published; resets keep head's offset in
 *    its unit while it is in the first half of the page (else they move to
 *    the lap's start and hand the rest back), so the charged rest carries
 *    over; a realign gives that rest back. Whatever the interleaving (one thread, or 4 producers and a
 *    consumer that resets whenever it can), what was charged minus what
 *    the consumed records and realigns gave back is exactly the cells in
 *    the ring plus the rest of head's unit, and zero at the end.
 *  - Record count: the committed records are counted from the consumer's
 *    published count and the commit words, also behind a record still
 *    being written; under 3 producers and a consumer, a count is never
 *    below the records committed before it began nor above those reserved
 *    by its end, and exact once everything stopped.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "ring.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SCALE 10 /* sanitizers are slow: same shape, fewer records */
#else
#define SCALE 1
#endif

#define WAIT_MS 60000 /* bound on waits for what must happen (hangs only) */

TestSuite(hot_ring, .timeout = 300);

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- records: [u32 producer][u32 seq][u32 cells][filler] ---- */

static uint64_t rec_cells(uint32_t id, uint32_t i)
{
    return 1u + (i * 7u + id * 3u) % 9u; /* 1 to 9 cells */
}

static void rec_write(up_ring_t *r, uint64_t pos, uint32_t id, uint32_t i)
{
    uint32_t hdr[3] = {id, i, (uint32_t)rec_cells(id, i)};
    up_ring_write(r, pos, 0, hdr, sizeof hdr);
}

/* Check the record at the read position is the next one of its producer
 * and step over it (counted, up_ring_consume()). Returns its cells. */
static uint64_t rec_take(up_ring_t *r, uint32_t *next, uint32_t nprod)
{
    uint32_t hdr[3];
    up_ring_read(r, r->ctail, 0, hdr, sizeof hdr);
    cr_assert_lt(hdr[0], nprod, "record of an unknown producer %u", hdr[0]);
    cr_assert_eq(hdr[1], next[hdr[0]], "producer %u: record %u where %u was due", hdr[0], hdr[1],
                 next[hdr[0]]);
    cr_assert_eq(hdr[2], rec_cells(hdr[0], hdr[1]));
    next[hdr[0]]++;
    up_ring_consume(r, hdr[2]);
    return hdr[2];
}

/* Reserve @p n cells as a sender does: charge what up_ring_reserve_charged()
 * asks for (into *@p charged, in cells), give back what it did not use.
 * False (nothing held) if the ring is full. */
static bool reserve_charging(up_ring_t *r, uint64_t n, uint64_t *pos, _Atomic int64_t *charged)
{
    uint64_t have = 0, units = 0;
    for (;;) {
        up_ring_res_t rc = up_ring_reserve_charged(r, n, have, pos, &units);
        if (rc == UP_RING_OK) {
            cr_assert_leq(units, have);
            if (have > units)
                atomic_fetch_sub(charged, (int64_t)((have - units) * r->unit));
            return true;
        }
        if (rc == UP_RING_FULL) {
            if (have)
                atomic_fetch_sub(charged, (int64_t)(have * r->unit));
            return false;
        }
        cr_assert_gt(units, have, "asked to charge nothing more");
        atomic_fetch_add(charged, (int64_t)((units - have) * r->unit));
        have = units;
    }
}

/* ---- one thread: the units charged, carried over and given back ---- */

Test(hot_ring, units_are_charged_once_carried_over_resets_and_given_back)
{
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, 64 * 1024), 0);
    up_ring_set_unit(&r, r.home); /* a page: offsets past its middle too */
    cr_assert_eq(r.unit, r.home);
    _Atomic int64_t charged = 0;
    uint64_t in_ring = 0, now = 0, rebases = 0, realigns = 0, kept = 0, handed = 0;
    uint32_t i = 0, next[1] = {0};
    uint64_t seed = 12345;
    for (int step = 0; step < 20000 / SCALE; step++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        unsigned dice = (unsigned)(seed >> 33) % 10;
        if (dice < 4) { /* send */
            uint64_t pos, n = rec_cells(0, i);
            if (reserve_charging(&r, n, &pos, &charged)) {
                rec_write(&r, pos, 0, i++);
                up_ring_commit(&r, pos);
                in_ring += n;
            }
        } else if (dice < 9 && up_ring_peek(&r)) { /* consume and resolve */
            uint64_t n = rec_take(&r, next, 1);
            in_ring -= n;
            atomic_fetch_sub(&charged, (int64_t)n);
            up_ring_release(&r);
        } else if (!up_ring_peek(&r)) { /* empty: a reset, or a realign */
            uint64_t c = r.ctail;
            if (dice == 9 && (seed >> 20) % 8 == 0) {
                uint64_t rest = up_ring_unit_rest(&r, c), got = up_ring_realign(&r, ++now);
                cr_assert_eq(got, rest, "realign gave back %llu of a rest of %llu",
                             (unsigned long long)got, (unsigned long long)rest);
                atomic_fetch_sub(&charged, (int64_t)got);
                cr_assert_eq(r.ctail & (r.unit - 1), 0, "not at a unit boundary");
                realigns += got != 0;
            } else {
                uint64_t rest = up_ring_unit_rest(&r, c), back = up_ring_idle(&r, ++now, 1);
                atomic_fetch_sub(&charged, (int64_t)back);
                if (back) { /* handed back: at the lap's start */
                    cr_assert_eq(back, rest);
                    cr_assert_eq(r.ctail & r.mask, 0);
                    handed++;
                } else { /* kept: the rest carries over */
                    kept += r.ctail != c && (c & (r.unit - 1)) != 0;
                    cr_assert_eq(r.ctail & (r.unit - 1), c & (r.unit - 1),
                                 "a reset moved the offset within the unit");
                }
                rebases += r.ctail != c;
            }
        }
        uint64_t h = up_ring_head_pos(&r);
        cr_assert_eq(atomic_load(&charged), (int64_t)(in_ring + up_ring_unit_rest(&r, h)),
                     "step %d: charged %lld, in the ring %llu, rest %llu", step,
                     (long long)atomic_load(&charged), (unsigned long long)in_ring,
                     (unsigned long long)up_ring_unit_rest(&r, h));
    }
    while (up_ring_peek(&r)) {
        atomic_fetch_sub(&charged, (int64_t)rec_take(&r, next, 1));
        up_ring_release(&r);
    }
    atomic_fetch_sub(&charged, (int64_t)up_ring_realign(&r, ++now));
    cr_assert_eq(atomic_load(&charged), 0);
    cr_assert_eq(next[0], i);
    cr_assert_gt(rebases, 0, "no reset happened: the test proves little");
    cr_assert_gt(realigns, 0, "no realign gave anything back: the test proves little");
    cr_assert_gt(kept, 0, "no reset carried a rest over: the test proves little");
    cr_assert_gt(handed, 0, "no reset handed a rest back: the test proves little");
    cr_assert_eq(up_ring_records(&r), i);
    up_ring_destroy(&r);
}

/* A reservation that fits in the rest of a charged unit asks for nothing;
 * one that crosses into the next unit asks for exactly that unit; one
 * larger than a unit for every unit it enters. */
Test(hot_ring, a_reservation_asks_for_exactly_the_units_it_enters)
{
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, 64 * 1024), 0);
    up_ring_set_unit(&r, 8);
    uint64_t pos, units;
    cr_assert_eq(up_ring_reserve_charged(&r, 3, 0, &pos, &units), UP_RING_CHARGE);
    cr_assert_eq(units, 1);
    cr_assert_eq(up_ring_reserve_charged(&r, 3, 1, &pos, &units), UP_RING_OK);
    cr_assert_eq(pos, 0);
    cr_assert_eq(units, 1);
    cr_assert_eq(up_ring_reserve_charged(&r, 5, 0, &pos, &units), UP_RING_OK); /* [3, 8) */
    cr_assert_eq(units, 0);
    cr_assert_eq(up_ring_reserve_charged(&r, 1, 0, &pos, &units), UP_RING_CHARGE); /* [8, 9) */
    cr_assert_eq(units, 1);
    cr_assert_eq(up_ring_reserve_charged(&r, 1, 1, &pos, &units), UP_RING_OK);
    cr_assert_eq(up_ring_reserve_charged(&r, 20, 0, &pos, &units), UP_RING_CHARGE); /* [9, 29) */
    cr_assert_eq(units, 2, "units at 16 and 24 (and not the one 9 is in)");
    /* more than it needs: it says how many it used */
    cr_assert_eq(up_ring_reserve_charged(&r, 20, 5, &pos, &units), UP_RING_OK);
    cr_assert_eq(units, 2);
    cr_assert_eq(up_ring_unit_rest(&r, up_ring_head_pos(&r)), 3);
    up_ring_destroy(&r);
}

/* ---- 4 producers, a consumer that resets and realigns whenever it can ---- */

enum { NPROD = 4 };

typedef struct {
    up_ring_t r;
    _Atomic int64_t charged;
    uint32_t per; /* records per producer */
    /* the record count: reservations begun, records committed */
    _Atomic uint64_t started, committed;
    _Atomic int done;
} stress_t;

typedef struct {
    stress_t *s;
    uint32_t id;
} prod_arg_t;

static void *producer(void *a)
{
    prod_arg_t *pa = a;
    stress_t *s = pa->s;
    for (uint32_t i = 0; i < s->per; i++) {
        uint64_t pos, n = rec_cells(pa->id, i);
        atomic_fetch_add(&s->started, 1);
        while (!reserve_charging(&s->r, n, &pos, &s->charged))
            sched_yield();
        rec_write(&s->r, pos, pa->id, i);
        up_ring_commit(&s->r, pos);
        atomic_fetch_add(&s->committed, 1);
    }
    return NULL;
}

static void start_producers(stress_t *s, uint32_t nprod, pthread_t *th, prod_arg_t *args)
{
    for (uint32_t p = 0; p < nprod; p++) {
        args[p] = (prod_arg_t){s, p};
        cr_assert_eq(pthread_create(&th[p], NULL, producer, &args[p]), 0);
    }
}

/* The consumer: takes every record (giving its cells back as it goes), and
 * whenever it finds none, resets (a clock advancing 1 us a look, pages
 * given back after 1 us) or realigns, alternately. Returns when @p total
 * records were taken. */
static void consume_all(stress_t *s, uint32_t nprod, uint64_t total, uint64_t *realigned)
{
    uint32_t next[NPROD] = {0};
    uint64_t got = 0, now = 0, looks = 0, deadline = mono_ms() + WAIT_MS;
    while (got < total) {
        if (up_ring_peek(&s->r)) {
            atomic_fetch_sub(&s->charged, (int64_t)rec_take(&s->r, next, nprod));
            got++;
            if (got % 8 == 0)
                up_ring_release(&s->r);
            continue;
        }
        up_ring_release(&s->r);
        if (++looks % 2) {
            atomic_fetch_sub(&s->charged, (int64_t)up_ring_idle(&s->r, ++now, 1));
        } else {
            uint64_t back = up_ring_realign(&s->r, ++now);
            atomic_fetch_sub(&s->charged, (int64_t)back);
            *realigned += back != 0;
        }
        cr_assert_lt(mono_ms(), deadline, "%llu of %llu records seen (lost?)",
                     (unsigned long long)got, (unsigned long long)total);
        sched_yield();
    }
    up_ring_release(&s->r);
    for (uint32_t p = 0; p < nprod; p++)
        cr_assert_eq(next[p], s->per, "producer %u: %u of %u records seen", p, next[p], s->per);
}

Test(hot_ring, concurrent_charges_balance_to_zero_across_resets_and_realigns)
{
    static stress_t s;
    memset(&s, 0, sizeof s);
    cr_assert_eq(up_ring_init(&s.r, 64 * 1024), 0);
    up_ring_set_unit(&s.r, s.r.home);
    s.per = 50000 / SCALE;
    pthread_t th[NPROD];
    prod_arg_t args[NPROD];
    start_producers(&s, NPROD, th, args);
    uint64_t realigned = 0;
    consume_all(&s, NPROD, (uint64_t)NPROD * s.per, &realigned);
    for (uint32_t p = 0; p < NPROD; p++)
        pthread_join(th[p], NULL);
    /* every record consumed: what is charged is the rest of head's unit */
    cr_assert_eq(atomic_load(&s.charged),
                 (int64_t)up_ring_unit_rest(&s.r, up_ring_head_pos(&s.r)));
    atomic_fetch_sub(&s.charged, (int64_t)up_ring_realign(&s.r, UINT64_MAX / 2));
    cr_assert_eq(atomic_load(&s.charged), 0, "%lld cells charged and never given back",
                 (long long)atomic_load(&s.charged));
    cr_assert_eq(up_ring_records(&s.r), (uint64_t)NPROD * s.per);
    (void)realigned; /* how many depends on the timing: not asserted */
    up_ring_destroy(&s.r);
}

/* ---- the record count ---- */

/* A committed record behind one still being written is counted; consumed
 * records stay counted; resets change nothing. */
Test(hot_ring, committed_records_are_counted_also_behind_one_being_written)
{
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, 64 * 1024), 0);
    cr_assert_eq(up_ring_records(&r), 0);
    uint64_t a, b;
    cr_assert(up_ring_reserve(&r, 3, &a));
    cr_assert(up_ring_reserve(&r, 2, &b));
    rec_write(&r, b, 1, 0);
    up_ring_commit(&r, b);
    cr_assert_eq(up_ring_records(&r), 1, "the record committed behind the open one");
    up_ring_commit(&r, a);
    cr_assert_eq(up_ring_records(&r), 2);
    up_ring_consume(&r, 3);
    cr_assert_eq(up_ring_records(&r), 2, "consumed, not yet released: still in the words");
    up_ring_release(&r);
    cr_assert_eq(up_ring_records(&r), 2, "released: in the consumer's count");
    up_ring_consume(&r, 2);
    up_ring_release(&r);
    cr_assert_eq(up_ring_records(&r), 2);
    for (uint32_t k = 0; k < 100; k++) {
        cr_assert(up_ring_reserve(&r, rec_cells(0, k), &a));
        rec_write(&r, a, 0, k);
        up_ring_commit(&r, a);
        cr_assert_eq(up_ring_records(&r), 3 + k);
    }
    uint32_t next[1] = {0};
    while (up_ring_peek(&r))
        rec_take(&r, next, 1);
    up_ring_release(&r);
    cr_assert_eq(up_ring_records(&r), 102);
    up_ring_idle(&r, 1, 0); /* empty, past the middle of its page: reset */
    cr_assert_eq(r.ctail & r.mask, 0, "no reset to the next lap");
    cr_assert_eq(up_ring_records(&r), 102);
    cr_assert(up_ring_reserve(&r, 4, &a));
    up_ring_commit(&r, a);
    cr_assert_eq(up_ring_records(&r), 103);
    up_ring_destroy(&r);
}

typedef struct {
    stress_t *s;
    uint64_t counts, low, high;
    _Atomic int running; /* set after the first count */
} reader_t;

/* Counts while the producers and the consumer run: never below the records
 * committed before the count began, never above those begun by its end. */
static void *reader(void *a)
{
    reader_t *rd = a;
    stress_t *s = rd->s;
    while (!atomic_load(&s->done)) {
        uint64_t lo = atomic_load(&s->committed);
        uint64_t n = up_ring_records(&s->r);
        uint64_t hi = atomic_load(&s->started);
        rd->low += n < lo;
        rd->high += n > hi;
        if (!rd->counts++)
            atomic_store(&rd->running, 1);
    }
    return NULL;
}

/* Producers commit, the consumer takes records, resets and gives pages
 * back (madvise zeroes the commit words of those pages), a reader counts
 * meanwhile: no count below the records committed before it began, none
 * above those begun by its end. */
static void count_under_load(size_t ring_bytes)
{
    static stress_t s;
    memset(&s, 0, sizeof s);
    cr_assert_eq(up_ring_init(&s.r, ring_bytes), 0);
    s.per = 50000 / SCALE;
    enum { N = 3 };
    pthread_t th[N], rth;
    prod_arg_t args[N];
    reader_t rd = {.s = &s};
    cr_assert_eq(pthread_create(&rth, NULL, reader, &rd), 0);
    /* the reader counts before the producers start, so that it counts while
     * they run (a slow machine could otherwise run them all first) */
    uint64_t until = mono_ms() + WAIT_MS;
    while (!atomic_load(&rd.running)) {
        cr_assert_lt(mono_ms(), until, "the reader never counted");
        sched_yield();
    }
    start_producers(&s, N, th, args);
    uint64_t realigned = 0;
    consume_all(&s, N, (uint64_t)N * s.per, &realigned);
    for (uint32_t p = 0; p < N; p++)
        pthread_join(th[p], NULL);
    atomic_store(&s.done, 1);
    pthread_join(rth, NULL);
    cr_assert_gt(rd.counts, 0);
    cr_assert_eq(rd.low, 0, "ring of %zu bytes: %llu of %llu counts missed a committed record",
                 ring_bytes, (unsigned long long)rd.low, (unsigned long long)rd.counts);
    cr_assert_eq(rd.high, 0, "%llu of %llu counts had a record not begun",
                 (unsigned long long)rd.high, (unsigned long long)rd.counts);
    cr_assert_eq(up_ring_records(&s.r), (uint64_t)N * s.per);
    up_ring_destroy(&s.r);
}

Test(hot_ring, a_count_under_load_has_every_record_committed_before_it)
{
    count_under_load(1u << 20);
}

/* the same where the senders lap the ring, and it resets and gives pages
 * back, many times as often */
Test(hot_ring, a_count_under_load_of_a_small_lapping_ring_has_every_record_committed_before_it)
{
    count_under_load(64u << 10);
}
