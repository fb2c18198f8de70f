/* engine.h -- the objects of the producer engine and who may touch what.
 *
 * Threads:
 *   caller threads  upulsar_send(): route, reserve ring cells, copy, commit,
 *                   wake the loop if it sleeps. Touch only the ring, the
 *                   future pool and atomics marked (any).
 *   loop thread     one per io.threads: owns its connections (socket I/O via
 *                   io_uring or epoll, io_backend.h), drains rings into batches, writes frames,
 *                   matches receipts, resolves futures. Fields marked (loop)
 *                   are only touched here.
 *   watchdog        supervisor: decides when producers are re-created
 *                   (backoff, restart intensity, terminal errors), polls
 *                   partition counts, ticks the loops for keepalive and
 *                   timeouts.
 *   establish       UP_EST_WORKERS per client: run the blocking re-creation
 *   workers         of one producer each (lookup, connect, PRODUCER) for the
 *                   watchdog, which reads the result back (est_state).
 *                   Blocking protocol requests go through the loop
 *                   (up_conn_request()).
 * @internal
 */
#ifndef UP_ENGINE_H
#define UP_ENGINE_H
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "conf.h"
#include "frame.h"
#include "future.h"
#include "record.h"
#include "ring.h"
#include "upulsar/upulsar.h"

#define UP_HIST_BUCKETS 32
/* The latency histogram (stats.c): log-linear, microseconds; values below 16
 * exact, then 16 buckets per power of two (each 1/16 of its power wide, so
 * a bucket's upper bound is at most 6.25 % above any value in it), up to
 * 2^32 us (larger values count in the last bucket). */
#define UP_LAT_SUB 16
#define UP_LAT_BUCKETS ((32 - 3) * UP_LAT_SUB)
/* Threads that re-create producers for the watchdog (per client): this many
 * brokers can hang at once before a healthy one's producers wait. A worker
 * parked in a WaitForExclusive wait (which has no timeout) does not count:
 * another is started in its place, up to UP_EST_WORKERS_MAX in all. */
#define UP_EST_WORKERS 4
#define UP_EST_WORKERS_MAX 1024
enum { UP_EST_IDLE = 0, UP_EST_BUSY = 1, UP_EST_DONE = 2 };

typedef struct up_loop up_loop_t;
typedef struct up_conn up_conn_t;
typedef struct up_rp up_rp_t;
typedef struct up_batch up_batch_t;

static inline uint64_t up_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t up_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- loop --------------------------------------------------------------- */

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
    up_conn_t **conns;
    size_t nconns, cconns;
    up_rp_t **rps;
    size_t nrps, crps;
    /* Producers with something to do (producer.c, "activity"): the loop
     * drains, times out and looks before sleeping at these only, so an idle
     * producer costs it nothing. act_in (any): producers a caller activated
     * (up_rp_activate()), a lock-free stack the loop empties into its list;
     * act_head/act_tail (loop): that list, linked by act_prev/act_next. */
    up_rp_t *_Atomic act_in;
    up_rp_t *act_head, *act_tail;
    size_t nact;
    bool stop;
    uint64_t last_tick_us;
    /* (loop) free batches of every producer of this loop (batcher.c): a
     * retired batch goes here while the pool holds at most pool_max bytes
     * (buffers included), else it is freed; every UP_POOL_TRIM_US the tick
     * frees what stayed unused the whole time (pool_low) above
     * UP_POOL_FLOOR. Freed with the loop. */
    up_batch_t *pool;
    size_t pool_bytes, pool_low, pool_max;
    uint64_t pool_trim_us;
    _Atomic uint64_t pool_bytes_pub; /* (any) pool_bytes, for statistics */
};

/** Run @p fn(arg) on the loop thread, asynchronously. 0 or -1 (NOMEM). */
int up_loop_post(up_loop_t *l, void (*fn)(void *), void *arg);
/** Run @p fn(arg) on the loop thread and wait for it to return. Called from
 *  the loop thread itself, runs it inline. */
