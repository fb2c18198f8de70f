/*
 * keyed.c -- per-key ordering on a partitioned topic.
 *
 *   ./keyed [SERVICE_URL]     (no URL: an embedded test broker)
 *
 * Messages with the same partition key always go to the same partition (and
 * the same real producer there), in the order they were sent, so a consumer
 * of that partition sees them in order. This example sends interleaved
 * messages for a few keys and checks, from the message ids the broker
 * reported, that each key stayed on one partition with growing positions.
 */
#include <stdio.h>
#include <string.h>

#include "example_broker.h"

enum { KEYS = 5, PER_KEY = 20 };

/* (ledger, entry, batch index) order: where a message sits in a partition */
static int before(const upulsar_msg_id_t *a, const upulsar_msg_id_t *b)
{
    if (a->ledger_id != b->ledger_id)
        return a->ledger_id < b->ledger_id;
    if (a->entry_id != b->entry_id)
        return a->entry_id < b->entry_id;
    return a->batch_index < b->batch_index;
}

int main(int argc, char **argv)
{
    const char *topic = "orders";
    example_broker_t broker = example_broker_open(argc, argv, topic, 4);
    upulsar_client_t *client = example_client(broker.url);

    upulsar_producer_t *producer;
    upulsar_err_t err = upulsar_producer_start(client, NULL, topic, 0, NULL, &producer);
    if (err != UPULSAR_OK) {
        fprintf(stderr, "producer: %s: %s\n", upulsar_err_name(err), upulsar_last_error());
        return 1;
    }
    example_check_partitions(producer, topic, 4);

    static upulsar_future_t *futures[KEYS * PER_KEY];
    char keys[KEYS][32];
    for (int k = 0; k < KEYS; k++)
        snprintf(keys[k], sizeof keys[k], "customer-%d", k);

    /* interleave: customer-0 #0, customer-1 #0, ..., customer-0 #1, ... */
    for (int i = 0; i < PER_KEY; i++) {
        for (int k = 0; k < KEYS; k++) {
            char payload[64];
            int len = snprintf(payload, sizeof payload, "%s order %d", keys[k], i);
            upulsar_send_opts_t opts;
            memset(&opts, 0, sizeof opts);
            opts.partition_key = keys[k];
            err = upulsar_send(producer, payload, (size_t)len, &opts, &futures[i * KEYS + k]);
            if (err != UPULSAR_OK) {
                fprintf(stderr, "send: %s: %s\n", upulsar_err_name(err), upulsar_last_error());
                return 1;
            }
        }
    }

    int ok = 1;
    for (int k = 0; k < KEYS; k++) {
        upulsar_msg_id_t prev = {0};
        int in_order = 1;
        for (int i = 0; i < PER_KEY; i++) {
            upulsar_msg_id_t id;
            upulsar_future_t *f = futures[i * KEYS + k];
            err = upulsar_future_wait(f, -1, &id);
            upulsar_future_release(f);
            if (err != UPULSAR_OK) {
                fprintf(stderr, "%s message %d failed: %s\n", keys[k], i, upulsar_err_str(err));
                return 1;
            }
            if (i > 0 && (id.partition != prev.partition || !before(&prev, &id)))
                in_order = 0;
            prev = id;
        }
        printf("%s -> partition %d (router says %d): %d messages %s\n", keys[k], prev.partition,
               upulsar_producer_partition_for_key(producer, keys[k]), PER_KEY,
               in_order ? "in order" : "OUT OF ORDER");
        ok &= in_order && prev.partition == upulsar_producer_partition_for_key(producer, keys[k]);
    }

    upulsar_producer_stop(producer, 10000);
    upulsar_client_destroy(client);
    example_broker_close(&broker);
    return ok ? 0 : 1;
}
