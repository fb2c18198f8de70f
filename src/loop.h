/* loop.h -- an event loop (uring_loop.c): one thread, its connections'
 * socket I/O through a backend (io_backend.h: io_uring.c or io_epoll.c),
 * the tasks other threads post to it, and its producers. Fields say which
 * thread may touch them: (any), (task_lock) or (loop), the loop's own
 * thread; each function says which thread may call it (@thread).
 * @internal */
#ifndef UP_LOOP_H
#define UP_LOOP_H
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upulsar/upulsar.h"

typedef struct up_loop up_loop_t;
typedef struct up_conn up_conn_t;
typedef struct up_rp up_rp_t;
typedef struct up_batch up_batch_t;
struct up_io_ops;
struct epoll_event;

typedef struct up_task {
    void (*fn)(void *arg);
    void *arg;
    struct up_task *next;
} up_task_t;

enum { UP_OP_RECV = 1, UP_OP_SEND, UP_OP_WAKE };

typedef struct up_op {
    int type;
    up_conn_t *conn;
} up_op_t;

enum { UP_AWAKE = 0, UP_SLEEP_IDLE = 1, UP_SLEEP_TIMED = 2 };

/* What the loop finds when it looks again before sleeping (ring.h R6):
 * nothing, work to do now, or only records reserved and not committed yet
 * (their callers may not wake it: it naps, UP_LOOP_RESERVED_US at first). */
typedef enum { UP_WAIT_NONE = 0, UP_WAIT_WORK, UP_WAIT_RESERVED } up_wait_t;
#define UP_LOOP_RESERVED_US 20u

struct up_loop {
    const struct up_io_ops *io; /* its backend (io_backend.h), the client's */
    struct io_uring uring;      /* io_uring backend (io_uring.c) */
    pthread_t thread;
    int index;
    struct upulsar_client *client;
    int efd;
    uint64_t efd_val;
    up_op_t wake_op;
    /* epoll backend (io_epoll.c), (loop): the epoll instance, events of
     * the last wait not yet handled, and the connections with an operation
     * that can run now (linked by up_conn.ep_next) */
    int epfd;
    bool ep_pwait2;             /* epoll_pwait2 works: timeouts in microseconds */
    int ep_nev;
    struct epoll_event *ep_ev;
    up_conn_t *ep_ready, *ep_ready_tail;
    _Atomic int sleeping;     /* (any) UP_SLEEP_* while waiting for CQEs */
    _Atomic int wake_pending; /* (any) an eventfd write is outstanding */
    pthread_mutex_t task_lock;
    up_task_t *tasks, *tasks_tail; /* (task_lock) */
    _Atomic int has_tasks;
    /* (loop) */
    up_conn_t **conns;     /* up_loop_add_conn(); dead ones dropped by the tick */
    size_t nconns, cconns;
    up_rp_t **rps;         /* its producers: up_loop_add_rp() /
                              up_loop_remove_rp() only (each producer keeps
                              its index, up_rp.loop_pos) */
    size_t nrps, crps;
    /* Producers with something to do, written only by activity.c's
     * activity functions (up_rp_activate(), up_loop_pump_active(),
     * up_loop_tick_active(), up_loop_forget_active()): the loop drains,
     * times out and looks before sleeping at these only, so an idle
     * producer costs it nothing. act_in (any): producers a caller activated
     * (up_rp_activate()), a lock-free stack the loop empties into its list;
     * act_head/act_tail (loop): that list, linked by act_prev/act_next. */
    up_rp_t *_Atomic act_in;
    up_rp_t *act_head, *act_tail;
    size_t nact;
    bool stop;
    uint64_t last_tick_us;
    /* (loop) how late its sleeps toward a batch deadline end, as learnt
     * from the last ones (up to UP_WAKE_AHEAD_MAX_US): the pump (drain.c)
     * takes a deadline that close (at most half its delay) as reached and
     * has the loop sleep until then, so a batch leaves by its deadline
     * instead of a wake-up after it. wait_coarse (the backend's, set before
     * the loop runs or by the loop): its timeouts are rounded to
     * milliseconds, so sleeps teach nothing. */
    uint64_t wake_ahead_us;
    bool wait_coarse;
    /* (loop; read by tests) sleeps cut short (to nap_us) because a record
     * was reserved and not committed when the loop last looked; nap_us
     * (loop): the next such nap, UP_LOOP_RESERVED_US (0) doubling while
     * looks find only such records */
    _Atomic uint64_t reserved_naps;
    uint64_t nap_us;
    /* (loop) free batches of every producer of this loop: a retired batch
     * goes here while the pool holds at most pool_max bytes (buffers
     * included), else it is freed; every UP_POOL_TRIM_US the tick frees
     * what stayed unused the whole time (pool_low) above UP_POOL_FLOOR.
     * Freed with the loop. pool, pool_bytes, pool_low and pool_bytes_pub
     * are written only by the pool's functions in batcher.c (up_batch_get,
     * up_batch_pool_trim, up_batch_pool_free and the retire path);
     * pool_max (set at up_loop_start()) and pool_trim_us (the tick's
     * schedule of the trim) only by this loop module. */
    up_batch_t *pool;
    size_t pool_bytes, pool_low, pool_max;
    uint64_t pool_trim_us;
    _Atomic uint64_t pool_bytes_pub; /* (any) pool_bytes, for statistics */
    /* (loop) the second buffer a batch needs only while it is compressed
     * and framed (batcher.c, up_batch_close): one kept here for the next
     * batch to close while the pool has room (pool_max and the budget),
     * counted in pool_bytes; freed by the pool's trim when no close took it
     * since the last, and with the pool */
    uint8_t *spare;
    size_t spare_cap;
    bool spare_taken; /* since the pool's last trim, which frees an idle one */
};

