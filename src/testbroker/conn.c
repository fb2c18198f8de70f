/* conn.c -- one thread per client connection: reads frames, answers them,
 * keeps the connection's receipt queue, pings, and dispatches entries to
 * the connection's consumers. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/err.h>

#include "tb.h"

/* Stop reading while this much output waits for the peer. */
#define OUT_HIGH (32u * 1024 * 1024)
/* Stop dispatching MESSAGE frames above this much pending output. */
#define OUT_DISPATCH (4u * 1024 * 1024)
/* TLS: ciphertext read per recv(), and encrypted output kept ahead of the
 * socket (the rest waits as plaintext in out). */
#define TLS_RX (64u * 1024)
#define TLS_TX_HIGH (1u * 1024 * 1024)

/* Return value of handlers: keep going, or close the connection. */
#define KEEP 0
#define CLOSE (-1)

static size_t out_pending(const tb_conn_t *c)
{
    return c->out.len - c->out_off + (c->tx.len - c->tx_off);
}

/* Is there something the socket must take (POLLOUT)? Plaintext waiting for
 * the TLS handshake is not. */
static bool want_write(const tb_conn_t *c)
{
    if (!c->ssl)
        return c->out.len > c->out_off;
    return c->tx.len > c->tx_off || (c->tls_done && c->out.len > c->out_off);
}

/* Out of memory while answering: the connection cannot keep its promises
 * (answers in order), so it is closed. */
static int put_rc(int rc)
{
    return rc ? CLOSE : KEEP;
}

static bool is_held(upulsar_tb_t *tb, tb_topic_t *t)
{
    return atomic_load(&tb->hold_all) || (t && atomic_load(&t->hold));
}

/* ---- producers and consumers of this connection ------------------------ */

static size_t pmap_slot(uint64_t id, size_t cap)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdull;
    id ^= id >> 33;
    return (size_t)id & (cap - 1);
}

static tb_producer_t *find_producer(tb_conn_t *c, uint64_t id)
{
    if (!c->pmap_cap)
        return NULL;
    for (size_t i = pmap_slot(id, c->pmap_cap);; i = (i + 1) & (c->pmap_cap - 1)) {
        tb_producer_t *p = c->pmap[i];
        if (!p || p->id == id)
            return p;
    }
}

static void pmap_put(tb_producer_t **map, size_t cap, tb_producer_t *p)
{
    size_t i = pmap_slot(p->id, cap);
    while (map[i])
        i = (i + 1) & (cap - 1);
    map[i] = p;
}

/* Register @p p (its id set, unique on @p c) as @p c's newest producer.
 * 0, or -1 out of memory (nothing changed). */
static int conn_prod_add(tb_conn_t *c, tb_producer_t *p)
{
    size_t live = c->nprods - c->prods_holes;
    if ((live + 1) * 2 > c->pmap_cap) {
        size_t ncap = c->pmap_cap ? c->pmap_cap * 2 : 16;
        tb_producer_t **nm = calloc(ncap, sizeof *nm);
        if (!nm)
            return -1;
        for (size_t i = 0; i < c->pmap_cap; i++)
            if (c->pmap[i])
                pmap_put(nm, ncap, c->pmap[i]);
        free(c->pmap);
        c->pmap = nm;
        c->pmap_cap = ncap;
    }
    if (c->nprods == c->prods_cap) {
        size_t nc = c->prods_cap ? c->prods_cap * 2 : 8;
        tb_producer_t **na = realloc(c->prods, nc * sizeof *na);
        if (!na)
            return -1;
        c->prods = na;
        c->prods_cap = nc;
    }
    p->cidx = c->nprods;
    c->prods[c->nprods++] = p;
    pmap_put(c->pmap, c->pmap_cap, p);
    return 0;
}

/* Take @p p off @p c's producers, keeping the others in creation order. */
static void conn_prod_remove(tb_conn_t *c, tb_producer_t *p)
{
    if (p->cidx >= c->nprods || c->prods[p->cidx] != p)
        return;
    /* out of the map, then close the gap of its probe run (backward shift) */
    size_t m = c->pmap_cap - 1, i = pmap_slot(p->id, c->pmap_cap);
    while (c->pmap[i] != p)
        i = (i + 1) & m;
    for (size_t j = (i + 1) & m; c->pmap[j]; j = (j + 1) & m) {
        size_t home = pmap_slot(c->pmap[j]->id, c->pmap_cap);
        /* the entry at j may move to i unless its home lies in (i, j] */
        if (((j - home) & m) >= ((j - i) & m)) {
            c->pmap[i] = c->pmap[j];
            i = j;
        }
    }
    c->pmap[i] = NULL;
    /* the newest: shrink; else leave a hole, compacted once holes dominate */
    if (p->cidx == c->nprods - 1) {
        c->nprods--;
        while (c->nprods && !c->prods[c->nprods - 1]) {
            c->nprods--;
            c->prods_holes--;
        }
        return;
    }
    c->prods[p->cidx] = NULL;
    c->prods_holes++;
    if (c->prods_holes * 2 > c->nprods) {
        size_t w = 0;
        for (size_t r = 0; r < c->nprods; r++)
            if (c->prods[r]) {
                c->prods[r]->cidx = w;
                c->prods[w++] = c->prods[r];
            }
        c->nprods = w;
        c->prods_holes = 0;
    }
}

static tb_consumer_t *find_consumer(tb_conn_t *c, uint64_t id)
{
    for (size_t i = 0; i < c->ncons; i++)
        if (c->cons[i]->id == id)
            return c->cons[i];
    return NULL;
}

static int ptr_push(void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        void **na = realloc(*arr, nc * sizeof *na);
        if (!na)
            return -1;
        *arr = na;
        *cap = nc;
    }
    (*arr)[(*n)++] = p;
    return 0;
}

static void ptr_remove(void **arr, size_t *n, void *p)
{
    for (size_t i = 0; i < *n; i++)
        if (arr[i] == p) {
            memmove(&arr[i], &arr[i + 1], (*n - i - 1) * sizeof *arr);
            (*n)--;
            return;
        }
}

/* ---- access modes (Exclusive, WaitForExclusive, ExclusiveWithFencing) --- */

static int put_producer_success(up_buf_t *out, uint64_t request_id, const char *name,
                                int64_t last_seq, int64_t epoch, bool ready, int64_t schema_ver);

/* The first WaitForExclusive producer gets the topic: it becomes active and
 * its second PRODUCER_SUCCESS (producer_ready) goes to its connection.
 * Caller holds t->mu. */
static void promote_waiter(tb_topic_t *t)
{
    tb_producer_t *w = t->waiters;
    if (!w || t->excl)
        return;
    if (ptr_push((void ***)&t->prods, &t->nprods, &t->prods_cap, w))
        return;
    t->waiters = w->wait_next;
    w->wait_next = NULL;
    w->waiting = false;
    w->active = true;
    w->closed = false;
    t->excl = w;
    /* as Pulsar's handleProducerRemoved: the epoch it brought, else the next */
    t->topic_epoch = w->wait_epoch >= 0 ? w->wait_epoch : t->topic_epoch + 1;
    up_buf_t b = UP_BUF_INIT;
    if (put_producer_success(&b, w->wait_rid, w->name,
                             tb_topic_dedup_locked(w->conn->tb, t) ? w->dedup->last_seq : -1,
                             t->topic_epoch, true, w->schema_ver) ||
        tb_conn_inject(w->conn, b.data, b.len))
        shutdown(w->conn->fd, SHUT_RDWR);
    up_buf_free(&b);
}

/* The broker closes active producer @p q of @p t (unload, move, fencing,
 * failed write): CLOSE_PRODUCER{assignedBrokerServiceUrl[Tls] =
 * @p assigned_url when not NULL} to its client, its SENDs are ignored until
 * it is re-created, and an exclusive hold it had ends (as a Pulsar broker
 * removes a closed producer from its topic). The caller takes it out of
 * t->prods. Caller holds t->mu. */
static void close_active_locked(upulsar_tb_t *tb, tb_topic_t *t, tb_producer_t *q,
                                const char *assigned_url, bool migrated)
{
    q->active = false;
    q->closed = true;
    if (t->excl == q)
        t->excl = NULL;
    up_buf_t b = UP_BUF_INIT;
    if ((migrated && q->conn->proto >= 20
             ? tb_put_topic_migrated(&b, q->id, assigned_url)
             : tb_put_close_producer(&b, q->id, atomic_fetch_add(&tb->next_request_id, 1),
                                     migrated ? NULL : assigned_url)) ||
        tb_conn_inject(q->conn, b.data, b.len))
        shutdown(q->conn->fd, SHUT_RDWR); /* cannot tell it: make it reconnect */
    up_buf_free(&b);
}

/* WaitForExclusive producer @p w, still queued, will not get the topic
 * here: its pending PRODUCER request is answered with ERROR @p code --
 * ServiceNotReady when the topic is closed (a Pulsar broker answers a waiter
 * whose topic was fenced for closing so, and the client looks the topic up
 * again), ProducerFenced when an ExclusiveWithFencing producer takes the
 * topic. @p w stays known to its connection (re-created like a closed
 * producer). The caller has unlinked it from t->waiters. Caller holds
 * t->mu. */
static void fail_waiter_locked(tb_producer_t *w, int code, const char *why)
{
    w->wait_next = NULL;
    w->waiting = false;
    w->closed = true;
    up_buf_t b = UP_BUF_INIT;
    if (tb_put_error(&b, w->wait_rid, code, why) || tb_conn_inject(w->conn, b.data, b.len))
        shutdown(w->conn->fd, SHUT_RDWR);
    up_buf_free(&b);
}

int tb_topic_close_producers_locked(upulsar_tb_t *tb, tb_topic_t *t, upulsar_tb_t *only,
                                    const char *assigned_url, bool migrated)
{
    bool held = t->excl != NULL;
    int n = 0;
    size_t w = 0;
    for (size_t i = 0; i < t->nprods; i++) {
        tb_producer_t *p = t->prods[i];
        if (only && p->conn->tb != only) {
            t->prods[w++] = p;
            continue;
        }
        close_active_locked(tb, t, p, assigned_url, migrated);
        n++;
    }
    t->nprods = w;
    for (tb_producer_t **pp = &t->waiters; *pp;) {
        tb_producer_t *q = *pp;
        if (only && q->conn->tb != only) {
            pp = &q->wait_next;
            continue;
        }
        *pp = q->wait_next;
        fail_waiter_locked(q, UP_SERR(ServiceNotReady), "Topic is temporarily unavailable");
        n++;
    }
    /* waiters served by another broker sharing the store stay queued: the
     * first of them gets the topic if the hold ended here */
    if (held && !t->excl)
        promote_waiter(t);
    return n;
}

/* WaitForExclusive producer @p p waits for @p t: registered on its
 * connection, not on the topic; answered producer_ready=false now and
 * PRODUCER_SUCCESS again (request @p rid) when it gets the topic
 * (promote_waiter). Caller holds t->mu. */
static void queue_waiter_locked(tb_topic_t *t, tb_producer_t *p, uint64_t rid,
                                const Pulsar__Proto__CommandProducer *in)
{
    p->waiting = true;
    p->fenced = false;
    p->wait_epoch = in->has_topic_epoch ? (int64_t)in->topic_epoch : -1;
    p->wait_rid = rid;
    p->wait_next = NULL;
    tb_producer_t **pp = &t->waiters;
    while (*pp)
        pp = &(*pp)->wait_next;
    *pp = p;
}

/* caller holds t->mu */
static void topic_remove_producer(tb_topic_t *t, tb_producer_t *p)
{
    if (p->waiting) {
        for (tb_producer_t **pp = &t->waiters; *pp; pp = &(*pp)->wait_next)
            if (*pp == p) {
                *pp = p->wait_next;
                break;
            }
        p->waiting = false;
    }
    if (p->active) {
        ptr_remove((void **)t->prods, &t->nprods, p);
        p->active = false;
    }
    if (t->excl == p) {
        t->excl = NULL;
        promote_waiter(t);
    }
}

enum { ACC_OK = 0, ACC_WAIT = -1 };

