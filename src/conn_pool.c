/* conn_pool.c -- the client's connections: the pool keyed by (loop,
 * broker host:port, slot, proxied broker), reference counts, and the
 * decision to close a connection left unused for
 * connection.idle.timeout.ms. The pool array, its dials and its counters
 * are guarded by the client's pool_lock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "engine.h"
#include "err.h"
#include "fault.h"
#include "tls.h"

_Atomic int up_fault_dial_post;

/* ---- reference counting -------------------------------------------------- */

void up_conn_ref(up_conn_t *c) { atomic_fetch_add(&c->refs, 1); }

void up_conn_unref(up_conn_t *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    if (c->fd >= 0)
        close(c->fd);
    up_decoder_free(&c->dec);
    up_conn_drop_outq(c);
    free(c->outq);
    up_tls_free(c->tls);
    free(c->tls_rbuf);
    up_buf_free(&c->tls_tx);
    free(c->rps);
    free(c->rix);
    free(c);
}

/* References of a pooled connection nobody uses: the pool's and its loop's.
 * Every other holder (a registered producer, a thread between up_conn_get()
 * and its up_conn_unref(), a request waiting for its answer, a stop closing
 * its producer) adds one. */
#define UNUSED_REFS 2

/* ---- the pool ------------------------------------------------------------- */

up_conn_t *up_conn_pool_find(struct upulsar_client *cl, up_loop_t *l, const char *host, int port,
                             int slot, const char *proxy_to)
{
    for (size_t i = 0; i < cl->npool; i++) {
        up_conn_t *c = cl->pool[i];
        if (c->loop == l && c->port == port && c->slot == slot && !strcmp(c->host, host) &&
            !strcmp(c->proxy_to, proxy_to) &&
            atomic_load(&c->state) == UP_CONN_OPEN) {
            up_conn_ref(c);
            return c;
        }
    }
    return NULL;
}

upulsar_err_t up_conn_pool_add(up_conn_t *c)
{
    struct upulsar_client *cl = c->client;
    /* Only a connection its loop will read may be found in the pool (one
     * that nobody reads would leave every request on it unanswered): the
     * attach task is posted first, under pool_lock, so that if the task
     * fails the connection (up_conn_fail takes pool_lock) it finds it
     * pooled already. */
    pthread_mutex_lock(&cl->pool_lock);
    if (cl->npool == cl->cpool) {
        size_t n = cl->cpool ? cl->cpool * 2 : 8;
        up_conn_t **np = realloc(cl->pool, n * sizeof *np);
        if (!np) {
            pthread_mutex_unlock(&cl->pool_lock);
            upulsar_err_t err =
                up_seterr(UPULSAR_ERR__NOMEM, "%s:%d: out of memory", c->host, c->port);
            up_conn_unref(c);
            return err;
        }
        cl->pool = np;
        cl->cpool = n;
    }
    up_conn_ref(c); /* the loop's */
    if (up_fault_hit(&up_fault_dial_post) || up_loop_post(c->loop, up_conn_attach, c)) {
        pthread_mutex_unlock(&cl->pool_lock);
        upulsar_err_t err = up_seterr(
            UPULSAR_ERR__NOMEM,
            "%s:%d: cannot hand the new connection to its I/O loop: out of memory", c->host,
            c->port);
        up_conn_unref(c); /* the loop's (refs was 2: not the last) */
        /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the first unref did not free c */
        up_conn_unref(c); /* ours: closes it */
        return err;
    }
    cl->pool[cl->npool++] = c;
    up_conn_ref(c); /* the pool's */
    atomic_fetch_add_explicit(&cl->conns_opened, 1, memory_order_relaxed);
    pthread_mutex_unlock(&cl->pool_lock);
    return UPULSAR_OK; /* the caller keeps its reference */
}

bool up_conn_pool_remove(up_conn_t *c)
{
    struct upulsar_client *cl = c->client;
    bool pooled = false;
    pthread_mutex_lock(&cl->pool_lock);
    for (size_t i = 0; i < cl->npool; i++) {
        if (cl->pool[i] == c) {
            cl->pool[i] = cl->pool[--cl->npool];
            pooled = true;
            atomic_fetch_add_explicit(&cl->conns_closed, 1, memory_order_relaxed);
            break;
        }
    }
    pthread_mutex_unlock(&cl->pool_lock);
    return pooled;
}

void up_conn_pool_stats(struct upulsar_client *cl, int *open, int *idle)
{
    int n = 0, unused = 0;
    pthread_mutex_lock(&cl->pool_lock);
    for (size_t i = 0; i < cl->npool; i++) {
        up_conn_t *c = cl->pool[i];
        if (atomic_load(&c->state) != UP_CONN_OPEN)
            continue;
        n++;
        if (atomic_load(&c->refs) == UNUSED_REFS)
            unused++;
    }
    pthread_mutex_unlock(&cl->pool_lock);
    *open = n;
    *idle = unused;
}

/* ---- idle connections (loop) ------------------------------------------------ */

/* In use as far as the loop can tell without pool_lock. */
static bool conn_in_use(up_conn_t *c)
{
    return c->nrps || c->reqs || c->oq_len || c->send_inflight ||
           c->tls_tx_off < c->tls_tx.len || atomic_load(&c->refs) > UNUSED_REFS;
}

/* connection.idle.timeout.ms passed since @p c was last used: close it
 * unless someone took it meanwhile. Under pool_lock nobody can find it
 * (up_conn_pool_find() references it under that lock), so a connection with only
 * the pool's and the loop's references stays unused: it leaves the pool,
 * then closes with nothing pending on it. Returns whether it closed. */
static bool close_idle(up_conn_t *c, uint64_t now, int idle_ms)
{
    struct upulsar_client *cl = c->client;
    pthread_mutex_lock(&cl->pool_lock);
    bool idle = false; /* still pooled (not failed meanwhile) and unused */
    if (atomic_load(&c->refs) == UNUSED_REFS)
        for (size_t i = 0; i < cl->npool; i++)
            if (cl->pool[i] == c) {
                cl->pool[i] = cl->pool[--cl->npool];
                idle = true;
                break;
            }
    if (idle) {
        atomic_fetch_add_explicit(&cl->conns_closed, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&cl->conns_idle_closed, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&cl->pool_lock);
    if (!idle) {
        c->last_used_us = now; /* taken: its idle time starts again */
        return false;
    }
    up_log(cl, UPULSAR_LOG_INFO,
           "closing the connection to %s:%d%s%s: unused for %d ms (connection.idle.timeout.ms)",
           c->host, c->port, c->proxy_to[0] ? " for " : "", c->proxy_to, idle_ms);
    up_conn_fail(c, UPULSAR_ERR__CLOSED); /* not pooled any more: keeps the pool's reference */
    up_conn_unref(c);                     /* the pool's; the loop's remains */
    return true;
}

bool up_conn_close_if_idle(up_conn_t *c, uint64_t now)
{
    int idle_ms = c->client->conf.connection_idle_timeout_ms;
    if (idle_ms <= 0)
        return false;
    if (conn_in_use(c)) {
        c->last_used_us = now;
        return false;
    }
    if (now - c->last_used_us < (uint64_t)idle_ms * 1000u)
        return false;
    return close_idle(c, now, idle_ms);
}
