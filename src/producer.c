/* producer.c -- one real Pulsar producer: creation and freeing; and on
 * its loop thread: the pending queue of entries, receipts, SEND_ERRORs,
 * attach / detach / suspend, failures and send timeouts. What upulsar_send()
 * does is in send.c, batching in batcher*.c, chunks in chunk.c
 * (producer_int.h). up_rp_new() and up_rp_free() run on the creating /
 * freeing thread, up_rp_close_cmd() on any, everything else on the loop. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batcher.h"
#include "crc32c.h"
#include "producer_int.h"

/* ---- creation ------------------------------------------------------------ */

up_rp_t *up_rp_new(struct upulsar_producer *h, int partition, int index, const char *topic,
                   const char *name, upulsar_err_t *err)
{
    /* aligned as its type says (the ring's lines, _Alignas(64) in
     * up_ring_t, and mem_held's): calloc() gives 16 bytes, and lines the
     * callers write per send would then share a line, or the line pair a
     * core fetches together, with lines the loop writes per record */
    size_t size = (sizeof(up_rp_t) + UP_RP_ALIGN - 1) & ~(size_t)(UP_RP_ALIGN - 1);
    up_rp_t *rp = aligned_alloc(UP_RP_ALIGN, size);
    if (rp)
        memset(rp, 0, size);
    if (!rp) {
        *err = up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
        return NULL;
    }
    rp->handle = h;
    rp->client = h->client;
    rp->partition = partition;
    rp->index = index;
    snprintf(rp->topic, sizeof rp->topic, "%s", topic);
    if (name) {
        rp->user_named = true;
        snprintf(rp->name, sizeof rp->name, "%s", name);
        atomic_init(&rp->name_ready, true);
    }
    rp->producer_id = atomic_fetch_add(&h->client->next_producer_id, 1);
    /* partitions go round the loops; on each loop, producers go round the
     * connections to a broker */
    int p = partition < 0 ? 0 : partition, nloops = h->client->nloops;
    rp->loop = &h->client->loops[p % nloops];
    rp->conn_slot = (p / nloops * h->conf.producers_per_partition + index) %
                    h->client->conf.connections_per_broker;
    /* lazy.start.partitions: a partition's producers wait for their first
     * message (a non-partitioned topic's producer starts at once) */
    up_rp_state_init(rp, h->conf.lazy_start_partitions && partition >= 0 ? UP_RP_LAZY
                                                                          : UP_RP_CONNECTING);
    atomic_init(&rp->last_acked_seq, -1);
    pthread_mutex_init(&rp->broker_lock, NULL);
    int64_t ring = h->conf.ring_bytes > 0 ? h->conf.ring_bytes : h->conf.queue_buffer_bytes;
    if (up_ring_init(&rp->ring, (size_t)ring)) {
        pthread_mutex_destroy(&rp->broker_lock);
        free(rp);
        *err = up_seterr(UPULSAR_ERR__NOMEM, "cannot allocate %lld ring bytes", (long long)ring);
        return NULL;
    }
    atomic_fetch_add_explicit(&rp->client->nrps, 1, memory_order_relaxed);
    up_rp_mem_init(rp);
    rp->wake_cells = up_ring_cells_for((size_t)h->conf.batch_max_bytes);
    rp->batcher = up_batcher_for(&h->conf);
    return rp;
}

int64_t up_rp_ring_bytes(struct upulsar_client *c, const struct upulsar_conf *cf, int64_t n)
{
    int64_t q = cf->queue_buffer_bytes, lim = c->conf.memory_limit_bytes;
    if (lim <= 0 || up_conf_was_set(cf, "queue.buffer.bytes"))
        return q;
    int64_t all = atomic_load_explicit(&c->nrps, memory_order_relaxed) + (n > 0 ? n : 1);
    int64_t share = lim / UP_RING_SHARE_DIV / all, r = UP_RING_MIN_BYTES;
    while (r * 2 <= share && r * 2 <= q)
        r *= 2;
    return r < q ? r : q;
}

void up_rp_named_by_broker(up_rp_t *rp, const char *name)
{
    if (!rp->user_named && name && !rp->name[0]) {
        snprintf(rp->name, sizeof rp->name, "%s", name);
        atomic_store_explicit(&rp->name_ready, true, memory_order_release);
    }
}

void up_rp_take_route(up_rp_t *rp, char *assigned, size_t assigned_size, char *cluster,
                      size_t cluster_size)
{
    pthread_mutex_lock(&rp->broker_lock);
    snprintf(assigned, assigned_size, "%s", rp->assigned);
    snprintf(cluster, cluster_size, "%s", rp->cluster);
    rp->assigned[0] = '\0'; /* one try: if it fails, look up */
    pthread_mutex_unlock(&rp->broker_lock);
}