/* ExclusiveWithFencing takes the topic from @p q: as Pulsar's AbstractTopic
 * (Producer.close without CommandCloseProducer), silently. It leaves the
 * topic and its connection's view of it: its next SEND closes the
 * connection, as ServerCnx.handleSend does for a producer no longer there.
 * The caller takes it out of t->prods. Caller holds t->mu. */
static void fence_locked(tb_topic_t *t, tb_producer_t *q)
{
    q->active = false;
    q->closed = true;
    q->fenced = true;
    if (t->excl == q)
        t->excl = NULL;
}

/* The request brings a topic_epoch older than the topic's (one past
 * INT64_MAX is older than any). Caller holds t->mu. */
static bool epoch_moved(const tb_topic_t *t, const Pulsar__Proto__CommandProducer *in,
                        const char **why)
{
    if (!in->has_topic_epoch ||
        (in->topic_epoch <= (uint64_t)INT64_MAX && (int64_t)in->topic_epoch >= t->topic_epoch))
        return false;
    *why = "Topic epoch has already moved";
    return true;
}

/* Decide a PRODUCER request under @p mode against the topic's producers
 * (@p self: the producer being re-created, or NULL), in the order of
 * Pulsar's AbstractTopic.incrementTopicEpochIfNeeded. Returns ACC_OK,
 * ACC_WAIT (WaitForExclusive must wait) or a ServerError to answer with.
 * ExclusiveWithFencing fences the other producers here, before its own
 * epoch is looked at (as Pulsar does: a fencing producer with an old epoch
 * fences the holder out and is refused itself). Caller holds t->mu. */
static int access_check(upulsar_tb_t *tb, tb_topic_t *t, const Pulsar__Proto__CommandProducer *in,
                        tb_producer_t *self, const char **why)
{
    (void)tb;
    int mode = in->has_producer_access_mode ? (int)in->producer_access_mode : 0;
    bool others = false;
    for (size_t i = 0; i < t->nprods; i++)
        others |= t->prods[i] != self;
    /* an exclusive holder or a queued waiter refuses Shared (ProducerBusy)
     * and Exclusive (ProducerFenced), shared producers refuse Exclusive
     * (ProducerFenced) */
    bool held = (t->excl && t->excl != self) || t->waiters;
    switch (mode) {
    case PULSAR__PROTO__PRODUCER_ACCESS_MODE__Shared:
        if (held) {
            *why = "Topic has an existing exclusive producer";
            return UP_SERR(ProducerBusy);
        }
        return ACC_OK;
    case PULSAR__PROTO__PRODUCER_ACCESS_MODE__Exclusive:
        if (held) {
            *why = "Topic has an existing exclusive producer";
            return UP_SERR(ProducerFenced);
        }
        if (others) {
            *why = "Topic has existing shared producers";
            return UP_SERR(ProducerFenced);
        }
        return epoch_moved(t, in, why) ? UP_SERR(ProducerFenced) : ACC_OK;
    case PULSAR__PROTO__PRODUCER_ACCESS_MODE__WaitForExclusive:
        if ((t->excl && t->excl != self) || others)
            return ACC_WAIT;
        return epoch_moved(t, in, why) ? UP_SERR(ProducerFenced) : ACC_OK;
    case PULSAR__PROTO__PRODUCER_ACCESS_MODE__ExclusiveWithFencing:
        if ((t->excl && t->excl != self) || others) {
            /* the waiters are fenced out first (else the holder's going
             * would hand one of them the topic), then the others */
            while (t->waiters) {
                tb_producer_t *w = t->waiters;
                t->waiters = w->wait_next;
                fail_waiter_locked(w, UP_SERR(ProducerFenced), "Fenced out");
            }
            for (size_t i = 0; i < t->nprods;) {
                tb_producer_t *q = t->prods[i];
                if (q == self) {
                    i++;
                    continue;
                }
                fence_locked(t, q);
                ptr_remove((void **)t->prods, &t->nprods, q);
            }
        }
        return epoch_moved(t, in, why) ? UP_SERR(ProducerFenced) : ACC_OK;
    default:
        *why = "Unknown access mode";
        return UP_SERR(NotAllowedError);
    }
}

/* A producer was admitted: the topic_epoch it is answered (-1: none). A
 * Shared one gets the topic's as it is; an exclusive one takes the topic,
 * with the epoch it brought (a reconnection keeps its epoch) or the next
 * (0 for the first), as Pulsar's AbstractTopic does. */
static int64_t access_granted(tb_topic_t *t, const Pulsar__Proto__CommandProducer *in,
                              tb_producer_t *p)
{
    int mode = in->has_producer_access_mode ? (int)in->producer_access_mode : 0;
    p->fenced = false;
    if (mode == PULSAR__PROTO__PRODUCER_ACCESS_MODE__Shared)
        return t->topic_epoch;
    t->topic_epoch = in->has_topic_epoch ? (int64_t)in->topic_epoch : t->topic_epoch + 1;
    t->excl = p;
    return t->topic_epoch;
}

static void producer_free(tb_producer_t *p)
{
    free(p->name);
    free(p);
}

static void sub_unlink(tb_topic_t *t, tb_sub_t *s)
{
    for (tb_sub_t **pp = &t->subs; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            free(s->name);
            free(s->acked);
            free(s);
            return;
        }
}

/* Detach @p k from its topic (caller holds t->mu). The subscription goes
 * back to its first unacknowledged entry once nobody is attached, so the
 * next consumer gets what was dispatched but not acknowledged. */
static void consumer_detach_locked(tb_consumer_t *k)
{
    tb_topic_t *t = k->topic;
    ptr_remove((void **)t->cons, &t->ncons, k);
    tb_sub_t *s = k->sub;
    if (--s->consumers == 0) {
        s->read_pos = s->low;
        if (!s->durable)
            sub_unlink(t, s);
    }
    t->st.consumers = (int)t->ncons;
}

/* ---- answers ----------------------------------------------------------- */

/* A fencing answer (tb_resp_t fence) is sent or dropped: the topic takes
 * producers again once none is left. */
static void fence_answer_done(const tb_resp_t *r)
{
    if (!r->fence)
        return;
    pthread_mutex_lock(&r->topic->mu);
    r->topic->fence_answers--;
    pthread_mutex_unlock(&r->topic->mu);
}

static int emit_resp_frame(tb_conn_t *c, const tb_resp_t *r);

/* Send the answer @p r that is not (or no longer) queued. */
static int emit_resp(tb_conn_t *c, const tb_resp_t *r)
{
    int rc = emit_resp_frame(c, r);
    fence_answer_done(r);
    return rc;
}

static int emit_resp_frame(tb_conn_t *c, const tb_resp_t *r)
{
    if (r->error >= 0) {
        const char *msg = "";
        switch (r->error) {
        case UP_SERR(ChecksumError):
            msg = "Checksum failed on the broker";
            break;
        case UP_SERR(NotAllowedError):
            msg = "Exceed maximum message size";
            break;
        default:
            msg = "Error injected by the test broker";
            break;
        }
        /* as Pulsar's publish context: the entry's highest id (the larger
         * of highest_sequence_id and sequence_id), not its first */
        return tb_put_send_error(&c->out, r->producer_id,
                                 r->has_highest && r->highest_seq > r->sequence_id ? r->highest_seq
                                                                                  : r->sequence_id,
                                 r->error, msg);
    }
    return tb_put_receipt(&c->out, r->producer_id, r->sequence_id, r->highest_seq,
                          r->has_highest, r->ledger, r->entry);
}

/* Answer a SEND now, or queue the answer behind earlier ones (delay, hold).
 * A ChecksumError goes at once, ahead of the answers queued: Pulsar checks
 * the checksum before it writes anything (Producer.checkAndStartPublish)
 * and answers it straight away, while the receipts of earlier SENDs wait
 * for their ledger writes. */
static int respond_send(tb_conn_t *c, const tb_resp_t *r0)
{
    upulsar_tb_t *tb = c->tb;
    int delay = atomic_load(&tb->receipt_delay_ms);
    if (r0->error == PULSAR__PROTO__SERVER_ERROR__ChecksumError ||
        (c->qlen == 0 && delay <= 0 && !is_held(tb, r0->topic)))
        return emit_resp(c, r0);
    if (c->qlen == c->qcap) {
        size_t nc = c->qcap ? c->qcap * 2 : 64;
        tb_resp_t *nq = realloc(c->q, nc * sizeof *nq);
        if (!nq) {
            fence_answer_done(r0); /* never sent: the connection closes */
            return UPULSAR_ERR__NOMEM;
        }
        c->q = nq;
        c->qcap = nc;
    }
    tb_resp_t *r = &c->q[c->qlen++];
    *r = *r0;
    int64_t due = tb_now_ms() + (delay > 0 ? delay : 0);
    if (due < c->q_last_due)
        due = c->q_last_due;
    r->due_ms = c->q_last_due = due;
    atomic_fetch_add(&tb->receipts_queued, 1);
    return 0;
}

/* Send every queued answer that is due and not held, keeping the order of
 * the rest. Answers of one producer share a topic (same hold state) and
 * have non-decreasing due times, so per-producer order is kept. */
static int run_queue(tb_conn_t *c, int64_t now)
{
    size_t w = 0;
    int rc = 0;
    for (size_t i = 0; i < c->qlen; i++) {
        tb_resp_t *r = &c->q[i];
        if (!rc && r->due_ms <= now && !is_held(c->tb, r->topic)) {
            rc = emit_resp_frame(c, r); /* failed: stays queued until cleanup */
            if (!rc) {
                fence_answer_done(r);
                atomic_fetch_sub(&c->tb->receipts_queued, 1);
                continue;
            }
        }
        c->q[w++] = *r;
    }
    c->qlen = w;
    return rc;
}

/* Milliseconds until the first queued answer that could go out, -1 if none. */
static int64_t queue_next_due(tb_conn_t *c)
{
    for (size_t i = 0; i < c->qlen; i++)
        if (!is_held(c->tb, c->q[i].topic))
            return c->q[i].due_ms;
    return -1;
}

/* ---- command handlers -------------------------------------------------- */

static int send_connected(tb_conn_t *c)
{
    upulsar_tb_t *tb = c->tb;
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandConnected cd = PULSAR__PROTO__COMMAND_CONNECTED__INIT;
    cmd.type = UP_CMD(CONNECTED);
    cmd.connected = &cd;
    cd.server_version = tb->server_version;
    cd.has_protocol_version = 1;
    cd.protocol_version = c->proto;
    cd.has_max_message_size = 1;
    cd.max_message_size = tb->opts.max_message_size;
    c->handshaken = true;
    return put_rc(up_frame_put_cmd(&c->out, &cmd));
}

/* Refuse the client's credentials: ERROR AuthenticationError (request id -1
 * as Pulsar), then the connection closes. @p why never quotes what the
 * client sent. */
static int auth_fail(tb_conn_t *c, const char *why)
{
    atomic_fetch_add(&c->tb->auth_failed, 1);
    tb_put_error(&c->out, TB_ID_NONE, UP_SERR(AuthenticationError), why);
    return CLOSE;
}

/* Check credentials given as auth method + data. NULL = accepted, else the
 * reason to refuse. Counts accepted checks of configured tokens. */
static const char *check_credentials(tb_conn_t *c, const char *method, bool has_data,
                                     const ProtobufCBinaryData *data)
{
    bool is_token = method && !strcmp(method, "token");
    bool required;
    bool ok = tb_token_ok(c->tb, is_token && has_data ? data->data : NULL,
                          is_token && has_data ? data->len : 0, &required);
    if (!required)
        return NULL; /* authentication is off: anything goes, as in Pulsar */
    if (method && !strcmp(method, "tls")) {
        /* Pulsar's TLS authentication: the client certificate verified in
         * the handshake (against tls_ca_file) is the credential */
        X509 *peer = c->ssl ? SSL_get1_peer_certificate(c->ssl) : NULL;
        bool verified = peer && SSL_get_verify_result(c->ssl) == X509_V_OK;
        if (verified) {
            /* the role, as Pulsar's AuthenticationProviderTls takes it: the
             * certificate subject's common name */
            char cn[256] = "";
            if (X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
                                          (int)sizeof cn) < 0)
                cn[0] = '\0';
            pthread_mutex_lock(&c->tb->mu);
            snprintf(c->tb->tls_role, sizeof c->tb->tls_role, "%s", cn);
            pthread_mutex_unlock(&c->tb->mu);
        }
        X509_free(peer);
        if (verified) {
            atomic_fetch_add(&c->tb->auth_ok, 1);
            atomic_fetch_add(&c->tb->auth_tls_ok, 1);
            return NULL;
        }
        return "Failed to authenticate: no verified client certificate";
    }
    if (ok) {
        atomic_fetch_add(&c->tb->auth_ok, 1);
        return NULL;
    }
    if (!method || !strcmp(method, "none") || (is_token && !has_data))
        return "Authentication required";
    if (!is_token)
        return "Unsupported authentication method";
    return "Failed to authenticate: invalid token";
}

