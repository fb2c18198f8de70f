/* test_deploy_epoll_peer_close.c -- a broker that sends a frame and closes
 * its socket at once: the client notices the close.
 *
 * The epoll backend registers sockets edge-triggered. When a frame and the
 * peer's FIN arrive together they raise a single edge; one recv() returns
 * the frame's bytes (fewer than asked), and only the next recv() returns
 * the end of stream. No new edge announces it, so a loop that takes a
 * short read as "drained" never reads again and keeps a dead connection:
 * with keep-alive off and nothing to write, the client would not notice.
 *
 * The server here is a raw TCP server speaking just enough of the Pulsar
 * protocol: it answers CONNECT with CONNECTED, waits for the client's
 * first request (sent by the io loop, so the socket is in the loop's hands
 * by then) and answers it with a PONG (which asks for no reply) corked
 * together with its close: TCP_CORK keeps the PONG unsent until close(),
 * which puts the FIN on the same segment, so the data and the end of
 * stream arrive in one edge on every run. The request is never answered.
 *
 * The client (keepalive.interval.ms=0, operation.timeout.ms at its
 * maximum: no timer can close the connection for it) must notice the close
 * by reading: it logs the dropped connection, with the broker's close as
 * its reason, and its start tries again on a new connection. The waits are
 * bounded only against hangs (FT_WAIT_MS); nothing is timed. */
#include "fault_common.h"

#include <netinet/tcp.h>
#include <poll.h>

#include "frame.h"

/* ---- the server ------------------------------------------------------------ */

typedef struct {
    int lfd, port;
    atomic_int stop;
    atomic_int connects;  /* CONNECTs answered with CONNECTED */
    atomic_int closed;    /* connections closed right after the PONG */
    pthread_t th;
} srv_t;

/* Read from @p fd into @p d until it holds a whole frame, and decode it.
 * 1: *@p f holds it; 0: the peer closed, an error, the stop flag, or a
 * malformed frame. */
static int next_frame(srv_t *s, int fd, up_decoder_t *d, up_frame_t *f)
{
    for (;;) {
        int rc = up_decoder_next(d, f);
        if (rc == 1)
            return 1;
        if (rc < 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, 50);
        if (atomic_load(&s->stop))
            return 0;
        if (pr != 1)
            continue;
        size_t avail;
        uint8_t *w = up_decoder_wbuf(d, 4096, &avail);
        if (!w)
            return 0;
        ssize_t n = recv(fd, w, avail, 0);
        if (n <= 0)
            return 0;
        up_decoder_commit(d, (size_t)n);
    }
}

static int send_all(int fd, const up_buf_t *b)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = send(fd, b->data + off, b->len - off, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

/* One connection: CONNECT -> CONNECTED; the first request after it -> a
 * PONG and the close, in one segment. */
static void serve_one(srv_t *s, int fd)
{
    up_decoder_t d;
    up_decoder_init(&d, 0);
    up_frame_t f;
    if (!next_frame(s, fd, &d, &f) || f.cmd->type != UP_CMD(CONNECT))
        goto out;
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandConnected cd = PULSAR__PROTO__COMMAND_CONNECTED__INIT;
    cmd.type = UP_CMD(CONNECTED);
    cmd.connected = &cd;
    cd.server_version = "raw-test-server";
    cd.has_protocol_version = 1;
    cd.protocol_version = 21;
    up_buf_t b = UP_BUF_INIT;
    int ok = up_frame_put_cmd(&b, &cmd) == 0 && send_all(fd, &b) == 0;
    up_buf_free(&b);
    if (!ok)
        goto out;
    atomic_fetch_add(&s->connects, 1);
    if (!next_frame(s, fd, &d, &f)) /* the first request, left unanswered */
        goto out;
    up_cmd_t pc = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandPong pong = PULSAR__PROTO__COMMAND_PONG__INIT;
    pc.type = UP_CMD(PONG);
    pc.pong = &pong;
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one))
        goto out;
    ok = up_frame_put_cmd(&b, &pc) == 0 && send_all(fd, &b) == 0;
    up_buf_free(&b);
    if (ok)
        atomic_fetch_add(&s->closed, 1);
out:
    up_decoder_free(&d);
    close(fd); /* with the cork: the PONG and the FIN leave together */
}

static void *serve(void *a)
{
    srv_t *s = a;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 20) != 1)
            continue;
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            serve_one(s, fd);
    }
    return NULL;
}

static void srv_start(srv_t *s)
{
    memset(s, 0, sizeof *s);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(s->lfd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(s->lfd, 16), 0);
    socklen_t l = sizeof a;
    cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&a, &l), 0);
    s->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&s->th, NULL, serve, s), 0);
}