bool up_rp_recreating(up_rp_t *rp, const char *why)
{
    if (!up_rp_transition(rp, UP_RP_IN_BACKOFF, UP_RP_CONNECTING, why))
        return false;
    atomic_fetch_add(&rp->reconnects, 1);
    return true;
}

void up_rp_request_flush(up_rp_t *rp)
{
    atomic_store(&rp->flush_req, 1);
    up_rp_activate(rp);
    up_loop_wake(rp->loop);
}

void up_rp_free(up_rp_t *rp)
{
    if (!rp)
        return;
    if (rp->open)
        up_batch_free_chain(rp->open);
    up_batch_free_chain(rp->pend_head);
    up_rp_mem_return_all(rp);
    up_ring_destroy(&rp->ring);
    atomic_fetch_sub_explicit(&rp->client->nrps, 1, memory_order_relaxed);
    pthread_mutex_destroy(&rp->broker_lock);
    free(rp->scratch);
    free(rp->kb.offs);
    free(rp);
}

/* ---- loop side: batching -------------------------------------------------- */

static void write_unsent(up_rp_t *rp)
{
    if (!rp->conn || up_rp_st(rp) != UP_RP_READY)
        return;
    for (up_batch_t *b = rp->unsent; b; b = b->next) {
        up_conn_write(rp->conn, b->frame, b->frame_len, NULL, b);
        /* out of memory for the queue: the connection failed and detached
         * the producer, which rewound what is to be written again */
        if (!rp->conn || up_rp_st(rp) != UP_RP_READY)
            return;
    }
    rp->unsent = NULL;
}

void up_rp_queue_entry(up_rp_t *rp, up_batch_t *b)
{
    if (rp->pend_tail)
        rp->pend_tail->next = b;
    else
        rp->pend_head = b;
    rp->pend_tail = b;
    rp->npend++;
    if (!rp->unsent)
        rp->unsent = b;
    atomic_fetch_add_explicit(&rp->sent_msgs, b->n, memory_order_relaxed);
    write_unsent(rp);
}

/* ---- failure details (upulsar_future_error_detail) ---- */

/* The detail of messages of @p rp failing now: "<partition topic> via
 * <broker>: <why>", the broker being the one of its connection, else the
 * one it was last created on (without " via" before it ever was). Returns
 * a reference the caller drops with up_detail_put() once its futures and
 * callbacks are done. (loop) */
up_detail_t *up_rp_detail(up_rp_t *rp, const char *fmt, ...)
{
    char why[UP_DETAIL_TEXT_MAX], broker[sizeof rp->broker];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (rp->conn && rp->conn->proxy_to[0]) {
        snprintf(broker, sizeof broker, "%s", rp->conn->proxy_to);
    } else if (rp->conn) {
        snprintf(broker, sizeof broker, "%s:%d", rp->conn->host, rp->conn->port);
    } else {
        pthread_mutex_lock(&rp->broker_lock);
        snprintf(broker, sizeof broker, "%s", rp->broker);
        pthread_mutex_unlock(&rp->broker_lock);
    }
    return up_detail_get(&rp->client->futures, "%s%s%s: %s", rp->topic, broker[0] ? " via " : "",
                         broker, why);
}

/* The producer's state, for a detail: "READY", or e.g. "BACKOFF, not
 * connected". */
static const char *rp_state_words(const up_rp_t *rp)
{
    if (!up_rp_created(rp))
        return "never created on a broker yet";
    switch (up_rp_public_state(rp)) {
    case UPULSAR_STATE_READY:
        return "producer READY on its connection";
    case UPULSAR_STATE_BACKOFF:
        return "producer disconnected, waiting to reconnect (BACKOFF)";
    case UPULSAR_STATE_CONNECTING:
        return "producer disconnected, reconnecting (CONNECTING)";
    case UPULSAR_STATE_FAILED:
        return "producer FAILED";
    default:
        return "producer CLOSED";
    }
}

/* Anything left to fail (pending or open batches, records in the ring). */
static bool holds_messages(up_rp_t *rp)
{
    return rp->pend_head || rp->open || up_ring_peek(&rp->ring);
}

/* Why messages fail with @p err when the site gives no more: the detail of
 * up_rp_fail_all(). */
static up_detail_t *rp_default_detail(up_rp_t *rp, upulsar_err_t err)
{
    if (err == UPULSAR_ERR__CLOSED)
        return up_rp_detail(rp, "producer stopped before the message was acknowledged (%s)",
                         rp_state_words(rp));
    return up_rp_detail(rp, "%s: %s", upulsar_err_name(err), upulsar_err_str(err));
}

/* up_rp_resolve_batch(), acknowledged at @p now_us (0: not acknowledged,
 * or no latency to record): each message that carries a send time goes
 * into the latency histogram as it resolves (in the same pass, before its
 * future or callback sees it) */
