/* io_epoll.c -- the epoll backend of the io loops (io_backend.h), for where
 * io_uring is denied (Docker's default seccomp profile) or missing.
 *
 * Each connection's socket is registered once, edge-triggered, for input
 * and output. An edge marks the connection readable or writable until a
 * call says EAGAIN (or reads or writes less than asked: the socket was
 * drained or filled then, and the next change raises a new edge). Arming a
 * receive or a send only records it; a connection with an armed operation
 * its socket is ready for goes on the loop's ready list, which poll() and
 * reap() run: one non-blocking recv() into the armed buffer, or one
 * sendmsg() of every iovec of the armed message (a whole out-queue of
 * frames, up to UP_CONN_IOV), each completing like an io_uring operation
 * (up_conn_on_recv / up_conn_on_send, a short write included). Connections
 * that become ready again while the list runs wait for the next round, so a
 * fast peer cannot hold the loop. The loop's eventfd is registered
 * level-triggered: a wake-up is read back and clears wake_pending, as the
 * io_uring backend's read of it does. Waits use epoll_pwait2 (microsecond
 * timeouts, Linux 5.11) and fall back to epoll_wait (milliseconds, rounded
 * up) where that is missing or denied. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "io_backend.h"

#define EP_EVENTS 256

static int ep_init(up_loop_t *l)
{
    l->ep_ev = malloc(EP_EVENTS * sizeof *l->ep_ev);
    if (!l->ep_ev) {
        up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
        return -ENOMEM;
    }
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        int e = errno;
        free(l->ep_ev);
        l->ep_ev = NULL;
        up_seterr(UPULSAR_ERR__IO, "epoll_create1: %s", strerror(e));
        return -e;
    }
    /* the wake-up eventfd: ptr NULL (connections are never NULL) */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->efd, &ev)) {
        int e = errno;
        close(l->epfd);
        free(l->ep_ev);
        l->ep_ev = NULL;
        up_seterr(UPULSAR_ERR__IO, "epoll_ctl(eventfd): %s", strerror(e));
        return -e;
    }
    l->wait_coarse = true; /* milliseconds, unless epoll_pwait2 works */
#ifdef SYS_epoll_pwait2
    l->ep_pwait2 = true;
    l->wait_coarse = false;
#endif
    return 0;
}

static void ep_destroy(up_loop_t *l)
{
    close(l->epfd);
    free(l->ep_ev);
    l->ep_ev = NULL;
}

static void ep_start(up_loop_t *l) {}

static void enqueue(up_conn_t *c)
{
    if (c->ep_queued)
        return;
    up_loop_t *l = c->loop;
    c->ep_queued = true;
    c->ep_next = NULL;
    if (l->ep_ready_tail)
        l->ep_ready_tail->ep_next = c;
    else
        l->ep_ready = c;
    l->ep_ready_tail = c;
}

/* queue @p c if an operation of it can run now */
static void maybe_enqueue(up_conn_t *c)
{
    if ((c->ep_rbuf && c->ep_rd_ready) || (c->ep_send && c->ep_wr_ready))
        enqueue(c);
}

static int ep_attach(up_conn_t *c)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.ptr = c};
    if (epoll_ctl(c->loop->epfd, EPOLL_CTL_ADD, c->fd, &ev))
        return -errno;
    /* whatever is there already is tried at once */
    c->ep_rd_ready = c->ep_wr_ready = true;
    return 0;
}

static void ep_detach(up_conn_t *c)
{
    up_loop_t *l = c->loop;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (!c->ep_queued)
        return;
    up_conn_t *prev = NULL;
    for (up_conn_t *x = l->ep_ready; x; prev = x, x = x->ep_next)
        if (x == c) {
            if (prev)
                prev->ep_next = c->ep_next;
            else
                l->ep_ready = c->ep_next;
            if (l->ep_ready_tail == c)
                l->ep_ready_tail = prev;
            break;
        }
    c->ep_queued = false;
    c->ep_next = NULL;
}

/* the socket is shut down: recv gives end of stream, sendmsg EPIPE */
static void ep_cancel(up_conn_t *c)
{
    c->ep_rd_ready = c->ep_wr_ready = true;
    maybe_enqueue(c);
}

static int ep_recv(up_conn_t *c, uint8_t *buf, size_t len)
{
    c->ep_rbuf = buf;
    c->ep_rlen = len;
    maybe_enqueue(c);
    return 0;
}

