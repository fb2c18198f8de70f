/* conn.c -- one TCP connection to a broker: blocking connect + handshake,
 * then io_uring reads/writes on its loop, frame dispatch, request matching,
 * keepalive and the connection pool. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "engine.h"
#include "err.h"
#include "fault.h"
#include "tls.h"

#define RECV_CHUNK (64 * 1024)
#define CLIENT_VERSION "upulsar-" UPULSAR_VERSION_STR
#define PROTOCOL_VERSION 20

_Atomic int up_fault_dial_post;

/* ---- reference counting -------------------------------------------------- */

static void drop_outq(up_conn_t *c);
static void seg_done(up_seg_t *s);

void up_conn_ref(up_conn_t *c) { atomic_fetch_add(&c->refs, 1); }

void up_conn_unref(up_conn_t *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    if (c->fd >= 0)
        close(c->fd);
    up_decoder_free(&c->dec);
    drop_outq(c);
    free(c->outq);
    up_tls_free(c->tls);
    free(c->tls_rbuf);
    up_buf_free(&c->tls_tx);
    free(c->rps);
    free(c);
}

/* ---- blocking connect and handshake -------------------------------------- */

static int deadline_left_ms(uint64_t deadline_us)
{
    uint64_t now = up_now_us();
    return now >= deadline_us ? 0 : (int)((deadline_us - now + 999) / 1000);
}

/* Blocking waits look at up_cancelled() at least this often. */
#define CANCEL_SLICE_MS 10

int up_poll_until(struct pollfd *p, uint64_t deadline_us)
{
    for (;;) {
        if (up_cancelled())
            return UP_POLL_CANCELLED;
        int left = deadline_left_ms(deadline_us);
        int r = poll(p, 1, left < CANCEL_SLICE_MS ? left : CANCEL_SLICE_MS);
        if (r > 0 || (r < 0 && errno != EINTR))
            return r;
        if (r == 0 && left <= CANCEL_SLICE_MS)
            return 0;
    }
}

static upulsar_err_t tcp_connect(const char *host, int port, uint64_t deadline, int *out)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc)
        return up_seterr(UPULSAR_ERR__CONNECT, "cannot resolve %s: %s", host, gai_strerror(rc));
    upulsar_err_t err = UPULSAR_ERR__CONNECT;
    up_seterr(err, "cannot connect to %s:%d", host, port);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) { /* e.g. EMFILE: the process is out of descriptors */
            up_seterr(err, "cannot connect to %s:%d: %s", host, port, strerror(errno));
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS) {
            up_seterr(err, "cannot connect to %s:%d: %s", host, port, strerror(errno));
            close(fd);
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int pr = up_poll_until(&p, deadline);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (pr == 1)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (pr == UP_POLL_CANCELLED) {
            close(fd);
            freeaddrinfo(res);
            return up_seterr(UPULSAR_ERR__CLOSED, "connect to %s:%d abandoned: stopping", host,
                             port);
        }
        if (pr != 1 || soerr) {
            if (pr == 0)
                err = up_seterr(UPULSAR_ERR__CONNECT, "connect to %s:%d timed out", host, port);
            else
                up_seterr(err, "cannot connect to %s:%d: %s", host, port,
                          strerror(soerr ? soerr : errno));
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int bufsz = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
        *out = fd;
        freeaddrinfo(res);
        return UPULSAR_OK;
    }
    freeaddrinfo(res);
    return err;
}

static upulsar_err_t write_all(int fd, const uint8_t *p, size_t n, uint64_t deadline)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return up_seterr(UPULSAR_ERR__CONNECT, "handshake write: %s", strerror(errno));
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int pr = up_poll_until(&pf, deadline);
        if (pr == UP_POLL_CANCELLED)
            return up_seterr(UPULSAR_ERR__CLOSED, "handshake abandoned: stopping");
        if (pr != 1)
            return up_seterr(UPULSAR_ERR__TIMED_OUT, "handshake write timed out");
    }
    return UPULSAR_OK;
}

/* Write an encoded frame during the (blocking) handshake, through TLS if
 * on; the frame (it may hold the token) and its ciphertext are wiped and
 * freed. */
static upulsar_err_t hs_write_frame(up_conn_t *c, up_buf_t *frame, uint64_t deadline)
{
    up_buf_t enc = UP_BUF_INIT;
    upulsar_err_t err;
    if (c->tls) {
        int rc = up_tls_encrypt(c->tls, frame->data, frame->len, &enc);
        err = rc ? (upulsar_err_t)rc : write_all(c->fd, enc.data, enc.len, deadline);
    } else {
        err = write_all(c->fd, frame->data, frame->len, deadline);
    }
    if (frame->data)
        up_wipe(frame->data, frame->len);
    if (enc.data)
        up_wipe(enc.data, enc.len);
    up_buf_free(frame);
    up_buf_free(&enc);
    return err;
}

