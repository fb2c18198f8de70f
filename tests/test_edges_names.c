/* test_edges_names.c -- topic names and partition counts at their limits.
 *
 * long_partitioned_names_are_used_whole: full topic names of 221 to
 *   UPULSAR_TOPIC_NAME_MAX bytes, 3 partitions: each partition's producer
 *   is registered under "<full name>-partition-<i>", whole, and a keyed
 *   message to each is stored under that exact name (nothing under a
 *   shortened one).
 * a_name_over_the_limit_is_refused_with_the_limit: one byte more fails the
 *   start with INVALID_TOPIC, the error naming the limit.
 * partition_counts_over_partitions_max_are_refused: a count given to start
 *   or announced by the broker over partitions.max fails the start with
 *   INVALID_ARG naming both numbers; no producer reaches the broker.
 * growth_over_partitions_max_is_not_followed: the broker grows the topic
 *   past partitions.max; after partition polls have seen it, the handle
 *   still routes over the old count and a warning names the cap.
 * names_that_are_not_utf8_are_refused: a topic or producer name that is
 *   not well-formed UTF-8 fails the start naming the rule; UTF-8 beyond
 *   ASCII is stored under its exact bytes.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "fault_common.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_plain_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(edges_names, .init = setup, .fini = teardown, .timeout = 120);

#define PREFIX "persistent://public/default/"

/* A full topic name of exactly @p len bytes, distinct per @p tag. */
static void full_name(char *out, size_t outsz, size_t len, char tag)
{
    size_t plen = strlen(PREFIX);
    cr_assert(len > plen + 1 && len < outsz);
    memcpy(out, PREFIX, plen);
    out[plen] = tag;
    for (size_t i = plen + 1; i < len; i++)
        out[i] = (char)('a' + i % 26);
    out[len] = '\0';
}

static size_t stored_on(const char *topic)
{
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    size_t n = upulsar_tb_snapshot_count(s);
    upulsar_tb_snapshot_free(s);
    return n;
}

Test(edges_names, long_partitioned_names_are_used_whole)
{
    enum { PARTS = 3 };
    for (size_t len = 221; len <= UPULSAR_TOPIC_NAME_MAX; len++) {
        char topic[UPULSAR_TOPIC_NAME_MAX + 1];
        full_name(topic, sizeof topic, len, (char)('A' + (len - 221)));
        upulsar_producer_t *p = NULL;
        /* the broker declares the partitions start uses (it checks its count) */
        cr_assert_eq(upulsar_tb_set_partitions(tb, topic, PARTS), UPULSAR_OK);
        cr_assert_eq(upulsar_producer_start(client, NULL, topic, PARTS, NULL, &p), UPULSAR_OK,
                     "length %zu: %s", len, upulsar_last_error());
        upulsar_producer_info_t info[PARTS];
        size_t n = 0;
        cr_assert_eq(upulsar_producer_list(p, info, PARTS, &n), UPULSAR_OK);
        cr_assert_eq(n, PARTS);
        /* one keyed message to every partition */
        int seen[PARTS] = {0};
        for (int k = 0, left = PARTS; left > 0; k++) {
            cr_assert_lt(k, 10000, "no key found for every partition");
            char key[16];
            snprintf(key, sizeof key, "k%d", k);
            int part = upulsar_producer_partition_for_key(p, key);
            if (seen[part])
                continue;
            seen[part] = 1;
            left--;
            upulsar_send_opts_t o = {.partition_key = key};
            ft_send_ok(p, &o);
        }
        cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
        for (int i = 0; i < PARTS; i++) {
            char want[UPULSAR_TOPIC_NAME_MAX + 32];
            snprintf(want, sizeof want, "%s-partition-%d", topic, i);
            int listed = 0;
            for (size_t j = 0; j < n; j++)
                listed += !strcmp(info[j].partition_topic, want);
            cr_assert_eq(listed, 1, "length %zu: %s is not a producer's topic", len, want);
            cr_assert_eq(stored_on(want), 1, "length %zu: partition %d stored %zu messages", len,
                         i, stored_on(want));
        }
    }
}

Test(edges_names, a_name_over_the_limit_is_refused_with_the_limit)
{
    char topic[UPULSAR_TOPIC_NAME_MAX + 2], limit[32];
    full_name(topic, sizeof topic, UPULSAR_TOPIC_NAME_MAX + 1, 'Z');
    snprintf(limit, sizeof limit, "at most %d", UPULSAR_TOPIC_NAME_MAX);
    for (int parts = 0; parts <= 2; parts += 2) {
        upulsar_producer_t *p = NULL;
        /* the broker declares the partitions start uses (it checks its count) */
        cr_assert_eq(upulsar_tb_set_partitions(tb, topic, parts), UPULSAR_OK);
        cr_assert_eq(upulsar_producer_start(client, NULL, topic, parts, NULL, &p),
                     UPULSAR_ERR__INVALID_TOPIC);
        cr_assert_null(p);
        cr_assert(strstr(upulsar_last_error(), limit), "error \"%s\" does not name the limit",
                  upulsar_last_error());
    }
}

