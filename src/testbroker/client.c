/* client.c -- a minimal raw Pulsar protocol client for tests. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "conf.h"
#include "err.h"
#include "tb.h"
#include "tls.h"

#define RX_SIZE (64 * 1024)

struct upulsar_tb_client {
    int fd;
    bool peer_closed;
    up_decoder_t dec;
    uint64_t next_rid;
    /* pulsar+ssl:// */
    SSL_CTX *ctx;
    up_tls_t *tls;
    uint8_t *rx;              /**< ciphertext read buffer */
    upulsar_err_t tls_err;    /**< the session failed (after the handshake) */
    char tls_msg[256];
};

static int64_t deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : tb_now_ms() + timeout_ms;
}

static int remaining(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t r = deadline - tb_now_ms();
    return r < 0 ? 0 : (int)(r > 3600000 ? 3600000 : r);
}

static upulsar_err_t parse_url(const char *url, char *host, size_t hsz, char *port,
                               size_t psz, bool *tls)
{
    const char *p;
    *tls = url && !strncmp(url, "pulsar+ssl://", 13);
    if (!url || (strncmp(url, "pulsar://", 9) && !*tls))
        return up_seterr(UPULSAR_ERR__INVALID_URL,
                         "expected pulsar://host:port or pulsar+ssl://host:port, got \"%s\"",
                         url ? url : "(null)");
    p = url + (*tls ? 13 : 9);
    const char *colon = strrchr(p, ':');
    const char *end = p + strcspn(p, "/");
    if (!colon || colon > end || colon == p)
        return up_seterr(UPULSAR_ERR__INVALID_URL, "no port in \"%s\"", url);
    size_t hl = (size_t)(colon - p), pl = (size_t)(end - colon - 1);
    if (*p == '[' && hl >= 2 && p[hl - 1] == ']') { /* [v6] */
        p++;
        hl -= 2;
    }
    if (hl == 0 || hl >= hsz || pl == 0 || pl >= psz)
        return up_seterr(UPULSAR_ERR__INVALID_URL, "bad host or port in \"%s\"", url);
    memcpy(host, p, hl);
    host[hl] = 0;
    memcpy(port, colon + 1, pl);
    port[pl] = 0;
    return UPULSAR_OK;
}

void upulsar_tb_client_opts_init(upulsar_tb_client_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->tls_verify_hostname = 1;
    o->answer_challenge = 1;
}

static upulsar_err_t copy_path(char *dst, size_t size, const char *src, const char *what)
{
    if (!src)
        return UPULSAR_OK;
    if (strlen(src) >= size)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "%s: path too long", what);
    memcpy(dst, src, strlen(src) + 1);
    return UPULSAR_OK;
}

/* TLS handshake on connected socket @p fd with the library's TLS layer. */
static upulsar_err_t tls_start(upulsar_tb_client_t *c, const char *host, const char *port,
                               const upulsar_tb_client_opts_t *o, int64_t deadline_ms)
{
    struct upulsar_conf *cf = calloc(1, sizeof *cf);
    if (!cf)
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    up_conf_defaults(cf);
    upulsar_err_t err = copy_path(cf->tls_ca_file, sizeof cf->tls_ca_file, o->tls_ca_file,
                                  "tls_ca_file");
    if (!err)
        err = copy_path(cf->tls_cert_file, sizeof cf->tls_cert_file, o->tls_cert_file,
                        "tls_cert_file");
    if (!err)
        err = copy_path(cf->tls_key_file, sizeof cf->tls_key_file, o->tls_key_file,
                        "tls_key_file");
    cf->tls_verify_hostname = o->tls_verify_hostname != 0;
    cf->tls_allow_insecure = o->tls_ca_file == NULL;
    if (!err)
        err = up_tls_ctx_new(cf, &c->ctx);
    if (!err && !(c->tls = up_tls_new(c->ctx, host, cf)))
        err = up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    if (!err && !(c->rx = malloc(RX_SIZE)))
        err = up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    free(cf);
    if (err)
        return err;
    char peer[300];
    snprintf(peer, sizeof peer, "%s:%s", host, port);
    uint64_t dl_us = deadline_ms < 0 ? UINT64_MAX / 2 : (uint64_t)deadline_ms * 1000u;
    return up_tls_handshake(c->tls, c->fd, dl_us, peer);
}

