/*
 * upulsar.h -- a fast Apache Pulsar producer for C.
 *
 * upulsar publishes to Pulsar topics over the Pulsar binary protocol. One
 * call, upulsar_producer_start(), returns ONE handle for a whole partitioned
 * topic; underneath, the handle supervises one producer group per partition
 * ("<topic>-partition-<i>"), and each group holds one or more real Pulsar
 * producers.
 *
 * Data path: caller threads copy each message into a lock-free MPSC ring that
 * belongs to one real producer; an io_uring loop thread drains the rings into
 * batched SEND frames, writes them, reads SEND_RECEIPTs and resolves one
 * future per message; a watchdog thread reconnects, re-creates producers,
 * resends unacknowledged batches in order and fails what times out.
 *
 * Conventions used throughout this header:
 *  - Functions that can fail return upulsar_err_t (UPULSAR_OK == 0); results
 *    go out through the last pointer arguments. upulsar_err_str() names any
 *    code. A failing call also leaves a human-readable explanation in a
 *    thread-local buffer, read with upulsar_last_error().
 *  - "Thread safety" says who may call a function concurrently; "Blocks" says
 *    whether and for how long it may sleep; "Allocates" whether it may call
 *    malloc. Functions marked HOT PATH allocate nothing and make no syscall
 *    unless the loop thread is asleep and must be woken (one eventfd write).
 *  - Nothing here calls abort() on bad input: invalid arguments get
 *    UPULSAR_ERR__INVALID_ARG and leave every other state untouched.
 */
#ifndef UPULSAR_UPULSAR_H
#define UPULSAR_UPULSAR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UPULSAR_VERSION_MAJOR 0
#define UPULSAR_VERSION_MINOR 2
#define UPULSAR_VERSION_PATCH 0
#define UPULSAR_VERSION_STR "0.2.0"

/** Library version string, e.g. "0.2.0". Thread safety: any. */
const char *upulsar_version(void);

/* ------------------------------------------------------------------------ *
 * Errors
 * ------------------------------------------------------------------------ */

/**
 * Error codes. Two ranges, as in librdkafka:
 *  - library-local errors are negative and spelled with a double underscore
 *    (UPULSAR_ERR__TIMED_OUT);
 *  - errors reported by a broker are UPULSAR_ERR_BROKER_BASE + the wire value
 *    of Pulsar's ServerError enum (UPULSAR_ERR_PRODUCER_BUSY = 1000 + 16).
 */
typedef enum upulsar_err {
    UPULSAR_OK = 0,

    UPULSAR_ERR__INVALID_ARG = -1,     /**< NULL where not allowed, bad value */
    UPULSAR_ERR__NOMEM = -2,           /**< allocation failed */
    UPULSAR_ERR__TIMED_OUT = -3,       /**< a wait or an operation timed out */
    UPULSAR_ERR__QUEUE_FULL = -4,      /**< ring or pending limit reached (fail-fast mode) */
    UPULSAR_ERR__CLOSED = -5,          /**< producer or client is stopped / stopping */
    UPULSAR_ERR__MSG_TOO_LARGE = -6,   /**< message larger than the broker's max_message_size */
    UPULSAR_ERR__INVALID_TOPIC = -7,   /**< topic name is not a valid Pulsar topic */
    UPULSAR_ERR__INVALID_URL = -8,     /**< service URL cannot be parsed, or leads
                                            to an HTTP port (a web service) */
    UPULSAR_ERR__CONNECT = -9,         /**< TCP connect or handshake failed */
    UPULSAR_ERR__PROTOCOL = -10,       /**< peer violated the protocol; connection dropped */
    UPULSAR_ERR__BAD_CHECKSUM = -11,   /**< CRC32C of a frame did not match */
    UPULSAR_ERR__FRAME_TOO_LARGE = -12,/**< frame larger than the advertised maximum */
    UPULSAR_ERR__DECODE = -13,         /**< protobuf or batch payload could not be decoded */
    UPULSAR_ERR__MSG_TIMED_OUT = -14,  /**< message not acknowledged within send.timeout.ms */
    UPULSAR_ERR__GROUP_FAILED = -15,   /**< partition group exceeded its restart intensity */
    UPULSAR_ERR__IO = -16,             /**< socket or io_uring error */
    UPULSAR_ERR__NOT_SUPPORTED = -17,  /**< feature not compiled in or not supported by peer */
    UPULSAR_ERR__PENDING = -18,        /**< future not resolved yet (upulsar_future_poll) */
    UPULSAR_ERR__LOOKUP = -19,         /**< topic lookup failed (too many redirects, loop...) */
    UPULSAR_ERR__TLS = -20,            /**< TLS handshake or certificate failure,
                                            or TLS on one side only (pulsar:// to
                                            a TLS port, pulsar+ssl:// to a plain
                                            one) */
    UPULSAR_ERR__COMPRESSION = -21,    /**< compression or decompression failed */
    UPULSAR_ERR__STATE = -22,          /**< call not valid in the object's current state,
                                            or from a callback (see "Callbacks") */

    UPULSAR_ERR_BROKER_BASE = 1000,
    UPULSAR_ERR_UNKNOWN_ERROR = 1000,
    UPULSAR_ERR_METADATA_ERROR = 1001,
    UPULSAR_ERR_PERSISTENCE_ERROR = 1002,
    UPULSAR_ERR_AUTHENTICATION_ERROR = 1003,
    UPULSAR_ERR_AUTHORIZATION_ERROR = 1004,
    UPULSAR_ERR_CONSUMER_BUSY = 1005,
    UPULSAR_ERR_SERVICE_NOT_READY = 1006,
    /** backlog quota exceeded, policy producer_request_hold: a start fails
     *  with it at once; a producer created before keeps being re-created,
     *  its messages waiting (within send.timeout.ms) */
    UPULSAR_ERR_PRODUCER_BLOCKED_QUOTA_EXCEEDED_ERROR = 1007,
    /** backlog quota exceeded, policy producer_exception: a start fails
     *  with it at once; when a re-creation is refused with it, every
     *  message the producer holds fails with it, and the producer keeps
     *  being re-created with backoff */
    UPULSAR_ERR_PRODUCER_BLOCKED_QUOTA_EXCEEDED_EXCEPTION = 1008,
    UPULSAR_ERR_CHECKSUM_ERROR = 1009,
    UPULSAR_ERR_UNSUPPORTED_VERSION_ERROR = 1010,
    UPULSAR_ERR_TOPIC_NOT_FOUND = 1011,
    UPULSAR_ERR_SUBSCRIPTION_NOT_FOUND = 1012,
    UPULSAR_ERR_CONSUMER_NOT_FOUND = 1013,
    UPULSAR_ERR_TOO_MANY_REQUESTS = 1014,
    UPULSAR_ERR_TOPIC_TERMINATED = 1015,
    UPULSAR_ERR_PRODUCER_BUSY = 1016,
    UPULSAR_ERR_INVALID_TOPIC_NAME = 1017,
    UPULSAR_ERR_INCOMPATIBLE_SCHEMA = 1018,
    UPULSAR_ERR_CONSUMER_ASSIGN_ERROR = 1019,
    UPULSAR_ERR_TRANSACTION_COORDINATOR_NOT_FOUND = 1020,
    UPULSAR_ERR_INVALID_TXN_STATUS = 1021,
    UPULSAR_ERR_NOT_ALLOWED = 1022,
    UPULSAR_ERR_TRANSACTION_CONFLICT = 1023,
    UPULSAR_ERR_TRANSACTION_NOT_FOUND = 1024,
    UPULSAR_ERR_PRODUCER_FENCED = 1025,
    UPULSAR_ERR_BROKER_MAX = 1025
} upulsar_err_t;

/** Human-readable description of @p err; never NULL (unknown codes get a
 *  generic text). The string is static. Thread safety: any. */
const char *upulsar_err_str(upulsar_err_t err);

/** Symbolic name of @p err ("UPULSAR_ERR__TIMED_OUT"); never NULL. Static. */
const char *upulsar_err_name(upulsar_err_t err);

/** Non-zero if an operation that failed with @p err may succeed when retried
 *  (after a reconnect or backoff); zero for terminal errors (fenced, topic
 *  terminated, authorization, invalid argument...). This is what
 *  upulsar_producer_start() retries, except
 *  PRODUCER_BLOCKED_QUOTA_EXCEEDED_ERROR (a backlog quota clears only once
 *  consumers catch up: the start fails with it at once, as in the official
 *  clients, and may be tried again later); a producer that has been
 *  created once is re-created after every refusal but ProducerFenced,
 *  TopicTerminated and (exclusive access modes) ProducerBusy, as the
 *  official clients do (see upulsar_producer_start()). Thread safety: any. */
int upulsar_err_is_retriable(upulsar_err_t err);

/** Detail of the last error reported to the calling thread by any upulsar
 *  call ("batch.max.messages: must be between 1 and 100000"). Thread-local;
 *  valid until the next failing upulsar call on the same thread. Never NULL
 *  (empty string when nothing failed). Never contains credentials. */
const char *upulsar_last_error(void);

/* ------------------------------------------------------------------------ *
 * Configuration
 * ------------------------------------------------------------------------ */

/** A string-keyed configuration object. One type serves both the client
 *  ("client keys", read by upulsar_client_new()) and producers ("producer
 *  keys", read by upulsar_producer_start()), and one conf may serve both.
 *  Producer keys set on the client's conf are the defaults of every
 *  producer of that client; a producer's own conf replaces them key by key,
 *  only for the keys set on it with upulsar_conf_set(). A client key set on
 *  a producer's conf to another value than the client's is refused by
 *  upulsar_producer_start() (INVALID_ARG, naming the key: "stats.interval.ms
 *  is a client setting; ..."). upulsar_conf_scope() tells a key's scope.
 *  See CONFIGURATION.md, generated from the same table upulsar_conf_set()
 *  validates against, for every key, its scope, unit, default and the
 *  equivalent Java-client option. */
typedef struct upulsar_conf upulsar_conf_t;

typedef enum upulsar_conf_res {
    UPULSAR_CONF_OK = 0,
    UPULSAR_CONF_INVALID = -1, /**< known key, value rejected (see errstr) */
    UPULSAR_CONF_UNKNOWN = -2  /**< no such key */
} upulsar_conf_res_t;

/** New configuration with every key at its default.
 *  Ownership: the caller owns the result; free with upulsar_conf_destroy()
 *  (unless a function documents that it takes ownership).
 *  Returns NULL only if out of memory. Thread safety: any. */
