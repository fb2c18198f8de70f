/* conf.c -- the configuration table. One row per key drives parsing and
 * validation (upulsar_conf_set), formatting (upulsar_conf_get), the
 * defaults (up_conf_defaults) and the reference (upulsar_conf_dump_doc). */
#include "conf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"

typedef enum {
    K_STR,   /* char[size]; optional prefix check */
    K_INT,   /* int */
    K_INT64, /* int64_t */
    K_BOOL,  /* bool */
    K_ENUM,  /* int-sized enum, names in .enums */
    K_MSFRAC /* milliseconds with up to 3 decimals, stored as int microseconds */
} kind_t;

typedef struct {
    const char *name;
    int value;
} enum_name_t;

#define F_SECRET 0x1 /* never printed; get returns "***" */
#define F_URL 0x2    /* must start with pulsar:// or pulsar+ssl:// */
#define F_KV 0x4     /* "k=v,k2=v2": non-empty keys, at most UP_MAX_PRODUCER_PROPS */
#define F_FILE_AT 0x8 /* "@path": the value is the content of that file, read at set */

typedef struct {
    const char *key;
    kind_t kind;
    size_t off;
    size_t size;      /* field size (K_STR: buffer size incl. NUL) */
    const char *def;  /* default, as the string set() would accept */
    int64_t min, max; /* K_INT/K_INT64; K_MSFRAC in microseconds */
    const enum_name_t *enums;
    int flags;
    char scope;       /* 'C' client key, 'P' producer key */
    const char *unit;
    const char *desc;
    const char *java; /* Java client equivalent */
} conf_key_t;

static const enum_name_t compression_names[] = {
    {"none", 0}, {"lz4", 1}, {"zlib", 2}, {"zstd", 3}, {NULL, 0}};
static const enum_name_t batching_type_names[] = {
    {"default", UP_BATCH_DEFAULT}, {"key_based", UP_BATCH_KEY_BASED}, {NULL, 0}};
static const enum_name_t batch_mode_names[] = {
    {"adaptive", UP_BATCH_ADAPTIVE}, {"linger", UP_BATCH_LINGER}, {NULL, 0}};
static const enum_name_t access_mode_names[] = {
    {"shared", UP_ACCESS_SHARED},
    {"exclusive", UP_ACCESS_EXCLUSIVE},
    {"wait_for_exclusive", UP_ACCESS_WAIT_FOR_EXCLUSIVE},
    {"exclusive_with_fencing", UP_ACCESS_EXCLUSIVE_WITH_FENCING},
    {NULL, 0}};
static const enum_name_t hashing_names[] = {
    {"java_string", UP_HASH_JAVA_STRING}, {"murmur3_32", UP_HASH_MURMUR3_32}, {NULL, 0}};
static const enum_name_t schema_type_names[] = {{"bytes", UP_SCHEMA_BYTES},
                                                {"string", UP_SCHEMA_STRING},
                                                {"json", UP_SCHEMA_JSON},
                                                {"avro", UP_SCHEMA_AVRO},
                                                {"key_value", UP_SCHEMA_KEY_VALUE},
                                                {NULL, 0}};
static const enum_name_t schema_part_names[] = {{"bytes", UP_SCHEMA_BYTES},
                                                {"string", UP_SCHEMA_STRING},
                                                {"json", UP_SCHEMA_JSON},
                                                {"avro", UP_SCHEMA_AVRO},
                                                {NULL, 0}};
static const enum_name_t kv_encoding_names[] = {
    {"inline", UP_KV_INLINE}, {"separated", UP_KV_SEPARATED}, {NULL, 0}};
static const enum_name_t io_backend_names[] = {
    {"auto", UP_IO_AUTO}, {"io_uring", UP_IO_URING}, {"epoll", UP_IO_EPOLL}, {NULL, 0}};
static const enum_name_t routing_names[] = {{"round_robin", UP_ROUTE_ROUND_ROBIN},
                                            {"random", UP_ROUTE_RANDOM},
                                            {"single", UP_ROUTE_SINGLE},
                                            {NULL, 0}};

_Static_assert(sizeof(up_hash_scheme_t) == sizeof(int), "enum fields are int-sized");
_Static_assert(sizeof(up_route_mode_t) == sizeof(int), "enum fields are int-sized");

#define FLD(f) offsetof(struct upulsar_conf, f), sizeof(((struct upulsar_conf *)0)->f)

