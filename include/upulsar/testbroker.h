/*
 * testbroker.h -- an in-process Pulsar broker for tests.
 *
 * upulsar_tb is a real TCP server on 127.0.0.1 that speaks the Pulsar binary
 * protocol (the same wire format as a Java broker, restricted to what
 * producers and simple consumers use) and keeps every published entry in an
 * in-memory log that tests read back. Official Pulsar clients can talk to
 * it. It also has knobs to inject the faults producers must survive
 * (dropped connections, refused connects, slow or withheld receipts, broker
 * errors, topic unloads, a broker that stops answering, restarts, and
 * raw bytes of a hostile broker: garbage, malformed or unexpected frames).
 *
 * What the broker does, in protocol terms (see pulsar-protocol.md §10):
 *  - CONNECT -> CONNECTED{server_version, protocol_version = min(client, 21),
 *    max_message_size}; PING -> PONG; it PINGs idle connections every
 *    ping_interval_ms and closes those that stay silent for a whole interval
 *    (and those whose handshake did not finish by then).
 *  - PARTITIONED_METADATA -> partitions configured with
 *    upulsar_tb_set_partitions() (0 = non-partitioned, the default).
 *  - LOOKUP -> Connect to this broker, or Redirect to the URL given with
 *    upulsar_tb_set_owner() / upulsar_tb_move_topic(); both authoritative.
 *    As a Pulsar broker fills the URL of each port it listens on and leaves
 *    the other field out, a pulsar:// URL is answered in brokerServiceUrl
 *    only and a pulsar+ssl:// one in brokerServiceUrlTls only (the broker
 *    has one port). In proxy_mode the answer is a Pulsar proxy's: the
 *    proxy-to-broker URL in both fields (see upulsar_tb_opts_t.proxy_mode).
 *    A LOOKUP naming an advertised listener gets that listener's URL, or
 *    ServiceNotReady for a listener the broker does not have (see
 *    upulsar_tb_opts_t.listener_names).
 *  - TLS (opts.tls_cert_file): the port speaks TLS 1.2+ only (OpenSSL);
 *    with tls_ca_file a client certificate is verified when presented, and
 *    required with tls_require_client_cert. A client that does not speak
 *    TLS, or fails the handshake, has its connection closed (counted in
 *    upulsar_tb_stats_t.tls_failures); other connections are not affected.
 *  - Token authentication (opts.auth_tokens, upulsar_tb_set_tokens()):
 *    CONNECT must carry auth_method_name "token" and one of the tokens as
 *    auth_data -- or, over TLS, auth_method_name "tls" with a client
 *    certificate the handshake verified against tls_ca_file (Pulsar's TLS
 *    authentication) -- else ERROR{request_id -1, AuthenticationError} and
 *    the connection closes. AUTH_CHALLENGE{AuthData{"token",
 *    "PulsarAuthRefresh"}} is sent on upulsar_tb_auth_challenge() (or
 *    before CONNECTED with opts.auth_challenge_on_connect); the
 *    AUTH_RESPONSE must carry a valid token within auth_response_timeout_ms,
 *    else the same ERROR and close. Tokens never appear in anything the
 *    broker sends or prints.
 *  - PRODUCER -> PRODUCER_SUCCESS (generated name if none; last_sequence_id
 *    = last stored sequence id of that name on that topic, -1 if none), or
 *    ERROR ProducerBusy when another producer with that name is active on
 *    the topic. Re-sending PRODUCER for a producer the connection has
 *    created (same producer id, same topic, still active) is answered as
 *    Pulsar does: PRODUCER_SUCCESS with the producer's name only, without
 *    last_sequence_id (a client reads -1) or topic_epoch; for a producer id
 *    whose PRODUCER is still being processed
 *    (upulsar_tb_delay_producers()) it is ERROR ServiceNotReady ("Producer
 *    is already present on the connection"). CLOSE_PRODUCER for a producer
 *    still being processed cancels it (SUCCESS; the PRODUCER is never
 *    answered and nothing is registered). Access modes, answered as a Pulsar
 *    broker does: Shared is refused with ProducerBusy while an exclusive
 *    producer holds the topic or a WaitForExclusive one waits for it;
 *    Exclusive is refused with ProducerFenced then, or while any other
 *    producer is active; ExclusiveWithFencing fails the waiting producers
 *    (ERROR ProducerFenced on their PRODUCER request) and drops the other
 *    producers silently, as Pulsar does (no CLOSE_PRODUCER: a dropped
 *    producer's next SEND closes its connection, and its re-creation is
 *    refused by the epoch or the new holder);
 *    WaitForExclusive is answered
 *    PRODUCER_SUCCESS{producer_ready=false} while others are active and
 *    PRODUCER_SUCCESS again (same request id, ready) once it gets the topic;
 *    a SEND for it before then closes the connection, as Pulsar's
 *    handleSend does for a producer whose creation is not done.
 *    A producer the broker closes (unload, move, fencing) leaves the topic
 *    at once, ending its exclusive hold; a WaitForExclusive producer still
 *    waiting when its topic is unloaded or moved gets ERROR ServiceNotReady
 *    for its PRODUCER request (retriable: look the topic up again). Unless
 *    fenced, a producer closed either way may be re-created on the same
 *    connection with the same id, as a new producer would be
 *    (WaitForExclusive queues again); re-sending PRODUCER for a producer
 *    still waiting gets ServiceNotReady.
 *    Topic epochs as Pulsar keeps them: none until the first exclusive
 *    grant, which gets 0; an exclusive grant takes the topic_epoch its
 *    PRODUCER brings (a reconnection keeps its epoch) or the next one; an
 *    exclusive request bringing an older one than the topic's gets
 *    ProducerFenced (ExclusiveWithFencing after it has fenced the others,
 *    as Pulsar orders it); PRODUCER_SUCCESS carries the topic's epoch once
 *    it has one, to Shared producers too. A PRODUCER for a partition past
 *    a partitioned topic's count (upulsar_tb_set_partitions()), or for the
 *    base name of a partitioned topic, gets ERROR NotAllowedError. The metadata of the last PRODUCER is kept for
 *    upulsar_tb_producer_metadata(). A PRODUCER's schema is checked against
 *    the topic's registry (refused with IncompatibleSchema, see "Schemas"
 *    below) before its access mode and name.
 *  - SEND -> SEND_RECEIPT{sequence_id, highest_sequence_id, (ledger, entry)}
 *    in arrival order; SEND_ERROR (carrying the entry's highest sequence
 *    id, as Pulsar's) ChecksumError for a CRC mismatch,
 *    NotAllowedError when metadata + payload exceed max_message_size;
 *    de-duplication by producer name, as Pulsar's: a SEND whose
 *    sequence_id (its lowest) is <= the highest id stored for that name is
 *    not stored, whole, even when its own highest id is larger, and is
 *    answered with ledger = entry = UINT64_MAX (-1), as a Pulsar broker with
 *    dedup does.
 *    The highest sequence id of a SEND is CommandSend.highest_sequence_id
 *    when set (and >= sequence_id), else its sequence_id: like Pulsar, the
 *    broker infers nothing from num_messages (some clients number batches,
 *    not messages). Receipts carry that value as highest_sequence_id.
 *    A SEND for a producer id the connection never created closes the
 *    connection. Chunks (CommandSend.is_chunk, chunk_id 0..n-1 of one
 *    uuid, in order) are acknowledged one by one and reassembled; the last
 *    stores the whole message as one entry (metadata without the chunk
 *    fields), de-duplicated by its sequence id like any SEND.
 *  - SUBSCRIBE / FLOW / ACK / CLOSE_CONSUMER / UNSUBSCRIBE /
 *    REDELIVER_UNACKNOWLEDGED_MESSAGES: stored entries are dispatched as
 *    MESSAGE frames with exactly the metadata and payload bytes that were
 *    published (with a CRC32C section), in log order, while the consumer
 *    has permits (counted in messages: an entry of N messages takes N, and
 *    may drive the permits negative). A subscription starts at the first
 *    entry (Earliest) or the end of the log (Latest, the default) or at
 *    start_message_id; Exclusive allows one consumer (ConsumerBusy
 *    otherwise), the other types share one read position. An entry is
 *    acknowledged by an Individual ACK without pending ack_set bits or by a
 *    Cumulative ACK; when the last consumer leaves (or on REDELIVER with a
 *    single consumer) dispatch restarts at the first unacknowledged entry.
 *    Non-durable subscriptions vanish with their last consumer.
 *  - Requests the project's proto subset does not model (GET_LAST_MESSAGE_ID,
 *    SEEK, GET_SCHEMA, GET_TOPICS_OF_NAMESPACE, transactions...) are
 *    answered with ERROR NotAllowedError carrying their request id;
 *    broker-to-client commands sent by a client close its connection.
 *  - Each topic (each partition "<topic>-partition-<i>" is its own topic)
 *    has one ledger id; entry ids count stored entries from 0.
 *  - Topic names are normalised: "t" and "tenant/ns/t" mean
 *    "persistent://public/default/t" and "persistent://tenant/ns/t".
 *  - Malformed frames close that connection only; nothing a client sends
 *    can crash the broker.
 *
 * Several brokers in one process: each has its own port, connections,
 * owner settings and broker-wide faults. By default each also has its own
 * topics; brokers started with opts.shared_store_with = another running
 * broker share that broker's store instead: one log, dedup state,
 * subscriptions, partition counts and per-topic settings (holds, injected
 * failures) per topic, whichever broker a client talks to. That is how a
 * topic moved between brokers (upulsar_tb_move_topic()) keeps its sequence
 * ids and entries: the producer's name and last sequence id are found on the
 * new owner, duplicates of resent messages are recognised, and a snapshot
 * from any of the brokers shows the whole topic. The store lives until the
 * last broker sharing it stops.
 *
 * Conventions: functions that can fail return upulsar_err_t (see upulsar.h)
 * and leave a detail in upulsar_last_error(). Every function taking a
 * upulsar_tb_t may be called from any thread, concurrently with each other
 * and with the broker's own threads, except upulsar_tb_stop() (once, after
 * every other call on that broker returned). Topic arguments accept any
 * spelling listed above.
 */
