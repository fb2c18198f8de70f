/* test_features_partitions.c -- partition growth: a topic grown from 4 to 8
 * partitions while a thread sends keyed messages; the new groups start
 * without a restart, keyed routing follows the new count, nothing is lost;
 * shrinking is refused (checked once polls provably saw the smaller count).
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault_common.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_plain_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(features_partitions, .init = setup, .fini = teardown, .timeout = 120);

/* Java String.hashCode of an ASCII key, made non-negative, mod n: the
 * routing the official clients use (independent of the library's code) */
static int java_partition(const char *k, int n)
{
    int32_t h = 0;
    for (; *k; k++)
        h = (int32_t)((uint32_t)h * 31u + (uint8_t)*k);
    return (int)((uint32_t)(h & 0x7fffffff) % (uint32_t)n);
}

enum { MAXMSG = 200000, KEYS = 64 };

typedef struct {
    upulsar_producer_t *p;
    atomic_int stop_after;     /* messages still to send once grown; -1 = not yet grown */
    int sent;
    int parts_at_send[MAXMSG]; /* partitions() observed right before each send */
    int parts_after[MAXMSG];   /* ... and right after: the send routed with one of
                                  the two (the same when they agree) */
    upulsar_future_t *f[MAXMSG];
} run_t;

static void *sender(void *a)
{
    run_t *r = a;
    for (int i = 0; i < MAXMSG; i++) {
        char key[16], pl[32];
        snprintf(key, sizeof key, "k%d", i % KEYS);
        int len = snprintf(pl, sizeof pl, "%d", i);
        r->parts_at_send[i] = upulsar_producer_partitions(r->p);
        upulsar_send_opts_t o = {.partition_key = key};
        cr_assert_eq(upulsar_send(r->p, pl, (size_t)len, &o, &r->f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
        r->parts_after[i] = upulsar_producer_partitions(r->p);
        r->sent = i + 1;
        if (r->parts_at_send[i] == 8 && atomic_fetch_sub(&r->stop_after, 1) <= 0)
            break;
        if (i % 64 == 63) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL); /* keep the stream going across the poll */
        }
    }
    return NULL;
}

Test(features_partitions, grow_from_4_to_8_mid_stream)
{
    cr_assert_eq(upulsar_tb_set_partitions(tb, "grow", 4), UPULSAR_OK);
    static run_t r;
    memset(&r, 0, sizeof r);
    const char *kv[] = {"partitions.update.interval.ms", "50", NULL};
    r.p = ft_producer(client, "gp", "grow", 0, kv);
    cr_assert_eq(upulsar_producer_partitions(r.p), 4);
    atomic_store(&r.stop_after, 2000);
    pthread_t th;
    pthread_create(&th, NULL, sender, &r);
    /* let the stream run on 4 partitions first */
    cr_assert_eq(upulsar_tb_wait_messages(tb, "grow-partition-0", 50, 20000), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_partitions(tb, "grow", 8), UPULSAR_OK);
    pthread_join(th, NULL);
    cr_assert_eq(upulsar_producer_partitions(r.p), 8, "never grew");
    cr_assert_lt(r.sent, MAXMSG, "the growth was not seen within %d messages", MAXMSG);

    /* every message resolves; those sent once 8 partitions were seen go to
     * the partition of the new count */
    int before = 0, after = 0;
    for (int i = 0; i < r.sent; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(r.f[i], 20000, &id), UPULSAR_OK, "message %d", i);
        upulsar_future_release(r.f[i]);
        char key[16];
        snprintf(key, sizeof key, "k%d", i % KEYS);
        if (r.parts_at_send[i] == 8) {
            cr_assert_eq(id.partition, java_partition(key, 8), "message %d", i);
            after++;
        } else {
            before++;
        }
    }
    cr_assert_gt(before, 0);
    cr_assert_gt(after, 2000);
    for (int i = 0; i < KEYS; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        cr_assert_eq(upulsar_producer_partition_for_key(r.p, key), java_partition(key, 8));
    }

    /* the broker holds each message exactly once, on the partition it was
     * acknowledged from, and the new partitions got traffic */
    static unsigned char seen[MAXMSG];
    memset(seen, 0, sizeof seen);
    size_t total = 0;
    for (int part = 0; part < 8; part++) {
        char t[64];
        snprintf(t, sizeof t, "grow-partition-%d", part);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, t, &s), UPULSAR_OK);
        size_t n = upulsar_tb_snapshot_count(s);
        if (part >= 4)
            cr_assert_gt(n, 0, "new partition %d got nothing", part);
        for (size_t j = 0; j < n; j++) {
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, j);
            char pl[32] = {0};
            memcpy(pl, m->payload, m->payload_len < 31 ? m->payload_len : 31);
            int i = atoi(pl);
            cr_assert(i >= 0 && i < r.sent);
            cr_assert_eq(seen[i], 0, "message %d stored twice", i);
            seen[i] = 1;
            if (r.parts_at_send[i] == 8)
                cr_assert_eq(part, java_partition(m->partition_key, 8));
            else if (r.parts_after[i] == 4)
                cr_assert_eq(part, java_partition(m->partition_key, 4));
            else /* the growth was published during this send */
                cr_assert(part == java_partition(m->partition_key, 4) ||
                          part == java_partition(m->partition_key, 8));
        }
        total += n;
        upulsar_tb_snapshot_free(s);
    }
    cr_assert_eq(total, (size_t)r.sent, "stored %zu of %d", total, r.sent);

    upulsar_group_info_t gi[16];
    size_t ng;
    cr_assert_eq(upulsar_producer_groups(r.p, gi, 16, &ng), UPULSAR_OK);
    cr_assert_eq(ng, 8);
    for (int g = 0; g < 8; g++) {
        char want[128];
        snprintf(want, sizeof want, "persistent://public/default/grow-partition-%d", g);
        cr_assert_str_eq(gi[g].partition_topic, want);
        cr_assert_eq(gi[g].partition, g);
        cr_assert_eq(gi[g].state, UPULSAR_STATE_READY);
    }
    upulsar_producer_info_t pi[16];
    cr_assert_eq(upulsar_producer_list(r.p, pi, 16, &ng), UPULSAR_OK);
    cr_assert_eq(ng, 8);
    cr_assert_str_eq(pi[7].name, "gp"); /* the plain name on a grown partition too */
    cr_assert_eq(upulsar_producer_flush(r.p, 10000), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(r.p, 10000), UPULSAR_OK);
}

