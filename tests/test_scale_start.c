/* test_scale_start.c -- starting a producer.
 *
 * The partition count given to upulsar_producer_start() is checked against
 * the broker's (PARTITIONED_METADATA): when they differ the broker's count
 * is used, with a warning naming both; sends then route by the broker's
 * count and nothing reaches partitions the topic does not have.
 *
 * One producer over 10,000 partitions against the test broker: it starts (every partition topic's producer created on the
 * broker, READY), carries one message per partition, each with a key the
 * producer routes to that partition, every one stored exactly once on its
 * partition with its key and bytes, and stops with nothing left over
 * (under ASan: no leak, no use after free). Outcomes are asserted by
 * states, message ids and the broker's store, never by how long anything
 * took. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_common.h"

#if defined(__SANITIZE_THREAD__)
/* ThreadSanitizer maps about six shadow regions per ring mapping, and
 * unmapping a ring splits them: 10,000 rings reach vm.max_map_count
 * (65530) there and the run dies in the sanitizer, not in the library. The
 * same scenario with 4,000; Release and ASan run the full 10,000. */
#define PARTS 4000
#else
#define PARTS 10000
#endif

static upulsar_tb_t *tb;

static void setup(void) { tb = ft_broker(); }
static void teardown(void) { upulsar_tb_stop(tb); }

TestSuite(scale_start, .init = setup, .fini = teardown, .timeout = 600);

Test(scale_start, ten_thousand_partitions_start_carry_one_keyed_message_each_and_stop)
{
    const char *topic = "scale-start";
    cr_assert_eq(upulsar_tb_set_partitions(tb, topic, PARTS), UPULSAR_OK);
    upulsar_client_t *client = ft_plain_client(tb, NULL);
    /* small rings: 10,000 producers; one message per entry */
    const char *kv[] = {"partitions.max", "10000", "queue.buffer.bytes", "65536",
                        "batch.max.messages", "1", "send.timeout.ms", "0", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, topic, 0, kv);
    cr_assert_eq(upulsar_producer_partitions(p), PARTS);

    /* every partition's producer was created before start returned */
    size_t ng = 0;
    upulsar_group_info_t *gi = calloc(PARTS, sizeof *gi);
    cr_assert_not_null(gi);
    cr_assert_eq(upulsar_producer_groups(p, gi, PARTS, &ng), UPULSAR_OK);
    cr_assert_eq(ng, (size_t)PARTS);
    for (int g = 0; g < PARTS; g++) {
        cr_assert_eq(gi[g].partition, g);
        cr_assert_eq(gi[g].state, UPULSAR_STATE_READY, "partition %d: %s", g,
                     upulsar_state_name(gi[g].state));
    }
    free(gi);

    /* a key for each partition, found by asking the producer's routing */
    char (*keys)[24] = calloc(PARTS, sizeof *keys);
    cr_assert_not_null(keys);
    int found = 0;
    for (long k = 0; found < PARTS; k++) {
        cr_assert_lt(k, 100L * PARTS, "no key routes to %d partitions", PARTS - found);
        char key[24];
        snprintf(key, sizeof key, "key-%ld", k);
        int part = upulsar_producer_partition_for_key(p, key);
        cr_assert(part >= 0 && part < PARTS);
        if (keys[part][0])
            continue;
        snprintf(keys[part], sizeof keys[part], "%s", key);
        found++;
    }

    upulsar_future_t **f = calloc(PARTS, sizeof *f);
    cr_assert_not_null(f);
    for (int i = 0; i < PARTS; i++) {
        char payload[32];
        int n = snprintf(payload, sizeof payload, "message-%d", i);
        upulsar_send_opts_t o = {.partition_key = keys[i]};
        cr_assert_eq(upulsar_send(p, payload, (size_t)n, &o, &f[i]), UPULSAR_OK, "%d: %s", i,
                     upulsar_last_error());
    }
    cr_assert_eq(upulsar_producer_flush(p, 120000), UPULSAR_OK, "%s", upulsar_last_error());
    for (int i = 0; i < PARTS; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], 120000, &id), UPULSAR_OK, "%d", i);
        cr_assert_eq(id.partition, i, "message %d acknowledged by partition %d", i,
                     id.partition);
        upulsar_future_release(f[i]);
    }
    free(f);

    /* the broker's store: exactly one message on every partition, its own */
    for (int i = 0; i < PARTS; i++) {
        char pt[64], want[32];
        snprintf(pt, sizeof pt, "%s-partition-%d", topic, i);
        snprintf(want, sizeof want, "message-%d", i);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, pt, &s), UPULSAR_OK, "%s", pt);
        cr_assert_eq(upulsar_tb_snapshot_count(s), 1, "%s holds %zu messages", pt,
                     upulsar_tb_snapshot_count(s));
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 0);
        cr_assert(m->payload_len == strlen(want) && !memcmp(m->payload, want, m->payload_len),
                  "%s: not %s", pt, want);
        cr_assert_not_null(m->partition_key);
        cr_assert_str_eq(m->partition_key, keys[i]);
        upulsar_tb_snapshot_free(s);
    }
    free(keys);

    cr_assert_eq(upulsar_producer_stop(p, 60000), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_client_destroy(client);
}