#ifndef UPULSAR_TESTBROKER_H
#define UPULSAR_TESTBROKER_H

#include <stddef.h>
#include <stdint.h>

#include "upulsar/upulsar.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ *
 * Lifecycle
 * ------------------------------------------------------------------------ */

/** A running test broker. */
typedef struct upulsar_tb upulsar_tb_t;

/** Broker options. Initialise with upulsar_tb_opts_init(), then override. */
typedef struct upulsar_tb_opts {
    /** TCP port on 127.0.0.1; 0 = an ephemeral port (see upulsar_tb_port()).
     *  Default 0. */
    int port;
    /** CONNECTED.max_message_size, bytes. As Pulsar's frame decoder, a
     *  frame larger than this + 10 KiB (room for the commands and metadata
     *  around a payload of that size) closes the connection; a smaller one
     *  is stored whatever its payload size. SEND_ERROR NotAllowedError for
     *  size comes only from a topic policy
     *  (upulsar_tb_set_max_message_size()). Default 5 MiB. */
    int max_message_size;
    /** Non-zero: Pulsar's brokerDeduplicationEnabled for every topic
     *  without a policy of its own (upulsar_tb_set_deduplication()): a SEND
     *  whose highest sequence id is not above the last one stored for its
     *  producer name is acknowledged as a duplicate (ledger = entry = -1)
     *  and not stored, and PRODUCER_SUCCESS carries that name's last
     *  stored sequence id. Default 0, Pulsar's default: every SEND is
     *  stored (a batch sent again after a reconnection is stored twice)
     *  and PRODUCER_SUCCESS carries last_sequence_id -1. */
    int deduplication;
    /** Highest protocol version the broker speaks (answers min(client's,
     *  this)). Default 21. Keep >= 6 or clients stop sending checksums. */
    int protocol_version;
    /** Keep-alive period: every interval the broker closes a connection
     *  from which nothing arrived since the previous tick, else PINGs it.
     *  Default 30000; <= 0 disables pings and idle closing. */
    int ping_interval_ms;
    /** Perf mode: store each entry as one unit (raw bytes and counts)
     *  without looking inside batches; checksums are still verified.
     *  Snapshots still decode entries, when read. Default 0. */
    int perf;
    /** Stop retaining entry bytes once this many are stored (counts, ids
     *  and dedup continue; the entries beyond the limit cannot be read back
     *  or dispatched). 0 = unlimited. Default 0. */
    size_t max_retained_bytes;
    /** Server version string sent in CONNECTED. NULL = "upulsar-testbroker
     *  <version>". Copied. */
    const char *server_version;

    /* ---- TLS (the strings are read during upulsar_tb_start() only) ---- */
    /** PEM certificate (chain) of the broker; with tls_key_file the port
     *  speaks TLS and upulsar_tb_url() is "pulsar+ssl://localhost:<port>"
     *  (make the certificate for localhost / 127.0.0.1). NULL = plaintext. */
    const char *tls_cert_file;
    /** PEM private key of tls_cert_file. */
    const char *tls_key_file;
    /** PEM CA bundle trusted for client certificates. NULL = clients are not
     *  asked for a certificate. */
    const char *tls_ca_file;
    /** Non-zero: a client without a certificate signed by tls_ca_file fails
     *  the handshake (mutual TLS). Needs tls_ca_file. Default 0. */
    int tls_require_client_cert;

    /* ---- token authentication ---- */
    /** Accepted tokens (copied; each non-empty). 0 tokens = authentication
     *  off: any CONNECT is accepted. Replace later with
     *  upulsar_tb_set_tokens(). */
    const char *const *auth_tokens;
    size_t auth_tokens_cnt;
    /** Non-zero: after a CONNECT with valid credentials, send AUTH_CHALLENGE
     *  and answer CONNECTED only once an AUTH_RESPONSE with a valid token
     *  arrives. Default 0. */
    int auth_challenge_on_connect;
    /** Time a client has to answer an AUTH_CHALLENGE before its connection
     *  is closed. Default 10000. */
    int auth_response_timeout_ms;

    /** Non-zero: stand in for a Pulsar proxy in front of this broker.
     *  LOOKUP answers Connect with proxy_through_service_url = true (naming
     *  the topic's owner, see below); a connection whose CONNECT has no
     *  proxy_to_broker_url serves lookups only and is closed on PRODUCER or
     *  SUBSCRIBE, as a proxy in lookup mode does; one naming this broker
     *  ("127.0.0.1:<port>" or "localhost:<port>") is served as usual; one
     *  naming another port on 127.0.0.1 or localhost (another broker, e.g.
     *  the new owner of a moved topic) is relayed to it as a Pulsar proxy
     *  does: the proxy connects there (plain TCP, whatever
     *  proxy_broker_link says), passes on the CONNECT without
     *  proxy_to_broker_url, and from then on forwards the bytes both ways
     *  until either side closes; one naming anything else, or a port where
     *  nothing listens, gets ERROR ServiceNotReady and is closed.
     *  As a Pulsar proxy (LookupProxyHandler), the LOOKUP answer carries
     *  the URL by which the proxy reaches the broker in both
     *  brokerServiceUrl and brokerServiceUrlTls, whatever scheme the
     *  client uses: its scheme is the proxy's link to its brokers
     *  (proxy_broker_link), so a client must take only the host and port
     *  from it. Default 0. */
    int proxy_mode;
    /** proxy_mode: the scheme of the proxy-to-broker URL in LOOKUP answers:
     *  UPULSAR_TB_PROXY_LINK_SAME (0, the default) that of this broker's
     *  own port, UPULSAR_TB_PROXY_LINK_PLAIN "pulsar://",
     *  UPULSAR_TB_PROXY_LINK_TLS "pulsar+ssl://" (e.g. a TLS-terminating
     *  proxy in front of plaintext brokers: a TLS listener with
     *  UPULSAR_TB_PROXY_LINK_PLAIN). */
    int proxy_broker_link;

    /* ---- topology ---- */
    /** A running broker whose store (topics, logs, dedup state) this one
     *  shares, see "Several brokers in one process" above. NULL = a store of
     *  its own. The other broker may stop first. Default NULL. */
    upulsar_tb_t *shared_store_with;

    /* ---- advertised listeners ---- */
    /** Named listeners, as Pulsar's advertisedListeners: listener_names[i]
     *  is advertised at listener_urls[i] ("pulsar://host:port" or
     *  "pulsar+ssl://host:port", any address: the broker does not listen
     *  there itself). A LOOKUP for a topic this broker owns that carries
     *  advertised_listener_name is answered, as Pulsar does, with that
     *  listener's URL (Connect; in brokerServiceUrl or brokerServiceUrlTls
     *  by its scheme), or, for a name the broker does not have (also when
     *  it has none), Failed with ServiceNotReady "the broker do not have
     *  <name> listener"; without a name (or an empty one) with this
     *  broker's own URL, which stands for Pulsar's internal listener.
     *  Redirects (upulsar_tb_set_owner()) and proxy_mode answers are not
     *  affected. Both lists are copied (listeners_cnt entries, names
     *  non-empty and distinct). Default: none. */
    const char *const *listener_names;
    const char *const *listener_urls;
    size_t listeners_cnt;

    /* ---- schemas ---- */
    /** Non-zero: Pulsar's broker setting schemaValidationEnforced for every
     *  topic without a policy of its own (see
     *  upulsar_tb_set_schema_validation_enforced()): a PRODUCER without a
     *  schema for a topic that has one is refused with ERROR
     *  IncompatibleSchema ("Producers cannot connect or send message
     *  without a schema to topics with a schema"). Default 0, Pulsar's
     *  default: such a producer is accepted, with an empty schema version.
     *  See "Schemas" below. */
    int schema_validation_enforced;
} upulsar_tb_opts_t;