/* Log lines of the shrink test: the library's warning about a smaller
 * count. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static int shrink_lines;

static void on_log(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)opaque;
    if (level == UPULSAR_LOG_WARNING && strstr(line, "shrink") &&
        strstr(line, "reports 2 partitions, fewer than 4")) {
        pthread_mutex_lock(&log_mu);
        shrink_lines++;
        pthread_mutex_unlock(&log_mu);
    }
}

static int shrink_logged(void *a)
{
    (void)a;
    pthread_mutex_lock(&log_mu);
    int n = shrink_lines;
    pthread_mutex_unlock(&log_mu);
    return n > 0;
}

/* For ft_wait_for(): has the broker received at least `n`
 * PARTITIONED_METADATA requests? */
typedef struct {
    upulsar_tb_t *tb;
    uint64_t n;
} polls_t;

static int polls_at_least(void *a)
{
    polls_t *w = a;
    upulsar_tb_stats_t st;
    upulsar_tb_stats(w->tb, &st);
    return st.partition_lookups >= w->n;
}

typedef struct {
    upulsar_producer_t *p;
    int fewest; /* smallest count seen while waiting */
} grow_wait_t;

static int partitions_are_6(void *a)
{
    grow_wait_t *w = a;
    int n = upulsar_producer_partitions(w->p);
    if (n < w->fewest)
        w->fewest = n;
    return n == 6;
}

/* Scenario:
 *  1. A topic of 4 partitions, a producer polling its partition count every
 *     20 ms; the broker then announces 2.
 *  2. Proof that polls saw the smaller count: the broker received two
 *     PARTITIONED_METADATA requests after the change (the poller asks one
 *     at a time, so the first of them was answered "2"), and the library
 *     logged the refusal (the watchdog's, as it applied that count).
 *  3. Only then: still 4 partitions (routing, groups, a keyed message).
 *  4. Growth to 6 is still taken, never going below 4 on the way. */
