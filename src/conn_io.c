/* conn_io.c -- a connection on its loop: the output queue and its writes
 * (through TLS when on), reads and frame dispatch, keep-alive, and failure.
 * Reads and writes go through the loop's backend (io_backend.h: io_uring or
 * epoll), which completes them with up_conn_on_recv / up_conn_on_send.
 * Everything here runs on the loop thread of the connection. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conn.h"
#include "engine.h"
#include "err.h"
#include "fault.h"
#include "io_backend.h"
#include "tls.h"

/* One frame of a connection's output queue. */
typedef struct up_seg {
    const uint8_t *p;
    size_t len;
    uint8_t *owned;     /* control frame to free once written */
    up_batch_t *batch;  /* batch frame: reference dropped once written */
} up_seg_t;

/* ---- output queue ----------------------------------------------------------- */

static void seg_done(up_seg_t *s)
{
    up_wipe(s->owned, s->len); /* a control frame: AUTH_RESPONSE holds the token */
    free(s->owned);
    if (s->batch)
        up_batch_unref(s->batch);
}

void up_conn_drop_outq(up_conn_t *c)
{
    for (size_t i = 0; i < c->oq_len; i++)
        seg_done(&c->outq[(c->oq_head + i) % c->oq_cap]);
    c->oq_len = c->oq_head = c->oq_sent = 0;
}

/* How many frames at the head of @p c's queue a send has started on: with
 * TLS none (a frame leaves the queue once encrypted); else those of the
 * send in flight (c->iov points into them), or the head when its first
 * bytes went out. */
static size_t started_frames(const up_conn_t *c)
{
    size_t keep = 0;
    if (!c->tls)
        keep = c->send_inflight ? (size_t)c->msg.msg_iovlen : c->oq_sent ? 1 : 0;
    return keep < c->oq_len ? keep : c->oq_len;
}

size_t up_conn_unqueue(up_conn_t *c, bool (*drop)(const up_batch_t *b, void *arg), void *arg)
{
    size_t keep = started_frames(c);
    size_t w = keep, dropped = 0;
    for (size_t k = keep; k < c->oq_len; k++) {
        up_seg_t *s = &c->outq[(c->oq_head + k) % c->oq_cap];
        if (s->batch && drop(s->batch, arg)) {
            seg_done(s);
            dropped++;
            continue;
        }
        if (w != k)
            c->outq[(c->oq_head + w) % c->oq_cap] = *s;
        w++;
    }
    c->oq_len = w;
    return dropped;
}

/* up_conn_unqueue(): a batch whose messages have resolved (acknowledged
 * batches are written, so: failed) */
static bool is_resolved(const up_batch_t *b, void *arg)
{
    (void)arg;
    return b->retired;
}

void up_conn_purge_resolved(up_conn_t *c)
{
    if (!c->purge_resolved)
        return;
    up_conn_unqueue(c, is_resolved, NULL);
    /* a send in flight may complete short: its frames past the one it
     * ends in were never started, and the flag stays for the purge before
     * the next write (which keeps only that one) */
    c->purge_resolved = false;
    size_t keep = started_frames(c);
    for (size_t k = c->oq_sent ? 1 : 0; k < keep && !c->purge_resolved; k++) {
        const up_seg_t *s = &c->outq[(c->oq_head + k) % c->oq_cap];
        c->purge_resolved = s->batch && s->batch->retired;
    }
}

_Atomic size_t up_probe_tls_tx_peak;

