/* test_producer.c -- the partitioned producer against the test broker:
 * routing, futures, ordering, stop. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <stdio.h>
#include <string.h>

#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK);
    upulsar_conf_t *conf = upulsar_conf_new();
    char err[256];
    cr_assert_eq(upulsar_conf_set(conf, "service.url", upulsar_tb_url(tb), err, sizeof err),
                 UPULSAR_CONF_OK, "%s", err);
    cr_assert_eq(upulsar_client_new(conf, &client), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_conf_destroy(conf);
}

static void teardown(void)
{
    upulsar_client_destroy(client);
    upulsar_tb_stop(tb);
}

TestSuite(producer, .init = setup, .fini = teardown, .timeout = 60);

/* Bound of every wait for something that must happen: it only guards
 * against a hang (a test that runs into it fails; it never decides a
 * pass). */
#define WAIT_MS 50000

Test(producer, keyed_messages_land_on_hashed_partition_in_order)
{
    upulsar_producer_t *p;
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "keyed", 4), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(client, "kp", "keyed", 4, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    enum { N = 2000 };
    static upulsar_future_t *fut[N];
    static char keys[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "key-%d", i % 37);
        char payload[32];
        int len = snprintf(payload, sizeof payload, "msg-%d", i);
        upulsar_send_opts_t o = {.partition_key = keys[i]};
        cr_assert_eq(upulsar_send(p, payload, (size_t)len, &o, &fut[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    for (int i = 0; i < N; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(fut[i], WAIT_MS, &id), UPULSAR_OK, "message %d", i);
        cr_assert_eq(id.partition, upulsar_producer_partition_for_key(p, keys[i]));
        upulsar_future_release(fut[i]);
    }
    /* the broker holds every message, per partition in send order */
    size_t total = 0;
    for (int part = 0; part < 4; part++) {
        char t[128];
        snprintf(t, sizeof t, "keyed-partition-%d", part);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, t, &s), UPULSAR_OK);
        int last = -1;
        for (size_t j = 0; j < upulsar_tb_snapshot_count(s); j++) {
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, j);
            int i;
            cr_assert_eq(sscanf((const char *)m->payload, "msg-%d", &i), 1);
            cr_assert_gt(i, last, "order broken on partition %d", part);
            last = i;
            cr_assert_str_eq(m->partition_key, keys[i]);
            cr_assert_eq(upulsar_producer_partition_for_key(p, keys[i]), part);
        }
        total += upulsar_tb_snapshot_count(s);
        upulsar_tb_snapshot_free(s);
    }
    cr_assert_eq(total, N);
    cr_assert_eq(upulsar_producer_stop(p, WAIT_MS), UPULSAR_OK);
}

Test(producer, unkeyed_messages_spread_over_all_partitions)
{
    upulsar_producer_t *p;
    upulsar_conf_t *conf = upulsar_conf_new();
    upulsar_conf_set(conf, "batch.max.messages", "50", NULL, 0);
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "spread", 8), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(client, NULL, "spread", 8, conf, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_conf_destroy(conf);
    enum { N = 4000 };
    for (int i = 0; i < N; i++)
        cr_assert_eq(upulsar_send(p, "x", 1, NULL, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_flush(p, WAIT_MS), UPULSAR_OK);
    for (int part = 0; part < 8; part++) {
        char t[64];
        snprintf(t, sizeof t, "spread-partition-%d", part);
        upulsar_tb_topic_stats_t st;
        cr_assert_eq(upulsar_tb_topic_stats(tb, t, &st), UPULSAR_OK);
        cr_assert_gt(st.messages, 0, "partition %d got nothing", part);
    }
    upulsar_producer_stop(p, 5000);
}

Test(producer, murmur3_scheme_routes_like_java_murmur)
{
    upulsar_producer_t *p;
    upulsar_conf_t *conf = upulsar_conf_new();
    cr_assert_eq(upulsar_conf_set(conf, "hashing.scheme", "murmur3_32", NULL, 0), UPULSAR_CONF_OK);
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "mm", 7), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(client, NULL, "mm", 7, conf, &p), UPULSAR_OK);
    upulsar_conf_destroy(conf);
    /* protocol reference vectors: "key1" -> 462881061, "hello" -> 613153351 */
    cr_assert_eq(upulsar_producer_partition_for_key(p, "key1"), 462881061 % 7);
    cr_assert_eq(upulsar_producer_partition_for_key(p, "hello"), 613153351 % 7);
    upulsar_future_t *f;
    upulsar_send_opts_t o = {.partition_key = "hello"};
    cr_assert_eq(upulsar_send(p, "v", 1, &o, &f), UPULSAR_OK);
    upulsar_msg_id_t id;
    cr_assert_eq(upulsar_future_wait(f, WAIT_MS, &id), UPULSAR_OK);
    cr_assert_eq(id.partition, 613153351 % 7);
    upulsar_future_release(f);
    upulsar_producer_stop(p, 5000);
}

