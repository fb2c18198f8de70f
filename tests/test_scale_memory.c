/* test_scale_memory.c -- the client's memory budget (memory.limit.bytes)
 * and the batch pools of its io threads, on a topic of 1000 partitions
 * against the test broker:
 *  - 16 sender threads over 1000 partitions with a small budget and every
 *    receipt held until the budget has filled: what the client counts
 *    ("memory" "in_use" in the statistics, sampled by a thread all along,
 *    and its "peak") never exceeds the budget, and every message is
 *    acknowledged and stored exactly once, in order;
 *  - block.if.queue.full=false: sends are refused with QUEUE_FULL once the
 *    budget is taken (not before half of it is), and succeed again once
 *    the receipts come;
 *  - a partition whose receipts are held, flooded until it is refused,
 *    does not keep another partition of the same producer from sending;
 *  - once the producers are idle, the batch pool's byte figure drops.
 * Outcomes are asserted by counts, error codes, the statistics and the
 * broker's log, never by how long anything took.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_common.h"

#define PARTS 1000

static upulsar_tb_t *tb;

static void setup(void) { tb = ft_broker(); }
static void teardown(void) { upulsar_tb_stop(tb); }

TestSuite(scale_memory, .init = setup, .fini = teardown, .timeout = 240);

/* A client of tb with memory.limit.bytes = @p budget. */
static upulsar_client_t *client_with_budget(const char *budget)
{
    const char *kv[] = {"memory.limit.bytes", budget, NULL};
    return ft_plain_client(tb, kv);
}

/* A producer of @p c over PARTS partitions of @p topic: small rings (1000
 * producers), one batch per message spread at random over the partitions,
 * no send timeout, blocking on a full queue if @p block. */
static upulsar_producer_t *spread_producer(upulsar_client_t *c, const char *topic, int block)
{
    cr_assert_eq(upulsar_tb_set_partitions(tb, topic, PARTS), UPULSAR_OK);
    const char *kv[] = {"queue.buffer.bytes", "65536", "routing.mode", "random",
                        "batch.max.messages", "4", "send.timeout.ms", "0",
                        "block.if.queue.full", block ? "true" : "false", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, topic, 0, kv);
    cr_assert_eq(upulsar_producer_partitions(p), PARTS);
    return p;
}

/* ---- sampling the client's figure while senders run ---- */

typedef struct {
    upulsar_producer_t *p;
    const char *figure;
    _Atomic int stop;
    _Atomic long long max; /* highest value seen */
    _Atomic long long samples;
} sampler_t;

static void *sampler(void *a)
{
    sampler_t *s = a;
    while (!atomic_load(&s->stop)) {
        long long v = ft_mem_figure(s->p, s->figure);
        if (v > atomic_load(&s->max))
            atomic_store(&s->max, v);
        atomic_fetch_add(&s->samples, 1);
        ft_pause_ms(1);
    }
    return NULL;
}

typedef struct {
    upulsar_producer_t *p;
    long long at_least;
} peak_wait_t;

static int peak_reached(void *a)
{
    peak_wait_t *w = a;
    return ft_mem_figure(w->p, "peak") >= w->at_least;
}

/* Scenario:
 *  1. memory.limit.bytes = 256 KiB; a producer over 1000 partitions; every
 *     receipt held; a thread samples the client's "in_use" all along.
 *  2. 16 threads send 2000 messages each (blocking when there is no room),
 *     spread over the partitions, until the budget has filled (its "peak"
 *     reaches half of it); then the receipts are released.
 *  3. Every message is acknowledged once and stored exactly once, in each
 *     producer's send order (ft_check); no sampled "in_use" and not the
 *     "peak" exceeds the budget. */
