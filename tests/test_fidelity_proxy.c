/* test_fidelity_proxy.c -- lookups through a Pulsar proxy whose link to
 * its brokers uses another scheme than the client. A Pulsar proxy
 * (LookupProxyHandler) answers LOOKUP with Connect, proxy_through_service_url
 * and the URL by which IT reaches the broker in both brokerServiceUrl and
 * brokerServiceUrlTls: "pulsar+ssl://" for a plain client behind a proxy
 * that speaks TLS to its brokers, "pulsar://" for a TLS client behind a
 * TLS-terminating proxy. Through a proxy only the service URL's scheme
 * matters: the producer connects to the proxy, names the broker's host:port
 * in CONNECT, and every message is stored once, in order.
 * The test broker's side: its lookup answers are checked field by field
 * (a broker: its own port's field only; a proxy: the link URL in both).
 *
 * A topic transfer behind such a proxy: the old owner's CLOSE_PRODUCER
 * names the new owner in the field of each port that broker opens
 * (assignedBrokerServiceUrl, assignedBrokerServiceUrlTls), and a Pulsar
 * proxy passes it on untouched. Through a proxy the producer reconnects to
 * the service URL and names the new owner as the proxy reaches it, so the
 * field to follow is the one in the scheme of the proxy's link (learnt
 * from the proxy's lookup answer), not the client's: followed at once,
 * without a lookup, whatever the backoff.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "broker_common.h"
#include "fault_common.h"
#include "tls_certs.h"

static tls_certs_t certs;
static int have_certs;

static void setup(void) { have_certs = tls_certs_make(&certs) == 0; }
static void teardown(void)
{
    if (have_certs)
        tls_certs_remove(&certs);
}
TestSuite(fidelity_proxy, .init = setup, .fini = teardown, .timeout = 120);

/* "host:port" of @p url. */
static const char *hostport_of(const char *url)
{
    const char *s = strstr(url, "://");
    return s ? s + 3 : url;
}

/* A proxy_mode broker on a plaintext (@p tls_cert NULL) or TLS port whose
 * link to its brokers is @p link (UPULSAR_TB_PROXY_LINK_*). */
static upulsar_tb_t *proxy(int link, const char *tls_cert)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.proxy_mode = 1;
    o.proxy_broker_link = link;
    o.tls_cert_file = tls_cert;
    o.tls_key_file = tls_cert ? certs.srv_key : NULL;
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    return tb;
}

/* Send @p n numbered messages through @p c to @p topic, each acknowledged,
 * and check the log holds exactly them, once each, in order; the producer
 * names the broker behind the proxy (@p broker, host:port) and the proxy
 * counted a connection naming it in CONNECT. */
static void produce_through(upulsar_client_t *c, upulsar_tb_t *tb, const char *topic,
                            const char *broker, int n)
{
    upulsar_producer_t *p = NULL;
    upulsar_err_t e = upulsar_producer_start(c, "px", topic, 0, NULL, &p);
    cr_assert_eq(e, UPULSAR_OK, "start through the proxy: %s: %s", upulsar_err_name(e),
                 upulsar_last_error());
    upulsar_producer_info_t pi;
    size_t np = 0;
    cr_assert_eq(upulsar_producer_list(p, &pi, 1, &np), UPULSAR_OK);
    cr_assert_eq(np, 1);
    cr_assert_str_eq(pi.broker, broker);
    for (int i = 0; i < n; i++) {
        char body[32];
        int len = snprintf(body, sizeof body, "m%d", i);
        upulsar_future_t *f = NULL;
        cr_assert_eq(upulsar_send(p, body, (size_t)len, NULL, &f), UPULSAR_OK);
        cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, NULL), UPULSAR_OK, "%s",
                     upulsar_last_error());
        upulsar_future_release(f);
    }
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    cr_assert_geq(st.proxied_connections, 1);
    cr_assert_eq(st.lookup_only_closed, 0);
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)n);
    for (int i = 0; i < n; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        char body[32];
        int len = snprintf(body, sizeof body, "m%d", i);
        cr_assert_eq(m->payload_len, (size_t)len);
        cr_assert_eq(memcmp(m->payload, body, (size_t)len), 0, "message %d out of place", i);
        cr_assert_eq(m->sequence_id, (uint64_t)i);
    }
    upulsar_tb_snapshot_free(s);
}