int up_loop_call(up_loop_t *l, void (*fn)(void *), void *arg);
/** Wake the loop if it sleeps. @thread any */
void up_loop_wake(up_loop_t *l);
/** Start loop @p index of @p c on backend @p io (io_backend.h). UPULSAR_OK,
 *  or IO with upulsar_last_error() saying why. */
upulsar_err_t up_loop_start(up_loop_t *l, struct upulsar_client *c, int index,
                            const struct up_io_ops *io);
void up_loop_stop(up_loop_t *l);
bool up_loop_is_current(const up_loop_t *l);
/** Register for membarrier once per process (client creation). */
void up_fence_init(void);
/** True when callers may use a compiler-only fence after committing a
 *  record (the loop then uses membarrier before it sleeps). */
bool up_fence_light_ok(void);

/* ---- connection (conn.h) ------------------------------------------------ */

#include "conn.h"

/** One request of up_conn_request_all(): filled by up_mreq_encode()
 *  (and @p pre / @p pre_arg, optional, as for up_conn_request()); the
 *  results are resp (the caller frees it), err and, for an error, why. */
typedef struct up_mreq {
    up_conn_t *conn;      /* the caller's reference, kept until the results */
    up_buf_t frame;       /* the encoded command (taken by the call) */
    int cmd_type;
    uint64_t request_id;
    int64_t producer_id;  /* a PRODUCER request's producer, else -1 */
    void (*pre)(void *);
    void *pre_arg;
    up_cmd_t *resp;
    upulsar_err_t err;
    char why[512];
} up_mreq_t;
/** Set up @p m to send @p cmd (carrying @p request_id) on @p conn. NOMEM
 *  (set) when the frame cannot be encoded. (conn_request.c) @thread any */
upulsar_err_t up_mreq_encode(up_mreq_t *m, up_conn_t *conn, const up_cmd_t *cmd,
                             uint64_t request_id);
/** Send the @p n requests at once (pipelined: one task per loop queues all
 *  of that loop's, in order, each running its pre hook right before its
 *  frame) and wait up to @p timeout_ms for all their answers together
 *  (cancellable, see up_cancel_on()). Each gets the result up_conn_request()
 *  would give, the detail in why (upulsar_last_error() is not set).
 *  Not for requests the broker may park (WaitForExclusive).
 *  (conn_request.c) @thread any but a loop of the connections */
void up_conn_request_all(up_mreq_t *m, size_t n, int timeout_ms);


/* ---- real producer ------------------------------------------------------ */

typedef struct up_done {
    struct upulsar_future *f;
    upulsar_delivery_cb_t cb;
    void *opaque;
    uint64_t sent_us; /* send time carried by its record, 0 = not sampled */
} up_done_t;

struct up_batch {
    up_batch_t *next;
    uint8_t *buf; /* [head room][records] */
    size_t cap;
    size_t rec_len;
    uint8_t *zbuf; /* compression output [head room][compressed] */
    size_t zcap;
    /* buffers start small and grow geometrically up to these (what the
     * producer's batch.max.bytes / batch.max.messages allow; a message
     * larger than that alone gets what it needs), set when taken */
    size_t cap_hint;
    uint32_t done_cap, done_hint;
    const uint8_t *frame;
    size_t frame_len;
    uint32_t n;
    uint64_t first_seq, last_seq;
    uint64_t created_us;
    uint64_t ring_end; /* ring position after its last record */
    up_done_t *done;        /* done_cap entries */
    uint64_t mem_bytes;     /* what its messages count against
                               memory.limit.bytes (up_rec_mem()) */
    /* a message sent as an entry of its own (delayed, replicate_to): */
    uint64_t deliver_at;    /* 0 = none */
    char *repl;             /* replicate_to names, NUL-separated */
    size_t repl_len, repl_cap;
    uint32_t nrepl;
    /* batching.type=key_based: the key every message of the batch has */
    int kkind;              /* 0 none, 1 partition key, 2 ordering key */
    char *kkey;             /* NUL-terminated copy; with kkind 2 and kpk, the
                               partition key follows it (NUL-terminated) */
    size_t kkey_len, kkey_cap;
    bool kpk;               /* kkind 2: the entry also carries a partition key */
    /* a plain entry (not a batch) of a message sent alone by chunk.c:
     * UP_CHUNK_FIRST / _MIDDLE / _LAST of a chunked message, UP_CHUNK_ONLY
     * for one that fitted whole; 0 for a batch */
    uint8_t chunk;
    uint8_t checksum_resends; /* (loop) sent again after a ChecksumError */
    int outq_refs;     /* (loop) segments of connection queues pointing here */
    bool retired;      /* (loop) resolved: recycle once outq_refs is 0 */
    up_rp_t *rp;       /* NULL once the producer is gone: free instead */
    up_loop_t *loop;   /* its producer's loop, whose pool takes it back (the
                          producer may be freed while a queue points here) */
};