upulsar_conf_t *upulsar_conf_new(void);

/** Deep copy of @p conf (NULL on out-of-memory). */
upulsar_conf_t *upulsar_conf_dup(const upulsar_conf_t *conf);

/** Free @p conf, its auth.token wiped first (with a write the compiler
 *  cannot remove). NULL is accepted. */
void upulsar_conf_destroy(upulsar_conf_t *conf);

/**
 * Set @p key to @p value (a string, parsed according to the key's type:
 * integers accept decimal, booleans "true"/"false"/"1"/"0", enums their
 * documented names). On UPULSAR_CONF_INVALID or UPULSAR_CONF_UNKNOWN @p errstr
 * (if not NULL) receives a NUL-terminated reason, the conf is unchanged.
 * Thread safety: a conf object must not be used from two threads at once.
 */
upulsar_conf_res_t upulsar_conf_set(upulsar_conf_t *conf, const char *key,
                                    const char *value, char *errstr,
                                    size_t errstr_size);

/** Read @p key's current value as a string into @p buf (truncated to
 *  @p size, NUL-terminated). Returns UPULSAR_CONF_UNKNOWN for unknown keys.
 *  Values of secret keys (auth.token) read back as "***". */
upulsar_conf_res_t upulsar_conf_get(const upulsar_conf_t *conf,
                                    const char *key, char *buf, size_t size);

/** Which object reads a configuration key. */
typedef enum upulsar_conf_scope {
    UPULSAR_CONF_SCOPE_UNKNOWN = 0,  /**< no such key (or NULL) */
    UPULSAR_CONF_SCOPE_CLIENT = 1,   /**< read by upulsar_client_new() */
    UPULSAR_CONF_SCOPE_PRODUCER = 2  /**< read by upulsar_producer_start(); on
                                          the client's conf, the default of
                                          its producers */
} upulsar_conf_scope_t;

/** The scope of @p key, e.g. to route "key=value" settings to a client's
 *  or a producer's conf. Thread safety: any. Blocks: no. Allocates: no. */
upulsar_conf_scope_t upulsar_conf_scope(const char *key);

/** Write the configuration reference (Markdown table: key, type, default,
 *  range, unit, description, Java-client equivalent) to @p fp (a FILE*).
 *  Used to generate CONFIGURATION.md. */
void upulsar_conf_dump_doc(void *fp);

/* ------------------------------------------------------------------------ *
 * Client
 * ------------------------------------------------------------------------ */

/** A connection to one Pulsar cluster: owns the io loop thread(s) (io_uring,
 *  or epoll: io.backend), the watchdog thread, the connection pool and the
 *  future pool. */
typedef struct upulsar_client upulsar_client_t;

/**
 * Create a client from @p conf (client keys: service.url, io.threads,
 * operation.timeout.ms, keepalive.interval.ms, backoff.*, listener.name
 * (the advertised listener named in every lookup)...). No connection is
 * made yet; producers connect when started.
 *
 * The files @p conf names are read here. The token source: an
 * auth.token.file that cannot be read (missing, a directory...) or holds no
 * token (empty or whitespace only), or an auth.token.env variable unset or
 * empty, fails with INVALID_ARG naming the file or variable and why; the
 * file is read again at every connection, where the same problems fail
 * that connection with the same error. TLS (pulsar+ssl://): a tls.ca.file,
 * tls.cert.file or tls.key.file that cannot be opened fails with TLS naming
 * the file and the system's reason ("No such file or directory"); one
 * OpenSSL cannot use, with OpenSSL's reason.
 *
 * The io backend (io.backend): with auto (the default) the client uses
 * io_uring where it can be set up and epoll where it cannot (a container
 * whose seccomp profile denies io_uring, a kernel without it), and logs
 * once, at its first connection (UPULSAR_LOG_INFO, "io backend: epoll
 * (io_uring unavailable: ...)"), which one and why; the environment
 * variable UPULSAR_IO_BACKEND (io_uring, epoll, auto) replaces auto (another
 * value fails with INVALID_ARG).
 * io.backend=io_uring where io_uring cannot be set up fails with IO, the
 * detail naming the call, the system's reason and errno ("io_uring cannot
 * be set up: io_uring_queue_init: Operation not permitted (EPERM; denied
 * by ...)") and pointing at io.backend=epoll or auto.
 *
 * Ownership: @p conf stays owned by the caller (it is copied; the copy's
 * token is wiped when the client is destroyed).
 * Returns UPULSAR_OK and *@p out, or an error (INVALID_ARG, INVALID_URL,
 * TLS, NOMEM, IO if the io backend cannot be set up) with
 * upulsar_last_error() saying why. Thread safety: any. Blocks: only to
 * read those files. Allocates: yes.
 */
upulsar_err_t upulsar_client_new(const upulsar_conf_t *conf,
                                 upulsar_client_t **out);

/**
 * Stop every producer still running (as upulsar_producer_stop() with the
 * client's operation.timeout.ms), stop the threads, close the connections and
 * free the client. Every future obtained from this client must have been
 * released before; futures still held become invalid. Starts of
 * upulsar_producer_start_async() still under way are cancelled first, and
 * their callbacks (UPULSAR_ERR__CLOSED) have returned before this does.
 * From a callback: no (see "Callbacks"): it returns at once without doing
 * anything, logs an UPULSAR_LOG_ERR line and sets upulsar_last_error().
 * Thread safety: call once. Blocks: up to operation.timeout.ms per producer
 * still running, and for the start callbacks under way to return.
 */
void upulsar_client_destroy(upulsar_client_t *client);

/* ------------------------------------------------------------------------ *
 * Message ids and futures
 * ------------------------------------------------------------------------ */

/** ledger_id and entry_id of a message whose position the broker did not
 *  report: see upulsar_msg_id_t. */
#define UPULSAR_ID_UNKNOWN UINT64_MAX

/**
 * Where the broker stored a message.
 *
 * A message resent after a reconnect that the broker had already stored
 * before the connection broke (its receipt was lost with the connection) is
 * recognised by the broker's de-duplication and acknowledged without a
 * position, as Pulsar does (ledger and entry -1). That needs
 * de-duplication on for the namespace or topic (Pulsar's default is off:
 * brokerDeduplicationEnabled, or pulsar-admin namespaces
 * set-deduplication); without it such a resend is stored a second time, as
 * with every Pulsar client. Such a message succeeds
 * (it is stored exactly once) with ledger_id = entry_id = UPULSAR_ID_UNKNOWN;
 * partition, batch_index and batch_size are still exact (a resent batch is
 * byte-identical to the stored entry). upulsar keeps the real position
 * whenever the original receipt still arrives, also after the producer was
 * re-created on the same connection.
 *
 * A message sent in chunks (chunking.enabled) is stored as one entry per
 * chunk, none of them a batch: ledger_id / entry_id are its last chunk's,
 * first_chunk_ledger_id / first_chunk_entry_id its first chunk's (the two
 * ends of the official clients' ChunkMessageId: a consumer seeking to or
 * acknowledging the message needs both), batch_index -1 and batch_size 0.
 * A message sent alone as a plain entry, as the official clients send a
 * message they do not batch (batching.enabled=false, or a delayed message:
 * deliver_at_ms / deliver_after_ms), has batch_index -1 and batch_size 0
 * too. For any other message the first_chunk_ fields equal ledger_id and
 * entry_id. When the last chunk's position is unknown (de-duplicated,
 * above), both pairs are UPULSAR_ID_UNKNOWN.
 */
typedef struct upulsar_msg_id {
    uint64_t ledger_id;
    uint64_t entry_id;
    int32_t partition;   /**< partition index, -1 for a non-partitioned topic */
    int32_t batch_index; /**< position in its batch entry, -1 if not batched */
    int32_t batch_size;  /**< messages in the batch entry, 0 if not batched */
    uint32_t reserved;   /**< 0; keeps the struct free of padding (memcmp-safe) */
    uint64_t first_chunk_ledger_id; /**< chunked: the first chunk's; else ledger_id */
    uint64_t first_chunk_entry_id;  /**< chunked: the first chunk's; else entry_id */
} upulsar_msg_id_t;

/** A per-message future: resolves exactly once, to a message id or an error. */
typedef struct upulsar_future upulsar_future_t;

/*
 * Callbacks: the rules, for every callback upulsar calls.
 *
 * Delivery callbacks (upulsar_delivery_cb_t) and the free_cb of a NOCOPY
 * send run on an io loop thread; the statistics callback on the watchdog
 * thread; the start callback (upulsar_start_cb_t) on the thread of its
 * start, which counts as an establish worker; the log callback on any of
 * these, on an establish worker or on the partition poller (a library
 * thread that asks for partition counts and grows partitioned producers;
 * the rules of an establish worker apply there) (and,
 * for a misuse it reports, such as a future released twice, a failed
 * connection attempt of upulsar_producer_start(), or lines still held
 * back at upulsar_client_destroy(), on the application thread inside that
 * call: there the rules below apply as on a library thread, since that
 * call is not done). These are library threads, and while a callback runs its thread does
 * nothing else: on an io loop thread no message of any producer on that
 * loop is written, acknowledged or resolved. A callback should return
 * quickly. What it may call, decided by the calling thread (a library
 * thread of any client counts):
 *
 *  - upulsar_send(), upulsar_send_many(): yes, and they never block there.
 *    With block.if.queue.full=true and no room (ring full,
 *    max.pending.messages or memory.limit.bytes reached) they fail at once
 *    with UPULSAR_ERR__QUEUE_FULL instead of waiting for room that only
 *    the thread running the callback could free; upulsar_last_error() says
 *    so. A send to a producer being stopped gets UPULSAR_ERR__CLOSED.
 *  - upulsar_future_poll(), upulsar_future_release(): yes.
 *    upulsar_future_wait(): yes, but it does not wait: a future not yet
 *    resolved gives UPULSAR_ERR__PENDING whatever the timeout.
 *  - upulsar_producer_flush(), upulsar_producer_stop(),
 *    upulsar_producer_start(), upulsar_producer_start_async(): no; they
 *    return UPULSAR_ERR__STATE at once
 *    and change nothing (upulsar_last_error() names the call and the
 *    thread). They would wait for the thread running the callback (a stop
 *    would also free the producer whose message is being resolved).
 *  - upulsar_client_destroy(): no; it returns at once without doing
 *    anything and logs why (UPULSAR_LOG_ERR; also in upulsar_last_error()).
 *  - introspection (upulsar_producer_groups(), _list(), _stats_json(),
 *    _partitions(), _partition_for_key()),
 *    upulsar_client_metrics_prometheus(), upulsar_client_set_log_cb(),
 *    upulsar_client_set_log_record_cb(), upulsar_client_set_log_level(),
 *    upulsar_client_set_stats_cb(), upulsar_conf_*(), upulsar_err_*(),
 *    upulsar_last_error(), upulsar_client_new(): yes.
 * To stop a producer because of what a callback saw, let an application
 * thread do it (a flag, a queue, a condition variable).
 */