/* Ask the client for its credentials again (AUTH_CHALLENGE, "token",
 * "PulsarAuthRefresh"); it has auth_response_timeout_ms to answer. */
static int send_challenge(tb_conn_t *c, bool in_handshake)
{
    upulsar_tb_t *tb = c->tb;
    if (tb_put_auth_challenge(&c->out, tb->server_version, c->proto))
        return CLOSE;
    c->auth_pending = true;
    c->auth_in_handshake = in_handshake;
    c->auth_deadline_ms = tb_now_ms() + tb->opts.auth_response_timeout_ms;
    atomic_fetch_add(&tb->auth_challenges, 1);
    return KEEP;
}

/* Proxy mode: relay the connection to the broker its CONNECT @p in names
 * ("127.0.0.1:<port>" or "localhost:<port>", another broker on this
 * machine), as a Pulsar proxy forwards a client to the broker it names:
 * connect there, pass the CONNECT on without proxy_to_broker_url, and let
 * the connection's thread forward the bytes both ways from now on.
 * -1: not a broker here (nothing listens, or another host). */
static int relay_open(tb_conn_t *c, const Pulsar__Proto__CommandConnect *in)
{
    const char *to = in->proxy_to_broker_url;
    const char *colon = strrchr(to, ':');
    if (!colon)
        return -1;
    size_t hl = (size_t)(colon - to);
    if (hl != 9 || (strncmp(to, "127.0.0.1", hl) && strncmp(to, "localhost", hl)))
        return -1;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) ||
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)) {
        close(fd);
        return -1;
    }
    Pulsar__Proto__CommandConnect co = *in;
    co.proxy_to_broker_url = NULL;
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    cmd.type = UP_CMD(CONNECT);
    cmd.connect = &co;
    if (up_frame_put_cmd(&c->relay_out, &cmd)) {
        close(fd);
        return -1;
    }
    c->relay_fd = fd;
    return 0;
}

static int on_connect(tb_conn_t *c, const Pulsar__Proto__CommandConnect *in)
{
    upulsar_tb_t *tb = c->tb;
    int pv = in->has_protocol_version ? in->protocol_version : 0;
    if (pv < 0)
        pv = 0;
    if (pv > tb->opts.protocol_version)
        pv = tb->opts.protocol_version;
    c->proto = pv;
    const char *why =
        check_credentials(c, in->auth_method_name, in->has_auth_data, &in->auth_data);
    if (why)
        return auth_fail(c, why);
    if (tb->opts.proxy_mode) {
        const char *to = in->proxy_to_broker_url;
        c->lookup_only = !to || !to[0];
        if (!c->lookup_only) {
            char url[300];
            snprintf(url, sizeof url, "%s%s", tb->ssl_ctx ? "pulsar+ssl://" : "pulsar://", to);
            if (!tb_url_is_self(tb, url)) {
                if (relay_open(c, in)) {
                    tb_put_error(&c->out, TB_ID_NONE, UP_SERR(ServiceNotReady),
                                 "proxy: no such broker behind this proxy");
                    return CLOSE;
                }
                atomic_fetch_add(&tb->proxy_relayed, 1);
                return KEEP; /* the broker's CONNECTED comes through the relay */
            }
            atomic_fetch_add(&tb->proxied_connections, 1);
        }
    }
    if (tb->opts.auth_challenge_on_connect)
        return send_challenge(c, true); /* CONNECTED once it is answered */
    return send_connected(c);
}

static int on_auth_response(tb_conn_t *c, const Pulsar__Proto__CommandAuthResponse *in)
{
    if (!c->auth_pending)
        return KEEP; /* nothing was asked */
    const Pulsar__Proto__AuthData *r = in->response;
    static const ProtobufCBinaryData none = {0, NULL};
    const char *why = check_credentials(c, r ? r->auth_method_name : NULL,
                                        r && r->has_auth_data, r ? &r->auth_data : &none);
    if (why)
        return auth_fail(c, why);
    c->auth_pending = false;
    if (c->auth_in_handshake) {
        c->auth_in_handshake = false;
        return send_connected(c);
    }
    return KEEP;
}

static int answer_partitioned_metadata(tb_conn_t *c, uint64_t request_id, const char *topic);

static int on_partitioned_metadata(tb_conn_t *c,
                                   const Pulsar__Proto__CommandPartitionedTopicMetadata *in)
{
    upulsar_tb_t *tb = c->tb;
    atomic_fetch_add(&tb->partition_lookups, 1);
    if (atomic_load(&tb->hold_metadata)) {
        /* a broker slow to read its metadata store: answered when the hold
         * ends (run_held_metadata), other commands meanwhile */
        if (c->nhm == c->hm_cap) {
            size_t nc = c->hm_cap ? c->hm_cap * 2 : 4;
            uint64_t *nr = realloc(c->hm_rid, nc * sizeof *nr);
            if (!nr)
                return CLOSE;
            c->hm_rid = nr;
            char **nt = realloc(c->hm_topic, nc * sizeof *nt);
            if (!nt)
                return CLOSE;
            c->hm_topic = nt;
            c->hm_cap = nc;
        }
        char *t = strdup(in->topic ? in->topic : "");
        if (!t)
            return CLOSE;
        c->hm_rid[c->nhm] = in->request_id;
        c->hm_topic[c->nhm++] = t;
        return KEEP;
    }
    return answer_partitioned_metadata(c, in->request_id, in->topic);
}

/* Answer the held PARTITIONED_METADATA requests once the hold has ended,
 * oldest first. */
static int run_held_metadata(tb_conn_t *c)
{
    if (!c->nhm || atomic_load(&c->tb->hold_metadata))
        return KEEP;
    for (size_t i = 0; i < c->nhm; i++) {
        int rc = answer_partitioned_metadata(c, c->hm_rid[i], c->hm_topic[i]);
        if (rc) {
            for (size_t j = i; j < c->nhm; j++)
                free(c->hm_topic[j]);
            c->nhm = 0;
            return rc;
        }
        free(c->hm_topic[i]);
    }
    c->nhm = 0;
    return KEEP;
}

static int answer_partitioned_metadata(tb_conn_t *c, uint64_t request_id, const char *topic)
{
    upulsar_tb_t *tb = c->tb;
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandPartitionedTopicMetadataResponse r =
        PULSAR__PROTO__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__INIT;
    cmd.type = UP_CMD(PARTITIONED_METADATA_RESPONSE);
    cmd.partitionmetadataresponse = &r;
    r.request_id = request_id;
    r.has_response = 1;
    upulsar_err_t err;
    char *norm = tb_topic_normalize(topic, &err);
    if (!norm) {
        if (err == UPULSAR_ERR__NOMEM)
            return CLOSE;
        r.response = PULSAR__PROTO__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__LOOKUP_TYPE__Failed;
        r.has_error = 1;
        r.error = UP_SERR(InvalidTopicName);
        r.message = "Invalid topic name";
        return put_rc(up_frame_put_cmd(&c->out, &cmd));
    }
    int parts = 0;
    if (!tb_partition_base_len(norm)) {
        pthread_mutex_lock(&tb->store->mu);
        tb_topic_t *t = tb_topic_find_locked(tb, norm, false);
        parts = t ? t->partitions : 0;
        pthread_mutex_unlock(&tb->store->mu);
    }
    free(norm);
    r.response = PULSAR__PROTO__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__LOOKUP_TYPE__Success;
    r.has_partitions = 1;
    r.partitions = (uint32_t)parts;
    return put_rc(up_frame_put_cmd(&c->out, &cmd));
}

static int on_lookup(tb_conn_t *c, const Pulsar__Proto__CommandLookupTopic *in)
{
    upulsar_tb_t *tb = c->tb;
    atomic_fetch_add(&tb->lookups, 1);
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandLookupTopicResponse r =
        PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__INIT;
    cmd.type = UP_CMD(LOOKUP_RESPONSE);
    cmd.lookuptopicresponse = &r;
    r.request_id = in->request_id;
    r.has_response = 1;
    upulsar_err_t err;
    char *norm = tb_topic_normalize(in->topic, &err);
    if (!norm) {
        if (err == UPULSAR_ERR__NOMEM)
            return CLOSE;
        r.response = PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed;
        r.has_error = 1;
        r.error = UP_SERR(InvalidTopicName);
        r.message = "Invalid topic name";
        return put_rc(up_frame_put_cmd(&c->out, &cmd));
    }
    char *owner = tb_owner_of(tb, norm);
    free(norm);
    const char *lname = in->advertised_listener_name && in->advertised_listener_name[0]
                            ? in->advertised_listener_name
                            : NULL;
    if (lname)
        atomic_fetch_add(&tb->listener_lookups, 1);
    /* as a Pulsar broker, the URL of each port the broker listens on: a
     * pulsar+ssl:// broker is named in brokerServiceUrlTls only, a
     * pulsar:// one in brokerServiceUrl only (the other field is left out,
     * as Pulsar leaves out the URL of a port it does not open); a lookup
     * naming an advertised listener gets that listener's URL */
    const char *url = owner ? owner : tb->url;
    char why[300];
    if (!owner && lname && !tb->opts.proxy_mode && !(url = tb_listener_url(tb, lname))) {
        /* Pulsar: PulsarServerException, answered as ServiceNotReady */
        snprintf(why, sizeof why, "the broker do not have %s listener", lname);
        r.response = PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed;
        r.has_error = 1;
        r.error = UP_SERR(ServiceNotReady);
        r.message = why;
        return put_rc(up_frame_put_cmd(&c->out, &cmd));
    }
    r.has_authoritative = 1;
    r.authoritative = 1;
    r.response = owner ? PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Redirect
                       : PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect;
    bool url_tls = !strncmp(url, "pulsar+ssl://", 13);
    if (url_tls)
        r.brokerserviceurltls = (char *)url;
    else
        r.brokerserviceurl = (char *)url;
    char link[300];
    if (tb->opts.proxy_mode) {
        /* as a Pulsar proxy (LookupProxyHandler): Connect, through the
         * service URL, with the URL by which the proxy reaches the owner in
         * BOTH fields, in the scheme of the proxy's own link to its brokers,
         * whatever the client uses */
        const char *hp = strstr(url, "://");
        hp = hp ? hp + 3 : url;
        int lk = tb->opts.proxy_broker_link;
        bool tls = lk == UPULSAR_TB_PROXY_LINK_TLS ||
                   (lk != UPULSAR_TB_PROXY_LINK_PLAIN && tb->ssl_ctx != NULL);
        snprintf(link, sizeof link, "%s%s", tls ? "pulsar+ssl://" : "pulsar://", hp);
        r.brokerserviceurl = r.brokerserviceurltls = link;
        r.response = PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect;
        r.has_proxy_through_service_url = 1;
        r.proxy_through_service_url = 1;
    }
    int rc = up_frame_put_cmd(&c->out, &cmd);
    free(owner);
    return put_rc(rc);
}

/* Value of put_producer_success()'s last_seq: leave last_sequence_id out. */
#define NO_LAST_SEQ INT64_MIN

/* PRODUCER_SUCCESS into @p out; @p epoch < 0: no topic_epoch; @p last_seq
 * NO_LAST_SEQ: no last_sequence_id and no producer_ready (Pulsar's answer
 * for a producer id already created on the connection: the name and the
 * schema version only) */
static int put_producer_success_ver(up_buf_t *out, uint64_t request_id, const char *name,
                                    int64_t last_seq, int64_t epoch, bool ready,
                                    int64_t schema_ver, size_t ver_len);

