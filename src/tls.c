/* tls.c -- OpenSSL client sessions over a memory BIO (in) and a sink BIO
 * (out), see tls.h. */
#include "tls.h"

#include "engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "err.h"

struct up_tls {
    SSL *ssl;
    BIO *rbio; /* ciphertext in (we write, SSL reads) */
    BIO *wbio; /* ciphertext out: a sink (below) */
    /* The sink appends what SSL writes to *target while up_tls_encrypt()
     * runs (straight into the connection's send buffer: no copy through a
     * memory BIO), else to pending (handshake, alerts, key updates), which
     * up_tls_drain() hands over. */
    up_buf_t *target;
    up_buf_t pending;
    bool sink_failed; /* out of memory in the sink */
};

/* ---- the write sink ------------------------------------------------------ */

static BIO_METHOD *sink_method;
static pthread_once_t sink_once = PTHREAD_ONCE_INIT;

static int sink_write(BIO *b, const char *data, int len)
{
    up_tls_t *t = BIO_get_data(b);
    up_buf_t *dst = t->target ? t->target : &t->pending;
    if (len <= 0)
        return 0;
    if (up_buf_append(dst, data, (size_t)len)) {
        t->sink_failed = true;
        return -1;
    }
    return len;
}

static long sink_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    up_tls_t *t = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
    case BIO_CTRL_WPENDING:
        return t ? (long)t->pending.len : 0;
    default:
        return 0;
    }
}

static int sink_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void sink_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "upulsar sink");
    if (m && (!BIO_meth_set_write(m, sink_write) || !BIO_meth_set_ctrl(m, sink_ctrl) ||
              !BIO_meth_set_create(m, sink_create))) {
        BIO_meth_free(m);
        m = NULL;
    }
    sink_method = m;
}

static const char *ossl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown OpenSSL error";
}

/* Why OpenSSL could not load @p path: the system's reason when the file
 * cannot even be opened (OpenSSL says only "system lib"), else OpenSSL's. */
static const char *file_reason(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return strerror(errno);
    close(fd);
    return ossl_reason();
}

upulsar_err_t up_tls_ctx_new(const struct upulsar_conf *cf, SSL_CTX **out)
{
    *out = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return up_seterr(UPULSAR_ERR__TLS, "TLS: cannot create a context: %s", ossl_reason());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (cf->tls_ca_file[0] || cf->tls_ca_path[0]) {
        if (!SSL_CTX_load_verify_locations(ctx, cf->tls_ca_file[0] ? cf->tls_ca_file : NULL,
                                           cf->tls_ca_path[0] ? cf->tls_ca_path : NULL)) {
            const char *ca = cf->tls_ca_file[0] ? cf->tls_ca_file : cf->tls_ca_path;
            upulsar_err_t e =
                up_seterr(UPULSAR_ERR__TLS, "TLS: cannot load CA %s: %s", ca, file_reason(ca));
            SSL_CTX_free(ctx);
            return e;
        }
    } else if (!SSL_CTX_set_default_verify_paths(ctx)) {
        upulsar_err_t e = up_seterr(UPULSAR_ERR__TLS, "TLS: cannot load the system CA store: %s",
                                    ossl_reason());
        SSL_CTX_free(ctx);
        return e;
    }
    if (cf->tls_cert_file[0] || cf->tls_key_file[0]) {
        if (!cf->tls_cert_file[0] || !cf->tls_key_file[0]) {
            SSL_CTX_free(ctx);
            return up_seterr(UPULSAR_ERR__TLS,
                             "TLS: tls.cert.file and tls.key.file must be set together");
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, cf->tls_cert_file) != 1) {
            upulsar_err_t e = up_seterr(UPULSAR_ERR__TLS, "TLS: cannot load certificate %s: %s",
                                        cf->tls_cert_file, file_reason(cf->tls_cert_file));
            SSL_CTX_free(ctx);
            return e;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, cf->tls_key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            upulsar_err_t e = up_seterr(UPULSAR_ERR__TLS, "TLS: cannot use private key %s: %s",
                                        cf->tls_key_file, file_reason(cf->tls_key_file));
            SSL_CTX_free(ctx);
            return e;
        }
    }
    SSL_CTX_set_verify(ctx, cf->tls_allow_insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    *out = ctx;
    return UPULSAR_OK;
}

void up_tls_ctx_free(SSL_CTX *ctx) { SSL_CTX_free(ctx); }

