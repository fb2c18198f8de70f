/* test_fidelity_routing.c -- round-robin routing of keyless messages moves
 * on as the official clients' RoundRobinMessageRouter does: with batching
 * on, to the next partition once the batch being filled on the current one
 * would reach batch.max.messages or batch.max.bytes, or once
 * batch.max.delay.ms has passed since the last move; with batching off,
 * one partition per message.
 *
 * Each test sends from one thread, reads every message's partition from its
 * future, and checks the sequence of partitions against the rule (the first
 * run may be shorter: the thread's routing state is not part of the
 * contract), plus the broker's log: every message stored exactly once, on
 * the partition its id names, in send order, with its exact bytes.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_common.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(fidelity_routing, .init = setup, .fini = teardown, .timeout = 120);

#define PARTS 4
#define MAXN 64

/* Payload of message @p i: "<i>:" then filler up to @p size bytes. */
static size_t payload_of(int i, size_t size, char *buf, size_t bufsz)
{
    cr_assert(size < bufsz);
    int n = snprintf(buf, bufsz, "%d:", i);
    cr_assert(n > 0 && (size_t)n <= size);
    for (size_t j = (size_t)n; j < size; j++)
        buf[j] = (char)('a' + (i + (int)j) % 26);
    return size;
}

/* Send @p n keyless messages of @p size bytes through @p p from this
 * thread, pausing @p pause_ms before each but the first; wait for every
 * receipt and store each message's partition in @p part. */
static void send_keyless(upulsar_producer_t *p, int n, size_t size, int pause_ms, int *part)
{
    static char buf[8192];
    upulsar_future_t *f[MAXN];
    cr_assert(n <= MAXN);
    for (int i = 0; i < n; i++) {
        if (i && pause_ms)
            ft_pause_ms(pause_ms);
        size_t len = payload_of(i, size, buf, sizeof buf);
        cr_assert_eq(upulsar_send(p, buf, len, NULL, &f[i]), UPULSAR_OK, "message %d: %s", i,
                     upulsar_last_error());
    }
    cr_assert_eq(upulsar_producer_flush(p, FT_WAIT_MS), UPULSAR_OK, "%s", upulsar_last_error());
    for (int i = 0; i < n; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, &id), UPULSAR_OK, "message %d: %s",
                     i, upulsar_last_error());
        upulsar_future_release(f[i]);
        cr_assert(id.partition >= 0 && id.partition < PARTS, "message %d on partition %d", i,
                  id.partition);
        part[i] = id.partition;
    }
}

/* The broker stored exactly the messages routed to each partition, once,
 * in send order, byte for byte. */
static void check_log(const char *topic, int n, size_t size, const int *part)
{
    static char want[8192];
    int stored = 0;
    for (int g = 0; g < PARTS; g++) {
        char t[128];
        snprintf(t, sizeof t, "%s-partition-%d", topic, g);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, t, &s), UPULSAR_OK);
        size_t k = 0, cnt = upulsar_tb_snapshot_count(s);
        for (int i = 0; i < n; i++) {
            if (part[i] != g)
                continue;
            cr_assert_lt(k, cnt, "%s: message %d missing", t, i);
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, k++);
            size_t len = payload_of(i, size, want, sizeof want);
            cr_assert_eq(m->payload_len, len, "%s: entry %zu is not message %d", t, k - 1, i);
            cr_assert(!memcmp(m->payload, want, len), "%s: entry %zu is not message %d", t,
                      k - 1, i);
            stored++;
        }
        cr_assert_eq(k, cnt, "%s: %zu messages stored, %zu routed there", t, cnt, k);
        upulsar_tb_snapshot_free(s);
    }
    cr_assert_eq(stored, n);
}

/* After the first move, the partitions come in runs of exactly @p run
 * messages (the last run may be cut short by the end of the sequence),
 * each run on the partition after the previous one's. */