Test(features_partitions, shrinking_is_refused)
{
    pthread_mutex_lock(&log_mu);
    shrink_lines = 0;
    pthread_mutex_unlock(&log_mu);
    cr_assert_eq(upulsar_client_set_log_cb(client, on_log, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_partitions(tb, "shrink", 4), UPULSAR_OK);
    const char *kv[] = {"partitions.update.interval.ms", "20", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, "shrink", 0, kv);
    cr_assert_eq(upulsar_producer_partitions(p), 4);
    cr_assert_eq(upulsar_tb_set_partitions(tb, "shrink", 2), UPULSAR_OK);
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    polls_t polls = {tb, st.partition_lookups + 2};
    cr_assert(ft_wait_for(polls_at_least, &polls), "no partition poll after the change");
    cr_assert(ft_wait_for(shrink_logged, NULL), "the refused shrink was not logged");
    cr_assert_eq(upulsar_producer_partitions(p), 4, "shrunk");
    upulsar_future_t *f;
    upulsar_msg_id_t id;
    upulsar_send_opts_t o = {.partition_key = "k5"}; /* 2 under 4 partitions, 0 under 2 */
    cr_assert_eq(upulsar_send(p, "x", 1, &o, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, &id), UPULSAR_OK);
    upulsar_future_release(f);
    cr_assert_eq(id.partition, java_partition("k5", 4));
    cr_assert_eq(upulsar_producer_partition_for_key(p, "k5"), 2);
    size_t ng;
    cr_assert_eq(upulsar_producer_groups(p, NULL, 0, &ng), UPULSAR_OK);
    cr_assert_eq(ng, 4);
    cr_assert_eq(upulsar_producer_partitions(p), 4, "shrunk");
    /* and growth still works after a refused shrink */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "shrink", 6), UPULSAR_OK);
    grow_wait_t gw = {p, 4};
    cr_assert(ft_wait_for(partitions_are_6, &gw), "never grew to 6");
    cr_assert_eq(gw.fewest, 4, "shrunk to %d on the way to 6", gw.fewest);
    cr_assert_eq(upulsar_producer_groups(p, NULL, 0, &ng), UPULSAR_OK);
    cr_assert_eq(ng, 6);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    cr_assert_eq(upulsar_client_set_log_cb(client, NULL, NULL), UPULSAR_OK);
}

Test(features_partitions, lazy_start_creates_a_partition_producer_on_first_send)
{
    cr_assert_eq(upulsar_tb_set_partitions(tb, "lazy", 4), UPULSAR_OK);
    const char *kv[] = {"lazy.start.partitions", "true", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, "lazy", 0, kv);
    for (int part = 0; part < 4; part++) {
        char t[64];
        snprintf(t, sizeof t, "lazy-partition-%d", part);
        upulsar_tb_topic_stats_t st;
        upulsar_err_t e = upulsar_tb_topic_stats(tb, t, &st);
        cr_assert(e != UPULSAR_OK || st.producers == 0, "partition %d started eagerly", part);
    }
    int want = java_partition("k5", 4);
    upulsar_future_t *f[10];
    upulsar_send_opts_t o = {.partition_key = "k5"};
    for (int i = 0; i < 10; i++)
        cr_assert_eq(upulsar_send(p, "x", 1, &o, &f[i]), UPULSAR_OK);
    for (int i = 0; i < 10; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], 10000, &id), UPULSAR_OK);
        cr_assert_eq(id.partition, want);
        upulsar_future_release(f[i]);
    }
    for (int part = 0; part < 4; part++) {
        char t[64];
        snprintf(t, sizeof t, "lazy-partition-%d", part);
        upulsar_tb_topic_stats_t st;
        upulsar_err_t e = upulsar_tb_topic_stats(tb, t, &st);
        if (part == want) {
            cr_assert_eq(e, UPULSAR_OK);
            cr_assert_eq(st.producers, 1);
            cr_assert_eq(st.messages, 10);
        } else {
            cr_assert(e != UPULSAR_OK || st.producers == 0, "partition %d started", part);
        }
    }
    upulsar_group_info_t gi[4];
    size_t ng;
    cr_assert_eq(upulsar_producer_groups(p, gi, 4, &ng), UPULSAR_OK);
    for (int g = 0; g < 4; g++)
        cr_assert_eq(gi[g].state, g == want ? UPULSAR_STATE_READY : UPULSAR_STATE_CONNECTING);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}

/* Send @p n messages with key @p key through @p p; every one must be
 * stored at a real position (not the unknown position of a message the
 * broker's de-duplication dropped). */