static int put_producer_success(up_buf_t *out, uint64_t request_id, const char *name,
                                int64_t last_seq, int64_t epoch, bool ready, int64_t schema_ver)
{
    return put_producer_success_ver(out, request_id, name, last_seq, epoch, ready, schema_ver, 8);
}

/* The answer to a PRODUCER that created or confirmed a producer of @p t:
 * PRODUCER_SUCCESS, or what upulsar_tb_mangle_producers() asked for. */
static int answer_created(tb_conn_t *c, tb_topic_t *t, uint64_t request_id, const char *name,
                          int64_t last_seq, int64_t epoch, bool ready, int64_t schema_ver)
{
    pthread_mutex_lock(&t->mu);
    int how = tb_countdown_take(&t->mangle_prods);
    pthread_mutex_unlock(&t->mu);
    if (how == UPULSAR_TB_MANGLE_COMMAND)
        return put_rc(tb_put_success(&c->out, request_id));
    if (how == UPULSAR_TB_MANGLE_SCHEMA_VERSION)
        return put_rc(put_producer_success_ver(&c->out, request_id, name, last_seq, epoch, ready,
                                               schema_ver < 0 ? 0 : schema_ver, 17));
    if (how == UPULSAR_TB_MANGLE_LAST_SEQ)
        last_seq = -5;
    return put_rc(
        put_producer_success(&c->out, request_id, name, last_seq, epoch, ready, schema_ver));
}

/* PRODUCER_SUCCESS into @p out with a schema version of @p ver_len bytes
 * (8, as Pulsar; more only for upulsar_tb_mangle_producers(): the 8 bytes
 * then zeros). */
static int put_producer_success_ver(up_buf_t *out, uint64_t request_id, const char *name,
                                    int64_t last_seq, int64_t epoch, bool ready,
                                    int64_t schema_ver, size_t ver_len)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandProducerSuccess ps = PULSAR__PROTO__COMMAND_PRODUCER_SUCCESS__INIT;
    cmd.type = UP_CMD(PRODUCER_SUCCESS);
    cmd.producer_success = &ps;
    ps.request_id = request_id;
    ps.producer_name = (char *)name;
    if (last_seq != NO_LAST_SEQ) {
        ps.has_last_sequence_id = 1;
        ps.last_sequence_id = last_seq;
        ps.has_producer_ready = 1;
        ps.producer_ready = ready;
    }
    if (epoch >= 0) {
        ps.has_topic_epoch = 1;
        ps.topic_epoch = (uint64_t)epoch;
    }
    /* as Pulsar: always there, empty for a producer without a schema,
     * else the version as 8 bytes big-endian (LongSchemaVersion) */
    uint8_t ver[32] = {0};
    ps.has_schema_version = 1;
    if (schema_ver >= 0) {
        for (int i = 0; i < 8; i++)
            ver[i] = (uint8_t)((uint64_t)schema_ver >> (56 - 8 * i));
        ps.schema_version.data = ver;
        ps.schema_version.len = ver_len < sizeof ver ? ver_len : sizeof ver;
    }
    return up_frame_put_cmd(out, &cmd);
}

/* The normalized name of @p topic when this broker serves it; otherwise
 * NULL, with *rc the answer already queued (InvalidTopicName,
 * ServiceNotReady) or CLOSE. */
static char *served_topic(tb_conn_t *c, const char *topic, uint64_t rid, int *rc)
{
    upulsar_err_t err;
    char *norm = tb_topic_normalize(topic, &err);
    if (!norm) {
        *rc = err == UPULSAR_ERR__NOMEM ? CLOSE
                                        : put_rc(tb_put_error(&c->out, rid, UP_SERR(InvalidTopicName),
                                                              "Invalid topic name"));
        return NULL;
    }
    char *owner = tb_owner_of(c->tb, norm);
    if (owner) {
        free(owner);
        free(norm);
        *rc = put_rc(tb_put_error(&c->out, rid, UP_SERR(ServiceNotReady),
                                  "Namespace bundle is not served by this broker"));
        return NULL;
    }
    return norm;
}

/* As a Pulsar broker creating a topic checks it against its partitioned
 * metadata (BrokerService.validateTopicConsistency): a partition past the
 * partitioned topic's count, or the base name of a partitioned topic, is
 * refused (NotAllowedError, the reason in @p why). */
static bool partition_refused(upulsar_tb_t *tb, const char *norm, char *why, size_t n)
{
    static const char mark[] = "-partition-";
    size_t bl = tb_partition_base_len(norm);
    bool refused = false;
    pthread_mutex_lock(&tb->store->mu);
    if (bl) {
        char *base = strndup(norm, bl);
        tb_topic_t *b = base ? tb_topic_find_locked(tb, base, false) : NULL;
        int parts = b ? b->partitions : 0;
        long idx = strtol(norm + bl + sizeof mark - 1, NULL, 10);
        if (parts > 0 && idx >= parts) {
            snprintf(why, n, "Illegal topic partition name %s with max allowed %d partitions",
                     norm, parts);
            refused = true;
        }
        free(base);
    } else {
        tb_topic_t *t = tb_topic_find_locked(tb, norm, false);
        if (t && t->partitions > 0) {
            snprintf(why, n, "Found partitioned metadata for non-partitioned topic: %s", norm);
            refused = true;
        }
    }
    pthread_mutex_unlock(&tb->store->mu);
    return refused;
}

/* caller holds t->mu */
static bool name_busy(tb_topic_t *t, const char *name, const tb_producer_t *self)
{
    for (size_t i = 0; i < t->nprods; i++)
        if (t->prods[i] != self && !strcmp(t->prods[i]->name, name))
            return true;
    return false;
}

/* Proxy mode: a connection that named no broker serves lookups only; a
 * Pulsar proxy closes it on anything else. */
static bool lookup_only_refused(tb_conn_t *c)
{
    if (!c->lookup_only)
        return false;
    atomic_fetch_add(&c->tb->lookup_only_closed, 1);
    return true;
}

/* Note @p answer in @p t's log of PRODUCER answers (t->mu held if
 * @p locked) and return @p rc. */
static int answered(tb_topic_t *t, bool locked, int answer, int rc)
{
    if (!locked)
        pthread_mutex_lock(&t->mu);
    tb_topic_note_answer_locked(t, answer);
    if (!locked)
        pthread_mutex_unlock(&t->mu);
    return rc;
}

/* The delayed PRODUCER of @p producer_id on @p c, or NULL. */
static tb_delayed_prod_t *find_delayed(tb_conn_t *c, uint64_t producer_id)
{
    for (size_t i = 0; i < c->ndp; i++)
        if (c->dp[i].producer_id == producer_id)
            return &c->dp[i];
    return NULL;
}

/* Note a request in @p t's request log (t->mu not held). */
static void note_request(tb_conn_t *c, tb_topic_t *t, int type, uint64_t producer_id,
                         uint64_t request_id)
{
    pthread_mutex_lock(&t->mu);
    tb_topic_note_request_locked(t, type, c->serial, producer_id, request_id, NULL);
    pthread_mutex_unlock(&t->mu);
}

/* Keep @p in for processing @p ms from now (upulsar_tb_delay_producers()). */
static int delay_producer(tb_conn_t *c, tb_topic_t *t, const Pulsar__Proto__CommandProducer *in,
                          int ms)
{
    if (c->ndp == c->dp_cap) {
        size_t nc = c->dp_cap ? c->dp_cap * 2 : 4;
        tb_delayed_prod_t *nd = realloc(c->dp, nc * sizeof *nd);
        if (!nd)
            return CLOSE;
        c->dp = nd;
        c->dp_cap = nc;
    }
    size_t len = pulsar__proto__command_producer__get_packed_size(in);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return CLOSE;
    pulsar__proto__command_producer__pack(in, buf);
    tb_delayed_prod_t *d = &c->dp[c->ndp++];
    d->producer_id = in->producer_id;
    d->request_id = in->request_id;
    d->due_ms = tb_now_ms() + ms;
    d->topic = t;
    d->packed = buf;
    d->len = len;
    return KEEP;
}

static int producer_run(tb_conn_t *c, const Pulsar__Proto__CommandProducer *in, bool replay);

static int on_producer(tb_conn_t *c, const Pulsar__Proto__CommandProducer *in)
{
    return producer_run(c, in, false);
}

/* PRODUCER; @p replay: a delayed one, due now (already logged, not delayed
 * again). */