static const conf_key_t keys[] = {
    /* ---- client ---- */
    {"service.url", K_STR, FLD(service_url), "pulsar://localhost:6650", 0, 0, NULL, F_URL, 'C',
     "URL",
     "Broker or proxy to bootstrap from: pulsar://host:port (plain TCP) or "
     "pulsar+ssl://host:port (TLS); several hosts as pulsar://h1:6650,h2:6650 (up to 16), "
     "of which the next is used when the current one cannot be reached.",
     "serviceUrl"},
    {"io.threads", K_INT, FLD(io_threads), "1", 1, 64, NULL, 0, 'C', "threads",
     "io loop threads; connections are spread over them.", "numIoThreads"},
    {"io.backend", K_ENUM, FLD(io_backend), "auto", 0, 0, io_backend_names, 0, 'C', "",
     "How the io loops do socket I/O. io_uring: io_uring (submission and completion rings; "
     "the fastest); client creation fails with IO, naming the system's reason, where "
     "io_uring cannot be set up. epoll: epoll readiness and non-blocking sendmsg/recv, "
     "for containers and kernels that deny or lack io_uring (Docker's default seccomp "
     "profile denies it). auto: io_uring where it can be set up and has what the loop "
     "needs, else epoll; the environment variable UPULSAR_IO_BACKEND (io_uring or epoll), "
     "when set, replaces auto. The client logs once (info, at its first connection) which "
     "backend it uses and why; producer statistics name it (io_backend).",
     "(none)"},
    {"connections.per.broker", K_INT, FLD(connections_per_broker), "1", 1, 64, NULL, 0, 'C',
     "connections",
     "TCP connections to each broker per io thread; the producers on a broker are spread "
     "over them (lookups use the first). More than one can help a broker that handles each "
     "connection on one thread.",
     "connectionsPerBroker"},
    {"operation.timeout.ms", K_INT, FLD(operation_timeout_ms), "30000", 1, 3600000, NULL, 0,
     'C', "ms",
     "Bound on lookups, producer creation and other request/response operations.",
     "operationTimeoutMs"},
    {"connection.timeout.ms", K_INT, FLD(connection_timeout_ms), "10000", 1, 3600000, NULL, 0,
     'C', "ms", "Bound on TCP connect plus the CONNECT/CONNECTED handshake.",
     "connectionTimeoutMs"},
    {"keepalive.interval.ms", K_INT, FLD(keepalive_interval_ms), "30000", 0, 3600000, NULL, 0,
     'C', "ms",
     "PING interval; a connection whose PING is still unanswered at the next tick is "
     "closed. 0 disables keep-alive.",
     "keepAliveIntervalSeconds (seconds)"},
    {"connection.idle.timeout.ms", K_INT, FLD(connection_idle_timeout_ms), "60000", 0,
     86400000, NULL, 0, 'C', "ms",
     "A pooled connection that carries no producer and has had no request in flight for "
     "this long is closed (lookup-only connections, connections whose producers stopped or "
     "moved); one is opened again when needed. 0 never closes an idle connection.",
     "connectionMaxIdleSeconds (seconds, < 0 = never)"},
    {"backoff.initial.ms", K_INT, FLD(backoff_initial_ms), "100", 1, 3600000, NULL, 0, 'C',
     "ms", "First reconnect / retry delay; doubles up to backoff.max.ms, with jitter.",
     "initialBackoffIntervalNanos (nanoseconds)"},
    {"backoff.max.ms", K_INT, FLD(backoff_max_ms), "60000", 1, 86400000, NULL, 0, 'C', "ms",
     "Largest reconnect / retry delay.", "maxBackoffIntervalNanos (nanoseconds)"},
    {"lookup.max.redirects", K_INT, FLD(lookup_max_redirects), "20", 0, 1000, NULL, 0, 'C',
     "redirects", "Lookup redirects followed before the lookup fails.",
     "maxLookupRedirects"},
    {"listener.name", K_STR, FLD(listener_name), "", 0, 0, NULL, 0, 'C', "name",
     "Advertised listener to connect through, for clusters whose brokers advertise "
     "several (Pulsar's advertisedListeners, e.g. internal and external addresses): "
     "named in every lookup (advertised_listener_name), so the broker answers with that "
     "listener's address. A name the owning broker does not have makes the lookup fail "
     "with SERVICE_NOT_READY (\"the broker do not have <name> listener\"), retried like "
     "any ServiceNotReady. Empty = none: the brokers' default (internal) address.",
     "listenerName"},
    {"memory.limit.bytes", K_INT64, FLD(memory_limit_bytes), "67108864", 0, INT64_MAX, NULL, 0,
     'C', "bytes",
     "Client-wide memory budget for what grows with traffic: every message accepted and not "
     "yet resolved counts its ring record (header, keys, properties, payload, in 32-byte "
     "cells) plus its payload when that is kept out of the ring (no-copy sends, large "
     "messages), over every producer of the client, so ring space and batch contents in "
     "flight are both under it. When reached, upulsar_send() fails with QUEUE_FULL, or "
     "waits (up to send.timeout.ms) with block.if.queue.full; room comes back as messages "
     "are acknowledged or fail. Fair share: a producer may take more of the budget only "
     "while what it would then hold is no more than what would be left free, so one busy "
     "partition holds at most half of it and k busy ones about 1/(k+1) each, leaving room "
     "for the others; a producer that holds nothing may always take one message the "
     "budget has room for. Ring records are taken ahead, by unit of the producer's ring "
     "(1/4096 of the budget, at most a page: 4 KiB from a 16 MiB budget up, one 32-byte "
     "cell below 128 KiB, so small budgets count message by message): the send whose "
     "record enters a unit takes the unit, and the producer holds the unused rest of its "
     "current unit until none of its messages is counted, when it gives it back; what is "
     "taken, counted messages and such rests, never exceeds the budget, except for a "
     "single message larger than the whole budget, accepted only when nothing else is "
     "taken. 0 = no bound (still counted). Same default as the Java client's memoryLimit. "
     "Not counted: ring pages a burst touched beyond the records they hold now, which stay "
     "resident until queue.idle.release.ms of disuse; with many producers the rings are "
     "sized from this budget unless queue.buffer.bytes is set (a quarter of it shared over "
     "the client's producers when a handle starts, at least 16 KiB each: see "
     "queue.buffer.bytes), so the rings of handles started together add at most about "
     "1.25 x a quarter of it, or 20 KiB per producer past 1024 producers under the "
     "default; a handle started earlier keeps its larger rings, and partitions added to "
     "a handle later get its rings' size. Idle batch buffers are kept for reuse only "
     "while the budget has room for them when they are given back.",
     "memoryLimitBytes"},
    {"stats.interval.ms", K_INT, FLD(stats_interval_ms), "0", 0, 86400000, NULL, 0, 'C', "ms",
     "Interval of statistics reporting; 0 disables it.",
     "statsIntervalSeconds (seconds)"},
    {"auth.token", K_STR, FLD(auth_token), "", 0, 0, NULL, F_SECRET, 'C', "JWT",
     "Token for token authentication (auth_method_name \"token\"); empty = no "
     "authentication. Secret: read back as *** when set, never logged or echoed in errors.",
     "authPluginClassName=AuthenticationToken, authParams=token:JWT"},
    {"auth.token.file", K_STR, FLD(auth_token_file), "", 0, 0, NULL, 0, 'C', "path",
     "File holding the token (surrounding whitespace ignored); read again at every "
     "(re)connection, so a rotated token is picked up. A file that cannot be read, is a "
     "directory or holds no token is an error naming it (upulsar_client_new checks it "
     "once). Overrides auth.token.",
     "authParams=file:///path"},
    {"auth.token.env", K_STR, FLD(auth_token_env), "", 0, 0, NULL, 0, 'C', "name",
     "Environment variable holding the token, read at every (re)connection. Used when "
     "auth.token.file is empty.",
     "(none)"},
    {"tls.ca.file", K_STR, FLD(tls_ca_file), "", 0, 0, NULL, 0, 'C', "path",
     "PEM file of CA certificates trusted for pulsar+ssl:// brokers; empty = the system "
     "default store.",
     "tlsTrustCertsFilePath"},
    {"tls.ca.path", K_STR, FLD(tls_ca_path), "", 0, 0, NULL, 0, 'C', "path",
     "Directory of hashed CA certificates (c_rehash layout), in addition to tls.ca.file.",
     "(none)"},
    {"tls.cert.file", K_STR, FLD(tls_cert_file), "", 0, 0, NULL, 0, 'C', "path",
     "Client certificate (PEM) for mutual TLS; needs tls.key.file. Without a token it is "
     "also the credential: CONNECT names the \"tls\" authentication method, as "
     "AuthenticationTls does.",
     "authParams tlsCertFile (AuthenticationTls)"},
    {"tls.key.file", K_STR, FLD(tls_key_file), "", 0, 0, NULL, 0, 'C', "path",
     "Private key (PEM) of tls.cert.file.", "authParams tlsKeyFile (AuthenticationTls)"},
    {"tls.verify.hostname", K_BOOL, FLD(tls_verify_hostname), "true", 0, 0, NULL, 0, 'C', "",
     "Check that the broker certificate names the host connected to.",
     "enableTlsHostnameVerification"},
    {"tls.allow.insecure", K_BOOL, FLD(tls_allow_insecure), "false", 0, 0, NULL, 0, 'C', "",
     "Accept any broker certificate (no chain or host name check). Only for tests.",
     "tlsAllowInsecureConnection"},
    /* ---- producer ---- */
    {"producers.per.partition", K_INT, FLD(producers_per_partition), "1", 1, 64, NULL, 0, 'P',
     "producers",
     "Real Pulsar producers per partition; keyed messages stick to one of them, so "
     "per-key order holds.",
     "(none)"},
    {"batching.enabled", K_BOOL, FLD(batching_enabled), "true", 0, 0, NULL, 0, 'P', "",
     "Group messages into batch entries (one SEND per batch). Off: each message is sent "
     "alone as a plain entry (not a batch of one), as the official clients send it; its "
     "message id has batch_index -1.",
     "batchingEnabled"},
    {"batch.max.messages", K_INT, FLD(batch_max_messages), "1000", 1, 100000, NULL, 0, 'P',
     "messages", "A batch is sent once it holds this many messages.",
     "batchingMaxMessages"},
    {"batch.max.bytes", K_INT, FLD(batch_max_bytes), "131072", 1024, 5242880, NULL, 0, 'P',
     "bytes",
     "A batch is sent once its uncompressed payload reaches this size, or the broker's "
     "max_message_size when that is smaller (a larger frame would be refused).",
     "batchingMaxBytes"},
    {"batch.max.delay.ms", K_MSFRAC, FLD(batch_max_delay_us), "1", 0, 60000000, NULL, 0, 'P',
     "ms",
     "Longest time a message waits for its batch to fill. Fractions allowed down to "
     "0.001 (\"0.5\" = 500 microseconds). A bound, not a target: the io thread learns how "
     "late its sleeps end (timer and scheduler, typically tens of microseconds, taken as at "
     "most 100) and wakes that much ahead, so a batch leaves by its deadline rather than a "
     "wake-up after it.",
     "batchingMaxPublishDelayMicros (microseconds)"},
    {"batch.mode", K_ENUM, FLD(batch_mode), "adaptive", 0, 0, batch_mode_names, 0, 'P', "",
     "When a batch is sent. adaptive: at once when nothing of this producer is in flight "
     "(every batch it sent has its receipt), so a message under light load goes without "
     "waiting; while batches are in flight, messages wait in the queue and the next batch "
     "fills until the last receipt comes back, the batch is full (batch.max.messages, "
     "batch.max.bytes) or batch.max.delay.ms has passed, the longest a message waits for "
     "its batch. Batches grow with the load by themselves: small at low rates, full at "
     "high ones. linger: the Java client's rule; the first message opens a window of "
     "batch.max.delay.ms and the batch is sent when it ends or the batch is full, "
     "whatever is in flight: fewer, larger batches at a cost of up to that delay per "
     "message.",
     "(none; linger = batchingMaxPublishDelayMicros as the Java client applies it)"},
    {"latency.sample.every", K_INT, FLD(latency_sample_every), "16", 0, 1000000, NULL, 0, 'P',
     "sends",
     "One upulsar_send() in this many, counted per sending thread, reads the clock and "
     "carries its send time, so that its send->receipt time goes into the statistics' "
     "latency_us histogram (upulsar_producer_stats_json()); 1 = every message (a clock "
     "read per send: it costs about as much as the rest of a send), 0 = none.",
     "(none)"},
    {"compression", K_ENUM, FLD(compression), "none", 0, 0, compression_names, 0, 'P', "",
     "Payload compression of each batch (or unbatched message). zstd only if built "
     "with libzstd, zlib only if built with zlib.",
     "compressionType"},
    {"hashing.scheme", K_ENUM, FLD(hashing), "java_string", 0, 0, hashing_names, 0, 'P', "",
     "Hash of the partition key used to pick a partition: java_string = Java "
     "String.hashCode (the Java client's default), murmur3_32 = Murmur3 32-bit seed 0 "
     "(same result in every client).",
     "hashingScheme (JavaStringHash, Murmur3_32Hash)"},
    {"routing.mode", K_ENUM, FLD(routing), "round_robin", 0, 0, routing_names, 0, 'P', "",
     "Partition for messages without a key: round_robin stays on one partition while "
     "the calling thread's messages there fill one batch and moves to the next when a "
     "message would not fit (batch.max.messages reached, batch.max.bytes reached with "
     "its bytes, or batch.max.delay.ms passed since the last move, measured with the "
     "coarse monotonic clock), and with every message when batching is off, as the "
     "official clients do; it also moves before the run's records (payloads plus 48 "
     "bytes each, a payload kept out of the ring as 48) would pass half of the "
     "producer's ring, so a small ring (see queue.buffer.bytes) is not filled by one "
     "sending thread's run; random picks one per message; single sticks to one "
     "partition chosen at start.",
     "messageRoutingMode (RoundRobinPartition, SinglePartition)"},
    {"queue.buffer.bytes", K_INT64, FLD(queue_buffer_bytes), "1048576", 65536, 1073741824,
     NULL, 0, 'P', "bytes",
     "Size of the message ring of each real producer (payloads plus about 32 "
     "bytes per message). Small rings stay in cache: 1 MiB measured faster than 4 MiB. "
     "Left unset, a client with many producers gives them less: a quarter of "
     "memory.limit.bytes "
     "shared over its real producers (those it has when a handle starts, the handle's "
     "included), rounded down to a power of two, at least 16 KiB, when that is smaller "
     "(1000 partitions under the default budget: 16 KiB each); set, it is the size of "
     "every ring, whatever the budget. The size is decided at "
     "upulsar_producer_start() for all the handle's rings (statistics: "
     "queue_capacity_bytes). Messages larger than a quarter of the ring are kept in a "
     "private copy instead, and keys and properties over half of it are refused. "
     "With its commit words a ring may hold up to 1.25 times its size resident, so "
     "under full load rings take up to 1.25 x the ring size x the producers "
     "(at most about 1.25 x memory.limit.bytes / 4 once rings are shared).",
     "(nearest: memoryLimitBytes, client-wide)"},
    {"queue.idle.release.ms", K_INT, FLD(queue_idle_release_ms), "1000", 0, 86400000, NULL, 0,
     'P', "ms",
     "A ring only costs the pages messages were written into: none at start, more under "
     "load up to queue.buffer.bytes, and while load is low it keeps reusing its first "
     "page. Pages past the first that no burst has needed for this long are given back "
     "to the system (madvise) the next time the ring is empty. 0 = never give them back.",
     "(none)"},
    {"max.pending.messages", K_INT, FLD(max_pending_messages), "0", 0, 100000000, NULL, 0,
     'P', "messages",
     "Messages accepted and not yet resolved (queued or in flight), per real "
     "producer. When reached, upulsar_send() fails with QUEUE_FULL, or waits (up to "
     "send.timeout.ms) with block.if.queue.full. 0 = bounded only by "
     "queue.buffer.bytes.",
     "maxPendingMessages"},
    {"block.if.queue.full", K_BOOL, FLD(block_if_queue_full), "false", 0, 0, NULL, 0, 'P', "",
     "When the queue is full, upulsar_send() waits (up to send.timeout.ms) instead of "
     "failing with QUEUE_FULL.",
     "blockIfQueueFull"},
    {"send.timeout.ms", K_INT, FLD(send_timeout_ms), "30000", 0, 86400000, NULL, 0, 'P', "ms",
     "A message not acknowledged within this time fails with MSG_TIMED_OUT; 0 = never.",
     "sendTimeoutMs"},
    {"restart.intensity", K_INT, FLD(restart_intensity), "0", 0, 1000000, NULL, 0, 'P',
     "restarts",
     "Re-creations of one producer allowed within restart.period.ms before its "
     "partition group fails; 0 = unlimited. The re-creation right after the broker closed "
     "the producer in order (CLOSE_PRODUCER for an unload or a transfer, e.g. during a "
     "rolling broker restart) is not counted; the attempts after it, if it fails, are.",
     "(none)"},
    {"restart.period.ms", K_INT, FLD(restart_period_ms), "60000", 1, 86400000, NULL, 0, 'P',
     "ms", "Window over which restart.intensity is counted.", "(none)"},
    {"initial.sequence.id", K_INT64, FLD(initial_sequence_id), "-1", -1, INT64_MAX, NULL, 0,
     'P', "",
     "Sequence id before the first message; -1 = continue from the broker's "
     "last_sequence_id.",
     "initialSequenceId"},
    {"partitions.update.interval.ms", K_INT, FLD(partitions_update_interval_ms), "60000", 0,
     86400000, NULL, 0, 'P', "ms",
     "How often a partitioned producer asks the broker for the partition count "
     "(PARTITIONED_METADATA) and starts groups for new partitions; keyed routing then "
     "uses the new count. A smaller count is refused (logged; partitions never shrink). "
     "0 = never.",
     "autoUpdatePartitions / autoUpdatePartitionsInterval"},
    {"partitions.max", K_INT, FLD(partitions_max), "1024", 1, 1000000, NULL, 0, 'P', "partitions",
     "Most partitions a producer opens: a larger count (given to start, announced by the "
     "broker, or grown to later) is refused with the reason (start fails; growth is logged "
     "and not followed). Each partition holds producers.per.partition producers, each with "
     "a ring of up to queue.buffer.bytes.",
     "(none)"},
    {"chunking.enabled", K_BOOL, FLD(chunking_enabled), "false", 0, 0, NULL, 0, 'P', "",
     "Messages larger than the broker's max_message_size are accepted and sent in chunks "
     "instead of failing with MSG_TOO_LARGE: compressed whole (compression), then split, "
     "each chunk its own SEND; one future, resolved with the first and last chunk's "
     "positions (upulsar_msg_id_t). As in the official clients it needs "
     "batching.enabled=false (upulsar_producer_start refuses both on) and applies to "
     "persistent topics only (on non-persistent ones it is off). A chunked message's payload "
     "may be up to 2147483647 bytes, and its keys and properties must fit in half of "
     "max_message_size (see upulsar_send).",
     "enableChunking"},
    {"producer.access.mode", K_ENUM, FLD(access_mode), "shared", 0, 0, access_mode_names, 0,
     'P', "",
     "Access mode sent in PRODUCER. shared: any number of producers (refused with "
     "UPULSAR_ERR_PRODUCER_BUSY while an exclusive producer holds the topic or waits for "
     "it). exclusive: refused with UPULSAR_ERR_PRODUCER_FENCED while another producer is "
     "connected or waiting (Pulsar's answer). wait_for_exclusive: "
     "upulsar_producer_start() (and re-creation) waits, without operation.timeout.ms, "
     "until the broker grants the topic. exclusive_with_fencing: takes the topic, fencing "
     "the others and the waiting ones (UPULSAR_ERR_PRODUCER_FENCED for them). Under "
     "the exclusive modes the topic_epoch granted is sent again on re-creation, and "
     "PRODUCER_BUSY and PRODUCER_FENCED fail the partition group instead of being retried.",
     "accessMode (ProducerAccessMode)"},
    {"batching.type", K_ENUM, FLD(batching_type), "default", 0, 0, batching_type_names, 0, 'P',
     "",
     "default: a batch holds messages of any key. key_based: one batch per key (the "
     "ordering key if set, else the partition key; keyless messages share one), so each "
     "entry carries one key and Key_Shared consumers get whole batches; when the batches "
     "together reach batch.max.messages / batch.max.bytes or the delay, each is sent as "
     "its own entry, in ascending order of first sequence id.",
     "batcherBuilder (BatcherBuilder.DEFAULT, KEY_BASED)"},
    {"lazy.start.partitions", K_BOOL, FLD(lazy_start_partitions), "false", 0, 0, NULL, 0, 'P',
     "",
     "Partitioned topics: upulsar_producer_start() creates no producer on the broker; "
     "a partition's producers are created (by the supervisor) when the first message is "
     "routed to that partition, which then waits in the ring until they are ready. Until "
     "then introspection shows them CONNECTING.",
     "(C++ client) lazyStartPartitionedProducers"},
    {"producer.properties", K_STR, FLD(producer_properties), "", 0, 0, NULL, F_KV, 'P',
     "k=v,...",
     "Properties of each real producer, sent in its PRODUCER request (visible in the "
     "broker's topic stats): comma-separated key=value pairs, keys non-empty and without "
     "'=' or ',', at most 64 pairs.",
     "properties / property(key, value)"},
    {"max.inflight.batches", K_INT, FLD(max_inflight_batches), "32", 1, 100000, NULL, 0,
     'P', "batches",
     "Batches built but not yet acknowledged, per real producer (each holds up to "
     "batch.max.bytes). With queue.buffer.bytes this bounds a producer's memory; when "
     "reached, messages wait in the ring.",
     "(none)"},
    {"schema.type", K_ENUM, FLD(schema_type), "bytes", 0, 0, schema_type_names, 0, 'P', "",
     "Schema declared in every PRODUCER request, so topics whose schema validation is "
     "enforced accept the producer. bytes: none (raw bytes, no schema sent). string: "
     "UTF-8 text. json, avro: records described by schema.definition (an Avro record "
     "schema in JSON, as the official clients send for both). key_value: a key and a "
     "value schema (schema.key.*, schema.value.*, schema.kv.encoding). upulsar does not "
     "encode payloads: send them as the schema says. PRODUCER_SUCCESS's schema version "
     "is kept per producer and written in every entry's metadata (schema_version). The "
     "broker refuses a schema incompatible with the topic's (another type, or a "
     "definition its compatibility strategy rejects) with "
     "UPULSAR_ERR_INCOMPATIBLE_SCHEMA: upulsar_producer_start() fails with it at once; a "
     "producer created before retries it with backoff, as the official clients do. "
     "Keys that do not make a schema (json without a definition, a definition for "
     "string...) fail upulsar_producer_start() with UPULSAR_ERR__INVALID_ARG.",
     "Schema (newProducer(Schema.STRING / JSON / AVRO / KeyValue))"},
    {"schema.name", K_STR, FLD(schema_name), "", 0, 0, NULL, 0, 'P', "name",
     "Name of the schema; empty = the name the Java client gives the type (\"String\", "
     "\"KeyValue\", empty for json and avro).",
     "SchemaInfo.name"},
    {"schema.definition", K_STR, FLD(schema_definition), "", 0, 0, NULL, F_FILE_AT, 'P',
     "text or @path",
     "The json or avro schema's definition (its schema_data), e.g. "
     "{\"type\":\"record\",\"name\":\"Order\",\"fields\":[...]}. A value starting with "
     "'@' names a file whose content is the definition: read when the key is set "
     "(upulsar_conf_get then returns the content; a file that cannot be read or is too "
     "large is refused, naming it).",
     "SchemaDefinition / SchemaInfo.schema"},
    {"schema.properties", K_STR, FLD(schema_properties), "", 0, 0, NULL, F_KV, 'P', "k=v,...",
     "Properties of the schema (not for key_value, whose properties describe its key and "
     "value schemas): comma-separated key=value pairs, keys non-empty and without '=' or "
     "',', at most 64 pairs.",
     "SchemaInfo.properties"},
    {"schema.key.type", K_ENUM, FLD(schema_key_type), "bytes", 0, 0, schema_part_names, 0, 'P',
     "", "key_value: the key's schema (bytes, string, json, avro).",
     "KeyValue key schema"},
    {"schema.key.definition", K_STR, FLD(schema_key_definition), "", 0, 0, NULL, F_FILE_AT,
     'P', "text or @path",
     "key_value: the key schema's definition when it is json or avro ('@path' as for "
     "schema.definition).",
     "KeyValue key schema's SchemaInfo.schema"},
    {"schema.value.type", K_ENUM, FLD(schema_value_type), "bytes", 0, 0, schema_part_names, 0,
     'P', "", "key_value: the value's schema (bytes, string, json, avro).",
     "KeyValue value schema"},
    {"schema.value.definition", K_STR, FLD(schema_value_definition), "", 0, 0, NULL, F_FILE_AT,
     'P', "text or @path",
     "key_value: the value schema's definition when it is json or avro ('@path' as for "
     "schema.definition).",
     "KeyValue value schema's SchemaInfo.schema"},
    {"schema.kv.encoding", K_ENUM, FLD(schema_kv_encoding), "inline", 0, 0, kv_encoding_names,
     0, 'P', "",
     "key_value: how messages carry key and value, declared in the schema "
     "(kv.encoding.type). inline: the payload is [key length, 4 bytes big-endian][key]"
     "[value length][value]. separated: the payload is the value and the key is the "
     "message's partition_key (text: upulsar does not mark keys base64-encoded).",
     "KeyValueEncodingType (INLINE, SEPARATED)"},
};
#define NKEYS (sizeof keys / sizeof keys[0])
_Static_assert(NKEYS <= 64 * UP_CONF_SET_WORDS, "struct upulsar_conf.set_keys is too small");