/** Values of upulsar_tb_opts_t.proxy_broker_link. */
#define UPULSAR_TB_PROXY_LINK_SAME 0
#define UPULSAR_TB_PROXY_LINK_PLAIN 1
#define UPULSAR_TB_PROXY_LINK_TLS 2

/** Fill @p opts with the defaults listed above. */
void upulsar_tb_opts_init(upulsar_tb_opts_t *opts);

/**
 * Start a broker: bind 127.0.0.1:port, start its accept thread.
 * @p opts may be NULL (defaults). Several brokers may run in one process.
 * Returns OK and *@p out (owned by the caller, release with
 * upulsar_tb_stop()), or INVALID_ARG, NOMEM, IO (bind/listen failed, e.g.
 * port in use). Blocks: no (until listening). Thread safety: any.
 */
upulsar_err_t upulsar_tb_start(const upulsar_tb_opts_t *opts, upulsar_tb_t **out);

/**
 * Close the listener and every connection, join every broker thread and
 * free the broker with its log. Snapshots taken earlier stay valid (they are
 * copies). NULL is accepted. Thread safety: call once, when no other call
 * on @p tb is running. Blocks: until the threads have exited (milliseconds).
 * A connection thread that has not ended 30 s after it was told to is a
 * defect of the broker: the broker then writes which connections are still
 * running and what each was doing (connection number, thread id, client
 * address, phase and last command) to stderr and aborts the process, as it
 * cannot be freed under them.
 */
void upulsar_tb_stop(upulsar_tb_t *tb);

/** The TCP port the broker listens on. */
int upulsar_tb_port(const upulsar_tb_t *tb);

/** "pulsar://127.0.0.1:<port>", or "pulsar+ssl://localhost:<port>" for a
 *  TLS broker; valid until upulsar_tb_stop(). */
const char *upulsar_tb_url(const upulsar_tb_t *tb);

/**
 * Simulate a broker restart: close the listener and every connection (as a
 * crash would: no CLOSE_PRODUCER, withheld receipts are lost), then listen
 * again on the same port. The log, dedup state, subscriptions and every
 * configuration and fault setting survive. Returns OK, or IO if the port
 * could not be bound again within about two seconds (the broker then does
 * not listen; calling upulsar_tb_restart() again retries), or TIMED_OUT if
 * a connection thread had not ended 30 s after it was told to (a defect of
 * the broker; the error detail, also written to stderr, names the
 * connections still running and what each was doing; the broker does not
 * listen then).
 * Blocks: until the old connections' threads have exited.
 */
upulsar_err_t upulsar_tb_restart(upulsar_tb_t *tb);

/* ------------------------------------------------------------------------ *
 * Topic configuration
 * ------------------------------------------------------------------------ */

/** Answer PARTITIONED_METADATA for @p topic with @p partitions (0 = not
 *  partitioned, the default for every topic). Errors: INVALID_ARG (NULL,
 *  negative), INVALID_TOPIC. */
upulsar_err_t upulsar_tb_set_partitions(upulsar_tb_t *tb, const char *topic,
                                        int partitions);

/**
 * Tell @p tb that @p topic is owned by the broker at @p url
 * ("pulsar://host:port" or "pulsar+ssl://host:port"): LOOKUPs for it (and,
 * unless set separately, for its partitions) get a Redirect to @p url, and
 * PRODUCER/SUBSCRIBE for it get ERROR ServiceNotReady. A partition may be
 * given its own owner ("t-partition-5"), which overrides the partitioned
 * topic's. @p url naming @p tb itself (its upulsar_tb_url(), or the same
 * port on 127.0.0.1/localhost) makes @p tb the owner explicitly, also of a
 * partition whose partitioned topic is owned elsewhere; NULL removes the
 * setting (a partition then follows its partitioned topic's setting, and
 * without any setting this broker owns the topic).
 * Owner settings are per broker, even with a shared store: configure each
 * broker's view (e.g. for a 16-partition topic over brokers A, B, C, give
 * every broker the owner of every partition, see tests/
 * test_broker_topology.c). Errors: INVALID_ARG, INVALID_URL, INVALID_TOPIC,
 * NOMEM.
 */
upulsar_err_t upulsar_tb_set_owner(upulsar_tb_t *tb, const char *topic,
                                   const char *url);

/** Flag of upulsar_tb_move_topic_ex(): CLOSE_PRODUCER carries the new
 *  owner in assignedBrokerServiceUrl (assignedBrokerServiceUrlTls for a
 *  pulsar+ssl:// URL), as a Pulsar broker does on a bundle transfer. */
#define UPULSAR_TB_MOVE_ASSIGNED 0x1

/**
 * Move @p topic (a partition, a non-partitioned topic, or a partitioned
 * topic's base name = those of its partitions without an owner of their
 * own) from @p from to the broker at @p to_url, as a bundle transfer does:
 *  1. every running broker of this process whose URL is @p to_url becomes
 *     the topic's owner explicitly (upulsar_tb_set_owner(to, topic, self));
 *  2. @p from redirects the topic's LOOKUPs to @p to_url and answers its
 *     PRODUCERs with ServiceNotReady from now on;
 *  3. @p from sends CLOSE_PRODUCER to each of its producers of the topic
 *     (their later SENDs are ignored, as after an unload; an exclusive hold
 *     ends) and ERROR ServiceNotReady to each of its WaitForExclusive
 *     producers still waiting for it, so clients look the topic up again
 *     and follow it. Consumers are not touched.
 * For the new owner to continue the topic's log and dedup state, start the
 * brokers with a shared store (opts.shared_store_with). Returns the number
 * of producers closed or answered (>= 0) or a negative error (INVALID_ARG
 * when @p to_url is @p from itself, INVALID_URL, INVALID_TOPIC, NOMEM).
 */
int upulsar_tb_move_topic(upulsar_tb_t *from, const char *topic, const char *to_url);