/**
 * Completion callback, set per message in upulsar_send_opts_t.
 * Called exactly once per accepted message (success, broker error, timeout or
 * stop), from an io loop thread; what it may call is in "Callbacks" above
 * (send: yes, never blocking; flush, stop, client destroy: refused).
 * @p id is NULL on error and only valid during the call.
 * On error, upulsar_last_error() called on the callback's thread during the
 * call returns the message's detail: the same text
 * upulsar_future_error_detail() gives for its future (partition topic,
 * broker, reason). It is valid during the call only (copy it to keep it),
 * and a upulsar call that fails inside the callback replaces it with its
 * own error, as anywhere else. Setting it costs no allocation and nothing
 * for successful messages.
 */
typedef void (*upulsar_delivery_cb_t)(upulsar_err_t err,
                                      const upulsar_msg_id_t *id,
                                      void *opaque);

/**
 * Wait until @p f resolves or @p timeout_ms passes (-1 = forever, 0 = poll).
 * Returns the message's result (UPULSAR_OK and *@p id filled if @p id is not
 * NULL, or the error it failed with), or UPULSAR_ERR__PENDING if the timeout
 * passed first (the future stays valid and pending), or
 * UPULSAR_ERR__INVALID_ARG for a NULL future or one already released (as
 * far as upulsar_future_release() can tell, see there).
 * From a callback: yes, without waiting (as @p timeout_ms = 0; see
 * "Callbacks"): the future may be one only the calling thread resolves.
 * Thread safety: any number of threads may wait on one future.
 * Blocks: up to @p timeout_ms (futex). Allocates: no.
 */
upulsar_err_t upulsar_future_wait(upulsar_future_t *f, int timeout_ms,
                                  upulsar_msg_id_t *id);

/** Non-blocking upulsar_future_wait(f, 0, id). From a callback: yes.
 *  HOT PATH. */
upulsar_err_t upulsar_future_poll(upulsar_future_t *f, upulsar_msg_id_t *id);

/**
 * Why @p f failed, in words: for a future that resolved with an error and
 * has not been released, a NUL-terminated text naming the partition topic,
 * the broker its producer was last created on (when there was one) and the
 * reason, with the broker's own error name and text when the broker refused
 * something (SEND_ERROR, a refused PRODUCER). For example:
 *   "persistent://public/default/t-partition-3 via 127.0.0.1:6650: send
 *    timed out after 30000 ms (send.timeout.ms): no receipt from the broker
 *    (producer disconnected, waiting to reconnect (BACKOFF))"
 *   "persistent://public/default/t-partition-3 via 127.0.0.1:6650: broker
 *    refused the send: ChecksumError: Checksum failed on the broker"
 *   "... partition group failed: the broker refused to re-create producer
 *    p-3-0: PRODUCER: Broker: topic terminated (topic was terminated)"
 * The text is meant for people and logs, not for parsing: the error code
 * (upulsar_future_wait(), upulsar_future_poll()) is the contract.
 * Returns NULL when there is no failure to describe: @p f is NULL, still
 * pending, succeeded, or released already (as far as
 * upulsar_future_release() can tell).
 * Lifetime: the text belongs to the client; it stays valid until @p f is
 * released (do not free it). Texts are shared between failures with the
 * same reason, so a run of failures allocates nothing per message; the
 * client keeps at most 1024 different texts (of at most 511 bytes), and a
 * failure beyond that gets a fixed text saying so.
 * Thread safety: any (as upulsar_future_poll()). Blocks: no. Allocates: no.
 */
const char *upulsar_future_error_detail(const upulsar_future_t *f);

/**
 * Give @p f back to the pool. Allowed before it resolves (the message is not
 * cancelled; its result is then simply dropped). After this call @p f must
 * not be used. Every future must be released exactly once.
 *
 * Returns UPULSAR_OK (also for NULL, which is ignored), or
 * UPULSAR_ERR__INVALID_ARG when @p f was released already: nothing changes
 * (the pool and every other future stay intact), upulsar_last_error() says
 * why and the client logs it (UPULSAR_LOG_ERR, see
 * upulsar_client_set_log_cb()). A second release is always caught while
 * the future's slot has not been handed out again; after that (the next
 * upulsar_send() on any thread may reuse it) it is caught unless the slot
 * was handed out a multiple of 8 times in between, in which case it
 * releases that other message's future. upulsar_future_wait() and
 * upulsar_future_poll() refuse a released future the same way.
 * Thread safety: any, but not concurrently with a wait on the same future.
 * From a callback: yes. HOT PATH.
 */
upulsar_err_t upulsar_future_release(upulsar_future_t *f);

/* ------------------------------------------------------------------------ *
 * Partitioned producer
 * ------------------------------------------------------------------------ */

/** One handle for a (partitioned or not) topic. */
typedef struct upulsar_producer upulsar_producer_t;

/** The longest full topic name upulsar_producer_start() takes, in bytes
 *  ("persistent://tenant/namespace/name", after a short name is expanded;
 *  partition names add "-partition-<n>" to it). */
#define UPULSAR_TOPIC_NAME_MAX 224

/**
 * Start a producer for @p topic.
 *
 * @param client     a client from upulsar_client_new().
 * @param name       producer name, or NULL to let the broker name them.
 *                   As with the official clients, every partition topic's
 *                   producer is named @p name itself (the broker keys
 *                   de-duplication history and the last_sequence_id a
 *                   producer resumes from on the name, per topic); with
 *                   producers.per.partition > 1 the producers of each
 *                   partition topic are "<name>-<index>" (index within its
 *                   group, 0 .. producers.per.partition-1), the same on
 *                   every partition. Names are thus unique per partition
 *                   topic and stable across restarts with the same
 *                   producers.per.partition. 1 to 80 characters.
 * @param topic      "persistent://tenant/ns/topic" or a short name
 *                   ("my-topic" = persistent://public/default/my-topic).
 *                   Tenant and namespace names have letters, digits and
 *                   "_-=:." only (what a Pulsar broker accepts); the
 *                   topic's own name has no '/', space, control character
 *                   or any of \ " ' * ? % &. Else INVALID_TOPIC.
 * @param partitions the partition count the caller expects, or 0. The
 *                   count used is always the broker's (PARTITIONED_METADATA,
 *                   asked at every start, as the official clients do; its
 *                   answer 0 means a non-partitioned topic: one group), and
 *                   upulsar opens "<topic>-partition-0" ...
 *                   "<topic>-partition-<n-1>". A count >0 that differs
 *                   from the broker's is not an error: the broker's wins
 *                   and a warning naming both counts is logged
 *                   (upulsar_client_set_log_cb()), so keys route like every
 *                   other client's of the topic from the first message and
 *                   nothing is written to partitions the topic does not
 *                   have (a count written into a configuration goes stale
 *                   when the topic gets more partitions, which running
 *                   producers follow: partitions.update.interval.ms);
 *                   upulsar_producer_partitions() tells the count used.
 *                   A count given over the conf's partitions.max (default
 *                   1024) fails the start with INVALID_ARG before anything
 *                   is asked; so does a broker's count over it, naming
 *                   both numbers.
 * @param conf       producer keys (batching, routing, compression,
 *                   producers.per.partition...): those set on it with
 *                   upulsar_conf_set() over the client's conf (whose
 *                   producer keys are the defaults); NULL = the client's
 *                   conf's. A client key set on it to another value than
 *                   the client's fails with INVALID_ARG naming the key.
 *                   Copied without its auth.token (connections use the
 *                   client's), so one conf may serve both.
 * @param out        receives the handle.
 *
 * Every real producer is registered with its broker (lookup, PRODUCER)
 * before this returns (unless lazy.start.partitions), all together: the
 * lookups go out at once, batched per broker, then every PRODUCER request
 * at once, pipelined on the shared connections (producers in the
 * WaitForExclusive access mode: several at a time).
 * Failures that upulsar_err_is_retriable() calls transient (a broker
 * restarting or refusing connections, ServiceNotReady while a topic moves)
 * are tried again with backoff.* delays while the next attempt can begin
 * within operation.timeout.ms of the call; the start then fails with the
 * last attempt's error, without waiting for the deadline (with the
 * defaults, attempts at 0, 0.1, 0.3 ... 12.7 and 25.5 s, then the error).
 * The last attempt may still run its own timeouts: one connection attempt
 * (resolving the host name, TCP connect, TLS handshake and
 * CONNECT/CONNECTED) is bounded by connection.timeout.ms, a request by
 * operation.timeout.ms. A host name is resolved on a thread of its own
 * (getaddrinfo() cannot be interrupted): a resolution given up on at that
 * bound, or at a stop or client destroy, finishes in the background when
 * the DNS resolver answers, so a DNS outage delays no stop or destroy; do
 * not unload the library (dlclose()) while one may still run. Each failed
 * connection attempt is logged when it fails (UPULSAR_LOG_WARNING, the
 * address and the reason, e.g. "Connection refused": see
 * upulsar_client_set_log_cb()), so a start that is retrying is never
 * silent.
 * A service URL that leads to the wrong kind of port fails the start on
 * the first attempt (a wrong URL does not fix itself: these errors are not
 * retriable), the error saying what to do: TLS "looks like TLS: use
 * pulsar+ssl://" (a pulsar:// URL to a TLS port: its first bytes are a TLS
 * record, or it drops the CONNECT and answers a TLS ClientHello sent on a
 * second connection); TLS "the server does not speak TLS: use pulsar://"
 * (a pulsar+ssl:// URL to a plain port: the TLS handshake fails and a
 * plain CONNECT, sent without credentials on a second connection, gets a
 * Pulsar answer); INVALID_URL "this is an HTTP port (the web service?),
 * the binary protocol is usually port 6650" (6651 for pulsar+ssl://): the
 * server answered in HTTP. A producer that has worked and meets one of
 * these while reconnecting retries it, as any other refusal.
 * Errors: INVALID_ARG (also chunking.enabled together with
 * batching.enabled, which the official clients do not allow either),
 * INVALID_TOPIC (also a full name longer than
 * UPULSAR_TOPIC_NAME_MAX), INVALID_URL (an HTTP port, above), NOMEM (also
 * when a producer cannot be put on its io thread), TIMED_OUT, CONNECT
 * (with the system's reason, e.g. "Connection refused", "Too many open
 * files"), LOOKUP, TLS (also the two hints above), or
 * the broker's refusal (e.g. UPULSAR_ERR_PRODUCER_BUSY, _TOPIC_NOT_FOUND,
 * _AUTHORIZATION_ERROR, either _PRODUCER_BLOCKED_QUOTA_EXCEEDED_*,
 * _INCOMPATIBLE_SCHEMA: not retried); upulsar_last_error() names the broker
 * or topic concerned. On failure everything started so far is closed
 * again.
 * Schemas: the conf's schema.* keys declare the producers' schema in every
 * PRODUCER request (none by default: raw bytes, as the official clients
 * send for BYTES). UPULSAR_ERR_INCOMPATIBLE_SCHEMA (with the broker's
 * reason) when the topic's schema is of another type, or the topic
 * enforces schema validation and the producer declares none; INVALID_ARG
 * when the keys make no schema (json or avro without schema.definition, a
 * definition for string...), before anything is sent. The schema version
 * the broker answers is kept per real producer and written in the
 * metadata of every entry (schema_version). upulsar does not encode
 * payloads: send them as the declared schema says (see CONFIGURATION.md).
 * Once created, a real producer that loses its connection or is closed by
 * its broker is re-created by the watchdog with backoff.* delays; every
 * refusal is logged (upulsar_client_set_log_cb()) and retried, including
 * AuthenticationError (e.g. a token refused at a refresh: fix the token and
 * it comes back), AuthorizationError and TopicNotFound, while its messages
 * wait within send.timeout.ms (ProducerBlockedQuotaExceededException
 * fails them at once with that error, as the official clients do; the
 * producer is still re-created). Only ProducerFenced, TopicTerminated,
 * ProducerBusy in an exclusive access mode and restart.intensity (when set)
 * fail its partition group (GROUP_FAILED or that error for its messages and
 * later sends). A producer never created yet (lazy.start.partitions, a
 * partition added later) also fails its group on AuthenticationError,
 * AuthorizationError, TopicNotFound, InvalidTopicName and
 * IncompatibleSchema.
 * From a callback: no, UPULSAR_ERR__STATE at once (see "Callbacks").
 * Thread safety: any. Blocks: yes (network round trips). Allocates: yes.
 */
