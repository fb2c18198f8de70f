/* watchdog.c -- the supervisor thread: re-creates producers that lost their
 * connection or were closed by the broker (exponential backoff with jitter),
 * enforces the restart intensity, fails groups on terminal errors. The
 * blocking part of a re-creation (lookup, connect, PRODUCER) runs on one of
 * UP_EST_WORKERS establish workers, so a broker that hangs holds up only the
 * producers that live on it; the watchdog keeps every decision. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "engine.h"
#include "err.h"
#include "rp_state.h"

#define WD_PERIOD_MS 20

static _Thread_local const _Atomic int *cancel_flag;

void up_cancel_on(const _Atomic int *flag) { cancel_flag = flag; }

bool up_cancelled(void)
{
    return cancel_flag && atomic_load_explicit(cancel_flag, memory_order_relaxed);
}

void up_watchdog_kick(struct upulsar_client *c)
{
    pthread_mutex_lock(&c->lock);
    c->wd_kicked = true;
    /* broadcast: stops and client destroy wait on wd_cv too, and a signal
     * could wake one of them instead of the watchdog */
    pthread_cond_broadcast(&c->wd_cv);
    pthread_mutex_unlock(&c->lock);
}

static uint64_t jitter(uint64_t ms)
{
    /* up to 10 % less, as the official clients do */
    uint64_t cut = ms / 10;
    return cut ? ms - (uint64_t)rand() % (cut + 1) : ms;
}

typedef struct {
    up_rp_t *rp;
    upulsar_err_t err;
    const char *why;
} fail_t;

static void fail_task(void *a)
{
    fail_t *f = a;
    up_rp_fail_why(f->rp, f->err, f->why);
}

static void fail_pending_task(void *a)
{
    fail_t *f = a;
    up_rp_fail_pending_why(f->rp, f->err, f->why);
}

/* Fail every producer of @p g with @p err; sends to it are refused from now
 * on (upulsar_send() checks g->failed). Its messages fail with the detail
 * "partition group failed: <why>". */
static void fail_group(up_group_t *g, upulsar_err_t err, const char *why)
{
    char detail[UP_DETAIL_TEXT_MAX];
    snprintf(detail, sizeof detail, "partition group failed: %s", why);
    if (g->nrps)
        up_log_rp(g->rps[0], UPULSAR_LOG_ERR, err,
               "%s: partition group failed: %s (%s); its messages fail", g->topic,
               upulsar_err_name(err), up_last_error_for(err));
    atomic_store(&g->failed, err);
    for (int i = 0; i < g->nrps; i++) {
        fail_t f = {g->rps[i], err, detail};
        up_loop_call(g->rps[i]->loop, fail_task, &f);
    }
}

/* A producer of @p g failed on its own (a terminal SEND_ERROR): its error,
 * or 0. */
static upulsar_err_t member_failure(const up_group_t *g)
{
    for (int i = 0; i < g->nrps; i++) {
        int e = atomic_load(&g->rps[i]->failed);
        if (e)
            return (upulsar_err_t)e;
    }
    return UPULSAR_OK;
}

/* Backoff delay before the next attempt of @p rp (backoff.* are client
 * keys, send.timeout.ms a producer key): the current delay, with the
 * "mandatory stop" of the official clients: once per outage it is
 * shortened so that an attempt comes a little before send.timeout.ms has
 * passed since the outage began, giving the pending messages a last chance
 * to be resent before they expire. The margin is a tenth of the timeout
 * (at least 100 ms, as Java and C++ use). */
static uint64_t next_delay_ms(const struct upulsar_conf *cc, const struct upulsar_conf *pc,
                              up_rp_t *rp, uint64_t now)
{
    uint64_t d = rp->sup.backoff_ms ? rp->sup.backoff_ms : (uint64_t)cc->backoff_initial_ms;
    rp->sup.backoff_ms = d * 2;
    if (rp->sup.backoff_ms > (uint64_t)cc->backoff_max_ms)
        rp->sup.backoff_ms = (uint64_t)cc->backoff_max_ms;
    if (!rp->sup.outage_since_us)
        rp->sup.outage_since_us = now;
    if (pc->send_timeout_ms <= 0 || rp->sup.mandatory_stop_made)
        return d;
    uint64_t to = (uint64_t)pc->send_timeout_ms, initial = (uint64_t)cc->backoff_initial_ms;
    uint64_t margin = to / 10 > 100 ? to / 10 : 100;
    uint64_t stop = to > margin + initial ? to - margin : initial;
    uint64_t elapsed = (now - rp->sup.outage_since_us) / 1000u;
    if (elapsed + d > stop) {
        rp->sup.mandatory_stop_made = true;
        d = stop > elapsed ? stop - elapsed : 0;
        if (d < initial)
            d = initial;
    }
    return d;
}