static void resolve_batch_at(up_rp_t *rp, up_batch_t *b, upulsar_err_t err, uint64_t ledger,
                             uint64_t entry, up_detail_t *det, uint64_t now_us)
{
    upulsar_msg_id_t id = {ledger, entry, rp->partition, 0, (int32_t)b->n, 0, ledger, entry};
    up_detail_t *own = NULL;
    if (b->chunk != UP_CHUNK_NONE) { /* a plain entry: no batch index */
        id.batch_index = -1;
        id.batch_size = 0;
        /* the chunks of a message resolve in a row; only the last carries
         * the message, which fails if any chunk before it failed (it can
         * never be read back) */
        if (b->chunk == UP_CHUNK_FIRST) {
            rp->chunk_err = err;
            rp->chunk_first_ledger = err ? UPULSAR_ID_UNKNOWN : ledger;
            rp->chunk_first_entry = err ? UPULSAR_ID_UNKNOWN : entry;
        } else if (b->chunk == UP_CHUNK_MIDDLE) {
            if (err && !rp->chunk_err)
                rp->chunk_err = err;
        } else if (b->chunk == UP_CHUNK_LAST) {
            if (!err && rp->chunk_err) {
                err = rp->chunk_err;
                det = own = up_rp_detail(rp, "an earlier chunk of the message failed (%s)",
                                         upulsar_err_name(err));
            } else if (!err && ledger != UPULSAR_ID_UNKNOWN) {
                id.first_chunk_ledger_id = rp->chunk_first_ledger;
                id.first_chunk_entry_id = rp->chunk_first_entry;
            }
            rp->chunk_err = UPULSAR_OK;
        }
    }
    /* room first: once a message resolved, its room is back; but its bytes
     * stay counted while a connection's queue still holds the batch (not
     * yet written: a broker that stopped reading), until the queue lets go
     * of it (up_batch_unref()), so new sends cannot pile up more behind it */
    b->mem_deferred = b->outq_refs > 0 ? b->mem_bytes : 0;
    up_rp_limits_release(rp, b->n, b->mem_bytes - b->mem_deferred);
    if (b->mem_deferred) {
        up_rp_mem_to_client(rp, b->mem_deferred);
        b->mem_client = rp->client;
    }
    uint64_t lat_now = err ? 0 : now_us;
    if (__builtin_expect(rp_conf(rp)->dr_cb != NULL, 0)) {
        for (uint32_t i = 0; lat_now && i < b->n; i++)
            if (b->done[i].sent_us)
                up_stats_latency(rp, b->done[i].sent_us, lat_now);
        up_dr_resolve_batch(rp, b, err, &id, det); /* the same, with a report each */
    } else {
        for (uint32_t i = 0; i < b->n; i++) {
            up_done_t *d = &b->done[i];
            if (b->chunk == UP_CHUNK_NONE)
                id.batch_index = (int32_t)i;
            if (__builtin_expect(d->sent_us != 0, 0) && lat_now)
                up_stats_latency(rp, d->sent_us, lat_now);
            resolve_one(d->f, d->cb, d->opaque, err, &id, det);
        }
    }
    if (err)
        up_stats_failed(rp, err, b->n);
    else
        atomic_fetch_add_explicit(&rp->acked_msgs, b->n, memory_order_relaxed);
    if (own)
        up_detail_put(&rp->client->futures, own);
    atomic_store_explicit(&rp->resolved_ring_pos, b->ring_end, memory_order_release);
}

/* @p det: the failure's detail (NULL on success) */
void up_rp_resolve_batch(up_rp_t *rp, up_batch_t *b, upulsar_err_t err, uint64_t ledger,
                         uint64_t entry, up_detail_t *det)
{
    resolve_batch_at(rp, b, err, ledger, entry, det, 0);
}

/* Drop the SEND_ERROR kept for @p b (see up_batch_t early_err). */
static void forget_early_error(up_batch_t *b)
{
    free(b->early_msg);
    b->early_msg = NULL;
    b->early_err = 0;
}

