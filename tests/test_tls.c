/* test_tls.c -- the TLS session layer (OpenSSL over memory BIOs) against a
 * real OpenSSL server on loopback: a round trip, and each failure with its
 * own reason: untrusted CA, wrong host name, expired certificate, mutual
 * TLS accepted and refused. Certificates are made at test time. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf.h"
#include "tls.h"
#include "tls_certs.h"

static tls_certs_t certs;

static void setup(void)
{
    cr_assert_eq(tls_certs_make(&certs), 0, "openssl CLI failed");
}
static void teardown(void) { tls_certs_remove(&certs); }
TestSuite(tls, .init = setup, .fini = teardown, .timeout = 60);

typedef struct {
    int lfd;
    const char *cert;
    int require_client_cert;
    int accepted; /* handshake result on the server side */
} server_t;

static void *serve(void *a)
{
    server_t *s = a;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate_chain_file(ctx, s->cert);
    SSL_CTX_use_PrivateKey_file(ctx, certs.srv_key, SSL_FILETYPE_PEM);
    if (s->require_client_cert) {
        SSL_CTX_load_verify_locations(ctx, certs.ca, NULL);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    int fd = accept(s->lfd, NULL, NULL);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    s->accepted = SSL_accept(ssl) == 1;
    if (s->accepted) {
        char buf[256];
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n > 0)
            SSL_write(ssl, buf, n); /* echo */
        SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    return NULL;
}

static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof a);
    listen(fd, 4);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Connect to a server presenting @p cert and run the client handshake for
 * @p host; on success echo "hello" through the session. */
static upulsar_err_t attempt(struct upulsar_conf *cf, const char *cert, const char *host,
                             int require_client_cert)
{
    int port;
    server_t s = {.lfd = listen_any(&port), .cert = cert,
                  .require_client_cert = require_client_cert};
    pthread_t th;
    pthread_create(&th, NULL, serve, &s);
    SSL_CTX *ctx;
    upulsar_err_t err = up_tls_ctx_new(cf, &ctx);
    cr_assert_eq(err, UPULSAR_OK, "%s", upulsar_last_error());
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    up_tls_t *t = up_tls_new(ctx, host, cf);
    cr_assert_not_null(t);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t deadline = (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u + 10000000u;
    err = up_tls_handshake(t, fd, deadline, host);
    if (err == UPULSAR_OK) {
        up_buf_t out = UP_BUF_INIT;
        cr_assert_eq(up_tls_encrypt(t, "hello", 5, &out), 0);
        /* may fail when the server already refused us; the alert is read below */
        ssize_t w = send(fd, out.data, out.len, MSG_NOSIGNAL);
        (void)w;
        up_buf_free(&out);
        /* With TLS 1.3 a server refuses a client certificate after the
         * client's handshake is done: the refusal arrives as an alert on
         * the first read, which must surface as a TLS error. */
        char plain[16];
        long got = 0;
        while (got < 5 && err == UPULSAR_OK) {
            uint8_t buf[4096];
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n > 0)
                cr_assert_eq(up_tls_feed(t, buf, (size_t)n), 0);
            long r = 0;
            while (got < 5 && (r = up_tls_read(t, plain + got, sizeof plain - (size_t)got)) > 0)
                got += r;
            if (got >= 5)
                break;
            if (r < 0)
                err = (upulsar_err_t)r;
            else if (n <= 0)
                err = UPULSAR_ERR__CONNECT;
        }
        if (err == UPULSAR_OK)
            cr_assert_eq(memcmp(plain, "hello", 5), 0);
    } else {
        shutdown(fd, SHUT_RDWR);
    }
    up_tls_free(t);
    close(fd);
    pthread_join(th, NULL);
    close(s.lfd);
    up_tls_ctx_free(ctx);
    return err;
}

static struct upulsar_conf trusting(void)
{
    struct upulsar_conf cf;
    up_conf_defaults(&cf);
    snprintf(cf.tls_ca_file, sizeof cf.tls_ca_file, "%s", certs.ca);
    return cf;
}