/* (loop) a connection queue stopped pointing at @p b */
void up_batch_unref(up_batch_t *b);
/* Batch pool of a loop (batcher.c): what a loop's pool may hold, and what
 * the trim leaves. */
#define UP_POOL_TRIM_US 1000000u
#define UP_POOL_FLOOR ((size_t)256 * 1024)
/** Free the pooled batches that stayed unused since the last trim, down to
 *  UP_POOL_FLOOR bytes. (loop tick) */
void up_batch_pool_trim(up_loop_t *l);
/** Free every pooled batch (the loop has stopped). */
void up_batch_pool_free(up_loop_t *l);

enum { UP_CHUNK_NONE = 0, UP_CHUNK_FIRST, UP_CHUNK_MIDDLE, UP_CHUNK_LAST, UP_CHUNK_ONLY };

#define UP_AGE_SAMPLES 16

struct up_rp {
    /* ---- immutable after creation ---- */
    struct upulsar_producer *handle;
    struct upulsar_client *client;
    up_loop_t *loop;
    int partition; /* -1: non-partitioned */
    int index;     /* within its group */
    int conn_slot; /* connection to its broker (connections.per.broker) */
    char topic[256];
    uint64_t producer_id;
    uint64_t wake_cells; /* ring cells worth a full batch: wake a timed loop */
    /* (loop writes, callers read) the loop will look at this producer's
     * ring by a deadline of its own (a batch window, batches in flight, not
     * created yet): a send need not wake a loop sleeping with a timeout.
     * 0: a send wakes it (batcher.c up_rp_pump, send.c). Written only when
     * it changes. */
    _Atomic int armed;
    /* ---- (any) ---- */
    up_ring_t ring;
    /* activity (producer.c): 1 while on its loop's active list or queued
     * for it (act_in), 0 while idle. A caller that commits a record sets it
     * (up_rp_mark_active()); the loop clears it once nothing is pending. */
    _Atomic int act;
    up_rp_t *act_in_next;          /* link in loop->act_in (pusher, then loop) */
    up_rp_t *act_prev, *act_next;  /* (loop) the active list */
    bool act_listed;               /* (loop) on the active list */
    /* the lifecycle state (up_rp_st_t, and the flag UP_RP_CREATED: attached
     * once), changed only by up_rp_transition() and read with up_rp_st(),
     * up_rp_created(), up_rp_public_state() (rp_state.h, which has the table
     * of allowed transitions) */
    _Atomic int state;
    _Atomic int failed;    /* the terminal error (upulsar_err_t) once it
                              failed (stored before the state says FAILED),
                              or 0 */
    _Atomic uint64_t pending;   /* accepted, not resolved (approx.) */
    /* memory.limit.bytes (send.c): bytes this producer took from the
     * client's budget (mem_held: its counted messages + mem_credit) and the
     * part not used by a message yet. Senders take a message's bytes from
     * the credit (one CAS here), and more credit from the client in chunks;
     * resolved messages give theirs back to the credit, and the credit
     * above what the producer keeps goes back to the client. Own line:
     * written per send. */
    _Alignas(64) _Atomic int64_t mem_credit;
    _Atomic int64_t mem_held;
    char mem_pad[64 - 2 * sizeof(int64_t)];
    _Atomic uint64_t reconnects;
    _Atomic int64_t last_acked_seq;
    _Atomic uint64_t resolved_ring_pos;
    _Atomic int flush_req;
    _Atomic uint64_t sent_msgs, acked_msgs, failed_msgs, resent_batches;
    _Atomic uint64_t unknown_ids;   /* messages acknowledged as duplicates, no position */
    _Atomic uint64_t timed_out;     /* messages failed by send.timeout.ms */
    /* max.pending.messages: accepted, not resolved; counted only when that
     * key is set (added by callers, subtracted by the loop per batch) */
    _Atomic int64_t lim_msgs;
    /* histograms (stats.c), one writer (the loop), read by stats readers */
    _Atomic uint64_t h_batch_msgs[UP_HIST_BUCKETS]; /* messages per acked batch, log2 */
    _Atomic uint64_t h_batch_rtt[UP_HIST_BUCKETS];  /* batch built -> receipt, log2 us */
    /* send -> receipt of the messages that carry their send time
     * (latency.sample.every), us: log-linear buckets, their sum */
    _Atomic uint64_t h_lat[UP_LAT_BUCKETS];
    _Atomic uint64_t lat_sum_us;
    /* ---- (watchdog / establishing thread) ---- */
    char name[128];      /* producer name, "" until assigned */
    /* "host:port" it was last created on, "" before; guarded by broker_lock
     * (also read by upulsar_producer_list()) */
    pthread_mutex_t broker_lock;
    char broker[280];
    /* where the broker said, closing it, that the topic now lives
     * (CLOSE_PRODUCER assignedBrokerServiceUrl[Tls]): the next creation goes
     * there without a lookup; "" = look up. (broker_lock; set by the loop) */
    char assigned[280];
    /* the cluster its topic migrated to (TOPIC_MIGRATED): lookups start
     * there from now on, "" = the service URL. (broker_lock; set by the loop) */
    char cluster[280];
    bool via_proxy; /* last created through a proxy (watchdog/establishing) */
    bool user_named;
    uint64_t epoch;
    uint64_t next_attempt_us;
    uint64_t backoff_ms;
    uint64_t outage_since_us; /* first backoff since the last success, 0 = none */
    bool mandatory_stop_made; /* the one shortened delay of this outage */
    /* the watchdog's schedule of the next attempt: */
    bool graceful_next;       /* the attempt due follows a close by the broker
                                 (decided from BACKOFF_NOW / _GRACEFUL when
                                 the attempt was scheduled): not counted */
    bool attempt_failed;      /* the last re-creation attempt failed */
    uint64_t restart_times[64];
    int nrestarts;
    /* re-creation by an establish worker (watchdog.c): est_state is
     * UP_EST_IDLE, _BUSY (queued or running: the worker owns the fields
     * above marked watchdog/establishing) or _DONE (est_err is its result,
     * published with release; the watchdog reads it and sets IDLE) */
    _Atomic int est_state;
    upulsar_err_t est_err;
    char est_why[256];     /* upulsar_last_error() of a failed attempt */
    uint64_t est_deadline_us; /* bound of the attempt, 0 = operation.timeout.ms */
    up_rp_t *est_next;     /* worker queue (client lock) */
    bool has_topic_epoch;  /* from the last PRODUCER_SUCCESS (exclusive modes) */
    uint64_t topic_epoch;  /* echoed when the producer is re-created */
    struct { uint8_t len, v[16]; } schema_version; /* of the last PRODUCER_SUCCESS, written into each entry's metadata; set and read on the loop (establish.c attach_task) */
    /* ---- (loop) ---- */
    up_conn_t *conn;    /* registered connection (holds a reference), or NULL */
    bool registered;    /* present in conn->rps */
    uint64_t next_seq;
    const struct up_batcher *batcher; /* chosen at creation (batcher.h) */
    up_batch_t *open;   /* the open batches, linked by next in ascending first
                           sequence id: at most one, but with key_based */
    struct {
        uint32_t n;     /* messages and bytes of all open batches */
        size_t bytes;
        uint64_t start; /* ring position of their first record */
        size_t *offs;   /* scratch: record offsets while ids are written */
        size_t offs_cap;
    } kb;               /* key_based (batcher_key.c) */
    uint64_t open_deadline_us;
    uint64_t window_end_us; /* records seen, batch window not yet drained */
    bool holding;           /* records left in the ring until the window ends,
                               or until the producer is created once
                               (up_rp_created()) */
    up_batch_t *pend_head, *pend_tail, *unsent;
    size_t npend;
    uint8_t *scratch; /* a wrapped record, copied contiguous */
    size_t scratch_cap;
    /* the position of the first chunk of the chunked message being
     * acknowledged (receipts come in order, its chunks are consecutive) */
    uint64_t chunk_first_ledger, chunk_first_entry;
    upulsar_err_t chunk_err; /* a chunk of that message failed: how */
    /* send timeout of records still in the ring: ring head positions sampled
     * with the time they were read; every record before a sample's position
     * was accepted before its time */
    uint64_t age_pos[UP_AGE_SAMPLES], age_us[UP_AGE_SAMPLES];
    unsigned age_n, age_last; /* samples held, index of the newest */
};