/* Pop the head of the pending queue, resolve it, recycle it. */
static void complete_head(up_rp_t *rp, upulsar_err_t err, uint64_t ledger, uint64_t entry,
                          up_detail_t *det)
{
    up_batch_t *b = rp->pend_head;
    rp->pend_head = b->next;
    if (!rp->pend_head)
        rp->pend_tail = NULL;
    forget_early_error(b);
    if (rp->unsent == b)
        rp->unsent = b->next;
    rp->npend--;
    /* batch.mode=adaptive: records held while batches were in flight go now
     * (the loop looks at producers that are not holding, uring_loop.c) */
    if ((rp->npend == 0 && rp_conf(rp)->batch_mode == UP_BATCH_ADAPTIVE) ||
        rp->npend + 1 == (size_t)rp_conf(rp)->max_inflight_batches)
        rp->holding = false; /* or: room again after max.inflight.batches */
    uint64_t now = 0;
    if (!err) {
        atomic_store_explicit(&rp->last_acked_seq, (int64_t)b->last_seq, memory_order_relaxed);
        now = up_now_us();
        up_stats_batch_acked(rp, b->n, now - b->created_us);
        up_stats_batch_bytes(rp, b);
        if (ledger == UPULSAR_ID_UNKNOWN || entry == UPULSAR_ID_UNKNOWN) {
            /* a resend the broker had stored already (receipt lost) */
            ledger = entry = UPULSAR_ID_UNKNOWN;
            atomic_fetch_add_explicit(&rp->unknown_ids, b->n, memory_order_relaxed);
        }
    }
    resolve_batch_at(rp, b, err, ledger, entry, det, now);
    /* failed while its connection's queue still holds it: taken out
     * before the connection's next write or at the end of the loop's tick
     * (up_conn_purge_resolved()), so that a broker which resumes reading
     * does not store what was reported failed */
    if (err && b->outq_refs > 0 && rp->conn)
        rp->conn->purge_resolved = true;
    up_batch_retire(rp, b);
}

/* ---- loop side: receipts and errors -------------------------------------- */

static void settle_early_errors(up_rp_t *rp);

void up_rp_on_receipt(up_rp_t *rp, const Pulsar__Proto__CommandSendReceipt *r)
{
    /* The head may be waiting for its resend (not READY, or READY and not
     * yet rewritten): a receipt naming it on this connection still proves it
     * stored, from an earlier write of the same bytes, and carries its real
     * position. */
    up_batch_t *b = rp->pend_head;
    if (!b || r->sequence_id < b->first_seq)
        return; /* stale: already failed (timeout) or not ours */
    if (r->sequence_id > b->last_seq) {
        if (up_rp_st(rp) != UP_RP_READY)
            return; /* the broker closed us: it may answer out of line */
        up_seterr(UPULSAR_ERR__PROTOCOL,
                  "%s: receipt for sequence id %llu while %llu..%llu is pending", rp->topic,
                  (unsigned long long)r->sequence_id, (unsigned long long)b->first_seq,
                  (unsigned long long)b->last_seq);
        up_conn_fail(rp->conn, UPULSAR_ERR__PROTOCOL);
        return;
    }
    uint64_t ledger = r->message_id ? r->message_id->ledgerid : UINT64_MAX;
    uint64_t entry = r->message_id ? r->message_id->entryid : UINT64_MAX;
    complete_head(rp, UPULSAR_OK, ledger, entry, NULL);
    settle_early_errors(rp);
}

void up_rp_close_cmd(up_rp_t *rp, up_cmd_t *cmd, Pulsar__Proto__CommandCloseProducer *cp)
{
    cmd->type = UP_CMD(CLOSE_PRODUCER);
    cmd->close_producer = cp;
    cp->producer_id = rp->producer_id;
    cp->request_id = atomic_fetch_add(&rp->client->next_request_id, 1);
}

static void send_close_producer(up_rp_t *rp)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandCloseProducer cp = PULSAR__PROTO__COMMAND_CLOSE_PRODUCER__INIT;
    up_rp_close_cmd(rp, &cmd, &cp);
    up_conn_write_cmd(rp->conn, &cmd);
}

/* Sent again after a ChecksumError at most this many times per entry. */
#define UP_CHECKSUM_RESENDS 3

/* Is @p b's framed entry as it was built: its CRC32C (over metadata and
 * payload) still matches the bytes the producer holds? */
static bool frame_intact(const up_batch_t *b)
{
    if (!b->frame || b->frame_len < 14)
        return false;
    uint32_t cs = up_get_be32(b->frame + 4);
    if (cs > b->frame_len - 14)
        return false;
    const uint8_t *crc_at = b->frame + 8 + cs + 2;
    const uint8_t *from = crc_at + 4, *end = b->frame + b->frame_len;
    return up_crc32c(0, from, (size_t)(end - from)) == up_get_be32(crc_at);
}

/* ChecksumError for the head entry @p b: the broker saw it damaged. If our
 * copy is intact the damage happened on the way: send it again, as the
 * Java client does -- but only when nothing was written behind it (a resend
 * behind later entries would be stored after them, or dropped by the
 * broker's de-duplication as older than what it stored) and only a few
 * times. True when sent again. */
static bool resend_after_checksum_error(up_rp_t *rp, up_batch_t *b)
{
    bool written_after = b->next && b->next != rp->unsent;
    if (written_after || b->checksum_resends >= UP_CHECKSUM_RESENDS || !frame_intact(b))
        return false;
    b->checksum_resends++;
    rp->unsent = b;
    atomic_fetch_add_explicit(&rp->resent_batches, 1, memory_order_relaxed);
    write_unsent(rp);
    if (rp->conn)
        up_conn_flush(rp->conn);
    return true;
}