static const conf_key_t *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].key, name) == 0)
            return &keys[i];
    return NULL;
}

/* ---- errors ------------------------------------------------------------ */

static upulsar_conf_res_t err(upulsar_conf_res_t res, char *errstr, size_t errstr_size,
                              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static upulsar_conf_res_t err(upulsar_conf_res_t res, char *errstr, size_t errstr_size,
                              const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (errstr && errstr_size)
        snprintf(errstr, errstr_size, "%s", msg);
    up_seterr(UPULSAR_ERR__INVALID_ARG, "%s", msg);
    return res;
}

/* ---- parsing ----------------------------------------------------------- */

/* Decimal integer, optional leading '-', nothing else. 0 or -1. */
static int parse_i64(const char *s, int64_t *out)
{
    bool neg = false;
    if (*s == '-') {
        neg = true;
        s++;
    }
    if (!*s)
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return -1;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX)
            return -1;
        *out = (int64_t)v;
    }
    return 0;
}

/* Milliseconds "123", "0.5", "2.125" (locale-independent) into
 * microseconds; decimals beyond the third must be zeros. Values too large
 * for int64 are reported as INT64_MAX (and then rejected by the range). */
static int parse_ms_frac(const char *s, int64_t *us)
{
    int64_t ms = 0;
    bool digits = false, big = false;
    for (; *s >= '0' && *s <= '9'; s++) {
        digits = true;
        if (ms > INT64_MAX / 10000)
            big = true;
        else
            ms = ms * 10 + (*s - '0');
    }
    int64_t frac = 0;
    if (*s == '.') {
        s++;
        int n = 0;
        for (; *s >= '0' && *s <= '9'; s++, n++) {
            digits = true;
            if (n < 3)
                frac = frac * 10 + (*s - '0');
            else if (*s != '0')
                return -1; /* finer than a microsecond */
        }
        for (; n < 3; n++)
            frac *= 10;
    }
    if (!digits || *s)
        return -1;
    *us = big ? INT64_MAX : ms * 1000 + frac;
    return 0;
}

