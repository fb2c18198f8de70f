/* client.h -- the client (upulsar_client_t, client.c): its loops, future
 * pool, connection pool (conn_pool.c), producer handles, watchdog and
 * establish workers (watchdog.c), memory budget and log callback (log.c).
 * Each function says which thread may call it.
 * @internal */
#ifndef UP_CLIENT_H
#define UP_CLIENT_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "future.h"
#include "loop.h"
#include "upulsar/upulsar.h"

typedef struct up_loop up_loop_t;
typedef struct up_conn up_conn_t;
typedef struct up_rp up_rp_t;
typedef struct up_batch up_batch_t;
struct up_dial;
struct ssl_ctx_st;

/* Threads that re-create producers for the watchdog (per client): this many
 * brokers can hang at once before a healthy one's producers wait. A worker
 * parked in a WaitForExclusive wait (which has no timeout) does not count:
 * another is started in its place, up to UP_EST_WORKERS_MAX in all. */
#define UP_EST_WORKERS 4
#define UP_EST_WORKERS_MAX 1024

#define UP_MAX_SERVICE_HOSTS 16

struct upulsar_client {
    struct upulsar_conf conf;
    char host[256]; /* the first service host (see svc_*) */
    int port;
    /* every host of the service URL; lookups go to svc_cur's, which moves
     * on when it cannot be reached (immutable but svc_cur) */
    char svc_hosts[UP_MAX_SERVICE_HOSTS][256];
    int svc_ports[UP_MAX_SERVICE_HOSTS];
    int nsvc;
    _Atomic int svc_cur;
    up_loop_t *loops;
    int nloops;
    /* the io backend every loop uses (io.backend, chosen at creation), why
     * it was chosen, and whether that was logged (once, at the first
     * connection: up_client_log_backend()) */
    const struct up_io_ops *io;
    /* last seen from any broker; read by every send, so kept among fields
     * that are rarely written, away from the budget's counters and the
     * future pool, which other threads write all the time */
    _Atomic int32_t max_message_size;
    char io_why[512];
    _Atomic int io_logged;
    up_future_pool_t futures;
    pthread_mutex_t pool_lock; /* connection pool */
    pthread_cond_t pool_cv;    /* a dial finished */
    up_conn_t **pool;
    size_t npool, cpool;
    struct up_dial *dials;     /* connections being opened (pool_lock) */
    /* connections added to the pool, taken out of it (lost or closed),
     * and closed by connection.idle.timeout.ms (statistics) */
    _Atomic uint64_t conns_opened, conns_closed, conns_idle_closed;
    _Atomic uint64_t next_producer_id;
    _Atomic uint64_t next_request_id;
    pthread_mutex_t lock; /* producers list, watchdog wake */
    pthread_cond_t wd_cv;
    struct upulsar_producer *producers;
    pthread_t watchdog;
    bool wd_stop;
    bool wd_kicked;
    struct upulsar_producer *wd_busy; /* handle being supervised (lock) */
    /* the partition poller (partition_poll.c), ended with the watchdog
     * (wd_stop) */
    pthread_t poller;
    pthread_cond_t poll_cv;             /* its sleep; stop wakes it (lock) */
    struct upulsar_producer *poll_busy; /* handle it asks about (lock) */
    int stopping; /* (lock) stops claimed and not yet done freeing their
                     handle; client destroy waits for them (wd_cv) */
    /* establish workers (watchdog.c): re-create producers in parallel, so a
     * hung broker delays only the producers that live on it */
    pthread_t *est_threads;           /* (lock) */
    int nest_threads, cest_threads;   /* (lock) */
    int est_parked;                   /* workers in a WaitForExclusive wait (lock) */
    pthread_cond_t est_cv;            /* work queued or stop (lock) */
    up_rp_t *est_head, *est_tail;     /* queue (lock) */
    /* memory.limit.bytes: bytes the producers took from the budget (their
     * counted messages and the rests of their rings' units, send.c), never
     * above the budget
     * but for a message larger than the whole budget taken alone; and the
     * highest value it had */
    _Atomic int64_t mem_used;
    _Atomic int64_t mem_peak;
    /* real producers created and not yet freed (up_rp_new / up_rp_free):
     * what a new handle's ring size is shared over (up_rp_ring_bytes) */
    _Atomic int64_t nrps;
    bool tls;                          /* pulsar+ssl:// service URL */
    struct ssl_ctx_st *ssl_ctx;        /* shared by the client's TLS connections */
    upulsar_stats_cb_t stats_cb;       /* (lock) */
    pthread_mutex_t log_lock;          /* log_cb, log_rcb, log_opaque, log_fold */
    upulsar_log_cb_t log_cb;
    upulsar_log_record_cb_t log_rcb;   /* replaces log_cb when set */
    void *log_opaque;
    _Atomic int log_level;             /* most verbose level delivered, 0 = INFO */
    struct up_log_fold *log_fold;      /* repeated lines being collapsed (log.c) */
    void *stats_opaque;
    uint64_t stats_next_us;            /* (watchdog) */
    /* ---- upulsar_producer_start_async() (partitioned_start.c) ---- */
    struct up_start_job *starts; /* (lock) starts under way, or ended and not yet joined */
    bool starts_closed;          /* (lock) client destroy has begun: no new start */
};

