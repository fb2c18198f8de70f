/* conn_request.c -- requests from any thread (lookups, partition metadata,
 * PRODUCER, CLOSE_PRODUCER): the frame is queued on the connection's loop,
 * which matches the answer by request id; the requester waits on the
 * request's condition variable, in slices so that a cancellation
 * (up_cancel_on()) is seen soon. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "conn.h"
#include "engine.h"
#include "err.h"
#include "fault.h"

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
    /* the mutex and condition variable guarding done/resp/err: mu and cv,
     * or those of the set it belongs to (up_conn_request_all(), which
     * counts the requests not done yet in *left) */
    pthread_mutex_t *mu_p;
    pthread_cond_t *cv_p;
    size_t *left;
    struct up_req *next; /* (loop) */
} up_req_t;

/* Publish @p r's result and wake its requester. (loop) */
static void req_finish(up_req_t *r, up_cmd_t *resp, upulsar_err_t err)
{
    pthread_mutex_lock(r->mu_p);
    r->resp = resp;
    r->err = err;
    r->done = true;
    if (r->left && --*r->left == 0)
        pthread_cond_broadcast(r->cv_p);
    else if (!r->left)
        pthread_cond_broadcast(r->cv_p);
    pthread_mutex_unlock(r->mu_p);
}

/* ---- on the loop ------------------------------------------------------------- */

