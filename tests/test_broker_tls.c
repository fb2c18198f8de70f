/* test_broker_tls.c -- the test broker's TLS listener, with certificates
 * made at test time by the openssl CLI: handshake + CONNECT + produce and
 * consume round trip, pulsar+ssl:// URLs in LOOKUP answers, a plaintext
 * client on the TLS port (and a TLS client on a plaintext port) refused
 * without harm to the broker, the client-side refusals (untrusted CA, host
 * name, expired certificate), mutual TLS required / optional, and several
 * TLS connections served at once. */
/* UPULSAR_TEST_LABEL_CONCURRENCY */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "broker_common.h"
#include "tls_certs.h"

static tls_certs_t certs;
/* more certificates, made in certs.dir: a server certificate for another
 * host name, and a client certificate from the other CA */
static char wrong_host_cert[320], other_cli_cert[320], other_cli_key[320];

static void setup(void)
{
    cr_assert_eq(tls_certs_make(&certs), 0, "openssl CLI failed");
    snprintf(wrong_host_cert, sizeof wrong_host_cert, "%s/wronghost.pem", certs.dir);
    snprintf(other_cli_cert, sizeof other_cli_cert, "%s/cli2.pem", certs.dir);
    snprintf(other_cli_key, sizeof other_cli_key, "%s/cli2.key", certs.dir);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "(cd %s && printf 'subjectAltName=DNS:elsewhere.invalid\\n' > ext2 && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out wronghost.pem -days 2 -extfile ext2 && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout cli2.key -out cli2.csr -subj /CN=stranger && "
             "openssl x509 -req -in cli2.csr -CA ca2.pem -CAkey ca2.key -CAcreateserial "
             "-out cli2.pem -days 2) >/dev/null 2>&1",
             certs.dir);
    cr_assert_eq(system(cmd), 0, "openssl CLI failed");
}
static void teardown(void) { tls_certs_remove(&certs); }
TestSuite(broker_tls, .init = setup, .fini = teardown, .timeout = 60);

static upulsar_tb_t *start_tls(const char *cert, const char *ca, int require)
{
    upulsar_tb_opts_t o = bc_opts();
    o.tls_cert_file = cert;
    o.tls_key_file = certs.srv_key;
    o.tls_ca_file = ca;
    o.tls_require_client_cert = require;
    return bc_start(&o);
}

static upulsar_tb_client_opts_t trusting(void)
{
    upulsar_tb_client_opts_t o;
    upulsar_tb_client_opts_init(&o);
    o.tls_ca_file = certs.ca;
    return o;
}

/* A raw client of @p url with @p o, handshake done (TLS, then CONNECT). */
static upulsar_tb_client_t *connect_with(const char *url, const upulsar_tb_client_opts_t *o)
{
    upulsar_tb_client_t *c = NULL;
    cr_assert_eq(upulsar_tb_client_connect_opts(url, o, WAIT_MS, &c), UPULSAR_OK, "%s",
                 upulsar_last_error());
    return c;
}

/* Wait until the broker has counted @p n failed handshakes (a client that
 * refuses the broker's certificate is gone before the broker notices). */
static void wait_failures(upulsar_tb_t *tb, uint64_t n)
{
    for (int i = 0; i < WAIT_MS && bc_stats(tb).tls_failures < n; i++)
        poll(NULL, 0, 1);
    cr_assert_eq(bc_stats(tb).tls_failures, n);
}

/* A verified TLS connection completes CONNECT and creates a producer. */
static void works(upulsar_tb_t *tb, const upulsar_tb_client_opts_t *o)
{
    upulsar_tb_client_t *c = connect_with(upulsar_tb_url(tb), o);
    bc_create_producer(c, "works", 1, NULL);
    upulsar_tb_client_close(c);
}