/* The real producer: producer.c (lifecycle, pending queue, receipts,
 * failures, timeouts) unless noted */
up_rp_t *up_rp_new(struct upulsar_producer *h, int partition, int index,
                   const char *topic, upulsar_err_t *err);
void up_rp_free(up_rp_t *rp);
/** Drain @p rp's ring into batch entries (batch window, records, batcher):
 *  true if it drained records and more are waiting; *@p next_deadline
 *  lowered to when it wants to run again. batcher.c. (loop) */
bool up_rp_pump(up_rp_t *rp, uint64_t now_us, uint64_t *next_deadline);
void up_rp_on_receipt(up_rp_t *rp, const Pulsar__Proto__CommandSendReceipt *r);
void up_rp_on_send_error(up_rp_t *rp, const Pulsar__Proto__CommandSendError *e);
void up_rp_detach(up_rp_t *rp, bool kick);
/** The producer stopped existing on its connection (CLOSE_PRODUCER from the
 *  broker, our own CLOSE_PRODUCER after a SEND_ERROR, a refused PRODUCER)
 *  while the connection lives on: stop writing, stay registered there so
 *  receipts of SENDs the broker took before still resolve their batches with
 *  real positions, and let the watchdog re-create it (BACKOFF). (loop) */
void up_rp_suspend(up_rp_t *rp, bool kick);
/** Terminal failure of one producer: fail everything it holds with @p err,
 *  close it on the broker, state FAILED; the watchdog then fails its group.
 *  (loop) */
