/* test_hot_budget.c -- memory.limit.bytes with ring cells charged ahead by
 * unit (a page of cells with the default budget), against the test broker:
 *  - a few small messages with their receipts held take exactly one unit
 *    of the budget (their records and the unused rest of the unit the
 *    first one entered); once they resolved the budget is back to exactly
 *    zero (the loop gave the rest back);
 *  - with page units (a 16 MiB budget), a partition whose receipts are
 *    held is refused at its share while another partition of the producer
 *    keeps sending; the budget and its peak are never exceeded, and
 *    everything succeeds and returns the budget to zero once the receipts
 *    come.
 * Outcomes are asserted by counts, error codes and the statistics, never
 * by how long anything took.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_common.h"

static upulsar_tb_t *tb;

static void setup(void) { tb = ft_broker(); }
static void teardown(void) { upulsar_tb_stop(tb); }

TestSuite(hot_budget, .init = setup, .fini = teardown, .timeout = 240);

/* The budget unit of a ring for @p budget bytes: 1/4096 of it, at most a
 * page, in whole 32-byte cells, a power of two of them (CONFIGURATION.md,
 * memory.limit.bytes). */
static long long unit_for(long long budget)
{
    long long cells = (long long)sysconf(_SC_PAGESIZE) / 32, max = budget / 4096 / 32, u = 1;
    if (max < cells)
        cells = max;
    while (u * 2 <= cells)
        u *= 2;
    return u * 32;
}

static int in_use_zero(void *a) { return ft_mem_figure(a, "in_use") == 0; }

/* Scenario:
 *  1. The default budget (64 MiB); one partition; receipts held.
 *  2. Three 100-byte messages: the client has exactly one unit taken (all
 *     three records fit in the unit the first one entered).
 *  3. Receipts released: all three succeed, and the budget is back to
 *     exactly zero. */
Test(hot_budget, small_messages_take_one_unit_and_give_it_all_back)
{
    upulsar_client_t *c = ft_plain_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(c, NULL, "unit", 0, NULL);
    long long budget = ft_mem_figure(p, "budget"), unit = unit_for(budget);
    cr_assert_gt(unit, 3 * 160, "a unit smaller than three records: the test proves little");
    cr_assert_eq(ft_mem_figure(p, "in_use"), 0);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "unit"), UPULSAR_OK);
    char buf[100];
    memset(buf, 'u', sizeof buf);
    upulsar_future_t *f[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(upulsar_send(p, buf, sizeof buf, NULL, &f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    cr_assert_eq(upulsar_tb_wait_messages(tb, "unit", 3, FT_WAIT_MS), UPULSAR_OK);
    cr_assert_eq(ft_mem_figure(p, "in_use"), unit, "three small records, one unit");
    cr_assert_eq(ft_mem_figure(p, "peak"), unit);
    cr_assert_eq(upulsar_tb_release_receipts(tb, "unit"), UPULSAR_OK);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, NULL), UPULSAR_OK);
        upulsar_future_release(f[i]);
    }
    /* the rest goes back before the last of them resolves */
    cr_assert_eq(ft_mem_figure(p, "in_use"), 0, "the unit's rest was kept");
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_client_destroy(c);
}

/* Scenario:
 *  1. memory.limit.bytes = 16 MiB (page units); a fail-fast producer over
 *     2 partitions with 32 MiB rings; the receipts of partition 0 held.
 *  2. Partition 0 is sent 8000-byte messages until one is refused with
 *     QUEUE_FULL: by then it holds at least a third of the budget (its
 *     share is about half) and the client no more than the budget.
 *  3. Partition 1 is sent 100 messages of the same size, one at a time,
 *     each waited for: all accepted and acknowledged while partition 0 is
 *     still refused.
 *  4. Receipts released: everything succeeds, each partition stored what it
 *     was sent, the peak stayed within the budget and the budget is back
 *     to zero. */
Test(hot_budget, with_page_units_a_hot_partition_does_not_keep_another_from_sending)
{
    enum { MAX = 4000, LEN = 8000, COLD = 100 };
    const long long BUDGET = 16ll << 20;
    const char *ckv[] = {"memory.limit.bytes", "16777216", NULL};
    upulsar_client_t *c = ft_plain_client(tb, ckv);
    cr_assert_eq(upulsar_tb_set_partitions(tb, "hotu", 2), UPULSAR_OK);
    const char *kv[] = {"send.timeout.ms", "0", "block.if.queue.full", "false",
                        "queue.buffer.bytes", "33554432", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, "hotu", 0, kv);
    cr_assert_geq(unit_for(BUDGET), 4096, "no page units: the test proves little");
    char hot[32], cold[32];
    ft_key_for(p, 0, hot, sizeof hot);
    ft_key_for(p, 1, cold, sizeof cold);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "hotu-partition-0"), UPULSAR_OK);
    static upulsar_future_t *f[MAX];
    static char buf[LEN];
    memset(buf, 'h', sizeof buf);
    upulsar_send_opts_t ho = {.partition_key = hot}, co = {.partition_key = cold};
    int n = ft_fill_until_refused(p, &ho, buf, sizeof buf, f, MAX);
    long long used = ft_mem_figure(p, "in_use");
    cr_assert_geq(used, BUDGET / 3, "refused with only %lld of %lld taken", used, BUDGET);
    cr_assert_leq(used, BUDGET);
    ft_cold_pass_while_hot_refused(p, &co, &ho, buf, sizeof buf, COLD);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    ft_all_acked(f, n);
    cr_assert_leq(ft_mem_figure(p, "peak"), BUDGET);
    cr_assert(ft_wait_for(in_use_zero, p), "in_use stays at %lld", ft_mem_figure(p, "in_use"));
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    cr_assert_eq(ft_topic_messages(tb, "hotu-partition-0"), (uint64_t)n);
    cr_assert_eq(ft_topic_messages(tb, "hotu-partition-1"), COLD);
    upulsar_client_destroy(c);
}