Test(broker_tls, handshake_connect_produce_and_consume)
{
    upulsar_tb_t *tb = start_tls(certs.srv_cert, NULL, 0);
    char want[64];
    snprintf(want, sizeof want, "pulsar+ssl://localhost:%d", upulsar_tb_port(tb));
    cr_assert_str_eq(upulsar_tb_url(tb), want);

    upulsar_tb_client_opts_t o = trusting();
    upulsar_tb_client_t *c = connect_with(upulsar_tb_url(tb), &o);
    cr_assert_eq(bc_stats(tb).tls_handshakes, 1);

    /* LOOKUP names the broker in brokerServiceUrlTls only */
    upulsar_tb_frame_t f;
    bc_lookup_resp_t *r = bc_lookup_ex(c, "secure", -1, NULL, &f);
    cr_assert_eq(r->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect);
    cr_assert_str_eq(r->brokerserviceurltls, upulsar_tb_url(tb));
    cr_assert_null(r->brokerserviceurl);

    /* enough bytes both ways to need many TLS records */
    bc_create_producer(c, "secure", 1, "p");
    enum { N = 200, SZ = 20000 };
    static char payload[SZ];
    for (int i = 0; i < N; i++) {
        memset(payload, 'a' + i % 26, sizeof payload);
        upulsar_tb_out_msg_t m = {.payload = payload, .len = sizeof payload};
        cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", (uint64_t)i, &m, 1, 0, 0),
                     UPULSAR_OK);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(bc_receipt(c, &f)->sequence_id, (uint64_t)i);
    }
    cr_assert_eq(upulsar_tb_client_subscribe(c, "secure", "sub", 1, 1, 0, WAIT_MS), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_flow(c, 1, N), UPULSAR_OK);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(MESSAGE), WAIT_MS, &f), UPULSAR_OK, "%s",
                     upulsar_last_error());
        cr_assert(f.crc_ok);
        cr_assert_eq(f.payload_len, SZ);
        cr_assert_eq(f.payload[0], 'a' + i % 26);
        cr_assert_eq(f.payload[SZ - 1], 'a' + i % 26);
    }
    upulsar_tb_client_close(c);

    /* the IP SAN works too */
    char ip_url[64];
    snprintf(ip_url, sizeof ip_url, "pulsar+ssl://127.0.0.1:%d", upulsar_tb_port(tb));
    c = connect_with(ip_url, &o);
    upulsar_tb_client_close(c);
    cr_assert_eq(bc_stats(tb).tls_failures, 0);
    upulsar_tb_stop(tb);
}

Test(broker_tls, redirects_between_tls_brokers_use_the_tls_field)
{
    upulsar_tb_t *a = start_tls(certs.srv_cert, NULL, 0), *b = start_tls(certs.srv_cert, NULL, 0);
    cr_assert_eq(upulsar_tb_set_owner(a, "elsewhere", upulsar_tb_url(b)), UPULSAR_OK);
    upulsar_tb_client_opts_t o = trusting();
    upulsar_tb_client_t *c = connect_with(upulsar_tb_url(a), &o);
    upulsar_tb_frame_t f;
    bc_lookup_resp_t *r = bc_lookup_ex(c, "elsewhere", -1, NULL, &f);
    cr_assert_eq(r->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Redirect);
    cr_assert_str_eq(r->brokerserviceurltls, upulsar_tb_url(b));
    cr_assert_null(r->brokerserviceurl);
    /* a redirect to its own URL spelled with the IP is still itself */
    char self[64];
    snprintf(self, sizeof self, "pulsar+ssl://127.0.0.1:%d", upulsar_tb_port(a));
    cr_assert_eq(upulsar_tb_set_owner(a, "elsewhere", self), UPULSAR_OK);
    bc_create_producer(c, "elsewhere", 1, NULL);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(a);
    upulsar_tb_stop(b);
}

Test(broker_tls, plaintext_client_on_tls_port_is_refused_cleanly)
{
    upulsar_tb_t *tb = start_tls(certs.srv_cert, NULL, 0);
    char plain_url[64];
    snprintf(plain_url, sizeof plain_url, "pulsar://127.0.0.1:%d", upulsar_tb_port(tb));
    upulsar_tb_client_t *c = NULL;
    upulsar_err_t e = upulsar_tb_client_connect(plain_url, WAIT_MS, &c);
    cr_assert_neq(e, UPULSAR_OK);
    cr_assert_neq(e, UPULSAR_ERR__TIMED_OUT, "the broker must close, not hang: %s",
                  upulsar_last_error());
    cr_assert_null(c);
    cr_assert_eq(bc_stats(tb).tls_failures, 1);
    /* garbage that is not even a Pulsar frame */
    cr_assert_eq(upulsar_tb_client_open(plain_url, WAIT_MS, &c), UPULSAR_OK);
    static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(upulsar_tb_client_send_raw(c, junk, sizeof junk - 1), UPULSAR_OK);
    upulsar_tb_frame_t f;
    e = upulsar_tb_client_read(c, WAIT_MS, &f);
    cr_assert_neq(e, UPULSAR_OK);
    cr_assert_neq(e, UPULSAR_ERR__TIMED_OUT, "%s", upulsar_last_error());
    upulsar_tb_client_close(c);
    cr_assert_eq(bc_stats(tb).tls_failures, 2);
    /* a silent plaintext client does not hold anything either: it is just
     * another connection; the broker keeps serving TLS clients */
    cr_assert_eq(upulsar_tb_client_open(plain_url, WAIT_MS, &c), UPULSAR_OK);
    upulsar_tb_client_opts_t o = trusting();
    works(tb, &o);
    upulsar_tb_client_close(c); /* it never started a handshake: counted when gone */
    wait_failures(tb, 3);
    cr_assert_eq(bc_stats(tb).tls_handshakes, 1);
    upulsar_tb_stop(tb);
}

