/* partitioned_stop.c -- flush and stop of a partitioned producer handle:
 * waiting for what was sent to resolve, closing its real producers on the
 * brokers (all together, under one deadline) and freeing the handle. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "err.h"
#include "fault.h"
#include "rp_state.h"

/* ---- stop: closing producers -------------------------------------------------- */

/* Closing producers, all together, in three passes over their loops (one
 * task per loop and pass, however many producers it has):
 *  1. each producer fails what it still holds with CLOSED (CLOSING), so
 *     every future and callback has resolved before any wait for a broker
 *     (and the batches of those messages that a connection has not started
 *     to write are taken out of its queue before its next write:
 *     up_conn_purge_resolved(), conn_io.c);
 *  2. CLOSE_PRODUCER (answered by SUCCESS once the broker has finished the
 *     writes in progress) goes out for every producer whose connection is
 *     open, all at once, pipelined on the shared connections
 *     (up_conn_request_all()), and the answers are waited for together,
 *     until one shared deadline;
 *  3. each producer lets go of its connection (CLOSED) and is taken off its
 *     loop (up_loop_remove_rp(), O(1)).
 * A hung broker therefore costs the deadline once, not once per producer. */
typedef struct {
    up_loop_t *loop;
    up_rp_t **rps;
    size_t n;
    up_conn_t **conns; /* pass 2: the open connection of rps[i], referenced
                          while its CLOSE_PRODUCER is in flight, or NULL */
} close_pass_t;

static void close_fail_task(void *a)
{
    close_pass_t *p = a;
    for (size_t i = 0; i < p->n; i++) {
        up_rp_t *rp = p->rps[i];
        if (rp->loop != p->loop)
            continue;
        up_rp_transition(rp, UP_RP_ANY, UP_RP_CLOSING, "stopping");
        up_rp_fail_all(rp, UPULSAR_ERR__CLOSED);
    }
}

static void close_conn_task(void *a)
{
    close_pass_t *p = a;
    for (size_t i = 0; i < p->n; i++) {
        up_rp_t *rp = p->rps[i];
        if (rp->loop != p->loop)
            continue;
        /* a send that passed its closed check before the stop may have
         * committed a record since pass 1 */
        up_rp_fail_all(rp, UPULSAR_ERR__CLOSED);
        /* also when not READY: a PRODUCER abandoned by stop may still have
         * created it on the broker (closing an unknown id is harmless) */
        if (rp->conn && atomic_load(&rp->conn->state) == UP_CONN_OPEN) {
            up_conn_ref(rp->conn);
            p->conns[i] = rp->conn;
        }
    }
}

static void close_end_task(void *a)
{
    close_pass_t *p = a;
    for (size_t i = 0; i < p->n; i++) {
        up_rp_t *rp = p->rps[i];
        if (rp->loop != p->loop)
            continue;
        if (rp->conn)
            up_rp_detach(rp, false);
        up_rp_transition(rp, UP_RP_BIT(UP_RP_CLOSING), UP_RP_CLOSED, "stopped");
        up_loop_forget_active(rp);
        up_loop_remove_rp(rp->loop, rp);
    }
}

/* Run @p fn once on each loop of @p c that has one of the producers of @p p. */
static void close_pass(struct upulsar_client *c, close_pass_t *p, void (*fn)(void *))
{
    for (int k = 0; k < c->nloops; k++) {
        p->loop = &c->loops[k];
        for (size_t i = 0; i < p->n; i++)
            if (p->rps[i]->loop == p->loop) {
                up_loop_call(p->loop, fn, p);
                break;
            }
    }
}

/* Passes 2 and 3 for @p n producers, with room for their connections and
 * requests in @p conns and @p m. */
static void close_chunk(up_rp_t **rps, size_t n, up_conn_t **conns, up_mreq_t *m,
                        uint64_t close_by)
{
    struct upulsar_client *c = rps[0]->client;
    close_pass_t p = {.rps = rps, .n = n, .conns = conns};
    memset(conns, 0, n * sizeof *conns);
    close_pass(c, &p, close_conn_task);
    size_t nm = 0;
    for (size_t i = 0; i < n; i++) {
        if (!conns[i])
            continue;
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandCloseProducer cp = PULSAR__PROTO__COMMAND_CLOSE_PRODUCER__INIT;
        up_rp_close_cmd(rps[i], &cmd, &cp);
        if (up_mreq_encode(&m[nm], conns[i], &cmd, cp.request_id) == UPULSAR_OK)
            nm++;
    }
    uint64_t now = up_now_us();
    /* the frames are sent even with no time left; only the wait is skipped */
    up_conn_request_all(m, nm, close_by > now ? (int)((close_by - now) / 1000u) : 0);
    for (size_t j = 0; j < nm; j++)
        if (m[j].resp)
            pulsar__proto__base_command__free_unpacked(m[j].resp, NULL);
    for (size_t i = 0; i < n; i++)
        if (conns[i])
            up_conn_unref(conns[i]);
    close_pass(c, &p, close_end_task);
}

