/* test_latency_adaptive.c -- batch.mode: adaptive batching (the default)
 * sends at once what the connection can take and lets the next batch fill
 * while earlier ones are in flight; linger keeps the fixed window. Observed
 * through the broker's entries, the message ids and the statistics, never
 * through time: a delay of 60 s (the most batch.max.delay.ms allows) is
 * longer than any wait here, so a message that resolves or reaches the
 * broker did not wait for it. */
#include "fault_common.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(latency_adaptive, .init = setup, .fini = teardown, .timeout = 120);

/* Bound of the waits below: half of the 60 s delay, so that a message kept
 * for the delay cannot arrive within it (and a hang still ends). */
#define WAIT_MS 30000

static upulsar_tb_topic_stats_t topic_stats(const char *topic)
{
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, topic, &st), UPULSAR_OK);
    return st;
}

typedef struct {
    const char *topic;
    uint64_t n;
} stored_t;

static int stored_at_least(void *a)
{
    stored_t *s = a;
    return topic_stats(s->topic).messages >= s->n;
}

/* Poll @p cond until it holds or WAIT_MS pass. */
static int wait_short(int (*cond)(void *), void *arg)
{
    uint64_t end = ft_now_ms() + WAIT_MS;
    while (!cond(arg)) {
        if (ft_now_ms() > end)
            return 0;
        ft_pause_ms(1);
    }
    return 1;
}

static void light_load(const char *topic, const char *batching_type)
{
    const char *kv[] = {"batch.max.delay.ms", "60000", "batching.type", batching_type, NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, topic, 0, kv);
    enum { N = 50 };
    for (int i = 0; i < N; i++) {
        char pl[16];
        int len = snprintf(pl, sizeof pl, "m%d", i);
        upulsar_future_t *f;
        cr_assert_eq(upulsar_send(p, pl, (size_t)len, NULL, &f), UPULSAR_OK);
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f, WAIT_MS, &id), UPULSAR_OK,
                     "message %d waited for the delay: %s", i, upulsar_last_error());
        upulsar_future_release(f);
        cr_assert_eq(id.batch_size, 1, "message %d was batched with %d", i, id.batch_size);
    }
    upulsar_tb_topic_stats_t st = topic_stats(topic);
    cr_assert_eq(st.entries, (uint64_t)N);
    cr_assert_eq(st.messages, (uint64_t)N);
    /* the statistics say the same: N batches of one message each */
    char *json = NULL;
    cr_assert_eq(upulsar_producer_stats_json(p, &json), UPULSAR_OK);
    char want[128];
    snprintf(want, sizeof want, "\"batch_msgs\":{\"count\":%d,\"p50\":1,\"p99\":1,\"buckets\":[[1,%d]]}",
             N, N);
    cr_assert(strstr(json, want), "%s not in %s", want, json);
    free(json);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}

/* Scenario: batch.max.delay.ms 60000, batch.mode left at its default
 * (adaptive). 50 messages are sent one at a time, each waited for (bounded
 * by 30 s, half the delay). Every one resolves as a batch of 1: nothing of
 * the producer was in flight when it was sent, so it went at once; the
 * broker stored 50 entries of one message, and the batch-size histogram of
 * the statistics holds 50 batches of 1. */
Test(latency_adaptive, light_load_sends_each_message_alone_without_waiting_for_the_delay)
{
    light_load("light", "default");
}

/* The same with batching.type=key_based (its own batcher). */
Test(latency_adaptive, light_load_key_based_sends_each_message_alone)
{
    light_load("light-kb", "key_based");
}

/* Scenario: batch.mode=linger, batch.max.delay.ms 60000: 50 messages sent
 * without waiting stay in the window (which cannot end within the test)
 * until a flush pushes them out: one entry of 50 messages. With adaptive
 * batching the first of them would have gone alone. */
Test(latency_adaptive, linger_mode_holds_quick_sends_for_the_window_as_one_entry)
{
    const char *kv[] = {"batch.max.delay.ms", "60000", "batch.mode", "linger", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, "linger", 0, kv);
    enum { N = 50 };
    upulsar_future_t *f[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(upulsar_send(p, "x", 1, NULL, &f[i]), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_flush(p, WAIT_MS), UPULSAR_OK);
    for (int i = 0; i < N; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], WAIT_MS, &id), UPULSAR_OK);
        upulsar_future_release(f[i]);
        cr_assert_eq(id.batch_size, N, "message %d in a batch of %d", i, id.batch_size);
    }
    upulsar_tb_topic_stats_t st = topic_stats("linger");
    cr_assert_eq(st.entries, 1);
    cr_assert_eq(st.messages, (uint64_t)N);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}