void up_rp_fail(up_rp_t *rp, upulsar_err_t err);
/** up_rp_fail() whose messages fail with the detail "<partition topic> via
 *  <broker>: @p why" (upulsar_future_error_detail(); NULL: a generic
 *  one). (loop) */
void up_rp_fail_why(up_rp_t *rp, upulsar_err_t err, const char *why);
/** Fill @p cmd / @p cp as CLOSE_PRODUCER for @p rp with a fresh request id. */
void up_rp_close_cmd(up_rp_t *rp, up_cmd_t *cmd, Pulsar__Proto__CommandCloseProducer *cp);
bool up_rp_attach(up_rp_t *rp, up_conn_t *c, int64_t last_seq_on_broker);
void up_rp_register(up_rp_t *rp, up_conn_t *c);
/** upulsar_send()'s caller side for one real producer: validate, reserve,
 *  write the record into the ring, wake the loop. send.c. (caller threads) */
upulsar_err_t up_rp_enqueue(up_rp_t *rp, const void *payload, size_t len,
                            const upulsar_send_opts_t *o, upulsar_future_t **future);
/* Claim the next handle of @p c nobody is stopping yet, for the caller to
 * stop with up_producer_stop_claimed(); NULL once none is left, after every
 * stop under way (claimed by other threads) has freed its handle.
 * partitioned.c. @thread application (client destroy) */
struct upulsar_producer *up_producer_claim_next(struct upulsar_client *c);
/* The stop of a handle claimed by up_producer_claim_next(): flush, close,
 * free. partitioned.c. @thread application */
