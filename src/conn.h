/* conn.h -- one TCP connection to a broker, and the client's pool of them.
 *
 * A connection lives in four domains, one file each:
 *   conn_dial.c     blocking TCP connect, TLS and CONNECT handshake (with its
 *                   credentials) on the thread that wants the connection
 *                   (caller, establish worker, watchdog; never a loop);
 *                   threads wanting the same one share one attempt
 *                   (up_dial_t)
 *   conn_pool.c     the pool keyed by (loop, broker, slot, proxied broker),
 *                   reference counts, and the decision to close an idle one
 *   conn_io.c       its loop: reads and writes (io_backend.h), frame dispatch,
 *                   keep-alive, failure
 *   conn_request.c  requests from any thread (lookups, PRODUCER, CLOSE_PRODUCER)
 *                   sent through the loop and matched there by request id
 *
 * The producers registered on a connection (its rps list) are its own:
 * producer.c adds and removes them with up_conn_add_rp() / up_conn_remove_rp().
 * Each function says which thread may call it (@thread); "loop" means the
 * loop thread of the connection.
 * @internal */
#ifndef UP_CONN_H
#define UP_CONN_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "buf.h"
#include "frame.h"
#include "loop.h"
#include "upulsar/upulsar.h"

/* Receive buffer size: one read (decoder room, or TLS ciphertext). */
#define UP_CONN_RECV_CHUNK (64 * 1024)
/* Frames written by one sendmsg at most (Linux's IOV_MAX), and the bytes
 * after which no more are added (the largest default TCP send buffer,
 * net.ipv4.tcp_wmem). */
#define UP_CONN_IOV 1024
#define UP_CONN_SEND_BYTES (4u << 20)
/* Blocking waits of connection setup and requests look at up_cancelled()
 * at least this often. */
#define UP_CANCEL_SLICE_MS 10

enum { UP_CONN_OPEN = 0, UP_CONN_DEAD = 1 };

struct up_conn {
    /* ---- set by the dialing thread before anyone else sees it, then
     *      immutable ---- */
    struct upulsar_client *client;
    up_loop_t *loop;
    int fd;             /* closed with the last reference */
    char host[256];
    int port;
    int slot;           /* which of connections.per.broker */
    char proxy_to[280]; /* broker behind the proxy host:port is, or "" */
    bool proxy_tls;     /* proxy_to: the proxy's link to it is TLS (the
                           scheme of the proxy's lookup answer) */
    /* ---- (any) ---- */
    _Atomic int refs;   /* holders: see up_conn_ref() */
    _Atomic int state;  /* UP_CONN_OPEN until up_conn_fail() (loop) */
    /* ---- (dialing thread during the handshake, then loop) ---- */
    up_decoder_t dec;
    /* TLS (pulsar+ssl://): plaintext frames are encrypted into tls_tx when
     * no send is in flight; received ciphertext lands in tls_rbuf. */
    struct up_tls *tls;
    uint8_t *tls_rbuf;  /* UP_CONN_RECV_CHUNK bytes */
    /* ---- (loop) ---- */
    up_op_t recv_op, send_op;       /* io_uring backend: completion tags */
    bool recv_inflight, send_inflight;
    struct up_seg *outq;            /* ring of frames to write (conn_io.c) */
    size_t oq_head, oq_len, oq_cap;
    size_t oq_sent;                 /* bytes of outq[oq_head] already sent */
    struct iovec iov[UP_CONN_IOV];  /* the send in flight: c->msg */
    struct msghdr msg;
    /* epoll backend (io_epoll.c): the armed receive's buffer (NULL: none),
     * whether a send is armed and its bytes, readiness seen since the last
     * EAGAIN, and the loop's list of connections that can run */
    uint8_t *ep_rbuf;
    size_t ep_rlen, ep_slen;
    bool ep_send, ep_rd_ready, ep_wr_ready, ep_queued;
    up_conn_t *ep_next;
    up_buf_t tls_tx;
    size_t tls_tx_off;
    /* producers registered on it (up_conn_add_rp() / up_conn_remove_rp(),
     * which up_rp_register() / up_rp_detach() call): rps[0, nrps) in any
     * order (each producer's conn_pos is its slot), and rix, an index by
     * producer id (open addressing, linear probing, rix_mask + 1 slots, a
     * power of two at least twice nrps; NULL when empty) so a receipt finds
     * its producer in constant time however many share the connection */
    up_rp_t **rps;
    size_t nrps, crps;
    up_rp_t **rix;
    size_t rix_mask;
    struct up_req *reqs;   /* requests waiting for their answer (conn_request.c) */
    uint64_t last_rx_us;   /* last whole frame received, or last PING sent */
    uint64_t last_used_us; /* last seen carrying a producer or a request */
    bool ping_outstanding;
    bool purge_resolved;   /* (loop) its queue may hold batches whose messages
                              failed since: taken out before the next write
                              starts and at the end of the loop's tick
                              (up_conn_purge_resolved()) */
};