upulsar_err_t upulsar_producer_start(upulsar_client_t *client,
                                     const char *name, const char *topic,
                                     int partitions,
                                     const upulsar_conf_t *conf,
                                     upulsar_producer_t **out);

/**
 * Result of upulsar_producer_start_async(): @p err is UPULSAR_OK and
 * @p producer the started handle, or the error the start failed with and
 * @p producer NULL. Called exactly once per start the call accepted.
 */
typedef void (*upulsar_start_cb_t)(upulsar_err_t err, upulsar_producer_t *producer,
                                   void *opaque);

/**
 * Start a producer as upulsar_producer_start() does, without blocking the
 * calling thread: for a service whose own event loop must not stall.
 *
 * The arguments and @p conf are checked here, with the same errors as
 * upulsar_producer_start() (INVALID_ARG, also for a NULL @p cb;
 * INVALID_TOPIC; a conf that makes no producer or no schema), and then
 * nothing is started and @p cb is never called. Otherwise this returns
 * UPULSAR_OK at once and the start runs on a thread of its own (one per
 * start under way, ending with it): the broker's partition count, then
 * every real producer, with the retries, timeouts (operation.timeout.ms
 * counted from this call) and errors upulsar_producer_start() documents.
 * Then @p cb(err, producer, @p opaque) is called once, on that thread:
 * with UPULSAR_OK and the handle, or with the error and NULL (everything
 * started so far is closed again); during the call upulsar_last_error() on
 * that thread gives the error's detail, as upulsar_producer_start() leaves
 * it. Messages cannot be sent before the handle is delivered (to queue
 * messages while producers are being created, use lazy.start.partitions
 * with upulsar_producer_start()).
 *
 * The callback runs on a library thread: what it may call is in
 * "Callbacks" (send: yes, never blocking; flush, stop, starts and client
 * destroy: refused with UPULSAR_ERR__STATE; the detail of a refusal names
 * the thread "establish worker"). To stop the new
 * producer, or to use it from the application's threads, hand the handle
 * over (a queue, a condition variable). It may block briefly without
 * harm to other producers, but the client's destroy waits for it.
 *
 * Ownership: @p name, @p topic and @p conf are copied before this
 * returns. The handle passed to @p cb belongs to the application from then
 * on, as one returned by upulsar_producer_start(): stop it with
 * upulsar_producer_stop() (or let upulsar_client_destroy() stop it).
 * Client destroy: upulsar_client_destroy() cancels every start still under
 * way (its network waits give up within milliseconds; @p cb is called
 * with UPULSAR_ERR__CLOSED and NULL) and waits until each one's @p cb has
 * returned; a start that completed first is delivered and its producer is
 * stopped by the destroy like any other. A start called once the destroy
 * has begun gets UPULSAR_ERR__CLOSED at once.
 * Errors (returned at once): those of the checks above, CLOSED, NOMEM, IO
 * (the thread cannot be created). From a callback: no,
 * UPULSAR_ERR__STATE at once (see "Callbacks").
 * Thread safety: any. Blocks: no (the checks only). Allocates: yes.
 */
upulsar_err_t upulsar_producer_start_async(upulsar_client_t *client, const char *name,
                                           const char *topic, int partitions,
                                           const upulsar_conf_t *conf,
                                           upulsar_start_cb_t cb, void *opaque);

/** One message property (key and value are NUL-terminated UTF-8). */
typedef struct upulsar_property {
    const char *key;
    const char *value;
} upulsar_property_t;

/** Send flags. */
#define UPULSAR_SEND_NOCOPY 0x1 /**< do not copy the payload into the ring:
                                     the caller keeps it valid until
                                     free_cb(payload, opaque) is called
                                     (from the io loop thread) */
#define UPULSAR_SEND_SEQUENCE_ID 0x2 /**< use upulsar_send_opts_t.sequence_id
                                          instead of the producer's next one */
#define UPULSAR_SEND_PARTITION 0x4 /**< send to partition
                                        upulsar_send_opts_t.partition instead
                                        of routing (see there) */
#define UPULSAR_SEND_NULL_VALUE 0x8 /**< a null value (a tombstone for a
                                         compacted topic): len must be 0
                                         (payload may be NULL); sent with
                                         null_value = true and an empty
                                         payload, which consumers tell apart
                                         from an empty value */

/** Most entries upulsar_send_opts_t.replication_clusters may hold. */
#define UPULSAR_MAX_REPLICATION_CLUSTERS 32

/** Per-message options. Zero-initialise, then set what you need. Every
 *  pointer is only read during the upulsar_send() call, except a NOCOPY
 *  payload (see UPULSAR_SEND_NOCOPY). */
typedef struct upulsar_send_opts {
    /** Message key (NUL-terminated). Routing: hash(key) mod partitions with
     *  the configured hashing.scheme; the same key always goes to the same
     *  partition and, within a group, the same real producer. NULL = none. */
    const char *partition_key;
    /** Ordering key for Key_Shared consumers (bytes); not used for routing. */
    const void *ordering_key;
    size_t ordering_key_len;
    /** Application properties, copied. */
    const upulsar_property_t *properties;
    size_t properties_cnt;
    /** Application event time, ms since the epoch; 0 = unset. */
    uint64_t event_time_ms;
    /** UPULSAR_SEND_* flags; a bit none of them names is refused
     *  (UPULSAR_ERR__INVALID_ARG). */
    int flags;
    /** With UPULSAR_SEND_NOCOPY: releases the payload once it has been
     *  encoded into a batch (or the send failed); on an io loop thread it
     *  is a callback like any other (see "Callbacks"). */
    void (*free_cb)(void *payload, void *opaque);
    /** Completion callback (may be NULL); @p opaque is passed to it and to
     *  free_cb. */
    upulsar_delivery_cb_t cb;
    void *opaque;

    /* ---- less common options: zero leaves each unset ---- */

    /** Delayed delivery (Java: deliverAt / deliverAfter): deliver to
     *  consumers no earlier than this wall-clock time, ms since the epoch
     *  (MessageMetadata.deliver_at_time); 0 = unset. The broker honours it
     *  for Shared and Key_Shared subscriptions only. At most INT64_MAX
     *  (the field is signed on the wire): a later time, or a
     *  deliver_after_ms that reaches past it, is INVALID_ARG. */
    uint64_t deliver_at_ms;
    /** Delayed delivery relative to now: deliver_at = the wall clock at
     *  upulsar_send() + this many ms. Ignored when deliver_at_ms is set.
     *  A message with either field (or with replication_clusters or
     *  disable_replication) is never batched: the batch open before it is
     *  sent first, then the message as an entry of its own, keeping the
     *  order of the producer's messages. A delayed message is a plain
     *  entry, as the official clients send it (its message id has
     *  batch_index -1 and batch_size 0); with batching on, one with
     *  replication clusters only is a batch of one. */
    uint64_t deliver_after_ms;
    /** With the UPULSAR_SEND_SEQUENCE_ID flag: this message's sequence id
     *  (Java: TypedMessageBuilder.sequenceId), 0 to INT64_MAX - 1 (the
     *  next message's id must fit; else INVALID_ARG), used by broker
     *  de-duplication. Pulsar's rules apply per real producer: ids must
     *  increase; a message whose id is not larger than the last id that
     *  producer used (explicit or automatic) is not sent and resolves with
     *  UPULSAR_ERR__INVALID_ARG. Messages without the flag continue after
     *  the largest id used so far. Only meaningful with a single real
     *  producer per key (keyed messages, routing.mode=single or one
     *  partition), since each real producer has its own sequence. */
    int64_t sequence_id;
    /** Geo-replication: replicate only to these clusters (Java:
     *  replicationClusters; MessageMetadata.replicate_to). Copied; at most
     *  UPULSAR_MAX_REPLICATION_CLUSTERS non-empty names of 512 bytes in total
     *  (including one terminating NUL each). */
    const char *const *replication_clusters;
    size_t replication_clusters_cnt;
    /** Non-zero: do not replicate this message (Java:
     *  disableReplication(), which sends replicate_to = ["__local__"]).
     *  Overrides replication_clusters. */
    int disable_replication;

    /* ---- after the first layout, UPULSAR_SEND_OPTS_SIZE_0_2 (see "Growth of
     * upulsar_send_opts_t" below) ---- */

    /** With the UPULSAR_SEND_PARTITION flag: the partition to send to, 0 ..
     *  upulsar_producer_partitions() - 1 (0 for a non-partitioned topic),
     *  instead of the key's hash, the router (upulsar_conf_set_router())
     *  or routing.mode. Another value fails the send with INVALID_ARG
     *  (nothing is queued). Messages sent to one partition keep their
     *  order; with producers.per.partition > 1 a keyed message goes to
     *  the producer of that partition its key picks, a keyless one to the
     *  partition's first producer. Without the flag this field is not
     *  read (0 does not mean partition 0). */
    int partition;
    /** A binary partition key (Java: TypedMessageBuilder.keyBytes()): up to
     *  UPULSAR_MAX_KEY_BYTES_BINARY bytes, sent base64-encoded as
     *  partition_key with partition_key_b64_encoded = true, so consumers
     *  get the bytes back. Routing hashes the base64 text with
     *  hashing.scheme, as the Java client's routers hash the key string of
     *  a keyBytes() message: a binary key goes to the same partition as
     *  its base64 text given as partition_key. NULL = none (an empty key
     *  is a non-NULL pointer with length 0). Not together with
     *  partition_key (INVALID_ARG). Copied. */
    const void *partition_key_bytes;
    size_t partition_key_bytes_len;
} upulsar_send_opts_t;

