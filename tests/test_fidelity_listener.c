/* test_fidelity_listener.c -- advertised listeners. A Pulsar cluster with
 * several advertised listeners (advertisedListeners, e.g. internal and
 * external addresses) answers a LOOKUP with the URL of the listener the
 * client names in advertised_listener_name, and without a name with its
 * internal one, which the client may not reach. The client key
 * listener.name (the official clients' listenerName) is sent in every
 * LOOKUP: at start, on redirects and at re-creation.
 *
 * The test broker's side, field by field: a named listener's URL (in the
 * field of its scheme), the broker's own URL without a name or with an
 * empty one, and ServiceNotReady "the broker do not have <name> listener"
 * for a name it does not have, as Pulsar answers.
 * The client's side: the lookup broker advertises listener "external" at
 * another broker's URL (sharing its store); producers must end up there,
 * every LOOKUP must carry the name, also after their connections drop and
 * through a redirect; an unknown name fails the start with the broker's
 * error; without the key no LOOKUP names a listener.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "broker_common.h"
#include "fault_common.h"

TestSuite(fidelity_listener, .timeout = 120);

/* "host:port" of @p url. */
static const char *hostport_of(const char *url)
{
    const char *s = strstr(url, "://");
    return s ? s + 3 : url;
}

/* A broker advertising @p n listeners (@p names at @p urls), sharing the
 * store of @p share (may be NULL). */
static upulsar_tb_t *broker_with(const char *const *names, const char *const *urls, size_t n,
                                 upulsar_tb_t *share)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.listener_names = names;
    o.listener_urls = urls;
    o.listeners_cnt = n;
    o.shared_store_with = share;
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    return tb;
}