static void srv_stop(srv_t *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->th, NULL);
    close(s->lfd);
}

/* ---- the client's log and start --------------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int dropped_lines; /* "dropped" lines naming the broker's close */
static char dropped_line[512];
static char want_addr[64];

static void on_log(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)level;
    (void)opaque;
    pthread_mutex_lock(&mu);
    if (strstr(line, want_addr) && strstr(line, "dropped") &&
        strstr(line, "the broker closed the connection")) {
        dropped_lines++;
        snprintf(dropped_line, sizeof dropped_line, "%s", line);
    }
    pthread_mutex_unlock(&mu);
}

static atomic_int start_cbs;
static _Atomic upulsar_err_t start_err;

static void on_start(upulsar_err_t err, upulsar_producer_t *p, void *opaque)
{
    (void)opaque;
    (void)p;
    atomic_store(&start_err, err);
    atomic_fetch_add(&start_cbs, 1);
}

typedef struct {
    srv_t *srv;
} noticed_t;

/* the client logged the close of the first connection and connected again */
static int noticed(void *a)
{
    noticed_t *n = a;
    pthread_mutex_lock(&mu);
    int lines = dropped_lines;
    pthread_mutex_unlock(&mu);
    return lines >= 1 && atomic_load(&n->srv->connects) >= 2;
}

static void close_with_data_is_noticed(const char *backend)
{
    srv_t srv;
    srv_start(&srv);
    pthread_mutex_lock(&mu);
    dropped_lines = 0;
    dropped_line[0] = '\0';
    snprintf(want_addr, sizeof want_addr, "127.0.0.1:%d", srv.port);
    pthread_mutex_unlock(&mu);
    atomic_store(&start_cbs, 0);

    char url[64];
    snprintf(url, sizeof url, "pulsar://127.0.0.1:%d", srv.port);
    const char *kv[] = {"io.backend", backend, "keepalive.interval.ms", "0",
                        "operation.timeout.ms", "3600000", NULL};
    upulsar_conf_t *conf = ft_conf(kv);
    char err[256];
    cr_assert_eq(upulsar_conf_set(conf, "service.url", url, err, sizeof err), UPULSAR_CONF_OK,
                 "%s", err);
    cr_assert_eq(upulsar_conf_set(conf, "backoff.initial.ms", "10", err, sizeof err),
                 UPULSAR_CONF_OK, "%s", err);
    upulsar_client_t *client = NULL;
    upulsar_err_t e = upulsar_client_new(conf, &client);
    upulsar_conf_destroy(conf);
    if (e == UPULSAR_ERR__IO && !strcmp(backend, "io_uring")) {
        srv_stop(&srv);
        cr_skip_test("io_uring is not available here: %s", upulsar_last_error());
    }
    cr_assert_eq(e, UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_client_set_log_cb(client, on_log, NULL), UPULSAR_OK);

    cr_assert_eq(upulsar_producer_start_async(client, NULL, "peer-close", 0, NULL, on_start, NULL),
                 UPULSAR_OK, "%s", upulsar_last_error());
    noticed_t n = {.srv = &srv};
    int ok = ft_wait_for(noticed, &n);
    int closed = atomic_load(&srv.closed), connects = atomic_load(&srv.connects);
    pthread_mutex_lock(&mu);
    int lines = dropped_lines;
    char line[512];
    snprintf(line, sizeof line, "%s", dropped_line);
    pthread_mutex_unlock(&mu);

    upulsar_client_destroy(client); /* cancels the start: its callback runs */
    srv_stop(&srv);
    cr_assert_geq(closed, 1, "the server never closed a connection after a request");
    cr_assert(ok,
              "%s: the client did not notice the close that came with a frame "
              "(dropped lines naming it: %d, CONNECTs: %d)",
              backend, lines, connects);
    cr_assert(strstr(line, upulsar_err_name(UPULSAR_ERR__CONNECT)), "%s", line);
    cr_assert_eq(atomic_load(&start_cbs), 1);
    cr_assert_neq(atomic_load(&start_err), UPULSAR_OK);
}

/* the tests choose the backend themselves */
static void no_env(void) { unsetenv("UPULSAR_IO_BACKEND"); }

TestSuite(deploy_epoll_peer_close, .init = no_env);

Test(deploy_epoll_peer_close, epoll_notices_a_close_that_arrives_with_a_frame, .timeout = 300)
{
    close_with_data_is_noticed("epoll");
}

Test(deploy_epoll_peer_close, io_uring_notices_a_close_that_arrives_with_a_frame, .timeout = 300)
{
    close_with_data_is_noticed("io_uring");
}
