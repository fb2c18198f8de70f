/* fault.h -- fault injection points, for the test suite only.
 *
 * Internal: not part of the public API, and not exported by libupulsar.so
 * (cmake/upulsar.map keeps only upulsar_* global). Tests link the static
 * library and include this header to make a failure that is otherwise only
 * reachable when memory runs out happen on demand.
 *
 * Each point is a counter, 0 by default: while it is > 0, each pass through
 * the point takes one from it and fails there as if the allocation behind
 * it had failed. Off, a point costs one relaxed atomic load, on paths that
 * are not hot (connection set-up, producer registration). Thread safety:
 * any thread. */
#ifndef UPULSAR_FAULT_H
#define UPULSAR_FAULT_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* up_conn_pool_add() in conn_pool.c: posting the new connection's attach
 * task to its loop (up_loop_post) fails. */
extern _Atomic int up_fault_dial_post;

/* up_loop_add_rp() in uring_loop.c: allocating the larger producer list of
 * a loop fails. */
extern _Atomic int up_fault_loop_list_nomem;

/* up_rps_close() in partitioned_stop.c and up_conn_request_all() in
 * conn_request.c: allocating the arrays for closing many producers at once
 * (and for sending many requests at once) fails. */
extern _Atomic int up_fault_close_nomem;

/* log.c: when > 0, the window in which lines about partitions are folded
 * (UP_LOG_FOLD_US) is this many milliseconds, so that a test can hold
 * lines back for as long as its own steps take. */
extern _Atomic int up_fault_log_fold_ms;

/* tick() in uring_loop.c: while set, the tick does not take failed
 * batches out of its connections' queues (up_conn_purge_resolved()), so
 * that a test sees what a connection's own writes take out. */
extern _Atomic int up_fault_tick_purge_off;

/* up_rec_read_wrapped() in record.c: the scratch buffer for a record that
 * wraps around the ring's end cannot be allocated. */
extern _Atomic int up_fault_rec_scratch_nomem;

/* loop_main() in uring_loop.c, a switch rather than a countdown: while it
 * is > 0, a sleep of the loop with no batch deadline lasts until something
 * wakes it (an hour at most) instead of a tick (10 ms), so a record the
 * sleep handshake (ring.h R6) let the loop sleep through waits for the
 * test's bound, not for the next tick. */
extern _Atomic int up_fault_loop_sleep_on;

/* up_loop_tick_active() in producer.c, a switch: while it is > 0, the
 * tick waits 50 us between finding a producer with nothing to do and
 * taking it off the active list (act = 0), the window in which a caller
 * that still reads act == 1 commits a record the tick must then see. */
extern _Atomic int up_fault_tick_idle_pause;

/* up_decoder_steal() in frame.c: the copy of a broker's reply to a
 * request (the reply the requester gets) cannot be allocated. */
extern _Atomic int up_fault_reply_copy_nomem;

/* Name resolution in resolve.c, a switch rather than a countdown: while
 * it is > 0, each resolution of a broker's host name first sleeps that many
 * milliseconds (a DNS server that does not answer), and counts itself in
 * up_fault_resolve_stalls. */
extern _Atomic int up_fault_resolve_stall_ms;
extern _Atomic int up_fault_resolve_stalls;

/* up_batch_grow() in batcher.c: growing a batch's buffers for the next
 * record fails (the record fails with NOMEM). */
extern _Atomic int up_fault_batch_grow_nomem;

/* Not a fault point, a probe: the largest allocation any connection's TLS
 * send buffer (the records encrypted ahead of the socket) has had, kept
 * by conn_io.c (a relaxed maximum, once per encryption pass). */
extern _Atomic size_t up_probe_tls_tx_peak;

/* Whether this pass through the point @p n fails (and count it). */
static inline bool up_fault_hit(_Atomic int *n)
{
    int v = atomic_load_explicit(n, memory_order_relaxed);
    while (v > 0)
        if (atomic_compare_exchange_weak(n, &v, v - 1))
            return true;
    return false;
}

#endif
