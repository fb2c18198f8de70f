/* uring_loop.c -- the io loop thread: tasks, ring draining, socket
 * completions, sleeping and waking. Socket I/O goes through the client's
 * backend (io_backend.h: io_uring.c or io_epoll.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine.h"
#include "err.h"
#include "fault.h"
#include "io_backend.h"

#define TICK_US 10000u

_Atomic int up_fault_loop_sleep_on;

static _Thread_local up_loop_t *current_loop;

bool up_loop_is_current(const up_loop_t *l) { return current_loop == l; }

static void wake_force(up_loop_t *l)
{
    if (!atomic_exchange_explicit(&l->wake_pending, 1, memory_order_seq_cst)) {
        uint64_t one = 1;
        ssize_t w = write(l->efd, &one, sizeof one);
        (void)w;
    }
}

void up_loop_wake(up_loop_t *l)
{
    /* with a write outstanding there is nothing to do, and no locked write
     * to the line every send reads `sleeping` from (each caller would
     * otherwise take it in turn while the loop sleeps). A 1 read here is
     * never stale: the loop stores 0 before its seq_cst store of
     * `sleeping`, so a caller that reads that store (seq_cst, an acquire)
     * reads the 0 or a later write. */
    if (atomic_load_explicit(&l->sleeping, memory_order_seq_cst) != UP_AWAKE &&
        !atomic_load_explicit(&l->wake_pending, memory_order_relaxed))
        wake_force(l);
}

int up_loop_post(up_loop_t *l, void (*fn)(void *), void *arg)
{
    up_task_t *t = malloc(sizeof *t);
    if (!t)
        return -1;
    t->fn = fn;
    t->arg = arg;
    t->next = NULL;
    pthread_mutex_lock(&l->task_lock);
    if (l->tasks_tail)
        l->tasks_tail->next = t;
    else
        l->tasks = t;
    l->tasks_tail = t;
    atomic_store(&l->has_tasks, 1);
    pthread_mutex_unlock(&l->task_lock);
    wake_force(l);
    return 0;
}

typedef struct {
    void (*fn)(void *);
    void *arg;
    bool done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} call_t;

