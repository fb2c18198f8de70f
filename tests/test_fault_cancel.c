/* test_fault_cancel.c -- blocking waits of connection setup give up when
 * the thread's wait is cancelled (what lets upulsar_producer_stop() return
 * while the watchdog is inside a reconnect attempt; the whole path is in
 * test_fault_stop.c), here for the TLS handshake, which has its own waits.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "engine.h"
#include "tls.h"

/* A TCP listener that never accepts: connects succeed (the kernel queues
 * them), nothing is ever answered. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 4), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Scenario:
 *  1. A TLS client session connects to a peer that never answers.
 *  2. Without cancellation the handshake waits until its deadline (here
 *     50 ms) and fails with TIMED_OUT: the wait is real.
 *  3. With the thread's wait cancelled (the flag the watchdog ties to the
 *     producer's closed flag), a handshake with a deadline one hour away
 *     returns at once with UPULSAR_ERR__CLOSED, having sent its hello.
 *  4. A cleared cancellation (NULL) waits again (TIMED_OUT). */
Test(fault_cancel, tls_handshake_wait_is_cancellable, .timeout = 30)
{
    struct upulsar_conf cf;
    up_conf_defaults(&cf);
    SSL_CTX *ctx;
    cr_assert_eq(up_tls_ctx_new(&cf, &ctx), UPULSAR_OK, "%s", upulsar_last_error());
    int port;
    int lfd = silent_listener(&port);

    int fd = connect_to(port);
    up_tls_t *t = up_tls_new(ctx, "localhost", &cf);
    cr_assert_not_null(t);
    cr_assert_eq(up_tls_handshake(t, fd, up_now_us() + 50000, "silent"), UPULSAR_ERR__TIMED_OUT,
                 "%s", upulsar_last_error());
    up_tls_free(t);
    close(fd);

    _Atomic int closed = 1;
    up_cancel_on(&closed);
    fd = connect_to(port);
    t = up_tls_new(ctx, "localhost", &cf);
    cr_assert_eq(up_tls_handshake(t, fd, up_now_us() + 3600000000ull, "silent"),
                 UPULSAR_ERR__CLOSED, "%s", upulsar_last_error());
    cr_assert(strstr(upulsar_last_error(), "abandoned"));
    up_cancel_on(NULL);
    up_tls_free(t);
    close(fd);

    fd = connect_to(port);
    t = up_tls_new(ctx, "localhost", &cf);
    cr_assert_eq(up_tls_handshake(t, fd, up_now_us() + 50000, "silent"), UPULSAR_ERR__TIMED_OUT);
    up_tls_free(t);
    close(fd);
    close(lfd);
    up_tls_ctx_free(ctx);
}

/* Scenario: up_poll_until() on a socket nobody writes to returns 0 at its
 * deadline, and UP_POLL_CANCELLED at once when the thread's wait is
 * cancelled, even with the deadline an hour away. */
Test(fault_cancel, poll_until_honours_deadline_and_cancellation)
{
    int port;
    int lfd = silent_listener(&port);
    int fd = connect_to(port);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    cr_assert_eq(up_poll_until(&p, up_now_us() + 30000), 0);
    _Atomic int closed = 0;
    up_cancel_on(&closed);
    atomic_store(&closed, 1);
    cr_assert_eq(up_poll_until(&p, up_now_us() + 3600000000ull), UP_POLL_CANCELLED);
    up_cancel_on(NULL);
    close(fd);
    close(lfd);
}