Test(fidelity_listener, broker_answers_each_listener_with_its_url)
{
    const char *names[] = {"external", "external-tls"};
    const char *urls[] = {"pulsar://203.0.113.7:6651", "pulsar+ssl://ext.example.com:6652"};
    upulsar_tb_t *tb = broker_with(names, urls, 2, NULL);
    upulsar_tb_client_t *c = bc_connect(tb);
    upulsar_tb_frame_t f;

    bc_lookup_resp_t *r = bc_lookup_ex(c, "lt", -1, "external", &f);
    cr_assert_eq(r->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect);
    cr_assert_not_null(r->brokerserviceurl);
    cr_assert_str_eq(r->brokerserviceurl, urls[0]);
    cr_assert_null(r->brokerserviceurltls);
    cr_assert(r->has_authoritative && r->authoritative);

    r = bc_lookup_ex(c, "lt", -1, "external-tls", &f);
    cr_assert_eq(r->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect);
    cr_assert_not_null(r->brokerserviceurltls);
    cr_assert_str_eq(r->brokerserviceurltls, urls[1]);
    cr_assert_null(r->brokerserviceurl);

    /* no name, or an empty one: the broker's own (internal) URL */
    for (int i = 0; i < 2; i++) {
        r = bc_lookup_ex(c, "lt", -1, i ? "" : NULL, &f);
        cr_assert_eq(r->response,
                     PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect);
        cr_assert_not_null(r->brokerserviceurl);
        cr_assert_str_eq(r->brokerserviceurl, upulsar_tb_url(tb));
    }

    r = bc_lookup_ex(c, "lt", -1, "nope", &f);
    cr_assert_eq(r->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed);
    cr_assert(r->has_error);
    cr_assert_eq(r->error, PULSAR__PROTO__SERVER_ERROR__ServiceNotReady);
    cr_assert_not_null(r->message);
    cr_assert_str_eq(r->message, "the broker do not have nope listener");

    upulsar_tb_stats_t st = bc_stats(tb);
    cr_assert_eq(st.lookups, 5);
    cr_assert_eq(st.listener_lookups, 3, "named: external, external-tls, nope");
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(fidelity_listener, a_broker_without_listeners_refuses_a_named_lookup)
{
    upulsar_tb_t *tb = broker_with(NULL, NULL, 0, NULL);
    upulsar_tb_client_t *c = bc_connect(tb);
    upulsar_tb_frame_t f;
    bc_lookup_resp_t *r = bc_lookup_ex(c, "lt", -1, "external", &f);
    cr_assert_eq(r->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed);
    cr_assert_eq(r->error, PULSAR__PROTO__SERVER_ERROR__ServiceNotReady);
    cr_assert_str_eq(r->message, "the broker do not have external listener");
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

/* Every producer of @p p was last created on @p hostport. */
static void all_on(upulsar_producer_t *p, const char *hostport)
{
    upulsar_producer_info_t pi[16];
    size_t n = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, 16, &n), UPULSAR_OK);
    cr_assert_gt(n, 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(pi[i].broker, hostport, "%s created on %s", pi[i].partition_topic,
                         pi[i].broker);
}

/* One keyed message to every partition of @p p, each acknowledged and
 * stored once on its partition (of @p topic, @p parts partitions) in the
 * store @p tb shares. */
static void one_per_partition(upulsar_tb_t *tb, upulsar_producer_t *p, const char *topic,
                              int parts, const char *tag)
{
    int left = parts, seen[16] = {0};
    for (int k = 0; left > 0; k++) {
        cr_assert_lt(k, 100000, "no key for every partition");
        char key[32], payload[64];
        snprintf(key, sizeof key, "k%d", k);
        int g = upulsar_producer_partition_for_key(p, key);
        if (seen[g]++)
            continue;
        left--;
        int len = snprintf(payload, sizeof payload, "%s-%d", tag, g);
        upulsar_send_opts_t o = {.partition_key = key};
        upulsar_future_t *fu = NULL;
        cr_assert_eq(upulsar_send(p, payload, (size_t)len, &o, &fu), UPULSAR_OK);
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(fu, FT_WAIT_MS, &id), UPULSAR_OK, "%s",
                     upulsar_last_error());
        upulsar_future_release(fu);
        cr_assert_eq(id.partition, g);
        char t[128];
        snprintf(t, sizeof t, "%s-partition-%d", topic, g);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, t, &s), UPULSAR_OK);
        int found = 0;
        for (size_t i = 0; i < upulsar_tb_snapshot_count(s); i++) {
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, i);
            found += m->payload_len == (size_t)len && !memcmp(m->payload, payload, (size_t)len);
        }
        upulsar_tb_snapshot_free(s);
        cr_assert_eq(found, 1, "%s: %s stored %d times", t, payload, found);
    }
}

Test(fidelity_listener, listener_name_is_sent_in_every_lookup_and_its_url_used)
{
    enum { PARTS = 3 };
    /* "external" is where this client can reach the brokers: another
     * broker with the same store; the lookup broker's own URL stands for
     * the internal address */
    upulsar_tb_t *ext = broker_with(NULL, NULL, 0, NULL);
    const char *names[] = {"external"};
    const char *urls[] = {upulsar_tb_url(ext)};
    upulsar_tb_t *svc = broker_with(names, urls, 1, ext);
    cr_assert_eq(upulsar_tb_set_partitions(svc, "lsn", PARTS), UPULSAR_OK);
    const char *kv[] = {"listener.name", "external", NULL};
    upulsar_client_t *c = ft_client(svc, kv);
    upulsar_producer_t *p = ft_producer(c, "lsn", "lsn", 0, NULL);
    all_on(p, hostport_of(upulsar_tb_url(ext)));
    one_per_partition(ext, p, "persistent://public/default/lsn", PARTS, "first");
    upulsar_tb_stats_t st = bc_stats(svc);
    cr_assert_geq(st.lookups, PARTS);
    cr_assert_eq(st.listener_lookups, st.lookups, "%llu of %llu lookups named the listener",
                 (unsigned long long)st.listener_lookups, (unsigned long long)st.lookups);
    uint64_t before = st.lookups;

    /* re-creation after the connections drop looks up again, by name */
    cr_assert_gt(upulsar_tb_drop_connections(ext, NULL), 0);
    ft_assert_every_producer_recreated(p);
    all_on(p, hostport_of(upulsar_tb_url(ext)));
    one_per_partition(ext, p, "persistent://public/default/lsn", PARTS, "again");
    st = bc_stats(svc);
    cr_assert_geq(st.lookups, before + PARTS, "re-creation did not look up again");
    cr_assert_eq(st.listener_lookups, st.lookups, "%llu of %llu lookups named the listener",
                 (unsigned long long)st.listener_lookups, (unsigned long long)st.lookups);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(svc);
    upulsar_tb_stop(ext);
}