/* ---- establish workers ------------------------------------------------- */

/* Queue @p rp for a worker. (lock held) */
static void est_submit_locked(up_rp_t *rp)
{
    struct upulsar_client *c = rp->client;
    atomic_store_explicit(&rp->sup.est_state, UP_EST_BUSY, memory_order_relaxed);
    rp->sup.est_next = NULL;
    if (c->est_tail)
        c->est_tail->sup.est_next = rp;
    else
        c->est_head = rp;
    c->est_tail = rp;
    rp->handle->establishing++;
    pthread_cond_signal(&c->est_cv);
}

/* Hand @p rp (BACKOFF -> CONNECTING, its attempt due) to a worker. */
static void est_submit(up_rp_t *rp)
{
    pthread_mutex_lock(&rp->client->lock);
    est_submit_locked(rp);
    pthread_mutex_unlock(&rp->client->lock);
}

/* Publish @p rp's result and wake the watchdog (and a stop waiting for the
 * handle's attempts to end). (lock held) */
static void est_finish(struct upulsar_client *c, up_rp_t *rp, upulsar_err_t err)
{
    rp->sup.est_err = err;
    atomic_store_explicit(&rp->sup.est_state, UP_EST_DONE, memory_order_release);
    atomic_store_explicit(&rp->handle->wd_dirty, 1, memory_order_release);
    rp->handle->establishing--;
    c->wd_kicked = true;
    pthread_cond_broadcast(&c->wd_cv);
}

static void *est_main(void *arg)
{
    struct upulsar_client *c = arg;
    up_thread_set_role(UP_THREAD_WORKER); /* log callbacks run here */
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->wd_stop && !c->est_head)
            pthread_cond_wait(&c->est_cv, &c->lock);
        if (!c->est_head) /* stopping, nothing left */
            break;
        up_rp_t *rp = c->est_head;
        c->est_head = rp->sup.est_next;
        if (!c->est_head)
            c->est_tail = NULL;
        struct upulsar_producer *h = rp->handle;
        pthread_mutex_unlock(&c->lock);
        /* stop must not wait behind an attempt: it gives up once the
         * stop's flush is over (until then the stop flushes, and a
         * re-created producer is what lets it) */
        int timeout_ms = c->conf.operation_timeout_ms;
        if (rp->sup.est_deadline_us) {
            uint64_t now = up_now_us();
            timeout_ms = rp->sup.est_deadline_us > now + 1000u
                             ? (int)((rp->sup.est_deadline_us - now) / 1000u)
                             : 1;
        }
        up_cancel_on(&h->freeing);
        upulsar_err_t err = atomic_load(&h->freeing) ? up_seterr(UPULSAR_ERR__CLOSED, "stopping")
                                                     : up_rp_establish(rp, timeout_ms);
        up_cancel_on(NULL);
        if (err)
            snprintf(rp->sup.est_why, sizeof rp->sup.est_why, "%s", upulsar_last_error());
        pthread_mutex_lock(&c->lock);
        est_finish(c, rp, err);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

void up_watchdog_forget(struct upulsar_producer *h)
{
    struct upulsar_client *c = h->client;
    up_rp_t *prev = NULL;
    for (up_rp_t *rp = c->est_head, *next; rp; rp = next) {
        next = rp->sup.est_next;
        if (rp->handle != h) {
            prev = rp;
            continue;
        }
        if (prev)
            prev->sup.est_next = next;
        else
            c->est_head = next;
        if (c->est_tail == rp)
            c->est_tail = prev;
        est_finish(c, rp, UPULSAR_ERR__CLOSED);
    }
}

/* up_establish_all() on the calling thread, in rounds: each round is one
 * attempt of every producer due, all together (up_establish_many():
 * lookups batched per broker, PRODUCER requests pipelined); a producer
 * whose attempt failed with a retriable error is due again after its
 * backoff delay. */