/**
 * Migrate @p topic (or a partitioned topic's partitions) away from @p tb to
 * another cluster at @p url, as Pulsar's blue-green migration does: its
 * producers on @p tb get TOPIC_MIGRATED{brokerServiceUrl[Tls] = @p url}
 * (CLOSE_PRODUCER for clients below protocol 20) and are closed; a later
 * PRODUCER for it on @p tb gets TOPIC_MIGRATED and no answer (ERROR
 * ServiceNotReady below protocol 20). LOOKUPs on @p tb are answered as
 * before (the old cluster does not redirect): a client must follow the URL
 * the command carried. Returns the number of producers told (>= 0) or a
 * negative error (INVALID_ARG, INVALID_URL, INVALID_TOPIC, NOMEM).
 */
int upulsar_tb_migrate_topic(upulsar_tb_t *tb, const char *topic, const char *url);

/** upulsar_tb_move_topic() with UPULSAR_TB_MOVE_* @p flags. */
int upulsar_tb_move_topic_ex(upulsar_tb_t *from, const char *topic, const char *to_url,
                             int flags);

/* ------------------------------------------------------------------------ *
 * Authentication
 * ------------------------------------------------------------------------ */

/** Replace the accepted tokens (copied; @p n = 0 turns authentication
 *  off). Connections already authenticated stay; the next CONNECT or
 *  AUTH_RESPONSE is checked against the new list. Errors: INVALID_ARG (an
 *  empty or NULL token), NOMEM. */
upulsar_err_t upulsar_tb_set_tokens(upulsar_tb_t *tb, const char *const *tokens,
                                    size_t n);

/**
 * Ask every connection that completed its handshake for fresh credentials,
 * as a Pulsar broker does when they expire: AUTH_CHALLENGE{server_version,
 * challenge = AuthData{"token", "PulsarAuthRefresh"}, protocol_version}.
 * The client must answer AUTH_RESPONSE{AuthData{"token", <valid token>}}
 * within opts.auth_response_timeout_ms; a wrong token or no answer gets
 * ERROR AuthenticationError and the connection closed. With authentication
 * off any answer is accepted. A connection that still owes an answer is
 * not asked again. Outcomes are counted in upulsar_tb_stats_t (auth_*).
 * Returns the number of connections asked (including any still in their
 * handshake, which ignore the request), or a negative error.
 */
int upulsar_tb_auth_challenge(upulsar_tb_t *tb);

/* ------------------------------------------------------------------------ *
 * Reading the log
 * ------------------------------------------------------------------------ */

/** Counters of one topic. */
typedef struct upulsar_tb_topic_stats {
    uint64_t entries;        /**< stored entries (one per stored SEND) */
    uint64_t messages;       /**< stored messages (sum over entries) */
    uint64_t bytes;          /**< metadata + payload bytes stored */
    uint64_t duplicates;     /**< SENDs dropped by de-duplication */
    uint64_t checksum_errors;/**< SENDs refused with ChecksumError */
    uint64_t send_errors;    /**< other SEND_ERRORs (size, injected) */
    uint64_t decode_errors;  /**< stored entries whose metadata or batch did
                                  not decode, or whose message count
                                  disagreed with CommandSend.num_messages
                                  (never counted in perf mode) */
    uint64_t ledger_id;      /**< the topic's ledger */
    int producers;           /**< producers currently active */
    int consumers;           /**< consumers currently attached */
} upulsar_tb_topic_stats_t;

/** Fill *@p out for @p topic (all zero, ledger 0, if nothing ever touched
 *  it). Errors: INVALID_ARG, INVALID_TOPIC. Blocks: a mutex. */
upulsar_err_t upulsar_tb_topic_stats(upulsar_tb_t *tb, const char *topic,
                                     upulsar_tb_topic_stats_t *out);

/**
 * Wait until @p topic holds at least @p messages messages, or @p timeout_ms
 * passed (-1 = forever). Returns OK or TIMED_OUT (or INVALID_ARG,
 * INVALID_TOPIC). Lets tests wait for effects without sleeping.
 */
upulsar_err_t upulsar_tb_wait_messages(upulsar_tb_t *tb, const char *topic,
                                       uint64_t messages, int timeout_ms);

/** The metadata of the last PRODUCER request for @p topic, as
 *  "k=v,k2=v2" in request order ("" when it had none), into @p buf. */
upulsar_err_t upulsar_tb_producer_metadata(upulsar_tb_t *tb, const char *topic, char *buf,
                                          size_t size);

/** Answers in upulsar_tb_producer_answers() other than an ERROR (which is
 *  given as its ServerError value, >= 0). */
#define UPULSAR_TB_PRODUCER_CREATED (-1)  /**< PRODUCER_SUCCESS, producer ready */
#define UPULSAR_TB_PRODUCER_QUEUED (-2)   /**< PRODUCER_SUCCESS{producer_ready =
                                               false}: a WaitForExclusive producer
                                               queued for the topic */
#define UPULSAR_TB_PRODUCER_MIGRATED (-3) /**< TOPIC_MIGRATED, the request left
                                               unanswered (upulsar_tb_migrate_topic()) */

/**
 * The answers the broker gave to PRODUCER requests for @p topic, one per
 * request, in the order it answered them: UPULSAR_TB_PRODUCER_* or the
 * ServerError of an ERROR (injected with upulsar_tb_fail_producers(), an
 * access-mode or name clash, ServiceNotReady for a migrated topic below
 * protocol 20...). A queued WaitForExclusive producer's later
 * PRODUCER_SUCCESS is not a new answer. Not recorded: requests for a topic
 * this broker does not own (upulsar_tb_set_owner()), with an invalid name,
 * or on a proxy_mode connection that serves lookups only. With a shared
 * store (opts.shared_store_with) the answers of every broker sharing it
 * are in one list. Lets tests check how many attempts a client made and in
 * which order they were refused or accepted, without timing them.
 * Copies up to @p max answers, oldest first, into @p out (NULL allowed
 * when @p max is 0); the first 65536 answers of a topic are kept, later
 * ones only counted. Returns the total number of answers (>= 0, 0 for a
 * topic nothing touched; may exceed @p max), or a negative error
 * (INVALID_ARG, INVALID_TOPIC). Thread safety: any. Blocks: a mutex.
 */
int upulsar_tb_producer_answers(upulsar_tb_t *tb, const char *topic, int *out, size_t max);

/** One request of upulsar_tb_producer_requests(). */
typedef struct upulsar_tb_request {
    int type;             /**< UPULSAR_TB_REQ_PRODUCER or _CLOSE_PRODUCER */
    uint64_t connection;  /**< the connection it came on (a number unique
                               within the broker, in accept order) */
    uint64_t producer_id;
    uint64_t request_id;
    int user_provided_name; /**< PRODUCER: its user_provided_producer_name
                                 (0 or 1), -1 when the field was absent;
                                 -1 for CLOSE_PRODUCER */
    int schema_type;        /**< PRODUCER: the Schema.Type of its schema
                                 (e.g. 1 String, 2 Json, 4 Avro, 15
                                 KeyValue), -1 when it carried none; -1 for
                                 CLOSE_PRODUCER */
} upulsar_tb_request_t;

#define UPULSAR_TB_REQ_PRODUCER 5        /**< BaseCommand PRODUCER */
#define UPULSAR_TB_REQ_CLOSE_PRODUCER 15 /**< BaseCommand CLOSE_PRODUCER */

/**
 * The PRODUCER and CLOSE_PRODUCER requests the broker received for
 * @p topic, in the order they arrived: every PRODUCER for the topic this
 * broker serves, whatever its answer (not those it refuses because another
 * broker owns the topic or it migrated, nor those on a lookup-only proxy
 * connection), and every CLOSE_PRODUCER for a producer id its
 * connection had on the topic then (created, or its PRODUCER still being
 * processed, see upulsar_tb_delay_producers()); a CLOSE_PRODUCER for a
 * producer id unknown on its connection names no topic and is not
 * recorded. Lets tests check what a client sent, in which order, on which
 * connection. Copies up to @p max requests, oldest first, into @p out
 * (NULL allowed when @p max is 0); the first 65536 of a topic are kept,
 * later ones only counted. With a shared store the requests of every broker
 * sharing it are in one list. Returns the total number (>= 0, 0 for a topic
 * nothing touched; may exceed @p max) or a negative error (INVALID_ARG,
 * INVALID_TOPIC). Thread safety: any. Blocks: a mutex.
 */
