/* rp.h -- the real producer (up_rp_t): one topic partition on one
 * connection of one loop, its ring, batches and pending queue, and its
 * lifecycle. Owned by producer.c (lifecycle, pending queue, receipts,
 * failures, timeouts) and activity.c (the loop's active list) with send.c
 * (the caller's side), batcher*.c and chunk.c (draining and batching),
 * rp_state.c (the state machine), establish.c (creation on a broker) and
 * stats.c (its histograms); what these files share besides is in
 * producer_int.h.
 * The fields of up_rp_t are grouped by the thread that may write them; each
 * function says which thread may call it (@thread).
 * @internal */
#ifndef UP_RP_H
#define UP_RP_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "frame.h"
#include "future.h"
#include "loop.h"
#include "record.h"
#include "ring.h"
#include "upulsar/upulsar.h"

typedef struct up_loop up_loop_t;
typedef struct up_conn up_conn_t;
typedef struct up_rp up_rp_t;
typedef struct up_batch up_batch_t;

#define UP_HIST_BUCKETS 32
/* The latency histogram (stats.c): log-linear, microseconds; values below 16
 * exact, then 16 buckets per power of two (each 1/16 of its power wide, so
 * a bucket's upper bound is at most 6.25 % above any value in it), up to
 * 2^32 us (larger values count in the last bucket). */
#define UP_LAT_SUB 16
#define UP_LAT_BUCKETS ((32 - 3) * UP_LAT_SUB)
/* failed_by[] slots: one per upulsar_err_t (stats.c up_stats_err_slot) */
#define UP_ERR_SLOTS 64
/* why a send found no room (no_room[][]) */
enum { UP_ROOM_RING = 0, UP_ROOM_PENDING = 1, UP_ROOM_MEMORY = 2, UP_ROOM_REASONS = 3 };
/* sup.est_state: re-creation by an establish worker (see up_rp_t) */
enum { UP_EST_IDLE = 0, UP_EST_BUSY = 1, UP_EST_DONE = 2 };


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
    uint64_t mem_deferred;  /* (loop) of mem_bytes, what stays counted after
                               its messages resolved, while a connection's
                               queue still holds the batch: counted
                               client-wide only (the producer may be freed
                               first), given back to mem_client when the
                               last queue lets go (up_batch_unref()) */
    struct upulsar_client *mem_client;
    uint64_t payload_bytes; /* its messages' payloads (statistics) */
    /* a message with replicate_to, a batch of its own (a delayed message
     * goes alone as a plain entry: chunk.c): */
    char *repl;             /* replicate_to names, NUL-separated */
    size_t repl_len, repl_cap;
    uint32_t nrepl;
    /* batching.type=key_based: the key every message of the batch has */
    int kkind;              /* 0 none, 1 partition key, 2 ordering key */
    char *kkey;             /* NUL-terminated copy; with kkind 2 and kpk, the
                               partition key follows it (NUL-terminated) */
    size_t kkey_len, kkey_cap;
    bool kpk;               /* kkind 2: the entry also carries a partition key */
    size_t kpk_len;         /* ... of this many bytes (0 without kpk) */
    bool kb64;              /* that partition key is a binary key's base64 text */
    /* a plain entry (not a batch) of a message sent alone by chunk.c:
     * UP_CHUNK_FIRST / _MIDDLE / _LAST of a chunked message, UP_CHUNK_ONLY
     * for one that fitted whole; 0 for a batch */
    uint8_t chunk;
    /* UP_CHUNK_ONLY with a delivery report callback: what its report gives
     * back (chunk.c): the payload (dr_len bytes: the entry's own, or a copy
     * in zbuf when it was compressed), the key in kkey (kkey_len bytes),
     * UP_DR_* flags; dr_flags 0: not kept */
    const uint8_t *dr_payload;
    size_t dr_len;
    uint8_t dr_flags;
    uint8_t checksum_resends; /* (loop) sent again after a ChecksumError */
    /* (loop) a SEND_ERROR that named this entry, written on the current
     * connection, while entries ahead of it still waited for their receipts
     * (a broker answers a checksum error at once): acted on once the entry
     * is the head (up_rp_on_send_error); cleared when it is to be written
     * again. early_err is the ServerError + 1 (0: none), early_msg its
     * text (malloc'd, or NULL). */
    int early_err;
    char *early_msg;
    int outq_refs;     /* (loop) segments of connection queues pointing here */
    bool retired;      /* (loop) resolved: recycle once outq_refs is 0 */
    up_rp_t *rp;       /* NULL once the producer is gone: free instead */
    up_loop_t *loop;   /* its producer's loop, whose pool takes it back (the
                          producer may be freed while a queue points here) */
};

