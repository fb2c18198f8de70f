/* handle.h -- the producer handle the application holds
 * (upulsar_producer_t): one group of real producers per partition, routing,
 * partition growth. Owned by partitioned.c (routing, send, introspection),
 * partitioned_start.c (start, partition growth) and partitioned_stop.c
 * (flush, stop, freeing); the watchdog reads it while it
 * supervises the handle. Each function says which thread may call it.
 * @internal */
#ifndef UP_HANDLE_H
#define UP_HANDLE_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "rp.h"
#include "upulsar/upulsar.h"


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
    /* unique in the process (never reused, unlike the handle's address):
     * names the handle in a thread's routing state (partitioned.c) */
    uint64_t serial;
    /* Partition growth (the poller, up_producer_poll_partitions()) replaces
     * groups and all with larger copies while caller threads read them: it
     * stores groups and all, then nall, ngroups and npart, each with
     * memory_order_release; readers load a count (acquire) before its array
     * (acquire), so an array is never shorter than the count read first.
     * Replaced arrays stay allocated (retired) until the handle is freed;
     * growth writes in place, past the counts, while the arrays have room
     * (groups_cap groups, groups_cap x producers.per.partition producers),
     * and replaces them with arrays twice as large when they have not. */
    _Atomic int npart;       /* 0: non-partitioned (one group) */
    _Atomic int ngroups;
    up_group_t *_Atomic groups;
    up_rp_t **_Atomic all;
    _Atomic int nall;
    void **retired;          /* (poller) replaced arrays */
    int nretired;
    int groups_cap;          /* (poller; the starting thread before) room of groups */
    char base_name[96];      /* name given to upulsar_producer_start, "" = none */
    uint64_t next_poll_us;   /* (poller) next PARTITIONED_METADATA poll */
    int shrink_seen;         /* (poller) smaller count last reported */
    int cap_seen;            /* (poller) count over partitions.max last reported */
    _Atomic int closed;      /* a stop claimed the handle (set under the client
                                lock, see up_producer_claim_stop) */
    _Atomic int freeing;     /* the stop's own flush is over: flushes still
                                under way give up with CLOSED, and the
                                watchdog no longer supervises the handle
                                (until then it re-creates its producers,
                                which the stop's flush may need) */
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

/* partitioned.c */
/* upulsar_send() on handle @p h, @p opts in this library's layout (send.c
 * upulsar_send_sized() converts older ones). @thread any */
upulsar_err_t up_handle_send(struct upulsar_producer *h, const void *payload, size_t len,
                             const upulsar_send_opts_t *opts, upulsar_future_t **future);

/* partitioned_start.c, partitioned_stop.c */
/* Claim the next handle of @p c nobody is stopping yet, for the caller to
 * stop with up_producer_stop_claimed(); NULL once none is left, after every
 * stop under way (claimed by other threads) has freed its handle.
 * partitioned_stop.c. @thread application (client destroy) */
struct upulsar_producer *up_producer_claim_next(struct upulsar_client *c);
/* The stop of a handle claimed by up_producer_claim_next(): flush, close,
 * free. partitioned_stop.c. @thread application */
upulsar_err_t up_producer_stop_claimed(struct upulsar_producer *h, int timeout_ms);
/** Refuse new upulsar_producer_start_async() calls, cancel those under way
 *  and wait until each one's callback has returned, then join their
 *  threads. partitioned_start.c. @thread application (client destroy, first) */
void up_starts_cancel_wait(struct upulsar_client *c);
/** Close every producer of @p h (up_rps_close(), until @p close_by) and
 *  free them, its groups and @p h. partitioned_stop.c. @thread as
 *  up_rps_close(), once nothing else uses @p h */
void up_handle_free(struct upulsar_producer *h, uint64_t close_by);
/** Close the @p n producers @p rps (of one client), together: first each
 *  fails what it still holds with CLOSED (every future and callback
 *  resolved before any wait for a broker), then CLOSE_PRODUCER goes to the
 *  broker of each on an open connection, all at once, and the answers are
 *  waited for until @p close_by (up_now_us() clock; shared by all), then
 *  each is taken off its connection and loop (CLOSED), ready for
 *  up_rp_free(). partitioned_stop.c. @thread application (stop, start's
 *  failure), a start's thread or the watchdog (partition growth); never a
 *  loop */
void up_rps_close(up_rp_t **rps, size_t n, uint64_t close_by);
/** partitions.update.interval.ms: when due, ask the broker for @p h's
 *  partition count (blocks up to operation.timeout.ms) and start groups
 *  for new partitions (their producers created together, or on their
 *  first message with lazy.start.partitions); fewer partitions or more
 *  than partitions.max are refused with a log line. partitioned_start.c.
 *  @thread partition poller (partition_poll.c), within its turn on @p h */
void up_producer_poll_partitions(struct upulsar_producer *h, uint64_t now_us);

#endif