static int producer_run(tb_conn_t *c, const Pulsar__Proto__CommandProducer *in, bool replay)
{
    upulsar_tb_t *tb = c->tb;
    uint64_t rid = in->request_id;
    int rc;
    if (lookup_only_refused(c))
        return CLOSE;
    if (!replay) {
        /* as Pulsar: the producer id is taken while its first PRODUCER is
         * being processed ("future not done") */
        tb_delayed_prod_t *d = find_delayed(c, in->producer_id);
        if (d) {
            tb_topic_t *dt = d->topic;
            pthread_mutex_lock(&dt->mu);
            tb_topic_note_request_locked(dt, UP_CMD(PRODUCER), c->serial, in->producer_id, rid,
                                         in);
            tb_topic_note_answer_locked(dt, UP_SERR(ServiceNotReady));
            pthread_mutex_unlock(&dt->mu);
            return put_rc(tb_put_error(&c->out, rid, UP_SERR(ServiceNotReady),
                                       "Producer is already present on the connection"));
        }
        /* as Pulsar: a producer already created with this id answers at
         * once, with its name only (no last_sequence_id, no topic_epoch) */
        tb_producer_t *lp = find_producer(c, in->producer_id);
        upulsar_err_t ne;
        char *ln = lp ? tb_topic_normalize(in->topic, &ne) : NULL;
        if (lp && ln && !strcmp(ln, lp->topic->name)) {
            tb_topic_t *lt = lp->topic;
            pthread_mutex_lock(&lt->mu);
            bool live = lp->active && !lp->closed && !lp->waiting;
            if (live) {
                tb_topic_note_request_locked(lt, UP_CMD(PRODUCER), c->serial, in->producer_id,
                                             rid, in);
                tb_topic_note_answer_locked(lt, UPULSAR_TB_PRODUCER_CREATED);
            }
            pthread_mutex_unlock(&lt->mu);
            if (live) {
                free(ln);
                return answer_created(c, lt, rid, lp->name, NO_LAST_SEQ, -1, true,
                                      lp->schema_ver);
            }
        }
        free(ln);
    }
    {
        /* migrated to another cluster: as Pulsar, TOPIC_MIGRATED (protocol
         * 20 and later) and no answer to the request; else "not here" */
        upulsar_err_t e;
        char *n = tb_topic_normalize(in->topic, &e);
        char *mig = n ? tb_migrated_to(tb, n) : NULL;
        tb_topic_t *mt = mig ? tb_topic_get(tb, n, false) : NULL;
        free(n);
        if (mig) {
            int r = c->proto >= 20 ? tb_put_topic_migrated(&c->out, in->producer_id, mig)
                                   : tb_put_error(&c->out, rid, UP_SERR(ServiceNotReady),
                                                  "Topic migrated to another cluster");
            free(mig);
            if (!mt)
                return put_rc(r);
            return answered(mt, false,
                            c->proto >= 20 ? UPULSAR_TB_PRODUCER_MIGRATED
                                           : UP_SERR(ServiceNotReady),
                            put_rc(r));
        }
    }
    char *norm = served_topic(c, in->topic, rid, &rc);
    if (!norm)
        return rc;
    char pwhy[400];
    if (partition_refused(tb, norm, pwhy, sizeof pwhy)) {
        free(norm);
        return put_rc(tb_put_error(&c->out, rid, UP_SERR(NotAllowedError), pwhy));
    }
    tb_topic_t *t = tb_topic_get(tb, norm, true);
    free(norm);
    if (!t)
        return CLOSE;
    if (!replay) {
        pthread_mutex_lock(&t->mu);
        tb_topic_note_request_locked(t, UP_CMD(PRODUCER), c->serial, in->producer_id, rid, in);
        int ms = tb_countdown_take(&t->delay_prods);
        pthread_mutex_unlock(&t->mu);
        if (ms < 0)
            ms = tb_take_delay_producer(tb);
        if (ms >= 0)
            return delay_producer(c, t, in, ms);
    }
    int inj = tb_take_fail_producer(tb);
    if (inj >= 0)
        return answered(t, false, inj,
                        put_rc(tb_put_error(&c->out, rid, inj, "Error injected by the test broker")));

    pthread_mutex_lock(&t->mu);
    size_t mdo = 0;
    t->last_producer_metadata[0] = '\0';
    for (size_t i = 0; i < in->n_metadata && mdo < sizeof t->last_producer_metadata; i++) {
        const Pulsar__Proto__KeyValue *kv = in->metadata[i];
        int w = snprintf(t->last_producer_metadata + mdo, sizeof t->last_producer_metadata - mdo,
                         "%s%s=%s", i ? "," : "", kv->key ? kv->key : "",
                         kv->value ? kv->value : "");
        mdo += w > 0 ? (size_t)w : 0;
    }
    int e = tb_countdown_take(&t->fail_prods);
    if (e >= 0) {
        tb_topic_note_answer_locked(t, e);
        pthread_mutex_unlock(&t->mu);
        return put_rc(tb_put_error(&c->out, rid, e, "Error injected by the test broker"));
    }
    tb_producer_t *p = find_producer(c, in->producer_id);
    if (p && p->topic == t && p->waiting) { /* its first request is still pending */
        tb_topic_note_answer_locked(t, UP_SERR(ServiceNotReady));
        pthread_mutex_unlock(&t->mu);
        return put_rc(tb_put_error(&c->out, rid, UP_SERR(ServiceNotReady),
                                   "Producer is already present on the connection"));
    }
    /* as Pulsar (ServerCnx.tryAddSchema), the schema before anything else
     * of the producer: registered, or refused with IncompatibleSchema */
    int64_t sver;
    char swhy[160];
    int se = tb_topic_schema_locked(t, in->schema, tb->opts.schema_validation_enforced != 0, &sver,
                                    swhy, sizeof swhy);
    if (se) {
        tb_topic_note_answer_locked(t, se);
        pthread_mutex_unlock(&t->mu);
        return put_rc(tb_put_error(&c->out, rid, se, swhy));
    }
    if (p && p->topic == t)
        p->schema_ver = sver;
    /* as Pulsar: a failed ledger write fences the topic, which refuses
     * producers (TopicFencedException) until its writes in progress have
     * failed and been answered */
    if (t->fence_answers > 0) {
        tb_topic_note_answer_locked(t, UP_SERR(ServiceNotReady));
        pthread_mutex_unlock(&t->mu);
        return put_rc(tb_put_error(&c->out, rid, UP_SERR(ServiceNotReady),
                                   "Topic is temporarily unavailable"));
    }
    /* closed by the broker (unload, move, a failed wait): re-created as a
     * new producer would be, so WaitForExclusive queues again */
    bool reopen = p && p->topic == t && !p->active;
    const char *why = "";
    int acc = access_check(tb, t, in, p && p->topic == t ? p : NULL, &why);
    if (acc > 0 || (acc == ACC_WAIT && p && !reopen)) {
        tb_topic_note_answer_locked(t, acc > 0 ? acc : UP_SERR(ProducerBusy));
        pthread_mutex_unlock(&t->mu);
        return put_rc(tb_put_error(&c->out, rid, acc > 0 ? acc : UP_SERR(ProducerBusy),
                                   acc > 0 ? why : "Topic has other producers"));
    }
    if (p) {
        if (p->topic != t) {
            tb_topic_note_answer_locked(t, UP_SERR(ServiceNotReady));
            pthread_mutex_unlock(&t->mu);
            return put_rc(tb_put_error(&c->out, rid, UP_SERR(ServiceNotReady),
                                       "Producer id already used on this connection"));
        }
        if (reopen) {
            if (name_busy(t, p->name, p)) {
                tb_topic_note_answer_locked(t, UP_SERR(ProducerBusy));
                pthread_mutex_unlock(&t->mu);
                return put_rc(tb_put_error(&c->out, rid, UP_SERR(ProducerBusy),
                                           "Producer with this name is already connected"));
            }
            if (acc == ACC_WAIT) {
                queue_waiter_locked(t, p, rid, in);
                int64_t last = tb_topic_dedup_locked(tb, t) ? p->dedup->last_seq : -1;
                tb_topic_note_answer_locked(t, UPULSAR_TB_PRODUCER_QUEUED);
                pthread_mutex_unlock(&t->mu);
                return answer_created(c, t, rid, p->name, last, -1, false, sver);
            }
            if (ptr_push((void ***)&t->prods, &t->nprods, &t->prods_cap, p)) {
                pthread_mutex_unlock(&t->mu);
                return CLOSE;
            }
            p->active = true;
            p->closed = false;
        }
        int64_t last = tb_topic_dedup_locked(tb, t) ? p->dedup->last_seq : -1;
        int64_t epoch = access_granted(t, in, p);
        tb_topic_note_answer_locked(t, UPULSAR_TB_PRODUCER_CREATED);
        pthread_mutex_unlock(&t->mu);
        if (epoch >= 0)
            return answer_created(c, t, rid, p->name, last, epoch, true, sver);
        return answer_created(c, t, rid, p->name, last, -1, true, sver);
    }

    char gen[64];
    const char *name = in->producer_name && *in->producer_name ? in->producer_name : NULL;
    if (!name) {
        tb_gen_name(tb, gen);
        name = gen;
    }
    if (name_busy(t, name, NULL)) {
        tb_topic_note_answer_locked(t, UP_SERR(ProducerBusy));
        pthread_mutex_unlock(&t->mu);
        return put_rc(tb_put_error(&c->out, rid, UP_SERR(ProducerBusy),
                                   "Producer with this name is already connected"));
    }
    p = calloc(1, sizeof *p);
    tb_dedup_t *d = tb_dedup_get(t, name);
    if (p)
        p->id = in->producer_id;
    if (!p || !d || !(p->name = strdup(name)) || conn_prod_add(c, p)) {
        pthread_mutex_unlock(&t->mu);
        if (p)
            free(p->name);
        free(p);
        return CLOSE;
    }
    p->topic = t;
    p->conn = c;
    p->dedup = d;
    p->schema_ver = sver;
    if (acc == ACC_WAIT) {
        queue_waiter_locked(t, p, rid, in);
        int64_t last = tb_topic_dedup_locked(tb, t) ? d->last_seq : -1;
        tb_topic_note_answer_locked(t, UPULSAR_TB_PRODUCER_QUEUED);
        pthread_mutex_unlock(&t->mu);
        return answer_created(c, t, rid, p->name, last, -1, false, sver);
    }
    if (ptr_push((void ***)&t->prods, &t->nprods, &t->prods_cap, p)) {
        conn_prod_remove(c, p);
        pthread_mutex_unlock(&t->mu);
        producer_free(p);
        return CLOSE;
    }
    p->active = true;
    int64_t last = tb_topic_dedup_locked(tb, t) ? d->last_seq : -1;
    int64_t epoch = access_granted(t, in, p);
    tb_topic_note_answer_locked(t, UPULSAR_TB_PRODUCER_CREATED);
    pthread_mutex_unlock(&t->mu);
    if (epoch >= 0)
        return answer_created(c, t, rid, p->name, last, epoch, true, sver);
    return answer_created(c, t, rid, p->name, last, -1, true, sver);
}

static int on_close_producer(tb_conn_t *c, const Pulsar__Proto__CommandCloseProducer *in)
{
    tb_delayed_prod_t *d = find_delayed(c, in->producer_id);
    if (d) {
        /* as Pulsar: closed before its creation completed; the creation is
         * dropped and its PRODUCER never answered */
        note_request(c, d->topic, UP_CMD(CLOSE_PRODUCER), in->producer_id, in->request_id);
        free(d->packed);
        size_t i = (size_t)(d - c->dp);
        memmove(d, d + 1, (c->ndp - i - 1) * sizeof *d);
        c->ndp--;
        return put_rc(tb_put_success(&c->out, in->request_id));
    }
    tb_producer_t *p = find_producer(c, in->producer_id);
    if (p) {
        pthread_mutex_lock(&p->topic->mu);
        tb_topic_note_request_locked(p->topic, UP_CMD(CLOSE_PRODUCER), c->serial,
                                     in->producer_id, in->request_id, NULL);
        topic_remove_producer(p->topic, p);
        pthread_mutex_unlock(&p->topic->mu);
        conn_prod_remove(c, p);
        producer_free(p);
    }
    return put_rc(tb_put_success(&c->out, in->request_id));
}

/* Wake the consumers of @p t that can take more (caller holds t->mu). */
static void wake_consumers(tb_topic_t *t)
{
    for (size_t i = 0; i < t->ncons; i++)
        if (t->cons[i]->permits > 0)
            tb_conn_wake(t->cons[i]->conn);
}

static int on_send_store(tb_conn_t *c, tb_producer_t *p, tb_resp_t *rp, const uint8_t *mdb,
                         size_t md_len, const uint8_t *payload, size_t payload_len,
                         uint64_t nmsg, uint64_t dedup_high, int chunk_role);

static int on_send(tb_conn_t *c, const up_frame_t *f, bool bad_crc)
{
    upulsar_tb_t *tb = c->tb;
    const Pulsar__Proto__CommandSend *in = f->cmd->send;
    tb_producer_t *p = find_producer(c, in->producer_id);
    if (!p) {
        atomic_fetch_add(&tb->protocol_errors, 1);
        return CLOSE; /* as Pulsar: SEND for a producer never created */
    }
    tb_topic_t *t = p->topic;
    tb_resp_t r;
    memset(&r, 0, sizeof r);
    r.topic = t;
    r.producer_id = in->producer_id;
    r.sequence_id = in->sequence_id;
    r.error = -1;
    uint64_t nmsg = in->has_num_messages && in->num_messages > 0 ? (uint64_t)in->num_messages : 1;
    bool sent_highest = in->has_highest_sequence_id && in->highest_sequence_id >= in->sequence_id;
    /* the receipt echoes the SEND's highest id, or repeats sequence_id */
    r.has_highest = true;
    r.highest_seq = sent_highest ? in->highest_sequence_id : in->sequence_id;
    /* dedup keys on the SEND's highest id, which is sequence_id when the
     * client did not send one (as a Pulsar broker: clients such as
     * pulsar-flex number batches, not messages, so nothing is inferred
     * from num_messages) */
    uint64_t dedup_high = r.highest_seq;

    /* size: Pulsar's frame decoder already closed the connection for a
     * frame over max_message_size + 10 KiB; what remains is the topic's
     * maxMessageSize policy, which chunks skip and which applies only
     * below the broker's limit */
    bool chunk = in->has_is_chunk && in->is_chunk;
    pthread_mutex_lock(&t->mu);
    int pol = t->max_msg_policy;
    pthread_mutex_unlock(&t->mu);
    /* measured as Pulsar measures headersAndPayload: the magic and
     * checksum (when sent) and the metadata's size word count too */
    size_t measured = (f->has_crc ? 6u : 0u) + 4u + f->metadata_len + f->payload_len;
    bool too_big = !chunk && pol > 0 && pol < tb->opts.max_message_size && measured > (size_t)pol;
    if (bad_crc || too_big) {
        pthread_mutex_lock(&t->mu);
        bool ignore = !p->active;
        if (!ignore) {
            if (bad_crc)
                t->st.checksum_errors++;
            else
                t->st.send_errors++;
        }
        pthread_mutex_unlock(&t->mu);
        if (ignore)
            return KEEP;
        r.error = bad_crc ? UP_SERR(ChecksumError) : UP_SERR(NotAllowedError);
        return put_rc(respond_send(c, &r));
    }

    /* a chunk is stored as an entry of its own, as Pulsar does (the
     * consumer side reassembles); de-duplication looks only at the last
     * chunk of a message, the others are always stored */
    int chunk_role = chunk ? tb_chunk_role(f->metadata, f->metadata_len) : TB_CHUNK_NONE;
    return on_send_store(c, p, &r, f->metadata, f->metadata_len, f->payload, f->payload_len, nmsg,
                         dedup_high, chunk_role);
}