void up_conn_write(up_conn_t *c, const uint8_t *p, size_t len, uint8_t *owned,
                   up_batch_t *batch)
{
    if (atomic_load_explicit(&c->state, memory_order_relaxed) != UP_CONN_OPEN) {
        up_wipe(owned, len);
        free(owned);
        return;
    }
    if (c->oq_len == c->oq_cap) {
        size_t n = c->oq_cap ? c->oq_cap * 2 : 64;
        up_seg_t *q = malloc(n * sizeof *q);
        if (!q) {
            up_wipe(owned, len);
            free(owned);
            up_conn_fail(c, UPULSAR_ERR__NOMEM);
            return;
        }
        for (size_t i = 0; i < c->oq_len; i++)
            q[i] = c->outq[(c->oq_head + i) % c->oq_cap];
        free(c->outq);
        c->outq = q;
        c->oq_cap = n;
        c->oq_head = 0;
    }
    c->outq[(c->oq_head + c->oq_len) % c->oq_cap] = (up_seg_t){p, len, owned, batch};
    c->oq_len++;
    if (batch)
        batch->outq_refs++;
}

int up_conn_write_cmd(up_conn_t *c, const up_cmd_t *cmd)
{
    up_buf_t b = UP_BUF_INIT;
    if (up_frame_put_cmd(&b, cmd))
        return -1;
    up_conn_write(c, b.data, b.len, b.data, NULL);
    return 0;
}

/* TLS: encrypt the queued frames into tls_tx (only while no send is in
 * flight, so tls_tx never moves under the kernel) and send it: whole
 * frames, until about UP_CONN_SEND_BYTES are encrypted (what a plain send
 * hands the kernel at most), so a backlog is not copied whole beside the
 * batches that still hold it; a buffer a large frame grew past twice that
 * is given back once sent. */
static void tls_flush(up_conn_t *c)
{
    if (c->tls_tx_off >= c->tls_tx.len) {
        c->tls_tx.len = c->tls_tx_off = 0;
        if (c->tls_tx.cap > 2 * (size_t)UP_CONN_SEND_BYTES)
            up_buf_free(&c->tls_tx);
        while (c->oq_len && c->tls_tx.len < UP_CONN_SEND_BYTES) {
            up_seg_t *s = &c->outq[c->oq_head];
            int rc = up_tls_encrypt(c->tls, s->p + c->oq_sent, s->len - c->oq_sent, &c->tls_tx);
            seg_done(s); /* copied into the TLS records: the frame may go */
            c->oq_head = (c->oq_head + 1) % c->oq_cap;
            c->oq_len--;
            c->oq_sent = 0;
            if (rc) {
                up_conn_fail(c, (upulsar_err_t)rc);
                return;
            }
        }
        size_t peak = atomic_load_explicit(&up_probe_tls_tx_peak, memory_order_relaxed);
        if (c->tls_tx.cap > peak)
            atomic_store_explicit(&up_probe_tls_tx_peak, c->tls_tx.cap, memory_order_relaxed);
        if (up_tls_drain(c->tls, &c->tls_tx)) { /* e.g. a key update answer */
            up_conn_fail(c, UPULSAR_ERR__NOMEM);
            return;
        }
        if (c->tls_tx.len == 0)
            return;
    }
    c->iov[0].iov_base = c->tls_tx.data + c->tls_tx_off;
    c->iov[0].iov_len = c->tls_tx.len - c->tls_tx_off;
    memset(&c->msg, 0, sizeof c->msg);
    c->msg.msg_iov = c->iov;
    c->msg.msg_iovlen = 1;
    if (c->loop->io->send(c) == 0)
        c->send_inflight = true; /* else: try again next iteration */
}

void up_conn_flush(up_conn_t *c)
{
    if (c->send_inflight || atomic_load_explicit(&c->state, memory_order_relaxed) != UP_CONN_OPEN)
        return;
    /* no write starts on a batch whose messages failed (purge_resolved) */
    up_conn_purge_resolved(c);
    if (c->tls) {
        tls_flush(c);
        return;
    }
    if (c->oq_len == 0)
        return;
    /* every frame queued, up to UP_CONN_IOV of them or UP_CONN_SEND_BYTES
     * (more than a socket's send buffer takes at once: building and
     * importing iovecs the kernel cannot use yet would only cost) */
    int n = 0;
    size_t bytes = 0;
    for (size_t i = 0; i < c->oq_len && n < UP_CONN_IOV && bytes < UP_CONN_SEND_BYTES; i++) {
        up_seg_t *s = &c->outq[(c->oq_head + i) % c->oq_cap];
        size_t skip = i == 0 ? c->oq_sent : 0;
        c->iov[n].iov_base = (void *)(s->p + skip);
        c->iov[n].iov_len = s->len - skip;
        bytes += s->len - skip;
        n++;
    }
    memset(&c->msg, 0, sizeof c->msg);
    c->msg.msg_iov = c->iov;
    c->msg.msg_iovlen = (size_t)n;
    if (c->loop->io->send(c) == 0)
        c->send_inflight = true; /* else: try again next iteration */
}

