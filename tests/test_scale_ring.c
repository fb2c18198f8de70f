/* test_scale_ring.c -- memory follows load, not partitions: a producer on
 * 256 partitions holds, per ring, the pages its few messages were written
 * into (one page of cells and one of commit words), not queue.buffer.bytes,
 * and keeps reusing them wave after wave; a ring made deep by a burst
 * gives its pages back once idle for queue.idle.release.ms. Every message
 * is stored exactly once. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_common.h"
#include "ring.h"

enum { PARTS = 256, THREADS = 2, WAVES = 32, PER_WAVE = PARTS * 4 /* each thread */ };

/* The "ring_resident_bytes" of every producer in the stats JSON of @p p,
 * into @p out (at most @p max); returns how many. */
static size_t ring_resident(upulsar_producer_t *p, unsigned long long *out, size_t max)
{
    char *json = NULL;
    cr_assert_eq(upulsar_producer_stats_json(p, &json), UPULSAR_OK, "%s", upulsar_last_error());
    size_t n = 0;
    const char *key = "\"ring_resident_bytes\":";
    for (const char *s = strstr(json, key); s; s = strstr(s + 1, key)) {
        cr_assert_lt(n, max);
        out[n++] = strtoull(s + strlen(key), NULL, 10);
    }
    free(json);
    return n;
}

Test(scale_ring, rings_of_256_partitions_stay_at_their_first_pages, .timeout = 300)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    cr_assert_eq(upulsar_tb_set_partitions(tb, "wide", PARTS), UPULSAR_OK);
    /* batching off: round_robin moves to the next partition with every
     * message, so each wave puts a few messages in every ring */
    const char *kv[] = {"batching.enabled", "false", "queue.buffer.bytes", "1048576", NULL};
    upulsar_producer_t *p = ft_producer(client, "wide-p", "wide", PARTS, kv);

    static unsigned long long res[PARTS + 1];
    const unsigned long long page = (unsigned long long)sysconf(_SC_PAGESIZE);
    /* started, nothing sent: no ring holds a page */
    cr_assert_eq(ring_resident(p, res, PARTS + 1), PARTS);
    for (int i = 0; i < PARTS; i++)
        cr_assert_eq(res[i], 0, "partition %d: %llu bytes before any message", i, res[i]);

    ft_run_t *r = ft_run_new(p, THREADS, WAVES * PER_WAVE, 0);
    ft_run_allow(r, PER_WAVE * THREADS);
    ft_run_start(r);
    for (int w = 1; w <= WAVES; w++) {
        /* a wave stored (so drained from the rings), then the next */
        ft_stored_t st = {tb, NULL, (uint64_t)w * PER_WAVE * THREADS};
        cr_assert(ft_wait_for(ft_stored_at_least, &st), "wave %d not stored", w);
        ft_run_allow(r, (uint64_t)(w + 1) * PER_WAVE * THREADS);
    }
    ft_run_join(r);
    cr_assert_eq(ft_collect(r), 0);

    /* 128 messages went through every ring, in waves of about 8: each
     * ring still holds only its first page of cells and of commit words
     * (without reuse the cells alone would span several pages), against
     * 1 MiB of queue.buffer.bytes */
    cr_assert_eq(ring_resident(p, res, PARTS + 1), PARTS);
    for (int i = 0; i < PARTS; i++) {
        cr_assert_gt(res[i], 0, "partition %d: no page written", i);
        cr_assert_leq(res[i], 2 * page, "partition %d: %llu bytes resident", i, res[i]);
    }

    ft_check_opts_t o = {.topic = "wide", .partitions = PARTS};
    ft_check_res_t c = ft_stop_and_check(tb, r, &o);
    cr_assert_eq(c.stored, (size_t)THREADS * WAVES * PER_WAVE);
    cr_assert_eq(c.ok, (size_t)THREADS * WAVES * PER_WAVE);
    ft_run_free(r);
    ft_stop_client_and_broker(tb, client);
}

/* For ft_wait_for(): has every ring of the producer at most `bound` bytes
 * resident? */
typedef struct {
    upulsar_producer_t *p;
    unsigned long long bound, last;
} shrunk_t;

