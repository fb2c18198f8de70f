/* test_e2e_lookup.c -- the producer's view of a cluster: lookups follow
 * redirect chains to the owning broker; a redirect loop fails
 * upulsar_producer_start() at once with an error that names the loop (not
 * after lookup.max.redirects hops); a chain longer than
 * lookup.max.redirects fails naming that key; upulsar_producer_list()
 * and the stats JSON report the broker each producer was created on; connections.per.broker
 * spreads the producers of one broker over that many TCP connections (per
 * io thread), every message still stored once and in order; a transfer
 * whose CLOSE_PRODUCER names the new owner is followed without a lookup;
 * behind a proxy, producers name their broker in CONNECT; a topic migrated
 * to another cluster (TOPIC_MIGRATED) is looked up there from then on.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

TestSuite(e2e_lookup, .timeout = 60);

/* A client of @p url with short backoff and operation timeout, plus @p kv. */
static const char *const short_op[] = {"operation.timeout.ms", "3000", NULL};
#define client(url, kv) ft_client_with((url), short_op, (kv))

/* "host:port" of @p tb, as its URL names it. */
static const char *hostport(upulsar_tb_t *tb)
{
    const char *u = upulsar_tb_url(tb);
    const char *s = strstr(u, "://");
    return s ? s + 3 : u;
}

static int active_connections(upulsar_tb_t *tb)
{
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    return st.connections_active;
}

