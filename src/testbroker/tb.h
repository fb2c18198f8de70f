/* tb.h -- test broker internals shared by its source files. @internal
 *
 * Threads: one accept thread per broker, one thread per connection. A
 * connection's socket, decoder, output buffer, producer and consumer tables
 * and receipt queue belong to its thread alone; other threads reach it only
 * through tb_conn_inject() (frames appended under conn->mu), atomics and
 * shutdown(2) of its socket.
 *
 * The topic registry lives in a store (tb_store_t). Every broker has one;
 * brokers started with opts.shared_store_with share their store (and so
 * every topic's log, dedup state, subscriptions and per-topic settings),
 * while connections, owner settings and broker-wide faults stay per broker.
 * A store is freed with the last broker using it.
 *
 * Locks, in acquisition order: g_mu (broker.c: the process's list of
 * brokers, store reference counts) -> tb->mu (connection lists, owner
 * settings, tokens, broker-wide fault settings) -> store->mu (topic
 * registry, partition counts) -> topic->mu (log, dedup, producers,
 * consumers, subscriptions of one topic) -> conn->mu (injected frames).
 * Topics live as long as their store and log entries are immutable once
 * appended, so a thread may keep a topic pointer without a lock and read an
 * entry after dropping topic->mu.
 */
#ifndef UP_TB_H
#define UP_TB_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "buf.h"
#include "frame.h"
#include "pb.h"
#include "upulsar/testbroker.h"

#define TB_PROTOCOL_MAX 21
#define TB_DEFAULT_MAX_MESSAGE (5 * 1024 * 1024)
#define TB_DEFAULT_PING_MS 30000
#define TB_DEFAULT_AUTH_RESPONSE_MS 10000
/** How long a stop, a restart or a drop of connections waits for the
 *  connection threads it told to end (a hang guard: they end within
 *  milliseconds). Below the client tests' own bound (FT_WAIT_MS), so a
 *  test sees the broker's account of a stuck thread first. */
#define TB_CONN_END_WAIT_MS 30000

/** Where a connection's thread is (tb_conn_t.phase), for the account of a
 *  thread that does not end (tb_conns_describe_locked()). */
enum {
    TB_PH_START = 0, /**< starting (TLS set-up) */
    TB_PH_POLL,      /**< waiting in poll() */
    TB_PH_READ,      /**< reading and handling frames (phase_cmd: which) */
    TB_PH_WORK,      /**< injected frames, receipt queue, delayed requests, ticks, writes */
    TB_PH_END_FLUSH, /**< ending: writing what is left */
    TB_PH_CLEANUP,   /**< ending: unregistering its producers and consumers */
    TB_PH_RETIRE,    /**< ending: leaving the broker's list (tb->mu) */
};
/** Cap on the uncompressed size of one entry the broker agrees to decode. */
#define TB_MAX_UNCOMPRESSED (256u * 1024 * 1024)
/** UINT64 form of -1, used for dedup receipts and "unset" ids. */
#define TB_ID_NONE UINT64_MAX

/* ---- arena: bump allocator, freed all at once ------------------------- */

typedef struct tb_chunk {
    struct tb_chunk *next;
    size_t used, cap;
    _Alignas(16) uint8_t data[];
} tb_chunk_t;

typedef struct tb_arena {
    tb_chunk_t *head;
    size_t chunk_size; /**< default size of new chunks */
    size_t total;      /**< bytes handed out */
} tb_arena_t;

void tb_arena_init(tb_arena_t *a, size_t chunk_size);
/** @p n bytes aligned to 8, NULL on out of memory. */
void *tb_arena_alloc(tb_arena_t *a, size_t n);
/** Copy of @p n bytes (plus a NUL after them), NULL on out of memory. */
void *tb_arena_dup(tb_arena_t *a, const void *p, size_t n);
void tb_arena_free(tb_arena_t *a);

