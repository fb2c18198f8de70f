/* conn_request.c -- requests from any thread (lookups, partition metadata,
 * PRODUCER, CLOSE_PRODUCER): the frame is queued on the connection's loop,
 * which matches the answer by request id; the requester waits on the
 * request's condition variable, in slices so that a cancellation
 * (up_cancel_on()) is seen soon. */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "conn.h"
#include "err.h"

/* A request waiting for its answer: on the requester's stack, linked into
 * its connection's reqs by the loop until answered, failed or cancelled.
 * The requester sets the fields without a mark before posting it; the loop
 * only reads them. */
typedef struct up_req {
    uint64_t request_id;
    int64_t producer_id; /* a PRODUCER request's producer, else -1 */
    up_conn_t *conn;
    up_buf_t frame;      /* the encoded command: the loop takes its bytes */
    /* (mu): written by the loop, read by the requester */
    up_cmd_t *resp;      /* response (owned by the requester once done) */
    upulsar_err_t err;
    bool done;
    bool waiting_ready;  /* PRODUCER with producer_ready=false seen */
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* done or waiting_ready changed (monotonic clock) */
    struct up_req *next; /* (loop) */
} up_req_t;

/* ---- on the loop ------------------------------------------------------------- */

void up_conn_complete_req(up_conn_t *c, uint64_t request_id, up_cmd_t *resp,
                          upulsar_err_t err)
{
    for (up_req_t **pp = &c->reqs; *pp; pp = &(*pp)->next) {
        up_req_t *r = *pp;
        if (r->request_id != request_id)
            continue;
        if (resp && resp->type == UP_CMD(PRODUCER_SUCCESS) &&
            resp->producer_success->has_producer_ready && !resp->producer_success->producer_ready) {
            /* WaitForExclusive: queued; the real answer comes later */
            pthread_mutex_lock(&r->mu);
            r->waiting_ready = true;
            pthread_cond_broadcast(&r->cv);
            pthread_mutex_unlock(&r->mu);
            pulsar__proto__base_command__free_unpacked(resp, NULL);
            return;
        }
        *pp = r->next;
        c->last_used_us = up_now_us();
        pthread_mutex_lock(&r->mu);
        r->resp = resp;
        r->err = err;
        r->done = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    if (resp)
        pulsar__proto__base_command__free_unpacked(resp, NULL);
}

void up_conn_fail_producer_req(up_conn_t *c, uint64_t producer_id, upulsar_err_t err)
{
    for (up_req_t *r = c->reqs; r; r = r->next)
        if (r->producer_id == (int64_t)producer_id) {
            up_conn_complete_req(c, r->request_id, NULL, err);
            return; /* it unlinked r */
        }
}

void up_conn_fail_reqs(up_conn_t *c)
{
    while (c->reqs) {
        up_req_t *r = c->reqs;
        c->reqs = r->next;
        pthread_mutex_lock(&r->mu);
        r->err = UPULSAR_ERR__CONNECT;
        r->done = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
}

/* ---- the requester ------------------------------------------------------------- */

typedef struct {
    up_req_t *req;
    void (*pre)(void *);
    void *pre_arg;
} req_post_t;

static void req_send_task(void *arg)
{
    req_post_t *p = arg;
    up_req_t *r = p->req;
    up_conn_t *c = r->conn;
    if (p->pre)
        p->pre(p->pre_arg);
    if (atomic_load(&c->state) != UP_CONN_OPEN) {
        pthread_mutex_lock(&r->mu);
        r->err = UPULSAR_ERR__CONNECT;
        r->done = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    r->next = c->reqs;
    c->reqs = r;
    c->last_used_us = up_now_us();
    up_conn_write(c, r->frame.data, r->frame.len, r->frame.data, NULL);
    r->frame.data = NULL;
    /* c is still there if up_conn_write() failed it: up_conn_fail() drops only
     * the pool's reference; the requester (up_conn_request) holds its own.
     * NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
    up_conn_flush(c);
}

static void req_cancel_task(void *arg)
{
    up_req_t *r = arg;
    for (up_req_t **pp = &r->conn->reqs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            return;
        }
}

upulsar_err_t up_conn_request(up_conn_t *c, up_cmd_t *cmd, uint64_t request_id, int timeout_ms,
                              up_cmd_t **resp, void (*pre)(void *), void *pre_arg)
{
    *resp = NULL;
    up_req_t r;
    memset(&r, 0, sizeof r);
    r.request_id = request_id;
    r.producer_id = cmd->type == UP_CMD(PRODUCER) ? (int64_t)cmd->producer->producer_id : -1;
    r.conn = c;
    pthread_mutex_init(&r.mu, NULL);
    up_cond_init_monotonic(&r.cv);
    if (up_frame_put_cmd(&r.frame, cmd))
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    req_post_t post = {&r, pre, pre_arg};
    up_loop_call(c->loop, req_send_task, &post);
    free(r.frame.data);

    /* wait in slices, so a cancellation (up_cancel_on()) is seen soon */
    uint64_t deadline = up_now_us() + (uint64_t)timeout_ms * 1000u;
    bool cancelled = false, parked = false;
    pthread_mutex_lock(&r.mu);
    while (!r.done) {
        if (up_cancelled()) {
            cancelled = true;
            break;
        }
        if (r.waiting_ready && !parked) {
            /* a wait without end: let another thread take our place */
            parked = true;
            pthread_mutex_unlock(&r.mu);
            up_watchdog_parked(c->client, 1);
            pthread_mutex_lock(&r.mu);
            continue;
        }
        uint64_t now = up_now_us();
        if (!r.waiting_ready && now >= deadline) /* WaitForExclusive: no timeout */
            break;
        uint64_t slice = (uint64_t)UP_CANCEL_SLICE_MS * 1000u;
        if (!r.waiting_ready && deadline - now < slice)
            slice = deadline - now;
        struct timespec end = up_deadline_ts(now + slice);
        pthread_cond_timedwait(&r.cv, &r.mu, &end);
    }
    bool done = r.done;
    pthread_mutex_unlock(&r.mu);
    if (parked)
        up_watchdog_parked(c->client, -1);
    if (!done) {
        up_loop_call(c->loop, req_cancel_task, &r);
        /* the loop may have completed it just before the cancel ran */
    }
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.cv);
    if (!r.done && cancelled)
        return up_seterr(UPULSAR_ERR__CLOSED, "%s request to %s:%d abandoned: stopping",
                         up_cmd_name(cmd->type), c->host, c->port);
    if (!r.done)
        return up_seterr(UPULSAR_ERR__TIMED_OUT, "%s request to %s:%d timed out after %d ms",
                         up_cmd_name(cmd->type), c->host, c->port, timeout_ms);
    *resp = r.resp;
    if (r.err == UPULSAR_ERR__CONNECT)
        up_seterr(r.err, "connection to %s:%d lost during %s", c->host, c->port,
                  up_cmd_name(cmd->type));
    else if (r.err && r.resp && r.resp->type == UP_CMD(ERROR))
        up_seterr(r.err, "%s: %s (%s)", up_cmd_name(cmd->type), upulsar_err_str(r.err),
                  r.resp->error->message ? r.resp->error->message : "");
    else if (r.err == UPULSAR_ERR_SERVICE_NOT_READY && !r.resp)
        up_seterr(r.err, "%s to %s:%d: the topic migrated to another cluster",
                  up_cmd_name(cmd->type), c->host, c->port);
    return r.err;
}