_Atomic int up_fault_close_nomem;

void up_rps_close(up_rp_t **rps, size_t n, uint64_t close_by)
{
    if (n == 0)
        return;
    struct upulsar_client *c = rps[0]->client;
    close_pass_t p = {.rps = rps, .n = n};
    close_pass(c, &p, close_fail_task);
    bool nomem = up_fault_hit(&up_fault_close_nomem);
    up_conn_t **conns = nomem ? NULL : calloc(n, sizeof *conns);
    up_mreq_t *m = nomem ? NULL : calloc(n, sizeof *m);
    if (conns && m) {
        close_chunk(rps, n, conns, m, close_by);
    } else { /* out of memory: one at a time, with what the stack holds */
        for (size_t i = 0; i < n; i++) {
            up_conn_t *conn1[1];
            up_mreq_t m1[1];
            close_chunk(rps + i, 1, conn1, m1, close_by);
        }
    }
    free(conns);
    free(m);
}

/* @p close_by: bound of the waits for the brokers' answers to
 * CLOSE_PRODUCER, shared by all producers (a hung broker costs it once, not
 * once per partition) */
void up_handle_free(struct upulsar_producer *h, uint64_t close_by)
{
    /* every future and callback resolved before any wait for a broker */
    up_rps_close(h->all, (size_t)h->nall, close_by);
    for (int i = 0; i < h->nall; i++)
        up_rp_free(h->all[i]);
    if (h->groups)
        for (int g = 0; g < h->ngroups; g++)
            free(h->groups[g].rps);
    free(h->groups);
    free(h->all);
    for (int i = 0; i < h->nretired; i++)
        free(h->retired[i]);
    free(h->retired);
    free(h);
}

/* ---- flush / stop ------------------------------------------------------------------ */

static upulsar_err_t wait_resolved(struct upulsar_producer *h, int nall, const uint64_t *marks,
                                   uint64_t deadline)
{
    for (int i = 0; i < nall; i++) {
        up_rp_t *rp = h->all[i];
        unsigned spins = 0;
        while (atomic_load_explicit(&rp->resolved_ring_pos, memory_order_acquire) < marks[i]) {
            if (atomic_load(&h->freeing))
                return up_seterr(UPULSAR_ERR__CLOSED, "%s: the producer was stopped during the "
                                 "flush", rp->topic);
            if (up_now_us() > deadline)
                return up_seterr(UPULSAR_ERR__TIMED_OUT, "%s: not all messages resolved in time",
                                 rp->topic);
            up_rp_request_flush(rp);
            if (++spins < 16) {
                sched_yield();
            } else {
                struct timespec ts = {0, 200000};
                nanosleep(&ts, NULL);
            }
        }
    }
    return UPULSAR_OK;
}

static uint64_t deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? UINT64_MAX : up_now_us() + (uint64_t)timeout_ms * 1000u;
}

/* flush without the checks of the public call (stop flushes a handle it
 * has already closed) */
static upulsar_err_t flush_wait(struct upulsar_producer *h, int timeout_ms)
{
    /* producers started by a partition growth after this point hold only
     * messages sent after the call: they are not waited for */
    int nall = atomic_load_explicit(&h->nall, memory_order_acquire);
    uint64_t *marks = malloc((size_t)(nall ? nall : 1) * sizeof *marks);
    if (!marks)
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    for (int i = 0; i < nall; i++) {
        marks[i] = up_ring_head_pos(&h->all[i]->ring);
        up_rp_request_flush(h->all[i]);
    }
    upulsar_err_t err = wait_resolved(h, nall, marks, deadline_of(timeout_ms));
    free(marks);
    return err;
}

/* Stops, flushes and client destroy meet under the client lock:
 *  - a stop claims the handle (closed = 1) and counts itself in
 *    c->stopping, both under the lock, so exactly one thread stops a handle
 *    and client destroy knows which stops are still freeing theirs;
 *  - a flush enters (h->flushing++) under the lock only while the handle is
 *    not claimed; the stop, once its own flush is over, sets freeing (a
 *    flush still waiting gives up with CLOSED) and frees the handle only
 *    after every flush has left (h->flushing == 0);
 *  - every change is followed by a broadcast on c->wd_cv. */