/* ---- the log ----------------------------------------------------------- */

/** One stored entry (one SEND). Immutable once appended. */
typedef struct tb_entry {
    uint64_t entry_id;
    uint64_t sequence_id;   /**< CommandSend.sequence_id */
    uint64_t highest_seq;   /**< highest sequence id, as used by dedup */
    const uint8_t *data;    /**< metadata then payload; NULL if not retained */
    uint32_t md_len;
    uint32_t payload_len;
    uint32_t num_msgs;      /**< messages counted for this entry */
} tb_entry_t;

#define TB_BLOCK_SHIFT 12
#define TB_BLOCK (1u << TB_BLOCK_SHIFT)

/** Last stored sequence id of one producer name on one topic. */
typedef struct tb_dedup {
    struct tb_dedup *next;
    int64_t last_seq; /**< -1: nothing stored yet */
    char name[];
} tb_dedup_t;

typedef struct tb_conn tb_conn_t;
typedef struct tb_topic tb_topic_t;

/** One registered schema version. */
typedef struct tb_schema {
    int type;         /**< Schema.Type */
    uint8_t *packed;  /**< the Schema message as received, packed */
    size_t packed_len;
    uint8_t *data;    /**< a copy of its schema_data */
    size_t data_len;
} tb_schema_t;

typedef struct tb_sub {
    struct tb_sub *next;
    char *name;
    int type;           /**< CommandSubscribe.SubType of its consumers */
    bool durable;
    int consumers;      /**< attached consumers */
    uint64_t read_pos;  /**< next entry index to dispatch */
    uint64_t low;       /**< every entry below is acknowledged */
    uint8_t *acked;     /**< bit per entry id (>= low meaningful) */
    size_t acked_bytes;
} tb_sub_t;

typedef struct tb_producer {
    uint64_t id;
    size_t cidx; /**< its slot in conn->prods */
    char *name;
    tb_topic_t *topic;
    tb_conn_t *conn;
    tb_dedup_t *dedup;
    int64_t schema_ver; /**< schema version it was created with, -1 none (topic->mu) */
    bool active; /**< registered on the topic (topic->mu) */
    bool closed; /**< closed by the broker (unload, move; a waiter answered
                      ServiceNotReady); SENDs ignored (topic->mu) */
    /* access modes (topic->mu) */
    bool fenced;  /**< dropped by an ExclusiveWithFencing producer, silently
                       (no CLOSE_PRODUCER): its next SEND closes the
                       connection; cleared when it is re-created */
    bool waiting; /**< WaitForExclusive, in topic->waiters */
    int64_t wait_epoch; /**< the topic_epoch its PRODUCER brought, -1 none */
    uint64_t wait_rid;
    struct tb_producer *wait_next;
} tb_producer_t;

/* The next n PRODUCER requests get @p value (an error to answer with, or a
 * delay in ms): upulsar_tb_fail_producers(), upulsar_tb_delay_producers(). */
typedef struct tb_countdown {
    int n, value;
} tb_countdown_t;

/* Take one from @p c: its value, or -1 when it has run out. Under the lock
 * that guards @p c. */
static inline int tb_countdown_take(tb_countdown_t *c)
{
    if (c->n <= 0)
        return -1;
    c->n--;
    return c->value;
}

typedef struct tb_consumer {
    uint64_t id;
    tb_topic_t *topic;
    tb_sub_t *sub;
    tb_conn_t *conn;
    int64_t permits; /**< topic->mu */
} tb_consumer_t;

struct tb_topic {
    struct tb_topic *next; /**< tb->topics */
    struct tb_topic *hnext; /**< same bucket of the store's index */
    uint64_t hash;         /**< of name (tb_name_hash()) */
    char *name;            /**< normalised */
    pthread_mutex_t mu;
    pthread_cond_t grew;   /**< broadcast on every append */
    uint64_t ledger_id;

    /* configuration (store->mu) */
    int partitions;