static upulsar_err_t establish_rounds(up_rp_t **rps, int n, uint64_t deadline_us)
{
    struct upulsar_client *c = rps[0]->client;
    struct upulsar_producer *h = rps[0]->handle;
    const struct upulsar_conf *cc = &c->conf;
    struct attempt {
        uint64_t next_us, delay_ms;
        bool over;
    } *a = calloc((size_t)n, sizeof *a);
    up_rp_t **due = calloc((size_t)n, sizeof *due);
    int *di = calloc((size_t)n, sizeof *di);
    upulsar_err_t *errs = calloc((size_t)n, sizeof *errs);
    char(*whys)[512] = calloc((size_t)n, sizeof *whys);
    upulsar_err_t fail = UPULSAR_OK, last = UPULSAR_OK;
    char why[512] = "";
    if (!a || !due || !di || !errs || !whys) {
        fail = up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
        snprintf(why, sizeof why, "%s", upulsar_last_error());
        goto out;
    }
    for (int i = 0; i < n; i++)
        a[i].delay_ms = (uint64_t)cc->backoff_initial_ms;
    int left = n;
    while (left > 0 && !fail) {
        uint64_t now = up_now_us(), wake = UINT64_MAX;
        int nd = 0;
        for (int i = 0; i < n; i++) {
            if (a[i].over)
                continue;
            if (now >= a[i].next_us) {
                di[nd] = i;
                due[nd++] = rps[i];
            } else if (a[i].next_us < wake) {
                wake = a[i].next_us;
            }
        }
        if (nd == 0) { /* all waiting for their next attempt */
            if (up_cancelled()) {
                fail = up_seterr(UPULSAR_ERR__CLOSED, "stopping");
                snprintf(why, sizeof why, "%s", upulsar_last_error());
                break;
            }
            uint64_t until = wake - now < UP_CANCEL_SLICE_MS * 1000u
                                 ? wake - now
                                 : UP_CANCEL_SLICE_MS * 1000u;
            struct timespec ts = {0, (long)until * 1000L};
            nanosleep(&ts, NULL);
            continue;
        }
        int timeout_ms = cc->operation_timeout_ms;
        if (deadline_us) {
            timeout_ms = deadline_us > now + 1000u ? (int)((deadline_us - now) / 1000u) : 1;
            if (timeout_ms > cc->operation_timeout_ms)
                timeout_ms = cc->operation_timeout_ms;
        }
        up_establish_many(due, nd, timeout_ms, errs, whys);
        now = up_now_us();
        for (int k = 0; k < nd; k++) {
            int i = di[k];
            upulsar_err_t err = errs[k];
            if (!err || fail) {
                a[i].over = true;
                left--;
                continue;
            }
            last = err;
            snprintf(why, sizeof why, "%s", whys[k]);
            /* only what is transient is tried again at creation
             * (up_err_class(): e.g. not the backlog quota's hold) */
            if (up_err_class(err, up_rp_created(rps[i]),
                             h->conf.access_mode != UP_ACCESS_SHARED) != UP_ERR_CLASS_TRANSIENT ||
                now >= deadline_us) {
                fail = err;
                a[i].over = true;
                left--;
                continue;
            }
            a[i].next_us = now + a[i].delay_ms * 1000u;
            a[i].delay_ms = a[i].delay_ms * 2 < (uint64_t)cc->backoff_max_ms
                                ? a[i].delay_ms * 2
                                : (uint64_t)cc->backoff_max_ms;
            if (a[i].next_us >= deadline_us) { /* no time left for another attempt */
                fail = last;
                a[i].over = true;
                left--;
            }
        }
        /* after a failure nothing is tried again: the caller closes the
         * handle (start) or leaves the rest to the supervisor (growth) */
    }
out:
    free(a);
    free(due);
    free(di);
    free(errs);
    free(whys);
    if (fail)
        return up_seterr(fail, "%s", why);
    return UPULSAR_OK;
}