/*
 * Growth of upulsar_send_opts_t. New fields are only ever appended, and
 * the size of the struct a program was compiled with reaches the library
 * with every send: upulsar_send() and upulsar_send_many() are macros that
 * pass sizeof(upulsar_send_opts_t) to upulsar_send_sized() and
 * upulsar_send_many_sized(), so nothing has to be set by hand and
 * zero-initialising (`upulsar_send_opts_t o = {0}`, or only designated
 * fields) stays all a program does. The library reads only the fields
 * that size covers and takes the rest as zero (unset):
 *  - a program built against an older header, which has no such macro,
 *    calls the exported function upulsar_send() (and
 *    upulsar_send_many()), which reads the first layout
 *    (UPULSAR_SEND_OPTS_SIZE_0_2 bytes: everything up to
 *    disable_replication) and nothing after it;
 *  - a program built against a newer header that has fields this library
 *    does not know: a send succeeds when those fields are all zero and
 *    fails with INVALID_ARG (naming the sizes) when one is set, so no
 *    option is ever silently dropped;
 *  - a flag that needs a field the caller's layout does not have
 *    (UPULSAR_SEND_PARTITION through the first layout) fails with
 *    INVALID_ARG.
 * Taking the address of upulsar_send (a function pointer) gives the first
 * layout's entry point: call through upulsar_send_sized to use the newer
 * fields.
 */

/** The bytes of upulsar_send_opts_t that upulsar 0.2 defined (the first
 *  layout: up to and including disable_replication; its struct was padded
 *  after that, which later fields use). */
#define UPULSAR_SEND_OPTS_SIZE_0_2 \
    (offsetof(upulsar_send_opts_t, disable_replication) + sizeof(int))

/* ---- delivery reports (producer keys set by function) ---- */

/**
 * What a delivery report tells about one message: its result and the
 * message itself, so that a failed message can be retried or dead-lettered
 * without the application keeping its own copy (as librdkafka's delivery
 * report does).
 *
 * Lifetime: the report and everything it points to (payload, key, detail,
 * id) are valid during the callback only; copy what you keep.
 *
 * Where the payload comes from, and when it is there (payload_kept):
 *  - a message that was encoded into a batch (the usual case, success or
 *    failure: receipt, SEND_ERROR, send.timeout.ms, stop, a failed
 *    group), or into a plain entry of its own (batching.enabled=false, a
 *    delayed message): from the batch's or the entry's buffer, which
 *    holds the encoded message until it resolves; also for
 *    UPULSAR_SEND_NOCOPY payloads (copied into the batch);
 *  - a message that fails before it was encoded (still in the producer's
 *    queue when its producer failed, timed out or stopped, or refused while
 *    being batched): from the queue; a UPULSAR_SEND_NOCOPY payload is
 *    reported before its free_cb is called;
 *  - a message sent in chunks (chunking.enabled, larger than the broker's
 *    max_message_size): not kept (payload NULL, len 0, payload_kept 0, key
 *    NULL): its chunks leave the producer one by one and only the last one
 *    resolves the message. Nothing is copied to keep it.
 * A message that could not be read back from its queue at all (out of
 * memory making a record that wraps the queue's end contiguous), and a
 * compressed message sent alone as a plain entry when memory was short for
 * the uncompressed copy its report needs, have payload_kept 0 as well.
 * Nothing is allocated per message for a report, and producers without a
 * report callback do no work for it.
 */
typedef struct upulsar_delivery_report {
    upulsar_err_t err;        /**< UPULSAR_OK or why the message failed */
    const char *detail;       /**< on failure: the text
                                   upulsar_future_error_detail() gives; NULL
                                   on success */
    const upulsar_msg_id_t *id; /**< on success: where it was stored; NULL on
                                     failure */
    int partition;            /**< partition it was sent to, -1 for a
                                   non-partitioned topic */
    int64_t sequence_id;      /**< its sequence id, -1 if it failed before it
                                   was given one (still queued) */
    const void *payload;      /**< the payload bytes (see payload_kept);
                                   NULL when len is 0 */
    size_t len;
    int payload_kept;         /**< 1: payload and len are the message's; 0:
                                   not available (see above) */
    int null_value;           /**< sent with UPULSAR_SEND_NULL_VALUE */
    const char *key;          /**< partition key as sent (NOT NUL-terminated:
                                   key_len bytes); for partition_key_bytes
                                   its base64 text; NULL when none (or not
                                   kept) */
    size_t key_len;
    int key_b64;              /**< key is the base64 text of
                                   partition_key_bytes */
    void *msg_opaque;         /**< upulsar_send_opts_t.opaque of the message */
} upulsar_delivery_report_t;

/** Delivery report callback: @p dr describes one message; @p opaque is the
 *  one given to upulsar_conf_set_delivery_report_cb(). */
typedef void (*upulsar_delivery_report_cb_t)(const upulsar_delivery_report_t *dr,
                                             void *opaque);

/**
 * Producer key: call @p cb once for every message of producers started
 * with @p conf (upulsar_producer_start(): the conf is copied, so set this
 * before), when it resolves (success or failure), after its future
 * resolved and after its own upulsar_send_opts_t.cb (which keeps working
 * as before). Runs on an io loop thread, as delivery callbacks do: see
 * "Callbacks" for what it may call (send: yes, never blocking; flush,
 * stop, client destroy: refused); during it upulsar_last_error() gives
 * the failure's detail, as for upulsar_delivery_cb_t. NULL removes it.
 * Reports of one partition come in the order its messages were sent.
 * Thread safety: as upulsar_conf_set(). Errors: INVALID_ARG (NULL conf).
 */
upulsar_err_t upulsar_conf_set_delivery_report_cb(upulsar_conf_t *conf,
                                                  upulsar_delivery_report_cb_t cb, void *opaque);

/* ---- custom routing (producer key set by function) ---- */

/** What a router sees of one message. Valid during the call only. */
typedef struct upulsar_route_msg {
    const char *key;     /**< partition_key (NUL-terminated), NULL when none */
    size_t key_len;
    const void *key_bytes; /**< partition_key_bytes (the raw bytes), NULL when
                                none */
    size_t key_bytes_len;
    const void *payload; /**< the payload, len bytes */
    size_t len;
    const upulsar_send_opts_t *opts; /**< the message's options (may be
                                          NULL), read-only */
    const struct upulsar_producer *producer; /**< the handle being sent to
                                                  (for the functions below) */
} upulsar_route_msg_t;

/** Router: return the partition for @p msg, 0 .. @p partitions - 1 (the
 *  topic's current count; 1 for a non-partitioned topic). */
typedef int (*upulsar_router_cb_t)(const upulsar_route_msg_t *msg, int partitions,
                                   void *opaque);

/**
 * Producer key: route every message of producers started with @p conf
 * that has no UPULSAR_SEND_PARTITION through @p router (Java:
 * messageRouter / MessageRoutingMode.CustomPartition), keyed or not,
 * instead of the key's hash and routing.mode. A return value outside 0 ..
 * partitions - 1 fails that send with INVALID_ARG (nothing queued, the
 * detail naming the value). With producers.per.partition > 1 the router
 * picks the partition; the producer within it is the key's (keyed) or
 * the first (keyless).
 * The router runs on the thread calling upulsar_send() (an application
 * thread, or a library thread when the send is made from a callback),
 * inside that call, before anything is queued; it may run on many threads
 * at once and must return quickly without blocking. It may call
 * upulsar_producer_partition_for_key(), upulsar_producer_partitions(),
 * upulsar_err_*(), and anything that does not use the producer being sent
 * to; it must not stop that producer or destroy its client (the send
 * under way still uses them); a send from it is allowed (a send of its
 * own, routed again). NULL removes it. Thread safety: as
 * upulsar_conf_set(). Errors: INVALID_ARG (NULL conf).
 */
upulsar_err_t upulsar_conf_set_router(upulsar_conf_t *conf, upulsar_router_cb_t router,
                                      void *opaque);

/* ---- message size limits (see upulsar_send()) ---- */

/** Largest partition_key and ordering_key, bytes each (the protocol's). */
#define UPULSAR_MAX_KEY_BYTES 65535
/** Largest partition_key_bytes: its base64 text fits UPULSAR_MAX_KEY_BYTES. */
#define UPULSAR_MAX_KEY_BYTES_BINARY 49149
/** Largest property block of one message: the properties encoded as
 *  Pulsar does (key and value lengths plus at most 12 bytes per property:
 *  3 tags and 3 lengths of up to 3 bytes each). */
