/* resolve.c -- host names resolved within a deadline, cancellable (see
 * resolve.h). */
#include "resolve.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "clock.h"
#include "conn.h"
#include "err.h"
#include "fault.h"

_Atomic int up_fault_resolve_stall_ms;
_Atomic int up_fault_resolve_stalls;

/* Resolutions given up on whose thread still runs (process-wide). */
static _Atomic int abandoned_running;

/* One resolution, shared by the waiting caller and the resolver thread:
 * the last of the two to let go frees it. */
typedef struct {
    _Atomic int refs;
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* done, signalled by the resolver */
    bool done;            /* (mu) */
    bool abandoned;       /* (mu) the caller stopped waiting before done */
    int rc;               /* (mu) getaddrinfo()'s result, once done */
    int sys_errno;        /* (mu) errno with it, for EAI_SYSTEM */
    struct addrinfo *res; /* (mu) its list, until the caller takes it */
    char port[8];
    char host[];
} job_t;

static void job_put(job_t *j)
{
    /* acq_rel: the last holder sees every write of the other before it
     * frees (the fields are also under mu; this orders the free) */
    if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (j->res)
        freeaddrinfo(j->res);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static const struct addrinfo HINTS = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

static void fault_stall(void)
{
    int ms = atomic_load(&up_fault_resolve_stall_ms);
    if (ms <= 0)
        return;
    atomic_fetch_add(&up_fault_resolve_stalls, 1);
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

static void *resolver_main(void *a)
{
    job_t *j = a;
    fault_stall();
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(j->host, j->port, &HINTS, &res);
    int e = errno;
    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    j->sys_errno = e;
    j->res = rc ? NULL : res;
    j->done = true;
    if (j->abandoned)
        atomic_fetch_sub(&abandoned_running, 1);
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_put(j);
    return NULL;
}

static upulsar_err_t gai_failed(const char *host, int rc, int sys_errno)
{
    return up_seterr(UPULSAR_ERR__CONNECT, "cannot resolve %s: %s", host,
                     rc == EAI_SYSTEM ? strerror(sys_errno) : gai_strerror(rc));
}

/* Start a resolver thread for @p host: the job (two references: ours and
 * the thread's), or NULL with the error set in *@p err. */
static job_t *job_start(const char *host, int port, upulsar_err_t *err)
{
    size_t hl = strlen(host);
    job_t *j = malloc(sizeof *j + hl + 1);
    if (!j) {
        *err = up_seterr(UPULSAR_ERR__NOMEM, "cannot resolve %s: out of memory", host);
        return NULL;
    }
    memset(j, 0, sizeof *j);
    memcpy(j->host, host, hl + 1);
    snprintf(j->port, sizeof j->port, "%d", port);
    atomic_init(&j->refs, 2);
    pthread_attr_t attr;
    bool ok = pthread_mutex_init(&j->mu, NULL) == 0;
    if (ok && up_cond_init_monotonic(&j->cv)) {
        pthread_mutex_destroy(&j->mu);
        ok = false;
    }
    if (!ok) {
        free(j);
        *err = up_seterr(UPULSAR_ERR__CONNECT, "cannot resolve %s: no resources", host);
        return NULL;
    }
    int e = pthread_attr_init(&attr);
    if (!e) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_t t;
        e = pthread_create(&t, &attr, resolver_main, j);
        pthread_attr_destroy(&attr);
    }
    if (e) {
        atomic_store(&j->refs, 1);
        job_put(j);
        *err = up_seterr(UPULSAR_ERR__CONNECT, "cannot resolve %s: no thread for it: %s",
                         host, strerror(e));
        return NULL;
    }
    return j;
}

upulsar_err_t up_resolve(const char *host, int port, uint64_t deadline_us, int timeout_ms,
                         struct addrinfo **out)
{
    *out = NULL;
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    /* a numeric address needs no resolver: converted here, at once */
    struct addrinfo hints = HINTS, *res = NULL;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc == 0) {
        *out = res;
        return UPULSAR_OK;
    }
    if (rc != EAI_NONAME)
        return gai_failed(host, rc, errno);
    if (atomic_load(&abandoned_running) >= UP_RESOLVE_MAX_ABANDONED)
        return up_seterr(UPULSAR_ERR__CONNECT,
                         "cannot resolve %s: %d earlier resolutions still wait for the "
                         "DNS server", host, UP_RESOLVE_MAX_ABANDONED);
    upulsar_err_t err = UPULSAR_OK;
    job_t *j = job_start(host, port, &err);
    if (!j)
        return err;
    pthread_mutex_lock(&j->mu);
    bool cancelled = false;
    while (!j->done) {
        uint64_t now = up_now_us();
        if ((cancelled = up_cancelled()) || now >= deadline_us)
            break;
        uint64_t until = now + UP_CANCEL_SLICE_MS * 1000u;
        struct timespec ts = up_deadline_ts(until < deadline_us ? until : deadline_us);
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    }
    bool done = j->done;
    rc = j->rc;
    int sys_errno = j->sys_errno;
    if (done) {
        *out = j->res;
        j->res = NULL;
    } else {
        j->abandoned = true;
        atomic_fetch_add(&abandoned_running, 1);
    }
    pthread_mutex_unlock(&j->mu);
    job_put(j);
    if (done)
        return rc ? gai_failed(host, rc, sys_errno) : UPULSAR_OK;
    if (cancelled)
        return up_seterr(UPULSAR_ERR__CLOSED, "resolving %s abandoned: stopping", host);
    if (timeout_ms > 0)
        return up_seterr(UPULSAR_ERR__CONNECT,
                         "cannot resolve %s: no answer from the DNS resolver within "
                         "connection.timeout.ms=%d", host, timeout_ms);
    return up_seterr(UPULSAR_ERR__CONNECT,
                     "cannot resolve %s: no answer from the DNS resolver in time", host);
}