    /* log (topic->mu) */
    tb_entry_t **blocks;
    size_t nblocks, blocks_cap;
    uint64_t n_entries;
    tb_arena_t arena;
    tb_dedup_t *dedup;
    upulsar_tb_topic_stats_t st;

    /* producers / consumers / subscriptions (topic->mu) */
    char last_producer_metadata[512]; /**< of the last PRODUCER: "k=v,k2=v2" */
    struct tb_producer *excl;    /**< the Exclusive* producer holding the topic */
    struct tb_producer *waiters; /**< WaitForExclusive producers, in order */
    int64_t topic_epoch;         /**< -1 until the first exclusive grant,
                                      then as Pulsar keeps it (conn.c) */
    tb_producer_t **prods;
    size_t nprods, prods_cap;
    tb_consumer_t **cons;
    size_t ncons, cons_cap;
    tb_sub_t *subs;

    /* faults (topic->mu, hold is atomic) */
    int fail_sends_n, fail_sends_err;
    bool fail_sends_fence; /**< upulsar_tb_fail_writes(): close the producers */
    int fence_answers;     /**< SEND_ERRORs of failed writes (fail_writes) not
                                sent yet: until they are, the topic is fenced
                                and refuses producers (conn.c) */
    tb_countdown_t fail_prods, delay_prods; /**< upulsar_tb_fail_producers(),
                                                 upulsar_tb_delay_producers() */
    tb_countdown_t mangle_prods;            /**< upulsar_tb_mangle_producers() */
    atomic_bool hold;

    /* answers to PRODUCER requests, oldest first (topic->mu); see
     * upulsar_tb_producer_answers() */
    int *answers;
    size_t nanswers, answers_cap;
    uint64_t answers_total;

    /* schema registry (topic->mu): version i is schemas[i], a packed
     * Pulsar Schema; see "Schemas" in testbroker.h */
    tb_schema_t *schemas;
    size_t nschemas, schemas_cap;
    int schema_enforced; /**< topic policy: 0/1, -1 = the broker's setting */
    int dedup_policy;    /**< deduplicationEnabled: 0/1, -1 = the broker's */
    int max_msg_policy;  /**< maxMessageSize policy, bytes; 0 = none */

    /* PRODUCER and CLOSE_PRODUCER requests, in arrival order (topic->mu);
     * see upulsar_tb_producer_requests() */
    upulsar_tb_request_t *reqs;
    size_t nreqs, reqs_cap;
    uint64_t reqs_total;
};

/* ---- connections ------------------------------------------------------- */

/** A PRODUCER request whose processing is delayed
 *  (upulsar_tb_delay_producers()): as a Pulsar broker whose topic is slow
 *  to load, the producer id is taken (its future not done yet) but nothing
 *  is registered on the topic until it is processed at due_ms. */
typedef struct tb_delayed_prod {
    uint64_t producer_id, request_id;
    int64_t due_ms;
    tb_topic_t *topic;  /**< for the request log of a CLOSE_PRODUCER */
    uint8_t *packed;    /**< the CommandProducer, packed */
    size_t len;
} tb_delayed_prod_t;

/** A SEND answer waiting in a connection's queue (delay or hold). */
typedef struct tb_resp {
    tb_topic_t *topic;
    int64_t due_ms;
    uint64_t producer_id, sequence_id, highest_seq, ledger, entry;
    int error;          /**< -1: SEND_RECEIPT, else SEND_ERROR ServerError */
    bool has_highest;
    bool fence;         /**< the answer of a failed write that fenced its topic
                             (counted in topic->fence_answers until sent) */
} tb_resp_t;

struct tb_conn {
    upulsar_tb_t *tb;
    tb_conn_t *next, *prev; /**< tb->conns or tb->zombies (tb->mu) */
    uint64_t serial;
    int fd, efd;
    pthread_t thr;
    atomic_int wake_pending;
    atomic_bool kill;
    pthread_mutex_t mu; /**< protects inject */
    up_buf_t inject;