#define UPULSAR_MAX_PROPERTIES_BYTES (1 << 20)
/** Bytes counted for the metadata of a message besides its keys,
 *  properties and replication names (producer name, sequence ids, times,
 *  sizes, chunk fields and their encoding). */
#define UPULSAR_MSG_OVERHEAD 512
/** Largest payload of a chunked message: Pulsar's total_chunk_msg_size
 *  (and num_chunks_from_msg) are int32. */
#define UPULSAR_MAX_CHUNKED_BYTES 2147483647

/**
 * Send one message. HOT PATH.
 *
 * The payload (and key, properties) are copied into the chosen producer's
 * ring before this returns, unless UPULSAR_SEND_NOCOPY. @p opts may be NULL
 * (no key, no properties, no callback). If @p future is not NULL it receives
 * a future the caller must release with upulsar_future_release(); pass NULL
 * for fire-and-forget (a callback in @p opts still fires).
 *
 * Returns UPULSAR_OK once the message is queued: from then on it resolves
 * exactly once (future and/or callback). Otherwise nothing was queued and no
 * callback will fire (nor free_cb: a refused NOCOPY payload stays the
 * caller's):
 *  INVALID_ARG (payload NULL with len > 0, producer NULL, a key over
 *  UPULSAR_MAX_KEY_BYTES, properties over UPULSAR_MAX_PROPERTIES_BYTES,
 *  UPULSAR_SEND_PARTITION with a partition out of range, the router's
 *  answer out of range, UPULSAR_SEND_NULL_VALUE with len > 0,
 *  partition_key together with partition_key_bytes, a sequence_id or
 *  delivery time out of range, options the library does not know: see
 *  "Growth of upulsar_send_opts_t"),
 *  CLOSED (stopped producer), MSG_TOO_LARGE (see the size rule below), QUEUE_FULL
 *  (ring full, max.pending.messages or the client's memory.limit.bytes
 *  reached, and block.if.queue.full=false, or the wait for room exceeded
 *  send.timeout.ms), GROUP_FAILED (the chosen partition's group gave up).
 *
 * Sizes. With K = the partition key's length plus the ordering key's (0 for
 * a key not given), P = the encoded properties, R = the replication
 * cluster names plus 3 bytes each, and M = the broker's max_message_size
 * (5 MiB by default; learnt when the producer connects):
 *  - len + P + 2 * K + R + UPULSAR_MSG_OVERHEAD <= M: accepted, sent in a
 *    batch (or alone); every entry on the wire stays within M, metadata
 *    included, so a message never makes its batch-mates fail;
 *  - otherwise, with chunking.enabled: accepted and sent in chunks if
 *    len <= UPULSAR_MAX_CHUNKED_BYTES and
 *    P + K + R + UPULSAR_MSG_OVERHEAD <= M / 2 (every chunk repeats the
 *    keys, properties, replication clusters and deliver_at in its metadata
 *    and carries at least M / 2 of payload);
 *  - anything else is refused with MSG_TOO_LARGE, the detail naming the
 *    limit. Sizes are checked before any arithmetic on them: a len near
 *    SIZE_MAX is refused like any other.
 * Keys and properties also share the producer's ring with the other
 * messages: more than half of the ring is refused (MSG_TOO_LARGE); the
 * ring is queue.buffer.bytes or, with many producers in the client, less
 * (see "Ring size" below, down to 16 KiB: 8 KiB of keys and properties).
 * With the defaults (M = 5 MiB, 1 MiB rings): keys up to 65535 bytes each,
 * keys and properties together up to half the ring (512 KiB), and a
 * payload up to M minus what they take (up to 2 GiB - 1 with chunking).
 *
 * Memory budget. Every accepted message counts against the client's
 * memory.limit.bytes (default 64 MiB) until it resolves: its ring record
 * (header, keys, properties and payload, in 32-byte cells) plus its payload
 * when that is kept out of the ring (UPULSAR_SEND_NOCOPY, or the private
 * copy of a large message). When the budget is reached the send is
 * QUEUE_FULL, or waits with block.if.queue.full. Fair share: a producer
 * (one partition) may take more of the budget only while what it would
 * then hold is no more than what would be left free, so one busy partition
 * holds at most half of the budget and k busy ones about 1/(k+1) each; a
 * partition that holds nothing may always take one message the budget has
 * room for, so a hot partition cannot keep the others from sending.
 * Ring records are taken ahead by unit of the producer's ring (1/4096 of
 * the budget, at most a page; message by message for budgets under 128
 * KiB), and a producer gives the unused rest of its current unit back once
 * none of its messages is counted; what is taken never exceeds the budget, but
 * for one message larger than the whole budget, accepted only while nothing
 * else is taken. The figures are in the statistics ("memory"). Resident
 * memory is not bounded by the budget alone: a ring keeps the pages a
 * burst touched (up to 1.25 x its size with its commit words) until
 * queue.idle.release.ms of disuse, so under full load every ring may hold
 * all of its pages; the ring size below bounds that. The io threads keep
 * idle batch buffers for reuse only while the budget has room for them
 * (see "batch_pool_bytes" in upulsar_producer_stats_json()). A batch whose
 * messages failed (timed out, stopped) while its connection still held it
 * (a broker that stopped reading) is taken out of the connection's queue,
 * unless a write has started on it: such a write (up to about 4 MiB per
 * connection) stays counted until it completes or the connection closes.
 * Not counted, and bounded otherwise: each entry in flight carries its
 * bookkeeping (a few hundred bytes, and its buffer sized to what it holds:
 * at most producers x max.inflight.batches entries); a TLS connection
 * encrypts at most about 4 MiB ahead of its socket; a future is a 64-byte
 * slot of the client's pool, which keeps its size; a chunked message's
 * chunks are copied out of its payload as it is sent (one message at a
 * time per io thread).
 *
 * Ring size. A real producer's ring is queue.buffer.bytes when that key is
 * set (on the client's or the producer's conf); left at its default, it is
 * less when the client has many producers: a quarter of memory.limit.bytes shared
 * over the client's real producers (those it has when the handle starts,
 * the handle's own included), rounded down to a power of two and at least
 * 16 KiB, when that is smaller. The size is decided once per handle, at
 * upulsar_producer_start(): partitions added later get the same, and a
 * handle started earlier keeps its rings. With the defaults (64 MiB, 1 MiB
 * rings) rings shrink from 17 producers on: 1000 partitions get 16 KiB
 * rings, 20 MiB at most together instead of 1.25 GiB. A smaller ring keeps
 * a private copy of payloads over a quarter of it (see "Allocates") and
 * round robin moves on sooner (routing.mode). The size is in the
 * statistics (queue_capacity_bytes). Without a budget (memory.limit.bytes
 * 0) rings are queue.buffer.bytes.
 *
 * From a callback: yes, and it never blocks there: no room is QUEUE_FULL at
 * once, also with block.if.queue.full=true (see "Callbacks").
 * Thread safety: any number of threads. Blocks: only with
 * block.if.queue.full=true and a full ring, max.pending.messages or the
 * memory budget reached, and never in a callback.
 * Allocates: nothing per message
 * (the future pool grows by whole segments), except one private copy of a
 * payload larger than a quarter of the ring (see "Ring size").
 */
upulsar_err_t upulsar_send_sized(upulsar_producer_t *p, const void *payload, size_t len,
                                 const upulsar_send_opts_t *opts, upulsar_future_t **future,
                                 size_t opts_size);

/** upulsar_send() of programs built against upulsar 0.2: @p opts has the
 *  first layout (UPULSAR_SEND_OPTS_SIZE_0_2 bytes are read). Programs
 *  built against this header call upulsar_send_sized() through the macro
 *  below. */
upulsar_err_t(upulsar_send)(upulsar_producer_t *p, const void *payload, size_t len,
                            const upulsar_send_opts_t *opts, upulsar_future_t **future);

/* variadic, so that an argument with commas of its own (a compound
 * literal such as &(upulsar_send_opts_t){.partition_key = k, .opaque = x})
 * stays one argument, as with a function */
#define upulsar_send(...) upulsar_send_sized(__VA_ARGS__, sizeof(upulsar_send_opts_t))

/** One message for upulsar_send_many(). */
typedef struct upulsar_msg {
    const void *payload;
    size_t len;
    const upulsar_send_opts_t *opts; /**< may be NULL */
} upulsar_msg_t;

/**
 * Send @p n messages (in order; with the same key they keep that order).
 * @p futures, if not NULL, is an array of @p n slots receiving futures.
 * *@p accepted receives how many messages (a prefix of @p msgs) were queued;
 * the return value is the error that stopped the rest (UPULSAR_OK if all
 * were queued): the error of the first message refused, with its detail,
 * its future slot set to NULL, and the slots after it untouched. Each
 * message is checked, routed and counted as upulsar_send() would (its own
 * options, errors, callbacks, delivery report and free_cb), so the result
 * is that of upulsar_send() called for each message in turn, stopping at
 * the first refusal.
 *
 * Cost: messages that go to the same partition one after another (a
 * keyless round robin staying on a partition while its batch fills, one
 * key, one explicit partition) are queued as runs of up to 64, each with
 * one reservation in the producer's queue, one take of futures and one
 * wake-up check, so a call costs less per message than upulsar_send()
 * (see perf/README.md). A run also ends at an eighth of queue.buffer.bytes
 * of records. The messages of a run queued at once are queued together:
 * another thread's messages do not come between them. A run that the
 * queue, the memory budget (a run takes only what its messages would one
 * by one), max.pending.messages or the future pool has no room for at once
 * is queued message by message instead (waiting or refused exactly as
 * upulsar_send()), and so is a message larger than a sixteenth of
 * queue.buffer.bytes. Routing is done as the run is built: when a message
 * of a run is refused, the messages after it in that run and the next one
 * were routed already (the calling thread's round robin stepped on, a
 * router called) although they were not queued. A run is built on the
 * caller's stack (about 12 KiB).
 *
 * Thread safety, blocking and use from a callback as upulsar_send().
 * Allocates: as upulsar_send() (nothing per message). HOT PATH.
 */
upulsar_err_t upulsar_send_many_sized(upulsar_producer_t *p, const upulsar_msg_t *msgs,
                                      size_t n, upulsar_future_t **futures, size_t *accepted,
                                      size_t opts_size);

/** upulsar_send_many() of programs built against upulsar 0.2 (first
 *  layout of every msgs[i].opts, as upulsar_send() above). */
