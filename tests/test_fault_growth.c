/* test_fault_growth.c -- partitions added while the producer runs are
 * supervised like the others from the moment they exist: one the broker
 * closes while the growth is still creating the rest is re-created, and
 * its messages are stored.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"
#include "handle.h"

TestSuite(fault_growth, .timeout = 120);

static int three_partitions(void *a) { return upulsar_producer_partitions(a) == 3; }

typedef struct {
    upulsar_tb_t *tb;
    const char *topic;
} answered_t;

static int answered(void *a)
{
    answered_t *x = a;
    return upulsar_tb_producer_answers(x->tb, x->topic, NULL, 0) >= 1;
}

Test(fault_growth, a_partition_closed_while_the_growth_creates_the_others_is_recreated)
{
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "g", 1), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"partitions.update.interval.ms", "20", "send.timeout.ms", "0", NULL};
    upulsar_producer_t *p = ft_producer(c, "gp", "g", 0, kv);
    /* partition 2's PRODUCER is answered only after 1.5 s: the growth
     * waits for it with partition 1 already created */
    cr_assert_eq(upulsar_tb_delay_producers(tb, "g-partition-2", 1, 1500), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_partitions(tb, "g", 3), UPULSAR_OK);
    answered_t a = {tb, "g-partition-1"};
    cr_assert(ft_wait_for(answered, &a));
    ft_pause_ms(20);
    /* meanwhile the broker closes partition 1's new producer (an unload) */
    cr_assert_geq(upulsar_tb_unload_topic(tb, "g-partition-1"), 1);
    cr_assert(ft_wait_for(three_partitions, p));
    /* a message for partition 1 is stored (send.timeout.ms=0: it would
     * wait forever for a producer nobody re-creates) */
    char key[16];
    for (int k = 0;; k++) {
        snprintf(key, sizeof key, "k%d", k);
        if (upulsar_producer_partition_for_key(p, key) == 1)
            break;
    }
    upulsar_send_opts_t o = {.partition_key = key};
    upulsar_future_t *f;
    cr_assert_eq(upulsar_send(p, "x", 1, &o, &f), UPULSAR_OK);
    upulsar_err_t e = upulsar_future_wait(f, 20000, NULL);
    cr_assert_eq(e, UPULSAR_OK, "the message for partition 1: %s", upulsar_err_name(e));
    upulsar_future_release(f);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "g-partition-1", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 0)->payload[0], 'x');
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}

static int has_partitions(void *a)
{
    const int *want = ((const int **)a)[1];
    return upulsar_producer_partitions(((upulsar_producer_t **)a)[0]) == *want;
}

/* Scenario: a topic grows from 1 to 64 partitions one at a time, each
 * step followed by the producer. The handle's arrays grow in place while
 * they have room and double when they have not, so the arrays it replaced
 * (kept until the handle is freed: senders may still read them) are few
 * (2 per doubling: at most 14 here; one copy per step retired 126, and
 * 10,000 partitions added one at a time held 10^8 group entries); then a
 * message sent to each partition is stored there, once. */
Test(fault_growth, growing_one_partition_at_a_time_retires_few_arrays)
{
    enum { N = 64 };
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "g1", 1), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"partitions.update.interval.ms", "5", NULL};
    upulsar_producer_t *p = ft_producer(c, "g1p", "g1", 0, kv);
    for (int n = 2; n <= N; n++) {
        cr_assert_eq(upulsar_tb_set_partitions(tb, "g1", n), UPULSAR_OK);
        const void *arg[2] = {p, &n};
        cr_assert(ft_wait_for(has_partitions, arg), "the producer did not follow to %d", n);
    }
    cr_assert_leq(p->nretired, 14, "%d arrays retired", p->nretired);
    for (int i = 0; i < N; i++) {
        upulsar_send_opts_t o = {.flags = UPULSAR_SEND_PARTITION, .partition = i};
        upulsar_future_t *f;
        cr_assert_eq(upulsar_send(p, &i, sizeof i, &o, &f), UPULSAR_OK, "%d: %s", i,
                     upulsar_last_error());
        cr_assert_eq(upulsar_future_wait(f, 20000, NULL), UPULSAR_OK, "partition %d", i);
        upulsar_future_release(f);
    }
    for (int i = 0; i < N; i++) {
        char t[32];
        snprintf(t, sizeof t, "g1-partition-%d", i);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, t, &s), UPULSAR_OK);
        cr_assert_eq(upulsar_tb_snapshot_count(s), 1, "%s", t);
        int got;
        memcpy(&got, upulsar_tb_snapshot_msg(s, 0)->payload, sizeof got);
        cr_assert_eq(got, i, "%s holds the message for %d", t, got);
        upulsar_tb_snapshot_free(s);
    }
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}
