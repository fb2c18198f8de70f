/* test_conn_unqueue.c -- a connection's queue never writes a frame whose
 * messages failed before any write started on it: the purge keeps the
 * frames of the send in flight (the kernel may still take them), and when
 * that send completes short, the frames it never reached are taken out
 * before the next write.
 *
 * Driven through a fake io backend that records each send's iovecs and
 * completes nothing by itself. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "engine.h"
#include "io_backend.h"
#include "rp.h"

static int nsends;
static size_t last_iovlen;

static int fake_send(up_conn_t *c)
{
    nsends++;
    last_iovlen = c->msg.msg_iovlen;
    return 0;
}

static void fake_cancel(up_conn_t *c) { (void)c; }

/* A batch frame of @p len bytes that no producer owns (freed, not pooled,
 * once the queue lets go of it). */
static up_batch_t *batch_of(up_loop_t *l, size_t len, int tag)
{
    up_batch_t *b = calloc(1, sizeof *b);
    cr_assert_not_null(b);
    b->buf = malloc(len);
    cr_assert_not_null(b->buf);
    memset(b->buf, tag, len);
    b->frame = b->buf;
    b->frame_len = len;
    b->loop = l;
    return b;
}

enum { NB = 4, LEN = 100 };

/* Scenario: four frames go out in one send, in flight; every message of
 * them fails meanwhile (a stop, a timeout: retired, the connection told to
 * purge); the loop's pass purges but must keep the four (c->iov points
 * into them); the send completes with half of the first frame. The next
 * send may carry the rest of that frame only: the three others never
 * started. */
Test(conn_unqueue, frames_a_short_send_never_reached_are_taken_out_once_they_failed)
{
    static up_io_ops_t ops;
    ops.name = "fake";
    ops.send = fake_send;
    ops.cancel = fake_cancel;
    static up_loop_t l;
    l.io = &ops;
    up_conn_t *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    c->loop = &l;
    atomic_store(&c->state, UP_CONN_OPEN);
    up_batch_t *b[NB];
    for (int i = 0; i < NB; i++) {
        b[i] = batch_of(&l, LEN, 'a' + i);
        up_conn_write(c, b[i]->frame, LEN, NULL, b[i]);
    }
    up_conn_flush(c);
    cr_assert_eq(nsends, 1);
    cr_assert_eq(last_iovlen, NB);
    for (int i = 0; i < NB; i++)
        b[i]->retired = true;
    c->purge_resolved = true;
    up_conn_purge_resolved(c); /* the loop's tick, the send still in flight */
    cr_assert_eq(c->oq_len, NB, "frames of the send in flight were taken out");
    up_conn_on_send(c, LEN / 2);
    cr_assert_eq(nsends, 2);
    cr_assert_eq(last_iovlen, 1,
                 "the next send carries %zu frames: %zu whose messages failed before any "
                 "write started on them are written after all",
                 last_iovlen, last_iovlen - 1);
    cr_assert_eq(c->oq_len, 1);
    c->send_inflight = false;
    atomic_store(&c->state, UP_CONN_DEAD);
    up_conn_drop_outq(c);
    free(c->outq);
    free(c);
}