static upulsar_conf_t *conf_max(const char *max)
{
    const char *kv[] = {"partitions.max", max, "partitions.update.interval.ms", "50", NULL};
    return ft_conf(kv);
}

Test(edges_names, partition_counts_over_partitions_max_are_refused)
{
    upulsar_tb_stats_t st0, st;
    cr_assert_eq(upulsar_tb_stats(tb, &st0), UPULSAR_OK);
    upulsar_producer_t *p = NULL;
    /* the default cap (1024), a count given to start */
    cr_assert_eq(upulsar_producer_start(client, NULL, "given", 1025, NULL, &p),
                 UPULSAR_ERR__INVALID_ARG);
    cr_assert_null(p);
    cr_assert(strstr(upulsar_last_error(), "1025") &&
                  strstr(upulsar_last_error(), "partitions.max=1024"),
              "%s", upulsar_last_error());
    /* a configured cap, a count the broker announces */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "announced", 3000), UPULSAR_OK);
    upulsar_conf_t *conf = conf_max("100");
    cr_assert_eq(upulsar_producer_start(client, NULL, "announced", 0, conf, &p),
                 UPULSAR_ERR__INVALID_ARG);
    cr_assert_null(p);
    cr_assert(strstr(upulsar_last_error(), "3000") &&
                  strstr(upulsar_last_error(), "partitions.max=100"),
              "%s", upulsar_last_error());
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    cr_assert_eq(st.lookups, st0.lookups, "a refused start looked up a partition");
    /* at the cap it opens them all */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "announced", 100), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(client, NULL, "announced", 0, conf, &p), UPULSAR_OK,
                 "%s", upulsar_last_error());
    cr_assert_eq(upulsar_producer_partitions(p), 100);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_conf_destroy(conf);
}

static atomic_int cap_warnings;

static void count_cap_warnings(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)opaque;
    if (level == UPULSAR_LOG_WARNING && strstr(line, "more than partitions.max=4"))
        atomic_fetch_add(&cap_warnings, 1);
}

typedef struct {
    upulsar_tb_t *tb;
    uint64_t partition_lookups;
} polls_t;

static int polled(void *a)
{
    polls_t *w = a;
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(w->tb, &st), UPULSAR_OK);
    return st.partition_lookups >= w->partition_lookups && atomic_load(&cap_warnings) > 0;
}

Test(edges_names, growth_over_partitions_max_is_not_followed)
{
    cr_assert_eq(upulsar_client_set_log_cb(client, count_cap_warnings, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_partitions(tb, "grown", 2), UPULSAR_OK);
    upulsar_conf_t *conf = conf_max("4");
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(client, NULL, "grown", 0, conf, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_conf_destroy(conf);
    cr_assert_eq(upulsar_tb_set_partitions(tb, "grown", 8), UPULSAR_OK);
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    /* two more polls: at least one was asked after the change */
    polls_t w = {tb, st.partition_lookups + 2};
    cr_assert(ft_wait_for(polled, &w), "no partition poll saw the grown topic");
    cr_assert_eq(upulsar_producer_partitions(p), 2);
    ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    cr_assert_eq(upulsar_client_set_log_cb(client, NULL, NULL), UPULSAR_OK);
}

/* Names travel as protobuf strings, which a broker reads as UTF-8: a topic
 * or producer name that is not valid UTF-8 would be stored under another
 * name than the one given (and makes the statistics' JSON and the metrics'
 * labels invalid). The start refuses it, naming the rule: INVALID_TOPIC
 * for the topic, INVALID_ARG for the producer name; valid UTF-8 beyond
 * ASCII is taken and stored under its exact bytes. */
Test(edges_names, names_that_are_not_utf8_are_refused)
{
    const char *bad_topics[] = {"top\xc3ic", "t\xff", "over\xc0\xafong", "sur\xed\xa0\x80"};
    for (size_t i = 0; i < sizeof bad_topics / sizeof bad_topics[0]; i++) {
        upulsar_producer_t *p = NULL;
        upulsar_err_t e = upulsar_producer_start(client, NULL, bad_topics[i], 0, NULL, &p);
        cr_assert_eq(e, UPULSAR_ERR__INVALID_TOPIC, "topic %zu: %s", i, upulsar_err_name(e));
        cr_assert(strstr(upulsar_last_error(), "UTF-8"), "%s", upulsar_last_error());
        cr_assert_null(p);
    }
    upulsar_producer_t *p = NULL;
    upulsar_err_t e = upulsar_producer_start(client, "na\xffme", "utf8-ok", 0, NULL, &p);
    cr_assert_eq(e, UPULSAR_ERR__INVALID_ARG, "%s", upulsar_err_name(e));
    cr_assert(strstr(upulsar_last_error(), "UTF-8"), "%s", upulsar_last_error());
    cr_assert_null(p);
    e = upulsar_producer_start(client, "n\xc3\xa4me", "t\xc3\xb3pico-\xe2\x82\xac", 0, NULL, &p);
    cr_assert_eq(e, UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(p, "u", 1, NULL, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f, 10000, NULL), UPULSAR_OK);
    upulsar_future_release(f);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    cr_assert_eq(stored_on("t\xc3\xb3pico-\xe2\x82\xac"), 1);
}