/** A connection queue stopped pointing at @p b. (batcher.c) @thread loop */
void up_batch_unref(up_batch_t *b);
/* Batch pool of a loop (batcher.c): what a loop's pool may hold, and what
 * the trim leaves. */
#define UP_POOL_TRIM_US 1000000u
#define UP_POOL_FLOOR ((size_t)256 * 1024)
/** Free the pooled batches that stayed unused since the last trim, down to
 *  UP_POOL_FLOOR bytes. (batcher.c) @thread loop (its tick) */
void up_batch_pool_trim(up_loop_t *l);
/** Free every pooled batch. (batcher.c) @thread the thread that stopped
 *  the loop (up_loop_stop()), once the loop thread has ended */
void up_batch_pool_free(up_loop_t *l);

enum { UP_CHUNK_NONE = 0, UP_CHUNK_FIRST, UP_CHUNK_MIDDLE, UP_CHUNK_LAST, UP_CHUNK_ONLY };
enum { UP_DR_KEPT = 1, UP_DR_KEY = 2, UP_DR_B64 = 4, UP_DR_NULL = 8 };

#define UP_AGE_SAMPLES 16

/* Alignment of a real producer (up_rp_new()): a pair of cache lines, which
 * x86 cores fetch together. */
#define UP_RP_ALIGN 128
_Static_assert(UP_RP_ALIGN >= _Alignof(up_ring_t), "a producer is aligned as its ring");

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
    /* ---- (any) ---- (atomics, counters, identity; fields marked (loop)
     *      here are the loop's, kept next to the atomics they go with) */
    /* (loop writes, callers read) the loop will look at this producer's
     * ring by a deadline of its own (a batch window, batches in flight, not
     * created yet): a send need not wake a loop sleeping with a timeout.
     * 0: a send wakes it (drain.c up_rp_pump, send.c). Written only when
     * it changes. */
    _Atomic int armed;
    up_ring_t ring;
    /* activity (activity.c): 1 while on its loop's active list or queued
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
    /* the highest accepted count a statistics reader returned (stats.c,
     * up_stats_accepted(); written by readers only, relaxed CAS-max) */
    _Atomic uint64_t acc_seen;
    /* memory.limit.bytes (send.c): bytes this producer took from the
     * client's budget: its counted messages plus the charged rest of its
     * ring's budget unit (ring.h). Added by the sender that enters a unit
     * (and by a send whose payload stays out of the ring), subtracted by
     * the loop as messages resolve; relaxed (a counter, publishes nothing). */
    _Alignas(64) _Atomic int64_t mem_held;
    char mem_pad[64 - sizeof(int64_t)];
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
    /* more statistics (stats.c): payload bytes of acknowledged messages
     * (loop); failed messages per error (loop, up_stats_failed()); sends
     * that found no room, by reason (UP_ROOM_*), that waited for it
     * (block.if.queue.full) [0] or were refused with QUEUE_FULL [1]
     * (callers, on the slow path only) */
    _Atomic uint64_t acked_bytes;
    _Atomic uint64_t failed_by[UP_ERR_SLOTS];
    _Atomic uint64_t no_room[2][UP_ROOM_REASONS];
    /* ---- identity and where to create it (producer.c) ---- */
    /* producer name, "" until assigned: the user's (up_rp_new()), or the
     * broker's, taken once by up_rp_named_by_broker() from the first
     * PRODUCER_SUCCESS (establishing thread, before the producer is
     * attached, so the loop reads it after) */
    char name[128];
    bool user_named;     /* immutable after up_rp_new() */
    /* set (release) once name is written for good: threads that do not
     * create the producer (statistics, introspection) read the name through
     * up_rp_name(), which sees it whole or not at all */
    _Atomic bool name_ready;
    /* "host:port" it was last created on, "" before; guarded by broker_lock
     * (also read by upulsar_producer_list()); set by up_rp_attach() */
    pthread_mutex_t broker_lock;
    char broker[280];
    /* where the broker said, closing it, that the topic now lives
     * (CLOSE_PRODUCER assignedBrokerServiceUrl[Tls]): the next creation goes
     * there without a lookup; "" = look up. (broker_lock; set by
     * up_rp_on_close_producer() on the loop, taken and cleared by
     * up_rp_take_route() on the establishing thread) */
    char assigned[280];
    /* the cluster its topic migrated to (TOPIC_MIGRATED): lookups start
     * there from now on, "" = the service URL. (broker_lock; set by
     * up_rp_on_topic_migrated() on the loop) */
    char cluster[280];
    /* ---- the supervisor's (watchdog.c): read and written only by the
     *      watchdog thread, and by the thread of a start or partition
     *      growth for a producer the watchdog does not see yet; the est_*
     *      fields hand the producer to an establish worker (watchdog.c)
     *      and back, see est_state ---- */
    struct up_rp_sup {
        uint64_t next_attempt_us; /* the attempt due, 0 = none scheduled */
        uint64_t backoff_ms;      /* the next backoff delay, 0 = backoff.initial.ms */
        uint64_t outage_since_us; /* first backoff since the last success, 0 = none */
        bool mandatory_stop_made; /* the one shortened delay of this outage */
        bool graceful_next;       /* the attempt due follows a close by the
                                     broker (decided from BACKOFF_NOW /
                                     _GRACEFUL when the attempt was
                                     scheduled): not counted */
        bool attempt_failed;      /* the last re-creation attempt failed */
        /* restart.intensity <= UP_RESTART_EXACT_MAX: the times of the last
         * restarts; above: restarts per slice of restart.period.ms, slice
         * i holding those of slice number slice_no[i] */
        uint64_t restart_times[UP_RESTART_EXACT_MAX + 1];
        int nrestarts;
        uint32_t slice_n[UP_RESTART_SLICES + 1];
        uint64_t slice_no[UP_RESTART_SLICES + 1];
        /* est_state is UP_EST_IDLE, _BUSY (queued or running: the worker
         * owns the producer's est part and est_why) or _DONE (est_err is
         * its result, published with release; the watchdog reads it and
         * sets IDLE) */
        _Atomic int est_state;
        upulsar_err_t est_err;
        char est_why[256];        /* upulsar_last_error() of a failed attempt */
        uint64_t est_deadline_us; /* bound of the attempt, 0 = operation.timeout.ms */
        up_rp_t *est_next;        /* worker queue (client lock) */
    } sup;
    /* ---- the establishing thread's (establish.c): written only by the
     *      thread running the producer's creation attempt (a start, a
     *      partition growth or an establish worker; one at a time, handed
     *      over through sup.est_state or the start's join) ---- */
    struct up_rp_est {
        uint64_t epoch;           /* of the next PRODUCER request */
        bool via_proxy;           /* last created through a proxy */
        bool has_topic_epoch;     /* from the last PRODUCER_SUCCESS (exclusive modes) */
        uint64_t topic_epoch;     /* echoed when the producer is re-created */
    } est;
    /* ---- (loop) ---- */
    /* of the last PRODUCER_SUCCESS (set by up_rp_attach()), written into
     * each entry's metadata */
    struct { uint8_t len, v[16]; } schema_version;
    size_t loop_pos;    /* its index in loop->rps: written only by
                           up_loop_add_rp() / up_loop_remove_rp() (uring_loop.c) */
    up_conn_t *conn;    /* registered connection (holds a reference), or NULL */
    size_t conn_pos;    /* its index in conn->rps: written only by
                           up_conn_add_rp() / up_conn_remove_rp() (conn_io.c) */
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
/* A ring's size when the client has many producers (up_rp_ring_bytes):
 * the budget over UP_RING_SHARE_DIV, shared by the client's producers,
 * rounded down to a power of two, at least UP_RING_MIN_BYTES. */
