/* test_fidelity_names.c -- producer names of a partitioned producer, as
 * the official clients give them: a user-given name is used as it is on
 * every partition topic (Pulsar keys de-duplication history, the
 * last_sequence_id a producer resumes from, and its tooling on the name,
 * per topic). Only with producers.per.partition > 1 does each producer of
 * a partition get "<name>-<index>", its index within the partition, the
 * same on every partition and at every start.
 *
 * plain_name_on_every_partition: 4 partitions, one producer each: every
 *   producer is listed and stores its messages under the plain name.
 * a_partition_continues_the_history_of_its_name: each partition topic
 *   already holds messages from a producer of that name (another client
 *   writing to the partition topic directly); the partitioned producer
 *   resumes each partition's sequence ids after that history.
 * several_producers_per_partition_are_named_by_index: 3 producers on each
 *   of 2 partitions are "<name>-0" .. "<name>-2" on each partition, and a
 *   second start gets the same names and continues their sequence ids.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "fault_common.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(fidelity_names, .init = setup, .fini = teardown, .timeout = 120);

#define PREFIX "persistent://public/default/"

/* Send "<tag>" with @p key (may be NULL) through @p p and wait for its
 * receipt. */
static upulsar_msg_id_t send_one(upulsar_producer_t *p, const char *key, const char *tag)
{
    upulsar_send_opts_t o = {.partition_key = key};
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(p, tag, strlen(tag), &o, &f), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_msg_id_t id;
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, &id), UPULSAR_OK, "%s: %s", tag,
                 upulsar_last_error());
    upulsar_future_release(f);
    return id;
}

/* The stored message of @p topic whose payload is @p tag: its producer
 * name into @p name and its sequence id into *@p seq. Exactly one must
 * exist. */
static void stored(const char *topic, const char *tag, char *name, size_t n, uint64_t *seq)
{
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    int found = 0;
    for (size_t i = 0; i < upulsar_tb_snapshot_count(s); i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, i);
        if (m->payload_len != strlen(tag) || memcmp(m->payload, tag, m->payload_len))
            continue;
        found++;
        snprintf(name, n, "%s", m->producer_name ? m->producer_name : "");
        *seq = m->sequence_id;
    }
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(found, 1, "%s: \"%s\" stored %d times", topic, tag, found);
}

Test(fidelity_names, plain_name_on_every_partition)
{
    enum { PARTS = 4 };
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "plain", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "orders-app", "plain", PARTS, NULL);
    upulsar_producer_info_t pi[PARTS];
    size_t np = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, PARTS, &np), UPULSAR_OK);
    cr_assert_eq(np, PARTS);
    for (size_t i = 0; i < np; i++) {
        char want[128];
        snprintf(want, sizeof want, PREFIX "plain-partition-%d", pi[i].partition);
        cr_assert_str_eq(pi[i].partition_topic, want);
        cr_assert_str_eq(pi[i].name, "orders-app", "%s", pi[i].partition_topic);
    }
    for (int g = 0; g < PARTS; g++) {
        char key[32], tag[32], topic[128], name[128];
        ft_key_for(p, g, key, sizeof key);
        snprintf(tag, sizeof tag, "to-%d", g);
        upulsar_msg_id_t id = send_one(p, key, tag);
        cr_assert_eq(id.partition, g);
        snprintf(topic, sizeof topic, PREFIX "plain-partition-%d", g);
        uint64_t seq;
        stored(topic, tag, name, sizeof name, &seq);
        cr_assert_str_eq(name, "orders-app", "%s stored under %s", topic, name);
    }
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}