void up_conn_complete_req(up_conn_t *c, uint64_t request_id, up_cmd_t *resp,
                          upulsar_err_t err)
{
    /* an answer whose copy could not be made (up_decoder_steal(): out of
     * memory) fails its request instead of completing it with nothing */
    if (!resp && err == UPULSAR_OK)
        err = UPULSAR_ERR__NOMEM;
    for (up_req_t **pp = &c->reqs; *pp; pp = &(*pp)->next) {
        up_req_t *r = *pp;
        if (r->request_id != request_id)
            continue;
        if (resp && resp->type == UP_CMD(PRODUCER_SUCCESS) &&
            resp->producer_success->has_producer_ready && !resp->producer_success->producer_ready) {
            /* WaitForExclusive: queued; the real answer comes later */
            pthread_mutex_lock(r->mu_p);
            r->waiting_ready = true;
            pthread_cond_broadcast(r->cv_p);
            pthread_mutex_unlock(r->mu_p);
            pulsar__proto__base_command__free_unpacked(resp, NULL);
            return;
        }
        *pp = r->next;
        c->last_used_us = up_now_us();
        req_finish(r, resp, err);
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
        req_finish(r, NULL, UPULSAR_ERR__CONNECT);
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
        req_finish(r, NULL, UPULSAR_ERR__CONNECT);
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

/* The text of a broker's refusal @p err (an ERROR response with @p msg)
 * of request @p name on @p c, into @p buf: the request, its topic (a
 * PRODUCER's, or NULL), the broker, the error, and the broker's own message
 * unless it only repeats the error ("Broker: producer busy" and "Producer
 * with this name is already connected" both stay; the same words twice do
 * not). */
static void refusal_text(char *buf, size_t n, const char *name, const char *topic,
                         const up_conn_t *c, upulsar_err_t err, const char *msg)
{
    const char *es = upulsar_err_str(err);
    const char *bare = strncmp(es, "Broker: ", 8) ? es : es + 8;
    if (topic && !*topic)
        topic = NULL;
    bool say = msg && *msg && strcasecmp(msg, bare);
    snprintf(buf, n, "%s%s%s to %s:%d refused: %s%s%s%s", name, topic ? " for " : "",
             topic ? topic : "", c->host, c->port, es, say ? " (the broker: " : "",
             say ? msg : "", say ? ")" : "");
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
    r.mu_p = &r.mu;
    r.cv_p = &r.cv;
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
    else if (r.err && r.resp && r.resp->type == UP_CMD(ERROR)) {
        char why[512];
        refusal_text(why, sizeof why, up_cmd_name(cmd->type),
                     cmd->type == UP_CMD(PRODUCER) && cmd->producer ? cmd->producer->topic
                                                                     : NULL,
                     c, r.err, r.resp->error->message);
        up_seterr(r.err, "%s", why);
    }
    else if (r.err == UPULSAR_ERR_SERVICE_NOT_READY && !r.resp)
        up_seterr(r.err, "%s to %s:%d: the topic migrated to another cluster",
                  up_cmd_name(cmd->type), c->host, c->port);
    return r.err;
}

/* ---- many requests at once ------------------------------------------------------ */

upulsar_err_t up_mreq_encode(up_mreq_t *m, up_conn_t *conn, const up_cmd_t *cmd,
                             uint64_t request_id)
{
    memset(m, 0, sizeof *m);
    m->conn = conn;
    m->cmd_type = cmd->type;
    m->request_id = request_id;
    m->producer_id = cmd->type == UP_CMD(PRODUCER) ? (int64_t)cmd->producer->producer_id : -1;
    if (cmd->type == UP_CMD(PRODUCER) && cmd->producer->topic)
        snprintf(m->topic, sizeof m->topic, "%s", cmd->producer->topic);
    if (up_frame_put_cmd(&m->frame, cmd))
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    return UPULSAR_OK;
}

typedef struct {
    up_loop_t *loop;
    up_req_t *reqs;
    const up_mreq_t *m;
    size_t n;
} many_post_t;

/* Queue the requests of one loop, in order: each joins the end of its
 * connection's list, where the broker's answers, which come in order, find
 * it first. (loop) */
static void many_send_task(void *arg)
{
    many_post_t *mp = arg;
    struct {
        up_conn_t *c;
        up_req_t **tail;
    } seen[16];
    size_t nseen = 0;
    up_conn_t *touched[16];
    size_t ntouched = 0;
    for (size_t i = 0; i < mp->n; i++) {
        up_req_t *r = &mp->reqs[i];
        if (r->conn->loop != mp->loop)
            continue;
        if (mp->m[i].pre)
            mp->m[i].pre(mp->m[i].pre_arg);
        up_conn_t *c = r->conn;
        if (atomic_load(&c->state) != UP_CONN_OPEN) {
            req_finish(r, NULL, UPULSAR_ERR__CONNECT);
            continue;
        }
        up_req_t **tail = NULL;
        for (size_t k = 0; k < nseen; k++)
            if (seen[k].c == c)
                tail = seen[k].tail;
        if (!tail) {
            for (tail = &c->reqs; *tail; tail = &(*tail)->next)
                ;
        }
        r->next = NULL;
        *tail = r;
        tail = &r->next;
        size_t k = 0;
        while (k < nseen && seen[k].c != c)
            k++;
        if (k < nseen) {
            seen[k].tail = tail;
        } else if (nseen < sizeof seen / sizeof seen[0]) {
            seen[nseen].c = c;
            seen[nseen++].tail = tail;
        }
        c->last_used_us = up_now_us();
        up_conn_write(c, r->frame.data, r->frame.len, r->frame.data, NULL);
        r->frame.data = NULL;
        bool t = false;
        for (size_t j = 0; j < ntouched; j++)
            t |= touched[j] == c;
        if (!t) {
            if (ntouched == sizeof touched / sizeof touched[0]) {
                up_conn_flush(touched[0]);
                memmove(touched, touched + 1, (ntouched - 1) * sizeof *touched);
                ntouched--;
            }
            touched[ntouched++] = c;
        }
    }
    for (size_t j = 0; j < ntouched; j++)
        up_conn_flush(touched[j]);
}

static void many_cancel_task(void *arg)
{
    many_post_t *mp = arg;
    for (size_t i = 0; i < mp->n; i++) {
        up_req_t *r = &mp->reqs[i];
        if (r->conn->loop == mp->loop)
            req_cancel_task(r);
    }
}

void up_conn_request_all(up_mreq_t *m, size_t n, int timeout_ms)
{
    if (n == 0)
        return;
    /* one request needs no allocation (the fallback of callers that ran
     * out of memory for many) */
    up_req_t req1;
    up_loop_t *loop1;
    up_req_t *reqs = &req1;
    up_loop_t **loops = &loop1;
    if (n == 1) {
        memset(&req1, 0, sizeof req1);
    } else {
        bool nomem = up_fault_hit(&up_fault_close_nomem);
        reqs = nomem ? NULL : calloc(n, sizeof *reqs);
        loops = nomem ? NULL : calloc(n, sizeof *loops);
    }
    if (!reqs || !loops) {
        free(reqs);
        free(loops);
        for (size_t i = 0; i < n; i++) {
            up_buf_free(&m[i].frame); /* taken by the call, sent or not */
            m[i].err = UPULSAR_ERR__NOMEM;
            snprintf(m[i].why, sizeof m[i].why, "out of memory");
        }
        return;
    }
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_init(&mu, NULL);
    up_cond_init_monotonic(&cv);
    size_t left = n, nloops = 0;
    for (size_t i = 0; i < n; i++) {
        up_req_t *r = &reqs[i];
        r->request_id = m[i].request_id;
        r->producer_id = m[i].producer_id;
        r->conn = m[i].conn;
        r->frame = m[i].frame; /* the loop takes its bytes */
        m[i].frame.data = NULL;
        r->mu_p = &mu;
        r->cv_p = &cv;
        r->left = &left;
        size_t k = 0;
        while (k < nloops && loops[k] != r->conn->loop)
            k++;
        if (k == nloops)
            loops[nloops++] = r->conn->loop;
    }
    for (size_t k = 0; k < nloops; k++) {
        many_post_t mp = {loops[k], reqs, m, n};
        up_loop_call(loops[k], many_send_task, &mp);
    }
    uint64_t deadline = up_now_us() + (uint64_t)timeout_ms * 1000u;
    bool cancelled = false;
    pthread_mutex_lock(&mu);
    while (left > 0) {
        if (up_cancelled()) {
            cancelled = true;
            break;
        }
        uint64_t now = up_now_us();
        if (now >= deadline)
            break;
        uint64_t slice = (uint64_t)UP_CANCEL_SLICE_MS * 1000u;
        if (deadline - now < slice)
            slice = deadline - now;
        struct timespec end = up_deadline_ts(now + slice);
        pthread_cond_timedwait(&cv, &mu, &end);
    }
    bool all = left == 0;
    pthread_mutex_unlock(&mu);
    if (!all) /* take the unanswered ones back; the loop may answer some first */
        for (size_t k = 0; k < nloops; k++) {
            many_post_t mp = {loops[k], reqs, m, n};
            up_loop_call(loops[k], many_cancel_task, &mp);
        }
    for (size_t i = 0; i < n; i++) {
        up_req_t *r = &reqs[i];
        up_conn_t *c = r->conn;
        const char *name = up_cmd_name(m[i].cmd_type);
        free(r->frame.data); /* never queued */
        m[i].resp = NULL;
        if (!r->done) {
            m[i].err = cancelled ? UPULSAR_ERR__CLOSED : UPULSAR_ERR__TIMED_OUT;
            if (cancelled)
                snprintf(m[i].why, sizeof m[i].why, "%s request to %s:%d abandoned: stopping",
                         name, c->host, c->port);
            else
                snprintf(m[i].why, sizeof m[i].why, "%s request to %s:%d timed out after %d ms",
                         name, c->host, c->port, timeout_ms);
            continue;
        }
        m[i].resp = r->resp;
        m[i].err = r->err;
        if (r->err == UPULSAR_ERR__CONNECT)
            snprintf(m[i].why, sizeof m[i].why, "connection to %s:%d lost during %s", c->host,
                     c->port, name);
        else if (r->err && r->resp && r->resp->type == UP_CMD(ERROR))
            refusal_text(m[i].why, sizeof m[i].why, name, m[i].topic, c, r->err,
                         r->resp->error->message);
        else if (r->err == UPULSAR_ERR_SERVICE_NOT_READY && !r->resp)
            snprintf(m[i].why, sizeof m[i].why, "%s to %s:%d: the topic migrated to another "
                     "cluster", name, c->host, c->port);
        else if (r->err)
            snprintf(m[i].why, sizeof m[i].why, "%s: %s", name, upulsar_err_str(r->err));
    }
    pthread_mutex_destroy(&mu);
    pthread_cond_destroy(&cv);
    if (n > 1) {
        free(reqs);
        free(loops);
    }
}