static void check_runs(const int *part, int n, int run)
{
    int i = 1;
    while (i < n && part[i] == part[0])
        i++;
    cr_assert_lt(i, n, "all %d messages stayed on partition %d (runs of %d expected)", n,
                 part[0], run);
    cr_assert_leq(i, run, "first run of %d messages, longer than %d", i, run);
    while (i < n) {
        cr_assert_eq(part[i], (part[i - 1] + 1) % PARTS,
                     "message %d on partition %d after partition %d", i, part[i], part[i - 1]);
        int start = i;
        while (i < n && part[i] == part[start])
            i++;
        if (i < n)
            cr_assert_eq(i - start, run, "run from message %d: %d messages, %d expected", start,
                         i - start, run);
        else
            cr_assert_leq(i - start, run, "last run from message %d: %d messages", start,
                          i - start);
    }
}

Test(fidelity_routing, batching_off_moves_on_with_every_message)
{
    const char *kv[] = {"batching.enabled", "false", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "rr-nobatch", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, NULL, "rr-nobatch", PARTS, kv);
    int part[MAXN];
    enum { N = 4 * PARTS + 3 };
    send_keyless(p, N, 20, 0, part);
    check_runs(part, N, 1);
    check_log("persistent://public/default/rr-nobatch", N, 20, part);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}

Test(fidelity_routing, batch_max_messages_moves_on_after_that_many)
{
    /* a delay no test reaches: only the count decides */
    const char *kv[] = {"batch.max.messages", "5", "batch.max.delay.ms", "60000", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "rr-count", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, NULL, "rr-count", PARTS, kv);
    int part[MAXN];
    enum { N = 5 * PARTS * 2 + 2 };
    send_keyless(p, N, 20, 0, part);
    check_runs(part, N, 5);
    check_log("persistent://public/default/rr-count", N, 20, part);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}

/* Messages per partition under the bytes rule: a message moves on when
 * the bytes already routed to the current partition plus its own would
 * reach batch.max.bytes. */
static int run_for_bytes(int max_bytes, int size)
{
    int run = 0;
    for (int bytes = 0; run == 0 || bytes + size < max_bytes; bytes += size)
        run++;
    return run;
}

Test(fidelity_routing, batch_max_bytes_moves_on_before_the_batch_is_full)
{
    const char *kv[] = {"batch.max.bytes", "1024", "batch.max.delay.ms", "60000", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "rr-bytes", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, NULL, "rr-bytes", PARTS, kv);
    int part[MAXN];
    enum { N = 30, SIZE = 300 };
    int run = run_for_bytes(1024, SIZE);
    cr_assert_gt(run, 1);
    send_keyless(p, N, SIZE, 0, part);
    check_runs(part, N, run);
    check_log("persistent://public/default/rr-bytes", N, SIZE, part);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}

Test(fidelity_routing, messages_over_batch_max_bytes_each_take_the_next_partition)
{
    const char *kv[] = {"batch.max.bytes", "1024", "batch.max.delay.ms", "60000", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "rr-large", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, NULL, "rr-large", PARTS, kv);
    int part[MAXN];
    enum { N = 3 * PARTS + 1, SIZE = 2000 };
    cr_assert_eq(run_for_bytes(1024, SIZE), 1);
    send_keyless(p, N, SIZE, 0, part);
    check_runs(part, N, 1);
    check_log("persistent://public/default/rr-large", N, SIZE, part);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}

Test(fidelity_routing, a_slow_producer_moves_on_once_the_batching_delay_passed)
{
    /* one message every PAUSE ms, more than the batching delay plus any
     * clock's resolution: far below batch.max.messages and batch.max.bytes,
     * each message finds the delay passed since the previous move */
    enum { DELAY_MS = 5, PAUSE_MS = DELAY_MS + 40, N = 2 * PARTS + 2 };
    const char *kv[] = {"batch.max.delay.ms", "5", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "rr-slow", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, NULL, "rr-slow", PARTS, kv);
    int part[MAXN];
    send_keyless(p, N, 20, PAUSE_MS, part);
    check_runs(part, N, 1);
    check_log("persistent://public/default/rr-slow", N, 20, part);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}
