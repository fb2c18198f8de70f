/*
 * hello.c -- send one message and print where the broker stored it.
 *
 *   ./hello [SERVICE_URL]     (no URL: an embedded test broker)
 */
#include <stdio.h>

#include "example_broker.h"

int main(int argc, char **argv)
{
    example_broker_t broker = example_broker_open(argc, argv, "hello", 0);
    upulsar_client_t *client = example_client(broker.url);

    /* one handle for the topic; partitions 0 = ask the broker how many;
     * no name (NULL): the broker gives each producer a unique one, so a
     * second instance of this program can run beside the first (a fixed
     * name held by a running producer fails the next with PRODUCER_BUSY) */
    upulsar_producer_t *producer;
    upulsar_err_t err = upulsar_producer_start(client, NULL, "hello", 0, NULL, &producer);
    if (err != UPULSAR_OK) {
        fprintf(stderr, "producer: %s: %s\n", upulsar_err_name(err), upulsar_last_error());
        return 1;
    }

    /* upulsar_send() copies the message into the producer's queue and
     * returns at once; the future resolves when the broker's receipt comes */
    upulsar_future_t *future;
    err = upulsar_send(producer, "hello, pulsar", 13, NULL, &future);
    if (err != UPULSAR_OK) {
        fprintf(stderr, "send: %s: %s\n", upulsar_err_name(err), upulsar_last_error());
        return 1;
    }
    upulsar_msg_id_t id;
    err = upulsar_future_wait(future, 10000, &id);
    if (err != UPULSAR_OK) {
        /* the detail names the partition topic, the broker and the reason */
        const char *detail = upulsar_future_error_detail(future);
        fprintf(stderr, "message failed: %s: %s\n", upulsar_err_name(err),
                err == UPULSAR_ERR__PENDING ? "no receipt within 10 s"
                : detail                    ? detail
                                            : upulsar_err_str(err));
        upulsar_future_release(future);
        return 1;
    }
    upulsar_future_release(future);
    printf("message id %llu:%llu (partition %d, batch index %d)\n",
           (unsigned long long)id.ledger_id, (unsigned long long)id.entry_id, id.partition,
           id.batch_index);

    /* flushes what is still queued; every future is resolved when it returns */
    err = upulsar_producer_stop(producer, 10000);
    if (err != UPULSAR_OK)
        fprintf(stderr, "stop: %s: %s\n", upulsar_err_name(err), upulsar_last_error());
    upulsar_client_destroy(client);
    example_broker_close(&broker);
    return err == UPULSAR_OK ? 0 : 1;
}