static void fmt_ms_frac(int64_t us, char *buf, size_t size)
{
    uint64_t u = us < 0 ? 0 : (uint64_t)us; /* the table's ranges start at 0 */
    unsigned frac = (unsigned)(u % 1000);
    if (frac == 0) {
        snprintf(buf, size, "%" PRIu64, u / 1000);
        return;
    }
    char f[4] = {(char)('0' + frac / 100), (char)('0' + frac / 10 % 10),
                 (char)('0' + frac % 10), '\0'};
    for (int i = 2; i > 0 && f[i] == '0'; i--)
        f[i] = '\0';
    snprintf(buf, size, "%" PRIu64 ".%s", u / 1000, f);
}

static void enum_list(const enum_name_t *e, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (; e->name; e++) {
        int w = snprintf(buf + n, size - n, "%s%s", n ? ", " : "", e->name);
        if (w < 0 || (size_t)w >= size - n)
            break;
        n += (size_t)w;
    }
}

static bool compiled_in(const conf_key_t *k, int value)
{
    bool comp = k->off == offsetof(struct upulsar_conf, compression);
#ifndef UPULSAR_HAVE_ZSTD
    if (comp && value == 3)
        return false;
#endif
#ifndef UPULSAR_HAVE_ZLIB
    if (comp && value == 2)
        return false;
#endif
    (void)comp;
    (void)value;
    return true;
}