#define UP_RING_SHARE_DIV 4
#define UP_RING_MIN_BYTES ((int64_t)16 * 1024)

/** The ring size for the producers of a handle with conf @p cf that
 *  creates @p n real producers in client @p c: queue.buffer.bytes when it
 *  was set (upulsar_conf_set()) or the client has no budget; else the
 *  default queue.buffer.bytes, or
 *  memory.limit.bytes / UP_RING_SHARE_DIV shared over the client's
 *  producers (those it has now plus the @p n) rounded down to a power of
 *  two, if that is less, and never below UP_RING_MIN_BYTES (nor above
 *  queue.buffer.bytes). @thread any */
int64_t up_rp_ring_bytes(struct upulsar_client *c, const struct upulsar_conf *cf, int64_t n);

/** A producer of handle @p h for @p topic (partition @p partition, -1:
 *  not partitioned; @p index within its group), not registered on its loop
 *  nor created on a broker yet. @p name: the name the user gave (copied),
 *  or NULL for one the broker gives. NULL with *@p err on failure.
 *  @thread application (start) or watchdog (partition growth) */
up_rp_t *up_rp_new(struct upulsar_producer *h, int partition, int index,
                   const char *topic, const char *name, upulsar_err_t *err);
/** Ask @p rp's loop to write what it holds now (flush): raise its flush
 *  request, put it on the active list, wake the loop. @thread any */