int upulsar_tb_producer_requests(upulsar_tb_t *tb, const char *topic, upulsar_tb_request_t *out,
                                 size_t max);

/** One message of the log, as a snapshot holds it. Every pointer points
 *  into the snapshot and is valid until upulsar_tb_snapshot_free(). */
typedef struct upulsar_tb_msg {
    const uint8_t *payload;     /**< uncompressed payload bytes */
    size_t payload_len;
    const char *partition_key;  /**< NULL when the message had none */
    const uint8_t *ordering_key;/**< NULL when none */
    size_t ordering_key_len;
    const upulsar_property_t *properties; /**< properties_cnt entries */
    size_t properties_cnt;
    uint64_t event_time;        /**< 0 = not set */
    uint64_t sequence_id;       /**< SingleMessageMetadata.sequence_id when
                                     present, else the entry's sequence id
                                     + batch index */
    int sequence_id_in_batch;   /**< a batched message whose
                                     SingleMessageMetadata had sequence_id */
    const char *entry_partition_key; /**< the entry's MessageMetadata.
                                          partition_key, NULL when none */
    const char *producer_name;
    uint64_t publish_time;
    uint64_t ledger_id;         /**< a chunked message: its last chunk's */
    uint64_t entry_id;
    /** Chunks the message was sent in (each stored as an entry of its own,
     *  as Pulsar stores them; the snapshot puts them back together as a
     *  consumer does), 0 when it was sent whole. */
    uint32_t num_chunks;
    uint64_t first_chunk_ledger_id; /**< a chunked message: its first chunk's */
    uint64_t first_chunk_entry_id;
    int32_t batch_index;        /**< -1 for a non-batched entry */
    int32_t batch_size;         /**< messages in the entry, 0 if not batched */
    int compression;            /**< the entry's CompressionType */
    uint64_t deliver_at_time;   /**< the entry's deliver_at_time, 0 = unset */
    const char *const *replicate_to; /**< the entry's replicate_to names */
    size_t replicate_to_cnt;
    const uint8_t *sticky_key;  /**< the key a Key_Shared subscription routes
                                     this message's entry by, as Pulsar picks
                                     it: the entry's (MessageMetadata)
                                     ordering_key, else its partition_key;
                                     NULL when it has neither (all such
                                     entries go to one consumer) */
    size_t sticky_key_len;
    const uint8_t *schema_version; /**< the entry's MessageMetadata.
                                        schema_version, NULL when it had
                                        none (see "Schemas") */
    size_t schema_version_len;
    int null_value;             /**< the message's null_value (its
                                     SingleMessageMetadata's in a batch,
                                     else the entry's MessageMetadata's):
                                     a null value, told apart from an
                                     empty payload */
    int partition_key_b64_encoded; /**< partition_key_b64_encoded, read
                                        the same way: partition_key is the
                                        base64 text of a binary key */
    int entry_partition_key_b64_encoded; /**< the entry's MessageMetadata.
                                              partition_key_b64_encoded:
                                              entry_partition_key is the
                                              base64 text of a binary key */
} upulsar_tb_msg_t;

/** A copy of a topic's log at one moment. Not thread-safe by itself (use
 *  from one thread at a time); independent of the broker once taken. */
typedef struct upulsar_tb_snapshot upulsar_tb_snapshot_t;

/**
 * Copy every message stored on @p topic so far (decoding batches and
 * LZ4/ZSTD compression) into a new snapshot, in log order. A message sent
 * in chunks appears once, whole, where its last chunk is (chunks of a
 * message not complete in the log do not appear; a chunk 0 sent again
 * starts the message over, as a consumer does).
 * Entries whose bytes were not retained (max_retained_bytes) or that do not
 * decode are skipped and counted in upulsar_tb_snapshot_skipped().
 * Returns OK and *@p out (free with upulsar_tb_snapshot_free()), or
 * INVALID_ARG, INVALID_TOPIC, NOMEM. An unknown topic gives an empty
 * snapshot. Blocks: copies under the topic's mutex, decodes outside it.
 */
upulsar_err_t upulsar_tb_snapshot(upulsar_tb_t *tb, const char *topic,
                                  upulsar_tb_snapshot_t **out);

/** Number of messages in @p s. */
size_t upulsar_tb_snapshot_count(const upulsar_tb_snapshot_t *s);

/** Message @p i (0-based, log order), NULL if out of range. */
const upulsar_tb_msg_t *upulsar_tb_snapshot_msg(const upulsar_tb_snapshot_t *s,
                                                size_t i);

/** Entries that could not be read back (see upulsar_tb_snapshot()). */
size_t upulsar_tb_snapshot_skipped(const upulsar_tb_snapshot_t *s);

/** Free @p s and everything it points to. NULL is accepted. */
void upulsar_tb_snapshot_free(upulsar_tb_snapshot_t *s);

/* ------------------------------------------------------------------------ *
 * Schemas
 *
 * Each topic keeps a schema registry as a Pulsar broker does with its
 * defaults (schema auto-update allowed, compatibility strategy FULL,
 * validation not enforced):
 *  - a PRODUCER with a schema registers it unless the topic has one of
 *    the same type and schema_data already (then that version is used);
 *    versions count from 0 and are sent as Pulsar's LongSchemaVersion:
 *    8 bytes, big-endian;
 *  - a schema whose type differs from the topic's latest is refused with
 *    ERROR IncompatibleSchema ("Incompatible schema: exists schema type
 *    <old>, new schema type <new>"); one of the same type with another
 *    schema_data is registered as the next version (the broker does not
 *    check Avro/JSON definitions for compatibility, as Pulsar's FULL
 *    strategy would);
 *  - a PRODUCER without a schema gets an empty schema version; with
 *    validation enforced (upulsar_tb_opts_t.schema_validation_enforced, or
 *    the topic's policy) it is refused with IncompatibleSchema when the
 *    topic has a schema;
 *  - PRODUCER_SUCCESS always carries schema_version (empty when none), also
 *    the answer to a repeated PRODUCER. The broker does not look at the
 *    schema_version of published entries; snapshots show it per message.
 * Partitions are topics of their own (each has its own registry).
 * ------------------------------------------------------------------------ */

/** One registered schema, as upulsar_tb_schema_get() returns it. Every
 *  pointer is valid until upulsar_tb_schema_free(). */
typedef struct upulsar_tb_schema {
    uint64_t version;                     /**< 0, 1, ... */
    int type;                             /**< Schema.Type (1 String, 2 Json,
                                               4 Avro, 15 KeyValue, ...) */
    const char *name;
    const uint8_t *data;                  /**< schema_data */
    size_t data_len;
    const upulsar_property_t *properties; /**< in the order sent */
    size_t properties_cnt;
} upulsar_tb_schema_t;

/** Number of schema versions registered on @p topic (>= 0), or a negative
 *  error (INVALID_ARG, INVALID_TOPIC). Thread safety: any. */
int upulsar_tb_schema_versions(upulsar_tb_t *tb, const char *topic);

/** Copy version @p version of @p topic's schema into a new
 *  upulsar_tb_schema_t (free with upulsar_tb_schema_free()). Errors:
 *  INVALID_ARG (NULL, no such version), INVALID_TOPIC, NOMEM. Thread
 *  safety: any. */
upulsar_err_t upulsar_tb_schema_get(upulsar_tb_t *tb, const char *topic, uint64_t version,
                                    upulsar_tb_schema_t **out);

/** Free @p s. NULL is accepted. */
void upulsar_tb_schema_free(upulsar_tb_schema_t *s);