Test(e2e_lookup, redirect_loop_fails_start_naming_the_loop)
{
    upulsar_tb_t *a = ft_broker(), *b = ft_broker();
    /* each broker believes the other owns the topic */
    cr_assert_eq(upulsar_tb_set_owner(a, "loop", upulsar_tb_url(b)), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_owner(b, "loop", upulsar_tb_url(a)), UPULSAR_OK);
    /* a limit far above the loop's length: the loop itself must stop it */
    const char *kv[] = {"lookup.max.redirects", "1000", NULL};
    upulsar_client_t *c = client(upulsar_tb_url(a), kv);
    upulsar_producer_t *p = NULL;
    upulsar_err_t e = upulsar_producer_start(c, NULL, "loop", 0, NULL, &p);
    cr_assert_eq(e, UPULSAR_ERR__LOOKUP, "%s: %s", upulsar_err_name(e), upulsar_last_error());
    cr_assert_null(p);
    const char *why = upulsar_last_error();
    cr_assert(strstr(why, "redirect loop"), "error \"%s\"", why);
    cr_assert(strstr(why, "loop"), "error \"%s\" names no topic", why);
    cr_assert(strstr(why, hostport(a)) && strstr(why, hostport(b)),
              "error \"%s\" does not name both brokers", why);
    /* the client is still usable: a topic a owns works */
    cr_assert_eq(upulsar_producer_start(c, NULL, "fine", 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(a);
    upulsar_tb_stop(b);
}

Test(e2e_lookup, redirect_chain_is_followed_and_list_names_the_owner)
{
    /* a -> b -> c: c owns the topic */
    upulsar_tb_t *a = ft_broker(), *b = ft_broker(), *c3 = ft_broker();
    cr_assert_eq(upulsar_tb_set_owner(a, "chain", upulsar_tb_url(b)), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_owner(b, "chain", upulsar_tb_url(c3)), UPULSAR_OK);

    /* one redirect allowed: not enough, and the error says which key */
    const char *one[] = {"lookup.max.redirects", "1", NULL};
    upulsar_client_t *c = client(upulsar_tb_url(a), one);
    upulsar_producer_t *p = NULL;
    upulsar_err_t e = upulsar_producer_start(c, NULL, "chain", 0, NULL, &p);
    cr_assert_eq(e, UPULSAR_ERR__LOOKUP, "%s: %s", upulsar_err_name(e), upulsar_last_error());
    cr_assert(strstr(upulsar_last_error(), "lookup.max.redirects"), "error \"%s\"",
              upulsar_last_error());
    cr_assert_null(strstr(upulsar_last_error(), "redirect loop"), "no loop here: \"%s\"",
                  upulsar_last_error());
    upulsar_client_destroy(c);

    /* the default limit follows the chain to c */
    c = client(upulsar_tb_url(a), NULL);
    cr_assert_eq(upulsar_producer_start(c, NULL, "chain", 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(p, "x", 1, NULL, &f), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_msg_id_t id;
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, &id), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_future_release(f);
    upulsar_producer_info_t pi;
    size_t n = 0;
    cr_assert_eq(upulsar_producer_list(p, &pi, 1, &n), UPULSAR_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(pi.broker, hostport(c3));
    cr_assert_eq(pi.connection, 0);
    char *json = NULL, want[300];
    cr_assert_eq(upulsar_producer_stats_json(p, &json), UPULSAR_OK);
    snprintf(want, sizeof want, "\"broker\":\"%s\",\"connection\":0", hostport(c3));
    cr_assert(strstr(json, want), "%s lacks %s", json, want);
    free(json);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(c3, &st), UPULSAR_OK);
    cr_assert_eq(st.messages, 1, "the owner stored the message");
    cr_assert_eq(upulsar_tb_stats(a, &st), UPULSAR_OK);
    cr_assert_eq(st.messages, 0);
    upulsar_client_destroy(c);
    upulsar_tb_stop(a);
    upulsar_tb_stop(b);
    upulsar_tb_stop(c3);
}

/* Start a 4-partition, 2-producers-per-partition topic with @p cpb
 * connections per broker and @p io io threads; check the broker sees
 * @p want_conns connections and each connection slot carries its share;
 * then send keyed messages from 2 threads and check the log. */
static void spread_run(const char *cpb, const char *io, int want_conns)
{
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "cpb", 4), UPULSAR_OK);
    const char *kv[] = {"connections.per.broker", cpb, "io.threads", io, NULL};
    upulsar_client_t *c = client(upulsar_tb_url(tb), kv);
    const char *pkv[] = {"producers.per.partition", "2", NULL};
    upulsar_conf_t *pconf = ft_conf(pkv);
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(c, "cpb", "cpb", 0, pconf, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_conf_destroy(pconf);
    cr_assert_eq(active_connections(tb), want_conns);

    upulsar_producer_info_t pi[8];
    size_t n = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, 8, &n), UPULSAR_OK);
    cr_assert_eq(n, 8);
    int per_slot[64] = {0}, ncpb = atoi(cpb);
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(pi[i].broker, hostport(tb));
        cr_assert(pi[i].connection >= 0 && pi[i].connection < ncpb, "connection %d",
                  pi[i].connection);
        per_slot[pi[i].connection]++;
    }
    /* evenly spread: no slot has more than one producer over another */
    int lo = 8, hi = 0;
    for (int s = 0; s < ncpb; s++) {
        lo = per_slot[s] < lo ? per_slot[s] : lo;
        hi = per_slot[s] > hi ? per_slot[s] : hi;
    }
    cr_assert_leq(hi - lo, 1 + (atoi(io) > 1), "producers per connection %d..%d", lo, hi);

    enum { THREADS = 2, TOTAL = 20000 / FT_SCALE, PER_THREAD = TOTAL / THREADS };
    ft_run_t *run = ft_run_new(p, THREADS, PER_THREAD, 2);
    ft_run_start(run);
    ft_run_join(run);
    cr_assert_eq(atomic_load(&run->refused), 0, "%s", upulsar_last_error());
    cr_assert_eq(ft_collect(run), 0, "futures left pending");
    cr_assert(ft_wait_for(ft_cbs_done, run));
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    ft_check_opts_t o = {.topic = "cpb", .partitions = 4};
    ft_check_res_t res = ft_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)TOTAL);
    cr_assert_eq(res.stored, (size_t)TOTAL);
    ft_run_free(run);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(e2e_lookup, one_connection_per_broker_by_default)
{
    spread_run("1", "1", 1);
}

Test(e2e_lookup, connections_per_broker_spreads_producers_over_connections)
{
    spread_run("3", "1", 3);
}

Test(e2e_lookup, connections_per_broker_counts_per_io_thread)
{
    spread_run("2", "2", 4);
}

static int recreated_at(void *arg)
{
    void **a = arg;
    upulsar_producer_t *p = a[0];
    const char *want = a[1];
    upulsar_producer_info_t pi;
    size_t n = 0;
    return upulsar_producer_list(p, &pi, 1, &n) == UPULSAR_OK && n == 1 &&
           pi.state == UPULSAR_STATE_READY && strcmp(pi.broker, want) == 0;
}