void up_rp_request_flush(up_rp_t *rp);
/** The broker named @p rp @p name (PRODUCER_SUCCESS): taken when it has
 *  none yet (neither the user's nor an earlier one). @thread the
 *  establishing thread, before up_rp_attach() */
void up_rp_named_by_broker(up_rp_t *rp, const char *name);
/** Where the next creation of @p rp starts: the broker a CLOSE_PRODUCER
 *  named (copied into @p assigned, "" = none; taken: one try only) and the
 *  cluster its topic migrated to (@p cluster, "" = the service URL).
 *  @thread the establishing thread */
void up_rp_take_route(up_rp_t *rp, char *assigned, size_t assigned_size, char *cluster,
                      size_t cluster_size);
/** The supervisor re-creates @p rp: BACKOFF* -> CONNECTING (refused when
 *  it failed or is stopping since the state was read: false) and one more
 *  re-creation counted. @thread watchdog */
bool up_rp_recreating(up_rp_t *rp, const char *why);
/** Free @p rp and what it still holds, once it is off its loop and its
 *  connection (up_rps_close()). @thread the thread freeing its handle
 *  (stop, or the watchdog undoing a partition growth) */
void up_rp_free(up_rp_t *rp);
/** Drain @p rp's ring into batch entries (batch window, records, batcher):
 *  true if it drained records and more are waiting; *@p next_deadline
 *  lowered to when it wants to run again. drain.c. @thread loop */
bool up_rp_pump(up_rp_t *rp, uint64_t now_us, uint64_t *next_deadline);
/** SEND_RECEIPT / SEND_ERROR for @p rp, dispatched by its connection.
 *  @thread loop */
void up_rp_on_receipt(up_rp_t *rp, const Pulsar__Proto__CommandSendReceipt *r);
void up_rp_on_send_error(up_rp_t *rp, const Pulsar__Proto__CommandSendError *e);
/** Let go of the connection (lost, or the producer fails or stops): stop
 *  writing, BACKOFF (the watchdog is kicked with @p kick). @thread loop */