upulsar_err_t(upulsar_send_many)(upulsar_producer_t *p, const upulsar_msg_t *msgs, size_t n,
                                 upulsar_future_t **futures, size_t *accepted);

#define upulsar_send_many(...) upulsar_send_many_sized(__VA_ARGS__, sizeof(upulsar_send_opts_t))

/**
 * Push out every queued message now (do not wait for batch.max.delay.ms) and
 * wait until every message queued before this call has resolved, or
 * @p timeout_ms passed (-1 = forever). Returns OK or TIMED_OUT; CLOSED if
 * upulsar_producer_stop() of @p p has begun (stop flushes itself).
 * From a callback: no, UPULSAR_ERR__STATE at once, nothing is flushed or
 * waited for (see "Callbacks").
 * Thread safety: any (not after upulsar_producer_stop() of @p p returned:
 * the handle is freed). Blocks: up to @p timeout_ms.
 */
upulsar_err_t upulsar_producer_flush(upulsar_producer_t *p, int timeout_ms);

/**
 * Stop @p p: refuse new sends (CLOSED), flush what is queued, wait up to
 * @p timeout_ms (-1 = forever) for receipts, then fail every message still
 * unresolved with UPULSAR_ERR__CLOSED, close every real producer
 * (CLOSE_PRODUCER) and free the handle. When this returns, every future and
 * callback of @p p has resolved. Returns OK if everything was acknowledged,
 * TIMED_OUT if some messages had to be failed. Of the messages failed with
 * CLOSED, those whose batches a connection still held unwritten (a broker
 * that stopped reading) are taken out of its queue before it writes
 * anything more, and never written (the same holds for messages failed by
 * send.timeout.ms). The rest may have been stored: what had reached the
 * socket's buffers before, and the frames of the one write in progress
 * per connection (up to about 4 MiB), which the broker may still read
 * after this returns.
 * Each real producer is closed on its broker with CLOSE_PRODUCER, waiting for
 * the broker's confirmation (all of them together at most 1 s more).
 *
 * Lifetime: the handle is freed before this returns, so @p p must not be
 * used afterwards: a second stop, a send or a flush after that is a
 * use-after-free in the caller, which upulsar cannot detect. While the stop
 * is under way (the handle still exists) what can be detected is refused:
 * upulsar_send() gets CLOSED (callbacks resolving the last messages may
 * call it), upulsar_producer_flush() gets CLOSED and a second
 * upulsar_producer_stop() gets UPULSAR_ERR__STATE, at once.
 * From a callback: no, UPULSAR_ERR__STATE at once; the producer keeps
 * running (see "Callbacks").
 * Thread safety: once per handle; sends from other threads must have ended
 * before it begins (a send racing with its start may be accepted and then
 * fail with CLOSED, or find the handle freed). Blocks: up to about
 * @p timeout_ms + 1 s.
 */
upulsar_err_t upulsar_producer_stop(upulsar_producer_t *p, int timeout_ms);

/* ------------------------------------------------------------------------ *
 * Introspection
 * ------------------------------------------------------------------------ */

typedef enum upulsar_producer_state {
    UPULSAR_STATE_CONNECTING = 0, /**< looking up / connecting / creating */
    UPULSAR_STATE_READY = 1,      /**< registered with its broker */
    UPULSAR_STATE_BACKOFF = 2,    /**< waiting to reconnect */
    UPULSAR_STATE_FAILED = 3,     /**< gave up (terminal error or restart limit) */
    UPULSAR_STATE_CLOSED = 4
} upulsar_producer_state_t;

/** Name of a producer state ("READY"...). Static string. */
const char *upulsar_state_name(upulsar_producer_state_t s);

/** One partition's producer group: the (partition_topic, group) pair. */
typedef struct upulsar_group_info {
    char partition_topic[256]; /**< e.g. persistent://public/default/t-partition-3 */
    int partition;             /**< index, -1 for a non-partitioned topic */
    int producers;             /**< real producers in the group */
    upulsar_producer_state_t state; /**< FAILED if the group gave up, else
                                         the worst state of its producers */
} upulsar_group_info_t;

/** One real Pulsar producer. */
typedef struct upulsar_producer_info {
    char name[128];            /**< producer name (as assigned by the broker) */
    char partition_topic[256];
    int partition;
    int index;                 /**< position within its group */
    upulsar_producer_state_t state;
    uint64_t pending;          /**< messages queued or in flight, not resolved */
    int64_t last_sequence_id;  /**< last sequence id acknowledged (-1: none) */
    uint64_t reconnects;       /**< times it was re-created (attempts) */
    uint64_t resent_batches;   /**< batches written again after re-creations */
    uint64_t unknown_ids;      /**< messages acknowledged with the unknown
                                    position (UPULSAR_ID_UNKNOWN) */
    uint64_t timed_out;        /**< messages failed by send.timeout.ms */
    char broker[280];          /**< "host:port" of the broker it was last
                                    created on (after lookup and redirects;
                                    "" until then) */
    int connection;            /**< which of the connections.per.broker
                                    connections to that broker it uses */
} upulsar_producer_info_t;

/**
 * Copy up to @p max group descriptions into @p out; *@p count receives the
 * total number of groups (may exceed @p max). Thread safety: any.
 * Blocks: briefly (a mutex). Allocates: no.
 */
upulsar_err_t upulsar_producer_groups(upulsar_producer_t *p,
                                      upulsar_group_info_t *out, size_t max,
                                      size_t *count);

/** As upulsar_producer_groups(), for every real producer of every group,
 *  ordered by partition then index. */
upulsar_err_t upulsar_producer_list(upulsar_producer_t *p,
                                    upulsar_producer_info_t *out, size_t max,
                                    size_t *count);

/* ------------------------------------------------------------------------ *
 * Statistics
 * ------------------------------------------------------------------------ */

/**
 * Statistics of @p p as one JSON object, in the spirit of librdkafka's:
 *
 *   {"topic": "...", "partitions": N, "ts_ms": <wall clock>,
 *    "io_backend": "io_uring" | "epoll",
 *    "memory": {"budget": n, "in_use": n, "peak": n, "batch_pool_bytes": n},
 *    "groups": [{"partition": i, "topic": "...-partition-i", "state": "READY",
 *      "failed": "" | "<error name>",
 *      "producers": [{"name": "...", "broker": "host:port", "connection": n,
 *        "state": "READY", "accepted": n,
 *        "sent": n, "acked": n, "failed": n, "pending": n, "acked_bytes": n,
 *        "timed_out": n, "resent_batches": n, "reconnects": n, "unknown_ids": n,
 *        "queue_bytes": n, "ring_resident_bytes": n, "queue_capacity_bytes": n,
 *        "last_sequence_id": n,
 *        "batch_msgs": {"count": n, "p50": n, "p99": n, "buckets": [[upper, count]...]},
 *        "batch_rtt_us": {"count": n, "p50": n, "p99": n, "buckets": [...]},
 *        "latency_us": {"count": n, "sum": n, "p50": n, "p90": n, "p99": n,
 *                       "p999": n, "buckets": [[upper, count]...]}}]}]}
 *
 * A group's "state" is what upulsar_producer_groups() reports (FAILED
 * once the group gave up, else the worst state of its producers) and
 * "failed" the name of the error that failed it ("" while it has not).
 * Counters are messages since start unless named otherwise: "accepted" by
 * upulsar_send() / upulsar_send_many(), "sent" taken from the queue into
 * entries for the broker, "acked" acknowledged, "failed" resolved with an
 * error; "acked_bytes" is the payload bytes of the acknowledged messages;
 * "pending" is accepted minus acked minus failed: every message not
 * resolved yet, those still in the producer's queue (the ring: also while
 * the broker cannot be reached or before the producer is created) as well
 * as those batched or in flight (upulsar_producer_info_t.pending is the
 * same figure); queue_bytes is
 * the ring in use; ring_resident_bytes is the memory the ring holds now
 * (approximate: its pages written into and not yet given back, see
 * queue.idle.release.ms; at most about 1.25 x queue_capacity_bytes, with
 * the commit words); queue_capacity_bytes is the ring's size
 * (queue.buffer.bytes, or less for a producer of a client with many
 * producers: see "Ring size" at upulsar_send()); histograms have power-of-two buckets ("upper" = the
 * bucket's upper bound, inclusive) and p50/p99 are those upper bounds.
 * batch_rtt_us is the time from a batch being built to its receipt (the
 * engine reads the clock once per batch, not per message).
 * latency_us is the time from upulsar_send() (or _send_many()) to the
 * receipt of the message, in microseconds, for a sample of the messages:
 * one send in latency.sample.every (default 16; 1 = every message, 0 =
 * none) counted per sending thread reads the clock (the monotonic clock,
 * the reading the sender takes just before the message is written into
 * the queue, so it includes a wait for room with block.if.queue.full; a
 * clock read costs about as much as the rest of a send, hence the sample);
 * the engine reads the clock once per acknowledged batch, before the
 * message's future resolves and its callback runs. Failed messages are
 * not counted. "count" and "sum" are the sampled messages and the sum of
 * their latencies (the mean is sum / count); the buckets are log-linear:
 * exact below 16 us, then 16 per power of two, so a bucket's upper bound
 * (the "upper" reported, and p50 / p90 / p99 / p999, the bucket a
 * percentile falls in) is at most 6.25 % above any latency it holds;
 * latencies from 2^32 us count in the last bucket. "io_backend" is
 * how the client's io threads do socket I/O (io.backend, and for auto what
 * it found: see upulsar_client_new()). "memory" is the
 * client's (the same in every producer's statistics): "budget" is
 * memory.limit.bytes (0 = no bound), "in_use" the bytes its producers have
 * taken from it now (messages accepted and not resolved, counted as
 * upulsar_send() describes, plus the unused rest of the ring unit each
 * producer writes into: less than 1/4096 of the budget and at most a page
 * each while some of their messages are in flight, none once all
 * resolved; plus the batches of failed messages a write of their
 * connection has started on, a broker that stopped reading, until the
 * write completes or the connection closes: see keepalive.interval.ms for
 * how a dead connection is found), "peak" the
 * highest "in_use" since the
 * client was created; neither exceeds "budget" but for a message larger
 * than the whole budget (see upulsar_send()). "batch_pool_bytes" is what
 * the io threads keep of batch buffers for reuse (free batches, their
 * buffers included; at most half of the budget over the io threads, 1 to
 * 32 MiB each, and a batch retired is kept only while the budget has that
 * much free, so under a full budget retired batches free their buffers;
 * what was pooled earlier stays until the trim); what stays unused for a
 * second is freed, down to 256 KiB per io thread. Figures are read
 * without stopping the producer: each is exact, they are not a consistent
 * snapshot of one instant.
 * Ownership: *@p json is malloc'd; the caller frees it with free().
 * Thread safety: any. Allocates: yes. Errors: INVALID_ARG, NOMEM.
 */
