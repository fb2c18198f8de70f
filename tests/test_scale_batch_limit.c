/* test_scale_batch_limit.c -- a producer that waits at max.inflight.batches
 * keeps its limits. The broker withholds every receipt, so the producer
 * fills its in-flight batches and the rest of the messages pile up in its
 * ring; a flush then asks for everything open to go. While the receipts
 * are held no more than max.inflight.batches entries may reach the broker
 * (the open batch waits for a receipt, however it was asked to go), and
 * once they are released every stored entry holds at most
 * batch.max.messages messages and every message is stored exactly once, in
 * order (the fault_common log check); for the default batcher in both
 * batch modes and for key_based.
 * Observed through the broker's log (messages per entry, from the
 * snapshot) and its queued receipts, never through timing: after the
 * flush, a message of another producer on the same connection is sent and
 * acknowledged, so everything the flush made the producer write was read by
 * the broker before that receipt.
 * UPULSAR_TEST_LABEL_CONCURRENCY (sender threads and the io loop) */
#include <criterion/criterion.h>
#include <stdio.h>

#include "fault_common.h"

#define MAX_MSGS 10
#define INFLIGHT 2

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(scale_batch_limit, .init = setup, .fini = teardown, .timeout = 120);

static int receipts_queued(void *a)
{
    return upulsar_tb_queued_receipts(tb) >= *(uint64_t *)a;
}

static int sent_at_least(void *a)
{
    ft_run_t *r = a;
    return atomic_load(&r->sent) >= atomic_load(&r->limit);
}

/* Largest messages-per-entry of @p topic's log (every message carries its
 * entry's size); *@p count gets the messages. */
static int32_t largest_entry(const char *topic, size_t *count)
{
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_tb_snapshot_skipped(s), 0);
    int32_t most = 0;
    *count = upulsar_tb_snapshot_count(s);
    for (size_t i = 0; i < *count; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, i);
        int32_t n = m->batch_size > 0 ? m->batch_size : 1;
        if (n > most)
            most = n;
    }
    upulsar_tb_snapshot_free(s);
    return most;
}

/* Ask @p p to send what it has open (without waiting), then make sure the
 * broker has read whatever that wrote: a message of @p other (same client,
 * same connection) is acknowledged after it. */
static void flush_and_sync(upulsar_producer_t *p, upulsar_producer_t *other)
{
    upulsar_err_t e = upulsar_producer_flush(p, 0);
    cr_assert(e == UPULSAR_OK || e == UPULSAR_ERR__TIMED_OUT, "flush: %s", upulsar_err_name(e));
    ft_send_ok(other, NULL);
}

/* A producer on @p topic (conf @p kv added to the limits) held at
 * max.inflight.batches while @p threads senders pile @p per_thread
 * messages each (keys as ft_run_new's @p keyed) into its ring; see the top
 * of the file. */
static void limits_hold_at_max_inflight(const char *topic, const char *const *kv, int keyed,
                                        int threads, int per_thread)
{
    const char *base[] = {"batch.max.messages", "10", "max.inflight.batches", "2",
                          "batch.max.delay.ms", "60000", "send.timeout.ms", "0",
                          "block.if.queue.full", "true", NULL};
    upulsar_conf_t *conf = ft_conf(base);
    ft_conf_set_all(conf, kv);
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(client, NULL, topic, 0, conf, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_conf_destroy(conf);
    char sync_topic[128];
    snprintf(sync_topic, sizeof sync_topic, "%s-sync", topic);
    upulsar_producer_t *other = ft_producer(client, NULL, sync_topic, 0, NULL);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, topic), UPULSAR_OK);

    uint64_t total = (uint64_t)threads * (uint64_t)per_thread;
    ft_run_t *r = ft_run_new(p, threads, per_thread, keyed);
    /* first enough for the in-flight batches and more, pushed out by a
     * flush: INFLIGHT entries reach the broker and wait for receipts */
    ft_run_allow(r, (uint64_t)(INFLIGHT + 1) * MAX_MSGS + 1);
    ft_run_start(r);
    cr_assert(ft_wait_for(sent_at_least, r), "senders stuck");
    flush_and_sync(p, other);
    uint64_t want = INFLIGHT;
    cr_assert(ft_wait_for(receipts_queued, &want), "the in-flight batches never reached the broker");
    cr_assert_eq(upulsar_tb_queued_receipts(tb), INFLIGHT,
                 "%llu entries in flight, max.inflight.batches is %d",
                 (unsigned long long)upulsar_tb_queued_receipts(tb), INFLIGHT);
    /* then the rest, while the producer stays at max.inflight.batches */
    ft_run_allow(r, total);
    ft_run_join(r);
    cr_assert_eq(atomic_load(&r->sent), total);
    flush_and_sync(p, other);
    cr_assert_eq(upulsar_tb_queued_receipts(tb), INFLIGHT,
                 "%llu entries in flight, max.inflight.batches is %d",
                 (unsigned long long)upulsar_tb_queued_receipts(tb), INFLIGHT);

    cr_assert_eq(upulsar_tb_release_receipts(tb, topic), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_flush(p, FT_WAIT_MS), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(ft_collect(r), 0, "futures left pending");
    cr_assert(ft_wait_for(ft_cbs_done, r), "callbacks left");
    /* key_based keeps order per key (keys of a run keyed 1), not across */
    ft_check_opts_t o = {.topic = topic, .order_per_key = keyed == 1};
    ft_check_res_t res = ft_check(tb, r, &o);
    cr_assert_eq(res.ok, (size_t)total);
    cr_assert_eq(res.stored, (size_t)total);
    size_t count = 0;
    int32_t most = largest_entry(topic, &count);
    cr_assert_eq(count, (size_t)total);
    cr_assert_leq(most, MAX_MSGS, "an entry of %d messages, batch.max.messages is %d", most,
                  MAX_MSGS);
    cr_assert_eq(upulsar_producer_stop(other, FT_WAIT_MS), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    ft_run_free(r);
}

Test(scale_batch_limit, default_batcher_adaptive)
{
    limits_hold_at_max_inflight("limit-adaptive", NULL, 0, 2, 20 * MAX_MSGS);
}

Test(scale_batch_limit, default_batcher_linger)
{
    const char *kv[] = {"batch.mode", "linger", NULL};
    limits_hold_at_max_inflight("limit-linger", kv, 0, 2, 20 * MAX_MSGS);
}

Test(scale_batch_limit, default_batcher_one_thread)
{
    limits_hold_at_max_inflight("limit-one", NULL, 0, 1, 40 * MAX_MSGS);
}

Test(scale_batch_limit, key_based_batcher)
{
    const char *kv[] = {"batching.type", "key_based", NULL};
    limits_hold_at_max_inflight("limit-keys", kv, 1, 2, 20 * MAX_MSGS);
}
