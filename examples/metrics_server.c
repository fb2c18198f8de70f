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
 * text is built per request and freed after it is written. --check scrapes
 * its own endpoint once on port 0 (any free port), prints the acknowledged
 * count it reads and exits: 0 if the scrape counted every message sent.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "example_broker.h"

enum { PARTITIONS = 4, BURST = 200, CHECK_MESSAGES = 2000 };

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static int listen_on(int port, int *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((unsigned short)port);
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 16) ||
        getsockname(fd, (struct sockaddr *)&a, &al)) {
        close(fd);
        return -1;
    }
    *bound = ntohs(a.sin_port);
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Answer one HTTP request on @p fd: GET /metrics gets the exposition. */
static void serve_one(int fd, upulsar_client_t *client)
{
    char req[4096];
    size_t got = 0;
    /* the request line and headers, waiting at most a second for them */
    while (got + 1 < sizeof req) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 1000) <= 0)
            break;
        ssize_t r = recv(fd, req + got, sizeof req - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[got] = '\0';
    char head[256];
    if (strncmp(req, "GET /metrics ", 13) != 0 && strncmp(req, "GET /metrics?", 13) != 0) {
        const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                         "Content-Length: 10\r\nConnection: close\r\n\r\nnot found\n";
        write_all(fd, nf, strlen(nf));
        return;
    }
    char *text = NULL;
    size_t len = 0;
    upulsar_err_t err = upulsar_client_metrics_prometheus(client, &text, &len);
    if (err != UPULSAR_OK) {
        const char *se = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n";
        fprintf(stderr, "metrics: %s: %s\n", upulsar_err_name(err), upulsar_last_error());
        write_all(fd, se, strlen(se));
        return;
    }
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; "
                      "charset=utf-8\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                      len);
    if (write_all(fd, head, (size_t)hl) == 0)
        write_all(fd, text, len);
    free(text);
}

/* --check: open a connection to our own endpoint and send the request
 * (it fits in the socket's buffer, so this does not wait for the
 * answer). */
static int request_metrics(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((unsigned short)port);
    const char *get = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) ||
        write_all(fd, get, strlen(get))) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* --check: the sum of upulsar_producer_messages_acked_total in the
 * answer on @p fd, or -1. */
static long long read_acked(int fd)
{
    size_t cap = 1 << 16, got = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            return -1;
        if (got + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return -1;
            }
            buf = nb;
        }
        ssize_t r = recv(fd, buf + got, cap - 1 - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    long long sum = -1;
    if (strncmp(buf, "HTTP/1.1 200", 12) == 0) {
        sum = 0;
        const char *name = "\nupulsar_producer_messages_acked_total{";
        for (const char *p = strstr(buf, name); p; p = strstr(p + 1, name)) {
            const char *v = strstr(p, "} ");
            if (v)
                sum += atoll(v + 2);
        }
    }
    free(buf);
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
    int bound = 0, lfd = listen_on(port, &bound);
    if (lfd < 0) {
        fprintf(stderr, "cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "serving http://127.0.0.1:%d/metrics (Ctrl-C stops)\n", bound);

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
            if ((self = request_metrics(bound)) < 0) {
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
                serve_one(cfd, client);
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