void up_conn_on_send(up_conn_t *c, int res)
{
    c->send_inflight = false;
    if (atomic_load(&c->state) != UP_CONN_OPEN) {
        up_conn_drop_outq(c);
        return;
    }
    if (res < 0) {
        if (res == -EAGAIN || res == -EINTR)
            return;
        up_seterr(UPULSAR_ERR__IO, "send to %s:%d: %s", c->host, c->port, strerror(-res));
        up_conn_fail(c, UPULSAR_ERR__IO);
        return;
    }
    if (c->tls) {
        c->tls_tx_off += (size_t)res;
        up_conn_flush(c);
        return;
    }
    size_t bytes = (size_t)res;
    while (bytes && c->oq_len) {
        up_seg_t *s = &c->outq[c->oq_head];
        size_t rem = s->len - c->oq_sent;
        if (bytes >= rem) {
            bytes -= rem;
            seg_done(s);
            c->oq_head = (c->oq_head + 1) % c->oq_cap;
            c->oq_len--;
            c->oq_sent = 0;
        } else {
            c->oq_sent += bytes;
            bytes = 0;
        }
    }
    /* skip zero-length segments */
    while (c->oq_len && c->outq[c->oq_head].len == 0) {
        seg_done(&c->outq[c->oq_head]);
        c->oq_head = (c->oq_head + 1) % c->oq_cap;
        c->oq_len--;
    }
    up_conn_flush(c);
}

/* ---- input ------------------------------------------------------------------ */

static void arm_recv(up_conn_t *c)
{
    if (c->recv_inflight || atomic_load(&c->state) != UP_CONN_OPEN)
        return;
    size_t avail = UP_CONN_RECV_CHUNK;
    uint8_t *w = c->tls ? c->tls_rbuf : up_decoder_wbuf(&c->dec, UP_CONN_RECV_CHUNK, &avail);
    if (!w) {
        up_conn_fail(c, UPULSAR_ERR__NOMEM);
        return;
    }
    if (c->loop->io->recv(c, w, avail)) {
        up_seterr(UPULSAR_ERR__IO, "%s:%d: cannot start a read", c->host, c->port);
        up_conn_fail(c, UPULSAR_ERR__IO);
        return;
    }
    c->recv_inflight = true;
}

void up_conn_attach(void *conn)
{
    up_conn_t *c = conn;
    up_loop_t *l = c->loop;
    if (!up_loop_add_conn(l, c)) {
        up_conn_fail(c, UPULSAR_ERR__NOMEM);
        up_conn_unref(c);
        return;
    }
    c->last_rx_us = c->last_used_us = up_now_us();
    up_client_log_backend(c->client); /* once per client, at its first connection */
    int rc = l->io->attach(c);
    if (rc < 0) {
        up_seterr(UPULSAR_ERR__IO, "%s:%d: %s cannot watch the socket: %s", c->host, c->port,
                  l->io->name, strerror(-rc));
        up_conn_fail(c, UPULSAR_ERR__IO);
        return;
    }
    arm_recv(c);
}

/* ---- the producers of a connection, and their index by id ---- */

/* Home slot of @p producer_id in an index of @p mask + 1 slots (ids are
 * handed out in sequence: a multiplicative mix spreads them). */
static size_t rix_home(uint64_t producer_id, size_t mask)
{
    uint64_t h = producer_id * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h ^ (h >> 29)) & mask;
}

