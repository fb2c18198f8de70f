/* test_e2e_tls.c -- the producer against TLS, token-checking and
 * multi-broker test brokers: pulsar+ssl:// round trip; an untrusted CA, a
 * host name the certificate does not name and an expired certificate each
 * make upulsar_producer_start() fail naming its cause; mutual TLS; a valid
 * token accepted, an invalid one refused with
 * UPULSAR_ERR_AUTHENTICATION_ERROR and no token in upulsar_last_error();
 * a token file rotated and presented again on AUTH_CHALLENGE; a
 * 16-partition topic spread over 3 brokers (plaintext and TLS) with
 * partitions moved between brokers mid-stream: nothing lost, nothing
 * duplicated, every future resolved.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <fcntl.h>
#include <unistd.h>

#include "fault_common.h"
#include "tls_certs.h"

#define GOOD "eyJhbGciOiJIUzI1NiJ9.e2e-good-token.sig"
#define GOOD2 "eyJhbGciOiJIUzI1NiJ9.e2e-rotated-token.sig"
#define BAD "eyJhbGciOiJIUzI1NiJ9.e2e-forged-token.sig"

static tls_certs_t certs;
static char wrong_host_cert[320];

static void setup(void)
{
    cr_assert_eq(tls_certs_make(&certs), 0, "openssl CLI failed");
    snprintf(wrong_host_cert, sizeof wrong_host_cert, "%s/wronghost.pem", certs.dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "(cd %s && printf 'subjectAltName=DNS:elsewhere.invalid\\n' > ext2 && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out wronghost.pem -days 2 -extfile ext2) >/dev/null 2>&1",
             certs.dir);
    cr_assert_eq(system(cmd), 0, "openssl CLI failed");
}
static void teardown(void) { tls_certs_remove(&certs); }
TestSuite(e2e_tls, .init = setup, .fini = teardown, .timeout = 30);

typedef struct {
    const char *cert;            /* NULL: plaintext */
    const char *ca;              /* client certificates' CA */
    int require_client_cert;
    const char *const *tokens;
    size_t ntokens;
    upulsar_tb_t *share;
} broker_cfg_t;

static upulsar_tb_t *broker(const broker_cfg_t *b)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.tls_cert_file = b->cert;
    o.tls_key_file = b->cert ? certs.srv_key : NULL;
    o.tls_ca_file = b->ca;
    o.tls_require_client_cert = b->require_client_cert;
    o.auth_tokens = b->tokens;
    o.auth_tokens_cnt = b->ntokens;
    o.shared_store_with = b->share;
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    return tb;
}

/* A client of @p url with short backoff and operation timeout, plus @p kv. */
static const char *const short_op[] = {"operation.timeout.ms", "3000", NULL};
#define client(url, kv) ft_client_with((url), short_op, (kv))

/* Start a producer on @p topic, send @p n messages, wait for each and check
 * the broker stored them in order. */
static void produce(upulsar_client_t *c, upulsar_tb_t *tb, const char *topic, int n)
{
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(c, "e2e", topic, 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_future_t **f = calloc((size_t)n, sizeof *f);
    cr_assert_not_null(f);
    for (int i = 0; i < n; i++) {
        char payload[32];
        int len = snprintf(payload, sizeof payload, "msg-%d", i);
        cr_assert_eq(upulsar_send(p, payload, (size_t)len, NULL, &f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    for (int i = 0; i < n; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, &id), UPULSAR_OK, "%s",
                     upulsar_last_error());
        upulsar_future_release(f[i]);
    }
    free(f);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)n);
    for (int i = 0; i < n; i++) {
        char want[32];
        int len = snprintf(want, sizeof want, "msg-%d", i);
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        cr_assert_eq(m->payload_len, (size_t)len);
        cr_assert_arr_eq(m->payload, want, (size_t)len);
    }
    upulsar_tb_snapshot_free(s);
}

/* upulsar_producer_start() must fail: returns its error. */
static upulsar_err_t start_fails(upulsar_client_t *c, const char *topic)
{
    upulsar_producer_t *p = NULL;
    upulsar_err_t e = upulsar_producer_start(c, NULL, topic, 0, NULL, &p);
    cr_assert_neq(e, UPULSAR_OK, "producer started");
    cr_assert_null(p);
    return e;
}