static int ring_shrunk(void *a)
{
    shrunk_t *s = a;
    unsigned long long res[2];
    cr_assert_eq(ring_resident(s->p, res, 2), 1);
    s->last = res[0];
    return res[0] <= s->bound;
}

/* A burst held in the ring (max.inflight.batches 1, its receipt withheld)
 * makes it deep; drained and idle for queue.idle.release.ms, it gives its
 * pages back down to the first ones, and stays usable: a second burst is
 * stored too, every message once, in order. */
Test(scale_ring, a_ring_shrinks_back_after_idling, .timeout = 300)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    const char *kv[] = {"batching.enabled",      "false", "max.inflight.batches", "1",
                        "queue.idle.release.ms", "50",    NULL};
    upulsar_producer_t *p = ft_producer(client, "shrink-p", "shrink", 0, kv);
    const unsigned long long page = (unsigned long long)sysconf(_SC_PAGESIZE);
    enum { BURST = 1000 };
    ft_run_t *r = ft_run_new(p, 1, 2 * BURST, 0);

    cr_assert_eq(upulsar_tb_hold_receipts(tb, "shrink"), UPULSAR_OK);
    ft_run_allow(r, BURST);
    ft_run_start(r);
    /* all of the burst accepted: all but the first wait in the ring */
    while (atomic_load(&r->sent) < BURST)
        ft_pause_ms(1);
    unsigned long long deep;
    cr_assert_eq(ring_resident(p, &deep, 1), 1);
    /* 999 records of 48 payload bytes, each over 3 cells at least */
    cr_assert_geq(deep, (BURST - 1) * 3ull * UP_RING_CELL, "%llu bytes", deep);
    cr_assert_eq(upulsar_tb_release_receipts(tb, "shrink"), UPULSAR_OK);

    shrunk_t s = {p, 2 * page, 0};
    cr_assert(ft_wait_for(ring_shrunk, &s), "still %llu bytes resident (deep: %llu)", s.last,
              deep);

    ft_run_allow(r, 2 * BURST);
    ft_run_join(r);
    cr_assert_eq(ft_collect(r), 0);
    ft_check_opts_t o = {.topic = "shrink"};
    ft_check_res_t c = ft_stop_and_check(tb, r, &o);
    cr_assert_eq(c.stored, 2u * BURST);
    cr_assert_eq(c.ok, 2u * BURST);
    ft_run_free(r);
    ft_stop_client_and_broker(tb, client);
}

/* Every "queue_capacity_bytes" of @p p's producers equals @p want; returns
 * how many producers there are. */
static size_t capacities_are(upulsar_producer_t *p, long long want)
{
    char *json = NULL;
    cr_assert_eq(upulsar_producer_stats_json(p, &json), UPULSAR_OK, "%s", upulsar_last_error());
    size_t n = 0;
    const char *key = "\"queue_capacity_bytes\":";
    for (const char *s = strstr(json, key); s; s = strstr(s + 1, key)) {
        long long v = strtoll(s + strlen(key), NULL, 10);
        cr_assert_eq(v, want, "producer %zu: a ring of %lld bytes, %lld expected", n, v, want);
        n++;
    }
    free(json);
    return n;
}

/* The documented rule: a quarter of the budget over the client's
 * producers, rounded down to a power of two, at least 16 KiB, at most
 * queue.buffer.bytes. */
static long long ring_rule(long long budget, long long producers, long long qbb)
{
    long long share = budget / 4 / producers, r = 16 * 1024;
    while (r * 2 <= share && r * 2 <= qbb)
        r *= 2;
    return r < qbb ? r : qbb;
}

/* Scenario: a client with a 64 MiB budget; a handle of 100 partitions,
 * then a second one of 100 (the client then has 200 producers), then one
 * of 100 with queue.buffer.bytes set. The first two get rings of the
 * documented share (smaller than the default queue.buffer.bytes, and the
 * second smaller than the first), the third the size it set. */
