/* test_scale_start.c -- one producer over 10,000 partitions against the
 * test broker: it starts (every partition topic's producer created on the
 * broker, READY), carries one message per partition, each with a key the
 * producer routes to that partition, every one stored exactly once on its
 * partition with its key and bytes, and stops with nothing left over
 * (under ASan: no leak, no use after free). Outcomes are asserted by
 * states, message ids and the broker's store, never by how long anything
 * took. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_common.h"

#define PARTS 10000

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
