/* io_backend.h -- how an io loop does its socket I/O, behind one set of
 * operations with two implementations:
 *   io_uring.c  io_uring: receives and sends are submitted to a ring and
 *               complete later (the default, and the fastest)
 *   io_epoll.c  epoll: edge-triggered readiness, then non-blocking recv /
 *               sendmsg on the loop thread; for containers and kernels where
 *               io_uring is denied or missing
 * Both complete every operation the same way, on the loop thread, from
 * poll() or reap(): a receive with up_conn_on_recv(c, bytes | 0 at EOF |
 * -errno), a send with up_conn_on_send(c, bytes written | -errno; a short
 * write is possible). An operation never completes inside the call that
 * started it, so conn_io.c sees the same order of events on both.
 * The loop (uring_loop.c) and the connections (conn_io.c) use only this.
 * io.backend chooses one per client (client.c): every loop of a client
 * uses the same. @internal */
#ifndef UP_IO_BACKEND_H
#define UP_IO_BACKEND_H
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

typedef struct up_io_ops {
    const char *name; /* "io_uring", "epoll": statistics and the log */
    /** Set the loop's backend state up (l->efd exists already). 0 or a
     *  negative errno, with upulsar_last_error() set. @thread creating */
    int (*init)(up_loop_t *l);
    /** Free it (the loop thread has ended). */
    void (*destroy)(up_loop_t *l);
    /** The loop thread starts: watch l->efd for wake-ups. @thread loop */
    void (*start)(up_loop_t *l);
    /** @p c joins its loop: 0, or a negative errno (the connection then
     *  fails). @thread loop */
    int (*attach)(up_conn_t *c);
    /** @p c leaves its loop for good; no operation of it is in flight.
     *  @thread loop */
    void (*detach)(up_conn_t *c);
    /** @p c failed and its socket is shut down: operations in flight
     *  complete (with an error or end of stream) soon. @thread loop */
    void (*cancel)(up_conn_t *c);
    /** Receive up to @p len bytes into @p buf (one at a time per
     *  connection). 0, or -1 when it cannot be started. @thread loop */
    int (*recv)(up_conn_t *c, uint8_t *buf, size_t len);
    /** Send c->msg (its iovecs stay untouched until the completion; one at
     *  a time per connection). 0, or -1: not started, try again later.
     *  @thread loop */
    int (*send)(up_conn_t *c);
    /** Start what was prepared and run what completed, without waiting.
     *  @thread loop */
    void (*poll)(up_loop_t *l);
    /** Wait up to @p wait_us for a completion or a wake-up (less when
     *  something can run now); runs nothing. @thread loop */
    void (*wait)(up_loop_t *l, uint64_t wait_us);
    /** Run what completed during wait(). @thread loop */
    void (*reap)(up_loop_t *l);
} up_io_ops_t;

extern const up_io_ops_t up_io_uring_ops;
extern const up_io_ops_t up_io_epoll_ops;

/** Whether io_uring can be set up here with what the loop needs (the
 *  receive, send, sendmsg and read operations). 0, or the errno that stops
 *  it (ENOSYS also for a kernel without those operations) with a
 *  description in @p why ("io_uring_queue_init: Operation not permitted").
 *  (io_uring.c) @thread any */
int up_io_uring_probe(char *why, size_t n);

/** The symbolic name of @p e ("EPERM"), or "errno <n>" in @p buf.
 *  (client.c) @thread any */
const char *up_errno_name(int e, char *buf, size_t n);

#endif