    /* owned by the connection thread */
    up_decoder_t dec;
    up_buf_t out;
    size_t out_off;
    bool handshaken, frozen_seen;
    int proto;
    bool ping_outstanding;
    int64_t next_tick_ms;
    tb_producer_t **prods;   /**< in creation order; NULL: removed (a hole) */
    size_t nprods, prods_cap, prods_holes;
    tb_producer_t **pmap;    /**< the same producers by id: open addressing,
                                  linear probing, at most half full */
    size_t pmap_cap;         /**< a power of two, 0 before the first */
    tb_consumer_t **cons;
    size_t ncons, cons_cap;
    tb_resp_t *q;
    size_t qlen, qcap;
    int64_t q_last_due;
    tb_delayed_prod_t *dp; /**< delayed PRODUCER requests, oldest first */
    size_t ndp, dp_cap;
    /** PARTITIONED_METADATA requests held unanswered
     *  (upulsar_tb_hold_partition_metadata()), oldest first: request id and
     *  topic of each */
    uint64_t *hm_rid;
    char **hm_topic;
    size_t nhm, hm_cap;

    /* TLS (tb->ssl_ctx set): ciphertext in through rbio, out through wbio
     * into tx; plaintext frames stay in out until the handshake is done */
    SSL *ssl;
    uint8_t *rx;          /**< receive buffer for ciphertext */
    up_buf_t tx;          /**< ciphertext waiting for the socket */
    size_t tx_off;
    bool tls_done;        /**< handshake finished */

    /* authentication (connection thread; challenge_req from any thread) */
    atomic_bool challenge_req; /**< upulsar_tb_auth_challenge() asked */
    bool auth_pending;         /**< AUTH_CHALLENGE sent, no answer yet */
    bool auth_in_handshake;    /**< ... and CONNECTED waits for it */
    int64_t auth_deadline_ms;
    bool lookup_only;          /**< proxy mode, CONNECT named no broker */

    /* proxy mode, CONNECT named another broker: from then on the bytes pass
     * through both ways between the client and that broker (relay_fd) */
    int relay_fd;              /**< -1: not relayed */
    up_buf_t relay_out;        /**< client bytes waiting for the broker */
    size_t relay_off;

    /* where its thread is: written by it, read by a stop that waits too
     * long for it (relaxed: an account, not a synchronisation) */
    char peer[64];             /**< the client's address (set at accept) */
    _Atomic int tid;           /**< its thread's kernel id */
    _Atomic int phase;         /**< TB_PH_* */
    _Atomic int phase_cmd;     /**< command type being handled (TB_PH_READ) */
    _Atomic int64_t phase_ms;  /**< tb_now_ms() when the phase began */
};

/* ---- the store and owner settings ---------------------------------------- */

typedef struct tb_store {
    pthread_mutex_t mu;    /**< topics, partition counts, next_ledger */
    int refs;              /**< brokers using it (g_mu) */
    tb_topic_t *topics;    /**< newest first */
    tb_topic_t **index;    /**< hash buckets over topics by name (chained by hnext) */
    size_t index_cap;      /**< buckets, a power of two (0: no index yet) */
    size_t ntopics;
    uint64_t next_ledger;
} tb_store_t;

/** Who owns a topic, as one broker sees it (upulsar_tb_set_owner()). */
typedef struct tb_owner {
    struct tb_owner *next;
    char *url;     /**< the owner's URL (this broker's own URL = itself) */
    char topic[];  /**< normalised */
} tb_owner_t;

/* ---- the broker -------------------------------------------------------- */