upulsar_err_t up_establish_all(up_rp_t **rps, int n, uint64_t deadline_us,
                               bool cancel_on_failure)
{
    if (n <= 0)
        return UPULSAR_OK;
    struct upulsar_client *c = rps[0]->client;
    struct upulsar_producer *h = rps[0]->handle;
    const struct upulsar_conf *cc = &c->conf;
    /* WaitForExclusive parks a PRODUCER without timeout: the establish
     * workers run those (a parked worker is replaced) */
    if (h->conf.access_mode != UP_ACCESS_WAIT_FOR_EXCLUSIVE)
        return establish_rounds(rps, n, deadline_us);
    struct attempt {
        uint64_t next_us, delay_ms;
        bool over;
    } *a = calloc((size_t)n, sizeof *a);
    if (!a)
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    upulsar_err_t fail = UPULSAR_OK, last = UPULSAR_OK;
    char why[300] = "";
    int left = n;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < n; i++) {
        a[i].delay_ms = (uint64_t)cc->backoff_initial_ms;
        rps[i]->sup.est_deadline_us = deadline_us;
        est_submit_locked(rps[i]);
    }
    while (left > 0) {
        uint64_t now = up_now_us(), wake = now + (uint64_t)WD_PERIOD_MS * 1000u;
        for (int i = 0; i < n; i++) {
            up_rp_t *rp = rps[i];
            if (a[i].over)
                continue;
            int st = atomic_load_explicit(&rp->sup.est_state, memory_order_acquire);
            if (st == UP_EST_BUSY)
                continue;
            if (st == UP_EST_DONE) {
                atomic_store_explicit(&rp->sup.est_state, UP_EST_IDLE, memory_order_relaxed);
                upulsar_err_t err = rp->sup.est_err;
                if (!err || fail) { /* created, or one more attempt ended after a failure */
                    a[i].over = true;
                    left--;
                    continue;
                }
                last = err;
                snprintf(why, sizeof why, "%s", rp->sup.est_why);
                /* only what is transient is tried again at creation
                 * (up_err_class(): e.g. not the backlog quota's hold) */
                if (up_err_class(err, up_rp_created(rp),
                                 h->conf.access_mode != UP_ACCESS_SHARED) !=
                        UP_ERR_CLASS_TRANSIENT ||
                    now >= deadline_us) {
                    fail = err;
                    a[i].over = true;
                    left--;
                    if (cancel_on_failure) {
                        atomic_store(&h->closed, 1);  /* refuses sends */
                        atomic_store(&h->freeing, 1); /* cancels the attempts in flight */
                        up_watchdog_forget(h);       /* and the queued ones */
                    }
                    continue;
                }
                a[i].next_us = now + a[i].delay_ms * 1000u;
                a[i].delay_ms = a[i].delay_ms * 2 < (uint64_t)cc->backoff_max_ms
                                    ? a[i].delay_ms * 2
                                    : (uint64_t)cc->backoff_max_ms;
            }
            /* idle: waiting to be tried again */
            if (fail) {
                a[i].over = true;
                left--;
            } else if (now >= a[i].next_us || now >= deadline_us) {
                if (now >= deadline_us) { /* no time left for another attempt */
                    fail = last;
                    a[i].over = true;
                    left--;
                } else {
                    est_submit_locked(rp);
                }
            } else if (a[i].next_us >= deadline_us) {
                /* its next attempt would come too late: the start can only
                 * fail, so it fails now rather than at the deadline (as
                 * there, attempts in flight end on their own) */
                fail = last;
                a[i].over = true;
                left--;
            } else if (a[i].next_us < wake) {
                wake = a[i].next_us;
            }
        }
        if (left == 0)
            break;
        struct timespec ts = up_deadline_ts(wake);
        pthread_cond_timedwait(&c->wd_cv, &c->lock, &ts);
    }
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < n; i++)
        rps[i]->sup.est_deadline_us = 0;
    free(a);
    if (fail)
        return up_seterr(fail, "%s", why);
    return UPULSAR_OK;
}

/* restart.intensity over UP_RESTART_EXACT_MAX: this restart counted in
 * its slice of the period (1/UP_RESTART_SLICES of it), and the restarts of
 * every slice that overlaps the last period summed: the current one and
 * the UP_RESTART_SLICES before it, so none within the period is missed
 * and one up to a slice older may count. */
