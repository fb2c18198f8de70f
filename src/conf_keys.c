/* conf_keys.c -- the configuration table: one row per key (its type,
 * field, default, bounds, scope and reference text), read by conf.c. */
#include <stddef.h>

#include "conf.h"
#include "conf_keys.h"

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

const conf_key_t up_conf_keys[] = {
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
     "needs, else epoll (and epoll under valgrind, where an io_uring wait would stop "
     "every thread); the environment variable UPULSAR_IO_BACKEND (io_uring or epoll), "
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
     'C', "ms", "Bound on resolving the broker's host name, TCP connect and the "
     "CONNECT/CONNECTED handshake.",
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
     "are acknowledged or fail, except for the batches of failed messages that a write of "
     "their connection has started on (a broker that stopped reading; up to about 4 MiB per "
     "connection), which count until the write completes or the connection closes. "
     "Fair share: a producer may take more of the budget only "
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
     "A message not acknowledged within this time fails with MSG_TIMED_OUT; 0 = never. "
     "Its batch is then not written if its connection had not started to (a broker that "
     "stopped reading); what had reached the socket may still be stored.",
     "sendTimeoutMs"},
    {"restart.intensity", K_INT, FLD(restart_intensity), "0", 0, 1000000, NULL, 0, 'P',
     "restarts",
     "Re-creations of one producer allowed within restart.period.ms before its "
     "partition group fails; 0 = unlimited. Up to 63 they are counted exactly; a larger "
     "value counts them in 64 slices of the period (a restart up to 1/64 of the period "
     "older than it may still count). The re-creation right after the broker closed "
     "the producer in order (CLOSE_PRODUCER for an unload or a transfer, e.g. during a "
     "rolling broker restart) is not counted; the attempts after it, if it fails, are.",
     "(none)"},
    {"restart.period.ms", K_INT, FLD(restart_period_ms), "60000", 1, 86400000, NULL, 0, 'P',
     "ms", "Window over which restart.intensity is counted.", "(none)"},
    {"initial.sequence.id", K_INT64, FLD(initial_sequence_id), "-1", -1, INT64_MAX - 1, NULL, 0,
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
#define NKEYS (sizeof up_conf_keys / sizeof up_conf_keys[0])
_Static_assert(NKEYS <= 64 * UP_CONF_SET_WORDS, "struct upulsar_conf.set_keys is too small");
const size_t up_conf_nkeys = NKEYS;