static void put_int(void *field, int v) { memcpy(field, &v, sizeof v); }
static int get_int(const void *field)
{
    int v;
    memcpy(&v, field, sizeof v);
    return v;
}

/* F_FILE_AT: @p field = the content of file @p path (only when it is
 * readable, fits and holds no NUL byte). */
static upulsar_conf_res_t set_from_file(char *field, const conf_key_t *k, const char *path,
                                        char *errstr, size_t errstr_size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return err(UPULSAR_CONF_INVALID, errstr, errstr_size, "%s: cannot read \"%.200s\"",
                   k->key, path);
    char *buf = malloc(k->size);
    if (!buf) {
        fclose(fp);
        return err(UPULSAR_CONF_INVALID, errstr, errstr_size, "%s: out of memory", k->key);
    }
    size_t n = fread(buf, 1, k->size, fp);
    bool bad = ferror(fp) != 0;
    fclose(fp);
    upulsar_conf_res_t res = UPULSAR_CONF_OK;
    if (bad)
        res = err(UPULSAR_CONF_INVALID, errstr, errstr_size, "%s: cannot read \"%.200s\"",
                  k->key, path);
    else if (n >= k->size)
        res = err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                  "%s: \"%.200s\" is longer than %zu bytes", k->key, path, k->size - 1);
    else if (memchr(buf, '\0', n))
        res = err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                  "%s: \"%.200s\" holds a NUL byte", k->key, path);
    if (res == UPULSAR_CONF_OK) {
        memcpy(field, buf, n);
        field[n] = '\0';
    }
    free(buf);
    return res;
}

