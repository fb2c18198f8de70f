/* io_uring.c -- the io_uring backend of the io loops (io_backend.h): one
 * ring per loop; receives, sends and the wake-up read of the loop's eventfd
 * are submitted to it and complete in its completion queue. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "err.h"
#include "io_backend.h"

#define UR_ENTRIES 512

static struct io_uring_sqe *get_sqe(up_loop_t *l)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->uring);
    if (!sqe) {
        io_uring_submit(&l->uring);
        sqe = io_uring_get_sqe(&l->uring);
    }
    return sqe;
}

static void arm_wake(up_loop_t *l)
{
    struct io_uring_sqe *sqe = get_sqe(l);
    io_uring_prep_read(sqe, l->efd, &l->efd_val, sizeof l->efd_val, 0);
    io_uring_sqe_set_data(sqe, &l->wake_op);
}

int up_io_uring_probe(char *why, size_t n)
{
    struct io_uring r;
    int rc = io_uring_queue_init(8, &r, 0);
    if (rc < 0) {
        snprintf(why, n, "io_uring_queue_init: %s", strerror(-rc));
        return -rc;
    }
    /* the operations the loop submits: IORING_OP_RECV/SEND/READ came with
     * Linux 5.6, as did the probe itself */
    struct io_uring_probe *p = io_uring_get_probe_ring(&r);
    static const struct {
        int op;
        const char *name;
    } need[] = {{IORING_OP_RECV, "recv"},
                {IORING_OP_SEND, "send"},
                {IORING_OP_SENDMSG, "sendmsg"},
                {IORING_OP_READ, "read"}};
    int err = 0;
    if (!p) {
        snprintf(why, n, "io_uring has no operation probe (a kernel older than 5.6)");
        err = ENOSYS;
    }
    for (size_t i = 0; !err && i < sizeof need / sizeof need[0]; i++)
        if (!io_uring_opcode_supported(p, need[i].op)) {
            snprintf(why, n, "io_uring lacks the %s operation (a kernel older than 5.6)",
                     need[i].name);
            err = ENOSYS;
        }
    if (p)
        io_uring_free_probe(p);
    io_uring_queue_exit(&r);
    return err;
}

static int ur_init(up_loop_t *l)
{
    int rc = io_uring_queue_init(UR_ENTRIES, &l->uring, 0);
    if (rc < 0) {
        up_seterr(UPULSAR_ERR__IO, "io_uring_queue_init: %s", strerror(-rc));
        return rc;
    }
    return 0;
}

static void ur_destroy(up_loop_t *l) { io_uring_queue_exit(&l->uring); }

static int ur_attach(up_conn_t *c) { return 0; }
static void ur_detach(up_conn_t *c) {}
/* the shutdown of the socket completes what is in flight */
static void ur_cancel(up_conn_t *c) {}

static int ur_recv(up_conn_t *c, uint8_t *buf, size_t len)
{
    struct io_uring_sqe *sqe = get_sqe(c->loop);
    if (!sqe)
        return -1;
    io_uring_prep_recv(sqe, c->fd, buf, len, 0);
    io_uring_sqe_set_data(sqe, &c->recv_op);
    return 0;
}

static int ur_send(up_conn_t *c)
{
    struct io_uring_sqe *sqe = get_sqe(c->loop);
    if (!sqe)
        return -1;
    if (c->msg.msg_iovlen == 1)
        io_uring_prep_send(sqe, c->fd, c->iov[0].iov_base, c->iov[0].iov_len, MSG_NOSIGNAL);
    else
        io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, &c->send_op);
    return 0;
}

static void ur_reap(up_loop_t *l)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&l->uring, head, cqe)
    {
        up_op_t *op = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        n++;
        if (!op)
            continue;
        switch (op->type) {
        case UP_OP_WAKE:
            atomic_store_explicit(&l->wake_pending, 0, memory_order_release);
            arm_wake(l);
            break;
        case UP_OP_RECV:
            up_conn_on_recv(op->conn, res);
            break;
        case UP_OP_SEND:
            up_conn_on_send(op->conn, res);
            break;
        }
    }
    io_uring_cq_advance(&l->uring, n);
}

static void ur_poll(up_loop_t *l)
{
    io_uring_submit(&l->uring);
    ur_reap(l);
}

static void ur_wait(up_loop_t *l, uint64_t wait_us)
{
    struct __kernel_timespec ts = {.tv_sec = (long long)(wait_us / 1000000u),
                                   .tv_nsec = (long long)(wait_us % 1000000u) * 1000};
    struct io_uring_cqe *cqe;
    io_uring_submit_and_wait_timeout(&l->uring, &cqe, 1, &ts, NULL);
}

const up_io_ops_t up_io_uring_ops = {
    .name = "io_uring",
    .init = ur_init,
    .destroy = ur_destroy,
    .start = arm_wake,
    .attach = ur_attach,
    .detach = ur_detach,
    .cancel = ur_cancel,
    .recv = ur_recv,
    .send = ur_send,
    .poll = ur_poll,
    .wait = ur_wait,
    .reap = ur_reap,
};
