/* client.c -- client lifecycle: loops, watchdog, future pool, conn pool. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "engine.h"
#include "err.h"
#include "tls.h"

/* The client's copy of the conf holds the token connections present. */
static void client_free(struct upulsar_client *c)
{
    up_conf_wipe_secrets(&c->conf);
    free(c);
}

upulsar_err_t upulsar_client_new(const upulsar_conf_t *conf, upulsar_client_t **out)
{
    if (!out)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "out is NULL");
    *out = NULL;
    struct upulsar_client *c = calloc(1, sizeof *c);
    if (!c)
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    if (conf)
        c->conf = *conf;
    else
        up_conf_defaults(&c->conf);
    upulsar_err_t err = up_parse_service_url(c->conf.service_url, c->svc_hosts, c->svc_ports,
                                             UP_MAX_SERVICE_HOSTS, &c->nsvc, &c->tls);
    if (!err) {
        snprintf(c->host, sizeof c->host, "%s", c->svc_hosts[0]);
        c->port = c->svc_ports[0];
    }
    if (!err) {
        /* the token source is checked here, so a token file that is
         * missing, a directory or empty fails the client, named, before any
         * connection is tried (connections read it again) */
        char tok[sizeof c->conf.auth_token];
        err = up_auth_token(&c->conf, tok, sizeof tok);
        up_wipe(tok, sizeof tok);
    }
    if (err) {
        client_free(c);
        return err;
    }
    if (c->tls && (err = up_tls_ctx_new(&c->conf, &c->ssl_ctx))) {
        client_free(c);
        return err;
    }
    up_fence_init();
    atomic_init(&c->next_producer_id, 1);
    atomic_init(&c->next_request_id, 1);
    atomic_init(&c->max_message_size, 5 * 1024 * 1024);
    pthread_mutex_init(&c->pool_lock, NULL);
    pthread_mutex_init(&c->log_lock, NULL);
    up_cond_init_monotonic(&c->pool_cv); /* timed waits: up_deadline_ts() */
    pthread_mutex_init(&c->lock, NULL);
    up_cond_init_monotonic(&c->wd_cv); /* timed waits: up_deadline_ts() */
    if (up_future_pool_init(&c->futures, (uint64_t)UP_FUT_MAX_SEGS * UP_FUT_SEG_SIZE)) {
        up_tls_ctx_free(c->ssl_ctx);
        client_free(c);
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    }
    c->futures.client = c; /* misuse of a future is logged where the client logs */
    c->nloops = c->conf.io_threads > 0 ? c->conf.io_threads : 1;
    c->loops = calloc((size_t)c->nloops, sizeof *c->loops);
    if (!c->loops) {
        up_future_pool_destroy(&c->futures);
        up_tls_ctx_free(c->ssl_ctx);
        client_free(c);
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    }
    for (int i = 0; i < c->nloops; i++) {
        err = up_loop_start(&c->loops[i], c, i);
        if (err) {
            while (i-- > 0)
                up_loop_stop(&c->loops[i]);
            free(c->loops);
            up_future_pool_destroy(&c->futures);
            up_tls_ctx_free(c->ssl_ctx);
            client_free(c);
            return err;
        }
    }
    if (up_watchdog_start(c)) {
        for (int i = 0; i < c->nloops; i++)
            up_loop_stop(&c->loops[i]);
        free(c->loops);
        up_future_pool_destroy(&c->futures);
        up_tls_ctx_free(c->ssl_ctx);
        client_free(c);
        return up_seterr(UPULSAR_ERR__IO, "cannot start the watchdog thread");
    }
    *out = c;
    return UPULSAR_OK;
}

void upulsar_client_destroy(upulsar_client_t *c)
{
    if (!c)
        return;
    if (up_thread_role() != UP_THREAD_APP) {
        /* from a callback: the threads it would join include this one */
        static _Thread_local bool logging;
        up_refuse_in_callback("upulsar_client_destroy");
        if (!logging) { /* not again from a log callback that does this */
            char why[300];
            snprintf(why, sizeof why, "%s", upulsar_last_error());
            logging = true;
            up_log(c, UPULSAR_LOG_ERR, "%s", why);
            logging = false;
            up_refuse_in_callback("upulsar_client_destroy");
        }
        return;
    }
    /* stop every handle nobody else is stopping; wait for the stops other
     * threads have under way to be done with their handles */
    struct upulsar_producer *h;
    while ((h = up_producer_claim_next(c)))
        up_producer_stop_claimed(h, c->conf.operation_timeout_ms);
    up_watchdog_stop(c);
    for (int i = 0; i < c->nloops; i++)
        up_loop_stop(&c->loops[i]);
    pthread_mutex_lock(&c->pool_lock);
    for (size_t i = 0; i < c->npool; i++)
        up_conn_unref(c->pool[i]);
    free(c->pool);
    pthread_mutex_unlock(&c->pool_lock);
    free(c->loops);
    up_future_pool_destroy(&c->futures);
    up_tls_ctx_free(c->ssl_ctx);
    pthread_mutex_destroy(&c->pool_lock);
    pthread_mutex_destroy(&c->log_lock);
    pthread_cond_destroy(&c->pool_cv);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wd_cv);
    client_free(c);
}