static upulsar_err_t hs_write_cmd(up_conn_t *c, const up_cmd_t *cmd, uint64_t deadline)
{
    up_buf_t b = UP_BUF_INIT;
    if (up_frame_put_cmd(&b, cmd))
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    return hs_write_frame(c, &b, deadline);
}

/* Fill AuthData / CONNECT credentials. @p tok must outlive the command.
 * Without a token, a client certificate over TLS is the credential
 * (Pulsar's "tls" method, no auth data, as AuthenticationTls sends). */
static void set_auth(const up_conn_t *c, const char *tok, const char **method,
                     protobuf_c_boolean *has, ProtobufCBinaryData *data)
{
    if (tok[0]) {
        *method = "token";
        *has = 1;
        data->data = (uint8_t *)tok;
        data->len = strlen(tok);
    } else if (c->tls && c->client->conf.tls_cert_file[0]) {
        *method = "tls";
    } else {
        *method = "none";
    }
}

/* Answer an AUTH_CHALLENGE with the current token (auth refresh). */
static upulsar_err_t auth_response_cmd(up_conn_t *c, up_buf_t *out)
{
    char tok[sizeof c->client->conf.auth_token];
    upulsar_err_t err = up_auth_token(&c->client->conf, tok, sizeof tok);
    if (err)
        return err;
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandAuthResponse ar = PULSAR__PROTO__COMMAND_AUTH_RESPONSE__INIT;
    Pulsar__Proto__AuthData ad = PULSAR__PROTO__AUTH_DATA__INIT;
    cmd.type = UP_CMD(AUTH_RESPONSE);
    cmd.authresponse = &ar;
    ar.client_version = CLIENT_VERSION;
    ar.has_protocol_version = 1;
    ar.protocol_version = PROTOCOL_VERSION;
    ar.response = &ad;
    const char *method;
    set_auth(c, tok, &method, &ad.has_auth_data, &ad.auth_data);
    ad.auth_method_name = (char *)method;
    int rc = up_frame_put_cmd(out, &cmd);
    up_wipe(tok, sizeof tok);
    return rc ? UPULSAR_ERR__NOMEM : UPULSAR_OK;
}

static upulsar_err_t handshake(up_conn_t *c, uint64_t deadline)
{
    const struct upulsar_conf *cf = &c->client->conf;
    char tok[sizeof cf->auth_token];
    upulsar_err_t err = up_auth_token(cf, tok, sizeof tok);
    if (err)
        return err;
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandConnect co = PULSAR__PROTO__COMMAND_CONNECT__INIT;
    Pulsar__Proto__FeatureFlags ff = PULSAR__PROTO__FEATURE_FLAGS__INIT;
    cmd.type = UP_CMD(CONNECT);
    cmd.connect = &co;
    co.client_version = CLIENT_VERSION;
    co.has_protocol_version = 1;
    co.protocol_version = PROTOCOL_VERSION;
    const char *method;
    set_auth(c, tok, &method, &co.has_auth_data, &co.auth_data);
    co.auth_method_name = (char *)method;
    /* we answer the broker's AUTH_CHALLENGE refreshes (auth_response_cmd) */
    ff.has_supports_auth_refresh = 1;
    ff.supports_auth_refresh = 1;
    co.feature_flags = &ff;
    /* through a Pulsar proxy: the broker it is to forward this connection to
     * (without it the proxy serves lookups only, and closes the connection
     * on PRODUCER) */
    if (c->proxy_to[0])
        co.proxy_to_broker_url = c->proxy_to;
    err = hs_write_cmd(c, &cmd, deadline);
    up_wipe(tok, sizeof tok);
    if (err)
        return err;
    for (;;) {
        up_frame_t f;
        int rc = up_decoder_next(&c->dec, &f);
        if (rc < 0)
            return up_seterr((upulsar_err_t)rc, "handshake with %s:%d: malformed frame (%s)",
                             c->host, c->port, upulsar_err_str((upulsar_err_t)rc));
        if (rc == 1) {
            if (f.cmd->type == UP_CMD(CONNECTED)) {
                Pulsar__Proto__CommandConnected *cd = f.cmd->connected;
                int32_t max_size = cd->has_max_message_size && cd->max_message_size > 0
                                       ? cd->max_message_size
                                       : UP_DEFAULT_MAX_FRAME;
                c->dec.max_frame = (uint32_t)max_size + UP_FRAME_PADDING;
                atomic_store(&c->client->max_message_size, max_size);
                return UPULSAR_OK;
            }
            if (f.cmd->type == UP_CMD(ERROR)) {
                upulsar_err_t e = up_err_from_server(f.cmd->error->error);
                return up_seterr(e, "broker %s:%d refused the connection: %s (%s)", c->host,
                                 c->port, upulsar_err_str(e),
                                 f.cmd->error->message ? f.cmd->error->message : "");
            }
            if (f.cmd->type == UP_CMD(AUTH_CHALLENGE)) {
                up_buf_t ab = UP_BUF_INIT;
                err = auth_response_cmd(c, &ab);
                err = err ? err : hs_write_frame(c, &ab, deadline);
                up_buf_free(&ab);
                if (err)
                    return err;
                continue;
            }
            continue; /* anything else before CONNECTED: ignore */
        }
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        int pr = up_poll_until(&pf, deadline);
        if (pr == UP_POLL_CANCELLED)
            return up_seterr(UPULSAR_ERR__CLOSED, "handshake with %s:%d abandoned: stopping",
                             c->host, c->port);
        if (pr != 1)
            return up_seterr(UPULSAR_ERR__TIMED_OUT, "no CONNECTED from %s:%d", c->host,
                             c->port);
        size_t avail;
        uint8_t *w = up_decoder_wbuf(&c->dec, 4096, &avail);
        if (!w)
            return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
        uint8_t cipher[16384];
        ssize_t r = recv(c->fd, c->tls ? cipher : w, c->tls ? sizeof cipher : avail, 0);
        if (r == 0)
            return up_seterr(UPULSAR_ERR__CONNECT, "%s:%d closed the connection during handshake",
                             c->host, c->port);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return up_seterr(UPULSAR_ERR__CONNECT, "handshake read: %s", strerror(errno));
        }
        if (!c->tls) {
            up_decoder_commit(&c->dec, (size_t)r);
            continue;
        }
        if (up_tls_feed(c->tls, cipher, (size_t)r))
            return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
        for (;;) {
            w = up_decoder_wbuf(&c->dec, 4096, &avail);
            if (!w)
                return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
            long n = up_tls_read(c->tls, w, avail);
            if (n < 0)
                return (upulsar_err_t)n;
            if (n == 0)
                break;
            up_decoder_commit(&c->dec, (size_t)n);
        }
    }
}

