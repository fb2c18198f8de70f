/* test_features_limits.c -- max.pending.messages and memory.limit.bytes:
 * fail fast or block when reached, recover once messages are acknowledged.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "fault_common.h"

static upulsar_tb_t *tb;

static void setup(void) { tb = ft_broker(); }
static void teardown(void) { upulsar_tb_stop(tb); }

TestSuite(features_limits, .init = setup, .fini = teardown, .timeout = 60);

/* A client of tb with the library's defaults and @p k = @p v (k NULL:
 * nothing more). */
static upulsar_client_t *client_with(const char *k, const char *v)
{
    const char *kv[] = {k, v, NULL};
    return ft_plain_client(tb, kv);
}

/* A producer on @p topic with @p k = @p v set (k NULL: nothing more),
 * blocking on a full queue if @p block, without a send timeout. */
static upulsar_producer_t *producer(upulsar_client_t *c, const char *topic, const char *k,
                                    const char *v, int block)
{
    const char *kv[] = {"block.if.queue.full", block ? "true" : "false", "send.timeout.ms", "0",
                        k, v, NULL};
    return ft_producer(c, NULL, topic, 0, kv);
}

/* Fill up to the limit with receipts held, check the next send is refused,
 * release the receipts, check everything resolves and sending works again. */
static void fail_fast_and_recover(upulsar_client_t *c, upulsar_producer_t *p, const char *topic,
                                  int fit, size_t len)
{
    static char buf[1000];
    memset(buf, 'x', sizeof buf);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, topic), UPULSAR_OK);
    upulsar_future_t *f[16];
    for (int i = 0; i < fit; i++)
        cr_assert_eq(upulsar_send(p, buf, len, NULL, &f[i]), UPULSAR_OK, "send %d: %s", i,
                     upulsar_last_error());
    cr_assert_eq(upulsar_send(p, buf, len, NULL, NULL), UPULSAR_ERR__QUEUE_FULL);
    cr_assert_eq(upulsar_tb_wait_messages(tb, topic, (uint64_t)fit, 10000), UPULSAR_OK);
    cr_assert_eq(upulsar_send(p, buf, len, NULL, NULL), UPULSAR_ERR__QUEUE_FULL,
                 "still full while nothing is acknowledged");
    cr_assert_eq(upulsar_tb_release_receipts(tb, topic), UPULSAR_OK);
    for (int i = 0; i < fit; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], 10000, NULL), UPULSAR_OK);
        upulsar_future_release(f[i]);
    }
    /* room again: the same amount fits once more */
    for (int i = 0; i < fit; i++)
        cr_assert_eq(upulsar_send(p, buf, len, NULL, &f[i]), UPULSAR_OK, "after recovery %d", i);
    for (int i = 0; i < fit; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], 10000, NULL), UPULSAR_OK);
        upulsar_future_release(f[i]);
    }
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, topic, &st), UPULSAR_OK);
    cr_assert_eq(st.messages, (uint64_t)(2 * fit));
    (void)c;
}

Test(features_limits, max_pending_messages_fails_fast_and_recovers)
{
    upulsar_client_t *c = client_with(NULL, NULL);
    upulsar_producer_t *p = producer(c, "maxpend", "max.pending.messages", "5", 0);
    fail_fast_and_recover(c, p, "maxpend", 5, 10);
    upulsar_client_destroy(c);
}

Test(features_limits, memory_limit_fails_fast_and_recovers)
{
    upulsar_client_t *c = client_with("memory.limit.bytes", "4000");
    upulsar_producer_t *p = producer(c, "memlim", NULL, NULL, 0);
    fail_fast_and_recover(c, p, "memlim", 4, 1000);
    upulsar_client_destroy(c);
}

Test(features_limits, memory_limit_is_client_wide)
{
    upulsar_client_t *c = client_with("memory.limit.bytes", "2000");
    upulsar_producer_t *a = producer(c, "mem-a", NULL, NULL, 0);
    upulsar_producer_t *b = producer(c, "mem-b", NULL, NULL, 0);
    static char buf[1000];
    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    upulsar_future_t *f1, *f2;
    cr_assert_eq(upulsar_send(a, buf, sizeof buf, NULL, &f1), UPULSAR_OK);
    cr_assert_eq(upulsar_send(b, buf, sizeof buf, NULL, &f2), UPULSAR_OK);
    cr_assert_eq(upulsar_send(a, buf, sizeof buf, NULL, NULL), UPULSAR_ERR__QUEUE_FULL);
    cr_assert_eq(upulsar_send(b, buf, sizeof buf, NULL, NULL), UPULSAR_ERR__QUEUE_FULL);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f1, 10000, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f2, 10000, NULL), UPULSAR_OK);
    upulsar_future_release(f1);
    upulsar_future_release(f2);
    cr_assert_eq(upulsar_send(b, buf, sizeof buf, NULL, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(a, 5000), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(b, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
}

typedef struct {
    upulsar_producer_t *p;
    atomic_int released;     /* set by the test right before releasing receipts */
    int released_seen[8];    /* value of `released` when send i returned */
    upulsar_err_t err[8];
    upulsar_future_t *f[8];
} blk_t;

static void *blocking_sender(void *a)
{
    blk_t *b = a;
    static char buf[1000];
    for (int i = 0; i < 8; i++) {
        b->err[i] = upulsar_send(b->p, buf, sizeof buf, NULL, &b->f[i]);
        b->released_seen[i] = atomic_load(&b->released);
    }
    return NULL;
}

Test(features_limits, memory_limit_blocks_until_acknowledged)
{
    upulsar_client_t *c = client_with("memory.limit.bytes", "4000");
    blk_t b = {0};
    b.p = producer(c, "memblock", NULL, NULL, 1);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "memblock"), UPULSAR_OK);
    pthread_t th;
    pthread_create(&th, NULL, blocking_sender, &b);
    /* the first four fit and get stored; their receipts are held, so the
     * fifth send cannot return before the release below */
    cr_assert_eq(upulsar_tb_wait_messages(tb, "memblock", 4, 10000), UPULSAR_OK);
    atomic_store(&b.released, 1);
    cr_assert_eq(upulsar_tb_release_receipts(tb, "memblock"), UPULSAR_OK);
    pthread_join(th, NULL);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(b.err[i], UPULSAR_OK, "send %d", i);
        if (i >= 4)
            cr_assert_eq(b.released_seen[i], 1, "send %d returned before any ack", i);
        cr_assert_eq(upulsar_future_wait(b.f[i], 10000, NULL), UPULSAR_OK);
        upulsar_future_release(b.f[i]);
    }
    cr_assert_eq(upulsar_producer_stop(b.p, 5000), UPULSAR_OK);
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, "memblock", &st), UPULSAR_OK);
    cr_assert_eq(st.messages, 8);
    upulsar_client_destroy(c);
}