static bool is_ip(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

up_tls_t *up_tls_new(SSL_CTX *ctx, const char *host, const struct upulsar_conf *cf)
{
    up_tls_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    pthread_once(&sink_once, sink_init);
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = sink_method ? BIO_new(sink_method) : NULL;
    if (t->wbio)
        BIO_set_data(t->wbio, t);
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    BIO_set_mem_eof_return(t->rbio, -1); /* empty = "retry", not EOF */
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_connect_state(t->ssl);
    if (!is_ip(host))
        SSL_set_tlsext_host_name(t->ssl, host);
    if (!cf->tls_allow_insecure && cf->tls_verify_hostname) {
        if (is_ip(host))
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
        else
            SSL_set1_host(t->ssl, host);
    }
    return t;
}

void up_tls_free(up_tls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    up_buf_free(&t->pending);
    free(t);
}

int up_tls_drain(up_tls_t *t, up_buf_t *out)
{
    if (t->sink_failed)
        return UPULSAR_ERR__NOMEM;
    if (!t->pending.len)
        return 0;
    if (!out->len && out->cap <= t->pending.cap) { /* hand the buffer over */
        up_buf_t tmp = *out;
        *out = t->pending;
        t->pending = tmp;
        t->pending.len = 0;
        return 0;
    }
    if (up_buf_append(out, t->pending.data, t->pending.len))
        return UPULSAR_ERR__NOMEM;
    t->pending.len = 0;
    return 0;
}

static upulsar_err_t send_all(int fd, up_buf_t *b, uint64_t deadline)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t w = send(fd, b->data + off, b->len - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return up_seterr(UPULSAR_ERR__CONNECT, "TLS handshake write: %s", strerror(errno));
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int pr = up_poll_until(&pf, deadline); /* stop may cancel it */
        if (pr == UP_POLL_CANCELLED)
            return up_seterr(UPULSAR_ERR__CLOSED, "TLS handshake abandoned: stopping");
        if (pr != 1)
            return up_seterr(UPULSAR_ERR__TIMED_OUT, "TLS handshake timed out");
    }
    b->len = 0;
    return UPULSAR_OK;
}

static upulsar_err_t handshake_error(up_tls_t *t, const char *peer)
{
    long vr = SSL_get_verify_result(t->ssl);
    if (vr != X509_V_OK)
        return up_seterr(UPULSAR_ERR__TLS, "TLS handshake with %s failed: certificate verify "
                         "failed: %s", peer, X509_verify_cert_error_string(vr));
    return up_seterr(UPULSAR_ERR__TLS, "TLS handshake with %s failed: %s", peer, ossl_reason());
}

upulsar_err_t up_tls_handshake(up_tls_t *t, int fd, uint64_t deadline, const char *peer)
{
    up_buf_t out = UP_BUF_INIT;
    upulsar_err_t err = UPULSAR_OK;
    ERR_clear_error();
    for (;;) {
        int rc = SSL_do_handshake(t->ssl);
        if (up_tls_drain(t, &out)) {
            err = up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
            break;
        }
        if (out.len && (err = send_all(fd, &out, deadline)))
            break;
        if (rc == 1)
            break;
        int se = SSL_get_error(t->ssl, rc);
        if (se != SSL_ERROR_WANT_READ && se != SSL_ERROR_WANT_WRITE) {
            err = handshake_error(t, peer);
            break;
        }
        if (se == SSL_ERROR_WANT_WRITE)
            continue;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int pr = up_poll_until(&pf, deadline); /* stop may cancel it */
        if (pr == UP_POLL_CANCELLED) {
            err = up_seterr(UPULSAR_ERR__CLOSED, "TLS handshake with %s abandoned: stopping", peer);
            break;
        }
        if (pr != 1) {
            err = up_seterr(UPULSAR_ERR__TIMED_OUT, "TLS handshake with %s timed out", peer);
            break;
        }
        uint8_t buf[16384];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0) {
            err = up_seterr(UPULSAR_ERR__TLS, "TLS handshake with %s failed: connection closed "
                            "by the peer (is it a TLS port?)", peer);
            break;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            err = up_seterr(UPULSAR_ERR__CONNECT, "TLS handshake read: %s", strerror(errno));
            break;
        }
        if (up_tls_feed(t, buf, (size_t)n)) {
            err = up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
            break;
        }
    }
    up_buf_free(&out);
    return err;
}

int up_tls_encrypt(up_tls_t *t, const void *p, size_t len, up_buf_t *out)
{
    const uint8_t *q = p;
    /* anything written before (an alert, a key update) goes first */
    if (up_tls_drain(t, out))
        return UPULSAR_ERR__NOMEM;
    t->target = out;
    while (len) {
        int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
        int n = SSL_write(t->ssl, q, chunk);
        if (n <= 0) {
            t->target = NULL;
            if (t->sink_failed)
                return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
            return up_seterr(UPULSAR_ERR__TLS, "TLS write failed: %s", ossl_reason());
        }
        q += n;
        len -= (size_t)n;
    }
    t->target = NULL;
    return t->sink_failed ? UPULSAR_ERR__NOMEM : 0;
}

int up_tls_feed(up_tls_t *t, const void *p, size_t len)
{
    while (len) {
        int n = BIO_write(t->rbio, p, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n <= 0)
            return UPULSAR_ERR__NOMEM;
        p = (const uint8_t *)p + n;
        len -= (size_t)n;
    }
    return 0;
}

long up_tls_read(up_tls_t *t, void *dst, size_t cap)
{
    int n = SSL_read(t->ssl, dst, cap > INT32_MAX ? INT32_MAX : (int)cap);
    if (n > 0)
        return n;
    int se = SSL_get_error(t->ssl, n);
    if (se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE)
        return 0;
    if (se == SSL_ERROR_ZERO_RETURN)
        return up_seterr(UPULSAR_ERR__CONNECT, "TLS: the broker closed the session");
    return up_seterr(UPULSAR_ERR__TLS, "TLS read failed: %s", ossl_reason());
}