/* watchdog.c */
/** Wake the watchdog for a pass now. @thread any */
void up_watchdog_kick(struct upulsar_client *c);
/** Make the calling thread's blocking network waits (TCP connect, handshake,
 *  requests: conn_dial.c, conn_request.c) give up with UPULSAR_ERR__CLOSED
 *  within a few milliseconds once *@p flag is non-zero; NULL (the default)
 *  = never. The watchdog points it at the closed flag of the handle it
 *  works on, so upulsar_producer_stop() never waits behind a reconnect attempt.
 *  @thread any (sets the calling thread's) */
void up_cancel_on(const _Atomic int *flag);
/** Whether the calling thread's waits are cancelled now. @thread any */
bool up_cancelled(void);
/** Start the watchdog thread (and the first establish workers): 0, or -1
 *  when it cannot be started. @thread application (client creation) */
int up_watchdog_start(struct upulsar_client *c);
/* partition_poll.c */
/** Start the partition poller thread: 0, or -1. @thread application
 *  (client creation, from up_watchdog_start) */
int up_poller_start(struct upulsar_client *c);
/** Stop it (sets wd_stop) and wait for it. @thread application (client
 *  destroy, from up_watchdog_stop) */
void up_poller_stop(struct upulsar_client *c);

/** Stop the watchdog and the establish workers, waiting for them.
 *  @thread application (client destroy) */
void up_watchdog_stop(struct upulsar_client *c);
/** Take @p h's producers that wait in the establish queue out of it (their
 *  handle is being freed; running attempts are cancelled through h->freeing).
 *  @thread any, holding the client lock */
void up_watchdog_forget(struct upulsar_producer *h);
/** The calling thread starts (+1) or ends (-1) a wait without timeout for a
 *  WaitForExclusive grant; while parked it is not counted as an establish
 *  worker, and a new one is started if fewer than UP_EST_WORKERS remain.
 *  @thread establish worker (or the caller running a start's attempt) */
void up_watchdog_parked(struct upulsar_client *c, int delta);
/** Create the @p n producers @p rps (of one handle, not yet supervised by
 *  the watchdog) on the establish workers, in parallel; an attempt that
 *  fails with a retriable error is tried again (backoff.* delays) while
 *  @p deadline_us has not passed (0: one attempt each, bounded by
 *  operation.timeout.ms). Returns OK once all are created, else the
 *  first non-retriable error or, once the deadline passed, the last error
 *  (upulsar_last_error() says which producer and why). Returns only after
 *  every attempt has ended; with @p cancel_on_failure the handle is marked
 *  closed at the first non-retriable error, which cancels the others.
 *  @thread caller (start) or partition poller (growth) */
upulsar_err_t up_establish_all(up_rp_t **rps, int n, uint64_t deadline_us,
                               bool cancel_on_failure);

/* log.c */
/** One log line for @p c's log callback (or stderr). @thread any */
void up_log(struct upulsar_client *c, upulsar_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/** What a log line is about, for the structured callback: the error (0:
 *  none), the partition topic ("" or NULL: none) and its partition (-1:
 *  none), the broker as "host:port" in broker, or as host and port (NULL
 *  and NULL: none). */
typedef struct up_log_at {
    upulsar_err_t err;
    const char *topic;
    int partition;
    const char *broker;
    const char *host;
    int port;
} up_log_at_t;
/** up_log() with the fields of @p at. Lines of one call site (@p fmt) with
 *  the same level, error and topic for different partitions of a topic are
 *  collapsed (log.c). @thread any */
void up_log_at(struct upulsar_client *c, upulsar_log_level_t level, const up_log_at_t *at,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/** up_log_at() about producer @p rp: its partition topic, partition and
 *  the broker it was last created on. @thread any (takes rp->broker_lock) */
void up_log_rp(up_rp_t *rp, upulsar_log_level_t level, upulsar_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/** Whether lines of @p level reach @p c's log (upulsar_client_set_log_level();
 *  debug lines are off by default). @thread any */
bool up_log_on(struct upulsar_client *c, upulsar_log_level_t level);
/** Deliver the collapsed lines whose window has ended. @thread watchdog */
void up_log_tick(struct upulsar_client *c, uint64_t now_us);
/** Deliver every collapsed line still held, free what the log keeps, and
 *  destroy log_lock. @thread application (client destroy, at its end) */
void up_log_close(struct upulsar_client *c);
/** Deliver the lines the folding holds back now (client destroy, once the
 *  library's threads are stopped and while the client is still whole, so
 *  the log callback may call what callbacks may call). @thread application */
void up_log_flush_held(struct upulsar_client *c);

/* client.c */
/** Log, once per client, which io backend it uses and why (info). Called
 *  when a connection joins a loop: by then the application has had its
 *  chance to set a log callback. @thread any */
void up_client_log_backend(struct upulsar_client *c);
/* stats.c */
/** statistics.interval.ms: build and hand the statistics to the stats
 *  callback when due. @thread watchdog */
void up_stats_tick(struct upulsar_client *c, uint64_t now_us);

#endif