upulsar_err_t upulsar_tb_client_open(const char *url, int timeout_ms,
                                     upulsar_tb_client_t **out)
{
    return upulsar_tb_client_open_opts(url, NULL, timeout_ms, out);
}

upulsar_err_t upulsar_tb_client_open_opts(const char *url, const upulsar_tb_client_opts_t *opts,
                                          int timeout_ms, upulsar_tb_client_t **out)
{
    if (!out)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_client_open: out is NULL");
    *out = NULL;
    upulsar_tb_client_opts_t o;
    if (opts)
        o = *opts;
    else
        upulsar_tb_client_opts_init(&o);
    char host[256], port[16];
    bool tls;
    upulsar_err_t err = parse_url(url, host, sizeof host, port, sizeof port, &tls);
    if (err)
        return err;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gr = getaddrinfo(host, port, &hints, &ai);
    if (gr)
        return up_seterr(UPULSAR_ERR__CONNECT, "resolve %s: %s", host, gai_strerror(gr));
    int64_t dl = deadline_after(timeout_ms);
    int fd = -1;
    err = UPULSAR_ERR__CONNECT;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            struct pollfd pfd = {fd, POLLOUT, 0};
            int pr = poll(&pfd, 1, remaining(dl));
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (pr > 0 && !getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) && soerr == 0)
                break;
            if (pr == 0)
                err = UPULSAR_ERR__TIMED_OUT;
            else
                errno = soerr;
        }
        up_seterr(err, "connect %s:%s: %s", host, port,
                  err == UPULSAR_ERR__TIMED_OUT ? "timed out" : strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return err;
    upulsar_tb_client_t *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return up_seterr(UPULSAR_ERR__NOMEM, "upulsar_tb_client_open");
    }
    c->fd = fd;
    c->next_rid = 1;
    up_decoder_init(&c->dec, 0);
    if (tls && (err = tls_start(c, host, port, &o, dl))) {
        upulsar_tb_client_close(c);
        return err;
    }
    *out = c;
    return UPULSAR_OK;
}

void upulsar_tb_client_close(upulsar_tb_client_t *c)
{
    if (!c)
        return;
    close(c->fd);
    up_decoder_free(&c->dec);
    up_tls_free(c->tls);
    up_tls_ctx_free(c->ctx);
    free(c->rx);
    free(c);
}

uint64_t upulsar_tb_client_next_request_id(upulsar_tb_client_t *c)
{
    return c ? c->next_rid++ : 0;
}

/* Write @p len bytes to the socket as they are. */
static upulsar_err_t sock_send(upulsar_tb_client_t *c, const void *bytes, size_t len)
{
    const uint8_t *p = bytes;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {c->fd, POLLOUT, 0};
            if (poll(&pfd, 1, 30000) <= 0)
                return up_seterr(UPULSAR_ERR__TIMED_OUT, "send: peer does not read");
            continue;
        }
        if (errno == EPIPE || errno == ECONNRESET) {
            c->peer_closed = true;
            return up_seterr(UPULSAR_ERR__CLOSED, "send: connection closed by the peer");
        }
        return up_seterr(UPULSAR_ERR__IO, "send: %s", strerror(errno));
    }
    return UPULSAR_OK;
}

upulsar_err_t upulsar_tb_client_send_raw(upulsar_tb_client_t *c, const void *bytes, size_t len)
{
    if (!c || (!bytes && len))
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_client_send_raw: NULL");
    if (!c->tls)
        return sock_send(c, bytes, len);
    up_buf_t enc = UP_BUF_INIT;
    int rc = up_tls_encrypt(c->tls, bytes, len, &enc);
    upulsar_err_t err = rc ? (upulsar_err_t)rc : sock_send(c, enc.data, enc.len);
    if (enc.data)
        memset(enc.data, 0, enc.len);
    up_buf_free(&enc);
    return err;
}