Test(producer, java_string_hash_is_the_default_scheme)
{
    upulsar_producer_t *p;
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "js", 7), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(client, NULL, "js", 7, NULL, &p), UPULSAR_OK);
    /* "key1".hashCode() = 3288498, "my-key" = 1086286526 */
    cr_assert_eq(upulsar_producer_partition_for_key(p, "key1"), 3288498 % 7);
    cr_assert_eq(upulsar_producer_partition_for_key(p, "my-key"), 1086286526 % 7);
    upulsar_producer_stop(p, 5000);
}

Test(producer, lz4_batches_round_trip_with_properties)
{
    upulsar_producer_t *p;
    upulsar_conf_t *conf = upulsar_conf_new();
    cr_assert_eq(upulsar_conf_set(conf, "compression", "lz4", NULL, 0), UPULSAR_CONF_OK);
    cr_assert_eq(upulsar_producer_start(client, "lz", "lz4t", 0, conf, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_conf_destroy(conf);
    enum { N = 1000 };
    upulsar_property_t props[2] = {{"app", "upulsar"}, {"n", "1"}};
    for (int i = 0; i < N; i++) {
        char payload[128];
        int len = snprintf(payload, sizeof payload, "compressible payload %d %d %d", i, i, i);
        upulsar_send_opts_t o = {.properties = props, .properties_cnt = 2, .event_time_ms = 42};
        cr_assert_eq(upulsar_send(p, payload, (size_t)len, &o, NULL), UPULSAR_OK);
    }
    cr_assert_eq(upulsar_producer_flush(p, WAIT_MS), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "lz4t", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), N);
    for (size_t i = 0; i < N; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, i);
        char want[128];
        int len = snprintf(want, sizeof want, "compressible payload %zu %zu %zu", i, i, i);
        cr_assert_eq(m->payload_len, (size_t)len);
        cr_assert_eq(memcmp(m->payload, want, (size_t)len), 0);
        cr_assert_eq(m->compression, 1);
        cr_assert_eq(m->properties_cnt, 2);
        cr_assert_str_eq(m->properties[0].key, "app");
        cr_assert_str_eq(m->properties[1].value, "1");
        cr_assert_eq(m->event_time, 42);
        cr_assert_eq(m->sequence_id, i);
        cr_assert_str_eq(m->producer_name, "lz");
    }
    upulsar_tb_snapshot_free(s);
    upulsar_producer_stop(p, 5000);
}

Test(producer, bad_input_gets_clear_errors_and_disturbs_nothing)
{
    upulsar_producer_t *p;
    cr_assert_eq(upulsar_producer_start(client, NULL, "bad/topic", 1, NULL, &p),
                 UPULSAR_ERR__INVALID_TOPIC);
    /* a tenant or namespace a Pulsar broker would refuse is refused here,
     * naming the rule; '=' and ':' are fine in a topic's own name */
    cr_assert_eq(upulsar_producer_start(client, NULL, "my+tenant/ns/t", 1, NULL, &p),
                 UPULSAR_ERR__INVALID_TOPIC);
    cr_assert(strstr(upulsar_last_error(), "tenant or namespace"), "%s", upulsar_last_error());
    cr_assert_eq(upulsar_producer_start(client, NULL, "public/d@fault/t", 1, NULL, &p),
                 UPULSAR_ERR__INVALID_TOPIC);
    cr_assert_eq(upulsar_producer_start(client, NULL, "k=v:1", 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(client, NULL, "good", -1, NULL, &p),
                 UPULSAR_ERR__INVALID_ARG);
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "good", 2), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(client, NULL, "good", 2, NULL, &p), UPULSAR_OK);
    cr_assert_eq(upulsar_send(p, NULL, 5, NULL, NULL), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_send(NULL, "x", 1, NULL, NULL), UPULSAR_ERR__INVALID_ARG);
    static char big[6 * 1024 * 1024];
    cr_assert_eq(upulsar_send(p, big, sizeof big, NULL, NULL), UPULSAR_ERR__MSG_TOO_LARGE);
    cr_assert(strstr(upulsar_last_error(), "max_message_size"));
    upulsar_future_t *f;
    cr_assert_eq(upulsar_send(p, "ok", 2, NULL, &f), UPULSAR_OK);
    upulsar_msg_id_t id;
    cr_assert_eq(upulsar_future_wait(f, WAIT_MS, &id), UPULSAR_OK);
    upulsar_future_release(f);
    cr_assert_eq(upulsar_producer_stop(p, WAIT_MS), UPULSAR_OK);
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, "good-partition-0", &st), UPULSAR_OK);
    upulsar_tb_topic_stats_t st1;
    cr_assert_eq(upulsar_tb_topic_stats(tb, "good-partition-1", &st1), UPULSAR_OK);
    cr_assert_eq(st.messages + st1.messages, 1);
}

