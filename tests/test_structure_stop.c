/* test_structure_stop.c -- stopping a producer with many partitions.
 *
 * every_producer_is_closed_exactly_once: a producer of N partitions (one
 *   and several producers per partition, one and two io threads) sends to
 *   every partition and stops; for each partition topic the broker received
 *   exactly one CLOSE_PRODUCER for each producer id it created there, on
 *   the connection it was created on, after its PRODUCER, none for an id it
 *   did not create, and holds no producer of the topic once the stop
 *   returned. Every message sent before the stop is stored once.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "fault_common.h"

TestSuite(structure_stop, .timeout = 240);

#define NPART 40

static void close_each_once(const char *topic, const char *threads, const char *per_partition,
                            int k)
{
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"io.threads", threads, NULL};
    upulsar_client_t *c = ft_client(tb, ckv);
    cr_assert_eq(upulsar_tb_set_partitions(tb, topic, NPART), UPULSAR_OK);
    const char *pkv[] = {"producers.per.partition", per_partition, NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, topic, NPART, pkv);
    cr_assert_eq(upulsar_producer_partitions(p), NPART);
    /* one message per partition (keyed to it), two per producer round robin */
    for (int g = 0; g < NPART; g++) {
        char key[32];
        int n = 0;
        for (;; n++) { /* a key that hashes to partition g */
            snprintf(key, sizeof key, "k%d", n);
            if (upulsar_producer_partition_for_key(p, key) == g)
                break;
        }
        upulsar_send_opts_t o = {0};
        o.partition_key = key;
        ft_send_ok(p, &o);
    }
    for (int i = 0; i < 2 * NPART * k; i++)
        ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK, "%s", upulsar_last_error());

    uint64_t stored = 0;
    for (int g = 0; g < NPART; g++) {
        char name[160];
        snprintf(name, sizeof name, "persistent://public/default/%s-partition-%d", topic, g);
        upulsar_tb_request_t r[64];
        int n = upulsar_tb_producer_requests(tb, name, r, 64);
        cr_assert(n > 0 && n <= 64, "%s: %d requests", name, n);
        int created = 0;
        for (int i = 0; i < n; i++) {
            if (r[i].type != UPULSAR_TB_REQ_PRODUCER)
                continue;
            created++;
            int closes = 0;
            for (int j = 0; j < n; j++)
                if (r[j].type == UPULSAR_TB_REQ_CLOSE_PRODUCER &&
                    r[j].producer_id == r[i].producer_id) {
                    closes++;
                    cr_assert_gt(j, i, "%s: producer %llu closed before its PRODUCER", name,
                                 (unsigned long long)r[i].producer_id);
                    cr_assert_eq(r[j].connection, r[i].connection,
                                 "%s: producer %llu closed on another connection", name,
                                 (unsigned long long)r[i].producer_id);
                }
            cr_assert_eq(closes, 1, "%s: producer %llu got %d CLOSE_PRODUCER", name,
                         (unsigned long long)r[i].producer_id, closes);
        }
        cr_assert_eq(created, k, "%s: %d PRODUCER requests for %d producers", name, created, k);
        cr_assert_eq(n, 2 * k, "%s: %d requests, not one PRODUCER and one CLOSE_PRODUCER each",
                     name, n);
        upulsar_tb_topic_stats_t ts;
        cr_assert_eq(upulsar_tb_topic_stats(tb, name, &ts), UPULSAR_OK);
        cr_assert_eq(ts.producers, 0, "%s: %d producers left on the broker", name, ts.producers);
        cr_assert_eq(ts.duplicates, 0, "%s", name);
        stored += ts.messages;
    }
    cr_assert_eq(stored, (uint64_t)NPART + 2u * NPART * (uint64_t)k);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(structure_stop, every_producer_is_closed_exactly_once)
{
    close_each_once("close-a", "1", "1", 1);
    close_each_once("close-b", "2", "3", 3);
}
