/* conn_dial.c -- opening a connection, on the thread that wants it (caller,
 * establish worker or watchdog; never a loop): TCP connect, TLS handshake,
 * CONNECT with the credentials (and the answers to AUTH_CHALLENGE), all
 * blocking, bounded by connection.timeout.ms and cancellable
 * (up_cancel_on()). Threads that want the same connection share one attempt
 * (up_dial_t); a ready connection goes to the pool and to its loop
 * (up_conn_pool_add()). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "clock.h"
#include "conn.h"
#include "engine.h"
#include "err.h"
#include "resolve.h"
#include "tls.h"

#define CLIENT_VERSION "upulsar-" UPULSAR_VERSION_STR
#define PROTOCOL_VERSION 20

/* ---- blocking connect and handshake -------------------------------------- */

static int deadline_left_ms(uint64_t deadline_us)
{
    uint64_t now = up_now_us();
    return now >= deadline_us ? 0 : (int)((deadline_us - now + 999) / 1000);
}

int up_poll_until(struct pollfd *p, uint64_t deadline_us)
{
    for (;;) {
        if (up_cancelled())
            return UP_POLL_CANCELLED;
        int left = deadline_left_ms(deadline_us);
        int r = poll(p, 1, left < UP_CANCEL_SLICE_MS ? left : UP_CANCEL_SLICE_MS);
        if (r > 0 || (r < 0 && errno != EINTR))
            return r;
        if (r == 0 && left <= UP_CANCEL_SLICE_MS)
            return 0;
    }
}

static upulsar_err_t tcp_connect(const char *host, int port, uint64_t deadline, int timeout_ms,
                                 int *out)
{
    struct addrinfo *res;
    upulsar_err_t rerr = up_resolve(host, port, deadline, timeout_ms, &res);
    if (rerr)
        return rerr;
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
                err = up_seterr(UPULSAR_ERR__CONNECT, "connect to %s:%d timed out "
                                "(connection.timeout.ms=%d)", host, port, timeout_ms);
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

/* ---- what answers, when it is not a Pulsar broker ------------------------ *
 * The usual mistakes in a service URL, told apart by what the server sends
 * (or by asking it once more, on a connection of its own, in the other
 * protocol) and named in the error with what to do. A wrong URL does not
 * fix itself: these errors are not retriable (upulsar_err_is_retriable()),
 * so a start fails on the first attempt that sees one. */

#define HINT_TLS "looks like TLS: use pulsar+ssl://"
#define HINT_HTTP "this is an HTTP port (the web service?), the binary protocol is usually port "
#define HINT_PLAIN "the server does not speak TLS: use pulsar://"

/* A TLS record header: content type alert (21) or handshake (22), then
 * version 3.0 .. 3.4. No Pulsar frame starts so (a totalSize of 350 MB). */
static bool is_tls_record(const uint8_t *p, size_t n)
{
    return n >= 3 && (p[0] == 0x15 || p[0] == 0x16) && p[1] == 0x03 && p[2] <= 0x04;
}

/* An HTTP status line, or an HTML page without one (an HTTP/0.9 answer, as
 * some servers give a request line they cannot read) */
static bool is_http(const uint8_t *p, size_t n)
{
    return n >= 4 && (!memcmp(p, "HTTP", 4) || !strncasecmp((const char *)p, "<!do", 4) ||
                      !strncasecmp((const char *)p, "<htm", 4));
}

static upulsar_err_t http_hint(const char *host, int port, bool tls, const uint8_t *p, size_t n)
{
    size_t len = 0; /* its status line, e.g. "HTTP/1.1 400 Bad Request" */
    while (len < n && len < 40 && p[len] >= 0x20 && p[len] < 0x7f)
        len++;
    return up_seterr(UPULSAR_ERR__INVALID_URL, "%s:%d answered \"%.*s\": " HINT_HTTP "%d",
                     host, port, (int)len, (const char *)p, tls ? 6651 : 6650);
}

/* What the server of @p c sent during the handshake that is not a frame
 * (still in the decoder): a hint set as the error, or UPULSAR_OK when it is
 * nothing known. */
static upulsar_err_t hint_from_bytes(const up_conn_t *c)
{
    size_t n = c->dec.buf.len - c->dec.off;
    if (!n)
        return UPULSAR_OK;
    const uint8_t *p = c->dec.buf.data + c->dec.off;
    if (is_http(p, n))
        return http_hint(c->host, c->port, c->tls != NULL, p, n);
    if (!c->tls && is_tls_record(p, n))
        return up_seterr(UPULSAR_ERR__TLS, "%s:%d answered with a TLS %s: " HINT_TLS, c->host,
                         c->port, p[0] == 0x15 ? "alert" : "handshake");
    return UPULSAR_OK;
}

/* Whether host:port answers a TLS ClientHello with a TLS record: asked when
 * a server closed our CONNECT without a byte, as TLS servers do with what
 * is not TLS. A connection of its own, within @p deadline. Overwrites
 * upulsar_last_error(). */
static bool answers_tls(const char *host, int port, uint64_t deadline)
{
    bool yes = false;
    int fd = -1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    BIO *rb = ssl ? BIO_new(BIO_s_mem()) : NULL, *wb = rb ? BIO_new(BIO_s_mem()) : NULL;
    if (!wb) {
        BIO_free(rb);
        goto out;
    }
    SSL_set_bio(ssl, rb, wb); /* the session owns them now */
    SSL_set_connect_state(ssl);
    unsigned char ip[16];
    if (inet_pton(AF_INET, host, ip) != 1 && inet_pton(AF_INET6, host, ip) != 1)
        SSL_set_tlsext_host_name(ssl, host); /* SNI: a server may answer only with it */
    SSL_do_handshake(ssl); /* writes the ClientHello into wb, then wants an answer */
    char *hello;
    long n = BIO_get_mem_data(wb, &hello);
    if (n <= 0 || tcp_connect(host, port, deadline, 0, &fd) ||
        write_all(fd, (const uint8_t *)hello, (size_t)n, deadline))
        goto out;
    uint8_t b[3];
    size_t got = 0;
    while (got < sizeof b) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (up_poll_until(&pf, deadline) != 1)
            break;
        ssize_t r = recv(fd, b + got, sizeof b - got, 0);
        if (r > 0)
            got += (size_t)r;
        else if (r == 0 || (errno != EAGAIN && errno != EINTR))
            break;
    }
    yes = is_tls_record(b, got);
out:
    if (fd >= 0)
        close(fd);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return yes;
}