static int ep_send(up_conn_t *c)
{
    size_t total = 0;
    for (size_t i = 0; i < c->msg.msg_iovlen; i++)
        total += c->msg.msg_iov[i].iov_len;
    c->ep_slen = total;
    c->ep_send = true;
    maybe_enqueue(c);
    return 0;
}

/* run what @p c can run now: its send, then its receive */
static void run_conn(up_conn_t *c)
{
    if (c->ep_send && c->ep_wr_ready) {
        ssize_t n;
        do
            n = sendmsg(c->fd, &c->msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->ep_wr_ready = false; /* the next EPOLLOUT edge brings it back */
        } else {
            int res = n < 0 ? -errno : (int)n;
            if (n >= 0 && (size_t)n < c->ep_slen)
                c->ep_wr_ready = false; /* the socket's buffer is full */
            c->ep_send = false;
            up_conn_on_send(c, res);
        }
    }
    if (c->ep_rbuf && c->ep_rd_ready) {
        ssize_t n;
        do
            n = recv(c->fd, c->ep_rbuf, c->ep_rlen, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->ep_rd_ready = false;
        } else {
            int res = n < 0 ? -errno : (int)n;
            /* edge-triggered: only EAGAIN says the socket is drained. A
             * short read may have stopped at the peer's close (data and
             * FIN in one edge), whose end of stream the next read must
             * still see: no new edge will come for it */
            c->ep_rbuf = NULL;
            up_conn_on_recv(c, res);
        }
    }
}

/* one round over the ready list as it is now; connections queued again
 * meanwhile wait for the next round */
static void run_ready(up_loop_t *l)
{
    up_conn_t *c = l->ep_ready;
    l->ep_ready = l->ep_ready_tail = NULL;
    while (c) {
        up_conn_t *next = c->ep_next;
        c->ep_queued = false;
        c->ep_next = NULL;
        run_conn(c);
        c = next;
    }
}

static void handle_events(up_loop_t *l, int n)
{
    for (int i = 0; i < n; i++) {
        struct epoll_event *ev = &l->ep_ev[i];
        up_conn_t *c = ev->data.ptr;
        if (!c) {
            uint64_t v;
            ssize_t r = read(l->efd, &v, sizeof v);
            (void)r;
            atomic_store_explicit(&l->wake_pending, 0, memory_order_release);
            continue;
        }
        if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            c->ep_rd_ready = true;
        if (ev->events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            c->ep_wr_ready = true;
        maybe_enqueue(c);
    }
}

static void ep_poll(up_loop_t *l)
{
    int n = epoll_wait(l->epfd, l->ep_ev, EP_EVENTS, 0);
    if (n > 0)
        handle_events(l, n);
    run_ready(l);
}

static void ep_wait(up_loop_t *l, uint64_t wait_us)
{
    l->ep_nev = 0;
    if (l->ep_ready)
        return; /* something can run now */
    int n = -1;
#ifdef SYS_epoll_pwait2
    if (l->ep_pwait2) {
        struct timespec ts = {.tv_sec = (time_t)(wait_us / 1000000u),
                              .tv_nsec = (long)(wait_us % 1000000u) * 1000};
        n = (int)syscall(SYS_epoll_pwait2, l->epfd, l->ep_ev, EP_EVENTS, &ts, NULL, 0);
        if (n < 0 && errno != EINTR) {
            l->ep_pwait2 = false; /* ENOSYS, or denied: milliseconds from now on */
            l->wait_coarse = true;
        }
    }
#endif
    if (!l->ep_pwait2) {
        uint64_t ms = (wait_us + 999) / 1000;
        n = epoll_wait(l->epfd, l->ep_ev, EP_EVENTS, (int)(ms > INT_MAX ? INT_MAX : ms));
    }
    l->ep_nev = n > 0 ? n : 0;
}

static void ep_reap(up_loop_t *l)
{
    int n = l->ep_nev;
    l->ep_nev = 0;
    handle_events(l, n);
    run_ready(l);
}

const up_io_ops_t up_io_epoll_ops = {
    .name = "epoll",
    .init = ep_init,
    .destroy = ep_destroy,
    .start = ep_start,
    .attach = ep_attach,
    .detach = ep_detach,
    .cancel = ep_cancel,
    .recv = ep_recv,
    .send = ep_send,
    .poll = ep_poll,
    .wait = ep_wait,
    .reap = ep_reap,
};