Test(fidelity_names, a_partition_continues_the_history_of_its_name)
{
    enum { PARTS = 4 };
    /* another client's producer "app" wrote 3 + g messages to each
     * partition topic directly */
    for (int g = 0; g < PARTS; g++) {
        char topic[64];
        snprintf(topic, sizeof topic, "hist-partition-%d", g);
        upulsar_producer_t *q = ft_producer(client, "app", topic, 0, NULL);
        for (int i = 0; i < 3 + g; i++) {
            char tag[32];
            snprintf(tag, sizeof tag, "before-%d-%d", g, i);
            send_one(q, NULL, tag);
        }
        cr_assert_eq(upulsar_producer_stop(q, FT_WAIT_MS), UPULSAR_OK);
    }
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "hist", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "app", "hist", PARTS, NULL);
    for (int g = 0; g < PARTS; g++) {
        char key[32], tag[32], topic[128], name[128];
        ft_key_for(p, g, key, sizeof key);
        snprintf(tag, sizeof tag, "after-%d", g);
        send_one(p, key, tag);
        snprintf(topic, sizeof topic, PREFIX "hist-partition-%d", g);
        uint64_t before_seq, seq;
        char before_tag[32];
        snprintf(before_tag, sizeof before_tag, "before-%d-%d", g, 3 + g - 1);
        stored(topic, before_tag, name, sizeof name, &before_seq);
        cr_assert_str_eq(name, "app");
        stored(topic, tag, name, sizeof name, &seq);
        cr_assert_str_eq(name, "app", "%s: the partitioned producer stored as %s", topic, name);
        cr_assert_eq(seq, before_seq + 1,
                     "%s: sequence id %llu after the name's last %llu (history not continued)",
                     topic, (unsigned long long)seq, (unsigned long long)before_seq);
    }
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}

/* Start "multi" over 2 partitions with 3 producers each; check the names
 * and send keyed messages, tagged with @p round, until every producer
 * stored at least one. Stores the lowest and highest sequence id each
 * producer stored in lo/hi[partition][index]. */
enum { MPARTS = 2, MK = 3 };
static void multi_round(int round, uint64_t lo[MPARTS][MK], uint64_t hi[MPARTS][MK])
{
    const char *kv[] = {"producers.per.partition", "3", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "multi", MPARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "multi", "multi", MPARTS, kv);
    upulsar_producer_info_t pi[MPARTS * MK];
    size_t np = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, MPARTS * MK, &np), UPULSAR_OK);
    cr_assert_eq(np, MPARTS * MK);
    int seen[MPARTS][MK] = {{0}};
    for (size_t i = 0; i < np; i++) {
        cr_assert(pi[i].partition >= 0 && pi[i].partition < MPARTS);
        cr_assert(pi[i].index >= 0 && pi[i].index < MK);
        char want[64];
        snprintf(want, sizeof want, "multi-%d", pi[i].index);
        cr_assert_str_eq(pi[i].name, want, "partition %d producer %d", pi[i].partition,
                         pi[i].index);
        seen[pi[i].partition][pi[i].index]++;
    }
    for (int g = 0; g < MPARTS; g++)
        for (int i = 0; i < MK; i++)
            cr_assert_eq(seen[g][i], 1, "partition %d producer %d listed %d times", g, i,
                         seen[g][i]);
    /* keys until every producer of every partition stored one message */
    int got[MPARTS][MK] = {{0}}, left = MPARTS * MK;
    for (int k = 0; left > 0; k++) {
        cr_assert_lt(k, 100000, "no key reached every producer");
        char key[32], tag[64], topic[128], name[128];
        snprintf(key, sizeof key, "mk-%d", k);
        int g = upulsar_producer_partition_for_key(p, key);
        snprintf(tag, sizeof tag, "r%d-%s", round, key);
        send_one(p, key, tag);
        snprintf(topic, sizeof topic, PREFIX "multi-partition-%d", g);
        uint64_t s;
        stored(topic, tag, name, sizeof name, &s);
        int idx = -1;
        cr_assert_eq(sscanf(name, "multi-%d", &idx), 1, "%s: stored as %s", topic, name);
        cr_assert(idx >= 0 && idx < MK, "%s", name);
        if (!got[g][idx]++) {
            left--;
            lo[g][idx] = s;
        }
        hi[g][idx] = s;
    }
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}

Test(fidelity_names, several_producers_per_partition_are_named_by_index)
{
    uint64_t lo0[MPARTS][MK], hi0[MPARTS][MK], lo1[MPARTS][MK], hi1[MPARTS][MK];
    multi_round(0, lo0, hi0);
    /* a restart: the same names, each continuing its own sequence ids */
    multi_round(1, lo1, hi1);
    for (int g = 0; g < MPARTS; g++)
        for (int i = 0; i < MK; i++)
            cr_assert_eq(lo1[g][i], hi0[g][i] + 1,
                         "partition %d multi-%d: sequence id %llu after %llu", g, i,
                         (unsigned long long)lo1[g][i], (unsigned long long)hi0[g][i]);
}