/** Run @p fn(arg) on the loop thread, asynchronously. 0 or -1 (NOMEM).
 *  @thread any */
int up_loop_post(up_loop_t *l, void (*fn)(void *), void *arg);
/** Run @p fn(arg) on the loop thread and wait for it to return. Called from
 *  the loop thread itself, runs it inline. @thread any */
int up_loop_call(up_loop_t *l, void (*fn)(void *), void *arg);
/** Wake the loop if it sleeps. @thread any */
void up_loop_wake(up_loop_t *l);
/** Start loop @p index of @p c on backend @p io (io_backend.h). UPULSAR_OK,
 *  or IO with upulsar_last_error() saying why. @thread application
 *  (client creation) */
upulsar_err_t up_loop_start(up_loop_t *l, struct upulsar_client *c, int index,
                            const struct up_io_ops *io);
/** Stop the loop thread and wait for it to end. @thread application
 *  (client destroy), never the loop itself */
void up_loop_stop(up_loop_t *l);
/** Whether the calling thread is @p l's loop thread. @thread any */
bool up_loop_is_current(const up_loop_t *l);
/** Take @p c (a reference the caller gives) into @p l's connections: the
 *  tick keeps it alive and drops it, with that reference, once it is dead
 *  and nothing is in flight on it. False when out of memory (nothing
 *  taken). @thread loop */
bool up_loop_add_conn(up_loop_t *l, up_conn_t *c);
/** Add @p rp to @p l's producers (its index kept in rp->loop_pos): false
 *  when out of memory (@p rp is then not added). (uring_loop.c) @thread
 *  loop */
bool up_loop_add_rp(up_loop_t *l, up_rp_t *rp);
/** Take @p rp off @p l's producers in O(1) (the last one takes its place);
 *  nothing when it is not on them. (uring_loop.c) @thread loop */
void up_loop_remove_rp(up_loop_t *l, up_rp_t *rp);
/* The most a batch deadline is taken early for the loop's wake-up delay. */
#define UP_WAKE_AHEAD_MAX_US 100u

/** The loop's wake-up delay estimate @p est after a sleep aimed at a
 *  deadline ended @p late microseconds past it (the timer's and the
 *  scheduler's delay): up by a quarter of the gap, down by a 32nd, so it
 *  follows the upper part of the delays seen and one slow wake-up moves it
 *  little for long; a delay over UP_WAKE_AHEAD_MAX_US counts as that.
 *  Pure. */
static inline uint64_t up_wake_ahead_learn(uint64_t est, uint64_t late)
{
    if (late > UP_WAKE_AHEAD_MAX_US)
        late = UP_WAKE_AHEAD_MAX_US;
    if (late > est)
        return est + (late - est + 3) / 4;
    return est - (est - late) / 32;
}

/** How long before a deadline of a window of @p delay_us the pump takes it
 *  as reached (and has the loop wake): the wake-up delay estimate @p est,
 *  at most half the delay, so a window opened (or renewed) at any time is
 *  reached at least half its delay later: the loop sleeps toward it and
 *  never wakes again and again for it. Pure. */
static inline uint64_t up_deadline_ahead(uint64_t est, uint64_t delay_us)
{
    return est < delay_us / 2 ? est : delay_us / 2;
}

#endif