/* Parse @p value for @p k into @p conf (only when valid). */
static upulsar_conf_res_t set_key(struct upulsar_conf *conf, const conf_key_t *k,
                                  const char *value, char *errstr, size_t errstr_size)
{
    char *field = (char *)conf + k->off;
    switch (k->kind) {
    case K_STR: {
        if ((k->flags & F_FILE_AT) && value[0] == '@')
            return set_from_file(field, k, value + 1, errstr, errstr_size);
        size_t len = strlen(value);
        if (len >= k->size) {
            if (k->flags & F_SECRET)
                return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                           "%s: value is longer than %zu bytes", k->key, k->size - 1);
            return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                       "%s: value is longer than %zu bytes (got %zu)", k->key, k->size - 1,
                       len);
        }
        if (k->flags & F_URL) {
            const char *rest = NULL;
            if (strncmp(value, "pulsar://", 9) == 0)
                rest = value + 9;
            else if (strncmp(value, "pulsar+ssl://", 13) == 0)
                rest = value + 13;
            if (!rest)
                return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                           "%s: must start with pulsar:// or pulsar+ssl:// (got \"%.64s\")",
                           k->key, value);
            if (!*rest || strpbrk(rest, " \t\r\n/?#"))
                return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                           "%s: expected pulsar[+ssl]://host[:port][,host[:port]...] "
                           "(got \"%.64s\")",
                           k->key, value);
        }
        if ((k->flags & F_KV) && *value) {
            int pairs = 0;
            for (const char *q = value; ; pairs++) {
                const char *end = strchr(q, ',');
                size_t il = end ? (size_t)(end - q) : strlen(q);
                const char *eq = memchr(q, '=', il);
                if (!eq || eq == q)
                    return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                               "%s: expected key=value[,key=value...] with non-empty keys "
                               "(got \"%.64s\")",
                               k->key, value);
                if (!end)
                    break;
                q = end + 1;
            }
            if (pairs + 1 > UP_MAX_PRODUCER_PROPS)
                return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                           "%s: more than %d pairs", k->key, UP_MAX_PRODUCER_PROPS);
        }
        memcpy(field, value, len + 1);
        if (k->flags & F_SECRET) /* what a longer value left after the new one */
            up_wipe(field + len + 1, k->size - len - 1);
        return UPULSAR_CONF_OK;
    }
    case K_INT:
    case K_INT64: {
        int64_t v;
        if (parse_i64(value, &v) || v < k->min || v > k->max)
            return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                       "%s: must be an integer between %" PRId64 " and %" PRId64
                       " (got \"%.64s\")",
                       k->key, k->min, k->max, value);
        if (k->kind == K_INT)
            put_int(field, (int)v);
        else
            memcpy(field, &v, sizeof v);
        return UPULSAR_CONF_OK;
    }
    case K_BOOL: {
        bool b;
        if (strcasecmp(value, "true") == 0 || strcmp(value, "1") == 0)
            b = true;
        else if (strcasecmp(value, "false") == 0 || strcmp(value, "0") == 0)
            b = false;
        else
            return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                       "%s: must be true, false, 1 or 0 (got \"%.64s\")", k->key, value);
        *(bool *)field = b;
        return UPULSAR_CONF_OK;
    }
    case K_ENUM: {
        for (const enum_name_t *e = k->enums; e->name; e++) {
            if (strcasecmp(value, e->name) != 0)
                continue;
            if (!compiled_in(k, e->value))
                return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                           "%s: %s is not supported by this build", k->key, e->name);
            put_int(field, e->value);
            return UPULSAR_CONF_OK;
        }
        char names[128];
        enum_list(k->enums, names, sizeof names);
        return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                   "%s: must be one of %s (got \"%.64s\")", k->key, names, value);
    }
    case K_MSFRAC: {
        int64_t us;
        if (parse_ms_frac(value, &us) || us < k->min || us > k->max) {
            char lo[32], hi[32];
            fmt_ms_frac(k->min, lo, sizeof lo);
            fmt_ms_frac(k->max, hi, sizeof hi);
            return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                       "%s: must be a number of milliseconds between %s and %s, "
                       "at most 3 decimals (got \"%.64s\")",
                       k->key, lo, hi, value);
        }
        put_int(field, (int)us);
        return UPULSAR_CONF_OK;
    }
    }
    return err(UPULSAR_CONF_INVALID, errstr, errstr_size, "%s: bad table entry", k->key);
}