static bool over_intensity_sliced(const struct upulsar_conf *cf, up_rp_t *rp, uint64_t now)
{
    const unsigned nslots = UP_RESTART_SLICES + 1;
    uint64_t window = (uint64_t)cf->restart_period_ms * 1000u;
    uint64_t width = window / UP_RESTART_SLICES ? window / UP_RESTART_SLICES : 1;
    uint64_t no = now / width;
    unsigned i = (unsigned)(no % nslots);
    if (rp->sup.slice_no[i] != no) { /* its last use was nslots slices ago */
        rp->sup.slice_no[i] = no;
        rp->sup.slice_n[i] = 0;
    }
    rp->sup.slice_n[i]++;
    uint64_t sum = 0;
    for (unsigned k = 0; k < nslots; k++)
        if (rp->sup.slice_no[k] <= no && no - rp->sup.slice_no[k] <= UP_RESTART_SLICES)
            sum += rp->sup.slice_n[k];
    return sum > (uint64_t)cf->restart_intensity;
}

/* Restart intensity: more than N restarts within the period fails the group. */
static bool over_intensity(const struct upulsar_conf *cf, up_rp_t *rp, uint64_t now)
{
    if (cf->restart_intensity <= 0)
        return false;
    if (cf->restart_intensity > UP_RESTART_EXACT_MAX)
        return over_intensity_sliced(cf, rp, now);
    uint64_t window = (uint64_t)cf->restart_period_ms * 1000u;
    int keep = 0;
    for (int i = 0; i < rp->sup.nrestarts; i++)
        if (now - rp->sup.restart_times[i] <= window)
            rp->sup.restart_times[keep++] = rp->sup.restart_times[i];
    rp->sup.nrestarts = keep;
    if (rp->sup.nrestarts < (int)(sizeof rp->sup.restart_times / sizeof rp->sup.restart_times[0]))
        rp->sup.restart_times[rp->sup.nrestarts++] = now;
    return rp->sup.nrestarts > cf->restart_intensity;
}

/* The result of @p rp's re-creation by a worker (UP_EST_DONE, acquired).
 * Returns false if its group failed. */
static bool est_result(up_group_t *grp, up_rp_t *rp, const struct upulsar_conf *cf,
                       const struct upulsar_conf *cc)
{
    upulsar_err_t err = rp->sup.est_err;
    atomic_store_explicit(&rp->sup.est_state, UP_EST_IDLE, memory_order_relaxed);
    rp->sup.next_attempt_us = 0;
    rp->sup.attempt_failed = err != UPULSAR_OK;
    bool fatal = up_err_class(err, up_rp_created(rp), cf->access_mode != UP_ACCESS_SHARED) ==
                 UP_ERR_CLASS_TERMINAL;
    if (err && err != UPULSAR_ERR__CLOSED)
        up_log_rp(rp, UPULSAR_LOG_WARNING, err, "%s: re-creating producer %s failed: %s: %s%s",
               rp->topic, rp->name[0] ? rp->name : "(unnamed)", upulsar_err_name(err),
               rp->sup.est_why, fatal ? "" : "; retried after backoff");
    else if (!err)
        up_log_rp(rp, UPULSAR_LOG_INFO, UPULSAR_OK, "%s: producer %s re-created", rp->topic, rp->name);
    if (!err) {
        rp->sup.backoff_ms = 0; /* backoff.initial.ms */
        rp->sup.outage_since_us = 0;
        rp->sup.mandatory_stop_made = false;
        return true;
    }
    /* terminal (up_err_class()): the group fails; anything else is retried
     * with backoff */
    if (fatal) {
        char why[UP_DETAIL_TEXT_MAX];
        snprintf(why, sizeof why, "the broker refused to re-create producer %s: %s",
                 rp->name[0] ? rp->name : "(unnamed)", rp->sup.est_why);
        fail_group(grp, err, why);
        return false;
    }
    up_rp_transition(rp, UP_RP_BIT(UP_RP_CONNECTING), UP_RP_BACKOFF,
                     "re-creation failed: retried after backoff");
    if (err == UPULSAR_ERR_PRODUCER_BLOCKED_QUOTA_EXCEEDED_EXCEPTION) {
        /* the backlog quota's producer_exception policy: as the official
         * clients do, what the producer holds fails with the broker's
         * refusal now instead of waiting for send.timeout.ms; the producer
         * is still re-created with backoff (producer_request_hold, the
         * ...Error, keeps the messages waiting) */
        char why[UP_DETAIL_TEXT_MAX];
        snprintf(why, sizeof why, "the broker refused to re-create producer %s: %s",
                 rp->name[0] ? rp->name : "(unnamed)", rp->sup.est_why);
        fail_t f = {rp, err, why};
        up_loop_call(rp->loop, fail_pending_task, &f);
    }
    return true;
}

