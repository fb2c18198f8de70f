/* test_features_limits.c -- max.pending.messages and memory.limit.bytes:
 * fail fast or block when reached, recover once messages are acknowledged.
 * How many messages memory.limit.bytes lets one producer have follows from
 * its rule (record sizes, the producer's fair share, budget units), so the
 * memory cases find it by sending until QUEUE_FULL rather than assume it. 
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

#define MAX_FIT 16

/* With @p topic's receipts held, send @p len-byte messages through @p p
 * until one is refused: that one must be refused with QUEUE_FULL, and at
 * least 2 and fewer than MAX_FIT must fit. Returns how many did, their
 * futures in @p f. */
static int fill_until_full(upulsar_producer_t *p, size_t len, upulsar_future_t **f)
{
    static char buf[1000];
    memset(buf, 'x', sizeof buf);
    int n = 0;
    upulsar_err_t e;
    while (n < MAX_FIT && (e = upulsar_send(p, buf, len, NULL, &f[n])) == UPULSAR_OK)
        n++;
    cr_assert_lt(n, MAX_FIT, "the limit never refused a send");
    cr_assert_eq(e, UPULSAR_ERR__QUEUE_FULL, "send %d: %s", n, upulsar_last_error());
    cr_assert_geq(n, 2, "only %d message(s) fit: the test proves little", n);
    return n;
}

/* Fill up to the limit with receipts held (@p fit messages, or as many as
 * fit when @p fit is 0), check the next send is refused, release the
 * receipts, check everything resolves and the same number fits again. */
static void fail_fast_and_recover(upulsar_client_t *c, upulsar_producer_t *p, const char *topic,
                                  int fit, size_t len)
{
    static char buf[1000];
    memset(buf, 'x', sizeof buf);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, topic), UPULSAR_OK);
    upulsar_future_t *f[MAX_FIT];
    if (fit == 0) {
        fit = fill_until_full(p, len, f);
    } else {
        for (int i = 0; i < fit; i++)
            cr_assert_eq(upulsar_send(p, buf, len, NULL, &f[i]), UPULSAR_OK, "send %d: %s", i,
                         upulsar_last_error());
        cr_assert_eq(upulsar_send(p, buf, len, NULL, NULL), UPULSAR_ERR__QUEUE_FULL);
    }
    cr_assert_eq(upulsar_tb_wait_messages(tb, topic, (uint64_t)fit, 10000), UPULSAR_OK);
    cr_assert_eq(upulsar_send(p, buf, len, NULL, NULL), UPULSAR_ERR__QUEUE_FULL,
                 "still full while nothing is acknowledged");
    cr_assert_eq(upulsar_tb_release_receipts(tb, topic), UPULSAR_OK);
    for (int i = 0; i < fit; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], 10000, NULL), UPULSAR_OK);
        upulsar_future_release(f[i]);
    }
    /* room again: the same amount fits once more (all of it was given back) */
    for (int i = 0; i < fit; i++)
        cr_assert_eq(upulsar_send(p, buf, len, NULL, &f[i]), UPULSAR_OK, "after recovery %d: %s",
                     i, upulsar_last_error());
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
    upulsar_client_t *c = client_with("memory.limit.bytes", "16000");
    upulsar_producer_t *p = producer(c, "memlim", NULL, NULL, 0);
    fail_fast_and_recover(c, p, "memlim", 0, 1000);
    upulsar_client_destroy(c);
}

static void wait_all(upulsar_future_t **f, int n)
{
    for (int i = 0; i < n; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], 10000, NULL), UPULSAR_OK);
        upulsar_future_release(f[i]);
    }
}

/* a fills its share of the budget; b, sending next, gets less than a did
 * (what a holds is not b's) and is refused; once a's messages are
 * acknowledged (b's receipts still held), b can send again. */
Test(features_limits, memory_limit_is_client_wide)
{
    upulsar_client_t *c = client_with("memory.limit.bytes", "16000");
    upulsar_producer_t *a = producer(c, "mem-a", NULL, NULL, 0);
    upulsar_producer_t *b = producer(c, "mem-b", NULL, NULL, 0);
    static char buf[1000];
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "mem-a"), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "mem-b"), UPULSAR_OK);
    upulsar_future_t *fa[MAX_FIT], *fb[MAX_FIT + 1];
    int na = fill_until_full(a, sizeof buf, fa);
    int nb = fill_until_full(b, sizeof buf, fb);
    cr_assert_lt(nb, na, "b got as much as a: the budget is not shared");
    cr_assert_eq(upulsar_send(a, buf, sizeof buf, NULL, NULL), UPULSAR_ERR__QUEUE_FULL);
    cr_assert_eq(upulsar_tb_release_receipts(tb, "mem-a"), UPULSAR_OK);
    wait_all(fa, na);
    cr_assert_eq(upulsar_send(b, buf, sizeof buf, NULL, &fb[nb]), UPULSAR_OK,
                 "a's room did not come back to the client: %s", upulsar_last_error());
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    wait_all(fb, nb + 1);
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
    upulsar_client_t *c = client_with("memory.limit.bytes", "8000");
    /* how many 1000-byte messages one producer may have: a fail-fast
     * producer of the same client, from the same start (nothing taken) */
    upulsar_producer_t *probe = producer(c, "memprobe", NULL, NULL, 0);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "memprobe"), UPULSAR_OK);
    upulsar_future_t *pf[MAX_FIT];
    int fit = fill_until_full(probe, 1000, pf);
    cr_assert_lt(fit, 8, "all eight would fit: nothing would block");
    cr_assert_eq(upulsar_tb_release_receipts(tb, "memprobe"), UPULSAR_OK);
    wait_all(pf, fit);
    cr_assert_eq(upulsar_producer_stop(probe, 5000), UPULSAR_OK);
    blk_t b = {0};
    b.p = producer(c, "memblock", NULL, NULL, 1);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "memblock"), UPULSAR_OK);
    pthread_t th;
    pthread_create(&th, NULL, blocking_sender, &b);
    /* the first `fit` fit and get stored; their receipts are held, so the
     * next send cannot return before the release below */
    cr_assert_eq(upulsar_tb_wait_messages(tb, "memblock", (uint64_t)fit, 10000), UPULSAR_OK);
    atomic_store(&b.released, 1);
    cr_assert_eq(upulsar_tb_release_receipts(tb, "memblock"), UPULSAR_OK);
    pthread_join(th, NULL);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(b.err[i], UPULSAR_OK, "send %d", i);
        if (i >= fit)
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