/* ---- the partition count given to start ------------------------------------- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char warned[4096];

static void keep_warnings(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)opaque;
    if (level > UPULSAR_LOG_WARNING)
        return;
    pthread_mutex_lock(&log_mu);
    size_t n = strlen(warned);
    snprintf(warned + n, sizeof warned - n, "%s\n", line);
    pthread_mutex_unlock(&log_mu);
}

static bool warned_about(const char *text)
{
    pthread_mutex_lock(&log_mu);
    bool yes = strstr(warned, text) != NULL;
    pthread_mutex_unlock(&log_mu);
    return yes;
}

/* Start on @p topic, which the broker gives @p real partitions, with
 * @p given; one message for each of 64 keys; check where each went. */
static void start_with_count(const char *topic, int given, int real)
{
    cr_assert_eq(upulsar_tb_set_partitions(tb, topic, real), UPULSAR_OK);
    upulsar_client_t *client = ft_plain_client(tb, NULL);
    pthread_mutex_lock(&log_mu);
    warned[0] = '\0';
    pthread_mutex_unlock(&log_mu);
    cr_assert_eq(upulsar_client_set_log_cb(client, keep_warnings, NULL), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, NULL, topic, given, NULL);
    cr_assert_eq(upulsar_producer_partitions(p), real, "the broker's count is used");
    char want[128];
    if (real > 0)
        snprintf(want, sizeof want, "%d partitions given, but the broker reports %d", given,
                 real);
    else
        snprintf(want, sizeof want, "%d partitions given, but the broker reports a "
                                    "non-partitioned topic", given);
    if (given != real)
        cr_assert(warned_about(want), "no warning '%s' in: %s", want, warned);
    else
        cr_assert(!warned_about("partitions given"), "warned: %s", warned);

    upulsar_future_t *f[64];
    int part[64];
    for (int i = 0; i < 64; i++) {
        char key[16], payload[16];
        snprintf(key, sizeof key, "k%d", i);
        int n = snprintf(payload, sizeof payload, "v%d", i);
        part[i] = upulsar_producer_partition_for_key(p, key);
        upulsar_send_opts_t o = {.partition_key = key};
        cr_assert_eq(upulsar_send(p, payload, (size_t)n, &o, &f[i]), UPULSAR_OK);
    }
    for (int i = 0; i < 64; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, &id), UPULSAR_OK, "%d", i);
        cr_assert_eq(id.partition, part[i], "k%d", i);
        upulsar_future_release(f[i]);
    }
    /* the broker's store: every message once, on the partition of its key
     * under the broker's count (the topic itself when not partitioned) */
    int nt = real > 0 ? real : 1;
    size_t stored = 0;
    for (int t = 0; t < nt; t++) {
        char pt[96];
        if (real > 0)
            snprintf(pt, sizeof pt, "%s-partition-%d", topic, t);
        else
            snprintf(pt, sizeof pt, "%s", topic);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, pt, &s), UPULSAR_OK);
        for (size_t k = 0; k < upulsar_tb_snapshot_count(s); k++) {
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, k);
            int i = atoi(m->partition_key + 1);
            cr_assert_eq(real > 0 ? part[i] : -1, real > 0 ? t : part[i], "%s on %s",
                         m->partition_key, pt);
            char want_payload[16];
            snprintf(want_payload, sizeof want_payload, "v%d", i);
            cr_assert(m->payload_len == strlen(want_payload) &&
                      !memcmp(m->payload, want_payload, m->payload_len));
        }
        stored += upulsar_tb_snapshot_count(s);
        upulsar_tb_snapshot_free(s);
    }
    cr_assert_eq(stored, 64);
    /* nothing on partition topics beyond the broker's count */
    for (int t = real; t < given; t++) {
        char pt[96];
        snprintf(pt, sizeof pt, "%s-partition-%d", topic, t);
        upulsar_tb_topic_stats_t st;
        cr_assert_eq(upulsar_tb_topic_stats(tb, pt, &st), UPULSAR_OK);
        cr_assert_eq(st.messages, 0, "%s got messages", pt);
    }
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    upulsar_client_destroy(client);
}

Test(scale_start, more_partitions_given_than_the_broker_has_uses_the_brokers_count)
{
    start_with_count("count-more", 32, 16);
}

Test(scale_start, fewer_partitions_given_than_the_broker_has_uses_the_brokers_count)
{
    start_with_count("count-fewer", 4, 16);
}

Test(scale_start, partitions_given_for_a_non_partitioned_topic_produce_to_the_topic)
{
    start_with_count("count-none", 4, 0);
}

Test(scale_start, the_brokers_own_count_given_starts_without_a_warning)
{
    start_with_count("count-same", 8, 8);
}