/* Store one entry (or answer as a duplicate, an injected failure...). */
static int on_send_store(tb_conn_t *c, tb_producer_t *p, tb_resp_t *rp, const uint8_t *mdb,
                         size_t md_len, const uint8_t *payload, size_t payload_len,
                         uint64_t nmsg, uint64_t dedup_high, int chunk_role)
{
    upulsar_tb_t *tb = c->tb;
    tb_topic_t *t = p->topic;
    tb_resp_t r = *rp;
    uint32_t count = (uint32_t)nmsg;
    bool decode_err = false;
    if (!tb->opts.perf) {
        uint32_t n;
        int rc = tb_decode_entry(mdb, md_len, payload, payload_len, NULL, NULL, &n);
        if (rc == UPULSAR_ERR__NOMEM)
            return CLOSE;
        if (rc)
            decode_err = true;
        else {
            decode_err = n != nmsg;
            count = n;
        }
    }
    if (chunk_role == TB_CHUNK_FIRST || chunk_role == TB_CHUNK_MIDDLE)
        count = 0; /* the message counts once, with its last chunk */

    if (atomic_load(&tb->fail_sends_any) > 0) {
        pthread_mutex_lock(&t->mu);
        bool active = p->active, fenced = p->fenced;
        pthread_mutex_unlock(&t->mu);
        if (!active)
            return fenced ? CLOSE : KEEP; /* fenced: see fence_locked() */
        bool fence = false;
        int e = tb_take_fail_send(tb, &fence);
        if (e >= 0) {
            pthread_mutex_lock(&t->mu);
            t->st.send_errors++;
            if (fence) {
                tb_topic_close_producers_locked(tb, t, NULL, NULL, false);
                t->fence_answers++;
                r.fence = true;
            }
            pthread_mutex_unlock(&t->mu);
            r.error = e;
            return put_rc(respond_send(c, &r));
        }
    }

    pthread_mutex_lock(&t->mu);
    if (p->waiting) {
        /* queued for the topic (WaitForExclusive, answered producer_ready
         * false): as Pulsar's ServerCnx.handleSend, whose producer future
         * is not done yet, this closes the connection */
        pthread_mutex_unlock(&t->mu);
        return CLOSE;
    }
    if (!p->active) {
        /* closed by the broker: ignored until re-created, as Pulsar ignores
         * the SENDs of a producer it sent CLOSE_PRODUCER; fenced (no
         * CLOSE_PRODUCER, gone from the connection): the connection closes */
        bool fenced = p->fenced;
        pthread_mutex_unlock(&t->mu);
        return fenced ? CLOSE : KEEP;
    }
    if (t->fail_sends_n > 0) {
        t->fail_sends_n--;
        t->st.send_errors++;
        r.error = t->fail_sends_err;
        if (t->fail_sends_fence) {
            tb_topic_close_producers_locked(tb, t, NULL, NULL, false);
            t->fence_answers++;
            r.fence = true;
        }
        pthread_mutex_unlock(&t->mu);
        return put_rc(respond_send(c, &r));
    }
    tb_dedup_t *d = p->dedup;
    bool dedup = tb_topic_dedup_locked(tb, t);
    if (chunk_role == TB_CHUNK_FIRST || chunk_role == TB_CHUNK_MIDDLE)
        dedup = false; /* and the name's last id stays: only a whole message counts */
    /* as Pulsar's MessageDeduplication.isDuplicateNormal: the entry is a
     * duplicate when its first (lowest) id is not past the highest stored,
     * even if its highest id is: an entry that straddles the last stored
     * id is dropped whole and answered as a duplicate */
    if (dedup && d->last_seq >= 0 && (int64_t)r.sequence_id <= d->last_seq) {
        t->st.duplicates++;
        pthread_mutex_unlock(&t->mu);
        r.ledger = r.entry = TB_ID_NONE;
        return put_rc(respond_send(c, &r));
    }
    size_t bytes = md_len + payload_len;
    bool retain = true;
    if (tb->opts.max_retained_bytes) {
        uint64_t now = atomic_fetch_add(&tb->retained_bytes, bytes);
        if (now + bytes > tb->opts.max_retained_bytes) {
            atomic_fetch_sub(&tb->retained_bytes, bytes);
            retain = false;
        }
    }
    tb_entry_t *e = tb_topic_append(t, mdb, md_len, payload, payload_len, retain);
    if (!e) {
        pthread_mutex_unlock(&t->mu);
        return CLOSE;
    }
    e->sequence_id = r.sequence_id;
    e->highest_seq = dedup_high;
    e->num_msgs = count;
    if ((chunk_role == TB_CHUNK_NONE || chunk_role == TB_CHUNK_LAST) &&
        (int64_t)dedup_high > d->last_seq)
        d->last_seq = (int64_t)dedup_high;
    t->st.entries++;
    t->st.messages += count;
    t->st.bytes += bytes;
    if (decode_err)
        t->st.decode_errors++;
    pthread_cond_broadcast(&t->grew);
    if (t->ncons)
        wake_consumers(t);
    r.ledger = t->ledger_id;
    r.entry = e->entry_id;
    pthread_mutex_unlock(&t->mu);
    atomic_fetch_add(&tb->entries, 1);
    atomic_fetch_add(&tb->messages, count);
    return put_rc(respond_send(c, &r));
}

/* ---- consumer side ----------------------------------------------------- */

static tb_sub_t *sub_find(tb_topic_t *t, const char *name)
{
    for (tb_sub_t *s = t->subs; s; s = s->next)
        if (!strcmp(s->name, name))
            return s;
    return NULL;
}

static int on_subscribe(tb_conn_t *c, const Pulsar__Proto__CommandSubscribe *in)
{
    upulsar_tb_t *tb = c->tb;
    uint64_t rid = in->request_id;
    int rc;
    if (lookup_only_refused(c))
        return CLOSE;
    char *norm = served_topic(c, in->topic, rid, &rc);
    if (!norm)
        return rc;
    tb_topic_t *t = tb_topic_get(tb, norm, true);
    free(norm);
    if (!t)
        return CLOSE;
    const char *subname = in->subscription ? in->subscription : "";
    tb_consumer_t *k = find_consumer(c, in->consumer_id);
    if (k) {
        bool same = k->topic == t && !strcmp(k->sub->name, subname);
        return put_rc(same ? tb_put_success(&c->out, rid)
                           : tb_put_error(&c->out, rid, UP_SERR(ConsumerBusy),
                                          "Consumer id already used on this connection"));
    }
    pthread_mutex_lock(&t->mu);
    tb_sub_t *s = sub_find(t, subname);
    bool created = false;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || !(s->name = strdup(subname))) {
            free(s);
            pthread_mutex_unlock(&t->mu);
            return CLOSE;
        }
        s->type = (int)in->subtype;
        s->durable = !in->has_durable || in->durable;
        const Pulsar__Proto__MessageIdData *sm = in->start_message_id;
        uint64_t pos;
        if (sm && sm->ledgerid == TB_ID_NONE)
            pos = 0; /* MessageId.earliest */
        else if (sm && sm->ledgerid == t->ledger_id)
            pos = sm->entryid < t->n_entries ? sm->entryid : t->n_entries;
        else if (sm && sm->ledgerid < t->ledger_id)
            pos = 0;
        else if (sm)
            pos = t->n_entries; /* MessageId.latest or beyond */
        else if (in->has_initialposition &&
                 in->initialposition == PULSAR__PROTO__COMMAND_SUBSCRIBE__INITIAL_POSITION__Earliest)
            pos = 0;
        else
            pos = t->n_entries;
        s->read_pos = s->low = pos;
        s->next = t->subs;
        t->subs = s;
        created = true;
    } else if (s->consumers > 0 &&
               (s->type == PULSAR__PROTO__COMMAND_SUBSCRIBE__SUB_TYPE__Exclusive ||
                (int)in->subtype != s->type)) {
        pthread_mutex_unlock(&t->mu);
        return put_rc(tb_put_error(&c->out, rid, UP_SERR(ConsumerBusy),
                                   "Exclusive consumer is already connected"));
    }
    if (s->consumers == 0)
        s->type = (int)in->subtype;
    k = calloc(1, sizeof *k);
    if (!k || ptr_push((void ***)&t->cons, &t->ncons, &t->cons_cap, k)) {
        free(k);
        if (created)
            sub_unlink(t, s);
        pthread_mutex_unlock(&t->mu);
        return CLOSE;
    }
    if (ptr_push((void ***)&c->cons, &c->ncons, &c->cons_cap, k)) {
        t->ncons--;
        free(k);
        if (created)
            sub_unlink(t, s);
        pthread_mutex_unlock(&t->mu);
        return CLOSE;
    }
    k->id = in->consumer_id;
    k->topic = t;
    k->sub = s;
    k->conn = c;
    s->consumers++;
    t->st.consumers = (int)t->ncons;
    pthread_mutex_unlock(&t->mu);
    return put_rc(tb_put_success(&c->out, rid));
}

static int on_flow(tb_conn_t *c, const Pulsar__Proto__CommandFlow *in)
{
    tb_consumer_t *k = find_consumer(c, in->consumer_id);
    if (!k)
        return KEEP;
    pthread_mutex_lock(&k->topic->mu);
    k->permits += in->messagepermits;
    pthread_mutex_unlock(&k->topic->mu);
    return KEEP;
}

static bool any_bit_set(const int64_t *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (set[i])
            return true;
    return false;
}

static int on_ack(tb_conn_t *c, const Pulsar__Proto__CommandAck *in)
{
    tb_consumer_t *k = find_consumer(c, in->consumer_id);
    if (k) {
        tb_topic_t *t = k->topic;
        int rc = 0;
        pthread_mutex_lock(&t->mu);
        for (size_t i = 0; i < in->n_message_id && !rc; i++) {
            const Pulsar__Proto__MessageIdData *m = in->message_id[i];
            if (m->ledgerid != t->ledger_id || m->entryid >= t->n_entries)
                continue;
            if (in->ack_type == PULSAR__PROTO__COMMAND_ACK__ACK_TYPE__Cumulative)
                tb_sub_ack_upto(k->sub, m->entryid);
            else if (!any_bit_set(m->ack_set, m->n_ack_set)) /* whole entry */
                rc = tb_sub_ack(k->sub, m->entryid);
        }
        pthread_mutex_unlock(&t->mu);
        if (rc)
            return CLOSE;
    }
    if (!in->has_request_id)
        return KEEP;
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandAckResponse ar = PULSAR__PROTO__COMMAND_ACK_RESPONSE__INIT;
    cmd.type = UP_CMD(ACK_RESPONSE);
    cmd.ackresponse = &ar;
    ar.consumer_id = in->consumer_id;
    ar.has_request_id = 1;
    ar.request_id = in->request_id;
    if (!k) {
        ar.has_error = 1;
        ar.error = UP_SERR(ConsumerNotFound);
        ar.message = "Consumer not found";
    }
    return put_rc(up_frame_put_cmd(&c->out, &cmd));
}

static int on_close_consumer(tb_conn_t *c, uint64_t consumer_id, uint64_t rid)
{
    tb_consumer_t *k = find_consumer(c, consumer_id);
    if (k) {
        pthread_mutex_lock(&k->topic->mu);
        consumer_detach_locked(k);
        pthread_mutex_unlock(&k->topic->mu);
        ptr_remove((void **)c->cons, &c->ncons, k);
        free(k);
    }
    return put_rc(tb_put_success(&c->out, rid));
}

static int on_unsubscribe(tb_conn_t *c, const Pulsar__Proto__CommandUnsubscribe *in)
{
    tb_consumer_t *k = find_consumer(c, in->consumer_id);
    if (!k)
        return put_rc(tb_put_error(&c->out, in->request_id, UP_SERR(ConsumerNotFound),
                                   "Consumer not found"));
    tb_topic_t *t = k->topic;
    pthread_mutex_lock(&t->mu);
    tb_sub_t *s = k->sub;
    if (s->consumers > 1) {
        pthread_mutex_unlock(&t->mu);
        return put_rc(tb_put_error(&c->out, in->request_id, UP_SERR(ConsumerBusy),
                                   "Subscription has other active consumers"));
    }
    s->durable = false; /* detaching the last consumer drops it */
    consumer_detach_locked(k);
    pthread_mutex_unlock(&t->mu);
    ptr_remove((void **)c->cons, &c->ncons, k);
    free(k);
    return put_rc(tb_put_success(&c->out, in->request_id));
}