/* TLS: decrypt @p n received bytes into the decoder. */
static upulsar_err_t tls_received(upulsar_tb_client_t *c, size_t n)
{
    if (up_tls_feed(c->tls, c->rx, n))
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    for (;;) {
        size_t avail;
        uint8_t *w = up_decoder_wbuf(&c->dec, 64 * 1024, &avail);
        if (!w)
            return up_seterr(UPULSAR_ERR__NOMEM, "read buffer");
        long r = up_tls_read(c->tls, w, avail);
        if (r == 0)
            break;
        if (r < 0) { /* the session ended (close_notify, alert): after the frames before it */
            c->peer_closed = true;
            if (r != UPULSAR_ERR__CONNECT) {
                c->tls_err = (upulsar_err_t)r;
                snprintf(c->tls_msg, sizeof c->tls_msg, "%s", upulsar_last_error());
            }
            return UPULSAR_OK;
        }
        up_decoder_commit(&c->dec, (size_t)r);
    }
    up_buf_t out = UP_BUF_INIT; /* e.g. a key update answer */
    upulsar_err_t err = UPULSAR_OK;
    if (up_tls_drain(c->tls, &out))
        err = up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    else if (out.len)
        err = sock_send(c, out.data, out.len);
    up_buf_free(&out);
    return err;
}

upulsar_err_t upulsar_tb_client_send_cmd(upulsar_tb_client_t *c,
                                         const struct Pulsar__Proto__BaseCommand *cmd)
{
    if (!c || !cmd)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_client_send_cmd: NULL");
    up_buf_t b = UP_BUF_INIT;
    int rc = up_frame_put_cmd(&b, cmd);
    upulsar_err_t err = rc ? up_seterr((upulsar_err_t)rc, "cannot frame the command")
                           : upulsar_tb_client_send_raw(c, b.data, b.len);
    up_buf_free(&b);
    return err;
}

upulsar_err_t upulsar_tb_client_read(upulsar_tb_client_t *c, int timeout_ms,
                                     upulsar_tb_frame_t *out)
{
    if (!c || !out)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_client_read: NULL");
    int64_t dl = deadline_after(timeout_ms);
    for (;;) {
        up_frame_t f;
        int rc = up_decoder_next(&c->dec, &f);
        if (rc == 1 || rc == UPULSAR_ERR__BAD_CHECKSUM) {
            memset(out, 0, sizeof *out);
            out->type = (int)f.cmd->type;
            out->cmd = f.cmd;
            out->has_payload = f.has_payload;
            out->has_crc = f.has_crc;
            out->crc_ok = rc == 1;
            out->metadata = f.metadata;
            out->metadata_len = f.metadata_len;
            out->payload = f.payload;
            out->payload_len = f.payload_len;
            return UPULSAR_OK;
        }
        if (rc < 0)
            return up_seterr((upulsar_err_t)rc, "malformed frame from the peer");
        if (c->peer_closed && c->tls_err)
            return up_seterr(c->tls_err, "%s", c->tls_msg);
        if (c->peer_closed)
            return up_seterr(UPULSAR_ERR__CLOSED, "connection closed by the peer");
        int rem = remaining(dl);
        struct pollfd pfd = {c->fd, POLLIN, 0};
        int pr = rem == 0 ? 0 : poll(&pfd, 1, rem);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            return up_seterr(UPULSAR_ERR__TIMED_OUT, "no complete frame within %d ms",
                             timeout_ms);
        size_t avail = RX_SIZE;
        uint8_t *w = c->tls ? c->rx : up_decoder_wbuf(&c->dec, 64 * 1024, &avail);
        if (!w)
            return up_seterr(UPULSAR_ERR__NOMEM, "read buffer");
        ssize_t n = recv(c->fd, w, avail, 0);
        if (n > 0 && c->tls) {
            upulsar_err_t err = tls_received(c, (size_t)n);
            if (err)
                return err;
        } else if (n > 0) {
            up_decoder_commit(&c->dec, (size_t)n);
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            c->peer_closed = true;
        }
    }
}