Test(fidelity_proxy, lookup_answers_fill_the_url_fields_as_broker_and_proxy_do)
{
    upulsar_tb_frame_t f;
    /* a broker with a plaintext port only: brokerServiceUrl, no TLS URL */
    upulsar_tb_t *b = bc_broker();
    upulsar_tb_client_t *c = bc_connect(b);
    bc_lookup_resp_t *r = bc_lookup(c, "t", 0, &f);
    cr_assert_eq(r->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect);
    cr_assert_str_eq(r->brokerserviceurl, upulsar_tb_url(b));
    cr_assert(!r->brokerserviceurltls || !r->brokerserviceurltls[0]);
    cr_assert(!r->proxy_through_service_url);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(b);

    /* proxies: the proxy-to-broker URL in both fields, in the link's scheme */
    const struct {
        int link;
        const char *scheme;
    } cases[] = {{UPULSAR_TB_PROXY_LINK_SAME, "pulsar://"},
                 {UPULSAR_TB_PROXY_LINK_PLAIN, "pulsar://"},
                 {UPULSAR_TB_PROXY_LINK_TLS, "pulsar+ssl://"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        upulsar_tb_t *px = proxy(cases[i].link, NULL);
        char want[96];
        snprintf(want, sizeof want, "%s%s", cases[i].scheme, hostport_of(upulsar_tb_url(px)));
        c = bc_connect(px);
        r = bc_lookup(c, "t", 0, &f);
        cr_assert_eq(r->response,
                     PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect);
        cr_assert(r->has_proxy_through_service_url && r->proxy_through_service_url);
        cr_assert_not_null(r->brokerserviceurl);
        cr_assert_not_null(r->brokerserviceurltls);
        cr_assert_str_eq(r->brokerserviceurl, want, "link %d", cases[i].link);
        cr_assert_str_eq(r->brokerserviceurltls, want, "link %d", cases[i].link);
        upulsar_tb_client_close(c);
        upulsar_tb_stop(px);
    }
}

/* A plaintext client behind a proxy that reaches its brokers over TLS: the
 * answer names a pulsar+ssl:// broker, which the client does not connect
 * to itself. */
Test(fidelity_proxy, plain_client_behind_a_proxy_with_a_tls_broker_link)
{
    upulsar_tb_t *px = proxy(UPULSAR_TB_PROXY_LINK_TLS, NULL);
    const char *kv[] = {"operation.timeout.ms", "5000", NULL};
    upulsar_client_t *c = ft_client(px, kv);
    produce_through(c, px, "plain-over-tls-link", hostport_of(upulsar_tb_url(px)), 20);
    upulsar_client_destroy(c);
    upulsar_tb_stop(px);
}

/* A TLS client behind a TLS-terminating proxy whose brokers are plain. */
Test(fidelity_proxy, tls_client_behind_a_tls_terminating_proxy)
{
    cr_assert(have_certs, "openssl CLI failed to make the test certificates");
    upulsar_tb_t *px = proxy(UPULSAR_TB_PROXY_LINK_PLAIN, certs.srv_cert);
    const char *kv[] = {"tls.ca.file", certs.ca, "operation.timeout.ms", "5000", NULL};
    upulsar_client_t *c = ft_client(px, kv);
    produce_through(c, px, "tls-over-plain-link", hostport_of(upulsar_tb_url(px)), 20);
    upulsar_client_destroy(c);
    upulsar_tb_stop(px);
}

typedef struct {
    upulsar_producer_t *p;
    const char *broker;
} ready_at_t;

/* For ft_wait_for(): is the producer ready on w->broker? */
static int ready_at(void *a)
{
    ready_at_t *w = a;
    upulsar_producer_info_t pi;
    size_t n = 0;
    return upulsar_producer_list(w->p, &pi, 1, &n) == UPULSAR_OK && n == 1 &&
           pi.state == UPULSAR_STATE_READY && !strcmp(pi.broker, w->broker);
}

/* Send messages "m<from>" .. "m<to - 1>" through @p p, each acknowledged. */
static void send_range(upulsar_producer_t *p, int from, int to)
{
    for (int i = from; i < to; i++) {
        char body[32];
        int len = snprintf(body, sizeof body, "m%d", i);
        upulsar_future_t *f = NULL;
        cr_assert_eq(upulsar_send(p, body, (size_t)len, NULL, &f), UPULSAR_OK);
        cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, NULL), UPULSAR_OK, "message %d: %s", i,
                     upulsar_last_error());
        upulsar_future_release(f);
    }
}

/* A topic owned by broker A moves to broker B (sharing A's store) behind
 * the proxy @p px, whose link to its brokers is TLS when @p link_tls; the
 * client (@p client_kv: TLS or not) reaches both through @p px only. The
 * CLOSE_PRODUCER names B in the field of the proxy link's scheme only (a
 * test broker opens one port), and the producer must follow it at once:
 * its backoff outlasts the test, and the proxy sees no lookup after the
 * move. Every message is stored once, in order. */