Test(producer, large_message_within_limit_is_stored_whole)
{
    upulsar_producer_t *p;
    cr_assert_eq(upulsar_producer_start(client, NULL, "large", 0, NULL, &p), UPULSAR_OK);
    size_t n = 3 * 1024 * 1024;
    unsigned char *buf = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(i * 31);
    upulsar_future_t *f;
    cr_assert_eq(upulsar_send(p, buf, n, NULL, &f), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_msg_id_t id;
    cr_assert_eq(upulsar_future_wait(f, WAIT_MS, &id), UPULSAR_OK);
    upulsar_future_release(f);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "large", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 0)->payload_len, n);
    cr_assert_eq(memcmp(upulsar_tb_snapshot_msg(s, 0)->payload, buf, n), 0);
    upulsar_tb_snapshot_free(s);
    free(buf);
    upulsar_producer_stop(p, 5000);
}

static int cb_count;
static void count_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    __atomic_add_fetch(&cb_count, 1, __ATOMIC_RELAXED);
    *(upulsar_err_t *)opaque = err;
}

Test(producer, send_on_stopped_producer_is_refused_and_stop_resolves_everything)
{
    upulsar_producer_t *p;
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "stopme", 2), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(client, NULL, "stopme", 2, NULL, &p), UPULSAR_OK);
    /* hold receipts so messages are in flight when stop runs */
    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    enum { N = 100 };
    upulsar_future_t *f[N];
    upulsar_err_t cb_err[N];
    cb_count = 0;
    for (int i = 0; i < N; i++) {
        upulsar_send_opts_t o = {.cb = count_cb, .opaque = &cb_err[i]};
        cr_assert_eq(upulsar_send(p, "m", 1, &o, &f[i]), UPULSAR_OK);
    }
    cr_assert_eq(upulsar_producer_stop(p, 300), UPULSAR_ERR__TIMED_OUT);
    cr_assert_eq(cb_count, N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(upulsar_future_poll(f[i], NULL), UPULSAR_ERR__CLOSED);
        cr_assert_eq(cb_err[i], UPULSAR_ERR__CLOSED);
        upulsar_future_release(f[i]);
    }
    upulsar_tb_release_receipts(tb, NULL);
}

