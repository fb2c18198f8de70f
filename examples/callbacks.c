/*
 * callbacks.c -- futures and completion callbacks.
 *
 *   ./callbacks [SERVICE_URL]   (no URL: an embedded test broker)
 *
 * Each message resolves exactly once, to a message id or an error. You can
 * learn the result three ways, and mix them:
 *   - a callback (upulsar_send_opts_t.cb), called on upulsar's io thread:
 *     keep it short, never block in it;
 *   - a future, waited for (upulsar_future_wait) or polled
 *     (upulsar_future_poll), then released;
 *   - neither (fire and forget), then upulsar_producer_flush() to wait.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "example_broker.h"

enum { MESSAGES = 1000 };

typedef struct tally {
    atomic_int acknowledged;
    atomic_int failed;
    atomic_llong last_entry;
} tally_t;

/* Runs on the io thread once per message. */
static void on_delivery(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    tally_t *t = opaque;
    if (err == UPULSAR_OK) {
        atomic_fetch_add(&t->acknowledged, 1);
        atomic_store(&t->last_entry, (long long)id->entry_id);
    } else {
        atomic_fetch_add(&t->failed, 1);
    }
}

int main(int argc, char **argv)
{
    example_broker_t broker = example_broker_open(argc, argv, "callbacks", 0);
    upulsar_client_t *client = example_client(broker.url);
    upulsar_producer_t *producer;
    upulsar_err_t err = upulsar_producer_start(client, NULL, "callbacks", 0, NULL, &producer);
    if (err != UPULSAR_OK) {
        fprintf(stderr, "producer: %s: %s\n", upulsar_err_name(err), upulsar_last_error());
        return 1;
    }

    tally_t tally;
    atomic_init(&tally.acknowledged, 0);
    atomic_init(&tally.failed, 0);
    atomic_init(&tally.last_entry, -1);

    /* 1. callbacks only: no future to keep or release */
    upulsar_send_opts_t opts;
    memset(&opts, 0, sizeof opts);
    opts.cb = on_delivery;
    opts.opaque = &tally;
    int queued = 0;
    for (int i = 0; i < MESSAGES; i++) {
        char payload[32];
        int len = snprintf(payload, sizeof payload, "event %d", i);
        if (upulsar_send(producer, payload, (size_t)len, &opts, NULL) == UPULSAR_OK)
            queued++;
    }

    /* 2. a callback and a future on the same message */
    upulsar_future_t *future;
    err = upulsar_send(producer, "last event", 10, &opts, &future);
    if (err != UPULSAR_OK) {
        fprintf(stderr, "send: %s: %s\n", upulsar_err_name(err), upulsar_last_error());
        return 1;
    }
    queued++;

    /* poll without blocking: usually still pending right after the send */
    upulsar_msg_id_t id;
    err = upulsar_future_poll(future, &id);
    printf("polled right after sending: %s\n",
           err == UPULSAR_ERR__PENDING ? "pending" : upulsar_err_name(err));

    /* 3. wait for this one... */
    err = upulsar_future_wait(future, 10000, &id);
    upulsar_future_release(future);
    if (err != UPULSAR_OK) {
        fprintf(stderr, "last event failed: %s\n", upulsar_err_str(err));
        return 1;
    }
    printf("last event stored at %llu:%llu\n", (unsigned long long)id.ledger_id,
           (unsigned long long)id.entry_id);

    /* ...and for everything sent before the flush */
    if (upulsar_producer_flush(producer, 10000) != UPULSAR_OK) {
        fprintf(stderr, "flush: some messages are still unresolved\n");
        return 1;
    }
    printf("callbacks: %d acknowledged, %d failed, of %d queued (last entry %lld)\n",
           atomic_load(&tally.acknowledged), atomic_load(&tally.failed), queued,
           atomic_load(&tally.last_entry));

    upulsar_producer_stop(producer, 10000);
    upulsar_client_destroy(client);
    example_broker_close(&broker);
    return atomic_load(&tally.acknowledged) == queued ? 0 : 1;
}
