/* client.c -- client lifecycle: loops (and their io backend), watchdog,
 * future pool, conn pool. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "engine.h"
#include "err.h"
#include "io_backend.h"
#include "tls.h"

/* The client's copy of the conf holds the token connections present. */
static void client_free(struct upulsar_client *c)
{
    up_conf_wipe_secrets(&c->conf);
    free(c);
}

const char *up_errno_name(int e, char *buf, size_t n)
{
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOSYS: return "ENOSYS";
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default:
        snprintf(buf, n, "errno %d", e);
        return buf;
    }
}

/* what usually stands behind an io_uring set-up error */
static const char *uring_hint(int e)
{
    switch (e) {
    case EPERM:
    case EACCES:
        return "; denied by a seccomp profile such as Docker's default, or by the sysctl "
               "kernel.io_uring_disabled";
    case ENOSYS:
        return "; the kernel has no io_uring, or not what the loop needs";
    case ENOMEM:
        return "; RLIMIT_MEMLOCK too low for the ring (kernels before 5.12)";
    default:
        return "";
    }
}

/* io.backend: the backend every loop of @p c uses, and why (c->io_why, for
 * the log line). auto takes io_uring when it can be set up with what the
 * loop needs, else epoll, whatever stopped io_uring (the reason is logged);
 * io_uring asked for explicitly fails the client instead. The environment
 * variable UPULSAR_IO_BACKEND replaces auto (not an explicit choice). */
static upulsar_err_t choose_backend(struct upulsar_client *c)
{
    int want = c->conf.io_backend;
    const char *by = "io.backend";
    const char *env = getenv("UPULSAR_IO_BACKEND");
    if (want == UP_IO_AUTO && env && *env) {
        by = "UPULSAR_IO_BACKEND";
        if (!strcmp(env, "epoll"))
            want = UP_IO_EPOLL;
        else if (!strcmp(env, "io_uring"))
            want = UP_IO_URING;
        else if (strcmp(env, "auto"))
            return up_seterr(UPULSAR_ERR__INVALID_ARG,
                             "UPULSAR_IO_BACKEND=%s: expected io_uring, epoll or auto", env);
    }
    if (want == UP_IO_EPOLL) {
        c->io = &up_io_epoll_ops;
        snprintf(c->io_why, sizeof c->io_why, "%s=epoll", by);
        return UPULSAR_OK;
    }
    /* Under valgrind (it runs the program with its vgpreload_*.so in
     * LD_PRELOAD) a thread waiting in io_uring_enter() keeps valgrind's
     * one-thread-at-a-time lock, so every other thread of the process
     * waits with it, for good (seen with valgrind 3.19). auto runs on
     * epoll there; io_uring asked for explicitly is left alone. */
    const char *pre = getenv("LD_PRELOAD");
    if (want == UP_IO_AUTO && pre && strstr(pre, "vgpreload_")) {
        c->io = &up_io_epoll_ops;
        snprintf(c->io_why, sizeof c->io_why,
                 "under valgrind, whose thread lock an io_uring wait would hold; %s=auto", by);
        return UPULSAR_OK;
    }
    char why[200], nb[24];
    int e = up_io_uring_probe(why, sizeof why);
    if (!e) {
        c->io = &up_io_uring_ops;
        snprintf(c->io_why, sizeof c->io_why, "%s=%s", by,
                 want == UP_IO_URING ? "io_uring" : "auto");
        return UPULSAR_OK;
    }
    const char *en = up_errno_name(e, nb, sizeof nb);
    if (want == UP_IO_URING)
        return up_seterr(UPULSAR_ERR__IO,
                         "io_uring cannot be set up: %s (%s%s); %s=io_uring asks for it: "
                         "io.backend=epoll or auto runs on epoll instead",
                         why, en, uring_hint(e), by);
    c->io = &up_io_epoll_ops;
    snprintf(c->io_why, sizeof c->io_why, "io_uring unavailable: %s (%s%s); %s=auto", why, en,
             uring_hint(e), by);
    return UPULSAR_OK;
}

void up_client_log_backend(struct upulsar_client *c)
{
    if (atomic_exchange(&c->io_logged, 1))
        return;
    up_log(c, UPULSAR_LOG_INFO, "io backend: %s (%s)", c->io->name, c->io_why);
}

/* start every loop on c->io; on failure none runs */
static upulsar_err_t start_loops(struct upulsar_client *c)
{
    for (int i = 0; i < c->nloops; i++) {
        upulsar_err_t err = up_loop_start(&c->loops[i], c, i, c->io);
        if (err) {
            while (i-- > 0)
                up_loop_stop(&c->loops[i]);
            return err;
        }
    }
    return UPULSAR_OK;
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
    if (!err)
        err = choose_backend(c);
    if (err) {
        client_free(c);
        return err;
    }
    if (c->tls && (err = up_tls_ctx_new(&c->conf, &c->ssl_ctx))) {
        client_free(c);
        return err;
    }
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
    err = start_loops(c);
    if (err && c->io == &up_io_uring_ops && c->conf.io_backend == UP_IO_AUTO &&
        !strstr(c->io_why, "UPULSAR_IO_BACKEND")) {
        /* the probe's small ring worked, the loop's did not (locked
         * memory): auto runs on epoll */
        c->io = &up_io_epoll_ops;
        snprintf(c->io_why, sizeof c->io_why, "io_uring unavailable: %s; io.backend=auto",
                 upulsar_last_error());
        err = start_loops(c);
    }
    if (err) {
        free(c->loops);
        up_future_pool_destroy(&c->futures);
        up_tls_ctx_free(c->ssl_ctx);
        client_free(c);
        return err;
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
    /* cancel the starts under way (upulsar_producer_start_async()) and wait
     * for their callbacks: a start delivered before is stopped below */
    up_starts_cancel_wait(c);
    /* stop every handle nobody else is stopping; wait for the stops other
     * threads have under way to be done with their handles */
    struct upulsar_producer *h;
    while ((h = up_producer_claim_next(c)))
        up_producer_stop_claimed(h, c->conf.operation_timeout_ms);
    up_watchdog_stop(c);
    for (int i = 0; i < c->nloops; i++)
        up_loop_stop(&c->loops[i]);
    up_log_flush_held(c); /* before anything a callback may read is freed */
    pthread_mutex_lock(&c->pool_lock);
    for (size_t i = 0; i < c->npool; i++)
        up_conn_unref(c->pool[i]);
    free(c->pool);
    pthread_mutex_unlock(&c->pool_lock);
    free(c->loops);
    up_future_pool_destroy(&c->futures);
    up_tls_ctx_free(c->ssl_ctx);
    pthread_mutex_destroy(&c->pool_lock);
    up_log_close(c); /* collapsed lines still held; destroys log_lock */
    pthread_cond_destroy(&c->pool_cv);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wd_cv);
    client_free(c);
}