/* One supervision pass over a handle. Called with c->lock NOT held. */
static void supervise(struct upulsar_producer *h, uint64_t now)
{
    const struct upulsar_conf *cf = &h->conf;         /* producer keys */
    const struct upulsar_conf *cc = &h->client->conf; /* client keys: backoff, timeouts */
    /* nothing happened to its producers since a walk that left none
     * waiting: an idle handle costs no walk */
    if (!atomic_exchange_explicit(&h->wd_dirty, 0, memory_order_acq_rel) && !h->wd_more)
        return;
    h->wd_more = true; /* until a walk goes to its end */
    bool more = false;
    /* the groups as published (growth replaces the array on the poller:
     * the count is stored after the array, so this count fits it) */
    int ngroups = atomic_load_explicit(&h->ngroups, memory_order_acquire);
    up_group_t *groups = atomic_load_explicit(&h->groups, memory_order_acquire);
    for (int g = 0; g < ngroups; g++) {
        up_group_t *grp = &groups[g];
        if (atomic_load(&grp->failed))
            continue;
        upulsar_err_t mf = member_failure(grp);
        if (mf) {
            char why[128];
            snprintf(why, sizeof why, "one of its producers failed with %s",
                     upulsar_err_name(mf));
            fail_group(grp, mf, why);
            continue;
        }
        for (int i = 0; i < grp->nrps; i++) {
            up_rp_t *rp = grp->rps[i];
            if (atomic_load(&h->freeing) || atomic_load(&grp->failed))
                return;
            int est = atomic_load_explicit(&rp->sup.est_state, memory_order_acquire);
            if (est == UP_EST_BUSY) {
                more = true;
                continue; /* a worker has it */
            }
            if (est == UP_EST_DONE && !est_result(grp, rp, cf, cc))
                break;
            up_rp_st_t st = up_rp_st(rp);
            if (!(UP_RP_BIT(st) & UP_RP_IN_BACKOFF))
                continue;
            more = true; /* waiting for its attempt, or handed to a worker below */
            if (rp->sup.next_attempt_us == 0) {
                /* a graceful close (unload, transfer, migration, lazy
                 * start) is taken once: the attempt after it is no restart
                 * (a rolling broker restart must not fail the group); if it
                 * fails, the next ones back off as usual and count. It
                 * comes at once, without advancing the backoff, when the
                 * broker named where the topic went (CLOSE_PRODUCER with
                 * an assigned broker: BACKOFF_NOW; also TOPIC_MIGRATED and
                 * a lazy start); after a CLOSE_PRODUCER naming no new
                 * owner (BACKOFF_GRACEFUL: an unload, a broker shutting
                 * down) it comes after the backoff delay, as the official
                 * clients schedule it (pulsar-client-cpp
                 * HandlerBase::scheduleReconnection: no delay only with an
                 * assigned broker URL) */
                /* ...only after a working producer was closed: a broker that
                 * answers every attempt with a close (a migrated topic's old
                 * cluster) gets backoff, not a loop */
                rp->sup.graceful_next = st != UP_RP_BACKOFF && !rp->sup.attempt_failed;
                rp->sup.next_attempt_us = rp->sup.graceful_next && st == UP_RP_BACKOFF_NOW
                                          ? now
                                          : now + jitter(next_delay_ms(cc, cf, rp, now)) * 1000u;
            }
            if (now < rp->sup.next_attempt_us)
                continue;
            bool counted = !rp->sup.graceful_next;
            rp->sup.graceful_next = false;
            if (counted && over_intensity(cf, rp, now)) {
                up_seterr(UPULSAR_ERR__GROUP_FAILED, "%s: more than %d restarts in %d ms",
                          rp->topic, cf->restart_intensity, cf->restart_period_ms);
                char why[UP_DETAIL_TEXT_MAX];
                bool last = rp->sup.attempt_failed && rp->sup.est_why[0];
                snprintf(why, sizeof why, "more than %d restarts in %d ms%s%s%s",
                         cf->restart_intensity, cf->restart_period_ms,
                         last ? " (last failure: " : "", last ? rp->sup.est_why : "",
                         last ? ")" : "");
                fail_group(grp, UPULSAR_ERR__GROUP_FAILED, why);
                break;
            }
            /* refused when the loop failed it (or a stop closes it) since
             * the state was read: a failed producer is never re-created */
            if (!up_rp_recreating(rp, counted ? "backoff over: re-creating it"
                                              : "re-creating it after a close by the broker"))
                continue;
            est_submit(rp);
        }
    }
    h->wd_more = more;
}