static void rix_put(up_rp_t **rix, size_t mask, up_rp_t *rp)
{
    size_t i = rix_home(rp->producer_id, mask);
    while (rix[i])
        i = (i + 1) & mask;
    rix[i] = rp;
}

/* An index of at least twice @p n slots holding c->rps[0, c->nrps). */
static bool rix_resize(up_conn_t *c, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    up_rp_t **rix = calloc(cap, sizeof *rix);
    if (!rix)
        return false;
    for (size_t i = 0; i < c->nrps; i++)
        rix_put(rix, cap - 1, c->rps[i]);
    free(c->rix);
    c->rix = rix;
    c->rix_mask = cap - 1;
    return true;
}

/* Take @p rp out of the index: its slot is refilled by shifting back the
 * entries after it that would not be found past the gap (no tombstones). */
static void rix_del(up_conn_t *c, up_rp_t *rp)
{
    size_t mask = c->rix_mask, i = rix_home(rp->producer_id, mask);
    while (c->rix[i] != rp) {
        if (!c->rix[i])
            return; /* not there */
        i = (i + 1) & mask;
    }
    for (size_t j = (i + 1) & mask; c->rix[j]; j = (j + 1) & mask) {
        size_t k = rix_home(c->rix[j]->producer_id, mask);
        /* c->rix[j] may move to the gap at i if its home is not in (i, j] */
        if (((j - k) & mask) >= ((j - i) & mask)) {
            c->rix[i] = c->rix[j];
            i = j;
        }
    }
    c->rix[i] = NULL;
}

bool up_conn_add_rp(up_conn_t *c, up_rp_t *rp)
{
    if (c->nrps == c->crps) {
        size_t n = c->crps ? c->crps * 2 : 8;
        up_rp_t **nr = realloc(c->rps, n * sizeof *nr);
        if (!nr)
            return false;
        c->rps = nr;
        c->crps = n;
    }
    if ((!c->rix || 2 * (c->nrps + 1) > c->rix_mask + 1) && !rix_resize(c, c->nrps + 1))
        return false;
    rp->conn_pos = c->nrps;
    c->rps[c->nrps++] = rp;
    rix_put(c->rix, c->rix_mask, rp);
    return true;
}

void up_conn_remove_rp(up_conn_t *c, up_rp_t *rp)
{
    size_t i = rp->conn_pos;
    if (i >= c->nrps || c->rps[i] != rp) {
        /* conn_pos names its slot on the connection it joined last: look
         * for it here (it is registered on one connection at a time) */
        for (i = 0; i < c->nrps && c->rps[i] != rp; i++)
            ;
        if (i == c->nrps)
            return; /* not registered here */
    }
    up_rp_t *last = c->rps[--c->nrps];
    c->rps[i] = last;
    last->conn_pos = i;
    rix_del(c, rp);
}

static up_rp_t *find_rp(up_conn_t *c, uint64_t producer_id)
{
    if (!c->rix)
        return NULL;
    for (size_t i = rix_home(producer_id, c->rix_mask); c->rix[i]; i = (i + 1) & c->rix_mask)
        if (c->rix[i]->producer_id == producer_id)
            return c->rix[i];
    return NULL;
}