enum { PEER_UNKNOWN, PEER_PULSAR, PEER_HTTP };

/* What host:port answers a plain CONNECT with (no credentials in it): asked
 * when a pulsar+ssl:// TLS handshake failed, to tell a plain Pulsar port,
 * or an HTTP one, from a TLS server that refused us. A connection of its
 * own, within @p deadline. Overwrites upulsar_last_error(). */
static int answers_plain(const char *host, int port, uint64_t deadline)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandConnect co = PULSAR__PROTO__COMMAND_CONNECT__INIT;
    cmd.type = UP_CMD(CONNECT);
    cmd.connect = &co;
    co.client_version = CLIENT_VERSION;
    co.has_protocol_version = 1;
    co.protocol_version = PROTOCOL_VERSION;
    up_buf_t b = UP_BUF_INIT;
    up_decoder_t *d = malloc(sizeof *d);
    int fd = -1, kind = PEER_UNKNOWN;
    if (!d)
        return kind;
    up_decoder_init(d, 0);
    if (up_frame_put_cmd(&b, &cmd) || tcp_connect(host, port, deadline, 0, &fd) ||
        write_all(fd, b.data, b.len, deadline))
        goto out;
    for (;;) {
        size_t n = d->buf.len - d->off;
        if (n && is_http(d->buf.data + d->off, n)) {
            kind = PEER_HTTP;
            break;
        }
        up_frame_t f;
        int rc = up_decoder_next(d, &f);
        if (rc) {
            kind = rc == 1 ? PEER_PULSAR : PEER_UNKNOWN;
            break;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (up_poll_until(&pf, deadline) != 1)
            break;
        size_t avail;
        uint8_t *w = up_decoder_wbuf(d, 512, &avail);
        ssize_t r = w ? recv(fd, w, avail, 0) : -1;
        if (r > 0)
            up_decoder_commit(d, (size_t)r);
        else if (!w || r == 0 || (errno != EAGAIN && errno != EINTR))
            break;
    }
out:
    if (fd >= 0)
        close(fd);
    up_buf_free(&b);
    up_decoder_free(d);
    free(d);
    return kind;
}