/* ---- for the rest of the engine ------------------------------------------- */

/** Get a ready connection to host:port for loop @p l from the client's pool,
 *  opening one (TCP connect + CONNECT/CONNECTED, blocking with timeouts) if
 *  needed. @p slot (0 .. connections.per.broker - 1) picks one of the
 *  connections to the same broker on the same loop. @p proxy_to (NULL or
 *  "" = none): host:port is a Pulsar proxy and this is the broker behind
 *  it the connection is for (CONNECT.proxy_to_broker_url; part of the
 *  pool key); @p proxy_tls: the proxy reaches that broker over TLS (a
 *  property of the proxy, so not part of the key; which of a broker's
 *  URLs a CLOSE_PRODUCER naming a new owner is followed by).
 *  Returns a reference the caller drops with up_conn_unref().
 *  (conn_dial.c) @thread caller, establish worker or watchdog; never a loop */
upulsar_err_t up_conn_get(struct upulsar_client *c, up_loop_t *l, const char *host,
                          int port, int slot, const char *proxy_to, bool proxy_tls,
                          up_conn_t **out);

/** References (conn_pool.c). Holders: the pool (until the connection fails
 *  or is closed idle), its loop (until no read or write is in flight
 *  on it), each registered producer, each up_conn_get() caller until it is
 *  done, each request waiting for its answer. The last one closes the
 *  socket and frees it. @thread any */
void up_conn_ref(up_conn_t *c);
void up_conn_unref(up_conn_t *c);

/** Send @p cmd (which must carry @p request_id) and wait up to @p timeout_ms
 *  for the response with that request id. On UPULSAR_OK *@p resp is the
 *  response (free with pulsar__proto__base_command__free_unpacked). A broker
 *  ERROR response is returned as its upulsar_err_t, with *@p resp set too.
 *  @p pre (optional) runs on the loop right before the frame is queued.
 *  (conn_request.c) @thread any but the connection's loop (it waits for it) */
upulsar_err_t up_conn_request(up_conn_t *c, up_cmd_t *cmd, uint64_t request_id,
                              int timeout_ms, up_cmd_t **resp,
                              void (*pre)(void *), void *pre_arg);

/** Queue a frame of @p len bytes at @p p: @p owned (or NULL) is freed once
 *  written, @p batch (or NULL) referenced until then (outq_refs). On a
 *  failed connection @p owned is freed at once. (conn_io.c) @thread loop */
void up_conn_write(up_conn_t *c, const uint8_t *p, size_t len, uint8_t *owned,
                   up_batch_t *batch);
/** Encode @p cmd and queue it. 0, or -1 (out of memory). @thread loop */
int up_conn_write_cmd(up_conn_t *c, const up_cmd_t *cmd);
/** Submit what is queued (one send in flight at a time). @thread loop */
void up_conn_flush(up_conn_t *c);
/** The connection failed (or is closed): log why (unless @p why is
 *  UPULSAR_ERR__CLOSED), take it out of the pool, fail its requests with
 *  UPULSAR_ERR__CONNECT and detach its producers. Once only. @thread loop */
void up_conn_fail(up_conn_t *c, upulsar_err_t why);
/** Completions of its read and write (io_backend.h). @thread loop */
void up_conn_on_recv(up_conn_t *c, int res);
void up_conn_on_send(up_conn_t *c, int res);
/** Keep-alive, and closing the connection once unused for
 *  connection.idle.timeout.ms. @thread loop */
void up_conn_tick(up_conn_t *c, uint64_t now_us);

/** The pool's figures for the statistics: connections open (pooled, not
 *  failed or closed) and, of those, idle (used by no producer and no
 *  request now). (conn_pool.c) @thread any */
void up_conn_pool_stats(struct upulsar_client *c, int *open, int *idle);

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
    char topic[256];      /* a PRODUCER request's topic (for why; cut), else "" */
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

struct pollfd;
#define UP_POLL_CANCELLED (-2)
/** poll() one fd until an event, @p deadline_us (up_now_us() clock), or a
 *  cancellation of the calling thread (up_cancel_on()), looked at every
 *  UP_CANCEL_SLICE_MS. Returns poll()'s result (0: deadline passed, -1:
 *  error) or UP_POLL_CANCELLED. For every blocking wait of connection setup
 *  (TCP, TLS, CONNECT). (conn_dial.c) @thread any but a loop */
int up_poll_until(struct pollfd *p, uint64_t deadline_us);

