/* test_latency_stats.c -- the send->receipt histogram of the statistics
 * (upulsar_producer_stats_json(): "latency_us"): which messages it counts
 * (latency.sample.every, per sending thread), and that what it records lies
 * between the test's own clock readings around the send and the receipt. */
#include <pthread.h>

#include "fault_common.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(latency_stats, .init = setup, .fini = teardown, .timeout = 120);

typedef struct {
    unsigned long long count, sum, p50, p90, p99, p999;
    unsigned long long upper[512], n[512]; /* buckets */
    int nb;
} lat_t;

/* The "latency_us" object of the only producer of @p p. */
static lat_t lat_of(upulsar_producer_t *p)
{
    char *json = NULL;
    cr_assert_eq(upulsar_producer_stats_json(p, &json), UPULSAR_OK);
    const char *s = strstr(json, "\"latency_us\":{");
    cr_assert_not_null(s, "%s", json);
    cr_assert_null(strstr(s + 1, "\"latency_us\":{"), "one producer expected");
    lat_t l = {0};
    cr_assert_eq(sscanf(s,
                        "\"latency_us\":{\"count\":%llu,\"sum\":%llu,\"p50\":%llu,\"p90\":%llu,"
                        "\"p99\":%llu,\"p999\":%llu,\"buckets\":[",
                        &l.count, &l.sum, &l.p50, &l.p90, &l.p99, &l.p999),
                 6, "%s", s);
    const char *b = strstr(s, "\"buckets\":[") + strlen("\"buckets\":[");
    while (*b == '[' || *b == ',') {
        if (*b == ',')
            b++;
        int used = 0;
        cr_assert(l.nb < 512);
        cr_assert_eq(sscanf(b, "[%llu,%llu]%n", &l.upper[l.nb], &l.n[l.nb], &used), 2, "%s", b);
        l.nb++;
        b += used;
    }
    cr_assert_eq(*b, ']', "%s", b);
    free(json);
    return l;
}

/* The bucket bounds the histogram promises: a bucket's lower bound is
 * more than 15/16 of its upper bound (exact below 16). */
static unsigned long long lower_of(unsigned long long upper)
{
    if (upper < 16)
        return upper;
    unsigned long long w = 1;
    while ((upper + 1) / w > 32)
        w *= 2; /* the width of buckets up to this one: (upper+1)/w in [17,32] */
    return upper + 1 - w;
}

typedef struct {
    upulsar_producer_t *p;
    int n;
} sender_t;

/* Send @p n messages from a new thread (a fresh per-thread sample counter),
 * each waited for. */
static void *send_each(void *a)
{
    sender_t *s = a;
    for (int i = 0; i < s->n; i++)
        ft_send_ok(s->p, NULL);
    return NULL;
}

static void send_from_new_thread(upulsar_producer_t *p, int n)
{
    sender_t s = {p, n};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, send_each, &s), 0);
    pthread_join(t, NULL);
}

static upulsar_producer_t *producer(const char *topic, const char *every)
{
    const char *kv[] = {"latency.sample.every", every, NULL};
    return ft_producer(client, NULL, topic, 0, kv);
}

/* Scenario: latency.sample.every = 1, 4 and 0; 100 messages sent one at a
 * time from a new thread: the histogram counts exactly 100, 25 (every
 * fourth send of that thread) and 0 of them; its percentiles are bucket
 * bounds in order, and its sum lies within what its buckets allow. */