Test(scale_memory, sixteen_threads_on_1000_partitions_stay_within_the_budget)
{
    enum { BUDGET = 256 * 1024, THREADS = 16, PER = 2000 };
    upulsar_client_t *c = client_with_budget("262144");
    upulsar_producer_t *p = spread_producer(c, "scale", 1);
    cr_assert_eq(ft_mem_figure(p, "budget"), BUDGET);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    sampler_t s = {.p = p, .figure = "in_use"};
    pthread_t sth;
    cr_assert_eq(pthread_create(&sth, NULL, sampler, &s), 0);
    ft_run_t *r = ft_run_new(p, THREADS, PER, 0);
    ft_run_start(r);
    peak_wait_t w = {p, BUDGET / 2};
    cr_assert(ft_wait_for(peak_reached, &w), "the budget never filled: the test proves little");
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    ft_run_join(r);
    cr_assert_eq(atomic_load(&r->sent), (uint64_t)THREADS * PER, "refused: %llu",
                 (unsigned long long)atomic_load(&r->refused));
    cr_assert_eq(ft_collect(r), 0, "futures never resolved");
    atomic_store(&s.stop, 1);
    pthread_join(sth, NULL);
    cr_assert_gt(atomic_load(&s.samples), 0);
    cr_assert_leq(atomic_load(&s.max), BUDGET, "in_use %lld over the budget", atomic_load(&s.max));
    cr_assert_leq(ft_mem_figure(p, "peak"), BUDGET);
    ft_check_opts_t o = {.topic = "scale", .partitions = PARTS};
    ft_check_res_t res = ft_stop_and_check(tb, r, &o);
    cr_assert_eq(res.ok, (size_t)THREADS * PER);
    cr_assert_eq(res.stored, (size_t)THREADS * PER);
    ft_run_free(r);
    upulsar_client_destroy(c);
}

/* Scenario:
 *  1. memory.limit.bytes = 64 KiB; a fail-fast producer over 1000
 *     partitions; every receipt held.
 *  2. Messages are sent (each to a random partition) until 1000 in a row
 *     are refused: every refusal is QUEUE_FULL; by then at least half of
 *     the budget is taken and no more than all of it, and its peak is
 *     within it. (A partition whose producer still has room in its unit,
 *     or holds nothing, may take a message after another partition was
 *     refused.)
 *  3. Receipts released: every accepted message succeeds; sending succeeds
 *     again; the broker stored each accepted message once. */
Test(scale_memory, fail_fast_gets_queue_full_at_the_budget_and_recovers)
{
    enum { BUDGET = 64 * 1024, MAX = 100000, LEN = 100, IN_A_ROW = 1000 };
    upulsar_client_t *c = client_with_budget("65536");
    upulsar_producer_t *p = spread_producer(c, "ff", 0);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    static upulsar_future_t *f[MAX];
    char buf[LEN];
    memset(buf, 'f', sizeof buf);
    int n = 0, refused = 0, attempts = 0;
    while (refused < IN_A_ROW && attempts++ < MAX) {
        upulsar_err_t e = upulsar_send(p, buf, sizeof buf, NULL, &f[n]);
        if (e == UPULSAR_OK) {
            n++;
            refused = 0;
            continue;
        }
        cr_assert_eq(e, UPULSAR_ERR__QUEUE_FULL, "%s: %s", upulsar_err_name(e),
                     upulsar_last_error());
        refused++;
    }
    cr_assert_eq(refused, IN_A_ROW, "the budget never refused %d sends in a row", IN_A_ROW);
    long long used = ft_mem_figure(p, "in_use");
    cr_assert_geq(used, BUDGET / 2, "refused with only %lld of %d taken", used, BUDGET);
    cr_assert_leq(used, BUDGET);
    cr_assert_leq(ft_mem_figure(p, "peak"), BUDGET);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, NULL), UPULSAR_OK, "message %d", i);
        upulsar_future_release(f[i]);
    }
    upulsar_future_t *again = NULL;
    cr_assert_eq(upulsar_send(p, buf, sizeof buf, NULL, &again), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(again, FT_WAIT_MS, NULL), UPULSAR_OK);
    upulsar_future_release(again);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    uint64_t stored = 0;
    for (int i = 0; i < PARTS; i++) {
        char t[64];
        snprintf(t, sizeof t, "ff-partition-%d", i);
        stored += ft_topic_messages(tb, t);
    }
    cr_assert_eq(stored, (uint64_t)n + 1);
    upulsar_client_destroy(c);
}

/* Scenario:
 *  1. memory.limit.bytes = 64 KiB; a fail-fast producer over 2 partitions;
 *     the receipts of partition 0 are held.
 *  2. Partition 0 (the hot one) is sent 1000-byte messages until one is
 *     refused with QUEUE_FULL.
 *  3. Partition 1 is then sent 100 messages of the same size, one at a
 *     time, each waited for: all are accepted and acknowledged while
 *     partition 0 still holds its share (it is still refused).
 *  4. Receipts released: everything succeeds, each partition stored what
 *     it was sent. */