static uint64_t lookups(upulsar_tb_t *tb)
{
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    return st.lookups;
}

/* A topic transfer whose CLOSE_PRODUCER names the new owner
 * (assignedBrokerServiceUrl, as Pulsar's extensible load manager sends it)
 * is followed without a lookup; one without it is looked up again. */
Test(e2e_lookup, transfer_naming_the_new_owner_is_followed_without_a_lookup)
{
    upulsar_tb_t *a = ft_broker(), *b = NULL;
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.shared_store_with = a;
    cr_assert_eq(upulsar_tb_start(&o, &b), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_client_t *c = client(upulsar_tb_url(a), NULL);
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(c, NULL, "xfer", 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    ft_send_ok(p, NULL);

    uint64_t la = lookups(a), lb = lookups(b);
    cr_assert_geq(upulsar_tb_move_topic_ex(a, "xfer", upulsar_tb_url(b), UPULSAR_TB_MOVE_ASSIGNED),
                  1);
    void *at_b[] = {p, (void *)hostport(b)};
    cr_assert(ft_wait_for(recreated_at, at_b), "not re-created at the assigned broker");
    ft_send_ok(p, NULL);
    cr_assert_eq(lookups(a), la, "looked up at the old owner");
    cr_assert_eq(lookups(b), lb, "looked up at the new owner");

    /* without the assigned URL: a lookup (at the service URL, a) */
    cr_assert_geq(upulsar_tb_move_topic(b, "xfer", upulsar_tb_url(a)), 1);
    void *at_a[] = {p, (void *)hostport(a)};
    cr_assert(ft_wait_for(recreated_at, at_a), "not re-created at the new owner");
    ft_send_ok(p, NULL);
    cr_assert_gt(lookups(a), la, "no lookup after a transfer that named no owner");

    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(a, "xfer", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 3, "the shared log holds all three");
    upulsar_tb_snapshot_free(s);
    upulsar_client_destroy(c);
    upulsar_tb_stop(b);
    upulsar_tb_stop(a);
}

static upulsar_tb_stats_t tb_stats(upulsar_tb_t *tb)
{
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    return st;
}

static int all_ready_again(void *p)
{
    upulsar_producer_info_t pi[4];
    size_t n = 0;
    if (upulsar_producer_list(p, pi, 4, &n) != UPULSAR_OK)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (pi[i].state != UPULSAR_STATE_READY || pi[i].reconnects < 1)
            return 0;
    return 1;
}

/* Behind a Pulsar proxy (lookups answered with proxy_through_service_url),
 * producers connect to the service URL and name their broker in
 * CONNECT.proxy_to_broker_url; a connection that does not is one the proxy
 * serves lookups on only, and closes on PRODUCER. Re-creation after the
 * connections drop goes through the proxy again. */
Test(e2e_lookup, producers_behind_a_proxy_name_their_broker_in_connect)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.proxy_mode = 1;
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_tb_set_partitions(tb, "px", 2), UPULSAR_OK);
    upulsar_client_t *c = client(upulsar_tb_url(tb), NULL);
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(c, "px", "px", 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_tb_stats_t st = tb_stats(tb);
    cr_assert_geq(st.proxied_connections, 1);
    cr_assert_eq(st.lookup_only_closed, 0);
    upulsar_producer_info_t pi[2];
    size_t n = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, 2, &n), UPULSAR_OK);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(pi[i].broker, hostport(tb));
    for (int i = 0; i < 8; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        upulsar_send_opts_t so = {.partition_key = key};
        ft_send_ok(p, &so);
    }
    uint64_t before = st.proxied_connections;
    cr_assert_geq(upulsar_tb_drop_connections(tb, NULL), 1);
    cr_assert(ft_wait_for(all_ready_again, p), "not re-created through the proxy");
    ft_send_ok(p, NULL);
    st = tb_stats(tb);
    cr_assert_gt(st.proxied_connections, before);
    cr_assert_eq(st.lookup_only_closed, 0);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

static int ready_at(void *arg)
{
    void **a = arg;
    upulsar_producer_info_t pi;
    size_t n = 0;
    return upulsar_producer_list(a[0], &pi, 1, &n) == UPULSAR_OK && n == 1 &&
           pi.state == UPULSAR_STATE_READY && !strcmp(pi.broker, (const char *)a[1]);
}

