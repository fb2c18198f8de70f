/* conf.h -- typed view of a upulsar_conf_t. The string-keyed table in
 * conf.c maps every key onto one field here; the engine reads fields
 * directly. @internal */
#ifndef UP_CONF_H
#define UP_CONF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upulsar/upulsar.h"

typedef enum { UP_HASH_JAVA_STRING = 0, UP_HASH_MURMUR3_32 = 1 } up_hash_scheme_t;
enum { UP_BATCH_DEFAULT = 0, UP_BATCH_KEY_BASED = 1 };
/* batch.mode: when an open batch is sent (drain.c up_rp_pump) */
enum { UP_BATCH_ADAPTIVE = 0, UP_BATCH_LINGER = 1 };
/* io.backend values (io_backend.h) */
enum { UP_IO_AUTO = 0, UP_IO_URING = 1, UP_IO_EPOLL = 2 };
enum { UP_ACCESS_SHARED = 0, UP_ACCESS_EXCLUSIVE = 1, UP_ACCESS_WAIT_FOR_EXCLUSIVE = 2,
       UP_ACCESS_EXCLUSIVE_WITH_FENCING = 3 };
typedef enum { UP_ROUTE_ROUND_ROBIN = 0, UP_ROUTE_RANDOM = 1, UP_ROUTE_SINGLE = 2 } up_route_mode_t;

/* words of struct upulsar_conf.set_keys: room for 64 * this many keys */
#define UP_CONF_SET_WORDS 2

struct upulsar_conf {
    /* ---- client keys ---- */
    char service_url[512];        /* service.url, default pulsar://localhost:6650 */
    int io_threads;               /* io.threads, 1..64, default 1 */
    int io_backend;               /* io.backend: auto|io_uring|epoll (UP_IO_*), default auto */
    int connections_per_broker;   /* connections.per.broker, 1..64, default 1 */
    int operation_timeout_ms;     /* operation.timeout.ms, default 30000 */
    int connection_timeout_ms;    /* connection.timeout.ms, default 10000 */
    int keepalive_interval_ms;    /* keepalive.interval.ms, default 30000, 0 = off */
    int connection_idle_timeout_ms; /* connection.idle.timeout.ms, default 60000, 0 = never */
    int backoff_initial_ms;       /* backoff.initial.ms, default 100 */
    int backoff_max_ms;           /* backoff.max.ms, default 60000 */
    int lookup_max_redirects;     /* lookup.max.redirects, default 20 */
    char listener_name[256];      /* listener.name: advertised listener named in every
                                     LOOKUP, default "" = none */
    int stats_interval_ms;        /* stats.interval.ms, default 0 = off */
    char auth_token[4096];        /* auth.token (secret), default "" */
    char auth_token_file[512];    /* auth.token.file: read at every connect, default "" */
    char auth_token_env[128];     /* auth.token.env: environment variable name, default "" */
    char tls_ca_file[512];        /* tls.ca.file: PEM bundle of trusted CAs, default "" */
    char tls_ca_path[512];        /* tls.ca.path: hashed CA directory, default "" */
    char tls_cert_file[512];      /* tls.cert.file: client certificate (mTLS), default "" */
    char tls_key_file[512];       /* tls.key.file: client private key (mTLS), default "" */
    bool tls_verify_hostname;     /* tls.verify.hostname, default true */
    bool tls_allow_insecure;      /* tls.allow.insecure: skip certificate checks, default false */
    /* ---- producer keys ---- */
    int producers_per_partition;  /* producers.per.partition, 1..64, default 1 */
    bool batching_enabled;        /* batching.enabled, default true */
    int batch_max_messages;       /* batch.max.messages, 1..100000, default 1000 */
    int batch_max_bytes;          /* batch.max.bytes, 1024..5242880, default 131072 */
    int batch_max_delay_us;       /* batch.max.delay.ms (accepts fractions: "0.5"),
                                     stored in microseconds; default 1 ms */
    int latency_sample_every;     /* latency.sample.every: 1 send in N per thread
                                     is timed for the latency histogram, 0 = none,
                                     default 16 */
    int batch_mode;               /* batch.mode: adaptive|linger (UP_BATCH_ADAPTIVE...),
                                     default adaptive */
    int compression;              /* compression: none|lz4|zstd, default none
                                     (value = Pulsar CompressionType) */
    up_hash_scheme_t hashing;     /* hashing.scheme: java_string|murmur3_32, default java_string */
    up_route_mode_t routing;      /* routing.mode: round_robin|random|single, default round_robin */
    int64_t queue_buffer_bytes;   /* queue.buffer.bytes: ring bytes per real producer,
                                     64 KiB..1 GiB, default 1 MiB */
    int queue_idle_release_ms;    /* queue.idle.release.ms: a ring's pages past the first,
                                     unused this long, are given back; default 1000,
                                     0 = never */
    int max_pending_messages;     /* max.pending.messages per real producer (queued +
                                     in flight), 0 = only ring-bounded, default 0 */
    bool block_if_queue_full;     /* block.if.queue.full, default false */
    int send_timeout_ms;          /* send.timeout.ms, default 30000, 0 = none */
    int restart_intensity;        /* restart.intensity: re-creations of one producer
                                     allowed within restart.period.ms before its group
                                     fails; 0 = unlimited (default) */
    int restart_period_ms;        /* restart.period.ms, default 60000 */
    int64_t initial_sequence_id;  /* initial.sequence.id, default -1 (ask broker) */
    int partitions_update_interval_ms; /* partitions.update.interval.ms, default 60000, 0 = off */
    int partitions_max;                /* partitions.max, 1..1000000, default 1024 */
    bool chunking_enabled;        /* chunking.enabled, default false */
    int access_mode;              /* producer.access.mode (UP_ACCESS_*, Pulsar's
                                     ProducerAccessMode values), default shared */
    int batching_type;            /* batching.type: default|key_based (UP_BATCH_*) */
    bool lazy_start_partitions;   /* lazy.start.partitions, default false */
    char producer_properties[1024]; /* producer.properties "k=v,k2=v2", default "" */
    int64_t memory_limit_bytes;   /* memory.limit.bytes (client key), 0 = no bound */
    int max_inflight_batches;     /* max.inflight.batches per real producer (written, not
                                     acknowledged), 1..100000, default 32 */
    /* schema declared in PRODUCER (UP_SCHEMA_*: Pulsar's Schema.Type, or
     * UP_SCHEMA_BYTES = no schema field); see up_conf_schema_check() */
    int schema_type;                   /* schema.type, default bytes */
    char schema_name[256];             /* schema.name, "" = the official clients' name */
    char schema_definition[32768];     /* schema.definition (json, avro) */
    char schema_properties[1024];      /* schema.properties "k=v,..." */
    int schema_key_type;               /* schema.key.type (key_value), default bytes */
    char schema_key_definition[16384]; /* schema.key.definition */
    int schema_value_type;             /* schema.value.type (key_value), default bytes */
    char schema_value_definition[16384]; /* schema.value.definition */
    int schema_kv_encoding;            /* schema.kv.encoding: UP_KV_INLINE / _SEPARATED */
    /* which keys upulsar_conf_set() has set (bit i = row i of the key
     * table in conf.c): a producer's conf overrides the client's only in
     * these, and only these are checked against the key's scope */
    uint64_t set_keys[UP_CONF_SET_WORDS];
    /* ---- producer keys set by function, not by name ---- */
    upulsar_delivery_report_cb_t dr_cb; /* upulsar_conf_set_delivery_report_cb() */
    void *dr_opaque;
    upulsar_router_cb_t router;         /* upulsar_conf_set_router() */
    void *router_opaque;
    /* ---- derived at upulsar_producer_start(), not a key ---- */
    int64_t ring_bytes;                 /* the ring size of the handle's producers:
                                           queue.buffer.bytes or less when the
                                           client has many producers (up_rp_ring_bytes) */
};