Test(producer, introspection_lists_groups_and_distinct_producers)
{
    upulsar_producer_t *p;
    upulsar_conf_t *conf = upulsar_conf_new();
    cr_assert_eq(upulsar_conf_set(conf, "producers.per.partition", "3", NULL, 0), UPULSAR_CONF_OK);
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "intro", 4), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(client, "intro", "intro", 4, conf, &p), UPULSAR_OK,
                 "%s", upulsar_last_error());
    upulsar_conf_destroy(conf);
    upulsar_group_info_t g[8];
    size_t ng;
    cr_assert_eq(upulsar_producer_groups(p, g, 8, &ng), UPULSAR_OK);
    cr_assert_eq(ng, 4);
    for (int i = 0; i < 4; i++) {
        char want[128];
        snprintf(want, sizeof want, "persistent://public/default/intro-partition-%d", i);
        cr_assert_str_eq(g[i].partition_topic, want);
        cr_assert_eq(g[i].producers, 3);
        cr_assert_eq(g[i].state, UPULSAR_STATE_READY);
    }
    upulsar_producer_info_t pi[16];
    size_t np;
    cr_assert_eq(upulsar_producer_list(p, pi, 16, &np), UPULSAR_OK);
    cr_assert_eq(np, 12);
    /* names are unique per partition topic: "intro-<index>" */
    for (size_t i = 0; i < np; i++)
        for (size_t j = i + 1; j < np; j++)
            if (pi[i].partition == pi[j].partition)
                cr_assert_str_neq(pi[i].name, pi[j].name);
    /* keys spread over the producers of a group, each key on one producer:
     * every key is sent ROUNDS times, interleaved with the others, and the
     * log must show all its messages on its partition, from one producer,
     * in send order */
    enum { KEYS = 1000, ROUNDS = 4 };
    for (int r = 0; r < ROUNDS; r++)
        for (int k = 0; k < KEYS; k++) {
            char key[16], payload[32];
            snprintf(key, sizeof key, "k%d", k);
            int len = snprintf(payload, sizeof payload, "%d:%d", k, r);
            upulsar_send_opts_t o = {.partition_key = key};
            cr_assert_eq(upulsar_send(p, payload, (size_t)len, &o, NULL), UPULSAR_OK);
        }
    cr_assert_eq(upulsar_producer_flush(p, WAIT_MS), UPULSAR_OK);
    static char owner[KEYS][128]; /* producer name each key's messages came from */
    static int rounds_seen[KEYS];
    memset(owner, 0, sizeof owner);
    memset(rounds_seen, 0, sizeof rounds_seen);
    int per_producer[4][3] = {{0}};
    size_t total = 0;
    for (int part = 0; part < 4; part++) {
        char t[64];
        snprintf(t, sizeof t, "intro-partition-%d", part);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, t, &s), UPULSAR_OK);
        for (size_t j = 0; j < upulsar_tb_snapshot_count(s); j++) {
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, j);
            char payload[32];
            snprintf(payload, sizeof payload, "%.*s", (int)m->payload_len,
                     (const char *)m->payload);
            int k, r;
            cr_assert_eq(sscanf(payload, "%d:%d", &k, &r), 2, "%s: foreign message", t);
            cr_assert(k >= 0 && k < KEYS && r >= 0 && r < ROUNDS, "%s: %s", t, payload);
            char key[16];
            snprintf(key, sizeof key, "k%d", k);
            cr_assert_not_null(m->partition_key, "%s: %s without key", t, payload);
            cr_assert_str_eq(m->partition_key, key);
            cr_assert_eq(upulsar_producer_partition_for_key(p, key), part,
                         "%s on partition %d", key, part);
            cr_assert_eq(rounds_seen[k], r, "%s: round %d stored after %d rounds", key, r,
                         rounds_seen[k]);
            rounds_seen[k]++;
            if (r == 0) {
                snprintf(owner[k], sizeof owner[k], "%s", m->producer_name);
                int idx;
                cr_assert_eq(sscanf(m->producer_name, "intro-%d", &idx), 1, "%s",
                             m->producer_name);
                cr_assert(idx >= 0 && idx < 3, "%s", m->producer_name);
                per_producer[part][idx]++;
            } else {
                cr_assert_str_eq(m->producer_name, owner[k], "%s: round %d from %s, round 0 from %s",
                                 key, r, m->producer_name, owner[k]);
            }
        }
        total += upulsar_tb_snapshot_count(s);
        upulsar_tb_snapshot_free(s);
    }
    cr_assert_eq(total, (size_t)KEYS * ROUNDS);
    for (int k = 0; k < KEYS; k++)
        cr_assert_eq(rounds_seen[k], ROUNDS, "k%d: %d of %d messages stored", k, rounds_seen[k],
                     ROUNDS);
    /* ...and the keys spread over every producer of every group */
    for (int part = 0; part < 4; part++)
        for (int idx = 0; idx < 3; idx++)
            cr_assert_gt(per_producer[part][idx], 0, "partition %d: intro-%d got no key", part,
                         idx);
    upulsar_producer_stop(p, 5000);
}

/* The first periodic report that shows a producer (one may come while
 * upulsar_producer_start() is still running: it lists none yet). */
static _Atomic int stats_claimed, stats_calls;
static char stats_seen[8192];
static void on_stats(const char *json, void *opaque)
{
    int zero = 0;
    if (strstr(json, "\"topic\":") &&
        atomic_compare_exchange_strong(&stats_claimed, &zero, 1)) {
        snprintf(stats_seen, sizeof stats_seen, "%s", json);
        atomic_store(&stats_calls, 1); /* publishes stats_seen */
    }
    (void)opaque;
}

