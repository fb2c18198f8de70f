/* activity.c -- which producers a loop visits. A loop visits only its
 * active producers: those with records in their ring, open or pending
 * batches, or a flush asked. A caller that commits a record to an idle
 * producer puts it on the loop's act_in stack (one exchange and one push
 * per idle -> active change, a load otherwise); the loop moves it to its
 * list, drains it, times it out, and takes it off the list at a tick that
 * finds nothing pending.
 *
 * Taking a producer off needs the sleep handshake's pairing (ring.h R6):
 * a caller reserves (a seq_cst CAS on head), commits (R1), then reads
 * `act`; the tick stores act = 0, fences, then loads head again. One of
 * the two sees the other, so a record is never left in an idle producer's
 * ring. The fields written here are the loop's act_in / act_head /
 * act_tail / nact and each producer's act / act_in_next / act_prev /
 * act_next / act_listed (loop.h, rp.h). up_rp_activate() runs on any
 * thread, everything else on the loop. */
#include "fault.h"
#include "producer_int.h"

static void act_append(up_loop_t *l, up_rp_t *rp)
{
    if (rp->act_listed)
        return;
    rp->act_next = NULL;
    rp->act_prev = l->act_tail;
    if (l->act_tail)
        l->act_tail->act_next = rp;
    else
        l->act_head = rp;
    l->act_tail = rp;
    rp->act_listed = true;
    l->nact++;
}

static void act_unlink(up_loop_t *l, up_rp_t *rp)
{
    if (!rp->act_listed)
        return;
    if (rp->act_prev)
        rp->act_prev->act_next = rp->act_next;
    else
        l->act_head = rp->act_next;
    if (rp->act_next)
        rp->act_next->act_prev = rp->act_prev;
    else
        l->act_tail = rp->act_prev;
    rp->act_prev = rp->act_next = NULL;
    rp->act_listed = false;
    l->nact--;
}

_Atomic int up_fault_tick_idle_pause;

/* Busy for @p us microseconds (fault.h up_fault_tick_idle_pause). */
static void spin_us(uint64_t us)
{
    uint64_t end = up_now_us() + us;
    while (up_now_us() < end)
        ;
}

void up_rp_activate(up_rp_t *rp)
{
    /* seq_cst: a flush request's store of flush_req comes before it, the
     * tick's act = 0 and fence before its look at flush_req (R6) */
    if (atomic_exchange_explicit(&rp->act, 1, memory_order_seq_cst))
        return; /* listed, or queued for the loop already */
    up_loop_t *l = rp->loop;
    up_rp_t *top = atomic_load_explicit(&l->act_in, memory_order_relaxed);
    do
        rp->act_in_next = top;
    while (!atomic_compare_exchange_weak_explicit(&l->act_in, &top, rp, memory_order_release,
                                                  memory_order_relaxed));
    /* the push before the caller reads the loop's `sleeping` (the loop
     * stores `sleeping`, fences, then reads act_in) */
    atomic_thread_fence(memory_order_seq_cst);
}

/* Move the producers callers activated onto the list. (loop) */
static void act_take(up_loop_t *l)
{
    if (!atomic_load_explicit(&l->act_in, memory_order_relaxed))
        return;
    up_rp_t *rp = atomic_exchange_explicit(&l->act_in, NULL, memory_order_acquire);
    while (rp) {
        up_rp_t *next = rp->act_in_next;
        rp->act_in_next = NULL;
        act_append(l, rp);
        rp = next;
    }
}

bool up_loop_pump_active(up_loop_t *l, uint64_t now, uint64_t *deadline)
{
    act_take(l);
    bool busy = false;
    for (up_rp_t *rp = l->act_head, *next; rp; rp = next) {
        next = rp->act_next;
        busy |= up_rp_pump(rp, now, deadline);
    }
    return busy;
}

up_wait_t up_loop_active_waiting(up_loop_t *l)
{
    if (atomic_load_explicit(&l->act_in, memory_order_seq_cst))
        return UP_WAIT_WORK;
    up_wait_t w = UP_WAIT_NONE;
    for (up_rp_t *rp = l->act_head; rp; rp = rp->act_next) {
        if (rp->holding)
            continue;
        if (up_ring_peek(&rp->ring) || atomic_load(&rp->flush_req))
            return UP_WAIT_WORK;
        if (up_ring_nonempty(&rp->ring))
            w = UP_WAIT_RESERVED;
    }
    return w;
}

/* Work the loop still has for @p rp (reserved records count: their commit
 * follows). */
static bool has_work(up_rp_t *rp)
{
    return rp->open || rp->pend_head || up_ring_nonempty(&rp->ring) ||
           atomic_load_explicit(&rp->flush_req, memory_order_relaxed);
}

void up_loop_tick_active(up_loop_t *l, uint64_t now)
{
    act_take(l);
    up_rp_t *idle = NULL;
    for (up_rp_t *rp = l->act_head, *next; rp; rp = next) {
        next = rp->act_next;
        up_rp_check_timeouts(rp, now);
        if (has_work(rp))
            continue;
        up_rp_mem_idle(rp); /* the rest of its ring's budget unit */
        /* an idle ring gives its pages back queue.idle.release.ms after it
         * last needed them: the producer stays listed until it has */
        uint64_t rel = (uint64_t)rp_conf(rp)->queue_idle_release_ms * 1000u;
        if (!up_ring_peek(&rp->ring))
            up_rp_mem_rest_back(rp, up_ring_idle(&rp->ring, now, rel));
        if (rel && atomic_load_explicit(&rp->ring.touched, memory_order_relaxed) > rp->ring.home)
            continue;
        act_unlink(l, rp);
        if (atomic_load_explicit(&up_fault_tick_idle_pause, memory_order_relaxed) > 0)
            spin_us(50);
        /* release: a caller that queues it again (acquire exchange) sees
         * the loop done with its links */
        atomic_store_explicit(&rp->act, 0, memory_order_release);
        rp->act_next = idle; /* a list of its own until looked at again */
        idle = rp;
    }
    if (!idle)
        return;
    /* act = 0 before has_work()'s load of head (ring.h R6) */
    atomic_thread_fence(memory_order_seq_cst);
    for (up_rp_t *rp = idle, *next; rp; rp = next) {
        next = rp->act_next;
        rp->act_next = NULL;
        if (has_work(rp)) {
            /* a record committed meanwhile whose caller saw act == 1:
             * listed again here, unless it has queued itself since */
            if (!atomic_exchange_explicit(&rp->act, 1, memory_order_acq_rel))
                act_append(l, rp);
        } else {
            /* everything it took is resolved: a flush of it has nothing to
             * wait for */
            atomic_store_explicit(&rp->resolved_ring_pos, rp->ring.ctail, memory_order_release);
        }
    }
}

void up_loop_forget_active(up_rp_t *rp)
{
    /* act stays 1: callers never queue it again */
    atomic_store_explicit(&rp->act, 1, memory_order_seq_cst);
    act_take(rp->loop); /* it may be queued */
    act_unlink(rp->loop, rp);
}