upulsar_err_t up_producer_stop_claimed(struct upulsar_producer *h, int timeout_ms);
/* Refuse new upulsar_producer_start_async() calls, cancel those under way
 * and wait until each one's callback has returned, then join their
 * threads. partitioned.c. @thread application (client destroy, first) */
void up_starts_cancel_wait(struct upulsar_client *c);
/* close @p rp on its broker, waiting for the answer until @p deadline_us.
 * partitioned.c */
void up_rp_shutdown(up_rp_t *rp, uint64_t deadline_us);
void up_rp_fail_all(up_rp_t *rp, upulsar_err_t err);
/* Fail every message @p rp holds with @p err and the detail @p why; the
 * producer itself carries on (re-created as usual). @thread loop */
void up_rp_fail_pending_why(up_rp_t *rp, upulsar_err_t err, const char *why);
void up_rp_check_timeouts(up_rp_t *rp, uint64_t now_us);
/* ---- activity (producer.c): which producers the loop visits ---- */
/** Put @p rp on its loop's active list (unless it is there or queued for
 *  it): called after a record was committed (and after the fence that
 *  follows the commit), or when the loop must look at it (flush).
 *  @thread any */
void up_rp_activate(up_rp_t *rp);
/** up_rp_activate() unless @p rp is already active: one relaxed load on
 *  the send path. @thread any */
static inline void up_rp_mark_active(up_rp_t *rp)
{
    if (!atomic_load_explicit(&rp->act, memory_order_relaxed))
        up_rp_activate(rp);
}
/** Drain the rings of @p l's active producers (up_rp_pump()): true if one
 *  has more records waiting; *@p deadline lowered as up_rp_pump() does.
 *  @thread loop */
bool up_loop_pump_active(up_loop_t *l, uint64_t now_us, uint64_t *deadline);
/** Before sleeping (after the sleep fence): does an active producer have
 *  records to drain or a flush asked, or a producer wait to be listed?
 *  @thread loop */
bool up_loop_active_waiting(up_loop_t *l);
/** The tick's producer visit: send.timeout.ms of the active producers;
 *  those with nothing pending (no record in the ring, no open or pending
 *  batch, no flush asked) leave the active list. @thread loop */
void up_loop_tick_active(up_loop_t *l, uint64_t now_us);
/** Take @p rp off its loop's active list for good (it is being closed): a
 *  later up_rp_activate() does nothing. @thread loop */
void up_loop_forget_active(up_rp_t *rp);
/** A full fence on every thread of the process (membarrier when callers
 *  use compiler-only fences after committing, see up_fence_light_ok()).
 *  uring_loop.c. @thread loop */
void up_fence_heavy(void);
/* establish.c */
upulsar_err_t up_rp_establish(up_rp_t *rp, int timeout_ms);
/** One creation attempt for each of the @p n producers @p rps (of one
 *  handle), together: their lookups batched per broker (up_lookup_many()),
 *  then every PRODUCER request at once, pipelined on the shared
 *  connections (up_conn_request_all()), each bounded by @p timeout_ms.
 *  errs[i] / whys[i]: the result of rps[i] and the detail of its error.
 *  Not for WaitForExclusive (a parked request has no timeout). @thread
 *  caller (start) or watchdog; never a loop */
void up_establish_many(up_rp_t **rps, int n, int timeout_ms, upulsar_err_t *errs,
                       char (*whys)[512]);

/* ---- the partitioned producer handle ------------------------------------ */

typedef struct up_group {
    char topic[256];
    int partition;
    up_rp_t **rps;
    int nrps;
    _Atomic int failed; /* upulsar_err_t that failed the whole group, or 0 */
} up_group_t;