upulsar_err_t upulsar_producer_stats_json(upulsar_producer_t *p, char **json);

/**
 * Periodic statistics callback: @p json is
 *
 *   {"ts_ms": <wall clock>,
 *    "connections": {"open": n, "idle": n, "opened": n, "closed": n,
 *                    "idle_closed": n},
 *    "memory": {<as in upulsar_producer_stats_json()>},
 *    "producers": [<upulsar_producer_stats_json() of each producer>...]}
 *
 * valid during the call only. "connections" counts the client's broker
 * connections (over all io threads): "open" are connected and usable now;
 * "idle" are those of them no producer and no request uses now (lookup-only
 * connections, or connections whose producers stopped or moved), which are
 * closed once idle for connection.idle.timeout.ms; "opened" and "closed"
 * are totals since the client was created (closed: lost, or closed by the
 * client), "idle_closed" the part of "closed" that the idle timeout closed.
 * Like the producer figures, each is exact but they are not one snapshot.
 */
typedef void (*upulsar_stats_cb_t)(const char *json, void *opaque);

/**
 * Call @p cb every stats.interval.ms (client key; 0 = never) from the
 * watchdog thread. @p cb must return quickly; what it may call is in
 * "Callbacks" (flush, stop and client destroy are refused there). NULL
 * removes it. Thread safety: any; from a callback: yes.
 */
upulsar_err_t upulsar_client_set_stats_cb(upulsar_client_t *client, upulsar_stats_cb_t cb,
                                          void *opaque);

/**
 * The client's metrics in the Prometheus text exposition format (version
 * 0.0.4), for an exporter to serve as is (examples/metrics_server.c): one
 * "# HELP" and one "# TYPE" line per metric, then its samples,
 * "name{label=\"value\",...} value", each on its own line. Every name
 * starts with "upulsar_". Client-wide figures (connections, the memory
 * budget) have no labels; each open connection has one info sample
 * labelled broker, slot and io_thread; the figures of each real producer
 * are labelled topic (the topic given to upulsar_producer_start(), full
 * name), partition (-1 for a non-partitioned topic) and producer (its
 * name, or "#<producer id>", unique within the client, until the broker named it), and some
 * have one more label (error, reason). The send-to-receipt latency of each
 * producer is a histogram in seconds (_bucket{le="..."}, _sum, _count) of
 * the messages latency.sample.every samples (see
 * upulsar_producer_stats_json(), "latency_us"). METRICS.md lists every
 * metric: name, type, unit, labels, meaning.
 * Figures are read without stopping anything: each is exact, they are not
 * one snapshot of one instant (a counter never goes back; pending may
 * include a message whose receipt is being read).
 * Ownership: *@p text is malloc'd and NUL-terminated; the caller frees it
 * with free(). *@p len (if @p len is not NULL) receives its length.
 * Thread safety: any. Blocks: briefly (the client's locks, as
 * upulsar_producer_list() does). Allocates: yes (the text). From a
 * callback: yes. Errors: INVALID_ARG (NULL client or text), NOMEM
 * (nothing is returned).
 */
upulsar_err_t upulsar_client_metrics_prometheus(upulsar_client_t *client, char **text,
                                                size_t *len);

/* ------------------------------------------------------------------------ *
 * Logging
 * ------------------------------------------------------------------------ */

/** Severity of a log line (syslog values, as librdkafka uses). */
typedef enum upulsar_log_level {
    UPULSAR_LOG_ERR = 3,     /**< a partition group failed; messages fail */
    UPULSAR_LOG_WARNING = 4, /**< a connection attempt failed (each one,
                                  when it fails: the address and why), a
                                  connection was lost or refused, a
                                  re-creation failed (it is retried) */
    UPULSAR_LOG_INFO = 6,    /**< a producer was re-created, partitions grew,
                                  the io backend the client uses */
    UPULSAR_LOG_DEBUG = 7    /**< only once turned on with
                                  upulsar_client_set_log_level(): every
                                  state change of every producer, and every
                                  change refused, with its reason */
} upulsar_log_level_t;

/** Log callback: @p line is one line without a newline, naming the broker
 *  or topic concerned (never a token); valid during the call only. */
typedef void (*upulsar_log_cb_t)(upulsar_log_level_t level, const char *line, void *opaque);

/**
 * One log line with what it is about, for upulsar_log_record_cb_t. Every
 * pointer is valid during the call only and never NULL. upulsar fills it;
 * fields may be added at the end in later versions (a callback reads only
 * what it knows, and never allocates or copies the struct by size).
 */
typedef struct upulsar_log_record {
    upulsar_log_level_t level;
    upulsar_err_t err;      /**< the error the line reports, UPULSAR_OK if none */
    const char *topic;      /**< the partition topic concerned
                                 ("persistent://public/default/t-partition-3"),
                                 "" if none */
    int partition;          /**< its partition index; -1 for a
                                 non-partitioned topic or no topic */
    const char *broker;     /**< the broker concerned, "host:port" (for a
                                 producer: the one it was last created on),
                                 "" if none or not known yet */
    const char *line;       /**< the text, as upulsar_log_cb_t gets it */
    unsigned collapsed;     /**< other partitions this line stands for (see
                                 upulsar_client_set_log_cb(), "Repeats"):
                                 the line ends with "(and <collapsed> more
                                 partitions)"; 0 for a line of its own */
} upulsar_log_record_t;

/** Structured log callback: @p rec and what it points to are valid during
 *  the call only. */
typedef void (*upulsar_log_record_cb_t)(const upulsar_log_record_t *rec, void *opaque);

/**
 * Where the client's log lines go: what goes wrong (a connection dropped
 * for a protocol error, a refused re-creation...) without a failed future
 * to show it. By default lines of UPULSAR_LOG_WARNING and more severe are
 * written to stderr ("upulsar: ..."); @p cb receives every level instead,
 * NULL restores the default (a call already under way may still finish).
 * @p cb runs on a library thread (io loop, watchdog, establish worker or
 * partition poller),
 * or on the application's thread for a misuse of the API it reports (a
 * future released twice), for a failed connection attempt of
 * upulsar_producer_start() (which may open its first connection there) or
 * for lines still held back when upulsar_client_destroy() runs (see
 * "Repeats"), and must return quickly; what it may call is in "Callbacks",
 * wherever it runs (sends never block there; start, flush, stop and
 * client destroy are refused).
 * Thread safety: any; from a callback: yes. Errors: INVALID_ARG (NULL
 * client).
 *
 * One callback at a time: this one replaces a structured callback set
 * with upulsar_client_set_log_record_cb(), and that one replaces this.
 * Levels: lines up to the client's level (upulsar_client_set_log_level(),
 * UPULSAR_LOG_INFO by default) are delivered; UPULSAR_LOG_DEBUG lines only
 * once that level is set (or with the environment variable
 * UPULSAR_DEBUG_STATE=1 for the state changes).
 *
 * Repeats. When one thing goes wrong for many partitions of a topic at
 * once (an outage: every partition's producer loses its connection, fails
 * to be re-created, is re-created), the lines of the same kind (the same
 * message, level, error and topic) for different partitions are
 * collapsed: the first is delivered at once; the others that come within
 * one second of it are held back, and when that second ends (within
 * about 20 ms more, or when the client is destroyed) the first of them is
 * delivered once with "(and N more partitions)" appended, N being the
 * others (upulsar_log_record_t.collapsed). A line of the same kind for a
 * partition already seen in that second (another attempt of the same
 * producer) delivers the held-back line first and starts over, so every
 * attempt of one producer is still seen, in order. 16 partitions failing
 * together thus give two lines instead of 16; the partitions they stand
 * for add up (1 + collapsed per line). A collapsed line comes when its
 * second ends, so it may follow lines of another kind logged after the
 * ones it stands for. Lines that name no partition (a connection attempt
 * or a dropped connection, named by its broker; a non-partitioned topic)
 * and UPULSAR_LOG_DEBUG lines are never collapsed.
 */
upulsar_err_t upulsar_client_set_log_cb(upulsar_client_t *client, upulsar_log_cb_t cb,
                                        void *opaque);

/**
 * As upulsar_client_set_log_cb(), with each line's fields
 * (upulsar_log_record_t: level, error, partition topic, partition,
 * broker, collapsed repeats) instead of the text alone. Replaces a plain
 * callback; NULL restores the default (stderr). Runs on the same threads,
 * under the same rules ("Callbacks"). Thread safety: any; from a callback:
 * yes. Blocks: no. Errors: INVALID_ARG (NULL client).
 */
upulsar_err_t upulsar_client_set_log_record_cb(upulsar_client_t *client,
                                               upulsar_log_record_cb_t cb, void *opaque);

/**
 * The most verbose level of the lines @p client delivers, at run time:
 * UPULSAR_LOG_DEBUG turns the debug lines on, UPULSAR_LOG_INFO (the
 * default) off again, UPULSAR_LOG_WARNING or UPULSAR_LOG_ERR keep only
 * those (also on stderr). Takes effect for the next line. Thread safety:
 * any; from a callback: yes. Blocks: no. Errors: INVALID_ARG (NULL
 * client, a level outside UPULSAR_LOG_ERR .. UPULSAR_LOG_DEBUG; nothing
 * changes).
 */
upulsar_err_t upulsar_client_set_log_level(upulsar_client_t *client, upulsar_log_level_t level);

/** Number of partitions the handle currently routes over: the topic's
 *  partition count, which grows while the producer runs
 *  (partitions.update.interval.ms); 0 for a topic without partitions
 *  (produced to as one topic, its messages' ids carrying partition -1).
 *  Thread safety: any. Blocks: no. */
int upulsar_producer_partitions(const upulsar_producer_t *p);

/**
 * The partition a message with @p key would be routed to, under @p p's
 * hashing scheme (or -1 for NULL key). Thread safety: any. HOT PATH.
 */
int upulsar_producer_partition_for_key(const upulsar_producer_t *p,
                                       const char *key);

#ifdef __cplusplus
}
#endif
#endif /* UPULSAR_UPULSAR_H */