static void transfer_through(upulsar_tb_t *px, bool link_tls, const char *const *client_kv)
{
    upulsar_tb_t *a = ft_broker();
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.shared_store_with = a;
    upulsar_tb_t *b = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &b), UPULSAR_OK, "%s", upulsar_last_error());
    const char *topic = "moved-behind-proxy";
    cr_assert_eq(upulsar_tb_set_owner(px, topic, upulsar_tb_url(a)), UPULSAR_OK);
    const char *never[] = {"backoff.initial.ms", FT_NEVER_MS, "backoff.max.ms", FT_NEVER_MS,
                           NULL};
    upulsar_client_t *c = ft_client_with(upulsar_tb_url(px), client_kv, never);
    upulsar_producer_t *p = NULL;
    upulsar_err_t e = upulsar_producer_start(c, "px", topic, 0, NULL, &p);
    cr_assert_eq(e, UPULSAR_OK, "start through the proxy: %s", upulsar_last_error());
    ready_at_t at_a = {p, hostport_of(upulsar_tb_url(a))};
    cr_assert(ready_at(&at_a), "not created on the first owner behind the proxy");
    enum { N = 10 };
    send_range(p, 0, N);

    /* the proxy now finds B; A closes its producer naming B as its new
     * owner, in the scheme of the proxy's link */
    cr_assert_eq(upulsar_tb_set_owner(px, topic, upulsar_tb_url(b)), UPULSAR_OK);
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(px, &st), UPULSAR_OK);
    uint64_t lookups = st.lookups;
    char assigned[96];
    snprintf(assigned, sizeof assigned, "%s%s", link_tls ? "pulsar+ssl://" : "pulsar://",
             hostport_of(upulsar_tb_url(b)));
    cr_assert_eq(upulsar_tb_move_topic_ex(a, topic, assigned, UPULSAR_TB_MOVE_ASSIGNED), 1);
    ready_at_t at_b = {p, hostport_of(upulsar_tb_url(b))};
    cr_assert(ft_wait_for(ready_at, &at_b),
              "the producer did not follow the CLOSE_PRODUCER naming the new owner");
    cr_assert_eq(ft_reconnects(p), 1);
    send_range(p, N, 2 * N);
    cr_assert_eq(upulsar_tb_stats(px, &st), UPULSAR_OK);
    cr_assert_eq(st.lookups, lookups, "looked the topic up instead of following the close");
    cr_assert_geq(st.proxy_relayed, 2, "the proxy relayed %llu connections",
                  (unsigned long long)st.proxy_relayed);
    cr_assert_eq(st.lookup_only_closed, 0);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);

    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(b, topic, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)(2 * N));
    for (int i = 0; i < 2 * N; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        char body[32];
        int len = snprintf(body, sizeof body, "m%d", i);
        cr_assert_eq(m->payload_len, (size_t)len);
        cr_assert_eq(memcmp(m->payload, body, (size_t)len), 0, "message %d out of place", i);
        cr_assert_eq(m->sequence_id, (uint64_t)i);
    }
    upulsar_tb_snapshot_free(s);
    upulsar_client_destroy(c);
    upulsar_tb_stop(b);
    upulsar_tb_stop(a);
}

/* A TLS client behind a TLS-terminating proxy whose brokers are plain: the
 * CLOSE_PRODUCER names the new owner in assignedBrokerServiceUrl only. */
Test(fidelity_proxy, tls_client_follows_a_transfer_through_a_tls_terminating_proxy)
{
    cr_assert(have_certs, "openssl CLI failed to make the test certificates");
    upulsar_tb_t *px = proxy(UPULSAR_TB_PROXY_LINK_PLAIN, certs.srv_cert);
    const char *kv[] = {"tls.ca.file", certs.ca, "operation.timeout.ms", "5000", NULL};
    transfer_through(px, false, kv);
    upulsar_tb_stop(px);
}

/* A plain client behind a proxy that speaks TLS to its brokers: the
 * CLOSE_PRODUCER names the new owner in assignedBrokerServiceUrlTls only. */
Test(fidelity_proxy, plain_client_follows_a_transfer_through_a_proxy_with_a_tls_link)
{
    upulsar_tb_t *px = proxy(UPULSAR_TB_PROXY_LINK_TLS, NULL);
    const char *kv[] = {"operation.timeout.ms", "5000", NULL};
    transfer_through(px, true, kv);
    upulsar_tb_stop(px);
}