Test(producer, stats_json_counts_messages_and_batches)
{
    upulsar_conf_t *conf = upulsar_conf_new();
    upulsar_conf_set(conf, "service.url", upulsar_tb_url(tb), NULL, 0);
    cr_assert_eq(upulsar_conf_set(conf, "stats.interval.ms", "50", NULL, 0), UPULSAR_CONF_OK);
    upulsar_client_t *c2;
    cr_assert_eq(upulsar_client_new(conf, &c2), UPULSAR_OK);
    cr_assert_eq(upulsar_client_set_stats_cb(c2, on_stats, NULL), UPULSAR_OK);
    upulsar_producer_t *p;
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "stats", 2), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(c2, "st", "stats", 2, conf, &p), UPULSAR_OK);
    upulsar_conf_destroy(conf);
    for (int i = 0; i < 500; i++) {
        upulsar_send_opts_t so = {.partition_key = "one-key"};
        cr_assert_eq(upulsar_send(p, "s", 1, &so, NULL), UPULSAR_OK);
    }
    cr_assert_eq(upulsar_producer_flush(p, WAIT_MS), UPULSAR_OK);
    char *json;
    cr_assert_eq(upulsar_producer_stats_json(p, &json), UPULSAR_OK);
    int part = upulsar_producer_partition_for_key(p, "one-key");
    /* the key's partition's group, whose producer is "st" (the plain
     * name on every partition) */
    char want[64];
    snprintf(want, sizeof want, "{\"partition\":%d,", part);
    char *at = strstr(json, want);
    cr_assert_not_null(at, "%s", json);
    at = strstr(at, "\"producers\":[{\"name\":\"st\",");
    cr_assert_not_null(at, "%s", json);
    cr_assert(strstr(at, "\"sent\":500,\"acked\":500,\"failed\":0,\"pending\":0"), "%s", json);
    cr_assert(strstr(json, "\"batch_msgs\":{\"count\":"), "%s", json);
    free(json);
    /* wait for it (the bound only guards against a hang) */
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        if (atomic_load(&stats_calls))
            break;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 < WAIT_MS);
    cr_assert_gt(atomic_load(&stats_calls), 0,
                 "the periodic stats callback never ran with the producer");
    cr_assert(strstr(stats_seen, "{\"ts_ms\":"), "%s", stats_seen);
    cr_assert(strstr(stats_seen, "\"topic\":\"persistent://public/default/stats\""), "%s",
              stats_seen);
    upulsar_producer_stop(p, 5000);
    upulsar_client_destroy(c2);
}

Test(producer, records_wrapping_the_ring_end_arrive_intact)
{
    /* a 64 KiB ring and odd record sizes: thousands of records straddle the
     * end of the ring (with and without key, ordering key, properties) */
    upulsar_producer_t *p;
    upulsar_conf_t *conf = upulsar_conf_new();
    cr_assert_eq(upulsar_conf_set(conf, "queue.buffer.bytes", "65536", NULL, 0), UPULSAR_CONF_OK);
    cr_assert_eq(upulsar_conf_set(conf, "block.if.queue.full", "true", NULL, 0), UPULSAR_CONF_OK);
    cr_assert_eq(upulsar_producer_start(client, "wrap", "wrap", 0, conf, &p), UPULSAR_OK);
    upulsar_conf_destroy(conf);
    enum { N = 6000 };
    upulsar_property_t props[1] = {{"p", "v"}};
    for (int i = 0; i < N; i++) {
        char payload[300];
        int len = snprintf(payload, sizeof payload, "%d:", i);
        while (len < 17 + (i * 37) % 251)
            payload[len++] = (char)('a' + i % 26);
        upulsar_send_opts_t o = {0};
        if (i % 3 == 1)
            o.partition_key = "k";
        if (i % 5 == 2) {
            o.ordering_key = "ok";
            o.ordering_key_len = 2;
            o.properties = props;
            o.properties_cnt = 1;
        }
        cr_assert_eq(upulsar_send(p, payload, (size_t)len, &o, NULL), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    cr_assert_eq(upulsar_producer_flush(p, WAIT_MS), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "wrap", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), N);
    for (int i = 0; i < N; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        cr_assert_eq(m->payload_len, (size_t)(17 + (i * 37) % 251), "message %d length", i);
        int got;
        cr_assert_eq(sscanf((const char *)m->payload, "%d:", &got), 1);
        cr_assert_eq(got, i);
        for (size_t k = (size_t)snprintf(NULL, 0, "%d:", i); k < m->payload_len; k++)
            cr_assert_eq(m->payload[k], (uint8_t)('a' + i % 26), "message %d byte %zu", i, k);
        cr_assert_eq(m->partition_key != NULL, i % 3 == 1, "message %d key", i);
        cr_assert_eq(m->properties_cnt, (size_t)(i % 5 == 2), "message %d properties", i);
        cr_assert_eq(m->ordering_key_len, (size_t)(i % 5 == 2 ? 2 : 0), "message %d okey", i);
    }
    upulsar_tb_snapshot_free(s);
    upulsar_producer_stop(p, 5000);
}
