/* test_fault_hold.c -- receipts withheld, then released; and withheld
 * receipts lost with the connection (what a de-duplicated resend reports).
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

enum { THREADS = 2, TOTAL = 20000 / FT_SCALE, PER_THREAD = TOTAL / THREADS, PARTS = 4 };

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(fault_hold, .init = setup, .fini = teardown, .timeout = 60);

/* Withhold every receipt, send TOTAL messages from THREADS threads over
 * PARTS partitions of @p topic and wait until the broker has stored all of
 * them: every message was accepted, not one future has resolved. */
static ft_run_t *send_all_with_receipts_held(const char *name, const char *topic)
{
    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, topic, PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, name, topic, PARTS, NULL);
    ft_run_t *run = ft_run_new(p, THREADS, PER_THREAD, 2);
    ft_run_start(run);
    ft_run_join(run);
    cr_assert_eq(atomic_load(&run->sent), (uint64_t)TOTAL);
    upulsar_producer_flush(p, 0); /* push the open batches out now */
    ft_stored_t s = {tb, NULL, TOTAL};
    cr_assert(ft_wait_for(ft_stored_at_least, &s), "the broker did not store everything");
    cr_assert_eq(ft_resolved(run), 0, "futures resolved while their receipts were withheld");
    return run;
}

/* Scenario:
 *  1. Receipts are withheld for every topic; 2 threads send 20,000 messages
 *     over 4 partitions.
 *  2. The broker stores all of them; not one future has resolved (the
 *     producers wait for receipts, nothing times out: send.timeout.ms 30 s).
 *  3. The receipts are released.
 *  4. Every future succeeds with the real position of its message (no
 *     unknown id: nothing was resent), and the log check passes. */
Test(fault_hold, released_receipts_resolve_every_future_with_its_real_id)
{
    ft_run_t *run = send_all_with_receipts_held("fh", "held");
    cr_assert_gt(upulsar_tb_queued_receipts(tb), 0);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    cr_assert_eq(ft_collect(run), 0, "futures left pending");
    ft_assert_cbs_done(run);
    ft_check_opts_t o = {.topic = "held", .partitions = PARTS};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)TOTAL);
    cr_assert_eq(res.unknown_ids, 0, "positions lost without a reconnect");
    ft_run_free(run);
}

/* Scenario:
 *  1. Receipts are withheld; 2 threads send 20,000 messages over 4
 *     partitions; the broker stores all of them.
 *  2. Every connection is dropped: the withheld receipts are lost.
 *  3. The hold ends. The producers are re-created and resend everything;
 *     the broker recognises every resent batch as already stored and
 *     acknowledges it with ledger/entry -1 (as Pulsar does).
 *  4. Every future succeeds; each one reports the documented unknown
 *     position (UPULSAR_ID_UNKNOWN) with its partition and batch index; the
 *     log check passes (nothing stored twice) and the broker counted the
 *     de-duplicated SENDs. */
Test(fault_hold, receipts_lost_with_the_connection_resolve_as_deduplicated)
{
    ft_run_t *run = send_all_with_receipts_held("fl", "lost");
    upulsar_producer_t *p = run->p;
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    cr_assert_eq(ft_collect(run), 0, "futures left pending");
    ft_assert_cbs_done(run);
    ft_stats_t stats = ft_stats(p);
    cr_assert_eq(stats.unknown_ids, (uint64_t)TOTAL);
    cr_assert_gt(stats.resent_batches, 0);
    ft_check_opts_t o = {.topic = "lost", .partitions = PARTS};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)TOTAL);
    cr_assert_eq(res.unknown_ids, (size_t)TOTAL);
    uint64_t dups = 0;
    for (int i = 0; i < PARTS; i++) {
        char t[64];
        snprintf(t, sizeof t, "lost-partition-%d", i);
        upulsar_tb_topic_stats_t st;
        upulsar_tb_topic_stats(tb, t, &st);
        dups += st.duplicates;
    }
    cr_assert_gt(dups, 0);
    ft_run_free(run);
}

/* Scenario (Pulsar's default: de-duplication off on the topic):
 *  1. As above, receipts are withheld, 20,000 messages are stored, and
 *     every connection is dropped.
 *  2. The producers resend everything; the broker stores it again.
 *  3. Nothing is lost: every message is stored exactly twice, the copies
 *     of each partition in send order per thread; every future succeeds
 *     with the position of the copy whose receipt it got (the second).
 *  Exactly once across reconnections needs the broker's de-duplication
 *  (README, "Delivery guarantees"); without it delivery is at least once. */
Test(fault_hold, without_deduplication_lost_receipts_mean_stored_twice_never_lost)
{
    for (int i = 0; i < PARTS; i++) {
        char t[64];
        snprintf(t, sizeof t, "twice-partition-%d", i);
        cr_assert_eq(upulsar_tb_set_deduplication(tb, t, 0), UPULSAR_OK);
    }
    ft_run_t *run = send_all_with_receipts_held("fw", "twice");
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    cr_assert_eq(ft_collect(run), 0, "futures left pending");
    ft_assert_cbs_done(run);
    cr_assert_eq(ft_stats(run->p).unknown_ids, 0);
    cr_assert_eq(upulsar_producer_stop(run->p, 10000), UPULSAR_OK);
    size_t stored = 0;
    for (int part = 0; part < PARTS; part++) {
        char topic[64];
        snprintf(topic, sizeof topic, "twice-partition-%d", part);
        upulsar_tb_snapshot_t *s = NULL;
        cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
        int last[THREADS][2];
        for (int t = 0; t < THREADS; t++)
            last[t][0] = last[t][1] = -1;
        for (size_t j = 0; j < upulsar_tb_snapshot_count(s); j++) {
            const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, j);
            int t = -1, i = -1;
            cr_assert_eq(sscanf((const char *)sm->payload, "%d:%d:", &t, &i), 2);
            cr_assert(t >= 0 && t < THREADS && i >= 0 && i < PER_THREAD);
            ft_msg_t *m = ft_msg(run, t, i);
            cr_assert_lt(m->seen, 2, "%s: %d:%d stored a third time", topic, t, i);
            int copy = m->seen++;
            cr_assert_gt(i, last[t][copy], "%s: copy %d of %d:%d out of order", topic, copy, t, i);
            last[t][copy] = i;
            if (copy == 1) {
                cr_assert_eq(m->err, UPULSAR_OK);
                cr_assert_eq(m->id.ledger_id, sm->ledger_id, "%d:%d ledger", t, i);
                cr_assert_eq(m->id.entry_id, sm->entry_id, "%d:%d entry", t, i);
                cr_assert_eq(m->id.batch_index, sm->batch_index, "%d:%d batch index", t, i);
            }
            stored++;
        }
        upulsar_tb_snapshot_free(s);
    }
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PER_THREAD; i++)
            cr_assert_eq(ft_msg(run, t, i)->seen, 2, "%d:%d stored %d times", t, i,
                         ft_msg(run, t, i)->seen);
    cr_assert_eq(stored, 2 * (size_t)TOTAL);
    ft_run_free(run);
}