Test(scale_ring, rings_are_sized_from_the_budget_unless_queue_buffer_bytes_is_set,
     .timeout = 300)
{
    enum { PARTS_EACH = 100 };
    const long long budget = 64ll << 20, qbb = 1 << 20;
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"memory.limit.bytes", "67108864", NULL};
    upulsar_client_t *client = ft_client(tb, ckv);
    const char *topics[] = {"share-a", "share-b", "share-c"};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(upulsar_tb_set_partitions(tb, topics[i], PARTS_EACH), UPULSAR_OK);
    upulsar_producer_t *a = ft_producer(client, NULL, "share-a", PARTS_EACH, NULL);
    long long ra = ring_rule(budget, PARTS_EACH, qbb);
    cr_assert_lt(ra, qbb, "the rule leaves the default: the test proves little");
    cr_assert_eq(capacities_are(a, ra), PARTS_EACH);

    upulsar_producer_t *b = ft_producer(client, NULL, "share-b", PARTS_EACH, NULL);
    long long rb = ring_rule(budget, 2 * PARTS_EACH, qbb);
    cr_assert_lt(rb, ra);
    cr_assert_eq(capacities_are(b, rb), PARTS_EACH);
    cr_assert_eq(capacities_are(a, ra), PARTS_EACH, "a handle started earlier keeps its rings");

    const char *kv[] = {"queue.buffer.bytes", "1048576", NULL};
    upulsar_producer_t *c = ft_producer(client, NULL, "share-c", PARTS_EACH, kv);
    cr_assert_eq(capacities_are(c, qbb), PARTS_EACH);

    /* the small rings carry messages: each one is stored once */
    static char buf[100];
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(upulsar_send(a, buf, sizeof buf, NULL, NULL), UPULSAR_OK);
        cr_assert_eq(upulsar_send(b, buf, sizeof buf, NULL, NULL), UPULSAR_OK);
    }
    cr_assert_eq(upulsar_producer_flush(a, 30000), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_flush(b, 30000), UPULSAR_OK);
    upulsar_tb_stats_t st;
    upulsar_tb_stats(tb, &st);
    cr_assert_eq(st.messages, 2000, "stored %llu", (unsigned long long)st.messages);
    cr_assert_eq(upulsar_producer_stop(c, 10000), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(b, 10000), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(a, 10000), UPULSAR_OK);
    upulsar_client_destroy(client);
    upulsar_tb_stop(tb);
}

/* A ring smaller than a batch (200 partitions share the default budget:
 * 64 KiB rings, batch.max.bytes 128 KiB) fills before its batch does: the
 * full ring must end the batch window (here a linger of a minute), not
 * leave the sender waiting for it. Every send of a blocking sender
 * returns OK (a held window would keep it waiting until send.timeout.ms,
 * then QUEUE_FULL), and every message is stored once. */
Test(scale_ring, a_full_ring_smaller_than_a_batch_ends_its_batch_window, .timeout = 300)
{
    enum { NPART = 200, N = 2000 };
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    cr_assert_eq(upulsar_tb_set_partitions(tb, "fullring", NPART), UPULSAR_OK);
    const char *kv[] = {"batch.mode", "linger", "batch.max.delay.ms", "60000",
                        "routing.mode", "single", "block.if.queue.full", "true",
                        "send.timeout.ms", "20000", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, "fullring", NPART, kv);
    long long ring = ring_rule(64ll << 20, NPART, 1 << 20);
    cr_assert_lt(ring, 128 * 1024, "rings of %lld bytes hold a whole batch: proves nothing", ring);
    cr_assert_eq(capacities_are(p, ring), NPART);
    static char buf[100];
    for (int i = 0; i < N; i++) {
        upulsar_err_t e = upulsar_send(p, buf, sizeof buf, NULL, NULL);
        cr_assert_eq(e, UPULSAR_OK, "send %d of %d: %s (%s)", i, N, upulsar_err_name(e),
                     upulsar_last_error());
    }
    cr_assert_eq(upulsar_producer_flush(p, 30000), UPULSAR_OK);
    upulsar_tb_stats_t st;
    upulsar_tb_stats(tb, &st);
    cr_assert_eq(st.messages, N, "stored %llu", (unsigned long long)st.messages);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_client_destroy(client);
    upulsar_tb_stop(tb);
}