/** Register @p rp on @p c (its list of producers, which receipts, errors
 *  and closes for them are dispatched by): false when out of memory, then
 *  @p rp is not registered. The reference the producer holds is its own
 *  (up_conn_ref()). (conn_io.c) @thread loop */
bool up_conn_add_rp(up_conn_t *c, up_rp_t *rp);
/** Take @p rp off @p c's list of producers (nothing if it is not on it).
 *  (conn_io.c) @thread loop */
void up_conn_remove_rp(up_conn_t *c, up_rp_t *rp);

/* Events a connection raises for a producer registered on it (producer.c). */
/** CLOSE_PRODUCER from the broker: the producer is re-created (BACKOFF, at
 *  once), at @p assigned_url if the broker named its new owner (NULL or ""
 *  = none: a lookup). @thread loop of @p rp */
void up_rp_on_close_producer(up_rp_t *rp, const char *assigned_url);
/** TOPIC_MIGRATED for the producer: its topic lives in the cluster of
 *  @p cluster_url now (NULL or "": not named); lookups start there and the
 *  producer is re-created (BACKOFF, at once). @thread loop of @p rp */
void up_rp_on_topic_migrated(up_rp_t *rp, const char *cluster_url);

/* ---- between the conn_*.c files ------------------------------------------- */

/** Encode an AUTH_RESPONSE to the broker's AUTH_CHALLENGE with the
 *  credentials as they are now (a token file is read again). (conn_dial.c)
 *  @thread the dialing thread during the handshake, then loop */
upulsar_err_t up_conn_auth_response(up_conn_t *c, up_buf_t *out);

/** The open pooled connection for the key (@p proxy_to "" = none),
 *  referenced, or NULL. (conn_pool.c) @thread any, holding pool_lock */
up_conn_t *up_conn_pool_find(struct upulsar_client *cl, up_loop_t *l, const char *host,
                             int port, int slot, const char *proxy_to);
/** Add the connection just dialed (its handshake done, the caller holding
 *  the only reference) to the pool and hand it to its loop (up_conn_attach).
 *  On failure it is closed, with the caller's reference, and the error
 *  names the broker. (conn_pool.c) @thread the dialing thread, without
 *  pool_lock */
upulsar_err_t up_conn_pool_add(up_conn_t *c);
/** Take @p c out of the pool; whether it was there (its reference is then
 *  the caller's to drop). (conn_pool.c) @thread loop, without pool_lock */
bool up_conn_pool_remove(up_conn_t *c);
/** connection.idle.timeout.ms: note whether @p c is in use and, once unused
 *  for that long, close it unless someone took it meanwhile. Whether it
 *  closed. (conn_pool.c) @thread loop */
bool up_conn_close_if_idle(up_conn_t *c, uint64_t now_us);

/** Task posted by up_conn_pool_add(): the loop takes @p conn (its
 *  reference) into its list and starts reading it. (conn_io.c) @thread loop */
void up_conn_attach(void *conn);
/** Release every queued frame (free control frames, unreference batches).
 *  (conn_io.c) @thread loop, or the holder of the last reference */
void up_conn_drop_outq(up_conn_t *c);
/** Take out of @p c's queue the batch frames for which @p drop(batch, @p arg)
 *  is true and that no send has started: a frame whose bytes are partly
 *  written, or that the send in flight points at, stays (the broker may
 *  still store it). Their batch references are dropped as if written.
 *  Returns how many frames were taken out. (conn_io.c) @thread loop */
size_t up_conn_unqueue(up_conn_t *c, bool (*drop)(const up_batch_t *b, void *arg), void *arg);
/** If purge_resolved is set: take out of @p c's queue the batches whose
 *  messages have all resolved (failed: timed out, refused) that no send has
 *  started on (up_conn_unqueue()), and clear it. (conn_io.c) @thread loop */
void up_conn_purge_resolved(up_conn_t *c);

/** Complete the request @p request_id with @p resp (taken; freed when no
 *  request has that id) and @p err. A PRODUCER_SUCCESS with producer_ready
 *  false (WaitForExclusive) only marks it as waiting. (conn_request.c)
 *  @thread loop */
void up_conn_complete_req(up_conn_t *c, uint64_t request_id, up_cmd_t *resp,
                          upulsar_err_t err);
/** Fail the PRODUCER request for @p producer_id (if one waits) with @p err
 *  and no response. (conn_request.c) @thread loop */
void up_conn_fail_producer_req(up_conn_t *c, uint64_t producer_id, upulsar_err_t err);
/** Fail every waiting request with UPULSAR_ERR__CONNECT (the connection
 *  failed). (conn_request.c) @thread loop */
void up_conn_fail_reqs(up_conn_t *c);

#endif