static void get_key(const struct upulsar_conf *conf, const conf_key_t *k, char *buf,
                    size_t size)
{
    const char *field = (const char *)conf + k->off;
    switch (k->kind) {
    case K_STR:
        if ((k->flags & F_SECRET) && field[0])
            snprintf(buf, size, "***");
        else
            snprintf(buf, size, "%s", field);
        return;
    case K_INT:
        snprintf(buf, size, "%d", get_int(field));
        return;
    case K_INT64: {
        int64_t v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, size, "%" PRId64, v);
        return;
    }
    case K_BOOL:
        snprintf(buf, size, "%s", *(const bool *)field ? "true" : "false");
        return;
    case K_ENUM: {
        int v = get_int(field);
        for (const enum_name_t *e = k->enums; e->name; e++) {
            if (e->value == v) {
                snprintf(buf, size, "%s", e->name);
                return;
            }
        }
        snprintf(buf, size, "%d", v);
        return;
    }
    case K_MSFRAC:
        fmt_ms_frac(get_int(field), buf, size);
        return;
    }
    snprintf(buf, size, "%s", "");
}

/* ---- public API ---------------------------------------------------------- */

void up_conf_defaults(struct upulsar_conf *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NKEYS; i++)
        (void)set_key(c, &keys[i], keys[i].def, NULL, 0); /* tested to succeed */
}

upulsar_conf_t *upulsar_conf_new(void)
{
    upulsar_conf_t *c = malloc(sizeof *c);
    if (c)
        up_conf_defaults(c);
    return c;
}

upulsar_conf_t *upulsar_conf_dup(const upulsar_conf_t *conf)
{
    if (!conf)
        return NULL;
    upulsar_conf_t *c = malloc(sizeof *c);
    if (c)
        memcpy(c, conf, sizeof *c);
    return c;
}

void up_wipe(void *p, size_t n)
{
    if (p && n)
        explicit_bzero(p, n);
}

void up_conf_wipe_secrets(struct upulsar_conf *c) { up_wipe(c->auth_token, sizeof c->auth_token); }

void upulsar_conf_destroy(upulsar_conf_t *conf)
{
    if (conf)
        up_conf_wipe_secrets(conf);
    free(conf);
}

upulsar_conf_res_t upulsar_conf_set(upulsar_conf_t *conf, const char *key, const char *value,
                                    char *errstr, size_t errstr_size)
{
    if (!key)
        return err(UPULSAR_CONF_UNKNOWN, errstr, errstr_size, "configuration key is NULL");
    const conf_key_t *k = find_key(key);
    if (!k)
        return err(UPULSAR_CONF_UNKNOWN, errstr, errstr_size,
                   "unknown configuration key \"%.64s\"", key);
    if (!conf)
        return err(UPULSAR_CONF_INVALID, errstr, errstr_size, "%s: conf is NULL", k->key);
    if (!value)
        return err(UPULSAR_CONF_INVALID, errstr, errstr_size, "%s: value is NULL", k->key);
    upulsar_conf_res_t r = set_key(conf, k, value, errstr, errstr_size);
    if (r == UPULSAR_CONF_OK) {
        size_t i = (size_t)(k - keys);
        conf->set_keys[i / 64] |= UINT64_C(1) << (i % 64);
    }
    return r;
}

upulsar_conf_scope_t upulsar_conf_scope(const char *key)
{
    const conf_key_t *k = key ? find_key(key) : NULL;
    if (!k)
        return UPULSAR_CONF_SCOPE_UNKNOWN;
    return k->scope == 'C' ? UPULSAR_CONF_SCOPE_CLIENT : UPULSAR_CONF_SCOPE_PRODUCER;
}

static bool key_is_set(const struct upulsar_conf *c, size_t i)
{
    return (c->set_keys[i / 64] >> (i % 64)) & 1u;
}

bool up_conf_was_set(const struct upulsar_conf *c, const char *key)
{
    const conf_key_t *k = find_key(key);
    return k && key_is_set(c, (size_t)(k - keys));
}

/* Whether key @p k has the same value in @p a and @p b. */
static bool same_value(const struct upulsar_conf *a, const struct upulsar_conf *b,
                       const conf_key_t *k)
{
    const char *fa = (const char *)a + k->off, *fb = (const char *)b + k->off;
    if (k->kind == K_STR)
        return strncmp(fa, fb, k->size) == 0;
    return memcmp(fa, fb, k->size) == 0;
}

upulsar_err_t up_conf_for_producer(struct upulsar_conf *out,
                                   const struct upulsar_conf *client_conf,
                                   const struct upulsar_conf *producer_conf)
{
    const struct upulsar_conf *pc = producer_conf;
    if (pc) /* refused before anything is written, so @p out is whole either way */
        for (size_t i = 0; i < NKEYS; i++)
            if (keys[i].scope == 'C' && key_is_set(pc, i) &&
                !same_value(pc, client_conf, &keys[i]))
                return up_seterr(UPULSAR_ERR__INVALID_ARG,
                                 "%s is a client setting; set it on the client's conf (the "
                                 "one given to upulsar_client_new()): a producer's conf "
                                 "cannot change it",
                                 keys[i].key);
    memcpy(out, client_conf, sizeof *out);
    if (!pc)
        return UPULSAR_OK;
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].scope == 'P' && key_is_set(pc, i))
            memcpy((char *)out + keys[i].off, (const char *)pc + keys[i].off, keys[i].size);
    for (size_t w = 0; w < UP_CONF_SET_WORDS; w++)
        out->set_keys[w] |= pc->set_keys[w];
    /* producer settings set by function: the producer's conf wins where it
     * has one */
    if (pc->dr_cb) {
        out->dr_cb = pc->dr_cb;
        out->dr_opaque = pc->dr_opaque;
    }
    if (pc->router) {
        out->router = pc->router;
        out->router_opaque = pc->router_opaque;
    }
    return UPULSAR_OK;
}

upulsar_conf_res_t upulsar_conf_get(const upulsar_conf_t *conf, const char *key, char *buf,
                                    size_t size)
{
    if (buf && size)
        buf[0] = '\0';
    const conf_key_t *k = key ? find_key(key) : NULL;
    if (!k)
        return UPULSAR_CONF_UNKNOWN;
    if (!conf)
        return UPULSAR_CONF_INVALID;
    if (buf && size)
        get_key(conf, k, buf, size);
    return UPULSAR_CONF_OK;
}

/* Markdown cells must not contain '|' or line breaks; every text in the
 * table is written by us, but defaults could change: escape anyway. */