upulsar_err_t upulsar_tb_client_expect(upulsar_tb_client_t *c, int type, int timeout_ms,
                                       upulsar_tb_frame_t *f)
{
    int64_t dl = deadline_after(timeout_ms);
    for (;;) {
        upulsar_err_t err = upulsar_tb_client_read(c, remaining(dl), f);
        if (err)
            return err;
        /* read() filled *f: it returned OK (up_seterr() never returns 0).
         * NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
        if (f->type == type)
            return UPULSAR_OK;
        if (f->type == UP_CMD(PING)) {
            up_buf_t b = UP_BUF_INIT;
            int rc = tb_put_simple(&b, UP_CMD(PONG));
            err = rc ? (upulsar_err_t)rc : upulsar_tb_client_send_raw(c, b.data, b.len);
            up_buf_free(&b);
            if (err)
                return err;
            continue;
        }
        if (f->type == UP_CMD(PONG))
            continue;
        return up_seterr(UPULSAR_ERR__STATE, "expected %s, got %s", up_cmd_name(type),
                         up_cmd_name(f->type));
    }
}

/* Wait for the answer to request @p rid: @p ok_type, or ERROR mapped to a
 * broker error code. */
static upulsar_err_t await_answer(upulsar_tb_client_t *c, int ok_type, uint64_t rid,
                                  int timeout_ms, upulsar_tb_frame_t *f)
{
    upulsar_err_t err = upulsar_tb_client_expect(c, ok_type, timeout_ms, f);
    /* STATE comes only from expect() itself, after a frame was read into *f.
     * NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
    if (err == UPULSAR_ERR__STATE && f->type == UP_CMD(ERROR) && f->cmd->error->request_id == rid)
        return up_seterr(up_err_from_server((int)f->cmd->error->error), "broker: %s",
                         f->cmd->error->message ? f->cmd->error->message : "");
    return err;
}

upulsar_err_t upulsar_tb_client_auth_response(upulsar_tb_client_t *c, const char *method,
                                              const char *data)
{
    if (!c)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_client_auth_response: NULL");
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandAuthResponse ar = PULSAR__PROTO__COMMAND_AUTH_RESPONSE__INIT;
    Pulsar__Proto__AuthData ad = PULSAR__PROTO__AUTH_DATA__INIT;
    cmd.type = UP_CMD(AUTH_RESPONSE);
    cmd.authresponse = &ar;
    ar.client_version = "upulsar-testbroker-client";
    ar.has_protocol_version = 1;
    ar.protocol_version = TB_PROTOCOL_MAX;
    ar.response = &ad;
    ad.auth_method_name = (char *)(method ? method : "token");
    if (data) {
        ad.has_auth_data = 1;
        ad.auth_data.data = (uint8_t *)data;
        ad.auth_data.len = strlen(data);
    }
    up_buf_t b = UP_BUF_INIT;
    int rc = up_frame_put_cmd(&b, &cmd);
    upulsar_err_t err = rc ? up_seterr((upulsar_err_t)rc, "cannot frame AUTH_RESPONSE")
                           : upulsar_tb_client_send_raw(c, b.data, b.len);
    if (b.data)
        memset(b.data, 0, b.len); /* it holds a credential */
    up_buf_free(&b);
    return err;
}

upulsar_err_t upulsar_tb_client_connect_opts(const char *url, const upulsar_tb_client_opts_t *opts,
                                             int timeout_ms, upulsar_tb_client_t **out)
{
    if (!out)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_client_connect: out is NULL");
    *out = NULL;
    upulsar_tb_client_opts_t o;
    if (opts)
        o = *opts;
    else
        upulsar_tb_client_opts_init(&o);
    int64_t dl = deadline_after(timeout_ms);
    upulsar_tb_client_t *c;
    upulsar_err_t err = upulsar_tb_client_open_opts(url, &o, timeout_ms, &c);
    if (err)
        return err;
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandConnect cn = PULSAR__PROTO__COMMAND_CONNECT__INIT;
    cmd.type = UP_CMD(CONNECT);
    cmd.connect = &cn;
    cn.client_version = "upulsar-testbroker-client";
    cn.auth_method_name = (char *)(o.auth_method ? o.auth_method : o.token ? "token" : "none");
    if (o.token) {
        cn.has_auth_data = 1;
        cn.auth_data.data = (uint8_t *)o.token;
        cn.auth_data.len = strlen(o.token);
    }
    cn.has_protocol_version = 1;
    cn.protocol_version = TB_PROTOCOL_MAX;
    up_buf_t b = UP_BUF_INIT;
    int rc = up_frame_put_cmd(&b, &cmd);
    err = rc ? up_seterr((upulsar_err_t)rc, "cannot frame CONNECT")
             : upulsar_tb_client_send_raw(c, b.data, b.len);
    if (b.data)
        memset(b.data, 0, b.len);
    up_buf_free(&b);
    upulsar_tb_frame_t f;
    while (!err) {
        err = upulsar_tb_client_expect(c, UP_CMD(CONNECTED), remaining(dl), &f);
        if (err != UPULSAR_ERR__STATE)
            break;
        if (f.type == UP_CMD(AUTH_CHALLENGE) && o.answer_challenge) {
            err = upulsar_tb_client_auth_response(c, "token", o.token);
            continue;
        }
        if (f.type == UP_CMD(ERROR))
            err = up_seterr(up_err_from_server((int)f.cmd->error->error),
                            "broker refused CONNECT: %s",
                            f.cmd->error->message ? f.cmd->error->message : "");
    }
    if (err) {
        upulsar_tb_client_close(c);
        return err;
    }
    *out = c;
    return UPULSAR_OK;
}

upulsar_err_t upulsar_tb_client_connect(const char *url, int timeout_ms,
                                        upulsar_tb_client_t **out)
{
    return upulsar_tb_client_connect_opts(url, NULL, timeout_ms, out);
}

upulsar_err_t upulsar_tb_client_create_producer(upulsar_tb_client_t *c, const char *topic,
                                                uint64_t producer_id, const char *name,
                                                int timeout_ms, char *name_out,
                                                size_t name_size, int64_t *last_seq)
{
    if (!c || !topic)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "create_producer: NULL");
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandProducer p = PULSAR__PROTO__COMMAND_PRODUCER__INIT;
    cmd.type = UP_CMD(PRODUCER);
    cmd.producer = &p;
    p.topic = (char *)topic;
    p.producer_id = producer_id;
    p.request_id = c->next_rid++;
    p.producer_name = (char *)name;
    if (!name) {
        p.has_user_provided_producer_name = 1;
        p.user_provided_producer_name = 0;
    }
    upulsar_err_t err = upulsar_tb_client_send_cmd(c, &cmd);
    if (err)
        return err;
    upulsar_tb_frame_t f;
    err = await_answer(c, UP_CMD(PRODUCER_SUCCESS), p.request_id, timeout_ms, &f);
    if (err)
        return err;
    const Pulsar__Proto__CommandProducerSuccess *ps = f.cmd->producer_success;
    if (ps->request_id != p.request_id)
        return up_seterr(UPULSAR_ERR__PROTOCOL, "PRODUCER_SUCCESS for another request");
    if (name_out && name_size) {
        snprintf(name_out, name_size, "%s", ps->producer_name ? ps->producer_name : "");
    }
    if (last_seq)
        *last_seq = ps->has_last_sequence_id ? ps->last_sequence_id : -1;
    return UPULSAR_OK;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

upulsar_err_t upulsar_tb_client_send_messages(upulsar_tb_client_t *c, uint64_t producer_id,
                                              const char *producer_name, uint64_t first_seq,
                                              const upulsar_tb_out_msg_t *msgs, size_t n,
                                              int compression, int flags)
{
    if (!c || !producer_name || !msgs || n == 0 || n > INT32_MAX)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "send_messages: bad argument");
    bool batch = n > 1 || (flags & UPULSAR_TB_SEND_BATCH);
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    md.producer_name = (char *)producer_name;
    md.sequence_id = first_seq;
    md.publish_time = (uint64_t)wall_ms();
    uint8_t *body = NULL, *packed = NULL;
    size_t body_len = 0;
    Pulsar__Proto__KeyValue *kv = NULL, **kvp = NULL;
    upulsar_err_t err = UPULSAR_OK;

    if (batch) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
            if (msgs[i].len > INT32_MAX || (!msgs[i].payload && msgs[i].len))
                return up_seterr(UPULSAR_ERR__INVALID_ARG, "message %zu: bad payload", i);
            up_smm_t m = {0};
            m.key = msgs[i].key;
            m.key_len = msgs[i].key ? (uint32_t)strlen(msgs[i].key) : 0;
            m.okey = msgs[i].ordering_key;
            m.okey_len = (uint32_t)msgs[i].ordering_key_len;
            m.props_len = (uint32_t)up_props_size(msgs[i].properties, msgs[i].properties_cnt);
            m.event_time = msgs[i].event_time;
            m.sequence_id = first_seq + i;
            m.payload_size = (uint32_t)msgs[i].len;
            total += up_record_size(&m);
        }
        body = malloc(total ? total : 1);
        if (!body)
            return up_seterr(UPULSAR_ERR__NOMEM, "send_messages");
        for (size_t i = 0; i < n; i++) {
            size_t pl = up_props_size(msgs[i].properties, msgs[i].properties_cnt);
            uint8_t *props = pl ? malloc(pl) : NULL;
            if (pl && !props) {
                free(body);
                return up_seterr(UPULSAR_ERR__NOMEM, "send_messages");
            }
            if (pl)
                up_props_encode(props, msgs[i].properties, msgs[i].properties_cnt);
            up_smm_t m = {0};
            m.key = msgs[i].key;
            m.key_len = msgs[i].key ? (uint32_t)strlen(msgs[i].key) : 0;
            m.okey = msgs[i].ordering_key;
            m.okey_len = (uint32_t)msgs[i].ordering_key_len;
            m.props = props;
            m.props_len = (uint32_t)pl;
            m.event_time = msgs[i].event_time;
            m.sequence_id = first_seq + i;
            m.payload_size = (uint32_t)msgs[i].len;
            body_len += up_record_put(body + body_len, &m, msgs[i].payload);
            free(props);
        }
        md.has_num_messages_in_batch = 1;
        md.num_messages_in_batch = (int32_t)n;
    } else {
        const upulsar_tb_out_msg_t *m = &msgs[0];
        if (!m->payload && m->len)
            return up_seterr(UPULSAR_ERR__INVALID_ARG, "bad payload");
        body_len = m->len;
        body = malloc(body_len ? body_len : 1);
        if (!body)
            return up_seterr(UPULSAR_ERR__NOMEM, "send_messages");
        if (body_len)
            memcpy(body, m->payload, body_len);
        md.partition_key = (char *)m->key;
        if (m->ordering_key) {
            md.has_ordering_key = 1;
            md.ordering_key.data = (uint8_t *)m->ordering_key;
            md.ordering_key.len = m->ordering_key_len;
        }
        if (m->event_time) {
            md.has_event_time = 1;
            md.event_time = m->event_time;
        }
        if (m->properties_cnt) {
            kv = calloc(m->properties_cnt, sizeof *kv);
            kvp = calloc(m->properties_cnt, sizeof *kvp);
            if (!kv || !kvp) {
                err = up_seterr(UPULSAR_ERR__NOMEM, "send_messages");
                goto out;
            }
            for (size_t i = 0; i < m->properties_cnt; i++) {
                pulsar__proto__key_value__init(&kv[i]);
                kv[i].key = (char *)m->properties[i].key;
                kv[i].value = (char *)m->properties[i].value;
                kvp[i] = &kv[i];
            }
            md.n_properties = m->properties_cnt;
            md.properties = kvp;
        }
    }
    if (flags & UPULSAR_TB_SEND_HIGHEST) {
        md.has_highest_sequence_id = 1;
        md.highest_sequence_id = first_seq + n - 1;
    }

    const uint8_t *wire = body;
    size_t wire_len = body_len;
    if (compression != UP_COMP_NONE) {
        if (body_len > UINT32_MAX) {
            err = up_seterr(UPULSAR_ERR__INVALID_ARG, "payload too large to compress");
            goto out;
        }
        size_t bound = up_compress_bound(compression, body_len);
        if (!bound && body_len) {
            err = up_seterr(UPULSAR_ERR__NOT_SUPPORTED, "compression %d", compression);
            goto out;
        }
        packed = malloc(bound ? bound : 16);
        if (!packed) {
            err = up_seterr(UPULSAR_ERR__NOMEM, "send_messages");
            goto out;
        }
        long cl = up_compress(compression, body, body_len, packed, bound ? bound : 16);
        if (cl < 0) {
            err = up_seterr((upulsar_err_t)cl, "compression %d failed", compression);
            goto out;
        }
        md.has_compression = 1;
        md.compression = (Pulsar__Proto__CompressionType)compression;
        md.has_uncompressed_size = 1;
        md.uncompressed_size = (uint32_t)body_len;
        wire = packed;
        wire_len = (size_t)cl;
    }

    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSend s = PULSAR__PROTO__COMMAND_SEND__INIT;
    cmd.type = UP_CMD(SEND);
    cmd.send = &s;
    s.producer_id = producer_id;
    s.sequence_id = first_seq;
    if (batch) {
        s.has_num_messages = 1;
        s.num_messages = (int32_t)n;
    }
    if (flags & UPULSAR_TB_SEND_HIGHEST) {
        s.has_highest_sequence_id = 1;
        s.highest_sequence_id = first_seq + n - 1;
    }
    up_buf_t fb = UP_BUF_INIT;
    struct iovec iov = {(void *)wire, wire_len};
    bool crc = !(flags & UPULSAR_TB_SEND_NO_CRC);
    int rc = up_frame_put_payload(&fb, &cmd, &md, &iov, 1, crc);
    if (rc) {
        up_buf_free(&fb);
        err = up_seterr((upulsar_err_t)rc, "cannot frame the SEND");
        goto out;
    }
    if (crc && (flags & UPULSAR_TB_SEND_BAD_CRC)) {
        uint32_t cs = up_get_be32(fb.data + 4);
        fb.data[8 + cs + 2 + 3] ^= 0x01; /* last byte of the checksum */
    }
    err = upulsar_tb_client_send_raw(c, fb.data, fb.len);
    up_buf_free(&fb);