static void dispatch(up_conn_t *c, up_frame_t *f)
{
    up_cmd_t *cmd = f->cmd;
    up_rp_t *rp;
    switch (cmd->type) {
    case UP_CMD(SEND_RECEIPT):
        if ((rp = find_rp(c, cmd->send_receipt->producer_id)))
            up_rp_on_receipt(rp, cmd->send_receipt);
        break;
    case UP_CMD(SEND_ERROR):
        if ((rp = find_rp(c, cmd->send_error->producer_id)))
            up_rp_on_send_error(rp, cmd->send_error);
        break;
    case UP_CMD(PING): {
        up_cmd_t pong = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandPong pb = PULSAR__PROTO__COMMAND_PONG__INIT;
        pong.type = UP_CMD(PONG);
        pong.pong = &pb;
        up_conn_write_cmd(c, &pong);
        break;
    }
    case UP_CMD(CLOSE_PRODUCER): {
        /* receipts for SENDs the broker took before may still follow (a
         * Pulsar broker completes the writes in progress after telling us):
         * stay registered for them */
        const Pulsar__Proto__CommandCloseProducer *cp = cmd->close_producer;
        /* a topic transfer names the new owner (in the field of each port
         * it opens): go there directly. Reached directly, its URL in the
         * client's scheme, as the official clients pick it; through a
         * proxy (which passes the command on untouched), the URL in the
         * scheme of the proxy's link to its brokers, whatever the client
         * uses: the producer reconnects to the proxy naming that broker
         * as the proxy reaches it (as after a lookup through it) */
        bool tls = c->proxy_to[0] ? c->proxy_tls : c->tls != NULL;
        if ((rp = find_rp(c, cp->producer_id)))
            up_rp_on_close_producer(rp, tls ? cp->assignedbrokerserviceurltls
                                            : cp->assignedbrokerserviceurl);
        break;
    }
    case UP_CMD(TOPIC_MIGRATED): {
        /* blue-green migration: the topic lives in another cluster now;
         * look it up there from now on. A PRODUCER request for it gets no
         * answer from this broker: it is failed here, to be retried there. */
        const Pulsar__Proto__CommandTopicMigrated *tm = cmd->topicmigrated;
        if (tm->resource_type != PULSAR__PROTO__COMMAND_TOPIC_MIGRATED__RESOURCE_TYPE__Producer)
            break;
        const char *url = c->tls ? tm->brokerserviceurltls : tm->brokerserviceurl;
        if ((rp = find_rp(c, tm->resource_id)))
            up_rp_on_topic_migrated(rp, url);
        up_conn_fail_producer_req(c, tm->resource_id, UPULSAR_ERR_SERVICE_NOT_READY);
        break;
    }
    case UP_CMD(SUCCESS):
        up_conn_complete_req(c, cmd->success->request_id, up_decoder_steal(&c->dec),
                             UPULSAR_OK);
        break;
    case UP_CMD(PRODUCER_SUCCESS):
        up_conn_complete_req(c, cmd->producer_success->request_id, up_decoder_steal(&c->dec),
                             UPULSAR_OK);
        break;
    case UP_CMD(LOOKUP_RESPONSE):
        up_conn_complete_req(c, cmd->lookuptopicresponse->request_id,
                             up_decoder_steal(&c->dec), UPULSAR_OK);
        break;
    case UP_CMD(PARTITIONED_METADATA_RESPONSE):
        up_conn_complete_req(c, cmd->partitionmetadataresponse->request_id,
                             up_decoder_steal(&c->dec), UPULSAR_OK);
        break;
    case UP_CMD(ERROR):
        up_conn_complete_req(c, cmd->error->request_id, up_decoder_steal(&c->dec),
                             up_err_from_server(cmd->error->error));
        break;
    case UP_CMD(AUTH_CHALLENGE): {
        /* credentials refresh: answer with the token as it is now (a file
         * token is read again, so a rotated one is presented) */
        up_buf_t ab = UP_BUF_INIT;
        upulsar_err_t err = up_conn_auth_response(c, &ab);
        if (err) {
            up_buf_free(&ab);
            up_conn_fail(c, err);
            break;
        }
        up_conn_write(c, ab.data, ab.len, ab.data, NULL);
        break;
    }
    default:
        break; /* PONG, CONNECTED, and commands a producer does not use */
    }
}