static void call_trampoline(void *a)
{
    call_t *c = a;
    c->fn(c->arg);
    pthread_mutex_lock(&c->mu);
    c->done = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

int up_loop_call(up_loop_t *l, void (*fn)(void *), void *arg)
{
    if (up_loop_is_current(l)) {
        fn(arg);
        return 0;
    }
    call_t c = {.fn = fn, .arg = arg};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    if (up_loop_post(l, call_trampoline, &c)) {
        pthread_mutex_destroy(&c.mu);
        pthread_cond_destroy(&c.cv);
        return -1;
    }
    pthread_mutex_lock(&c.mu);
    while (!c.done)
        pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    pthread_mutex_destroy(&c.mu);
    pthread_cond_destroy(&c.cv);
    return 0;
}

static void run_tasks(up_loop_t *l)
{
    if (!atomic_load_explicit(&l->has_tasks, memory_order_acquire))
        return;
    pthread_mutex_lock(&l->task_lock);
    up_task_t *t = l->tasks;
    l->tasks = l->tasks_tail = NULL;
    atomic_store(&l->has_tasks, 0);
    pthread_mutex_unlock(&l->task_lock);
    while (t) {
        up_task_t *next = t->next;
        t->fn(t->arg);
        free(t);
        t = next;
    }
}

static up_wait_t work_waiting(up_loop_t *l)
{
    if (atomic_load_explicit(&l->has_tasks, memory_order_relaxed))
        return UP_WAIT_WORK;
    return up_loop_active_waiting(l); /* activity.c */
}

bool up_loop_add_conn(up_loop_t *l, up_conn_t *c)
{
    if (l->nconns == l->cconns) {
        size_t n = l->cconns ? l->cconns * 2 : 8;
        up_conn_t **nc = realloc(l->conns, n * sizeof *nc);
        if (!nc)
            return false;
        l->conns = nc;
        l->cconns = n;
    }
    l->conns[l->nconns++] = c;
    return true;
}

/* ---- its producers ------------------------------------------------------- */

_Atomic int up_fault_loop_list_nomem;

bool up_loop_add_rp(up_loop_t *l, up_rp_t *rp)
{
    if (l->nrps == l->crps) {
        size_t n = l->crps ? l->crps * 2 : 16;
        up_rp_t **nr =
            up_fault_hit(&up_fault_loop_list_nomem) ? NULL : realloc(l->rps, n * sizeof *nr);
        if (!nr)
            return false;
        l->rps = nr;
        l->crps = n;
    }
    rp->loop_pos = l->nrps;
    l->rps[l->nrps++] = rp;
    return true;
}

void up_loop_remove_rp(up_loop_t *l, up_rp_t *rp)
{
    size_t i = rp->loop_pos;
    if (i >= l->nrps || l->rps[i] != rp)
        return; /* never added (its registration failed) */
    up_rp_t *last = l->rps[--l->nrps];
    l->rps[i] = last;
    last->loop_pos = i;
    rp->loop_pos = SIZE_MAX;
}

_Atomic int up_fault_tick_purge_off;

static void tick(up_loop_t *l, uint64_t now)
{
    for (size_t i = 0; i < l->nconns; i++)
        up_conn_tick(l->conns[i], now);
    up_loop_tick_active(l, now); /* the active producers only (activity.c) */
    /* what timed out there is not written after that, and a connection
     * that writes nothing (a broker that stopped reading) gives its memory
     * back */
    if (!atomic_load_explicit(&up_fault_tick_purge_off, memory_order_relaxed))
        for (size_t i = 0; i < l->nconns; i++)
            up_conn_purge_resolved(l->conns[i]);
    /* batches that stayed in the pool since the last trim are not needed */
    if (now - l->pool_trim_us >= UP_POOL_TRIM_US) {
        up_batch_pool_trim(l);
        l->pool_trim_us = now;
    }
    /* drop dead connections once their operations have completed */
    for (size_t i = 0; i < l->nconns;) {
        up_conn_t *c = l->conns[i];
        if (atomic_load(&c->state) == UP_CONN_DEAD && !c->recv_inflight && !c->send_inflight) {
            l->conns[i] = l->conns[--l->nconns];
            l->io->detach(c);
            up_conn_unref(c);
        } else {
            i++;
        }
    }
}

static void *loop_main(void *arg)
{
    up_loop_t *l = arg;
    const up_io_ops_t *io = l->io;
    current_loop = l;
    up_thread_set_role(UP_THREAD_LOOP); /* callbacks run here (see err.h) */
    /* batch windows and receipts wake this thread at a deadline: without
     * this the kernel may let its sleeps run up to 50 us late (the default
     * timer slack), which a 1 ms linger shows in its p99 */
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    io->start(l);
    while (!l->stop) {
        run_tasks(l);
        if (l->stop)
            break;
        uint64_t now = up_now_us();
        uint64_t deadline = UINT64_MAX;
        bool busy = up_loop_pump_active(l, now, &deadline); /* activity.c */
        for (size_t i = 0; i < l->nconns; i++)
            up_conn_flush(l->conns[i]);
        if (now - l->last_tick_us >= TICK_US) {
            tick(l, now);
            l->last_tick_us = now;
        }
        io->poll(l);
        if (busy)
            continue;

        /* Going to sleep. Callers load `sleeping` after their reservation's
         * seq_cst CAS on a ring's head; we store `sleeping`, fence, then look
         * at the rings' heads again, so one of the two sees the other
         * (ring.h R6; the fence also orders the store before the loads of
         * has_tasks and flush_req, which their writers store seq_cst). */
        int mode = deadline == UINT64_MAX ? UP_SLEEP_IDLE : UP_SLEEP_TIMED;
        atomic_store_explicit(&l->sleeping, mode, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
        up_wait_t w = work_waiting(l);
        if (w == UP_WAIT_WORK) {
            atomic_store_explicit(&l->sleeping, UP_AWAKE, memory_order_relaxed);
            continue;
        }
        /* from the time now, not the pass's start (the pass took some);
         * the producers' deadlines already allow for the wake-up delay
         * (drain.c), which each sleep toward one teaches (unless the
         * backend's timeouts are coarse: they say nothing of it) */
        uint64_t t0 = up_now_us(), wait_us = TICK_US;
        if (deadline == UINT64_MAX && atomic_load_explicit(&up_fault_loop_sleep_on,
                                                           memory_order_relaxed) > 0)
            wait_us = UINT64_C(3600000000);
        bool timed = false;
        if (deadline != UINT64_MAX) {
            uint64_t d = deadline > t0 ? deadline - t0 : 0;
            if (d <= TICK_US) {
                wait_us = d;
                timed = !l->wait_coarse;
            }
        }
        /* A record reserved and not committed yet: its caller, once it
         * commits, loads `sleeping` and wakes us, unless that load was
         * satisfied before our store (x86: while the commit still sat in
         * its store buffer), so look again soon. A caller preempted before
         * its commit keeps the record uncommitted for longer: the naps
         * double, up to a tick, until a look finds something else. */
        if (w == UP_WAIT_RESERVED) {
            uint64_t nap = l->nap_us ? l->nap_us : UP_LOOP_RESERVED_US;
            if (wait_us > nap) {
                wait_us = nap;
                timed = false;
            }
            l->nap_us = nap * 2 < TICK_US ? nap * 2 : TICK_US;
            atomic_fetch_add_explicit(&l->reserved_naps, 1, memory_order_relaxed);
        } else {
            l->nap_us = 0;
        }
        if (wait_us > 0) {
            io->wait(l, wait_us);
            uint64_t t1 = up_now_us();
            if (timed && t1 > deadline) /* an event that ended it early says nothing */
                l->wake_ahead_us = up_wake_ahead_learn(l->wake_ahead_us, t1 - deadline);
        }
        atomic_store_explicit(&l->sleeping, UP_AWAKE, memory_order_relaxed);
        io->reap(l);
    }
    current_loop = NULL;
    return NULL;
}

upulsar_err_t up_loop_start(up_loop_t *l, struct upulsar_client *c, int index,
                            const up_io_ops_t *io)
{
    memset(l, 0, sizeof *l);
    l->io = io;
    l->epfd = -1;
    l->client = c;
    l->index = index;
    l->wake_op.type = UP_OP_WAKE;
    /* the batch pool: up to half of the memory budget over the loops, at
     * least 1 MiB, at most 32 MiB */
    int64_t lim = c->conf.memory_limit_bytes, per = lim / 2 / (c->nloops > 0 ? c->nloops : 1);
    const int64_t pmin = 1 << 20, pmax = 32 << 20;
    l->pool_max = (size_t)(lim <= 0 || per > pmax ? pmax : per < pmin ? pmin : per);
    l->pool_trim_us = up_now_us();
    l->efd = eventfd(0, EFD_CLOEXEC);
    if (l->efd < 0)
        return up_seterr(UPULSAR_ERR__IO, "eventfd: %s", strerror(errno));
    if (io->init(l) < 0) { /* upulsar_last_error() says why */
        close(l->efd);
        return UPULSAR_ERR__IO;
    }
    pthread_mutex_init(&l->task_lock, NULL);
    if (pthread_create(&l->thread, NULL, loop_main, l)) {
        io->destroy(l);
        pthread_mutex_destroy(&l->task_lock);
        close(l->efd);
        return up_seterr(UPULSAR_ERR__IO, "cannot start the io thread");
    }
    return 0;
}

static void stop_task(void *arg) { ((up_loop_t *)arg)->stop = true; }

void up_loop_stop(up_loop_t *l)
{
    up_loop_post(l, stop_task, l);
    pthread_join(l->thread, NULL);
    run_tasks(l); /* anything posted after the stop: run it here */
    for (size_t i = 0; i < l->nconns; i++)
        up_conn_unref(l->conns[i]);
    up_batch_pool_free(l); /* after the connections: their queues retire batches */
    free(l->conns);
    free(l->rps);
    l->io->destroy(l);
    close(l->efd);
    pthread_mutex_destroy(&l->task_lock);
}