/* The SEND_ERROR @p server_error (text @p message, or NULL) for the head
 * entry @p b, written on the producer's connection while READY. */
static void on_head_send_error(up_rp_t *rp, up_batch_t *b, int server_error, const char *message)
{
    upulsar_err_t err = up_err_from_server(server_error);
    const char *name = up_server_error_name(server_error);
    const char *sep = message && message[0] ? ": " : "";
    message = message ? message : "";
    char why[UP_DETAIL_TEXT_MAX];
    switch (up_err_classify(err, UP_ERR_AT_SEND, rp_conf(rp)->access_mode != UP_ACCESS_SHARED)) {
    case UP_ERR_CLASS_ENTRY: {
        /* a checksum error: the entry is sent again, up to UP_CHECKSUM_RESENDS times */
        if (err == UPULSAR_ERR_CHECKSUM_ERROR && resend_after_checksum_error(rp, b))
            break;
        up_detail_t *det = up_rp_detail(rp, "broker refused the send: %s%s%s", name, sep, message);
        complete_head(rp, err, 0, 0, det);
        up_detail_put(&rp->client->futures, det);
        break;
    }
    case UP_ERR_CLASS_TERMINAL:
        snprintf(why, sizeof why, "broker refused the send: %s%s%s", name, sep, message);
        up_rp_fail_why(rp, err, why); /* the watchdog fails the group */
        up_watchdog_kick(rp->client);
        break;
    default:
        /* the connection is closed; its producers are re-created on a new
         * one and resend from their head (up_err_classify()) */
        up_conn_fail(rp->conn, err);
        break;
    }
}

/* Act on the SEND_ERRORs kept for entries that have since become the head
 * (up_batch_t early_err), in order, as if each had come then: for the
 * producer they answer in the order of its entries. */
static void settle_early_errors(up_rp_t *rp)
{
    up_batch_t *b;
    while ((b = rp->pend_head) && b->early_err && b != rp->unsent &&
           up_rp_st(rp) == UP_RP_READY) {
        int server_error = b->early_err - 1;
        char *message = b->early_msg;
        b->early_msg = NULL;
        b->early_err = 0;
        on_head_send_error(rp, b, server_error, message);
        free(message);
    }
}

void up_rp_on_send_error(up_rp_t *rp, const Pulsar__Proto__CommandSendError *e)
{
    /* not attached (closed, being re-created): everything pending is resent
     * anyway, and the resend gets its own answer */
    if (up_rp_st(rp) != UP_RP_READY)
        return;
    up_batch_t *b = rp->pend_head;
    if (!b || b == rp->unsent || e->sequence_id < b->first_seq)
        return; /* stale: already failed (timeout) or not ours */
    if (e->sequence_id <= b->last_seq) {
        on_head_send_error(rp, b, (int)e->error, e->message);
        settle_early_errors(rp);
        return;
    }
    /* An entry behind the head, written on this connection: a broker
     * answers some refusals (a checksum error) at once, ahead of the
     * receipts of the entries before it. Kept until the entry is the head:
     * dropped, the entry would never be answered, and the receipt of a
     * later one would find it at the head. */
    for (b = b->next; b && b != rp->unsent; b = b->next)
        if (e->sequence_id >= b->first_seq && e->sequence_id <= b->last_seq) {
            if (!b->early_err) {
                b->early_err = (int)e->error + 1;
                /* out of memory: the error is kept, its text not */
                b->early_msg = e->message ? strdup(e->message) : NULL;
            }
            return;
        }
}

/* ---- loop side: attach / detach / fail ----------------------------------- */

/* Everything pending is to be written again (a reconnection, a
 * re-creation): the SEND_ERRORs kept for entries answered writes that are
 * gone. */
static void rewind_unsent(up_rp_t *rp)
{
    rp->unsent = rp->pend_head;
    for (up_batch_t *b = rp->pend_head; b; b = b->next)
        forget_early_error(b);
}

/* up_conn_unqueue(): a batch of the producer @p arg */
static bool of_producer(const up_batch_t *b, void *arg) { return b->rp == arg; }

/* @p rp's frames that @p c (open) has not started to write are taken out
 * of its queue: they are written again once @p rp is created anew, here or
 * elsewhere, and a broker that closed it would only ignore them (a failed
 * connection drops its whole queue anyway). */
static void unqueue_unstarted(up_rp_t *rp, up_conn_t *c)
{
    if (c && atomic_load_explicit(&c->state, memory_order_relaxed) == UP_CONN_OPEN)
        up_conn_unqueue(c, of_producer, rp);
}

/* Let go of the connection @p rp is registered on, if any (its state is
 * the caller's business). */