void up_conn_on_recv(up_conn_t *c, int res)
{
    c->recv_inflight = false;
    if (atomic_load(&c->state) != UP_CONN_OPEN)
        return;
    if (res <= 0) {
        if (res == -EAGAIN || res == -EINTR) {
            arm_recv(c);
            return;
        }
        up_seterr(UPULSAR_ERR__CONNECT, "%s", res == 0 ? "the broker closed the connection"
                                                      : strerror(-res));
        up_conn_fail(c, UPULSAR_ERR__CONNECT);
        return;
    }
    if (c->tls) {
        /* ciphertext: decrypt all of it into the decoder */
        if (up_tls_feed(c->tls, c->tls_rbuf, (size_t)res)) {
            up_conn_fail(c, UPULSAR_ERR__NOMEM);
            return;
        }
        for (;;) {
            size_t avail;
            uint8_t *w = up_decoder_wbuf(&c->dec, UP_CONN_RECV_CHUNK, &avail);
            if (!w) {
                up_conn_fail(c, UPULSAR_ERR__NOMEM);
                return;
            }
            long n = up_tls_read(c->tls, w, avail);
            if (n < 0) {
                up_conn_fail(c, (upulsar_err_t)n);
                return;
            }
            if (n == 0)
                break;
            up_decoder_commit(&c->dec, (size_t)n);
        }
    } else {
        up_decoder_commit(&c->dec, (size_t)res);
    }
    bool framed = false;
    for (;;) {
        up_frame_t f;
        int rc = up_decoder_next(&c->dec, &f);
        if (rc == 0)
            break;
        if (rc < 0) {
            up_conn_fail(c, (upulsar_err_t)rc);
            return;
        }
        if (!framed) {
            /* keep-alive counts whole frames, not bytes: bytes that only
             * extend a frame cut short (a broken broker, answering our
             * PINGs into it) must not keep the connection alive */
            framed = true;
            c->last_rx_us = up_now_us();
            c->ping_outstanding = false;
        }
        dispatch(c, &f);
        if (atomic_load(&c->state) != UP_CONN_OPEN)
            return;
    }
    arm_recv(c);
}

/* ---- failure and keep-alive ------------------------------------------------- */

void up_conn_fail(up_conn_t *c, upulsar_err_t why)
{
    int expect = UP_CONN_OPEN;
    if (!atomic_compare_exchange_strong(&c->state, &expect, UP_CONN_DEAD))
        return;
    /* the reason, for the application's log: the calling thread's last
     * error when it speaks of this failure (decoder, TLS, keep-alive) */
    if (why != UPULSAR_ERR__CLOSED)
        up_log_at(c->client, UPULSAR_LOG_WARNING, &(up_log_at_t){.err = why, .partition = -1, .host = c->host, .port = c->port}, "connection to %s:%d%s%s dropped: %s (%s)",
               c->host, c->port, c->proxy_to[0] ? " for " : "", c->proxy_to,
               upulsar_err_name(why), up_last_error_for(why));
    shutdown(c->fd, SHUT_RDWR);
    c->loop->io->cancel(c); /* what is in flight completes */
    bool pooled = up_conn_pool_remove(c);
    up_conn_fail_reqs(c);
    while (c->nrps)
        up_rp_detach(c->rps[c->nrps - 1], true);
    if (!c->send_inflight)
        up_conn_drop_outq(c);
    if (pooled)
        up_conn_unref(c);
}

void up_conn_tick(up_conn_t *c, uint64_t now)
{
    if (atomic_load(&c->state) != UP_CONN_OPEN)
        return;
    if (up_conn_close_if_idle(c, now))
        return;
    int ka = c->client->conf.keepalive_interval_ms;
    if (ka <= 0)
        return;
    if (now - c->last_rx_us < (uint64_t)ka * 1000u)
        return;
    if (c->ping_outstanding) {
        up_seterr(UPULSAR_ERR__TIMED_OUT, "%s:%d did not answer keepalive", c->host, c->port);
        up_conn_fail(c, UPULSAR_ERR__TIMED_OUT);
        return;
    }
    up_cmd_t ping = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandPing pb = PULSAR__PROTO__COMMAND_PING__INIT;
    ping.type = UP_CMD(PING);
    ping.ping = &pb;
    up_conn_write_cmd(c, &ping);
    c->ping_outstanding = true;
    c->last_rx_us = now;
}