static void attach_task(void *arg)
{
    up_conn_t *c = arg;
    up_loop_t *l = c->loop;
    if (l->nconns == l->cconns) {
        size_t n = l->cconns ? l->cconns * 2 : 8;
        up_conn_t **nc = realloc(l->conns, n * sizeof *nc);
        if (!nc) {
            up_conn_fail(c, UPULSAR_ERR__NOMEM);
            up_conn_unref(c);
            return;
        }
        l->conns = nc;
        l->cconns = n;
    }
    l->conns[l->nconns++] = c;
    c->last_rx_us = c->last_used_us = up_now_us();
    up_conn_arm_recv(c);
}

static upulsar_err_t dial(struct upulsar_client *cl, up_loop_t *l, const char *host, int port,
                         int slot, const char *proxy_to, up_conn_t **out);

/* A connection being opened. Threads that want the same one (same loop,
 * broker and slot) wait for it instead of opening their own: after a broker
 * restart every producer on it is re-created at once. The dialer unlinks
 * it when done; the last of the dialer and its waiters frees it. */
typedef struct up_dial {
    struct up_dial *next;
    up_loop_t *loop;
    char host[256];
    int port, slot;
    char proxy_to[280];
    int users;          /* dialer + waiters (pool_lock) */
    bool done;          /* (pool_lock) */
    upulsar_err_t err;  /* its result, once done */
    char why[256];      /* its error text */
} up_dial_t;

static void dial_put(up_dial_t *d) /* (pool_lock) */
{
    if (--d->users == 0)
        free(d);
}

/* An open pooled connection for the key, referenced, or NULL. (pool_lock) */
static up_conn_t *pool_find(struct upulsar_client *cl, up_loop_t *l, const char *host, int port,
                            int slot, const char *proxy_to)
{
    for (size_t i = 0; i < cl->npool; i++) {
        up_conn_t *c = cl->pool[i];
        if (c->loop == l && c->port == port && c->slot == slot && !strcmp(c->host, host) &&
            !strcmp(c->proxy_to, proxy_to) &&
            atomic_load(&c->state) == UP_CONN_OPEN) {
            up_conn_ref(c);
            return c;
        }
    }
    return NULL;
}

/* Under pool_lock: wait for @p d to finish (its dialer is bounded by
 * connection.timeout.ms; our wait also ends on cancellation). */