static void send_stored(upulsar_producer_t *p, const char *key, int n)
{
    upulsar_future_t *f[16];
    upulsar_send_opts_t o = {.partition_key = key};
    for (int i = 0; i < n; i++)
        cr_assert_eq(upulsar_send(p, "x", 1, &o, &f[i]), UPULSAR_OK);
    for (int i = 0; i < n; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], 10000, &id), UPULSAR_OK);
        cr_assert_neq(id.ledger_id, UPULSAR_ID_UNKNOWN,
                      "message %d was dropped as a duplicate: sent before its producer "
                      "was created, with a sequence id from 0",
                      i);
        upulsar_future_release(f[i]);
    }
}

/* A lazily started producer frames nothing before PRODUCER_SUCCESS: its
 * sequence ids continue from the broker's last_sequence_id of that
 * producer name, so a restarted application's messages are not taken for
 * duplicates of the previous run's (no batching delay: records would
 * otherwise be framed at once). */
Test(features_partitions, lazy_start_continues_the_brokers_sequence_ids)
{
    cr_assert_eq(upulsar_tb_set_partitions(tb, "lzseq", 2), UPULSAR_OK);
    const char *eager[] = {"batch.max.delay.ms", "0", NULL};
    upulsar_producer_t *p = ft_producer(client, "lzs", "lzseq", 0, eager);
    send_stored(p, "k5", 10);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);

    const char *lazy[] = {"lazy.start.partitions", "true", "batch.max.delay.ms", "0", NULL};
    p = ft_producer(client, "lzs", "lzseq", 0, lazy);
    send_stored(p, "k5", 5);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);

    char t[64];
    snprintf(t, sizeof t, "lzseq-partition-%d", java_partition("k5", 2));
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, t, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 15);
    for (size_t i = 0; i < 15; i++)
        cr_assert_eq(upulsar_tb_snapshot_msg(s, i)->sequence_id, i, "message %zu", i);
    upulsar_tb_snapshot_free(s);
}

/* Scenario: a client whose broker leaves a partition poll unanswered (its
 * metadata store hangs; operation.timeout.ms is 10 minutes, so the request
 * waits that long) must go on supervising its other producers meanwhile.
 *  1. Handle A on a topic of 2 partitions polls its partition count every
 *     20 ms; handle B produces to another topic of the same broker (same
 *     connection).
 *  2. The broker holds PARTITIONED_METADATA answers; a poll of A reaches it.
 *  3. B's topic is unloaded (CLOSE_PRODUCER): B's producer must be
 *     re-created and a message sent after the unload stored and
 *     acknowledged while the poll is still held (before send.timeout.ms:
 *     its future resolves OK, not MSG_TIMED_OUT).
 *  4. The hold ends: A's poll is answered and A still has its 2 partitions. */
Test(features_partitions, a_hung_partition_poll_does_not_hold_up_other_producers)
{
    cr_assert_eq(upulsar_tb_set_partitions(tb, "hp", 2), UPULSAR_OK);
    const char *ckv[] = {"operation.timeout.ms", "600000", NULL};
    upulsar_client_t *c2 = ft_client(tb, ckv);
    const char *akv[] = {"partitions.update.interval.ms", "20", NULL};
    upulsar_producer_t *a = ft_producer(c2, NULL, "hp", 0, akv);
    upulsar_producer_t *b = ft_producer(c2, NULL, "hq", 0, NULL);
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_hold_partition_metadata(tb, 1), UPULSAR_OK);
    polls_t w = {tb, st.partition_lookups + 1};
    cr_assert(ft_wait_for(polls_at_least, &w), "no partition poll reached the broker");

    cr_assert_gt(upulsar_tb_unload_topic(tb, "hq"), 0);
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(b, "after-unload", 12, NULL, &f), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_msg_id_t id;
    upulsar_err_t e = upulsar_future_wait(f, FT_WAIT_MS, &id);
    upulsar_future_release(f);
    cr_assert_eq(e, UPULSAR_OK, "the message sent after the unload: %s (the producer was not "
                 "re-created while a partition poll was unanswered)", upulsar_err_name(e));
    cr_assert_eq(ft_topic_messages(tb, "hq"), 1u);

    cr_assert_eq(upulsar_tb_hold_partition_metadata(tb, 0), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    w.n = st.partition_lookups + 1; /* a later poll: the held one was answered */
    cr_assert(ft_wait_for(polls_at_least, &w), "the partition polls stopped");
    cr_assert_eq(upulsar_producer_partitions(a), 2);
    cr_assert_eq(upulsar_producer_stop(a, FT_WAIT_MS), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(b, FT_WAIT_MS), UPULSAR_OK);
    upulsar_client_destroy(c2);
}
