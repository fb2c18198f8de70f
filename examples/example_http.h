/*
 * example_http.h -- just enough HTTP to serve a Prometheus scrape.
 *
 * Used by metrics_server.c and service.c. One request per connection, on
 * 127.0.0.1: GET /metrics answers upulsar_client_metrics_prometheus()
 * (plus any text of the application's own), anything else 404. It is not a
 * web server: a real service would put this behind its existing HTTP stack.
 */
#ifndef EXAMPLE_HTTP_H
#define EXAMPLE_HTTP_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <upulsar/upulsar.h>

/* A listening socket on 127.0.0.1:@p port (0 = any free port, written to
 * *@p bound), or -1 with errno set. */
static inline int http_listen(int port, int *bound)
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
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    *bound = ntohs(a.sin_port);
    return fd;
}

static inline int http_write_all(int fd, const char *p, size_t n)
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

/* Answer one HTTP request on @p fd: GET /metrics gets the client's
 * exposition followed by @p extra (the application's own metrics in the
 * same format; NULL for none). Does not close @p fd. */
static inline void http_serve_metrics(int fd, upulsar_client_t *client, const char *extra)
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
    if (strncmp(req, "GET /metrics ", 13) != 0 && strncmp(req, "GET /metrics?", 13) != 0) {
        const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                         "Content-Length: 10\r\nConnection: close\r\n\r\nnot found\n";
        http_write_all(fd, nf, strlen(nf));
        return;
    }
    char *text = NULL;
    size_t len = 0;
    upulsar_err_t err = upulsar_client_metrics_prometheus(client, &text, &len);
    if (err != UPULSAR_OK) {
        const char *se = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n";
        fprintf(stderr, "metrics: %s: %s\n", upulsar_err_name(err), upulsar_last_error());
        http_write_all(fd, se, strlen(se));
        return;
    }
    size_t xlen = extra ? strlen(extra) : 0;
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; "
                      "charset=utf-8\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                      len + xlen);
    if (http_write_all(fd, head, (size_t)hl) == 0 && http_write_all(fd, text, len) == 0 && xlen)
        http_write_all(fd, extra, xlen);
    free(text);
}

/* Checks of the examples: open a connection to our own endpoint on
 * @p port and send the request (it fits in the socket's buffer, so this
 * does not wait for the answer, which the caller serves next). The
 * connection, or -1. */
static inline int http_request_metrics(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((unsigned short)port);
    const char *get = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) ||
        http_write_all(fd, get, strlen(get))) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Checks: the whole answer on @p fd (until the server closes it),
 * malloc'd and NUL-terminated, or NULL. */
static inline char *http_read_answer(int fd)
{
    size_t cap = 1 << 16, got = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            return NULL;
        if (got + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return NULL;
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
    return buf;
}

/* Checks: the sum of every sample of metric @p name (its lines
 * "name{...} value" or "name value") in the exposition @p text. */
static inline long long http_metric_sum(const char *text, const char *name)
{
    long long sum = 0;
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, name)); p += n) {
        if ((p != text && p[-1] != '\n') || (p[n] != '{' && p[n] != ' '))
            continue; /* a longer name, or inside a HELP line */
        const char *v = p[n] == ' ' ? p + n : strstr(p, "} ");
        if (v)
            sum += atoll(v + (p[n] == ' ' ? 1 : 2));
    }
    return sum;
}

#endif