/** Topic policy schemaValidationEnforced for @p topic (a partition, or a
 *  non-partitioned topic): @p on 1 or 0 overrides the broker's
 *  opts.schema_validation_enforced, -1 goes back to it. Errors:
 *  INVALID_ARG, INVALID_TOPIC, NOMEM. Thread safety: any. */
upulsar_err_t upulsar_tb_set_schema_validation_enforced(upulsar_tb_t *tb, const char *topic,
                                                        int on);

/** Topic policy deduplicationEnabled for @p topic (a partition, or a
 *  non-partitioned topic): @p on 1 or 0 overrides the broker's
 *  opts.deduplication, -1 goes back to it. The sequence ids stored while
 *  it was off count when it is turned on (as Pulsar rebuilds its state
 *  from the log). Errors: INVALID_ARG, INVALID_TOPIC, NOMEM. Thread
 *  safety: any. */
upulsar_err_t upulsar_tb_set_deduplication(upulsar_tb_t *tb, const char *topic, int on);

/** Topic policy maxMessageSize for @p topic: a SEND whose metadata and
 *  payload together exceed @p bytes (and that is not a chunk) is answered
 *  with SEND_ERROR NotAllowedError "Exceed maximum message size" and not
 *  stored; the connection and producer stay. 0 removes the policy, as does
 *  a value at or above the broker's max_message_size (Pulsar ignores
 *  such a policy: the client's own size check applies). Errors:
 *  INVALID_ARG (negative), INVALID_TOPIC, NOMEM. Thread safety: any. */
upulsar_err_t upulsar_tb_set_max_message_size(upulsar_tb_t *tb, const char *topic, int bytes);

/** Broker-wide counters. */
typedef struct upulsar_tb_stats {
    uint64_t connections_accepted; /**< TCP connections handshaken or not */
    uint64_t connections_refused;  /**< reset by upulsar_tb_refuse_connections() */
    int connections_active;
    uint64_t entries;              /**< over all topics */
    uint64_t messages;
    uint64_t pings_sent;           /**< PINGs sent by the broker */
    uint64_t pongs_received;
    uint64_t protocol_errors;      /**< connections closed for a bad frame */
    uint64_t receipts_queued;      /**< receipts currently delayed or withheld */
    uint64_t restarts;
    uint64_t tls_handshakes;       /**< TLS handshakes completed */
    uint64_t tls_failures;         /**< TLS connections that ended before their
                                        handshake completed (not TLS, a certificate
                                        refused by either side, closed early) */
    uint64_t auth_ok;              /**< CONNECTs / AUTH_RESPONSEs whose token was
                                        accepted (counted with tokens set, or for
                                        any answered challenge) */
    uint64_t auth_failed;          /**< refused with AuthenticationError */
    uint64_t auth_challenges;      /**< AUTH_CHALLENGEs sent */
    uint64_t auth_unanswered;      /**< connections closed for not answering one */
    uint64_t lookups;              /**< LOOKUP requests received */
    uint64_t partition_lookups;    /**< PARTITIONED_METADATA requests received */
    uint64_t proxied_connections;  /**< proxy_mode: CONNECTs naming this broker
                                        in proxy_to_broker_url */
    uint64_t lookup_only_closed;   /**< proxy_mode: connections closed for a
                                        PRODUCER/SUBSCRIBE without one */
    uint64_t proxy_relayed;        /**< proxy_mode: connections whose CONNECT
                                        named another broker, relayed to it */
    uint64_t auth_tls_ok;          /**< CONNECTs accepted with auth_method_name
                                        "tls" on a verified client certificate
                                        (also counted in auth_ok) */
    uint64_t listener_lookups;     /**< LOOKUPs that named a listener
                                        (non-empty advertised_listener_name,
                                        also counted in lookups) */
} upulsar_tb_stats_t;

/** Fill *@p out. Never fails on valid arguments. */
upulsar_err_t upulsar_tb_stats(upulsar_tb_t *tb, upulsar_tb_stats_t *out);

/**
 * The role of the last client accepted through TLS authentication (see
 * upulsar_tb_stats_t.auth_tls_ok), as Pulsar derives it: the common name
 * (CN) of its certificate's subject, copied into @p buf (truncated to
 * @p size, NUL-terminated); "" while no client was. Errors: INVALID_ARG
 * (NULL, @p size 0). Thread safety: any. Blocks: briefly (a mutex).
 */
upulsar_err_t upulsar_tb_last_tls_role(upulsar_tb_t *tb, char *buf, size_t size);

/* ------------------------------------------------------------------------ *
 * Fault injection. @p topic NULL means every topic where documented.
 * ------------------------------------------------------------------------ */

/** Close (TCP shutdown, no goodbye) every connection, or with @p topic only
 *  those with a producer or consumer on it, and wait until the broker has
 *  finished with them (their producers and consumers are unregistered when
 *  this returns). Returns the number of connections closed (>= 0), or a
 *  negative error (INVALID_TOPIC; TIMED_OUT if one of their threads had not
 *  ended 30 s after it was told to, with the account described at
 *  upulsar_tb_restart()). */
int upulsar_tb_drop_connections(upulsar_tb_t *tb, const char *topic);

/** For the next @p ms milliseconds, reset every new TCP connection right
 *  after accepting it (the client sees the connect fail or the connection
 *  reset before CONNECTED). 0 ends a refusal period early. */
upulsar_err_t upulsar_tb_refuse_connections(upulsar_tb_t *tb, int ms);

/** Send every SEND_RECEIPT (and SEND_ERROR) at least @p ms milliseconds
 *  after the SEND arrived, keeping their order. 0 = no delay (default).
 *  Applies to SENDs arriving from now on. A ChecksumError is never delayed
 *  or withheld (here or by upulsar_tb_hold_receipts()): as a Pulsar broker,
 *  which checks the checksum before it writes the entry, it is answered at
 *  once, ahead of the receipts of earlier SENDs still queued. */
upulsar_err_t upulsar_tb_delay_receipts(upulsar_tb_t *tb, int ms);

/** Withhold the receipts of SENDs to @p topic (NULL = every topic) from now
 *  on: entries are stored, receipts are queued until
 *  upulsar_tb_release_receipts(). Queued receipts are lost if their
 *  connection closes. */
upulsar_err_t upulsar_tb_hold_receipts(upulsar_tb_t *tb, const char *topic);

/** End upulsar_tb_hold_receipts() for @p topic (NULL = end every hold) and
 *  send the queued receipts, in order. */
upulsar_err_t upulsar_tb_release_receipts(upulsar_tb_t *tb, const char *topic);

/** Receipts currently queued (withheld or delayed), over all connections. */
uint64_t upulsar_tb_queued_receipts(upulsar_tb_t *tb);

/** Answer the next @p n SENDs to @p topic (NULL = any topic) with
 *  SEND_ERROR @p server_error (a Pulsar ServerError value, e.g. 2 for
 *  PersistenceError); those SENDs are not stored. n = 0 cancels. */
upulsar_err_t upulsar_tb_fail_sends(upulsar_tb_t *tb, const char *topic, int n,
                                    int server_error);

/** As upulsar_tb_fail_sends(), but the way a Pulsar broker reacts to a
 *  failed ledger write: it fences the topic and disconnects its producers.
 *  Each injected SEND_ERROR also closes every producer of the SEND's topic
 *  (CLOSE_PRODUCER, as upulsar_tb_unload_topic()), so the SENDs already in
 *  flight behind the failed one are ignored, not stored, until the client
 *  re-creates its producer. (With upulsar_tb_fail_sends() they would be
 *  stored, ahead of the failed SEND's resend.) Until each such SEND_ERROR
 *  has been sent (it may be withheld: upulsar_tb_hold_receipts()), the
 *  topic is fenced: PRODUCER is refused with ServiceNotReady ("Topic is
 *  temporarily unavailable"), as Pulsar refuses producers on a topic whose
 *  failed writes have not all completed. */
upulsar_err_t upulsar_tb_fail_writes(upulsar_tb_t *tb, const char *topic, int n,
                                     int server_error);