Test(broker_tls, tls_client_on_plaintext_port_fails_cleanly)
{
    upulsar_tb_t *tb = bc_broker();
    char tls_url[64];
    snprintf(tls_url, sizeof tls_url, "pulsar+ssl://127.0.0.1:%d", upulsar_tb_port(tb));
    upulsar_tb_client_opts_t o = trusting();
    upulsar_tb_client_t *c = NULL;
    cr_assert_eq(upulsar_tb_client_connect_opts(tls_url, &o, WAIT_MS, &c), UPULSAR_ERR__TLS,
                 "%s", upulsar_last_error());
    cr_assert_eq(bc_stats(tb).protocol_errors, 1);
    c = bc_connect(tb);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_tls, client_side_refusals_name_their_cause)
{
    upulsar_tb_t *good = start_tls(certs.srv_cert, NULL, 0);
    upulsar_tb_t *expired = start_tls(certs.exp_cert, NULL, 0);
    upulsar_tb_t *wrong = start_tls(wrong_host_cert, NULL, 0);
    upulsar_tb_client_t *c = NULL;

    upulsar_tb_client_opts_t o;
    upulsar_tb_client_opts_init(&o);
    o.tls_ca_file = certs.ca2; /* not the broker's CA */
    cr_assert_eq(upulsar_tb_client_connect_opts(upulsar_tb_url(good), &o, WAIT_MS, &c),
                 UPULSAR_ERR__TLS);
    cr_assert(strstr(upulsar_last_error(), "unable to get local issuer certificate"), "%s",
              upulsar_last_error());

    o = trusting();
    cr_assert_eq(upulsar_tb_client_connect_opts(upulsar_tb_url(expired), &o, WAIT_MS, &c),
                 UPULSAR_ERR__TLS);
    cr_assert(strstr(upulsar_last_error(), "certificate has expired"), "%s",
              upulsar_last_error());

    cr_assert_eq(upulsar_tb_client_connect_opts(upulsar_tb_url(wrong), &o, WAIT_MS, &c),
                 UPULSAR_ERR__TLS);
    cr_assert(strstr(upulsar_last_error(), "hostname mismatch"), "%s", upulsar_last_error());
    o.tls_verify_hostname = 0;
    works(wrong, &o);

    /* every refusal was the client's; each broker counts a failed handshake */
    wait_failures(good, 1);
    wait_failures(expired, 1);
    wait_failures(wrong, 1);
    o = trusting();
    works(good, &o);
    upulsar_tb_stop(good);
    upulsar_tb_stop(expired);
    upulsar_tb_stop(wrong);
}

Test(broker_tls, mutual_tls_required)
{
    upulsar_tb_t *tb = start_tls(certs.srv_cert, certs.ca, 1);
    upulsar_tb_client_opts_t o = trusting();
    upulsar_tb_client_t *c = NULL;
    /* no certificate: with TLS 1.3 the refusal comes as an alert after the
     * client's side of the handshake; either way CONNECT never succeeds */
    upulsar_err_t e = upulsar_tb_client_connect_opts(upulsar_tb_url(tb), &o, WAIT_MS, &c);
    cr_assert(e == UPULSAR_ERR__TLS || e == UPULSAR_ERR__CLOSED, "%d: %s", e,
              upulsar_last_error());
    cr_assert_eq(bc_stats(tb).tls_failures, 1);
    /* a certificate from another CA */
    o.tls_cert_file = other_cli_cert;
    o.tls_key_file = other_cli_key;
    e = upulsar_tb_client_connect_opts(upulsar_tb_url(tb), &o, WAIT_MS, &c);
    cr_assert(e == UPULSAR_ERR__TLS || e == UPULSAR_ERR__CLOSED, "%d: %s", e,
              upulsar_last_error());
    cr_assert_eq(bc_stats(tb).tls_failures, 2);
    /* the right one */
    o.tls_cert_file = certs.cli_cert;
    o.tls_key_file = certs.cli_key;
    works(tb, &o);
    cr_assert_eq(bc_stats(tb).tls_failures, 2);
    upulsar_tb_stop(tb);
}