struct upulsar_tb {
    upulsar_tb_opts_t opts;   /**< pointer fields cleared: copied below */
    char *server_version;
    int port;
    char url[64];
    unsigned instance;
    upulsar_tb_t *g_next;     /**< the process's brokers (g_mu) */
    tb_store_t *store;
    tb_owner_t *owners;       /**< tb->mu */
    tb_owner_t *migrations;   /**< tb->mu: topics migrated to another cluster */
    SSL_CTX *ssl_ctx;         /**< NULL: plaintext listener */
    char **tokens;            /**< accepted tokens (tb->mu); NULL = no auth */
    size_t ntokens;
    char **listener_names;    /**< advertised listeners (fixed after start) */
    char **listener_urls;
    size_t nlisteners;

    pthread_mutex_t mu;
    pthread_cond_t conns_changed;
    int lfd, efd;
    pthread_t acceptor;
    bool acceptor_running;
    atomic_bool acceptor_stop;
    tb_conn_t *conns, *zombies;
    int nconns;
    uint64_t conn_serial;
    atomic_ullong next_name;

    /* broker-wide faults */
    atomic_int receipt_delay_ms;
    atomic_bool hold_all;
    atomic_bool ignore_pings;
    atomic_bool frozen;
    atomic_bool hold_metadata; /**< upulsar_tb_hold_partition_metadata() */
    atomic_llong refuse_until_ms;
    atomic_int fail_sends_any; /**< fast check: fail_sends_n > 0 */
    int fail_sends_n, fail_sends_err; /**< tb->mu */
    bool fail_sends_fence;            /**< tb->mu */
    tb_countdown_t fail_prods, delay_prods; /**< tb->mu */
    atomic_ullong next_request_id;    /**< broker-initiated requests */

    /* counters */
    atomic_ullong accepted, refused, pings_sent, pongs_received, protocol_errors,
        receipts_queued, restarts, entries, messages;
    atomic_ullong tls_handshakes, tls_failures, auth_ok, auth_failed, auth_challenges,
        auth_unanswered;
    atomic_ullong retained_bytes;
    atomic_ullong lookups, partition_lookups, proxied_connections, lookup_only_closed;
    atomic_ullong proxy_relayed;
    atomic_ullong auth_tls_ok;
    atomic_ullong listener_lookups;
    char tls_role[256]; /**< tb->mu: CN of the last TLS-authenticated client */
};

/* broker.c */
int64_t tb_now_ms(void);
/** URL of @p tb's advertised listener @p name, NULL if it has none of that
 *  name. @thread any */
const char *tb_listener_url(const upulsar_tb_t *tb, const char *name);
/** Wake a connection's thread (coalesced). */
void tb_conn_wake(tb_conn_t *c);
/** Append @p len bytes (frames the broker made, or anything given to
 *  upulsar_tb_inject_raw()) for @p c's thread to write after the frames it
 *  has queued already, never inside one; wakes it. 0 or -1 (NOMEM). */
int tb_conn_inject(tb_conn_t *c, const void *frame, size_t len);
/** Tell the broker @p c's thread is done (moves it to the zombie list). */
void tb_conn_retire(tb_conn_t *c);
/** Record that @p c's thread enters @p phase (TB_PH_*) at @p now_ms. */
static inline void tb_conn_phase(tb_conn_t *c, int phase, int64_t now_ms)
{
    atomic_store_explicit(&c->phase, phase, memory_order_relaxed);
    atomic_store_explicit(&c->phase_ms, now_ms, memory_order_relaxed);
}
/** Generate a unique producer name. @p out must hold 64 bytes. Takes no
 *  lock (callable under a topic's mutex). */
void tb_gen_name(upulsar_tb_t *tb, char *out);
/** Consume one broker-wide injected failure; returns the ServerError or -1,
 *  and in *@p fence whether it fences the topic (upulsar_tb_fail_writes()). */
int tb_take_fail_send(upulsar_tb_t *tb, bool *fence);
/** Owner URL of @p norm if another broker owns it (copied; NULL when this
 *  broker owns it, or out of memory). */
