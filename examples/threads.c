/*
 * threads.c -- many threads sending through one producer handle.
 *
 *   ./threads [SERVICE_URL]   (no URL: an embedded test broker)
 *
 * upulsar_send() may be called from any number of threads at once: each
 * message is copied into a lock-free ring, and one io thread batches and
 * writes them. Here THREADS threads each send MESSAGES messages to a topic
 * with 4 partitions, keep the futures, then wait for all of them.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "example_broker.h"

enum { THREADS = 4, MESSAGES = 5000 };

typedef struct worker {
    pthread_t thread;
    int index;
    upulsar_producer_t *producer;
    upulsar_future_t *futures[MESSAGES];
    int acknowledged;
    int failed;
} worker_t;

static void *run(void *arg)
{
    worker_t *w = arg;
    int sent = 0;
    for (int i = 0; i < MESSAGES; i++) {
        char payload[64];
        int len = snprintf(payload, sizeof payload, "thread %d message %d", w->index, i);
        upulsar_err_t err = upulsar_send(w->producer, payload, (size_t)len, NULL,
                                         &w->futures[sent]);
        if (err == UPULSAR_OK)
            sent++;
        else
            w->failed++; /* not queued: no future, nothing to release */
    }
    for (int i = 0; i < sent; i++) {
        if (upulsar_future_wait(w->futures[i], -1, NULL) == UPULSAR_OK)
            w->acknowledged++;
        else
            w->failed++;
        upulsar_future_release(w->futures[i]);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *topic = "threads";
    example_broker_t broker = example_broker_open(argc, argv, topic, 4);
    upulsar_client_t *client = example_client(broker.url);

    /* block instead of failing with QUEUE_FULL when a ring is momentarily full */
    upulsar_conf_t *pconf = upulsar_conf_new();
    upulsar_conf_set(pconf, "block.if.queue.full", "true", NULL, 0);
    upulsar_producer_t *producer;
    upulsar_err_t err = upulsar_producer_start(client, NULL, topic, 0, pconf, &producer);
    upulsar_conf_destroy(pconf);
    if (err != UPULSAR_OK) {
        fprintf(stderr, "producer: %s: %s\n", upulsar_err_name(err), upulsar_last_error());
        return 1;
    }
    example_check_partitions(producer, topic, 4);

    static worker_t workers[THREADS];
    for (int t = 0; t < THREADS; t++) {
        workers[t].index = t;
        workers[t].producer = producer;
        if (pthread_create(&workers[t].thread, NULL, run, &workers[t]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    int acknowledged = 0, failed = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(workers[t].thread, NULL);
        printf("thread %d: %d acknowledged, %d failed\n", t, workers[t].acknowledged,
               workers[t].failed);
        acknowledged += workers[t].acknowledged;
        failed += workers[t].failed;
    }
    printf("%d threads, %d partitions: %d of %d messages acknowledged\n", THREADS,
           upulsar_producer_partitions(producer), acknowledged, THREADS * MESSAGES);

    upulsar_producer_stop(producer, 10000);
    upulsar_client_destroy(client);
    example_broker_close(&broker);
    return failed ? 1 : 0;
}