static void unlink_conn(up_rp_t *rp)
{
    up_conn_t *c = rp->conn;
    if (rp->registered && c)
        up_conn_remove_rp(c, rp);
    rp->registered = false;
    if (c) {
        unqueue_unstarted(rp, c);
        rp->conn = NULL;
        up_conn_unref(c);
    }
    rewind_unsent(rp);
}

/* Stop writing (what is pending is written again from its head once
 * attached) and go to @p to, one of the BACKOFF states (refused when
 * FAILED, stopping, or when a close by the broker already said why it is
 * in BACKOFF: it then stays as it is). */
static void stop_writing(up_rp_t *rp, up_rp_st_t to, const char *why, bool kick)
{
    rewind_unsent(rp);
    up_rp_transition(rp, UP_RP_ANY, to, why);
    if (kick)
        up_watchdog_kick(rp->client);
}

void up_rp_detach(up_rp_t *rp, bool kick)
{
    unlink_conn(rp);
    stop_writing(rp, UP_RP_BACKOFF, "detached from its connection", kick);
}

void up_rp_suspend(up_rp_t *rp, bool kick)
{
    unqueue_unstarted(rp, rp->conn);
    stop_writing(rp, UP_RP_BACKOFF, "closed on its connection", kick);
}

static void fail_all(up_rp_t *rp, upulsar_err_t err, up_detail_t *det);

void up_rp_fail(up_rp_t *rp, upulsar_err_t err) { up_rp_fail_why(rp, err, NULL); }

void up_rp_fail_why(up_rp_t *rp, upulsar_err_t err, const char *why)
{
    atomic_store(&rp->failed, err); /* before the state says FAILED */
    up_rp_transition(rp, UP_RP_ANY, UP_RP_FAILED, why ? why : upulsar_err_name(err));
    up_detail_t *det = !holds_messages(rp) ? NULL
                       : why            ? up_rp_detail(rp, "%s", why)
                                        : rp_default_detail(rp, err);
    fail_all(rp, err, det);
    up_detail_put(&rp->client->futures, det);
    if (rp->conn) {
        if (atomic_load(&rp->conn->state) == UP_CONN_OPEN) {
            send_close_producer(rp);
            up_conn_flush(rp->conn);
        }
        up_rp_detach(rp, false);
    }
}

void up_rp_register(up_rp_t *rp, up_conn_t *c)
{
    if (rp->conn == c && rp->registered) { /* re-created where it is */
        up_rp_transition(rp, UP_RP_IN_BACKOFF, UP_RP_CONNECTING, "creating it on its connection");
        return;
    }
    /* the connection it was suspended on (kept for the receipts of what it
     * wrote there) is let go: this attempt goes on */
    if (rp->conn)
        unlink_conn(rp);
    if (!up_conn_add_rp(c, rp))
        return; /* not registered: the create request will be refused */
    up_conn_ref(c);
    rp->conn = c;
    rp->registered = true;
    /* a loss or a close seen since the attempt began concerned the
     * connection it left: the attempt on this one goes on */
    up_rp_transition(rp, UP_RP_IN_BACKOFF, UP_RP_CONNECTING, "creating it on a connection");
}

bool up_rp_attach(up_rp_t *rp, up_conn_t *c, int64_t last_seq, const uint8_t *schema_version,
                  size_t schema_version_len, const char *broker)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    /* set on the loop, which writes it into every entry it frames */
    memcpy(rp->schema_version.v, schema_version, schema_version_len);
    rp->schema_version.len = (uint8_t)schema_version_len;
    if (rp->conn == c && atomic_load(&rp->failed)) {
        /* its group failed while the PRODUCER request was out: the broker
         * has a producer we will not use */
        if (atomic_load(&c->state) == UP_CONN_OPEN) {
            send_close_producer(rp);
            up_conn_flush(c);
        }
        up_rp_detach(rp, false);
        return false;
    }
    if (rp->conn != c || atomic_load(&c->state) != UP_CONN_OPEN)
        return false;
    /* refused unless CONNECTING: closed by the broker (BACKOFF_NOW,
     * BACKOFF_GRACEFUL) or stopping since it was registered here */
    bool first = !up_rp_created(rp);
    if (!up_rp_transition(rp, UP_RP_BIT(UP_RP_CONNECTING), UP_RP_READY, "created on the broker"))
        return false;
    /* before its first receipt can resolve anything: whoever sees a
     * message acknowledged sees the broker that took it */
    pthread_mutex_lock(&rp->broker_lock);
    snprintf(rp->broker, sizeof rp->broker, "%s", broker);
    pthread_mutex_unlock(&rp->broker_lock);
    /* the broker's last_sequence_id: -1 when it has none; a value below
     * that means none too (nothing the protocol defines) */
    if (last_seq < -1)
        last_seq = -1;
    if (first) {
        rp->next_seq = cf->initial_sequence_id >= 0 ? (uint64_t)cf->initial_sequence_id + 1
                                                    : (uint64_t)last_seq + 1;
    } else if (last_seq >= 0 && (uint64_t)last_seq + 1 > rp->next_seq) {
        rp->next_seq = (uint64_t)last_seq + 1;
    }
    /* Entries framed before are resent as they were framed, with the schema
     * version of the PRODUCER_SUCCESS they were framed under, even when
     * this one brought another: the official clients do the same (C++
     * ProducerImpl::resendMessages and Java recoverProcessOpSendMsgFrom
     * write each pending op's serialized command again, metadata
     * untouched). Only entries framed from now on carry the new version. */
    rewind_unsent(rp);
    if (rp->pend_head)
        atomic_fetch_add(&rp->resent_batches, rp->npend);
    write_unsent(rp);
    up_conn_flush(c);
    return true;
}