Test(scale_memory, a_hot_partition_does_not_keep_another_from_sending)
{
    enum { MAX = 1000, LEN = 1000, COLD = 100 };
    upulsar_client_t *c = client_with_budget("65536");
    cr_assert_eq(upulsar_tb_set_partitions(tb, "hot", 2), UPULSAR_OK);
    /* queue.buffer.bytes set: rings of their own size, not sized from the
     * small budget (the budget, not a ring, must refuse here) */
    const char *kv[] = {"send.timeout.ms", "0", "block.if.queue.full", "false",
                        "queue.buffer.bytes", "1048576", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, "hot", 0, kv);
    char hot[32], cold[32];
    ft_key_for(p, 0, hot, sizeof hot);
    ft_key_for(p, 1, cold, sizeof cold);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "hot-partition-0"), UPULSAR_OK);
    static upulsar_future_t *f[MAX];
    char buf[LEN];
    memset(buf, 'h', sizeof buf);
    upulsar_send_opts_t ho = {.partition_key = hot}, co = {.partition_key = cold};
    int n = ft_fill_until_refused(p, &ho, buf, sizeof buf, f, MAX);
    cr_assert_gt(n, 0);
    ft_cold_pass_while_hot_refused(p, &co, &ho, buf, sizeof buf, COLD);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    ft_all_acked(f, n);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    cr_assert_eq(ft_topic_messages(tb, "hot-partition-0"), (uint64_t)n);
    cr_assert_eq(ft_topic_messages(tb, "hot-partition-1"), COLD);
    upulsar_client_destroy(c);
}

/* Scenario:
 *  1. One io thread; a producer over 1000 partitions; receipts held; one
 *     message to every partition (each producer then has a batch in
 *     flight); a thread samples the batch pool's byte figure.
 *  2. Receipts released: every message succeeds and the batches go back to
 *     the pool (the sampled figure rises above zero).
 *  3. With nothing sent any more, the figure drops below the highest value
 *     seen (the loop frees what stays unused); and sending works again. */
Test(scale_memory, the_batch_pool_gives_memory_back_after_idle)
{
    const char *ckv[] = {"memory.limit.bytes", "1048576", "io.threads", "1", NULL};
    upulsar_client_t *c = ft_plain_client(tb, ckv);
    upulsar_producer_t *p = spread_producer(c, "idle", 0);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    sampler_t s = {.p = p, .figure = "batch_pool_bytes"};
    pthread_t sth;
    cr_assert_eq(pthread_create(&sth, NULL, sampler, &s), 0);
    static upulsar_future_t *f[PARTS];
    for (int i = 0; i < PARTS; i++) {
        char key[32];
        ft_key_for(p, i, key, sizeof key);
        upulsar_send_opts_t o = {.partition_key = key};
        cr_assert_eq(upulsar_send(p, "m", 1, &o, &f[i]), UPULSAR_OK, "%d: %s", i,
                     upulsar_last_error());
    }
    cr_assert_eq(upulsar_tb_wait_messages(tb, "idle-partition-999", 1, FT_WAIT_MS), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    for (int i = 0; i < PARTS; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, NULL), UPULSAR_OK, "message %d", i);
        upulsar_future_release(f[i]);
    }
    /* the batches are back in the pool once their receipts resolved them */
    while (atomic_load(&s.max) == 0)
        ft_pause_ms(1);
    /* below the highest value seen */
    ft_figure_wait_t w = {p, "batch_pool_bytes", atomic_load(&s.max) - 1};
    cr_assert(ft_wait_for(ft_figure_at_most, &w), "the pool kept %lld bytes", w.at_most + 1);
    atomic_store(&s.stop, 1);
    pthread_join(sth, NULL);
    upulsar_future_t *again = NULL;
    cr_assert_eq(upulsar_send(p, "again", 5, NULL, &again), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(again, FT_WAIT_MS, NULL), UPULSAR_OK);
    upulsar_future_release(again);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_client_destroy(c);
}