Test(fidelity_listener, the_name_goes_with_every_redirect)
{
    /* svc redirects the topic to owner, which advertises "external" at
     * ext's URL */
    upulsar_tb_t *ext = broker_with(NULL, NULL, 0, NULL);
    const char *names[] = {"external"};
    const char *urls[] = {upulsar_tb_url(ext)};
    upulsar_tb_t *owner = broker_with(names, urls, 1, ext);
    upulsar_tb_t *svc = broker_with(NULL, NULL, 0, ext);
    cr_assert_eq(upulsar_tb_set_owner(svc, "redir", upulsar_tb_url(owner)), UPULSAR_OK);
    const char *kv[] = {"listener.name", "external", NULL};
    upulsar_client_t *c = ft_client(svc, kv);
    upulsar_producer_t *p = ft_producer(c, "redir", "redir", 0, NULL);
    all_on(p, hostport_of(upulsar_tb_url(ext)));
    upulsar_msg_id_t id = ft_send_ok(p, NULL);
    cr_assert_eq(id.partition, -1);
    cr_assert_eq(ft_topic_messages(ext, "redir"), 1);
    upulsar_tb_stats_t s1 = bc_stats(svc), s2 = bc_stats(owner);
    cr_assert_geq(s1.lookups, 1);
    cr_assert_eq(s1.listener_lookups, s1.lookups, "the first lookup did not name the listener");
    cr_assert_geq(s2.lookups, 1);
    cr_assert_eq(s2.listener_lookups, s2.lookups, "the redirected lookup did not name it");
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(svc);
    upulsar_tb_stop(owner);
    upulsar_tb_stop(ext);
}

Test(fidelity_listener, an_unknown_listener_fails_the_start_with_the_brokers_error)
{
    const char *names[] = {"external"};
    const char *urls[] = {"pulsar://203.0.113.7:6651"};
    upulsar_tb_t *svc = broker_with(names, urls, 1, NULL);
    const char *kv[] = {"listener.name", "nope", "operation.timeout.ms", "500", NULL};
    upulsar_client_t *c = ft_client(svc, kv);
    upulsar_producer_t *p = NULL;
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(svc, "unk", 1), UPULSAR_OK);
    upulsar_err_t e = upulsar_producer_start(c, NULL, "unk", 1, NULL, &p);
    cr_assert_null(p);
    cr_assert_eq(e, UPULSAR_ERR_SERVICE_NOT_READY, "%s: %s", upulsar_err_name(e),
                 upulsar_last_error());
    cr_assert_not_null(strstr(upulsar_last_error(), "the broker do not have nope listener"),
                       "%s", upulsar_last_error());
    upulsar_tb_stats_t st = bc_stats(svc);
    cr_assert_geq(st.listener_lookups, 1);
    cr_assert_eq(st.listener_lookups, st.lookups);
    upulsar_client_destroy(c);
    upulsar_tb_stop(svc);
}

Test(fidelity_listener, without_the_key_no_lookup_names_a_listener)
{
    const char *names[] = {"external"};
    const char *urls[] = {"pulsar://203.0.113.7:6651"};
    upulsar_tb_t *svc = broker_with(names, urls, 1, NULL);
    upulsar_client_t *c = ft_client(svc, NULL);
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(svc, "plain", 2), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(c, NULL, "plain", 2, NULL);
    all_on(p, hostport_of(upulsar_tb_url(svc)));
    upulsar_tb_stats_t st = bc_stats(svc);
    cr_assert_geq(st.lookups, 2);
    cr_assert_eq(st.listener_lookups, 0);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(svc);
}