/* Resolve the record at the ring's read position with @p err and the
 * detail @p det (it never joins a batch, gets no sequence id) and step over
 * it. */
uint64_t up_rp_fail_ring_head(up_rp_t *rp, upulsar_err_t err, up_detail_t *det)
{
    up_ring_t *r = &rp->ring;
    up_rec_t h;
    up_rec_ext_t ext;
    up_rec_read_head(r, r->ctail, &h, &ext);
    bool dr = rp_conf(rp)->dr_cb != NULL;
    if (ext.free_cb && !dr)
        ext.free_cb((void *)ext.payload, ext.opaque);
    up_rp_limits_release(rp, 1, up_rec_mem(up_rec_cells(&h), h.ncells_flags & 0xfu, up_rec_plen(&h)));
    resolve_one(h.future, ext.cb, ext.opaque, err, NULL, det);
    if (dr) /* its report (payload still in the ring), then its free_cb */
        up_dr_ring(rp, r->ctail, err, det);
    up_stats_failed(rp, err, 1);
    return up_rec_cells(&h);
}

static void fail_ring_record(up_rp_t *rp, upulsar_err_t err, up_detail_t *det)
{
    up_ring_consume(&rp->ring, up_rp_fail_ring_head(rp, err, det));
}

/* Fail the open batch and every pending batch, in order, with the detail
 * @p det. */
static void fail_batches(up_rp_t *rp, upulsar_err_t err, up_detail_t *det)
{
    while (rp->pend_head)
        complete_head(rp, err, 0, 0, det);
    up_batch_t *open = up_batcher_take_open(rp);
    while (open) {
        up_batch_t *b = open;
        open = b->next;
        b->next = NULL;
        up_rp_resolve_batch(rp, b, err, 0, 0, det);
        up_batch_retire(rp, b);
    }
}

static void fail_all(up_rp_t *rp, upulsar_err_t err, up_detail_t *det)
{
    fail_batches(rp, err, det);
    up_ring_t *r = &rp->ring;
    while (up_ring_peek(r))
        fail_ring_record(rp, err, det);
    up_ring_release(r);
    rp->age_n = 0;
    atomic_store_explicit(&rp->resolved_ring_pos, r->ctail, memory_order_release);
}

void up_rp_fail_all(up_rp_t *rp, upulsar_err_t err)
{
    up_detail_t *det = holds_messages(rp) ? rp_default_detail(rp, err) : NULL;
    fail_all(rp, err, det);
    up_detail_put(&rp->client->futures, det);
}

/* The detail of messages failed by send.timeout.ms: written and not
 * acknowledged (@p queued false), or still in the ring. */
static up_detail_t *timeout_detail(up_rp_t *rp, bool queued)
{
    int to = rp_conf(rp)->send_timeout_ms;
    if (queued)
        return up_rp_detail(rp, "send timed out after %d ms (send.timeout.ms): still queued, never "
                             "sent (%s)",
                         to,
                         up_rp_created(rp) ? "max.inflight.batches batches awaiting receipts"
                                        : "the producer was never created on a broker yet");
    return up_rp_detail(rp, "send timed out after %d ms (send.timeout.ms): no receipt from the "
                         "broker (%s)",
                     to, rp_state_words(rp));
}

/* Records still in the ring (not drained because max.inflight.batches
 * batches wait for receipts, e.g. while disconnected) expire too. Their
 * acceptance time is not recorded per record (that would cost a clock read
 * per message): every tick samples the ring's head with the time, and the
 * records before a sample at least send.timeout.ms old are expired. A record
 * thus fails between send.timeout.ms and about 1/8 more after it was
 * accepted. Everything ahead of it (pending and open batches) was accepted
 * earlier still and fails first, so results stay in order. */