out:
    free(kv);
    free(kvp);
    free(packed);
    free(body);
    return err;
}

upulsar_err_t upulsar_tb_client_subscribe(upulsar_tb_client_t *c, const char *topic,
                                          const char *sub, uint64_t consumer_id, int earliest,
                                          int shared, int timeout_ms)
{
    if (!c || !topic || !sub)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "subscribe: NULL");
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSubscribe s = PULSAR__PROTO__COMMAND_SUBSCRIBE__INIT;
    cmd.type = UP_CMD(SUBSCRIBE);
    cmd.subscribe = &s;
    s.topic = (char *)topic;
    s.subscription = (char *)sub;
    s.subtype = shared ? PULSAR__PROTO__COMMAND_SUBSCRIBE__SUB_TYPE__Shared
                       : PULSAR__PROTO__COMMAND_SUBSCRIBE__SUB_TYPE__Exclusive;
    s.consumer_id = consumer_id;
    s.request_id = c->next_rid++;
    s.has_initialposition = 1;
    s.initialposition = earliest ? PULSAR__PROTO__COMMAND_SUBSCRIBE__INITIAL_POSITION__Earliest
                                 : PULSAR__PROTO__COMMAND_SUBSCRIBE__INITIAL_POSITION__Latest;
    upulsar_err_t err = upulsar_tb_client_send_cmd(c, &cmd);
    if (err)
        return err;
    upulsar_tb_frame_t f;
    err = await_answer(c, UP_CMD(SUCCESS), s.request_id, timeout_ms, &f);
    if (!err && f.cmd->success->request_id != s.request_id)
        return up_seterr(UPULSAR_ERR__PROTOCOL, "SUCCESS for another request");
    return err;
}

upulsar_err_t upulsar_tb_client_flow(upulsar_tb_client_t *c, uint64_t consumer_id,
                                     uint32_t permits)
{
    if (!c)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "flow: NULL");
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandFlow fl = PULSAR__PROTO__COMMAND_FLOW__INIT;
    cmd.type = UP_CMD(FLOW);
    cmd.flow = &fl;
    fl.consumer_id = consumer_id;
    fl.messagepermits = permits;
    return upulsar_tb_client_send_cmd(c, &cmd);
}