void up_rp_detach(up_rp_t *rp, bool kick);
/** The producer stopped existing on its connection (CLOSE_PRODUCER from the
 *  broker, our own CLOSE_PRODUCER after a SEND_ERROR, a refused PRODUCER)
 *  while the connection lives on: stop writing, stay registered there so
 *  receipts of SENDs the broker took before still resolve their batches with
 *  real positions, and let the watchdog re-create it (BACKOFF).
 *  @thread loop */
void up_rp_suspend(up_rp_t *rp, bool kick);
/** Terminal failure of one producer: fail everything it holds with @p err,
 *  close it on the broker, state FAILED; the watchdog then fails its group.
 *  @thread loop */
void up_rp_fail(up_rp_t *rp, upulsar_err_t err);
/** up_rp_fail() whose messages fail with the detail "<partition topic> via
 *  <broker>: @p why" (upulsar_future_error_detail(); NULL: a generic
 *  one). @thread loop */
void up_rp_fail_why(up_rp_t *rp, upulsar_err_t err, const char *why);
/** Fill @p cmd / @p cp as CLOSE_PRODUCER for @p rp with a fresh request id.
 *  @thread any */
void up_rp_close_cmd(up_rp_t *rp, up_cmd_t *cmd, Pulsar__Proto__CommandCloseProducer *cp);
/** PRODUCER_SUCCESS on @p c: @p rp is READY there and writes its pending
 *  batches again (the broker has stored up to @p last_seq_on_broker, -1:
 *  none). False when it may not attach (failed meanwhile: closed on the
 *  broker; no longer CONNECTING on @p c, or @p c failed). Its schema
 *  version (at most 16 bytes, 0: none) is written into every entry from
 *  now on; @p broker ("host:port") is where it is created, set before its
 *  first receipt can resolve anything.
 *  Run by establish.c's attach task. @thread loop */
bool up_rp_attach(up_rp_t *rp, up_conn_t *c, int64_t last_seq_on_broker,
                  const uint8_t *schema_version, size_t schema_version_len,
                  const char *broker);
/** Register @p rp on @p c (up_conn_add_rp(), a reference) before its
 *  PRODUCER request, so what the broker sends for it is dispatched to it:
 *  CONNECTING. Run by establish.c's task before the request. @thread loop */
void up_rp_register(up_rp_t *rp, up_conn_t *c);
/** upulsar_send()'s caller side for one real producer: validate, reserve,
 *  write the record into the ring, wake the loop. send.c. @thread any
 *  (caller threads), never a loop when it may block */
upulsar_err_t up_rp_enqueue(up_rp_t *rp, const void *payload, size_t len,
                            const upulsar_send_opts_t *o, upulsar_future_t **future);
/** Fail every message @p rp holds (ring, open and pending batches) with
 *  @p err (the handle is stopping). @thread loop */
void up_rp_fail_all(up_rp_t *rp, upulsar_err_t err);
/* Fail every message @p rp holds with @p err and the detail @p why; the
 * producer itself carries on (re-created as usual). @thread loop */
void up_rp_fail_pending_why(up_rp_t *rp, upulsar_err_t err, const char *why);
/** send.timeout.ms: fail the messages of @p rp accepted longer ago than
 *  that, oldest first. @thread loop (its tick) */
void up_rp_check_timeouts(up_rp_t *rp, uint64_t now_us);
/** A time by which the record at ring position @p pos was certainly
 *  accepted (reserved): the oldest of the ring's age samples (taken for
 *  send.timeout.ms) that found the head past it, else @p now. What a batch
 *  opened by that record counts send.timeout.ms from, so time spent in the
 *  ring counts too (at most about 1/8 of send.timeout.ms later than the
 *  acceptance). @thread loop */
uint64_t up_rp_accepted_by(const up_rp_t *rp, uint64_t pos, uint64_t now);
/* ---- activity (activity.c): which producers the loop visits ---- */
/** Put @p rp on its loop's active list (unless it is there or queued for
 *  it): called after a record was committed (its reservation's CAS is the
 *  fence, ring.h R6), or when the loop must look at it (flush).
 *  @thread any */