/* schema.type values: Pulsar's Schema.Type, and -1 for BYTES (no schema) */
enum { UP_SCHEMA_BYTES = -1, UP_SCHEMA_STRING = 1, UP_SCHEMA_JSON = 2, UP_SCHEMA_AVRO = 4,
       UP_SCHEMA_KEY_VALUE = 15 };
enum { UP_KV_INLINE = 0, UP_KV_SEPARATED = 1 };

/** Whether @p key was set with upulsar_conf_set() on @p c (or, for a
 *  producer's conf, on the client's or the producer's). @thread any */
bool up_conf_was_set(const struct upulsar_conf *c, const char *key);

/** Whether the schema keys of @p c make a schema (a definition for json
 *  and avro, none for the others, ...): OK, or INVALID_ARG with the
 *  reason in upulsar_last_error(). @thread any */
upulsar_err_t up_conf_schema_check(const struct upulsar_conf *c);
/** The checks of a producer's keys at upulsar_producer_start() for
 *  @p topic (normalized): the schema (up_conf_schema_check()) and the
 *  official clients' chunking rules (refused with batching; turned off on a
 *  non-persistent topic, which is why @p c is written). @thread caller */
upulsar_err_t up_conf_producer_check(struct upulsar_conf *c, const char *topic);

/** The name the Java client gives a schema of @p type (UP_SCHEMA_*):
 *  "String", "KeyValue", "Bytes", "" for json and avro. Static. */
const char *up_schema_default_name(int type);

#define UP_MAX_PRODUCER_PROPS 64
/* restart.intensity up to UP_RESTART_EXACT_MAX is counted exactly: the
 * watchdog keeps the times of the last UP_RESTART_EXACT_MAX + 1 restarts
 * of each producer (rp.h); a larger one is counted in UP_RESTART_SLICES
 * slices of restart.period.ms (watchdog.c) */
#define UP_RESTART_EXACT_MAX 63
#define UP_RESTART_SLICES 64

/** The conf a producer of a client uses: @p client_conf's keys (so
 *  producer keys set on the client's conf are the defaults of every
 *  producer of that client), with the producer keys upulsar_conf_set() set
 *  on @p producer_conf (NULL: none) over them, into @p out. A client key set
 *  on @p producer_conf to another value than the client's is refused with
 *  INVALID_ARG naming the key and its scope ("stats.interval.ms is a client
 *  setting; ..."); set to the client's value (one conf serving both) it is
 *  accepted. @p out receives the client's auth.token: wipe it
 *  (up_conf_wipe_secrets()) if the copy is kept. @thread caller */
upulsar_err_t up_conf_for_producer(struct upulsar_conf *out,
                                   const struct upulsar_conf *client_conf,
                                   const struct upulsar_conf *producer_conf);

/** Fill @p c with defaults. */
void up_conf_defaults(struct upulsar_conf *c);

/** Zero @p n bytes at @p p (nothing when @p p is NULL) with a write the
 *  compiler cannot drop, also right before a free or the end of a scope.
 *  For every copy of a secret. @thread any */
void up_wipe(void *p, size_t n);

/** Zero the secrets of @p c (auth.token) with up_wipe(): done on every
 *  copy of a conf the library made once the copy is freed or no longer
 *  needs them. @thread any */
void up_conf_wipe_secrets(struct upulsar_conf *c);
#endif