/* Scenario: receipts of topic "busy" are withheld (the producer's first
 * batch stays in flight), batch.max.bytes 1024, batch.max.delay.ms 60000.
 *  1. The first message goes at once, alone: the broker stores it.
 *  2. 60 more messages of 100 bytes are sent; their batch cannot go on an
 *     idle connection, so they fill batches up to batch.max.bytes, which
 *     are sent full (the delay cannot end within the test); a flush (not
 *     waiting) pushes out the rest.
 *  3. The entries: [1, K, K, ..., K, r] with K >= 2 the messages 1024
 *     bytes hold and 1 <= r <= K; every message stored once, in order.
 *  4. The receipts are released: every future succeeds. */
Test(latency_adaptive, busy_connection_batches_up_to_batch_max_bytes)
{
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "busy"), UPULSAR_OK);
    const char *kv[] = {"batch.max.delay.ms", "60000", "batch.max.bytes", "1024", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, "busy", 0, kv);
    enum { N = 61, SIZE = 100 };
    upulsar_future_t *f[N];
    char pl[N][SIZE];
    for (int i = 0; i < N; i++) {
        memset(pl[i], 'a' + i % 26, SIZE);
        snprintf(pl[i], 8, "%d", i);
        cr_assert_eq(upulsar_send(p, pl[i], SIZE, NULL, &f[i]), UPULSAR_OK);
        if (i == 0) {
            stored_t s = {"busy", 1};
            cr_assert(wait_short(stored_at_least, &s), "a lone message waited for the delay");
        }
    }
    /* nothing waits for the delay: what is full is sent; the rest on flush */
    cr_assert_eq(upulsar_producer_flush(p, 0), UPULSAR_ERR__TIMED_OUT);
    stored_t s = {"busy", N};
    cr_assert(wait_short(stored_at_least, &s));
    upulsar_tb_snapshot_t *snap;
    cr_assert_eq(upulsar_tb_snapshot(tb, "busy", &snap), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(snap), (size_t)N);
    int sizes[N], nent = 0;
    uint64_t last_entry = UINT64_MAX;
    for (size_t j = 0; j < N; j++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(snap, j);
        cr_assert_eq(m->payload_len, (size_t)SIZE);
        cr_assert_eq(memcmp(m->payload, pl[j], SIZE), 0, "message %zu out of order", j);
        if (m->entry_id != last_entry) {
            sizes[nent++] = m->batch_size;
            last_entry = m->entry_id;
        }
    }
    upulsar_tb_snapshot_free(snap);
    cr_assert_eq(sizes[0], 1, "the first message did not go alone");
    cr_assert_geq(nent, 4, "too few entries to show full batches: %d", nent);
    int k = sizes[1];
    cr_assert_geq(k, 2, "messages were not batched while the connection was busy");
    for (int e = 1; e < nent - 1; e++)
        cr_assert_eq(sizes[e], k, "entry %d holds %d messages, not the full %d", e, sizes[e], k);
    cr_assert(sizes[nent - 1] >= 1 && sizes[nent - 1] <= k);
    cr_assert_eq(upulsar_tb_release_receipts(tb, "busy"), UPULSAR_OK);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], WAIT_MS, NULL), UPULSAR_OK, "message %d", i);
        upulsar_future_release(f[i]);
    }
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}

/* Scenario: receipts of topic "bound" are withheld for good, so the
 * producer always has a batch in flight; batch.max.delay.ms 1. A message
 * sent after the first still reaches the broker, alone, although no receipt
 * ever comes back: the delay bounds how long a message waits for the
 * connection, it is not a wait for the receipt. Then the same for a second
 * one (the bound is renewed, not used up once). */
Test(latency_adaptive, delay_bound_holds_while_the_connection_stays_busy)
{
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "bound"), UPULSAR_OK);
    const char *kv[] = {"batch.max.delay.ms", "1", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, "bound", 0, kv);
    upulsar_future_t *f[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(upulsar_send(p, "x", 1, NULL, &f[i]), UPULSAR_OK);
        stored_t s = {"bound", (uint64_t)i + 1};
        cr_assert(ft_wait_for(stored_at_least, &s), "message %d kept back while busy", i);
        cr_assert_eq(topic_stats("bound").entries, (uint64_t)i + 1);
        cr_assert_eq(upulsar_future_poll(f[i], NULL), UPULSAR_ERR__PENDING);
    }
    cr_assert_eq(upulsar_tb_release_receipts(tb, "bound"), UPULSAR_OK);
    for (int i = 0; i < 3; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, &id), UPULSAR_OK);
        cr_assert_eq(id.batch_size, 1);
        upulsar_future_release(f[i]);
    }
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}