static void cell(FILE *fp, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", fp);
        else if (*s == '\n')
            fputc(' ', fp);
        else
            fputc(*s, fp);
    }
}

static void doc_row(FILE *fp, const conf_key_t *k)
{
    static const char *const type_names[] = {
        [K_STR] = "string", [K_INT] = "integer", [K_INT64] = "integer",
        [K_BOOL] = "boolean", [K_ENUM] = "enum", [K_MSFRAC] = "decimal"};
    char range[160], def[64];
    switch (k->kind) {
    case K_INT:
    case K_INT64:
        snprintf(range, sizeof range, "%" PRId64 " .. %" PRId64, k->min, k->max);
        break;
    case K_MSFRAC: {
        char lo[32], hi[32];
        fmt_ms_frac(k->min, lo, sizeof lo);
        fmt_ms_frac(k->max, hi, sizeof hi);
        snprintf(range, sizeof range, "%s .. %s (step 0.001)", lo, hi);
        break;
    }
    case K_BOOL:
        snprintf(range, sizeof range, "true, false");
        break;
    case K_ENUM:
        enum_list(k->enums, range, sizeof range);
        break;
    case K_STR:
        if (k->flags & F_URL)
            snprintf(range, sizeof range, "pulsar://... or pulsar+ssl://...");
        else
            snprintf(range, sizeof range, "up to %zu bytes", k->size - 1);
        break;
    }
    snprintf(def, sizeof def, "%s", k->def[0] ? k->def : "(empty)");
    fputs("| `", fp);
    cell(fp, k->key);
    fputs("` | ", fp);
    cell(fp, type_names[k->kind]);
    fputs(" | `", fp);
    cell(fp, def);
    fputs("` | ", fp);
    cell(fp, range);
    fputs(" | ", fp);
    cell(fp, k->unit[0] ? k->unit : "-");
    fputs(" | ", fp);
    cell(fp, k->desc);
    fputs(" | ", fp);
    cell(fp, k->java);
    fputs(" |\n", fp);
}

void upulsar_conf_dump_doc(void *fp_)
{
    FILE *fp = fp_;
    if (!fp)
        return;
    fputs("# upulsar configuration\n\n"
          "Generated from the key table in `src/conf.c` by `upulsar_conf_dump_doc()`; "
          "do not edit by hand.\n\n"
          "Set keys with `upulsar_conf_set(conf, key, value, errstr, size)`. Values are "
          "strings: integers in decimal, booleans `true`/`false`/`1`/`0`, enums by name. "
          "A value outside its range is rejected with `UPULSAR_CONF_INVALID` and the "
          "configuration is left unchanged; an unknown key gives "
          "`UPULSAR_CONF_UNKNOWN`.\n\n"
          "Each key belongs to the client or to its producers (the two tables below; "
          "`upulsar_conf_scope()` tells which), and one conf may serve both: "
          "`upulsar_client_new()` reads the client keys, `upulsar_producer_start()` the "
          "producer keys. Producer keys set on the client's conf are the defaults of every "
          "producer of that client; a producer's own conf replaces them key by key, only "
          "for the keys set on it with `upulsar_conf_set()` (a NULL conf sets none). A client key set "
          "on a producer's conf to another value than the client's has no object to act "
          "on: `upulsar_producer_start()` refuses it with `UPULSAR_ERR__INVALID_ARG`, "
          "naming the key (\"stats.interval.ms is a client setting; set it on the "
          "client's conf ...\").\n",
          fp);
    for (int pass = 0; pass < 2; pass++) {
        char scope = pass == 0 ? 'C' : 'P';
        fputs(pass == 0 ? "\n## Client keys\n\nRead by `upulsar_client_new()`. On a "
                          "producer's conf only the client's own value is accepted.\n\n"
                        : "\n## Producer keys\n\nRead by `upulsar_producer_start()`: from "
                          "its conf where set there, else from the client's conf (defaults "
                          "for all its producers).\n\n",
              fp);
        fputs("| Key | Type | Default | Range | Unit | Description | Java client |\n"
              "|---|---|---|---|---|---|---|\n",
              fp);
        for (size_t i = 0; i < NKEYS; i++)
            if (keys[i].scope == scope)
                doc_row(fp, &keys[i]);
    }
}

const char *up_schema_default_name(int type)
{
    switch (type) {
    case UP_SCHEMA_STRING: return "String";
    case UP_SCHEMA_KEY_VALUE: return "KeyValue";
    case UP_SCHEMA_BYTES: return "Bytes";
    default: return "";
    }
}

static upulsar_err_t check_part(const char *what, int type, const char *def)
{
    bool structured = type == UP_SCHEMA_JSON || type == UP_SCHEMA_AVRO;
    if (structured && !def[0])
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "%s is json or avro: its definition is "
                         "missing", what);
    if (!structured && def[0])
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "%s has a definition, which only json and "
                         "avro take", what);
    return UPULSAR_OK;
}

upulsar_err_t up_conf_producer_check(struct upulsar_conf *c, const char *topic)
{
    if (c->chunking_enabled && c->batching_enabled)
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "chunking.enabled=true needs batching.enabled=false (batching and "
                         "chunking cannot both be on, as in the official clients)");
    if (c->chunking_enabled && !strncmp(topic, "non-persistent://", 17))
        c->chunking_enabled = false; /* as the official clients: persistent topics only */
    return up_conf_schema_check(c);
}

upulsar_err_t up_conf_schema_check(const struct upulsar_conf *c)
{
    bool kv = c->schema_type == UP_SCHEMA_KEY_VALUE;
    if (!kv && (c->schema_key_type != UP_SCHEMA_BYTES || c->schema_value_type != UP_SCHEMA_BYTES ||
                c->schema_key_definition[0] || c->schema_value_definition[0] ||
                c->schema_kv_encoding != UP_KV_INLINE))
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "schema.key.*, schema.value.* and schema.kv.encoding are for "
                         "schema.type=key_value");
    if (kv) {
        if (c->schema_definition[0] || c->schema_properties[0])
            return up_seterr(UPULSAR_ERR__INVALID_ARG,
                             "schema.type=key_value takes schema.key.* and schema.value.*, "
                             "not schema.definition or schema.properties");
        upulsar_err_t e = check_part("schema.key.type", c->schema_key_type,
                                     c->schema_key_definition);
        return e ? e : check_part("schema.value.type", c->schema_value_type,
                                  c->schema_value_definition);
    }
    if (c->schema_type == UP_SCHEMA_BYTES && (c->schema_name[0] || c->schema_properties[0]))
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "schema.name and schema.properties need a schema.type other than bytes");
    return check_part("schema.type", c->schema_type, c->schema_definition);
}
