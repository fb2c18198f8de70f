/*
 * metrics_server.c -- a Prometheus endpoint for a producer.
 *
 *   ./metrics_server [--port N] [--check] [SERVICE_URL]
 *
 * Sends a stream of messages to a topic of 4 partitions and serves the
 * client's metrics (upulsar_client_metrics_prometheus()) over HTTP at
 * http://127.0.0.1:N/metrics (default port 9464), until Ctrl-C:
 *
 *   curl -s localhost:9464/metrics | grep acked
 *
 * and in prometheus.yml:
 *
 *   scrape_configs:
 *     - job_name: upulsar
 *       static_configs: [{targets: ["localhost:9464"]}]
 *
 * One thread does everything (a poll loop: answer a scrape, then send the
 * next messages), which is enough for a scrape every few seconds. The
 * text is built per request and freed after it is written (the HTTP side
 * is in example_http.h). --check scrapes its own endpoint once on port 0
 * (any free port), prints the acknowledged count it reads and exits: 0 if
 * the scrape counted every message sent.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example_broker.h"
#include "example_http.h"

enum { PARTITIONS = 4, BURST = 200, CHECK_MESSAGES = 2000 };

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

/* --check: the sum of upulsar_producer_messages_acked_total in the
 * answer on @p fd, or -1. */
static long long read_acked(int fd)
{
    char *answer = http_read_answer(fd);
    long long sum = -1;
    if (answer && strncmp(answer, "HTTP/1.1 200", 12) == 0)
        sum = http_metric_sum(answer, "upulsar_producer_messages_acked_total");
    free(answer);
    return sum;
}

int main(int argc, char **argv)
{
    int port = 9464, check = 0;
    char *args[2] = {argv[0], NULL};
    int nargs = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--check"))
            check = 1;
        else if (nargs < 2)
            args[nargs++] = argv[i];
    }
    if (check)
        port = 0;
    example_broker_t broker = example_broker_open(nargs, args, "metrics", PARTITIONS);
    upulsar_client_t *client = example_client(broker.url);
    upulsar_producer_t *producer;
    upulsar_err_t err = upulsar_producer_start(client, NULL, "metrics", 0, NULL, &producer);
    if (err != UPULSAR_OK) {
        fprintf(stderr, "producer: %s: %s\n", upulsar_err_name(err), upulsar_last_error());
        return 1;
    }
    int bound = 0, lfd = http_listen(port, &bound);
    if (lfd < 0) {
        fprintf(stderr, "cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "serving http://127.0.0.1:%d/metrics (%s)\n", bound,
            check ? "--check: stops once it has scraped itself" : "Ctrl-C stops");

    long long sent = 0, scraped = -1;
    int self = -1;
    while (!stopping) {
        /* the producer side: a burst of messages per turn (fire and
         * forget: the metrics count what happens to them) */
        int burst = check && sent >= CHECK_MESSAGES ? 0 : BURST;
        for (int i = 0; i < burst; i++) {
            char payload[64];
            int len = snprintf(payload, sizeof payload, "reading %lld", sent);
            if (upulsar_send(producer, payload, (size_t)len, NULL, NULL) == UPULSAR_OK)
                sent++;
        }
        if (check && sent >= CHECK_MESSAGES && self < 0) {
            upulsar_producer_flush(producer, 10000); /* every message resolved */
            if ((self = http_request_metrics(bound)) < 0) {
                fprintf(stderr, "cannot reach our own endpoint\n");
                break;
            }
        }
        /* the server side: answer whatever scrape is waiting */
        struct pollfd pf = {lfd, POLLIN, 0};
        int served = 0;
        if (poll(&pf, 1, check ? 10 : 100) > 0) {
            int cfd = accept(lfd, NULL, NULL);
            if (cfd >= 0) {
                http_serve_metrics(cfd, client, NULL);
                close(cfd);
                served = 1;
            }
        }
        if (self >= 0 && served) {
            scraped = read_acked(self);
            close(self);
            break;
        }
    }
    close(lfd);
    err = upulsar_producer_stop(producer, 10000);
    upulsar_client_destroy(client);
    example_broker_close(&broker);
    if (check) {
        printf("scraped %lld acknowledged of %lld sent\n", scraped, sent);
        return scraped == sent && err == UPULSAR_OK ? 0 : 1;
    }
    printf("sent %lld messages\n", sent);
    return err == UPULSAR_OK ? 0 : 1;
}