static upulsar_err_t dial_wait(struct upulsar_client *cl, up_dial_t *d)
{
    d->users++;
    while (!d->done && !up_cancelled()) {
        struct timespec end = up_deadline_ts(up_now_us() + CANCEL_SLICE_MS * 1000u);
        pthread_cond_timedwait(&cl->pool_cv, &cl->pool_lock, &end);
    }
    upulsar_err_t err = !d->done    ? up_seterr(UPULSAR_ERR__CLOSED, "connecting to %s:%d "
                                                "abandoned: stopping", d->host, d->port)
                        : d->err ? up_seterr(d->err, "%s", d->why)
                                 : UPULSAR_OK;
    dial_put(d);
    return err;
}

upulsar_err_t up_conn_get(struct upulsar_client *cl, up_loop_t *l, const char *host, int port,
                          int slot, const char *proxy_to, up_conn_t **out)
{
    if (!proxy_to)
        proxy_to = "";
    pthread_mutex_lock(&cl->pool_lock);
    up_conn_t *found;
    up_dial_t *d;
    for (;;) {
        if ((found = pool_find(cl, l, host, port, slot, proxy_to))) {
            pthread_mutex_unlock(&cl->pool_lock);
            *out = found;
            return UPULSAR_OK;
        }
        for (d = cl->dials; d; d = d->next)
            /* a dial in cl->dials still counts its dialer among its users (it
             * unlinks it before its dial_put()), so dial_wait() never freed it.
             * NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
            if (d->loop == l && d->port == port && d->slot == slot && !strcmp(d->host, host) &&
                !strcmp(d->proxy_to, proxy_to))
                break;
        if (!d)
            break;
        /* someone is opening it: share that attempt's outcome (a refused or
         * hung broker costs one connect timeout, not one per producer) */
        upulsar_err_t err = dial_wait(cl, d);
        if (err == UPULSAR_ERR__CLOSED && !up_cancelled())
            continue; /* the dialer's handle is stopping, not ours: dial again */
        if (err) {
            pthread_mutex_unlock(&cl->pool_lock);
            return err;
        }
        /* it opened: take it from the pool (or dial again if it died) */
    }
    d = calloc(1, sizeof *d);
    if (!d) {
        pthread_mutex_unlock(&cl->pool_lock);
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    }
    d->loop = l;
    snprintf(d->host, sizeof d->host, "%s", host);
    d->port = port;
    d->slot = slot;
    snprintf(d->proxy_to, sizeof d->proxy_to, "%s", proxy_to);
    d->users = 1;
    d->next = cl->dials;
    cl->dials = d;
    pthread_mutex_unlock(&cl->pool_lock);

    upulsar_err_t err = dial(cl, l, host, port, slot, proxy_to, out);

    pthread_mutex_lock(&cl->pool_lock);
    for (up_dial_t **pp = &cl->dials; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    d->done = true;
    d->err = err;
    if (err)
        snprintf(d->why, sizeof d->why, "%s", upulsar_last_error());
    pthread_cond_broadcast(&cl->pool_cv);
    dial_put(d);
    pthread_mutex_unlock(&cl->pool_lock);
    return err; /* upulsar_last_error() still holds dial()'s text */
}

/* Open a connection (TCP, TLS, CONNECT), add it to the pool and hand it to
 * loop @p l; *@p out gets the caller's reference. */
static upulsar_err_t dial(struct upulsar_client *cl, up_loop_t *l, const char *host, int port,
                         int slot, const char *proxy_to, up_conn_t **out)
{
    up_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    c->client = cl;
    c->loop = l;
    c->fd = -1;
    atomic_init(&c->refs, 1);
    atomic_init(&c->state, UP_CONN_OPEN);
    snprintf(c->host, sizeof c->host, "%s", host);
    c->port = port;
    c->slot = slot;
    snprintf(c->proxy_to, sizeof c->proxy_to, "%s", proxy_to);
    c->recv_op.type = UP_OP_RECV;
    c->recv_op.conn = c;
    c->send_op.type = UP_OP_SEND;
    c->send_op.conn = c;
    up_decoder_init(&c->dec, 0);
    uint64_t deadline = up_now_us() + (uint64_t)cl->conf.connection_timeout_ms * 1000u;
    upulsar_err_t err = tcp_connect(host, port, deadline, &c->fd);
    if (!err && cl->tls) {
        char peer[300];
        snprintf(peer, sizeof peer, "%s:%d", host, port);
        c->tls = up_tls_new(cl->ssl_ctx, host, &cl->conf);
        c->tls_rbuf = malloc(RECV_CHUNK);
        err = !c->tls || !c->tls_rbuf ? up_seterr(UPULSAR_ERR__NOMEM, "out of memory")
                                      : up_tls_handshake(c->tls, c->fd, deadline, peer);
    }
    if (!err)
        err = handshake(c, deadline);
    if (err) {
        up_conn_unref(c);
        /* every connection error names the broker */
        char peer[300], why[256];
        snprintf(peer, sizeof peer, "%s:%d", host, port);
        if (!strstr(upulsar_last_error(), peer)) {
            snprintf(why, sizeof why, "%s", upulsar_last_error());
            up_seterr(err, "%s: %s", peer, why);
        }
        return err;
    }
    /* Only a connection its loop will read may be found in the pool (one
     * that nobody reads would leave every request on it unanswered): the
     * attach task is posted first, under pool_lock, so that if the task
     * fails the connection (up_conn_fail takes pool_lock) it finds it
     * pooled already. */
    pthread_mutex_lock(&cl->pool_lock);
    if (cl->npool == cl->cpool) {
        size_t n = cl->cpool ? cl->cpool * 2 : 8;
        up_conn_t **np = realloc(cl->pool, n * sizeof *np);
        if (!np) {
            pthread_mutex_unlock(&cl->pool_lock);
            up_conn_unref(c);
            return up_seterr(UPULSAR_ERR__NOMEM, "%s:%d: out of memory", host, port);
        }
        cl->pool = np;
        cl->cpool = n;
    }
    up_conn_ref(c); /* the loop's */
    if (up_fault_hit(&up_fault_dial_post) || up_loop_post(l, attach_task, c)) {
        pthread_mutex_unlock(&cl->pool_lock);
        up_conn_unref(c); /* the loop's (refs was 2: not the last) */
        /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the first unref did not free c */
        up_conn_unref(c); /* ours: closes it */
        return up_seterr(UPULSAR_ERR__NOMEM,
                         "%s:%d: cannot hand the new connection to its I/O loop: out of memory",
                         host, port);
    }
    cl->pool[cl->npool++] = c;
    up_conn_ref(c); /* the pool's */
    atomic_fetch_add_explicit(&cl->conns_opened, 1, memory_order_relaxed);
    pthread_mutex_unlock(&cl->pool_lock);
    *out = c; /* the caller's */
    return UPULSAR_OK;
}

/* ---- output queue (loop) -------------------------------------------------- */

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

static struct io_uring_sqe *get_sqe(up_loop_t *l)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&l->uring);
    if (!sqe) {
        io_uring_submit(&l->uring);
        sqe = io_uring_get_sqe(&l->uring);
    }
    return sqe;
}