void up_rp_activate(up_rp_t *rp);
/** up_rp_activate() unless @p rp is already active: one load on the send
 *  path (seq_cst, a plain load on x86). @thread any */
static inline void up_rp_mark_active(up_rp_t *rp)
{
    /* seq_cst: after the reservation's CAS, against the tick's store of
     * act = 0 (ring.h R6) */
    if (!atomic_load_explicit(&rp->act, memory_order_seq_cst))
        up_rp_activate(rp);
}
/** Drain the rings of @p l's active producers (up_rp_pump()): true if one
 *  has more records waiting; *@p deadline lowered as up_rp_pump() does.
 *  @thread loop */
bool up_loop_pump_active(up_loop_t *l, uint64_t now_us, uint64_t *deadline);
/** Before sleeping (after the sleep fence): UP_WAIT_WORK when an active
 *  producer not holding its records has one committed at its read position
 *  or a flush asked, or a producer waits to be listed; else
 *  UP_WAIT_RESERVED when such a producer has a record reserved and not
 *  committed yet (ring.h R6); else UP_WAIT_NONE. @thread loop */
up_wait_t up_loop_active_waiting(up_loop_t *l);
/** The tick's producer visit: send.timeout.ms of the active producers;
 *  those with nothing pending (no record in the ring, no open or pending
 *  batch, no flush asked) leave the active list. @thread loop */
void up_loop_tick_active(up_loop_t *l, uint64_t now_us);
/** Take @p rp off its loop's active list for good (it is being closed): a
 *  later up_rp_activate() does nothing. @thread loop */
void up_loop_forget_active(up_rp_t *rp);
/* establish.c */
/** One creation attempt of @p rp: lookup (or the broker it was assigned),
 *  connection, PRODUCER, attach on its loop, each bounded by @p timeout_ms
 *  (0: no bound, WaitForExclusive). @thread establish worker or caller
 *  (start); never a loop */
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

/* stats.c */
/** Batch of @p msgs messages acknowledged @p rtt_us after it was built:
 *  counters and histograms. @thread loop */
void up_stats_batch_acked(up_rp_t *rp, uint32_t msgs, uint64_t rtt_us);
/** Batch @p b was acknowledged: its payload bytes. @thread loop */
void up_stats_batch_bytes(up_rp_t *rp, const up_batch_t *b);
/** A message that carries send time @p sent_us was acknowledged at
 *  @p now_us: the latency histogram and its sum (up_rp_resolve_batch(),
 *  as it resolves the message). @thread loop */
void up_stats_latency(up_rp_t *rp, uint64_t sent_us, uint64_t now_us);
/** @p n messages of @p rp failed with @p err: failed_msgs and the count
 *  per error. @thread loop */
void up_stats_failed(up_rp_t *rp, upulsar_err_t err, uint64_t n);
/** A send on @p rp found no room for @p reason (UP_ROOM_*): @p refused 0
 *  where it begins to look for room (counted as a wait if it will wait:
 *  block.if.queue.full on an application thread), 1 when it is refused
 *  with QUEUE_FULL. Slow path only. @thread caller */
void up_stats_no_room(up_rp_t *rp, int reason, int refused);
/** Messages @p rp accepted and not yet resolved: in its ring, its open
 *  and pending batches. @thread any */
uint64_t up_stats_pending(up_rp_t *rp);
/** Messages upulsar_send() accepted (statistics: "accepted"), counted
 *  without a per-message atomic (ring.h, up_ring_records()); never below a
 *  figure returned before. @thread any */
uint64_t up_stats_accepted(up_rp_t *rp);

/* rp->name for threads other than the creating one: "" until it is set.
 * @thread any */
static inline const char *up_rp_name(const up_rp_t *rp)
{
    return atomic_load_explicit(&rp->name_ready, memory_order_acquire) ? rp->name : "";
}

#endif