/* The TLS handshake with host:port failed (not for a timeout): ask the
 * port in plain Pulsar whether it is a plain (or an HTTP) port; otherwise
 * the TLS error stands. */
static upulsar_err_t tls_failed(const char *host, int port, upulsar_err_t err, uint64_t deadline)
{
    char why[256];
    snprintf(why, sizeof why, "%s", upulsar_last_error());
    int kind = answers_plain(host, port, deadline);
    if (kind == PEER_PULSAR)
        return up_seterr(UPULSAR_ERR__TLS, "%s:%d failed the TLS handshake and answers a plain "
                         "CONNECT: " HINT_PLAIN, host, port);
    if (kind == PEER_HTTP)
        return up_seterr(UPULSAR_ERR__INVALID_URL, "%s:%d failed the TLS handshake and answers "
                         "in HTTP: " HINT_HTTP "6651", host, port);
    return up_seterr(err, "%s", why);
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
upulsar_err_t up_conn_auth_response(up_conn_t *c, up_buf_t *out)
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

/* The server of @p c closed the connection (@p e 0) or reset it (errno
 * @p e) before CONNECTED. What it sent may name what it is; a server that
 * sent nothing at all may be a TLS server (they drop what is not TLS
 * without a word): then it is asked. */
static upulsar_err_t closed_in_handshake(up_conn_t *c, int e, bool received, uint64_t deadline)
{
    upulsar_err_t hint = hint_from_bytes(c);
    if (hint)
        return hint;
    if (!c->tls && !received && (!e || e == ECONNRESET) && answers_tls(c->host, c->port, deadline))
        return up_seterr(UPULSAR_ERR__TLS, "%s:%d dropped our CONNECT and answers TLS: " HINT_TLS,
                         c->host, c->port);
    if (e)
        return up_seterr(UPULSAR_ERR__CONNECT, "%s:%d: handshake read: %s", c->host, c->port,
                         strerror(e));
    return up_seterr(UPULSAR_ERR__CONNECT, "%s:%d closed the connection during handshake",
                     c->host, c->port);
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
    /* we answer the broker's AUTH_CHALLENGE refreshes (up_conn_auth_response) */
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
    bool received = false; /* any byte from the server */
    for (;;) {
        up_frame_t f;
        int rc = up_decoder_next(&c->dec, &f);
        if (rc < 0) {
            upulsar_err_t hint = hint_from_bytes(c);
            if (hint)
                return hint;
            return up_seterr((upulsar_err_t)rc, "handshake with %s:%d: malformed frame (%s)",
                             c->host, c->port, upulsar_err_str((upulsar_err_t)rc));
        }
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
                err = up_conn_auth_response(c, &ab);
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
            return up_seterr(UPULSAR_ERR__TIMED_OUT, "no CONNECTED from %s:%d within "
                             "connection.timeout.ms=%d", c->host, c->port,
                             cf->connection_timeout_ms);
        size_t avail;
        uint8_t *w = up_decoder_wbuf(&c->dec, 4096, &avail);
        if (!w)
            return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
        uint8_t cipher[16384];
        ssize_t r = recv(c->fd, c->tls ? cipher : w, c->tls ? sizeof cipher : avail, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (r <= 0)
            return closed_in_handshake(c, r ? errno : 0, received, deadline);
        received = true;
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
            if (n < 0) { /* e.g. closed: what it sent before may say why */
                upulsar_err_t hint = hint_from_bytes(c);
                return hint ? hint : (upulsar_err_t)n;
            }
            if (n == 0)
                break;
            up_decoder_commit(&c->dec, (size_t)n);
        }
    }
}

/* Open a connection (TCP, TLS, CONNECT), add it to the pool and hand it to
 * loop @p l; *@p out gets the caller's reference. */
static upulsar_err_t dial(struct upulsar_client *cl, up_loop_t *l, const char *host, int port,
                         int slot, const char *proxy_to, bool proxy_tls, up_conn_t **out)
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
    c->proxy_tls = proxy_to[0] && proxy_tls;
    c->recv_op.type = UP_OP_RECV;
    c->recv_op.conn = c;
    c->send_op.type = UP_OP_SEND;
    c->send_op.conn = c;
    up_decoder_init(&c->dec, 0);
    int timeout_ms = cl->conf.connection_timeout_ms;
    uint64_t deadline = up_now_us() + (uint64_t)timeout_ms * 1000u;
    upulsar_err_t err = tcp_connect(host, port, deadline, timeout_ms, &c->fd);
    if (!err && cl->tls) {
        char peer[300];
        snprintf(peer, sizeof peer, "%s:%d", host, port);
        c->tls = up_tls_new(cl->ssl_ctx, host, &cl->conf);
        c->tls_rbuf = malloc(UP_CONN_RECV_CHUNK);
        err = !c->tls || !c->tls_rbuf ? up_seterr(UPULSAR_ERR__NOMEM, "out of memory")
                                      : up_tls_handshake(c->tls, c->fd, deadline, peer);
        if (err && err != UPULSAR_ERR__TIMED_OUT && err != UPULSAR_ERR__CLOSED &&
            err != UPULSAR_ERR__NOMEM)
            err = tls_failed(host, port, err, deadline);
    }
    if (!err)
        err = handshake(c, deadline);
    if (err) {
        up_conn_unref(c);
        /* every connection error names the broker, and a timeout its bound */
        char peer[300], why[256];
        snprintf(peer, sizeof peer, "%s:%d", host, port);
        snprintf(why, sizeof why, "%s", upulsar_last_error());
        if (!strstr(why, peer))
            up_seterr(err, "%s: %s", peer, why);
        else if (err == UPULSAR_ERR__TIMED_OUT && !strstr(why, "connection.timeout.ms"))
            up_seterr(err, "%s (connection.timeout.ms=%d)", why, timeout_ms);
        /* each failed attempt is seen at once, not only when the caller
         * gives up (a start retries refusals until operation.timeout.ms);
         * a broker's refusal is the caller's to report */
        if (err < 0 && err != UPULSAR_ERR__CLOSED) {
            snprintf(why, sizeof why, "%s", upulsar_last_error());
            up_log_at(cl, UPULSAR_LOG_WARNING, &(up_log_at_t){.err = err, .partition = -1, .broker = peer}, "connecting to %s://%s failed: %s: %s",
                   cl->tls ? "pulsar+ssl" : "pulsar", peer, upulsar_err_name(err), why);
            up_seterr(err, "%s", why); /* as it was, whatever the log callback did */
        }
        return err;
    }
    err = up_conn_pool_add(c);
    if (err)
        return err; /* closed, with our reference */
    *out = c; /* the caller's */
    return UPULSAR_OK;
}

/* ---- shared dials ---------------------------------------------------------- */

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

/* Under pool_lock: wait for @p d to finish (its dialer is bounded by
 * connection.timeout.ms; our wait also ends on cancellation). */
static upulsar_err_t dial_wait(struct upulsar_client *cl, up_dial_t *d)
{
    d->users++;
    while (!d->done && !up_cancelled()) {
        struct timespec end = up_deadline_ts(up_now_us() + UP_CANCEL_SLICE_MS * 1000u);
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
                          int slot, const char *proxy_to, bool proxy_tls, up_conn_t **out)
{
    if (!proxy_to)
        proxy_to = "";
    pthread_mutex_lock(&cl->pool_lock);
    up_conn_t *found;
    up_dial_t *d;
    for (;;) {
        if ((found = up_conn_pool_find(cl, l, host, port, slot, proxy_to))) {
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

    upulsar_err_t err = dial(cl, l, host, port, slot, proxy_to, proxy_tls, out);

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