/** Answer the next @p n PRODUCER requests for @p topic (NULL = any topic)
 *  with ERROR @p server_error. n = 0 cancels. Backlog quota refusals are
 *  ProducerBlockedQuotaExceededError (7, policy producer_request_hold)
 *  and ProducerBlockedQuotaExceededException (8, producer_exception). */
upulsar_err_t upulsar_tb_fail_producers(upulsar_tb_t *tb, const char *topic,
                                        int n, int server_error);

/**
 * Process the next @p n PRODUCER requests for @p topic (NULL = any topic)
 * @p ms milliseconds after they arrive, as a Pulsar broker whose topic is
 * slow to load does (to make a client's request time out). Until then the
 * producer id is taken on its connection but nothing is registered on the
 * topic: a repeated PRODUCER for it gets ERROR ServiceNotReady, a
 * CLOSE_PRODUCER for it cancels it (SUCCESS, and the delayed PRODUCER is
 * never answered: the client gave up on it); otherwise it is processed
 * when due, as if it arrived then (its answer, holding the name, with
 * last_sequence_id...). Requests answered at once (refused, repeated) do
 * not count against @p n. n = 0 cancels. Errors: INVALID_ARG (@p tb NULL,
 * @p n or @p ms negative), INVALID_TOPIC, NOMEM. Thread safety: any.
 */
upulsar_err_t upulsar_tb_delay_producers(upulsar_tb_t *tb, const char *topic, int n, int ms);

/** Values of upulsar_tb_mangle_producers()'s @p how. */
#define UPULSAR_TB_MANGLE_COMMAND 1        /**< SUCCESS instead of PRODUCER_SUCCESS */
#define UPULSAR_TB_MANGLE_SCHEMA_VERSION 2 /**< PRODUCER_SUCCESS whose schema_version
                                                has 17 bytes */