char *tb_owner_of(upulsar_tb_t *tb, const char *norm);
/** True if @p url names this broker (same port, loopback host). */
bool tb_url_is_self(const upulsar_tb_t *tb, const char *url);
/** Is @p token (len bytes) accepted? Always true when no token is set.
 *  *@p required tells whether tokens are configured. */
bool tb_token_ok(upulsar_tb_t *tb, const uint8_t *token, size_t len, bool *required);
int tb_take_fail_producer(upulsar_tb_t *tb);
/** Consume one broker-wide delay of upulsar_tb_delay_producers(): its
 *  milliseconds, or -1. */
int tb_take_delay_producer(upulsar_tb_t *tb);

/* conn.c */
void *tb_conn_main(void *arg);
/** Close the producers of @p t as an unload does, only those served by
 *  @p only when not NULL: every active one gets CLOSE_PRODUCER (SENDs
 *  ignored until re-created; an exclusive hold ends with it), every
 *  WaitForExclusive one still queued gets ERROR ServiceNotReady for its
 *  PRODUCER request. @p assigned_url, when not NULL, goes in the
 *  CLOSE_PRODUCER as assignedBrokerServiceUrl (or ...Tls for a
 *  pulsar+ssl:// URL). With @p migrated, @p assigned_url is the cluster
 *  the topic migrated to and clients that speak protocol 20 get
 *  TOPIC_MIGRATED with it instead of CLOSE_PRODUCER. Caller holds t->mu.
 *  Returns how many were closed or answered. */
int tb_topic_close_producers_locked(upulsar_tb_t *tb, tb_topic_t *t, upulsar_tb_t *only,
                                    const char *assigned_url, bool migrated);
/** The cluster URL @p norm (or its partitioned topic) migrated to, as
 *  upulsar_tb_migrate_topic() set on @p tb (malloc'd), or NULL. */
char *tb_migrated_to(upulsar_tb_t *tb, const char *norm);

/* store.c */
/** Normalise a topic name; returns a malloc'd string, or NULL when the name
 *  is invalid (*@p err = INVALID_TOPIC) or out of memory (NOMEM). */
char *tb_topic_normalize(const char *in, upulsar_err_t *err);
/** Length of the base name if @p name is "<base>-partition-<n>", else 0. */
size_t tb_partition_base_len(const char *name);
/** Find @p norm (normalised) in @p tb's store, creating it if @p create.
 *  Caller holds tb->store->mu. NULL if absent (or out of memory). */
tb_topic_t *tb_topic_find_locked(upulsar_tb_t *tb, const char *norm, bool create);
/** Hash of a NUL-terminated name (FNV-1a), for the broker's indexes. */
uint64_t tb_name_hash(const char *s);
/** Same, taking tb->store->mu itself. */
tb_topic_t *tb_topic_get(upulsar_tb_t *tb, const char *norm, bool create);
/** Append @p answer (UPULSAR_TB_PRODUCER_* or a ServerError) to @p t's log
 *  of PRODUCER answers. Caller holds t->mu. */
void tb_topic_note_answer_locked(tb_topic_t *t, int answer);
/** Append a PRODUCER (@p type UP_CMD(PRODUCER), @p in its command) or
 *  CLOSE_PRODUCER request (@p in NULL) to @p t's request log. Caller holds
 *  t->mu. */
void tb_topic_note_request_locked(tb_topic_t *t, int type, uint64_t conn, uint64_t producer_id,
                                  uint64_t request_id, const Pulsar__Proto__CommandProducer *in);
/** The registry step of a PRODUCER for @p t (see "Schemas" in
 *  testbroker.h): 0 and *@p ver (the version, -1 = none), or the
 *  ServerError refusing it with its text in @p why. @p enforced: the
 *  broker's schema_validation_enforced. Caller holds t->mu. */
int tb_topic_schema_locked(tb_topic_t *t, const Pulsar__Proto__Schema *s, bool enforced,
                           int64_t *ver, char *why, size_t why_size);
