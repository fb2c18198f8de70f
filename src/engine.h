/* engine.h -- the engine's headers in one (loop.h, conn.h, rp.h, handle.h,
 * client.h, each defined by the module that owns its state) and the
 * services they share: authentication, URLs and topics, lookups.
 *
 * Threads:
 *   caller threads  upulsar_send(): route, reserve ring cells, copy, commit,
 *                   wake the loop if it sleeps. Touch only the ring, the
 *                   future pool and atomics marked (any).
 *   loop thread     one per io.threads: owns its connections (socket I/O
 *                   via io_uring or epoll, io_backend.h), drains rings into
 *                   batches, writes frames, matches receipts, resolves
 *                   futures; its own 10 ms tick runs keepalive and
 *                   send.timeout.ms. Fields marked (loop) are only touched
 *                   here.
 *   watchdog        supervisor: decides when producers are re-created
 *                   (backoff, restart intensity, terminal errors), polls
 *                   partition counts, runs the statistics callback.
 *   establish       UP_EST_WORKERS per client: run the blocking re-creation
 *   workers         of one producer each (lookup, connect, PRODUCER) for the
 *                   watchdog, which reads the result back (est_state).
 *                   Blocking protocol requests go through the loop
 *                   (up_conn_request()).
 * @internal
 */
#ifndef UP_ENGINE_H
#define UP_ENGINE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "client.h"
#include "conn.h"
#include "handle.h"
#include "loop.h"
#include "rp.h"
#include "upulsar/upulsar.h"

/* auth.c */
/** The token to present now (file, env or string); "" = none. @thread any */
upulsar_err_t up_auth_token(const struct upulsar_conf *cf, char *buf, size_t size);

/* topic.c */
/** Host, port and TLS of a single-host service URL. @thread any */
upulsar_err_t up_parse_url(const char *url, char *host, size_t hostsz, int *port, bool *tls);
/** One "host[:port]" of @p url starting at @p p (up to ',' or '/'); *@p
 *  port keeps its default when none is given. @thread any */
upulsar_err_t up_parse_host(const char *url, const char *p, char *host, size_t hostsz, int *port);
/** Every host of a service URL "pulsar://h1:6650,h2:6650" (at most @p max).
 *  @thread any */
upulsar_err_t up_parse_service_url(const char *url, char (*hosts)[256], int *ports, int max,
                                   int *n, bool *tls);
/** The service address to use now (of a multi-host service URL, the one
 *  that last worked). @thread any */
void up_service_addr(struct upulsar_client *c, char *host, size_t hostsz, int *port);
/** Connecting to service address @p host:@p port failed: the next one of
 *  the list is used from now on (no effect with one host). @thread any */
void up_service_failed(struct upulsar_client *c, const char *host, int port);
/** @p in as a full topic name, into @p out ("t": persistent://public/default/t,
 *  "tenant/ns/t": persistent://tenant/ns/t).
 *  @thread any */
upulsar_err_t up_topic_normalize(const char *in, char *out, size_t outsz);

/* lookup.c */
/** The broker serving @p topic: *@p host:*@p port is where to connect;
 *  when the answer says to go through the service URL (a Pulsar proxy),
 *  that is the service URL and @p proxy_to gets the broker's "host:port"
 *  for CONNECT.proxy_to_broker_url and *@p proxy_tls whether the proxy
 *  reaches it over TLS (its answer's scheme), else @p proxy_to is "" and
 *  *@p proxy_tls false. The lookup
 *  starts at @p from_url (a cluster the topic migrated to), NULL or "" =
 *  the service URL. @thread any but a loop (it waits for the answers) */
upulsar_err_t up_lookup(struct upulsar_client *c, up_loop_t *l, const char *topic,
                        const char *from_url, char *host, size_t hostsz, int *port,
                        char *proxy_to, size_t proxy_to_sz, bool *proxy_tls);
/** The partition count of @p topic (PARTITIONED_METADATA), 0: not
 *  partitioned. @thread any but a loop (it waits for the answer) */
upulsar_err_t up_partitions(struct upulsar_client *c, const char *topic, int *n);
/** One topic of up_lookup_many(): topic and loop in; the broker (as
 *  up_lookup() gives it) or the error and its detail out. */
typedef struct up_lookup_item {
    const char *topic;
    up_loop_t *loop; /* whose connections ask */
    char host[256];
    int port;
    char proxy_to[280];
    bool proxy_tls;
    upulsar_err_t err;
    char why[512];
} up_lookup_item_t;
/** up_lookup() of @p n topics from the service URL at once: each round
 *  asks every broker its topics' LOOKUPs together on one connection
 *  (pipelined), then the redirected ones go on to the next round.
 *  @p timeout_ms bounds each round. @thread caller (start), establish
 *  worker or watchdog; never a loop */
void up_lookup_many(struct upulsar_client *c, up_lookup_item_t *it, size_t n, int timeout_ms);
#endif