struct upulsar_producer {
    struct upulsar_client *client;
    struct upulsar_conf conf;
    char topic[256];
    /* Partition growth (the watchdog, up_producer_poll_partitions()) replaces
     * groups and all with larger copies while caller threads read them: it
     * stores groups and all, then nall, ngroups and npart, each with
     * memory_order_release; readers load a count (acquire) before its array
     * (acquire), so an array is never shorter than the count read first.
     * Replaced arrays stay allocated (retired) until the handle is freed. */
    _Atomic int npart;       /* 0: non-partitioned (one group) */
    _Atomic int ngroups;
    up_group_t *_Atomic groups;
    up_rp_t **_Atomic all;
    _Atomic int nall;
    void **retired;          /* (watchdog) replaced arrays */
    int nretired;
    char base_name[96];      /* name given to upulsar_producer_start, "" = none */
    uint64_t next_poll_us;   /* (watchdog) next PARTITIONED_METADATA poll */
    int shrink_seen;         /* (watchdog) smaller count last reported */
    int cap_seen;            /* (watchdog) count over partitions.max last reported */
    _Atomic int closed;      /* a stop claimed the handle (set under the client
                                lock, see up_producer_claim_stop) */
    _Atomic int freeing;     /* the stop's own flush is over: flushes still
                                under way give up with CLOSED */
    int flushing;            /* (client lock) upulsar_producer_flush() calls
                                under way; the stop frees the handle only
                                once they are over */
    int establishing;        /* (client lock) its producers queued for or in an
                                establish worker */
    int single_slot;
    /* the watchdog walks the producers only when one may need it: wd_dirty
     * (any) is set when a producer enters a BACKOFF state or FAILED
     * (rp_state.c) or an establish worker is done with one; wd_more
     * (watchdog) while its last walk left some waiting (backoff, worker) */
    _Atomic int wd_dirty;
    bool wd_more;
    struct upulsar_producer *next; /* client's list */
};

/* ---- client ------------------------------------------------------------- */

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
    int stopping; /* (lock) stops claimed and not yet done freeing their
                     handle; client destroy waits for them (wd_cv) */
    /* establish workers (watchdog.c): re-create producers in parallel, so a
     * hung broker delays only the producers that live on it */
    pthread_t *est_threads;           /* (lock) */
    int nest_threads, cest_threads;   /* (lock) */
    int est_parked;                   /* workers in a WaitForExclusive wait (lock) */
    pthread_cond_t est_cv;            /* work queued or stop (lock) */
    up_rp_t *est_head, *est_tail;     /* queue (lock) */
    _Atomic int32_t max_message_size; /* last seen from any broker */
    /* memory.limit.bytes: bytes the producers took from the budget (their
     * counted messages and their credit, send.c), never above the budget
     * but for a message larger than the whole budget taken alone; and the
     * highest value it had */
    _Atomic int64_t mem_used;
    _Atomic int64_t mem_peak;
    bool tls;                          /* pulsar+ssl:// service URL */
    struct ssl_ctx_st *ssl_ctx;        /* shared by the client's TLS connections */
    upulsar_stats_cb_t stats_cb;       /* (lock) */
    pthread_mutex_t log_lock;          /* log_cb, log_opaque */
    upulsar_log_cb_t log_cb;
    void *log_opaque;
    void *stats_opaque;
    uint64_t stats_next_us;            /* (watchdog) */
    /* ---- upulsar_producer_start_async() (partitioned.c) ---- */
    struct up_start_job *starts; /* (lock) starts under way, or ended and not yet joined */
    bool starts_closed;          /* (lock) client destroy has begun: no new start */
};

void up_watchdog_kick(struct upulsar_client *c);
/** partitions.update.interval.ms: poll the partition count and start groups
 *  for new partitions. @thread watchdog, within its pass over @p h */
void up_producer_poll_partitions(struct upulsar_producer *h, uint64_t now_us);
/** Make the calling thread's blocking network waits (TCP connect, handshake,
 *  requests: conn_dial.c, conn_request.c) give up with UPULSAR_ERR__CLOSED
 *  within a few milliseconds once *@p flag is non-zero; NULL (the default)
 *  = never. The watchdog points it at the closed flag of the handle it
 *  works on, so upulsar_producer_stop() never waits behind a reconnect attempt. */
void up_cancel_on(const _Atomic int *flag);
bool up_cancelled(void);
int up_watchdog_start(struct upulsar_client *c);
void up_watchdog_stop(struct upulsar_client *c);
/** Take @p h's producers that wait in the establish queue out of it (their
 *  handle is stopping; running attempts are cancelled through h->closed).
 *  Called with the client lock held. */