Test(latency_stats, sample_every_n_counts_every_nth_send_of_a_thread)
{
    static const struct {
        const char *every;
        unsigned long long want;
    } cases[] = {{"1", 100}, {"4", 25}, {"0", 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char topic[32];
        snprintf(topic, sizeof topic, "sample-%s", cases[c].every);
        upulsar_producer_t *p = producer(topic, cases[c].every);
        send_from_new_thread(p, 100);
        lat_t l = lat_of(p);
        cr_assert_eq(l.count, cases[c].want, "every %s: %llu counted", cases[c].every, l.count);
        unsigned long long total = 0, lo = 0, hi = 0;
        for (int i = 0; i < l.nb; i++) {
            cr_assert_gt(l.n[i], 0);
            if (i)
                cr_assert_gt(l.upper[i], l.upper[i - 1]);
            total += l.n[i];
            lo += lower_of(l.upper[i]) * l.n[i];
            hi += l.upper[i] * l.n[i];
        }
        cr_assert_eq(total, l.count);
        cr_assert(l.sum >= lo && l.sum <= hi, "sum %llu outside [%llu, %llu]", l.sum, lo, hi);
        cr_assert(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999);
        if (l.count)
            cr_assert_eq(l.p999, l.upper[l.nb - 1], "p99.9 of 100 values is the largest");
        cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    }
}

/* Send 100 messages from a new thread: 2 with upulsar_send(), 50 in one
 * upulsar_send_many() call, 3 with upulsar_send(), 45 in one call; each
 * waited for. */
static void *send_mixed(void *a)
{
    sender_t *s = a;
    static const char pay[] = "sampled";
    upulsar_msg_t m[50];
    upulsar_future_t *f[50];
    for (int i = 0; i < 50; i++)
        m[i] = (upulsar_msg_t){pay, sizeof pay - 1, NULL};
    static const int steps[] = {-2, 50, -3, 45};
    for (int k = 0; k < 4; k++) {
        if (steps[k] < 0) {
            for (int i = 0; i < -steps[k]; i++)
                ft_send_ok(s->p, NULL);
            continue;
        }
        size_t acc = 0;
        cr_assert_eq(upulsar_send_many(s->p, m, (size_t)steps[k], f, &acc), UPULSAR_OK, "%s",
                     upulsar_last_error());
        cr_assert_eq(acc, (size_t)steps[k]);
        for (int i = 0; i < steps[k]; i++) {
            cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, NULL), UPULSAR_OK);
            upulsar_future_release(f[i]);
        }
    }
    return NULL;
}

/* Scenario: as above, the 100 messages sent partly one at a time and
 * partly in upulsar_send_many() calls (whose messages without options
 * share reservations), latency.sample.every = 1, 4, 9 and 0: the histogram
 * counts exactly 100, 25, 11 and 0 of them, the thread's count running on
 * across both kinds of call. */
Test(latency_stats, sample_every_n_counts_upulsar_send_many_messages_alike)
{
    static const struct {
        const char *every;
        unsigned long long want;
    } cases[] = {{"1", 100}, {"4", 25}, {"9", 11}, {"0", 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char topic[32];
        snprintf(topic, sizeof topic, "sample-many-%s", cases[c].every);
        upulsar_producer_t *p = producer(topic, cases[c].every);
        sender_t s = {p, 100};
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, send_mixed, &s), 0);
        pthread_join(t, NULL);
        lat_t l = lat_of(p);
        cr_assert_eq(l.count, cases[c].want, "every %s: %llu counted", cases[c].every, l.count);
        cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    }
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Scenario: every message timed; receipts withheld while 20 messages are
 * sent, held for at least 50 ms after the last send returned, then
 * released. Every recorded latency lies between the time from the last
 * send's return to the release (each message waited at least that) and
 * the time from before the first send to after the last receipt: the
 * histogram measures send -> receipt, including the wait for the receipt. */
Test(latency_stats, recorded_latency_lies_between_the_tests_own_clock_readings)
{
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "held"), UPULSAR_OK);
    upulsar_producer_t *p = producer("held", "1");
    enum { N = 20 };
    upulsar_future_t *f[N];
    uint64_t t0 = mono_us();
    for (int i = 0; i < N; i++)
        cr_assert_eq(upulsar_send(p, "x", 1, NULL, &f[i]), UPULSAR_OK);
    uint64_t t1 = mono_us();
    ft_stored_t s = {tb, "held", N};
    cr_assert(ft_wait_for(ft_stored_at_least, &s));
    ft_pause_ms(50);
    uint64_t t2 = mono_us();
    cr_assert_eq(upulsar_tb_release_receipts(tb, "held"), UPULSAR_OK);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, NULL), UPULSAR_OK);
        upulsar_future_release(f[i]);
    }
    uint64_t t3 = mono_us();
    lat_t l = lat_of(p);
    cr_assert_eq(l.count, (unsigned long long)N);
    unsigned long long least = t2 - t1, most = t3 - t0;
    for (int i = 0; i < l.nb; i++) {
        cr_assert_geq(l.upper[i], least, "bucket up to %llu us, but every message waited %llu",
                      l.upper[i], least);
        cr_assert_leq(lower_of(l.upper[i]), most, "bucket from %llu us, longer than the test's %llu",
                      lower_of(l.upper[i]), most);
    }
    cr_assert(l.sum >= least * N && l.sum <= most * N, "sum %llu", l.sum);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}
