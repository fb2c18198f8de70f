/*
 * example_broker.h -- where the examples send to.
 *
 * Every example takes an optional service URL as its first argument. Without
 * one it starts upulsar's embedded test broker in the process (a real Pulsar
 * protocol server on 127.0.0.1 keeping messages in memory), so the examples
 * run anywhere, no Pulsar installation needed:
 *
 *   ./hello                            # embedded test broker
 *   ./hello pulsar://localhost:6650    # a real broker
 *
 * Built with EXAMPLE_NO_EMBEDDED_BROKER (linked against the shared library
 * only), a URL is required.
 */
#ifndef EXAMPLE_BROKER_H
#define EXAMPLE_BROKER_H

#include <stdio.h>
#include <stdlib.h>

#include <upulsar/upulsar.h>
#ifndef EXAMPLE_NO_EMBEDDED_BROKER
#include <upulsar/testbroker.h>
#endif

typedef struct example_broker {
    const char *url;
    void *embedded; /* upulsar_tb_t *, or NULL */
} example_broker_t;

/* Pick the URL from argv[1], or start the embedded broker (with
 * @p topic partitioned into @p partitions when > 0). Exits on failure. */
static inline example_broker_t example_broker_open(int argc, char **argv, const char *topic,
                                                   int partitions)
{
    example_broker_t b = {NULL, NULL};
    if (argc > 1) {
        b.url = argv[1];
        return b;
    }
#ifdef EXAMPLE_NO_EMBEDDED_BROKER
    (void)topic;
    (void)partitions;
    fprintf(stderr, "usage: %s SERVICE_URL (built without the embedded test broker)\n",
            argv[0]);
    exit(2);
#else
    upulsar_tb_t *tb;
    if (upulsar_tb_start(NULL, &tb) != UPULSAR_OK) {
        fprintf(stderr, "cannot start the embedded test broker: %s\n", upulsar_last_error());
        exit(1);
    }
    if (partitions > 0)
        upulsar_tb_set_partitions(tb, topic, partitions);
    b.url = upulsar_tb_url(tb);
    b.embedded = tb;
    fprintf(stderr, "(embedded test broker at %s)\n", b.url);
    return b;
#endif
}

/* Stop the embedded broker, if one was started. Call after
 * upulsar_client_destroy(). */
static inline void example_broker_close(example_broker_t *b)
{
#ifndef EXAMPLE_NO_EMBEDDED_BROKER
    upulsar_tb_stop((upulsar_tb_t *)b->embedded);
#endif
    b->embedded = NULL;
}

/* Say so when the broker given by URL has @p topic without the
 * @p partitions partitions the example is about (the embedded broker is
 * given them): the example then runs on a topic without partitions. */
static inline void example_check_partitions(upulsar_producer_t *p, const char *topic,
                                            int partitions)
{
    if (partitions > 0 && upulsar_producer_partitions(p) == 0)
        fprintf(stderr,
                "note: %s has no partitions on this broker, and this example is about %d: "
                "start upulsar-testbroker with --partitions %s=%d (or create the topic with "
                "%d partitions on a Pulsar cluster)\n",
                topic, partitions, topic, partitions, partitions);
}

/* A client for @p url, or exit with the library's explanation. */
static inline upulsar_client_t *example_client(const char *url)
{
    upulsar_conf_t *conf = upulsar_conf_new();
    char err[256];
    if (!conf || upulsar_conf_set(conf, "service.url", url, err, sizeof err) != UPULSAR_CONF_OK) {
        fprintf(stderr, "service.url: %s\n", conf ? err : "out of memory");
        exit(1);
    }
    upulsar_client_t *client;
    if (upulsar_client_new(conf, &client) != UPULSAR_OK) {
        fprintf(stderr, "client: %s\n", upulsar_last_error());
        exit(1);
    }
    upulsar_conf_destroy(conf);
    return client;
}

#endif