static void *wd_main(void *arg)
{
    struct upulsar_client *c = arg;
    up_thread_set_role(UP_THREAD_WATCHDOG); /* statistics and log callbacks run here */
    pthread_mutex_lock(&c->lock);
    while (!c->wd_stop) {
        if (!c->wd_kicked) {
            struct timespec ts = up_deadline_ts(up_now_us() + WD_PERIOD_MS * 1000u);
            pthread_cond_timedwait(&c->wd_cv, &c->lock, &ts);
        }
        c->wd_kicked = false;
        if (c->wd_stop)
            break;
        /* Handles are only unlinked and freed under c->lock after
         * wd_busy is clear (see upulsar_producer_stop), so walking the list
         * with the lock dropped around each pass is safe. */
        for (struct upulsar_producer *h = c->producers; h; h = h->next) {
            /* a handle being stopped is supervised until its stop's own
             * flush is over (the flush needs its producers re-created) */
            if (atomic_load(&h->freeing))
                continue;
            c->wd_busy = h;
            pthread_mutex_unlock(&c->lock);
            up_cancel_on(&h->freeing); /* stop must not wait behind an attempt */
            supervise(h, up_now_us());
            up_cancel_on(NULL);
            pthread_mutex_lock(&c->lock);
            c->wd_busy = NULL;
            pthread_cond_broadcast(&c->wd_cv);
        }
        { /* statistics when due, and collapsed log lines whose window ended */
            pthread_mutex_unlock(&c->lock);
            up_stats_tick(c, up_now_us());
            pthread_mutex_lock(&c->lock);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* Start one more establish worker. (lock held) */
static int add_worker_locked(struct upulsar_client *c)
{
    if (c->wd_stop || c->nest_threads >= UP_EST_WORKERS_MAX)
        return -1;
    if (c->nest_threads == c->cest_threads) {
        int n = c->cest_threads ? c->cest_threads * 2 : UP_EST_WORKERS;
        pthread_t *nt = realloc(c->est_threads, (size_t)n * sizeof *nt);
        if (!nt)
            return -1;
        c->est_threads = nt;
        c->cest_threads = n;
    }
    if (pthread_create(&c->est_threads[c->nest_threads], NULL, est_main, c))
        return -1;
    c->nest_threads++;
    return 0;
}

void up_watchdog_parked(struct upulsar_client *c, int delta)
{
    pthread_mutex_lock(&c->lock);
    c->est_parked += delta;
    if (delta > 0 && c->nest_threads - c->est_parked < UP_EST_WORKERS)
        add_worker_locked(c); /* on failure the others carry on */
    pthread_mutex_unlock(&c->lock);
}

static void join_workers(struct upulsar_client *c)
{
    pthread_mutex_lock(&c->lock);
    c->wd_stop = true; /* no worker is added from now */
    pthread_cond_broadcast(&c->est_cv);
    pthread_cond_broadcast(&c->wd_cv);
    int n = c->nest_threads;
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < n; i++)
        pthread_join(c->est_threads[i], NULL);
    free(c->est_threads);
    c->est_threads = NULL;
    c->nest_threads = c->cest_threads = 0;
}

int up_watchdog_start(struct upulsar_client *c)
{
    if (pthread_cond_init(&c->est_cv, NULL))
        return -1;
    pthread_mutex_lock(&c->lock);
    int ok = 1;
    while (ok && c->nest_threads < UP_EST_WORKERS)
        ok = add_worker_locked(c) == 0;
    pthread_mutex_unlock(&c->lock);
    if (!ok || pthread_create(&c->watchdog, NULL, wd_main, c)) {
        join_workers(c);
        pthread_cond_destroy(&c->est_cv);
        return -1;
    }
    if (up_poller_start(c)) {
        join_workers(c);
        pthread_join(c->watchdog, NULL);
        pthread_cond_destroy(&c->est_cv);
        return -1;
    }
    return 0;
}

void up_watchdog_stop(struct upulsar_client *c)
{
    join_workers(c); /* sets wd_stop, which ends the watchdog too */
    pthread_join(c->watchdog, NULL);
    up_poller_stop(c);
    pthread_cond_destroy(&c->est_cv);
}