static upulsar_err_t flush_enter(struct upulsar_producer *h)
{
    struct upulsar_client *c = h->client;
    pthread_mutex_lock(&c->lock);
    bool closed = atomic_load(&h->closed) != 0;
    if (!closed)
        h->flushing++;
    pthread_mutex_unlock(&c->lock);
    return closed ? up_seterr(UPULSAR_ERR__CLOSED, "%s: producer is being stopped", h->topic)
                  : UPULSAR_OK;
}

static void flush_leave(struct upulsar_producer *h)
{
    struct upulsar_client *c = h->client;
    pthread_mutex_lock(&c->lock);
    h->flushing--;
    pthread_cond_broadcast(&c->wd_cv);
    pthread_mutex_unlock(&c->lock);
}

upulsar_err_t upulsar_producer_flush(upulsar_producer_t *h, int timeout_ms)
{
    if (!h)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "producer is NULL");
    /* on a library thread the wait would be for the thread itself (the io
     * loop resolves the messages) or hold up re-creations (watchdog) */
    if (up_thread_role() != UP_THREAD_APP)
        return up_refuse_in_callback("upulsar_producer_flush");
    upulsar_err_t err = flush_enter(h);
    if (err)
        return err;
    err = flush_wait(h, timeout_ms);
    flush_leave(h);
    return err;
}

upulsar_err_t upulsar_producer_stop(upulsar_producer_t *h, int timeout_ms)
{
    if (!h)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "producer is NULL");
    /* on the io loop it would wait for itself and free the producer whose
     * messages it is resolving; on the watchdog wait for its own pass */
    if (up_thread_role() != UP_THREAD_APP)
        return up_refuse_in_callback("upulsar_producer_stop");
    struct upulsar_client *c = h->client;
    /* a second stop while this one runs (the handle still exists) is
     * refused; one after this returns uses a freed handle (upulsar.h) */
    pthread_mutex_lock(&c->lock);
    bool claimed = atomic_exchange(&h->closed, 1) != 0;
    if (!claimed)
        c->stopping++;
    pthread_mutex_unlock(&c->lock);
    if (claimed)
        return up_seterr(UPULSAR_ERR__STATE,
                         "%s: upulsar_producer_stop() is already under way for this producer",
                         h->topic);
    return up_producer_stop_claimed(h, timeout_ms);
}

struct upulsar_producer *up_producer_claim_next(struct upulsar_client *c)
{
    pthread_mutex_lock(&c->lock);
    struct upulsar_producer *h;
    for (;;) {
        for (h = c->producers; h && atomic_load(&h->closed); h = h->next)
            ;
        if (h || (!c->producers && !c->stopping))
            break;
        pthread_cond_wait(&c->wd_cv, &c->lock); /* other threads' stops */
    }
    if (h) {
        atomic_store(&h->closed, 1);
        c->stopping++;
    }
    pthread_mutex_unlock(&c->lock);
    return h;
}

upulsar_err_t up_producer_stop_claimed(struct upulsar_producer *h, int timeout_ms)
{
    struct upulsar_client *c = h->client;
    uint64_t stop_by = deadline_of(timeout_ms);
    upulsar_err_t err = flush_wait(h, timeout_ms);
    pthread_mutex_lock(&c->lock);
    /* no watchdog pass over h, no re-creation of its producers, no flush
     * still waiting, from now */
    up_watchdog_forget(h);
    atomic_store(&h->freeing, 1);
    while (c->wd_busy == h || c->poll_busy == h || h->establishing || h->flushing)
        pthread_cond_wait(&c->wd_cv, &c->lock);
    for (struct upulsar_producer **pp = &c->producers; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    pthread_mutex_unlock(&c->lock);
    /* the waits for CLOSE_PRODUCER answers get at most 1 s, and no more
     * than what is left of timeout_ms */
    uint64_t close_by = up_now_us() + 1000000u;
    if (stop_by < close_by)
        close_by = stop_by;
    up_handle_free(h, close_by); /* fails what is left with CLOSED, closes every producer */
    pthread_mutex_lock(&c->lock);
    c->stopping--;
    pthread_cond_broadcast(&c->wd_cv);
    pthread_mutex_unlock(&c->lock);
    return err;
}