void up_watchdog_forget(struct upulsar_producer *h);
/** The calling thread starts (+1) or ends (-1) a wait without timeout for a
 *  WaitForExclusive grant; while parked it is not counted as an establish
 *  worker, and a new one is started if fewer than UP_EST_WORKERS remain. */
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
 *  @thread caller (start) or watchdog (partition growth) */
upulsar_err_t up_establish_all(up_rp_t **rps, int n, uint64_t deadline_us,
                               bool cancel_on_failure);

/* log.c */
/** One log line for @p c's log callback (or stderr). @thread any */
void up_log(struct upulsar_client *c, upulsar_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* client.c */
/** Log, once per client, which io backend it uses and why (info). Called
 *  when a connection joins a loop: by then the application has had its
 *  chance to set a log callback. @thread any */
void up_client_log_backend(struct upulsar_client *c);

/* stats.c */
void up_stats_batch_acked(up_rp_t *rp, uint32_t msgs, uint64_t rtt_us);
/** Batch @p b was acknowledged at @p now_us: its messages that carry a send
 *  time go into the latency histogram. (loop) */
void up_stats_batch_latency(up_rp_t *rp, const up_batch_t *b, uint64_t now_us);
void up_stats_tick(struct upulsar_client *c, uint64_t now_us);

/* auth.c: the token to present now (file, env or string); "" = none */
upulsar_err_t up_auth_token(const struct upulsar_conf *cf, char *buf, size_t size);

/* url.c / topic.c */
upulsar_err_t up_parse_url(const char *url, char *host, size_t hostsz, int *port, bool *tls);
/** One "host[:port]" of @p url starting at @p p (up to ',' or '/'); *@p
 *  port keeps its default when none is given. */
upulsar_err_t up_parse_host(const char *url, const char *p, char *host, size_t hostsz, int *port);
/** Every host of a service URL "pulsar://h1:6650,h2:6650" (at most @p max). */
upulsar_err_t up_parse_service_url(const char *url, char (*hosts)[256], int *ports, int max,
                                   int *n, bool *tls);
/** The service address to use now (of a multi-host service URL, the one
 *  that last worked). @thread any */
void up_service_addr(struct upulsar_client *c, char *host, size_t hostsz, int *port);
/** Connecting to service address @p host:@p port failed: the next one of
 *  the list is used from now on (no effect with one host). @thread any */
void up_service_failed(struct upulsar_client *c, const char *host, int port);
upulsar_err_t up_topic_normalize(const char *in, char *out, size_t outsz);

/* lookup.c */
/** The broker serving @p topic: *@p host:*@p port is where to connect;
 *  when the answer says to go through the service URL (a Pulsar proxy),
 *  that is the service URL and @p proxy_to gets the broker's "host:port"
 *  for CONNECT.proxy_to_broker_url, else @p proxy_to is "". The lookup
 *  starts at @p from_url (a cluster the topic migrated to), NULL or "" =
 *  the service URL. */
upulsar_err_t up_lookup(struct upulsar_client *c, up_loop_t *l, const char *topic,
                        const char *from_url, char *host, size_t hostsz, int *port,
                        char *proxy_to, size_t proxy_to_sz);
upulsar_err_t up_partitions(struct upulsar_client *c, const char *topic, int *n);
/** One topic of up_lookup_many(): topic and loop in; the broker (as
 *  up_lookup() gives it) or the error and its detail out. */
typedef struct up_lookup_item {
    const char *topic;
    up_loop_t *loop; /* whose connections ask */
    char host[256];
    int port;
    char proxy_to[280];
    upulsar_err_t err;
    char why[512];
} up_lookup_item_t;
/** up_lookup() of @p n topics from the service URL at once: each round
 *  asks every broker its topics' LOOKUPs together on one connection
 *  (pipelined), then the redirected ones go on to the next round.
 *  @p timeout_ms bounds each round. @thread caller/watchdog */
void up_lookup_many(struct upulsar_client *c, up_lookup_item_t *it, size_t n, int timeout_ms);
#endif