/** Where an entry stands in a chunked message (its MessageMetadata
 *  chunk_id / num_chunks_from_msg): not a chunk (also metadata that does
 *  not decode), the first, one in the middle, or the last (also the only
 *  chunk of a one-chunk message). */
enum { TB_CHUNK_NONE = 0, TB_CHUNK_FIRST, TB_CHUNK_MIDDLE, TB_CHUNK_LAST };
int tb_chunk_role(const uint8_t *mdb, size_t md_len);
/** Is deduplication on for @p t (its policy, else the broker's option)?
 *  Caller holds t->mu. */
bool tb_topic_dedup_locked(const upulsar_tb_t *tb, const tb_topic_t *t);
void tb_topic_free(tb_topic_t *t);
/** Entry @p idx; caller holds topic->mu (pointer stays valid after). */
static inline tb_entry_t *tb_topic_entry(tb_topic_t *t, uint64_t idx)
{
    return &t->blocks[idx >> TB_BLOCK_SHIFT][idx & (TB_BLOCK - 1)];
}
/** Append an entry (caller holds topic->mu). @p retain false stores no
 *  bytes. Returns the entry or NULL on out of memory. */
tb_entry_t *tb_topic_append(tb_topic_t *t, const uint8_t *md, size_t md_len,
                            const uint8_t *payload, size_t payload_len,
                            bool retain);
/** Find or create the dedup record of @p name (caller holds topic->mu). */
tb_dedup_t *tb_dedup_get(tb_topic_t *t, const char *name);

/* ack bookkeeping of a subscription (topic->mu) */
bool tb_sub_is_acked(const tb_sub_t *s, uint64_t id);
int tb_sub_ack(tb_sub_t *s, uint64_t id);
void tb_sub_ack_upto(tb_sub_t *s, uint64_t id);

/** One message decoded from an entry. */
typedef struct tb_decoded {
    const Pulsar__Proto__MessageMetadata *md;
    const Pulsar__Proto__SingleMessageMetadata *smm; /**< NULL if not batched */
    const uint8_t *payload;
    size_t payload_len;
    uint64_t sequence_id;
    int32_t batch_index, batch_size;
} tb_decoded_t;

typedef int (*tb_decode_cb)(void *ctx, const tb_decoded_t *m);

/** Decode one entry's metadata and payload (decompressing, splitting a
 *  batch) and call @p cb per message; a non-zero return from @p cb stops
 *  and is returned. Returns 0, or a negative upulsar_err_t (DECODE,
 *  COMPRESSION, NOT_SUPPORTED, NOMEM). *@p count receives the messages
 *  delivered. */
int tb_decode_entry(const uint8_t *md, size_t md_len, const uint8_t *payload,
                    size_t payload_len, tb_decode_cb cb, void *ctx,
                    uint32_t *count);

/* proto.c: frame builders for the broker's answers */
int tb_put_receipt(up_buf_t *out, uint64_t producer_id, uint64_t seq,
                   uint64_t highest, bool has_highest, uint64_t ledger,
                   uint64_t entry);
int tb_put_send_error(up_buf_t *out, uint64_t producer_id, uint64_t seq,
                      int error, const char *msg);
int tb_put_error(up_buf_t *out, uint64_t request_id, int error, const char *msg);
int tb_put_success(up_buf_t *out, uint64_t request_id);
int tb_put_simple(up_buf_t *out, int type); /* PING, PONG */
/* TOPIC_MIGRATED{producer @p producer_id, the new cluster's @p url}. */
int tb_put_topic_migrated(up_buf_t *out, uint64_t producer_id, const char *url);
int tb_put_close_producer(up_buf_t *out, uint64_t producer_id, uint64_t request_id,
                          const char *assigned_url);
int tb_put_auth_challenge(up_buf_t *out, const char *server_version, int protocol_version);
#endif