static int on_redeliver(tb_conn_t *c,
                        const Pulsar__Proto__CommandRedeliverUnacknowledgedMessages *in)
{
    tb_consumer_t *k = find_consumer(c, in->consumer_id);
    if (!k)
        return KEEP;
    pthread_mutex_lock(&k->topic->mu);
    if (k->sub->consumers == 1)
        k->sub->read_pos = k->sub->low;
    pthread_mutex_unlock(&k->topic->mu);
    return KEEP;
}

/* Send stored entries to this connection's consumers while they have
 * permits. Entry bytes are immutable: frames are built outside the lock. */
static int dispatch(tb_conn_t *c)
{
    enum { BATCH = 32 };
    for (size_t i = 0; i < c->ncons; i++) {
        tb_consumer_t *k = c->cons[i];
        tb_topic_t *t = k->topic;
        for (;;) {
            if (out_pending(c) > OUT_DISPATCH)
                return 0;
            const tb_entry_t *ents[BATCH];
            int n = 0;
            pthread_mutex_lock(&t->mu);
            tb_sub_t *s = k->sub;
            while (n < BATCH && k->permits > 0 && s->read_pos < t->n_entries) {
                const tb_entry_t *e = tb_topic_entry(t, s->read_pos++);
                if (!e->data || tb_sub_is_acked(s, e->entry_id))
                    continue;
                ents[n++] = e;
                k->permits -= e->num_msgs ? e->num_msgs : 1;
            }
            uint64_t ledger = t->ledger_id;
            pthread_mutex_unlock(&t->mu);
            if (n == 0)
                break;
            for (int j = 0; j < n; j++) {
                up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
                Pulsar__Proto__CommandMessage m = PULSAR__PROTO__COMMAND_MESSAGE__INIT;
                Pulsar__Proto__MessageIdData id = PULSAR__PROTO__MESSAGE_ID_DATA__INIT;
                cmd.type = UP_CMD(MESSAGE);
                cmd.message = &m;
                m.consumer_id = k->id;
                m.message_id = &id;
                id.ledgerid = ledger;
                id.entryid = ents[j]->entry_id;
                struct iovec iov = {(void *)(ents[j]->data + ents[j]->md_len),
                                    ents[j]->payload_len};
                if (up_frame_put_payload_raw(&c->out, &cmd, ents[j]->data, ents[j]->md_len,
                                             &iov, 1, true))
                    return -1;
            }
        }
    }
    return 0;
}

/* ---- commands the proto subset does not model -------------------------- */

/* Commands whose sub-message our generated code does not know arrive as an
 * unknown field of BaseCommand. Answer the ones that carry a request id
 * with ERROR so the client's request fails instead of hanging. Returns the
 * request id field number for @p type, 0 if it has none we know. */
static unsigned request_id_field(int type)
{
    switch (type) {
    case 25: /* CONSUMER_STATS: request_id = 1 */
    case 32: /* GET_TOPICS_OF_NAMESPACE */
    case 34: /* GET_SCHEMA */
    case 39: /* GET_OR_CREATE_SCHEMA */
    case 50: /* NEW_TXN */
    case 52: /* ADD_PARTITION_TO_TXN */
    case 54: /* ADD_SUBSCRIPTION_TO_TXN */
    case 56: /* END_TXN */
    case 58: /* END_TXN_ON_PARTITION */
    case 60: /* END_TXN_ON_SUBSCRIPTION */
    case 62: /* TC_CLIENT_CONNECT_REQUEST */
    case 64: /* WATCH_TOPIC_LIST */
        return 1;
    case 28: /* SEEK: consumer_id = 1, request_id = 2 */
    case 29: /* GET_LAST_MESSAGE_ID */
        return 2;
    default:
        return 0;
    }
}

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* Find varint field @p want in the protobuf message [p, end). */
static bool find_varint_field(const uint8_t *p, const uint8_t *end, unsigned want,
                              uint64_t *out)
{
    while (p < end) {
        uint64_t key, v;
        if (!read_varint(&p, end, &key))
            return false;
        unsigned wt = (unsigned)(key & 7);
        uint64_t fn = key >> 3;
        switch (wt) {
        case 0:
            if (!read_varint(&p, end, &v))
                return false;
            if (fn == want) {
                *out = v;
                return true;
            }
            break;
        case 1:
            if (end - p < 8)
                return false;
            p += 8;
            break;
        case 2:
            if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return false;
            p += v;
            break;
        case 5:
            if (end - p < 4)
                return false;
            p += 4;
            break;
        default:
            return false;
        }
    }
    return false;
}