/* Blue-green migration: the old cluster tells its producers TOPIC_MIGRATED
 * with the new cluster's URL, keeps answering lookups as before and never
 * answers a PRODUCER for the topic again; the producer looks the topic up
 * in the new cluster from then on (also after later reconnects) and loses
 * nothing. */
Test(e2e_lookup, migrated_topic_is_followed_to_the_new_cluster)
{
    upulsar_tb_t *blue = ft_broker(), *green = ft_broker();
    upulsar_client_t *c = client(upulsar_tb_url(blue), NULL);
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(c, "mig", "mig", 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_tb_migrate_topic(blue, "mig", upulsar_tb_url(green)), 1);
    void *at_green[] = {p, (void *)hostport(green)};
    cr_assert(ft_wait_for(ready_at, at_green), "not re-created in the new cluster");
    ft_send_ok(p, NULL);
    /* a later reconnect still goes to the new cluster */
    uint64_t blue_lookups = tb_stats(blue).lookups;
    cr_assert_geq(upulsar_tb_drop_connections(green, NULL), 1);
    cr_assert(ft_wait_for(all_ready_again, p));
    ft_send_ok(p, NULL);
    cr_assert_eq(tb_stats(blue).lookups, blue_lookups, "looked up in the old cluster again");
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(green, "mig", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 2);
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_tb_snapshot(blue, "mig", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    upulsar_tb_snapshot_free(s);
    upulsar_client_destroy(c);
    upulsar_tb_stop(blue);
    upulsar_tb_stop(green);
}

/* A migration whose URL this client cannot use (here: only a TLS URL for a
 * plaintext client) leaves it at the old cluster, which answers every
 * PRODUCER with TOPIC_MIGRATED: the failed attempt backs off instead of
 * looping. With a backoff no test outlives (see fault_common.h), exactly
 * one attempt follows the migration -- one lookup, one PRODUCER answered
 * TOPIC_MIGRATED -- and none in the watchdog passes after it; a client
 * that took each TOPIC_MIGRATED as a fresh orderly close would retry in
 * the first of them (it once made ~3200 lookups in 600 ms). */
Test(e2e_lookup, unusable_migration_url_backs_off)
{
    upulsar_tb_t *blue = ft_broker();
    const char *kv[] = {"backoff.initial.ms", FT_NEVER_MS, "backoff.max.ms", FT_NEVER_MS,
                        "stats.interval.ms", "1", NULL};
    upulsar_client_t *c = client(upulsar_tb_url(blue), kv);
    ft_passes_t passes;
    ft_passes_watch(c, &passes);
    const char *pkv[] = {"send.timeout.ms", "0", NULL}; /* no mandatory stop */
    upulsar_producer_t *p = ft_producer(c, "um", "unusable", 0, pkv);
    ft_send_ok(p, NULL);
    uint64_t before = tb_stats(blue).lookups;
    int answers[8];
    cr_assert_eq(ft_producer_answers(blue, "unusable", answers, 8), 1);
    cr_assert_eq(upulsar_tb_migrate_topic(blue, "unusable", "pulsar+ssl://127.0.0.1:1"), 1);
    ft_reconnects_wait_t one = {p, 1};
    cr_assert(ft_wait_for(ft_backing_off_after, &one), "no failed attempt after the migration");
    cr_assert(ft_passes_wait(&passes, FT_PASSES), "the watchdog stopped");
    cr_assert_eq(ft_reconnects(p), 1, "%llu attempts: the failed one did not back off",
                 (unsigned long long)ft_reconnects(p));
    cr_assert_eq(tb_stats(blue).lookups - before, 1, "%llu lookups after the migration",
                 (unsigned long long)(tb_stats(blue).lookups - before));
    size_t n = ft_producer_answers(blue, "unusable", answers, 8);
    cr_assert_eq(n, 2, "%zu PRODUCER requests", n);
    cr_assert_eq(answers[0], UPULSAR_TB_PRODUCER_CREATED);
    cr_assert_eq(answers[1], UPULSAR_TB_PRODUCER_MIGRATED);
    cr_assert(ft_backing_off_after(&one), "no longer backing off");
    upulsar_producer_stop(p, 1000);
    upulsar_client_destroy(c);
    upulsar_tb_stop(blue);
}