static upulsar_tb_stats_t stats(upulsar_tb_t *tb)
{
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    return st;
}

Test(e2e_tls, producer_over_tls)
{
    broker_cfg_t bc = {.cert = certs.srv_cert};
    upulsar_tb_t *tb = broker(&bc);
    const char *kv[] = {"tls.ca.file", certs.ca, NULL};
    upulsar_client_t *c = client(upulsar_tb_url(tb), kv);
    produce(c, tb, "secure", 2000 / FT_SCALE);
    upulsar_client_destroy(c);
    cr_assert_geq(stats(tb).tls_handshakes, 1);
    /* the IP in the certificate's names works as well */
    char ip_url[64];
    snprintf(ip_url, sizeof ip_url, "pulsar+ssl://127.0.0.1:%d", upulsar_tb_port(tb));
    c = client(ip_url, kv);
    produce(c, tb, "secure-ip", 10);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(e2e_tls, certificate_refusals_name_their_cause)
{
    broker_cfg_t bc = {.cert = certs.srv_cert};
    upulsar_tb_t *good = broker(&bc);
    bc.cert = certs.exp_cert;
    upulsar_tb_t *expired = broker(&bc);
    bc.cert = wrong_host_cert;
    upulsar_tb_t *wrong = broker(&bc);

    const char *other_ca[] = {"tls.ca.file", certs.ca2, NULL};
    upulsar_client_t *c = client(upulsar_tb_url(good), other_ca);
    cr_assert_eq(start_fails(c, "t"), UPULSAR_ERR__TLS, "%s", upulsar_last_error());
    cr_assert(strstr(upulsar_last_error(), "unable to get local issuer certificate"), "%s",
              upulsar_last_error());
    upulsar_client_destroy(c);

    const char *trust[] = {"tls.ca.file", certs.ca, NULL};
    c = client(upulsar_tb_url(expired), trust);
    cr_assert_eq(start_fails(c, "t"), UPULSAR_ERR__TLS, "%s", upulsar_last_error());
    cr_assert(strstr(upulsar_last_error(), "certificate has expired"), "%s",
              upulsar_last_error());
    upulsar_client_destroy(c);

    c = client(upulsar_tb_url(wrong), trust);
    cr_assert_eq(start_fails(c, "t"), UPULSAR_ERR__TLS, "%s", upulsar_last_error());
    cr_assert(strstr(upulsar_last_error(), "hostname mismatch"), "%s", upulsar_last_error());
    upulsar_client_destroy(c);

    /* the same broker with host name checks off */
    const char *lax[] = {"tls.ca.file", certs.ca, "tls.verify.hostname", "false", NULL};
    c = client(upulsar_tb_url(wrong), lax);
    produce(c, wrong, "lax", 10);
    upulsar_client_destroy(c);

    /* a plaintext client at a TLS port, and a TLS client at a plaintext one */
    char plain_url[64];
    snprintf(plain_url, sizeof plain_url, "pulsar://127.0.0.1:%d", upulsar_tb_port(good));
    c = client(plain_url, NULL);
    start_fails(c, "t");
    upulsar_client_destroy(c);
    broker_cfg_t pc = {0};
    upulsar_tb_t *plain = broker(&pc);
    char tls_url[64];
    snprintf(tls_url, sizeof tls_url, "pulsar+ssl://localhost:%d", upulsar_tb_port(plain));
    c = client(tls_url, trust);
    cr_assert_eq(start_fails(c, "t"), UPULSAR_ERR__TLS, "%s", upulsar_last_error());
    upulsar_client_destroy(c);

    /* and the good broker serves a client that trusts it */
    c = client(upulsar_tb_url(good), trust);
    produce(c, good, "fine", 10);
    upulsar_client_destroy(c);
    upulsar_tb_stop(plain);
    upulsar_tb_stop(good);
    upulsar_tb_stop(expired);
    upulsar_tb_stop(wrong);
}

Test(e2e_tls, mutual_tls)
{
    broker_cfg_t bc = {.cert = certs.srv_cert, .ca = certs.ca, .require_client_cert = 1};
    upulsar_tb_t *tb = broker(&bc);
    const char *anon[] = {"tls.ca.file", certs.ca, NULL};
    upulsar_client_t *c = client(upulsar_tb_url(tb), anon);
    upulsar_err_t e = start_fails(c, "t");
    cr_assert(e == UPULSAR_ERR__TLS || e == UPULSAR_ERR__CONNECT || e == UPULSAR_ERR__TIMED_OUT,
              "%d: %s", e, upulsar_last_error());
    upulsar_client_destroy(c);
    cr_assert_geq(stats(tb).tls_failures, 1);
    const char *cert[] = {"tls.ca.file", certs.ca, "tls.cert.file", certs.cli_cert,
                          "tls.key.file", certs.cli_key, NULL};
    c = client(upulsar_tb_url(tb), cert);
    produce(c, tb, "mtls", 100);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

/* On a broker that requires authentication, a client certificate without a
 * token authenticates (auth_method_name "tls", as the official clients'
 * AuthenticationTls sends); with a token too, the token is used. */
Test(e2e_tls, client_certificate_authenticates_where_authentication_is_required)
{
    const char *tokens[] = {GOOD};
    broker_cfg_t bc = {.cert = certs.srv_cert, .ca = certs.ca, .require_client_cert = 1,
                       .tokens = tokens, .ntokens = 1};
    upulsar_tb_t *tb = broker(&bc);
    const char *cert[] = {"tls.ca.file", certs.ca, "tls.cert.file", certs.cli_cert,
                          "tls.key.file", certs.cli_key, NULL};
    upulsar_client_t *c = client(upulsar_tb_url(tb), cert);
    produce(c, tb, "mtls-auth", 10);
    upulsar_client_destroy(c);
    upulsar_tb_stats_t st = stats(tb);
    cr_assert_geq(st.auth_ok, 1);
    cr_assert_eq(st.auth_failed, 0);
    const char *both[] = {"tls.ca.file", certs.ca, "tls.cert.file", certs.cli_cert,
                          "tls.key.file", certs.cli_key, "auth.token", GOOD, NULL};
    c = client(upulsar_tb_url(tb), both);
    produce(c, tb, "mtls-token", 10);
    upulsar_client_destroy(c);
    cr_assert_eq(stats(tb).auth_failed, 0);
    upulsar_tb_stop(tb);
}

Test(e2e_tls, tokens_accepted_and_refused)
{
    static const char *const tokens[] = {GOOD};
    broker_cfg_t bc = {.cert = certs.srv_cert, .tokens = tokens, .ntokens = 1};
    upulsar_tb_t *tb = broker(&bc);
    const char *ok[] = {"tls.ca.file", certs.ca, "auth.token", GOOD, NULL};
    upulsar_client_t *c = client(upulsar_tb_url(tb), ok);
    produce(c, tb, "authed", 100);
    upulsar_client_destroy(c);
    cr_assert_geq(stats(tb).auth_ok, 1);

    const char *bad[] = {"tls.ca.file", certs.ca, "auth.token", BAD, NULL};
    c = client(upulsar_tb_url(tb), bad);
    cr_assert_eq(start_fails(c, "t"), UPULSAR_ERR_AUTHENTICATION_ERROR, "%s",
                 upulsar_last_error());
    cr_assert_null(strstr(upulsar_last_error(), "forged-token"), "%s", upulsar_last_error());
    cr_assert_null(strstr(upulsar_last_error(), BAD), "%s", upulsar_last_error());
    upulsar_client_destroy(c);

    const char *none[] = {"tls.ca.file", certs.ca, NULL};
    c = client(upulsar_tb_url(tb), none);
    cr_assert_eq(start_fails(c, "t"), UPULSAR_ERR_AUTHENTICATION_ERROR, "%s",
                 upulsar_last_error());
    upulsar_client_destroy(c);
    cr_assert_geq(stats(tb).auth_failed, 2);
    upulsar_tb_stop(tb);
}

static void write_token(const char *path, const char *tok)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s\n", tok);
    fclose(f);
}

typedef struct {
    upulsar_tb_t *tb;
    uint64_t ok;
} auth_wait_t;

static int auth_ok_reached(void *a)
{
    auth_wait_t *w = a;
    return stats(w->tb).auth_ok >= w->ok;
}

/* The token file is read again for every AUTH_CHALLENGE: a rotated token
 * keeps the connection; the connection stays usable. */
Test(e2e_tls, token_file_rotated_and_presented_on_challenge)
{
    static const char *const tokens[] = {GOOD};
    broker_cfg_t bc = {.cert = certs.srv_cert, .tokens = tokens, .ntokens = 1};
    upulsar_tb_t *tb = broker(&bc);
    char path[300];
    snprintf(path, sizeof path, "%s/token", certs.dir);
    write_token(path, GOOD);
    const char *kv[] = {"tls.ca.file", certs.ca, "auth.token.file", path, NULL};
    upulsar_client_t *c = client(upulsar_tb_url(tb), kv);
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(c, "rot", "rotating", 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_future_t *f;
    upulsar_msg_id_t id;
    cr_assert_eq(upulsar_send(p, "one", 3, NULL, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, &id), UPULSAR_OK);
    upulsar_future_release(f);
    upulsar_tb_stats_t st0 = stats(tb);

    /* rotate: the broker accepts only the new token, the file holds it */
    static const char *const rotated[] = {GOOD2};
    cr_assert_eq(upulsar_tb_set_tokens(tb, rotated, 1), UPULSAR_OK);
    write_token(path, GOOD2);
    cr_assert_geq(upulsar_tb_auth_challenge(tb), 1);
    auth_wait_t w = {tb, st0.auth_ok + 1};
    cr_assert(ft_wait_for(auth_ok_reached, &w), "the challenge was not answered");
    cr_assert_eq(upulsar_send(p, "two", 3, NULL, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, &id), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_future_release(f);
    upulsar_tb_stats_t st1 = stats(tb);
    cr_assert_eq(st1.auth_failed, st0.auth_failed);
    cr_assert_eq(st1.auth_unanswered, 0);
    cr_assert_eq(st1.connections_accepted, st0.connections_accepted, "no reconnection");
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_topic_stats_t ts;
    cr_assert_eq(upulsar_tb_topic_stats(tb, "rotating", &ts), UPULSAR_OK);
    cr_assert_eq(ts.messages, 2);
    upulsar_tb_stop(tb);
}

/* ---- 16 partitions over 3 brokers, partitions moved mid-stream ---------- */

enum { NPART = 16, NB = 3 };

typedef struct {
    upulsar_tb_t *b[NB];
    int owner[NPART];
    ft_run_t *run;
    uint64_t every, total;
    _Atomic int done;
    int moves;
    uint64_t closed; /* producers the moves closed */
} topo_t;

/* Every broker learns the owner of every partition: p % 3. */
static void spread(topo_t *t, const char *topic)
{
    cr_assert_eq(upulsar_tb_set_partitions(t->b[0], topic, NPART), UPULSAR_OK);
    for (int p = 0; p < NPART; p++) {
        t->owner[p] = p % NB;
        char name[128];
        snprintf(name, sizeof name, "%s-partition-%d", topic, p);
        for (int i = 0; i < NB; i++)
            cr_assert_eq(upulsar_tb_set_owner(t->b[i], name, upulsar_tb_url(t->b[p % NB])),
                         UPULSAR_OK);
    }
}

/* Each time the brokers have stored another `every` messages, move the
 * next partition to the next broker; the senders stay within two windows. */
static void *mover(void *a)
{
    topo_t *t = a;
    uint64_t next = t->every;
    int part = 5;
    while (!atomic_load(&t->done) && next < t->total) {
        upulsar_tb_stats_t st;
        uint64_t stored = 0;
        for (int i = 0; i < NB; i++) {
            upulsar_tb_stats(t->b[i], &st);
            stored += st.messages;
        }
        if (stored < next) {
            ft_pause_ms(1);
            continue;
        }
        char name[128];
        snprintf(name, sizeof name, "topo-partition-%d", part);
        int from = t->owner[part], to = (from + 1) % NB;
        int n = upulsar_tb_move_topic(t->b[from], name, upulsar_tb_url(t->b[to]));
        if (n >= 0) {
            t->owner[part] = to;
            t->moves++;
            t->closed += (uint64_t)n;
        }
        part = (part + 3) % NPART;
        next += t->every;
        ft_run_allow(t->run, next + 2 * t->every);
    }
    ft_run_allow(t->run, t->total);
    return NULL;
}

typedef struct {
    upulsar_producer_t *p;
    uint64_t n;
} recreated_t;

/* At least n re-creations so far, and every producer READY (on a broker
 * that owns its partition: the others refuse PRODUCER). */
static int recreated(void *a)
{
    recreated_t *r = a;
    return ft_reconnects(r->p) >= r->n && ft_all_ready(r->p);
}

static void topology_run(int tls)
{
    topo_t t;
    memset(&t, 0, sizeof t);
    for (int i = 0; i < NB; i++) {
        broker_cfg_t bc = {.cert = tls ? certs.srv_cert : NULL, .share = i ? t.b[0] : NULL};
        t.b[i] = broker(&bc);
    }
    spread(&t, "topo");
    const char *trust[] = {"tls.ca.file", certs.ca, NULL};
    upulsar_client_t *c = client(upulsar_tb_url(t.b[0]), tls ? trust : NULL);
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(c, "topo", "topo", 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    /* the producers of each partition went where their partition lives */
    for (int i = 0; i < NB; i++) {
        upulsar_tb_stats_t st = stats(t.b[i]);
        cr_assert_geq(st.connections_accepted, 1, "broker %d never reached", i);
    }

    enum { THREADS = 2, TOTAL = 32000 / FT_SCALE, PER_THREAD = TOTAL / THREADS };
    ft_run_t *run = ft_run_new(p, THREADS, PER_THREAD, 2);
    t.run = run;
    t.every = 2000 / FT_SCALE;
    t.total = TOTAL;
    ft_run_allow(run, 3 * t.every);
    pthread_t mt;
    cr_assert_eq(pthread_create(&mt, NULL, mover, &t), 0);
    ft_run_start(run);
    ft_run_join(run);
    cr_assert_eq(atomic_load(&run->refused), 0, "%s", upulsar_last_error());
    cr_assert_eq(ft_collect(run), 0, "futures left pending");
    atomic_store(&t.done, 1);
    pthread_join(mt, NULL);
    cr_assert(ft_wait_for(ft_cbs_done, run));
    recreated_t rc = {p, t.closed};
    cr_assert(ft_wait_for(recreated, &rc), "%llu re-creations for %llu closed producers",
              (unsigned long long)ft_reconnects(p), (unsigned long long)t.closed);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    /* the whole topic from any broker of the shared store */
    ft_check_opts_t o = {.topic = "topo", .partitions = NPART};
    ft_check_res_t res = ft_check(t.b[NB - 1], run, &o);
    cr_assert_eq(res.ok, (size_t)TOTAL);
    cr_assert_eq(res.stored, (size_t)TOTAL);
    cr_assert_geq(t.moves, 8, "the moves did not happen");
    cr_assert_geq(t.closed, 8, "the moves closed no producer");
    /* after the moves, the partitions' producers are where their owner is */
    uint64_t stored = 0;
    for (int i = 0; i < NB; i++)
        stored += stats(t.b[i]).messages;
    cr_assert_geq(stored, (uint64_t)TOTAL);
    cr_log_info("%s: %d moves, %llu producers closed, %zu de-duplicated resends",
                tls ? "TLS" : "plaintext", t.moves, (unsigned long long)t.closed, res.unknown_ids);
    upulsar_client_destroy(c);
    ft_run_free(run);
    for (int i = 0; i < NB; i++)
        upulsar_tb_stop(t.b[i]);
}

Test(e2e_tls, sixteen_partitions_three_brokers_moves_mid_stream)
{
    topology_run(0);
}

Test(e2e_tls, sixteen_partitions_three_tls_brokers_moves_mid_stream)
{
    topology_run(1);
}