Test(tls, round_trip_with_trusted_ca_and_matching_host)
{
    struct upulsar_conf cf = trusting();
    cr_assert_eq(attempt(&cf, certs.srv_cert, "localhost", 0), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(attempt(&cf, certs.srv_cert, "127.0.0.1", 0), UPULSAR_OK, "%s",
                 upulsar_last_error());
}

Test(tls, untrusted_ca_is_refused_with_its_reason)
{
    struct upulsar_conf cf;
    up_conf_defaults(&cf);
    snprintf(cf.tls_ca_file, sizeof cf.tls_ca_file, "%s", certs.ca2);
    cr_assert_eq(attempt(&cf, certs.srv_cert, "localhost", 0), UPULSAR_ERR__TLS);
    cr_assert(strstr(upulsar_last_error(), "unable to get local issuer certificate"), "%s",
              upulsar_last_error());
}

Test(tls, wrong_host_name_is_refused_with_its_reason)
{
    struct upulsar_conf cf = trusting();
    cr_assert_eq(attempt(&cf, certs.srv_cert, "broker.example.com", 0), UPULSAR_ERR__TLS);
    cr_assert(strstr(upulsar_last_error(), "hostname mismatch"), "%s", upulsar_last_error());
    /* the same with host name checks off goes through */
    cf.tls_verify_hostname = false;
    cr_assert_eq(attempt(&cf, certs.srv_cert, "broker.example.com", 0), UPULSAR_OK, "%s",
                 upulsar_last_error());
}

Test(tls, expired_certificate_is_refused_with_its_reason)
{
    struct upulsar_conf cf = trusting();
    cr_assert_eq(attempt(&cf, certs.exp_cert, "localhost", 0), UPULSAR_ERR__TLS);
    cr_assert(strstr(upulsar_last_error(), "certificate has expired"), "%s",
              upulsar_last_error());
}

Test(tls, insecure_switch_accepts_any_certificate)
{
    struct upulsar_conf cf;
    up_conf_defaults(&cf);
    cf.tls_allow_insecure = true;
    cr_assert_eq(attempt(&cf, certs.exp_cert, "wrong.example", 0), UPULSAR_OK, "%s",
                 upulsar_last_error());
}

Test(tls, mutual_tls_accepted_with_client_certificate_and_refused_without)
{
    struct upulsar_conf cf = trusting();
    cr_assert_eq(attempt(&cf, certs.srv_cert, "localhost", 1), UPULSAR_ERR__TLS);
    cr_assert(strstr(upulsar_last_error(), "certificate required"), "%s", upulsar_last_error());
    snprintf(cf.tls_cert_file, sizeof cf.tls_cert_file, "%s", certs.cli_cert);
    snprintf(cf.tls_key_file, sizeof cf.tls_key_file, "%s", certs.cli_key);
    cr_assert_eq(attempt(&cf, certs.srv_cert, "localhost", 1), UPULSAR_OK, "%s",
                 upulsar_last_error());
}

Test(tls, bad_key_file_gives_a_clear_error)
{
    struct upulsar_conf cf = trusting();
    snprintf(cf.tls_cert_file, sizeof cf.tls_cert_file, "%s", certs.cli_cert);
    snprintf(cf.tls_key_file, sizeof cf.tls_key_file, "%s", certs.srv_key); /* wrong key */
    SSL_CTX *ctx;
    cr_assert_eq(up_tls_ctx_new(&cf, &ctx), UPULSAR_ERR__TLS);
    cr_assert(strstr(upulsar_last_error(), "private key"), "%s", upulsar_last_error());
    snprintf(cf.tls_ca_file, sizeof cf.tls_ca_file, "/nonexistent/ca.pem");
    cr_assert_eq(up_tls_ctx_new(&cf, &ctx), UPULSAR_ERR__TLS);
    cr_assert(strstr(upulsar_last_error(), "/nonexistent/ca.pem"), "%s", upulsar_last_error());
}