/* TLS: encrypt everything queued into tls_tx (only while no send is in
 * flight, so tls_tx never moves under the kernel) and send it. */
static void tls_flush(up_conn_t *c)
{
    if (c->tls_tx_off >= c->tls_tx.len) {
        c->tls_tx.len = c->tls_tx_off = 0;
        while (c->oq_len) {
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
        if (up_tls_drain(c->tls, &c->tls_tx)) { /* e.g. a key update answer */
            up_conn_fail(c, UPULSAR_ERR__NOMEM);
            return;
        }
        if (c->tls_tx.len == 0)
            return;
    }
    struct io_uring_sqe *sqe = get_sqe(c->loop);
    if (!sqe)
        return; /* try again next iteration */
    io_uring_prep_send(sqe, c->fd, c->tls_tx.data + c->tls_tx_off,
                       c->tls_tx.len - c->tls_tx_off, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, &c->send_op);
    c->send_inflight = true;
}

void up_conn_flush(up_conn_t *c)
{
    if (c->send_inflight || atomic_load_explicit(&c->state, memory_order_relaxed) != UP_CONN_OPEN)
        return;
    if (c->tls) {
        tls_flush(c);
        return;
    }
    if (c->oq_len == 0)
        return;
    int n = 0;
    for (size_t i = 0; i < c->oq_len && n < 64; i++) {
        up_seg_t *s = &c->outq[(c->oq_head + i) % c->oq_cap];
        size_t skip = i == 0 ? c->oq_sent : 0;
        c->iov[n].iov_base = (void *)(s->p + skip);
        c->iov[n].iov_len = s->len - skip;
        n++;
    }
    struct io_uring_sqe *sqe = get_sqe(c->loop);
    if (!sqe)
        return; /* try again next iteration */
    memset(&c->msg, 0, sizeof c->msg);
    c->msg.msg_iov = c->iov;
    c->msg.msg_iovlen = (size_t)n;
    io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data(sqe, &c->send_op);
    c->send_inflight = true;
}

static void seg_done(up_seg_t *s)
{
    up_wipe(s->owned, s->len); /* a control frame: AUTH_RESPONSE holds the token */
    free(s->owned);
    if (s->batch)
        up_batch_unref(s->batch);
}

static void drop_outq(up_conn_t *c)
{
    for (size_t i = 0; i < c->oq_len; i++)
        seg_done(&c->outq[(c->oq_head + i) % c->oq_cap]);
    c->oq_len = c->oq_head = c->oq_sent = 0;
}

void up_conn_on_send(up_conn_t *c, int res)
{
    c->send_inflight = false;
    if (atomic_load(&c->state) != UP_CONN_OPEN) {
        drop_outq(c);
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

/* ---- input (loop) ---------------------------------------------------------- */

void up_conn_arm_recv(up_conn_t *c)
{
    if (c->recv_inflight || atomic_load(&c->state) != UP_CONN_OPEN)
        return;
    size_t avail = RECV_CHUNK;
    uint8_t *w = c->tls ? c->tls_rbuf : up_decoder_wbuf(&c->dec, RECV_CHUNK, &avail);
    if (!w) {
        up_conn_fail(c, UPULSAR_ERR__NOMEM);
        return;
    }
    struct io_uring_sqe *sqe = get_sqe(c->loop);
    if (!sqe) {
        up_conn_fail(c, UPULSAR_ERR__IO);
        return;
    }
    io_uring_prep_recv(sqe, c->fd, w, avail, 0);
    io_uring_sqe_set_data(sqe, &c->recv_op);
    c->recv_inflight = true;
}

static up_rp_t *find_rp(up_conn_t *c, uint64_t producer_id)
{
    for (size_t i = 0; i < c->nrps; i++)
        if (c->rps[i]->producer_id == producer_id)
            return c->rps[i];
    return NULL;
}

static void complete_req(up_conn_t *c, uint64_t request_id, up_cmd_t *resp, upulsar_err_t err)
{
    for (up_req_t **pp = &c->reqs; *pp; pp = &(*pp)->next) {
        up_req_t *r = *pp;
        if (r->request_id != request_id)
            continue;
        if (resp && resp->type == UP_CMD(PRODUCER_SUCCESS) &&
            resp->producer_success->has_producer_ready && !resp->producer_success->producer_ready) {
            /* WaitForExclusive: queued; the real answer comes later */
            pthread_mutex_lock(&r->mu);
            r->waiting_ready = true;
            pthread_cond_broadcast(&r->cv);
            pthread_mutex_unlock(&r->mu);
            pulsar__proto__base_command__free_unpacked(resp, NULL);
            return;
        }
        *pp = r->next;
        c->last_used_us = up_now_us();
        pthread_mutex_lock(&r->mu);
        r->resp = resp;
        r->err = err;
        r->done = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    if (resp)
        pulsar__proto__base_command__free_unpacked(resp, NULL);
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
        if ((rp = find_rp(c, cp->producer_id)))
            /* a topic transfer names the new owner: go there directly */
            up_rp_on_close_producer(rp, c->tls ? cp->assignedbrokerserviceurltls
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
        for (up_req_t *r = c->reqs; r; r = r->next)
            if (r->producer_id == (int64_t)tm->resource_id) {
                complete_req(c, r->request_id, NULL, UPULSAR_ERR_SERVICE_NOT_READY);
                break; /* complete_req unlinked it */
            }
        break;
    }
    case UP_CMD(SUCCESS):
        complete_req(c, cmd->success->request_id, up_decoder_steal(&c->dec), UPULSAR_OK);
        break;
    case UP_CMD(PRODUCER_SUCCESS):
        complete_req(c, cmd->producer_success->request_id, up_decoder_steal(&c->dec),
                     UPULSAR_OK);
        break;
    case UP_CMD(LOOKUP_RESPONSE):
        complete_req(c, cmd->lookuptopicresponse->request_id, up_decoder_steal(&c->dec),
                     UPULSAR_OK);
        break;
    case UP_CMD(PARTITIONED_METADATA_RESPONSE):
        complete_req(c, cmd->partitionmetadataresponse->request_id, up_decoder_steal(&c->dec),
                     UPULSAR_OK);
        break;
    case UP_CMD(ERROR):
        complete_req(c, cmd->error->request_id, up_decoder_steal(&c->dec),
                     up_err_from_server(cmd->error->error));
        break;
    case UP_CMD(AUTH_CHALLENGE): {
        /* credentials refresh: answer with the token as it is now (a file
         * token is read again, so a rotated one is presented) */
        up_buf_t ab = UP_BUF_INIT;
        upulsar_err_t err = auth_response_cmd(c, &ab);
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
            up_conn_arm_recv(c);
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
            uint8_t *w = up_decoder_wbuf(&c->dec, RECV_CHUNK, &avail);
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
    up_conn_arm_recv(c);
}

void up_conn_fail(up_conn_t *c, upulsar_err_t why)
{
    int expect = UP_CONN_OPEN;
    if (!atomic_compare_exchange_strong(&c->state, &expect, UP_CONN_DEAD))
        return;
    /* the reason, for the application's log: the calling thread's last
     * error when it speaks of this failure (decoder, TLS, keep-alive) */
    if (why != UPULSAR_ERR__CLOSED)
        up_log(c->client, UPULSAR_LOG_WARNING, "connection to %s:%d%s%s dropped: %s (%s)",
               c->host, c->port, c->proxy_to[0] ? " for " : "", c->proxy_to,
               upulsar_err_name(why), up_last_error_for(why));
    shutdown(c->fd, SHUT_RDWR);
    struct upulsar_client *cl = c->client;
    bool pooled = false;
    pthread_mutex_lock(&cl->pool_lock);
    for (size_t i = 0; i < cl->npool; i++) {
        if (cl->pool[i] == c) {
            cl->pool[i] = cl->pool[--cl->npool];
            pooled = true;
            atomic_fetch_add_explicit(&cl->conns_closed, 1, memory_order_relaxed);
            break;
        }
    }
    pthread_mutex_unlock(&cl->pool_lock);
    while (c->reqs) {
        up_req_t *r = c->reqs;
        c->reqs = r->next;
        pthread_mutex_lock(&r->mu);
        r->err = UPULSAR_ERR__CONNECT;
        r->done = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    while (c->nrps)
        up_rp_detach(c->rps[c->nrps - 1], true);
    if (!c->send_inflight)
        drop_outq(c);
    if (pooled)
        up_conn_unref(c);
}

/* ---- idle connections (loop) ------------------------------------------------ */

/* References of a pooled connection nobody uses: the pool's and its loop's.
 * Every other holder (a registered producer, a thread between up_conn_get()
 * and its up_conn_unref(), a request waiting for its answer, a stop closing
 * its producer) adds one. */
#define UNUSED_REFS 2

/* In use as far as the loop can tell without pool_lock. */
static bool conn_in_use(up_conn_t *c)
{
    return c->nrps || c->reqs || c->oq_len || c->send_inflight ||
           c->tls_tx_off < c->tls_tx.len || atomic_load(&c->refs) > UNUSED_REFS;
}

/* connection.idle.timeout.ms passed since @p c was last used: close it
 * unless someone took it meanwhile. Under pool_lock nobody can find it
 * (pool_find() references it under that lock), so a connection with only
 * the pool's and the loop's references stays unused: it leaves the pool,
 * then closes with nothing pending on it. Returns whether it closed. */
static bool close_if_idle(up_conn_t *c, uint64_t now, int idle_ms)
{
    struct upulsar_client *cl = c->client;
    pthread_mutex_lock(&cl->pool_lock);
    bool idle = false; /* still pooled (not failed meanwhile) and unused */
    if (atomic_load(&c->refs) == UNUSED_REFS)
        for (size_t i = 0; i < cl->npool; i++)
            if (cl->pool[i] == c) {
                cl->pool[i] = cl->pool[--cl->npool];
                idle = true;
                break;
            }
    if (idle) {
        atomic_fetch_add_explicit(&cl->conns_closed, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&cl->conns_idle_closed, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&cl->pool_lock);
    if (!idle) {
        c->last_used_us = now; /* taken: its idle time starts again */
        return false;
    }
    up_log(cl, UPULSAR_LOG_INFO,
           "closing the connection to %s:%d%s%s: unused for %d ms (connection.idle.timeout.ms)",
           c->host, c->port, c->proxy_to[0] ? " for " : "", c->proxy_to, idle_ms);
    up_conn_fail(c, UPULSAR_ERR__CLOSED); /* not pooled any more: keeps the pool's reference */
    up_conn_unref(c);                     /* the pool's; the loop's remains */
    return true;
}

void up_conn_pool_stats(struct upulsar_client *cl, int *open, int *idle)
{
    int n = 0, unused = 0;
    pthread_mutex_lock(&cl->pool_lock);
    for (size_t i = 0; i < cl->npool; i++) {
        up_conn_t *c = cl->pool[i];
        if (atomic_load(&c->state) != UP_CONN_OPEN)
            continue;
        n++;
        if (atomic_load(&c->refs) == UNUSED_REFS)
            unused++;
    }
    pthread_mutex_unlock(&cl->pool_lock);
    *open = n;
    *idle = unused;
}

void up_conn_tick(up_conn_t *c, uint64_t now)
{
    if (atomic_load(&c->state) != UP_CONN_OPEN)
        return;
    int idle_ms = c->client->conf.connection_idle_timeout_ms;
    if (idle_ms > 0) {
        if (conn_in_use(c))
            c->last_used_us = now;
        else if (now - c->last_used_us >= (uint64_t)idle_ms * 1000u &&
                 close_if_idle(c, now, idle_ms))
            return;
    }
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

/* ---- requests ---------------------------------------------------------------- */

typedef struct {
    up_req_t *req;
    void (*pre)(void *);
    void *pre_arg;
} req_post_t;

static void req_send_task(void *arg)
{
    req_post_t *p = arg;
    up_req_t *r = p->req;
    up_conn_t *c = r->conn;
    if (p->pre)
        p->pre(p->pre_arg);
    if (atomic_load(&c->state) != UP_CONN_OPEN) {
        pthread_mutex_lock(&r->mu);
        r->err = UPULSAR_ERR__CONNECT;
        r->done = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    r->next = c->reqs;
    c->reqs = r;
    c->last_used_us = up_now_us();
    up_conn_write(c, r->frame.data, r->frame.len, r->frame.data, NULL);
    r->frame.data = NULL;
    /* c is still there if up_conn_write() failed it: up_conn_fail() drops only
     * the pool's reference; the requester (up_conn_request) holds its own.
     * NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
    up_conn_flush(c);
}

static void req_cancel_task(void *arg)
{
    up_req_t *r = arg;
    for (up_req_t **pp = &r->conn->reqs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            return;
        }
}

upulsar_err_t up_conn_request(up_conn_t *c, up_cmd_t *cmd, uint64_t request_id, int timeout_ms,
                              up_cmd_t **resp, void (*pre)(void *), void *pre_arg)
{
    *resp = NULL;
    up_req_t r;
    memset(&r, 0, sizeof r);
    r.request_id = request_id;
    r.producer_id = cmd->type == UP_CMD(PRODUCER) ? (int64_t)cmd->producer->producer_id : -1;
    r.conn = c;
    pthread_mutex_init(&r.mu, NULL);
    up_cond_init_monotonic(&r.cv);
    if (up_frame_put_cmd(&r.frame, cmd))
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    req_post_t post = {&r, pre, pre_arg};
    up_loop_call(c->loop, req_send_task, &post);
    free(r.frame.data);

    /* wait in slices, so a cancellation (up_cancel_on()) is seen soon */
    uint64_t deadline = up_now_us() + (uint64_t)timeout_ms * 1000u;
    bool cancelled = false, parked = false;
    pthread_mutex_lock(&r.mu);
    while (!r.done) {
        if (up_cancelled()) {
            cancelled = true;
            break;
        }
        if (r.waiting_ready && !parked) {
            /* a wait without end: let another thread take our place */
            parked = true;
            pthread_mutex_unlock(&r.mu);
            up_watchdog_parked(c->client, 1);
            pthread_mutex_lock(&r.mu);
            continue;
        }
        uint64_t now = up_now_us();
        if (!r.waiting_ready && now >= deadline) /* WaitForExclusive: no timeout */
            break;
        uint64_t slice = (uint64_t)CANCEL_SLICE_MS * 1000u;
        if (!r.waiting_ready && deadline - now < slice)
            slice = deadline - now;
        struct timespec end = up_deadline_ts(now + slice);
        pthread_cond_timedwait(&r.cv, &r.mu, &end);
    }
    bool done = r.done;
    pthread_mutex_unlock(&r.mu);
    if (parked)
        up_watchdog_parked(c->client, -1);
    if (!done) {
        up_loop_call(c->loop, req_cancel_task, &r);
        /* the loop may have completed it just before the cancel ran */
    }
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.cv);
    if (!r.done && cancelled)
        return up_seterr(UPULSAR_ERR__CLOSED, "%s request to %s:%d abandoned: stopping",
                         up_cmd_name(cmd->type), c->host, c->port);
    if (!r.done)
        return up_seterr(UPULSAR_ERR__TIMED_OUT, "%s request to %s:%d timed out after %d ms",
                         up_cmd_name(cmd->type), c->host, c->port, timeout_ms);
    *resp = r.resp;
    if (r.err == UPULSAR_ERR__CONNECT)
        up_seterr(r.err, "connection to %s:%d lost during %s", c->host, c->port,
                  up_cmd_name(cmd->type));
    else if (r.err && r.resp && r.resp->type == UP_CMD(ERROR))
        up_seterr(r.err, "%s: %s (%s)", up_cmd_name(cmd->type), upulsar_err_str(r.err),
                  r.resp->error->message ? r.resp->error->message : "");
    else if (r.err == UPULSAR_ERR_SERVICE_NOT_READY && !r.resp)
        up_seterr(r.err, "%s to %s:%d: the topic migrated to another cluster",
                  up_cmd_name(cmd->type), c->host, c->port);
    return r.err;
}