#define UPULSAR_TB_MANGLE_LAST_SEQ 3       /**< PRODUCER_SUCCESS whose last_sequence_id
                                                is -5 (below the protocol's -1) */

/**
 * Test only (no Pulsar broker does this): the next @p n PRODUCER requests
 * for @p topic that create or confirm a producer are processed as usual
 * (the producer is created and holds its name, the answer is recorded as
 * UPULSAR_TB_PRODUCER_CREATED) but answered with what a client cannot use,
 * as @p how says (UPULSAR_TB_MANGLE_*), to check what the client does with
 * a producer the broker created and it could not take. n = 0 cancels.
 * Errors: INVALID_ARG (@p tb or @p topic NULL, @p n negative, @p how not a
 * UPULSAR_TB_MANGLE_* value), INVALID_TOPIC, NOMEM. Thread safety: any.
 */
upulsar_err_t upulsar_tb_mangle_producers(upulsar_tb_t *tb, const char *topic, int n, int how);

/**
 * Unload @p topic: send CLOSE_PRODUCER to each of its active producers (the
 * TCP connections stay open); SENDs for a closed producer id are then
 * ignored, without answer, until the client re-creates it with PRODUCER.
 * An exclusive producer's hold on the topic ends with its close. Each
 * WaitForExclusive producer still waiting for the topic gets ERROR
 * ServiceNotReady for its PRODUCER request instead (none of them is handed
 * the topic being unloaded). Consumers are not touched. Returns the number
 * of producers closed or answered (>= 0) or a negative error.
 */
int upulsar_tb_unload_topic(upulsar_tb_t *tb, const char *topic);

/** While @p on, behave like a hung broker that keeps its sockets open: no
 *  PONG for PINGs, no PINGs sent, no idle connection closed. Every other
 *  command is still answered. */
upulsar_err_t upulsar_tb_ignore_pings(upulsar_tb_t *tb, int on);

/** While @p on, PARTITIONED_METADATA requests are received (and counted in
 *  upulsar_tb_stats_t.partition_lookups) but not answered, as by a broker
 *  whose metadata store is slow; every other command is answered as usual.
 *  Turning it off answers the held requests, oldest first, with the
 *  partition counts of that moment. Requests of a connection that closes
 *  meanwhile are dropped. Thread safety: any. */
upulsar_err_t upulsar_tb_hold_partition_metadata(upulsar_tb_t *tb, int on);

/** While @p on, stop reading from every connection (new ones are still
 *  accepted by the kernel but not handshaken): a broker that hangs entirely
 *  with its TCP connections open. Turning it off resumes processing. */
upulsar_err_t upulsar_tb_freeze(upulsar_tb_t *tb, int on);

/**
 * A hostile or broken broker: queue @p len bytes, exactly as given, to be
 * written to every connection of @p tb that has an active producer on
 * @p topic (a non-partitioned topic or one partition "<topic>-partition-<i>";
 * a connection serving several of its producers gets the bytes once), or
 * with @p topic NULL to every open connection, handshaken or not. Nothing
 * is framed, checked or counted: the bytes may be valid frames, frames the
 * client does not expect, a frame cut short, or garbage. On each connection
 * they are written after the frames the broker has queued on it so far and
 * before any it queues later, never inside one of its own frames; TLS
 * connections carry them inside the TLS session. The broker's own state does
 * not change (a frame announcing a receipt does not complete anything), and
 * what follows on the connection is whatever the broker sends next, so a
 * frame cut short absorbs the broker's next frames unless the test keeps
 * the broker quiet (upulsar_tb_hold_receipts(), upulsar_tb_ignore_pings()).
 * Connections stay open (close them with upulsar_tb_drop_connections());
 * while the broker is frozen (upulsar_tb_freeze()) the bytes wait.
 * @p bytes is copied (the caller keeps it); @p len 0 writes nothing.
 * Returns the number of connections the bytes were queued for (>= 0; 0
 * when no connection matches, including an unknown topic), or a negative
 * error: INVALID_ARG (@p tb NULL, or @p bytes NULL with @p len > 0),
 * INVALID_TOPIC, NOMEM (the connections counted before it still got the
 * bytes). Thread safety: any thread, concurrently with the broker. Blocks:
 * briefly (the broker's and the topic's mutexes); the bytes are written by
 * each connection's thread after this returns.
 */
int upulsar_tb_inject_raw(upulsar_tb_t *tb, const char *topic, const void *bytes, size_t len);

/* ------------------------------------------------------------------------ *
 * Raw protocol client, for testing the broker (and anything else speaking
 * the protocol) without a producer engine. One client = one TCP connection.
 * Not thread-safe: use each client from one thread at a time.
 * ------------------------------------------------------------------------ */

typedef struct upulsar_tb_client upulsar_tb_client_t;

/** protobuf-c's BaseCommand (PulsarApi.pb-c.h, built from the project's
 *  proto); declared here so this header does not need the generated one. */
struct Pulsar__Proto__BaseCommand;

/** A frame read by upulsar_tb_client_read(). Valid until the next read or
 *  close on the same client. */
typedef struct upulsar_tb_frame {
    int type;                                /**< BaseCommand.type */
    const struct Pulsar__Proto__BaseCommand *cmd; /**< decoded command */
    int has_payload;                         /**< MESSAGE (or SEND) frame */
    int has_crc;
    int crc_ok;                              /**< checksum matched (or none) */
    const uint8_t *metadata;                 /**< raw MessageMetadata */
    size_t metadata_len;
    const uint8_t *payload;
    size_t payload_len;
} upulsar_tb_frame_t;

/** Options of upulsar_tb_client_open_opts() / _connect_opts().
 *  Initialise with upulsar_tb_client_opts_init(). Strings are read during
 *  the call only. */
typedef struct upulsar_tb_client_opts {
    /** pulsar+ssl:// URLs: PEM CA bundle to verify the broker with. NULL =
     *  the broker's certificate is not checked at all. */
    const char *tls_ca_file;
    /** Client certificate and key for mutual TLS. NULL = none. */
    const char *tls_cert_file;
    const char *tls_key_file;
    /** Check the certificate against the URL's host name. Default 1. */
    int tls_verify_hostname;
    /** CONNECT auth_method_name; NULL = "token" when @p token is set, else
     *  "none". */
    const char *auth_method;
    /** CONNECT auth_data (e.g. a token); NULL = none. */
    const char *token;
    /** connect: answer an AUTH_CHALLENGE that comes before CONNECTED with
     *  AUTH_RESPONSE{"token", token}. Default 1. */
    int answer_challenge;
} upulsar_tb_client_opts_t;

/** Fill @p o with the defaults listed above. */
void upulsar_tb_client_opts_init(upulsar_tb_client_opts_t *o);

/** Open a TCP connection to @p url ("pulsar://host:port"); no handshake.
 *  A "pulsar+ssl://host:port" URL also runs the TLS handshake, without
 *  checking the broker's certificate (see upulsar_tb_client_open_opts()).
 *  Errors: INVALID_URL, CONNECT, TIMED_OUT, NOMEM, TLS. */
upulsar_err_t upulsar_tb_client_open(const char *url, int timeout_ms,
                                     upulsar_tb_client_t **out);

/** upulsar_tb_client_open() with options (NULL = defaults): for a
 *  pulsar+ssl:// URL, the TLS handshake verifies the broker against
 *  @p o->tls_ca_file and presents the client certificate if set. A failed
 *  handshake returns UPULSAR_ERR__TLS with OpenSSL's reason in
 *  upulsar_last_error() ("certificate has expired", "hostname mismatch",
 *  "unable to get local issuer certificate", an alert...). Every later read
 *  and send of the client goes through the TLS session. */
upulsar_err_t upulsar_tb_client_open_opts(const char *url, const upulsar_tb_client_opts_t *o,
                                          int timeout_ms, upulsar_tb_client_t **out);

/** upulsar_tb_client_open() + CONNECT (protocol_version 21) + wait for
 *  CONNECTED. Errors as open, plus PROTOCOL (another answer) or the broker's
 *  ERROR mapped to UPULSAR_ERR_*. */
upulsar_err_t upulsar_tb_client_connect(const char *url, int timeout_ms,
                                        upulsar_tb_client_t **out);

/** upulsar_tb_client_open_opts() + CONNECT with @p o's credentials + wait
 *  for CONNECTED (answering an AUTH_CHALLENGE on the way if
 *  @p o->answer_challenge). A broker ERROR is returned mapped to
 *  UPULSAR_ERR_* (e.g. UPULSAR_ERR_AUTHENTICATION_ERROR) with the broker's
 *  message in upulsar_last_error(). */
upulsar_err_t upulsar_tb_client_connect_opts(const char *url,
                                             const upulsar_tb_client_opts_t *o,
                                             int timeout_ms, upulsar_tb_client_t **out);

/** Send AUTH_RESPONSE{client_version, protocol_version, AuthData{@p method
 *  (NULL = "token"), @p data (NULL = none)}}. */
upulsar_err_t upulsar_tb_client_auth_response(upulsar_tb_client_t *c, const char *method,
                                              const char *data);

/** Close the connection and free @p c. NULL is accepted. */
void upulsar_tb_client_close(upulsar_tb_client_t *c);

/** Send @p len bytes as they are (e.g. frames made with up_frame_put_cmd(),
 *  or garbage). Errors: IO, CLOSED. */
upulsar_err_t upulsar_tb_client_send_raw(upulsar_tb_client_t *c,
                                         const void *bytes, size_t len);

/** Frame and send @p cmd as a simple command frame. */
upulsar_err_t upulsar_tb_client_send_cmd(upulsar_tb_client_t *c,
                                         const struct Pulsar__Proto__BaseCommand *cmd);

/**
 * Read the next frame, waiting up to @p timeout_ms (-1 = forever).
 * Returns OK and *@p f; TIMED_OUT (nothing complete yet; the connection
 * stays usable); CLOSED (the peer closed the connection); or PROTOCOL /
 * DECODE / FRAME_TOO_LARGE for a malformed stream. A frame whose checksum
 * does not match is returned with crc_ok = 0.
 */
upulsar_err_t upulsar_tb_client_read(upulsar_tb_client_t *c, int timeout_ms,
                                     upulsar_tb_frame_t *f);

/** As upulsar_tb_client_read(), but answers and skips PINGs (with PONG)
 *  and skips PONGs; if the next other frame is not of @p type, returns
 *  UPULSAR_ERR__STATE with *@p f filled so the caller can look at it. */
upulsar_err_t upulsar_tb_client_expect(upulsar_tb_client_t *c, int type,
                                       int timeout_ms, upulsar_tb_frame_t *f);

/** Next request id of this client's counter (starts at 1). The helpers
 *  below take their request ids from it. */
uint64_t upulsar_tb_client_next_request_id(upulsar_tb_client_t *c);

/**
 * Create a producer: PRODUCER{topic, producer_id, request_id, name (NULL =
 * let the broker choose)} and wait for the answer. On OK the assigned name
 * is copied to @p name_out (if not NULL, truncated to @p name_size) and the
 * broker's last_sequence_id to *@p last_seq (if not NULL). A broker ERROR is
 * returned as UPULSAR_ERR_BROKER_BASE + its ServerError.
 */
upulsar_err_t upulsar_tb_client_create_producer(upulsar_tb_client_t *c,
                                                const char *topic,
                                                uint64_t producer_id,
                                                const char *name, int timeout_ms,
                                                char *name_out, size_t name_size,
                                                int64_t *last_seq);

/** One message for upulsar_tb_client_send_messages(). Zero-initialise. */
typedef struct upulsar_tb_out_msg {
    const void *payload;
    size_t len;
    const char *key;                 /**< partition key, NULL = none */
    const void *ordering_key;        /**< NULL = none */
    size_t ordering_key_len;
    const upulsar_property_t *properties;
    size_t properties_cnt;
    uint64_t event_time;             /**< 0 = unset */
} upulsar_tb_out_msg_t;

#define UPULSAR_TB_SEND_BATCH 0x1   /**< batch format even for one message */
#define UPULSAR_TB_SEND_NO_CRC 0x2  /**< omit the checksum section */
#define UPULSAR_TB_SEND_BAD_CRC 0x4 /**< write a wrong checksum */
#define UPULSAR_TB_SEND_HIGHEST 0x8 /**< set highest_sequence_id (Java style) */

/**
 * Encode @p msgs[0..n) as ONE SEND (an entry) from @p producer_id with
 * sequence ids @p first_seq.. and send it: a batch (SingleMessageMetadata
 * records with sequence ids, num_messages_in_batch, CommandSend.num_messages)
 * when n > 1 or UPULSAR_TB_SEND_BATCH, else a single message whose key,
 * properties and event time go in MessageMetadata. @p compression is a
 * Pulsar CompressionType (0 none, 1 LZ4, 3 ZSTD if compiled in).
 * publish_time is the current wall clock. Errors: INVALID_ARG, NOMEM,
 * NOT_SUPPORTED/COMPRESSION, IO.
 */
upulsar_err_t upulsar_tb_client_send_messages(upulsar_tb_client_t *c,
                                              uint64_t producer_id,
                                              const char *producer_name,
                                              uint64_t first_seq,
                                              const upulsar_tb_out_msg_t *msgs,
                                              size_t n, int compression,
                                              int flags);

/** Subscribe: SUBSCRIBE{topic, subscription, Exclusive or Shared,
 *  consumer_id, initial position Earliest if @p earliest else Latest} and
 *  wait for SUCCESS. A broker ERROR is returned as UPULSAR_ERR_BROKER_BASE
 *  + its ServerError. @p shared selects the Shared subscription type. */
upulsar_err_t upulsar_tb_client_subscribe(upulsar_tb_client_t *c,
                                          const char *topic, const char *sub,
                                          uint64_t consumer_id, int earliest,
                                          int shared, int timeout_ms);

/** Send FLOW{consumer_id, permits}. */
upulsar_err_t upulsar_tb_client_flow(upulsar_tb_client_t *c,
                                     uint64_t consumer_id, uint32_t permits);

#ifdef __cplusplus
}
#endif
#endif /* UPULSAR_TESTBROKER_H */