static void expire_ring(up_rp_t *rp, uint64_t now, uint64_t limit)
{
    up_ring_t *r = &rp->ring;
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (head == r->ctail) {
        rp->age_n = 0; /* empty: later records are younger than any sample */
        return;
    }
    uint64_t step = limit / 8;
    if (rp->age_n == 0 || now - rp->age_us[rp->age_last] >= step) {
        rp->age_last = rp->age_n == 0 ? 0 : (rp->age_last + 1) % UP_AGE_SAMPLES;
        rp->age_pos[rp->age_last] = head;
        rp->age_us[rp->age_last] = now;
        if (rp->age_n < UP_AGE_SAMPLES)
            rp->age_n++;
    }
    uint64_t cutoff = 0;
    for (unsigned k = 0, i = rp->age_last; k < rp->age_n;
         k++, i = (i + UP_AGE_SAMPLES - 1) % UP_AGE_SAMPLES)
        if (now - rp->age_us[i] >= limit) {
            cutoff = rp->age_pos[i];
            break;
        }
    if (cutoff <= r->ctail || !up_ring_peek(r))
        return;
    uint64_t before = atomic_load_explicit(&rp->failed_msgs, memory_order_relaxed);
    if (rp->pend_head || rp->open) {
        up_detail_t *det = timeout_detail(rp, false);
        fail_batches(rp, UPULSAR_ERR__MSG_TIMED_OUT, det);
        up_detail_put(&rp->client->futures, det);
    }
    up_detail_t *det = timeout_detail(rp, true);
    while (r->ctail < cutoff && up_ring_peek(r))
        fail_ring_record(rp, UPULSAR_ERR__MSG_TIMED_OUT, det);
    up_detail_put(&rp->client->futures, det);
    up_ring_release(r);
    atomic_fetch_add_explicit(&rp->timed_out,
                              atomic_load_explicit(&rp->failed_msgs, memory_order_relaxed) - before,
                              memory_order_relaxed);
    if (!rp->open && !rp->pend_head)
        atomic_store_explicit(&rp->resolved_ring_pos, r->ctail, memory_order_release);
}

uint64_t up_rp_accepted_by(const up_rp_t *rp, uint64_t pos, uint64_t now)
{
    /* oldest first: the first sample past @p pos is the oldest such */
    for (unsigned k = rp->age_n; k > 0; k--) {
        unsigned i = (rp->age_last + UP_AGE_SAMPLES - (k - 1)) % UP_AGE_SAMPLES;
        if (rp->age_pos[i] > pos)
            return rp->age_us[i] < now ? rp->age_us[i] : now;
    }
    return now;
}

void up_rp_check_timeouts(up_rp_t *rp, uint64_t now)
{
    int to = rp_conf(rp)->send_timeout_ms;
    if (to <= 0)
        return;
    uint64_t limit = (uint64_t)to * 1000u;
    up_detail_t *det = NULL;
    while (rp->pend_head && now - rp->pend_head->created_us > limit) {
        atomic_fetch_add_explicit(&rp->timed_out, rp->pend_head->n, memory_order_relaxed);
        if (!det)
            det = timeout_detail(rp, false);
        complete_head(rp, UPULSAR_ERR__MSG_TIMED_OUT, 0, 0, det);
    }
    up_detail_put(&rp->client->futures, det);
    settle_early_errors(rp);
    expire_ring(rp, now, limit);
}

/* ---- events raised by the producer's connection (loop) --------------------- */

void up_rp_on_close_producer(up_rp_t *rp, const char *assigned_url)
{
    if (assigned_url && assigned_url[0]) {
        pthread_mutex_lock(&rp->broker_lock);
        snprintf(rp->assigned, sizeof rp->assigned, "%s", assigned_url);
        pthread_mutex_unlock(&rp->broker_lock);
    }
    /* at once where the broker said; else after the backoff delay */
    if (assigned_url && assigned_url[0])
        stop_writing(rp, UP_RP_BACKOFF_NOW, "CLOSE_PRODUCER naming its new broker", true);
    else
        stop_writing(rp, UP_RP_BACKOFF_GRACEFUL, "CLOSE_PRODUCER", true);
}

void up_rp_on_topic_migrated(up_rp_t *rp, const char *cluster_url)
{
    if (cluster_url && cluster_url[0]) {
        pthread_mutex_lock(&rp->broker_lock);
        snprintf(rp->cluster, sizeof rp->cluster, "%s", cluster_url);
        pthread_mutex_unlock(&rp->broker_lock);
    }
    stop_writing(rp, UP_RP_BACKOFF_NOW, "TOPIC_MIGRATED", true);
}

/* Fail every message @p rp holds (pending and open batches, records in the
 * ring), oldest first, with @p err and the detail "<topic> via <broker>:
 * @p why", without failing the producer itself: it stays in its state and
 * is re-created as usual (a backlog quota's producer_exception refusal).
 * (loop) */
void up_rp_fail_pending_why(up_rp_t *rp, upulsar_err_t err, const char *why)
{
    if (!holds_messages(rp))
        return;
    up_detail_t *det = up_rp_detail(rp, "%s", why);
    fail_all(rp, err, det);
    up_detail_put(&rp->client->futures, det);
}