static int on_unmodelled(tb_conn_t *c, const up_cmd_t *cmd)
{
    unsigned fn = request_id_field((int)cmd->type);
    if (!fn)
        return KEEP; /* nothing to answer (e.g. AUTH_RESPONSE, acks of txns) */
    for (size_t i = 0; i < cmd->base.n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *u = &cmd->base.unknown_fields[i];
        if (u->tag != (uint32_t)cmd->type || u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
            continue;
        /* protobuf-c keeps the length prefix in the unknown field's data */
        const uint8_t *p = u->data, *end = u->data + u->len;
        uint64_t blen, rid;
        if (!read_varint(&p, end, &blen) || blen > (uint64_t)(end - p))
            continue;
        if (find_varint_field(p, p + blen, fn, &rid))
            return put_rc(tb_put_error(&c->out, rid, UP_SERR(NotAllowedError),
                                       "Command not supported by the test broker"));
    }
    return KEEP;
}

/* ---- frame dispatch ---------------------------------------------------- */

static int handle(tb_conn_t *c, const up_frame_t *f, bool bad_crc)
{
    upulsar_tb_t *tb = c->tb;
    const up_cmd_t *cmd = f->cmd;
    atomic_store_explicit(&c->phase_cmd, (int)cmd->type, memory_order_relaxed);
    if (bad_crc && cmd->type != UP_CMD(SEND))
        return CLOSE;
    if (!c->handshaken) {
        if (cmd->type == UP_CMD(CONNECT) && !c->auth_in_handshake)
            return on_connect(c, cmd->connect);
        if (cmd->type == UP_CMD(AUTH_RESPONSE) && c->auth_in_handshake)
            return on_auth_response(c, cmd->authresponse);
        return CLOSE;
    }
    switch (cmd->type) {
    case UP_CMD(CONNECT):
        return CLOSE; /* a second handshake */
    case UP_CMD(PING):
        if (atomic_load(&tb->ignore_pings))
            return KEEP;
        return put_rc(tb_put_simple(&c->out, UP_CMD(PONG)));
    case UP_CMD(PONG):
        atomic_fetch_add(&tb->pongs_received, 1);
        return KEEP;
    case UP_CMD(PARTITIONED_METADATA):
        return on_partitioned_metadata(c, cmd->partitionmetadata);
    case UP_CMD(LOOKUP):
        return on_lookup(c, cmd->lookuptopic);
    case UP_CMD(PRODUCER):
        return on_producer(c, cmd->producer);
    case UP_CMD(SEND):
        return on_send(c, f, bad_crc);
    case UP_CMD(CLOSE_PRODUCER):
        return on_close_producer(c, cmd->close_producer);
    case UP_CMD(SUBSCRIBE):
        return on_subscribe(c, cmd->subscribe);
    case UP_CMD(FLOW):
        return on_flow(c, cmd->flow);
    case UP_CMD(ACK):
        return on_ack(c, cmd->ack);
    case UP_CMD(CLOSE_CONSUMER):
        return on_close_consumer(c, cmd->close_consumer->consumer_id,
                                 cmd->close_consumer->request_id);
    case UP_CMD(UNSUBSCRIBE):
        return on_unsubscribe(c, cmd->unsubscribe);
    case UP_CMD(REDELIVER_UNACKNOWLEDGED_MESSAGES):
        return on_redeliver(c, cmd->redeliverunacknowledgedmessages);
    case UP_CMD(AUTH_RESPONSE):
        return on_auth_response(c, cmd->authresponse);
    case UP_CMD(CONNECTED):
    case UP_CMD(SEND_RECEIPT):
    case UP_CMD(SEND_ERROR):
    case UP_CMD(MESSAGE):
    case UP_CMD(SUCCESS):
    case UP_CMD(ERROR):
    case UP_CMD(PRODUCER_SUCCESS):
    case UP_CMD(PARTITIONED_METADATA_RESPONSE):
    case UP_CMD(LOOKUP_RESPONSE):
    case UP_CMD(REACHED_END_OF_TOPIC):
    case UP_CMD(AUTH_CHALLENGE):
    case UP_CMD(ACK_RESPONSE):
    case UP_CMD(TOPIC_MIGRATED):
        return CLOSE; /* broker-to-client commands */
    default:
        return on_unmodelled(c, cmd);
    }
}

static int process_frames(tb_conn_t *c)
{
    for (;;) {
        if (c->relay_fd >= 0) {
            /* relayed: the rest is the broker's to read */
            size_t n = up_decoder_pending(&c->dec);
            if (n && up_buf_append(&c->relay_out, c->dec.buf.data + c->dec.off, n))
                return -1;
            c->dec.off = c->dec.buf.len;
            return 0;
        }
        up_frame_t f;
        int rc = up_decoder_next(&c->dec, &f);
        if (rc == 0)
            return 0;
        if (rc < 0 && rc != UPULSAR_ERR__BAD_CHECKSUM) {
            atomic_fetch_add(&c->tb->protocol_errors, 1);
            return -1;
        }
        if (handle(c, &f, rc == UPULSAR_ERR__BAD_CHECKSUM) == CLOSE)
            return -1;
    }
}

/* ---- I/O --------------------------------------------------------------- */

/* Move what the TLS session wrote (handshake, records, alerts) to tx. */
static int tls_drain(tb_conn_t *c)
{
    BIO *wb = SSL_get_wbio(c->ssl);
    size_t pending;
    while ((pending = BIO_ctrl_pending(wb)) > 0) {
        if (up_buf_reserve(&c->tx, pending))
            return -1;
        int n = BIO_read(wb, c->tx.data + c->tx.len, (int)(pending > INT32_MAX ? INT32_MAX : pending));
        if (n <= 0)
            break;
        c->tx.len += (size_t)n;
    }
    return 0;
}

/* Decrypt what the session holds into the decoder and process the frames.
 * The first bytes also drive the handshake. -1: close. */
static int tls_pump(tb_conn_t *c)
{
    ERR_clear_error();
    for (;;) {
        size_t avail;
        uint8_t *w = up_decoder_wbuf(&c->dec, TLS_RX, &avail);
        if (!w)
            return -1;
        int n = SSL_read(c->ssl, w, (int)(avail > INT32_MAX ? INT32_MAX : avail));
        if (n > 0) {
            c->tls_done = true;
            up_decoder_commit(&c->dec, (size_t)n);
            if (process_frames(c))
                return -1;
            continue;
        }
        int se = SSL_get_error(c->ssl, n);
        if (se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE)
            break;
        /* a bad record or handshake (e.g. a plaintext client), or the end */
        tls_drain(c); /* the alert, if OpenSSL made one */
        return -1;
    }
    if (!c->tls_done && SSL_is_init_finished(c->ssl))
        c->tls_done = true;
    return tls_drain(c);
}

/* Read what is available (in big chunks) and process it. -1: close. */
static int conn_read(tb_conn_t *c)
{
    size_t want = c->tb->opts.perf ? 2u * 1024 * 1024 : 256u * 1024;
    for (int round = 0; round < 8; round++) {
        size_t avail;
        uint8_t *w;
        if (c->ssl) {
            w = c->rx;
            avail = TLS_RX;
        } else if (!(w = up_decoder_wbuf(&c->dec, want, &avail))) {
            return -1;
        }
        ssize_t n = recv(c->fd, w, avail, 0);
        if (n == 0)
            return -1;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        c->ping_outstanding = false;
        if (c->ssl) {
            bool was_done = c->tls_done;
            if (BIO_write(SSL_get_rbio(c->ssl), w, (int)n) != (int)n || tls_pump(c))
                return -1;
            if (!was_done && c->tls_done)
                atomic_fetch_add(&c->tb->tls_handshakes, 1);
        } else {
            up_decoder_commit(&c->dec, (size_t)n);
            if (process_frames(c))
                return -1;
        }
        if ((size_t)n < avail || out_pending(c) > OUT_HIGH || atomic_load(&c->tb->frozen))
            return 0;
    }
    return 0;
}

/* Send from @p b starting at *@p off on socket @p fd; 0, or -1 on a dead
 * socket. */
static int send_some(int fd, up_buf_t *b, size_t *off)
{
    while (*off < b->len) {
        ssize_t n = send(fd, b->data + *off, b->len - *off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            *off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return -1;
    }
    return 0;
}

/* Keep a buffer's sent prefix from growing without bound. */
static void compact(up_buf_t *b, size_t *off)
{
    if (*off == b->len) {
        b->len = *off = 0;
        if (b->cap > 8u * 1024 * 1024) /* do not keep a burst's buffer */
            up_buf_free(b);
    } else if (*off > (1u << 20)) {
        up_buf_consume(b, *off);
        *off = 0;
    }
}

static int conn_flush(tb_conn_t *c)
{
    if (!c->ssl) {
        if (send_some(c->fd, &c->out, &c->out_off))
            return -1;
        compact(&c->out, &c->out_off);
        return 0;
    }
    if (c->tls_done) {
        ERR_clear_error();
        while (c->out_off < c->out.len && c->tx.len - c->tx_off < TLS_TX_HIGH) {
            size_t chunk = c->out.len - c->out_off;
            if (chunk > 256u * 1024)
                chunk = 256u * 1024;
            int n = SSL_write(c->ssl, c->out.data + c->out_off, (int)chunk);
            if (n <= 0 || tls_drain(c))
                return -1;
            c->out_off += (size_t)n;
        }
        compact(&c->out, &c->out_off);
    }
    if (send_some(c->fd, &c->tx, &c->tx_off))
        return -1;
    compact(&c->tx, &c->tx_off);
    return 0;
}

/* Relayed connection: what the broker sent, on to the client. -1: the
 * broker closed (so does the proxy) or out of memory. */
static int relay_read(tb_conn_t *c)
{
    for (int round = 0; round < 8 && out_pending(c) < OUT_HIGH; round++) {
        if (up_buf_reserve(&c->out, 64u * 1024))
            return -1;
        ssize_t n = recv(c->relay_fd, c->out.data + c->out.len, 64u * 1024, 0);
        if (n == 0)
            return -1;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        c->out.len += (size_t)n;
    }
    return 0;
}

/* Relayed connection: what the client sent, on to the broker. */
static int relay_flush(tb_conn_t *c)
{
    if (send_some(c->relay_fd, &c->relay_out, &c->relay_off))
        return -1;
    compact(&c->relay_out, &c->relay_off);
    return 0;
}

static int take_injected(tb_conn_t *c)
{
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    if (c->inject.len) {
        rc = up_buf_append(&c->out, c->inject.data, c->inject.len);
        c->inject.len = 0;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* Process the delayed PRODUCER requests that are due, oldest first. */
static int run_delayed(tb_conn_t *c, int64_t now)
{
    while (c->ndp && c->dp[0].due_ms <= now) {
        tb_delayed_prod_t d = c->dp[0];
        memmove(c->dp, c->dp + 1, (c->ndp - 1) * sizeof *c->dp);
        c->ndp--;
        Pulsar__Proto__CommandProducer *in =
            pulsar__proto__command_producer__unpack(NULL, d.len, d.packed);
        free(d.packed);
        if (!in)
            return CLOSE;
        int rc = producer_run(c, in, true);
        pulsar__proto__command_producer__free_unpacked(in, NULL);
        if (rc)
            return rc;
    }
    return KEEP;
}

/* Keep-alive tick. -1: close the connection. */
static int tick(tb_conn_t *c, int64_t now)
{
    upulsar_tb_t *tb = c->tb;
    int iv = tb->opts.ping_interval_ms;
    if (iv <= 0 || now < c->next_tick_ms)
        return 0;
    c->next_tick_ms = now + iv;
    if (atomic_load(&tb->ignore_pings)) {
        c->ping_outstanding = false;
        return 0;
    }
    if (!c->handshaken || c->ping_outstanding)
        return -1;
    if (tb_put_simple(&c->out, UP_CMD(PING)))
        return -1;
    atomic_fetch_add(&tb->pings_sent, 1);
    c->ping_outstanding = true;
    return 0;
}

static void conn_cleanup(tb_conn_t *c)
{
    for (size_t i = 0; i < c->nprods; i++) {
        tb_producer_t *p = c->prods[i];
        if (!p)
            continue;
        pthread_mutex_lock(&p->topic->mu);
        topic_remove_producer(p->topic, p);
        pthread_mutex_unlock(&p->topic->mu);
        producer_free(p);
    }
    free(c->prods);
    c->prods = NULL;
    c->nprods = c->prods_holes = 0;
    free(c->pmap);
    c->pmap = NULL;
    c->pmap_cap = 0;
    for (size_t i = 0; i < c->ncons; i++) {
        tb_consumer_t *k = c->cons[i];
        pthread_mutex_lock(&k->topic->mu);
        consumer_detach_locked(k);
        pthread_mutex_unlock(&k->topic->mu);
        free(k);
    }
    free(c->cons);
    c->cons = NULL;
    c->ncons = 0;
    for (size_t i = 0; i < c->ndp; i++)
        free(c->dp[i].packed);
    free(c->dp);
    c->dp = NULL;
    c->ndp = 0;
    for (size_t i = 0; i < c->nhm; i++)
        free(c->hm_topic[i]);
    free(c->hm_topic);
    free(c->hm_rid);
    c->hm_topic = NULL;
    c->hm_rid = NULL;
    c->nhm = c->hm_cap = 0;
    /* the fences first: a caller that sees no answer queued may create a
     * producer at once */
    for (size_t i = 0; i < c->qlen; i++)
        fence_answer_done(&c->q[i]);
    if (c->qlen)
        atomic_fetch_sub(&c->tb->receipts_queued, c->qlen);
    free(c->q);
    c->q = NULL;
    c->qlen = 0;
    up_decoder_free(&c->dec);
    up_buf_free(&c->out);
    if (c->relay_fd >= 0)
        close(c->relay_fd);
    c->relay_fd = -1;
    up_buf_free(&c->relay_out);
    SSL_free(c->ssl); /* and its BIOs */
    c->ssl = NULL;
    free(c->rx);
    c->rx = NULL;
    up_buf_free(&c->tx);
}

/* A TLS session over memory BIOs for this connection. -1: out of memory. */
static int tls_setup(tb_conn_t *c)
{
    c->ssl = SSL_new(c->tb->ssl_ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    c->rx = malloc(TLS_RX);
    if (!c->ssl || !rb || !wb || !c->rx) {
        BIO_free(rb);
        BIO_free(wb);
        return -1;
    }
    BIO_set_mem_eof_return(rb, -1); /* empty = "retry", not EOF */
    SSL_set_bio(c->ssl, rb, wb);
    SSL_set_accept_state(c->ssl);
    return 0;
}

/* Authentication housekeeping of the connection thread: challenges asked
 * for by upulsar_tb_auth_challenge(), unanswered ones. -1: close. */
static int auth_tick(tb_conn_t *c, int64_t now)
{
    if (atomic_exchange(&c->challenge_req, false) && c->handshaken && !c->auth_pending &&
        send_challenge(c, false))
        return -1;
    if (c->auth_pending && now >= c->auth_deadline_ms) {
        atomic_fetch_add(&c->tb->auth_unanswered, 1);
        tb_put_error(&c->out, TB_ID_NONE, UP_SERR(AuthenticationError),
                     "No answer to the authentication challenge");
        return -1;
    }
    return 0;
}

void *tb_conn_main(void *arg)
{
    tb_conn_t *c = arg;
    upulsar_tb_t *tb = c->tb;
    int iv = tb->opts.ping_interval_ms;
    atomic_store_explicit(&c->tid, (int)syscall(SYS_gettid), memory_order_relaxed);
    c->next_tick_ms = tb_now_ms() + (iv > 0 ? iv : 0);
    if (tb->ssl_ctx && tls_setup(c))
        atomic_store(&c->kill, true);
    for (;;) {
        if (atomic_load(&c->kill))
            break;
        bool frozen = atomic_load(&tb->frozen);
        int64_t now = tb_now_ms();
        int64_t timeout = -1; /* no deadline: wait for the socket or a wake-up */
        if (!frozen) {
            /* the earliest deadline (absolute ms), -1 = none; a relayed
             * connection only forwards (no ticks of its own) */
            int64_t next = iv > 0 && c->relay_fd < 0 ? c->next_tick_ms : -1;
            int64_t due = queue_next_due(c);
            if (due >= 0 && (next < 0 || due < next))
                next = due;
            if (c->ndp && (next < 0 || c->dp[0].due_ms < next))
                next = c->dp[0].due_ms;
            if (c->auth_pending && (next < 0 || c->auth_deadline_ms < next))
                next = c->auth_deadline_ms;
            if (next >= 0) /* a deadline already past is a wait of 0, not none */
                timeout = next <= now ? 0 : next - now > 60000 ? 60000 : next - now;
        }
        struct pollfd pfd[3];
        pfd[0].fd = frozen ? -1 : c->fd;
        pfd[0].events = (short)((out_pending(c) < OUT_HIGH ? POLLIN : 0) |
                                (want_write(c) ? POLLOUT : 0));
        pfd[0].revents = 0;
        pfd[1].fd = c->efd;
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;
        pfd[2].fd = frozen ? -1 : c->relay_fd;
        pfd[2].events = (short)((out_pending(c) < OUT_HIGH ? POLLIN : 0) |
                                (c->relay_off < c->relay_out.len ? POLLOUT : 0));
        pfd[2].revents = 0;
        tb_conn_phase(c, TB_PH_POLL, now);
        int pr = poll(pfd, 3, (int)timeout);
        if (pr < 0 && errno != EINTR)
            break;
        if (pfd[1].revents & POLLIN) {
            uint64_t v;
            ssize_t rn = read(c->efd, &v, sizeof v);
            (void)rn;
            atomic_store(&c->wake_pending, 0);
        }
        if (atomic_load(&c->kill))
            break;
        if (atomic_load(&tb->frozen)) {
            c->frozen_seen = true;
            continue;
        }
        now = tb_now_ms();
        if (c->frozen_seen) { /* a hang is not the client's silence */
            c->frozen_seen = false;
            c->ping_outstanding = false;
            c->next_tick_ms = now + (iv > 0 ? iv : 0);
        }
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            tb_conn_phase(c, TB_PH_READ, now);
            int rc = conn_read(c);
            atomic_store_explicit(&c->phase_cmd, 0, memory_order_relaxed);
            if (rc)
                break;
        }
        if (c->relay_fd >= 0) {
            /* a relay only forwards: pings, receipts and the rest are the
             * broker's behind it */
            if (((pfd[2].revents & (POLLIN | POLLHUP | POLLERR)) && relay_read(c)) ||
                relay_flush(c) || conn_flush(c))
                break;
            continue;
        }
        tb_conn_phase(c, TB_PH_WORK, now);
        if (take_injected(c) || run_queue(c, now) || run_delayed(c, now) || run_held_metadata(c) ||
            tick(c, now) ||
            auth_tick(c, now) || dispatch(c) || conn_flush(c))
            break;
    }
    /* counted before the last flush, so a client that reads the broker's
     * alert or end finds it counted */
    if (c->ssl && !c->tls_done)
        atomic_fetch_add(&tb->tls_failures, 1);
    tb_conn_phase(c, TB_PH_END_FLUSH, tb_now_ms());
    conn_flush(c); /* best effort: answers to the last frames read */
    tb_conn_phase(c, TB_PH_CLEANUP, tb_now_ms());
    conn_cleanup(c);
    tb_conn_phase(c, TB_PH_RETIRE, tb_now_ms());
    tb_conn_retire(c);
    return NULL;
}