Test(broker_tls, client_certificate_optional_with_a_ca)
{
    upulsar_tb_t *tb = start_tls(certs.srv_cert, certs.ca, 0);
    upulsar_tb_client_opts_t o = trusting();
    works(tb, &o); /* none presented: fine */
    o.tls_cert_file = certs.cli_cert;
    o.tls_key_file = certs.cli_key;
    works(tb, &o); /* a good one: fine */
    o.tls_cert_file = other_cli_cert;
    o.tls_key_file = other_cli_key;
    upulsar_tb_client_t *c = NULL;
    upulsar_err_t e = upulsar_tb_client_connect_opts(upulsar_tb_url(tb), &o, WAIT_MS, &c);
    cr_assert(e == UPULSAR_ERR__TLS || e == UPULSAR_ERR__CLOSED, "a bad one is refused: %d", e);
    upulsar_tb_stop(tb);
}

Test(broker_tls, bad_options_are_refused_at_start)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    upulsar_tb_t *tb = NULL;
    o.tls_cert_file = certs.srv_cert; /* no key */
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_ERR__INVALID_ARG);
    o.tls_key_file = certs.cli_key; /* not this certificate's key */
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_ERR__TLS);
    cr_assert(strstr(upulsar_last_error(), "private key"), "%s", upulsar_last_error());
    o.tls_key_file = certs.srv_key;
    o.tls_require_client_cert = 1; /* no CA to check it with */
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_ERR__INVALID_ARG);
    o.tls_ca_file = "/nonexistent/ca.pem";
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_ERR__TLS);
    cr_assert(strstr(upulsar_last_error(), "/nonexistent/ca.pem"), "%s", upulsar_last_error());
    o.tls_cert_file = "/nonexistent/cert.pem";
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_ERR__TLS);
    cr_assert_null(tb);
}

/* ---- several TLS connections at once ------------------------------------ */

typedef struct {
    upulsar_tb_t *tb;
    int idx;
} worker_t;

#define WORKERS 4
#define PER_WORKER 300

static void *worker(void *arg)
{
    worker_t *w = arg;
    upulsar_tb_client_opts_t o = trusting();
    upulsar_tb_client_t *c = connect_with(upulsar_tb_url(w->tb), &o);
    char name[16];
    snprintf(name, sizeof name, "w%d", w->idx);
    bc_create_producer(c, "many", 1, name);
    for (int i = 0; i < PER_WORKER; i++) {
        char payload[32];
        int n = snprintf(payload, sizeof payload, "%s-%d", name, i);
        upulsar_tb_out_msg_t m = {.payload = payload, .len = (size_t)n};
        cr_assert_eq(upulsar_tb_client_send_messages(c, 1, name, (uint64_t)i, &m, 1, 0, 0),
                     UPULSAR_OK);
    }
    for (int i = 0; i < PER_WORKER; i++) {
        upulsar_tb_frame_t f;
        cr_assert_eq(bc_receipt(c, &f)->sequence_id, (uint64_t)i);
    }
    upulsar_tb_client_close(c);
    return NULL;
}

Test(broker_tls, concurrent_tls_connections)
{
    upulsar_tb_t *tb = start_tls(certs.srv_cert, NULL, 0);
    pthread_t th[WORKERS];
    worker_t w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (worker_t){tb, i};
        cr_assert_eq(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    for (int i = 0; i < WORKERS; i++)
        pthread_join(th[i], NULL);
    upulsar_tb_topic_stats_t ts = bc_topic_stats(tb, "many");
    cr_assert_eq(ts.messages, WORKERS * PER_WORKER);
    cr_assert_eq(bc_stats(tb).tls_handshakes, WORKERS);
    upulsar_tb_stop(tb);
}
