/* test_edges_connections.c -- connection.idle.timeout.ms: a pooled
 * connection that no producer uses and that has no request in flight is
 * closed once it has been unused that long, and the client's statistics
 * count its connections ("connections": open, idle, opened, closed,
 * idle_closed).
 *  - The lookup connections of starts that failed against brokers that keep
 *    redirecting (a redirect loop, a chain longer than lookup.max.redirects)
 *    are all closed once idle: every broker sees its connections end, and
 *    the statistics say every connection the client opened was closed by
 *    the idle timer. The client then still works.
 *  - A connection carrying a producer is never closed by the idle timer,
 *    even with a 1 ms idle timeout, while the lookup-only connection of the
 *    same start is; after several more statistics ticks a second message
 *    goes over the same connection (the broker accepted no new one). Once
 *    the producer stops, its connection is closed in turn.
 *  - connection.idle.timeout.ms=0 never closes anything: while another
 *    client with a short idle timeout has its connections closed, the
 *    connections of the first stay open and are reused.
 *
 * No timing is asserted: the tests wait for conditions (bounded by a hang
 * guard that only decides "hung") and count statistics callbacks to let
 * several idle periods pass.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

TestSuite(edges_connections, .timeout = 150);

/* ---- the client's statistics -------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    int calls;          /* callbacks so far */
    int missing;        /* callbacks whose JSON had no "connections" object */
    char conns[512];    /* the "connections" object of the last one */
} stats_t;

typedef struct {
    long long open, idle, opened, closed, idle_closed;
} conns_t;

static void stats_cb(const char *json, void *opaque)
{
    stats_t *s = opaque;
    pthread_mutex_lock(&s->mu);
    s->calls++;
    const char *p = strstr(json, "\"connections\":{");
    const char *e = p ? strchr(p, '}') : NULL;
    if (p && e && (size_t)(e - p) < sizeof s->conns) {
        memcpy(s->conns, p, (size_t)(e - p + 1));
        s->conns[e - p + 1] = '\0';
    } else {
        s->missing++;
        s->conns[0] = '\0';
    }
    pthread_mutex_unlock(&s->mu);
}

static void stats_init(stats_t *s, upulsar_client_t *c)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    cr_assert_eq(upulsar_client_set_stats_cb(c, stats_cb, s), UPULSAR_OK);
}

static int stats_calls(stats_t *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->calls;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static long long field(const char *obj, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *p = strstr(obj, key);
    cr_assert_not_null(p, "no %s in %s", name, obj);
    return strtoll(p + strlen(key), NULL, 10);
}

/* The "connections" figures of the last callback. */
static conns_t stats_conns(stats_t *s)
{
    char obj[sizeof s->conns];
    pthread_mutex_lock(&s->mu);
    int missing = s->missing;
    memcpy(obj, s->conns, sizeof obj);
    pthread_mutex_unlock(&s->mu);
    cr_assert_eq(missing, 0, "statistics without a \"connections\" object");
    cr_assert(obj[0], "no statistics yet");
    conns_t c = {field(obj, "open"), field(obj, "idle"), field(obj, "opened"),
                 field(obj, "closed"), field(obj, "idle_closed")};
    return c;
}

typedef struct {
    stats_t *s;
    int calls;
} calls_at_least_t;

static int calls_at_least(void *a)
{
    calls_at_least_t *w = a;
    return stats_calls(w->s) >= w->calls;
}

/* Wait until @p n more callbacks have run (each later than the call), so
 * the figures read next describe the client as it is now or later. */
static void stats_wait_ticks(stats_t *s, int n)
{
    calls_at_least_t w = {s, stats_calls(s) + n};
    cr_assert(ft_wait_for(calls_at_least, &w), "statistics callbacks stopped");
}

/* ---- brokers ------------------------------------------------------------ */

static upulsar_tb_stats_t tb_stats(upulsar_tb_t *tb)
{
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    return st;
}

#define MAX_TB 5

/* For ft_wait_for(): every broker of @p tbs has no connection left, and the
 * client's statistics (refreshed since) say none is open. */
typedef struct {
    upulsar_tb_t *tbs[MAX_TB];
    int n;
    stats_t *s;
} all_closed_t;

static int all_closed(void *a)
{
    all_closed_t *w = a;
    for (int i = 0; i < w->n; i++)
        if (tb_stats(w->tbs[i]).connections_active != 0)
            return 0;
    return 1;
}

static void wait_all_closed(all_closed_t *w)
{
    cr_assert(ft_wait_for(all_closed, w), "connections still open at a broker");
    stats_wait_ticks(w->s, 2);
    conns_t c = stats_conns(w->s);
    cr_assert_eq(c.open, 0, "the client counts %lld connections open", c.open);
    cr_assert_eq(c.idle, 0, "the client counts %lld idle connections", c.idle);
}

static const char *hostport(upulsar_tb_t *tb)
{
    const char *u = upulsar_tb_url(tb);
    const char *s = strstr(u, "://");
    return s ? s + 3 : u;
}

/* ---- (a) lookups of failed starts --------------------------------------- */

Test(edges_connections, lookup_connections_of_failed_starts_are_closed_once_idle)
{
    /* "loop" (4 partitions): x and y each believe the other owns it, a loop
     * found on the fourth hop. "chain": x -> y -> z -> w -> v, v owning it:
     * four redirects, three allowed. */
    enum { NTB = 5 };
    upulsar_tb_t *tb[NTB];
    for (int i = 0; i < NTB; i++)
        tb[i] = ft_broker();
    upulsar_tb_t *x = tb[0], *y = tb[1], *z = tb[2], *w = tb[3], *v = tb[4];
    cr_assert_eq(upulsar_tb_set_partitions(x, "loop", 4), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_owner(x, "loop", upulsar_tb_url(y)), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_owner(y, "loop", upulsar_tb_url(x)), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_owner(x, "chain", upulsar_tb_url(y)), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_owner(y, "chain", upulsar_tb_url(z)), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_owner(z, "chain", upulsar_tb_url(w)), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_owner(w, "chain", upulsar_tb_url(v)), UPULSAR_OK);

    /* two io threads: lookups run on the loop of the producer they are
     * for, so each loop has connections of its own */
    const char *kv[] = {"connection.idle.timeout.ms", "100", "io.threads", "2",
                        "operation.timeout.ms", "1000", "lookup.max.redirects", "3",
                        "stats.interval.ms", "10", NULL};
    upulsar_client_t *c = ft_client(x, kv);
    stats_t s;
    stats_init(&s, c);

    upulsar_producer_t *p = NULL;
    upulsar_err_t e = upulsar_producer_start(c, NULL, "loop", 0, NULL, &p);
    cr_assert_eq(e, UPULSAR_ERR__LOOKUP, "%s: %s", upulsar_err_name(e), upulsar_last_error());
    cr_assert(strstr(upulsar_last_error(), "redirect loop"), "%s", upulsar_last_error());
    cr_assert_null(p);
    e = upulsar_producer_start(c, NULL, "chain", 0, NULL, &p);
    cr_assert_eq(e, UPULSAR_ERR__LOOKUP, "%s: %s", upulsar_err_name(e), upulsar_last_error());
    cr_assert(strstr(upulsar_last_error(), "lookup.max.redirects"), "%s", upulsar_last_error());
    cr_assert_null(p);
    /* x, y, z and w were asked; v never was (the chain ends before it) */
    for (int i = 0; i < NTB; i++) {
        upulsar_tb_stats_t st = tb_stats(tb[i]);
        if (tb[i] == v) {
            cr_assert_eq(st.connections_accepted, 0, "v was connected to");
            continue;
        }
        cr_assert_geq(st.lookups, 1, "broker %d never asked", i);
        cr_assert_geq(st.connections_accepted, 1, "broker %d never connected to", i);
    }

    all_closed_t wc = {{x, y, z, w, v}, NTB, &s};
    wait_all_closed(&wc);
    uint64_t accepted = 0;
    for (int i = 0; i < NTB; i++)
        accepted += tb_stats(tb[i]).connections_accepted;
    conns_t cs = stats_conns(&s);
    /* each connection the brokers accepted was one the client opened, and
     * the idle timer closed every one of them */
    cr_assert_eq((uint64_t)cs.opened, accepted, "opened %lld, the brokers accepted %llu",
                 cs.opened, (unsigned long long)accepted);
    cr_assert_eq(cs.closed, cs.opened, "closed %lld of %lld", cs.closed, cs.opened);
    cr_assert_eq(cs.idle_closed, cs.opened, "closed when idle: %lld of %lld", cs.idle_closed,
                 cs.opened);

    /* the client still works: x redirects "near" to z, which owns it */
    cr_assert_eq(upulsar_tb_set_owner(x, "near", upulsar_tb_url(z)), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(c, NULL, "near", 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    ft_send_ok(p, NULL);
    cr_assert_eq(ft_topic_messages(z, "near"), 1);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    pthread_mutex_destroy(&s.mu);
    for (int i = 0; i < NTB; i++)
        upulsar_tb_stop(tb[i]);
}

/* ---- (b) a producer's connection stays ---------------------------------- */

typedef struct {
    upulsar_tb_t *tb;
} tb_idle_t;

static int no_connection(void *a)
{
    return tb_stats(((tb_idle_t *)a)->tb).connections_active == 0;
}

static int one_connection(void *a)
{
    return tb_stats(((tb_idle_t *)a)->tb).connections_active == 1;
}

Test(edges_connections, producer_connection_is_never_closed_by_the_idle_timer)
{
    /* a (the service URL) redirects "t" to b: the lookup connection to a
     * carries no producer, the one to b carries it */
    upulsar_tb_t *a = ft_broker(), *b = ft_broker();
    cr_assert_eq(upulsar_tb_set_owner(a, "t", upulsar_tb_url(b)), UPULSAR_OK);
    const char *kv[] = {"connection.idle.timeout.ms", "1", "stats.interval.ms", "5", NULL};
    upulsar_client_t *c = ft_client(a, kv);
    stats_t s;
    stats_init(&s, c);
    upulsar_producer_t *p = ft_producer(c, NULL, "t", 0, NULL);
    upulsar_producer_info_t pi;
    size_t n = 0;
    cr_assert_eq(upulsar_producer_list(p, &pi, 1, &n), UPULSAR_OK);
    cr_assert_str_eq(pi.broker, hostport(b));

    upulsar_tb_snapshot_t *snap = NULL;
    upulsar_msg_id_t id1 = ft_send_ok(p, NULL);
    /* (with a 1 ms idle timeout the lookup's connection to b may have
     * been closed before the producer was created: wait for the broker to
     * see only the producer's) */
    tb_idle_t ib = {b};
    cr_assert(ft_wait_for(one_connection, &ib), "b keeps more than one connection");
    upulsar_tb_stats_t b1 = tb_stats(b);

    /* the idle timer runs: the lookup-only connection to a gets closed */
    tb_idle_t ia = {a};
    cr_assert(ft_wait_for(no_connection, &ia), "the lookup connection to a was never closed");
    /* let many more 1 ms idle periods pass */
    stats_wait_ticks(&s, 20);
    conns_t cs = stats_conns(&s);
    cr_assert_eq(cs.open, 1, "open %lld", cs.open);
    cr_assert_eq(cs.idle, 0, "the producer's connection counted idle");
    cr_assert_geq(cs.idle_closed, 1, "the lookup connection was closed when idle");

    /* the second message goes over the same connection */
    upulsar_msg_id_t id2 = ft_send_ok(p, NULL);
    upulsar_tb_stats_t b2 = tb_stats(b);
    cr_assert_eq(b2.connections_accepted, b1.connections_accepted,
                 "b accepted %llu connections, %llu before",
                 (unsigned long long)b2.connections_accepted,
                 (unsigned long long)b1.connections_accepted);
    cr_assert_eq(b2.connections_active, 1);
    cr_assert_eq(upulsar_producer_list(p, &pi, 1, &n), UPULSAR_OK);
    cr_assert_eq(pi.reconnects, 0, "the producer was re-created %llu times",
                 (unsigned long long)pi.reconnects);
    cr_assert_eq(id2.ledger_id, id1.ledger_id);
    cr_assert_eq(id2.entry_id, id1.entry_id + 1);
    cr_assert_eq(upulsar_tb_snapshot(b, "t", &snap), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(snap), 2, "stored %zu", upulsar_tb_snapshot_count(snap));
    upulsar_tb_snapshot_free(snap);

    /* its producer gone, the connection is idle and closed in turn */
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    all_closed_t wc = {{a, b}, 2, &s};
    wait_all_closed(&wc);
    cs = stats_conns(&s);
    cr_assert_eq(cs.closed, cs.opened);
    cr_assert_eq(cs.idle_closed, cs.opened);
    upulsar_client_destroy(c);
    pthread_mutex_destroy(&s.mu);
    upulsar_tb_stop(a);
    upulsar_tb_stop(b);
}

/* ---- (c) 0 = never ------------------------------------------------------ */

/* A redirect loop between two new brokers; a client of the first with
 * @p idle_ms, whose start on it fails. */
typedef struct {
    upulsar_tb_t *a, *b;
    upulsar_client_t *c;
    stats_t s;
} loop_pair_t;

static void loop_pair(loop_pair_t *lp, const char *idle_ms)
{
    lp->a = ft_broker();
    lp->b = ft_broker();
    cr_assert_eq(upulsar_tb_set_owner(lp->a, "loop", upulsar_tb_url(lp->b)), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_owner(lp->b, "loop", upulsar_tb_url(lp->a)), UPULSAR_OK);
    const char *kv[] = {"connection.idle.timeout.ms", idle_ms, "operation.timeout.ms", "500",
                        "stats.interval.ms", "10", NULL};
    lp->c = ft_client(lp->a, kv);
    stats_init(&lp->s, lp->c);
    upulsar_producer_t *p = NULL;
    upulsar_err_t e = upulsar_producer_start(lp->c, NULL, "loop", 0, NULL, &p);
    cr_assert_eq(e, UPULSAR_ERR__LOOKUP, "%s: %s", upulsar_err_name(e), upulsar_last_error());
    cr_assert_null(p);
}

static void loop_pair_free(loop_pair_t *lp)
{
    upulsar_client_destroy(lp->c);
    pthread_mutex_destroy(&lp->s.mu);
    upulsar_tb_stop(lp->a);
    upulsar_tb_stop(lp->b);
}

Test(edges_connections, idle_timeout_0_never_closes_a_connection)
{
    loop_pair_t never, control;
    loop_pair(&never, "0");
    loop_pair(&control, "100");
    upulsar_tb_stats_t na = tb_stats(never.a), nb = tb_stats(never.b);
    cr_assert_eq(na.connections_active, 1);
    cr_assert_eq(nb.connections_active, 1);

    /* the control client's connections are closed when idle ... */
    all_closed_t wc = {{control.a, control.b}, 2, &control.s};
    wait_all_closed(&wc);
    /* ... and many more of its idle periods later, ours are all there */
    stats_wait_ticks(&control.s, 30);
    stats_wait_ticks(&never.s, 2);
    conns_t cs = stats_conns(&never.s);
    cr_assert_eq(cs.open, 2, "open %lld", cs.open);
    cr_assert_eq(cs.idle, 2, "idle %lld", cs.idle);
    cr_assert_eq(cs.opened, 2, "opened %lld", cs.opened);
    cr_assert_eq(cs.closed, 0, "closed %lld", cs.closed);
    cr_assert_eq(cs.idle_closed, 0, "closed when idle %lld", cs.idle_closed);
    upulsar_tb_stats_t na2 = tb_stats(never.a), nb2 = tb_stats(never.b);
    cr_assert_eq(na2.connections_active, 1);
    cr_assert_eq(nb2.connections_active, 1);

    /* and they are reused: a producer on a topic a owns opens nothing new */
    upulsar_producer_t *p = ft_producer(never.c, NULL, "mine", 0, NULL);
    ft_send_ok(p, NULL);
    cr_assert_eq(tb_stats(never.a).connections_accepted, na.connections_accepted);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    loop_pair_free(&never);
    loop_pair_free(&control);
}

/* ---- many producers on one connection ----------------------------------- */

typedef struct {
    _Atomic int ok, bad;
} many_acks_t;

static void many_ack(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    many_acks_t *a = opaque;
    (void)id;
    if (err)
        atomic_fetch_add(&a->bad, 1);
    else
        atomic_fetch_add(&a->ok, 1);
}

/* Send one message to each partition of @p p (@p n of them) and wait for
 * every receipt: true when each message was acknowledged. */
static bool one_each_acked(upulsar_producer_t *p, int n, many_acks_t *a)
{
    static char buf[64];
    for (int i = 0; i < n; i++) {
        upulsar_send_opts_t o = {.cb = many_ack, .opaque = a, .flags = UPULSAR_SEND_PARTITION,
                                 .partition = i};
        if (upulsar_send(p, buf, sizeof buf, &o, NULL) != UPULSAR_OK)
            return false;
    }
    return upulsar_producer_flush(p, 30000) == UPULSAR_OK;
}

/* Receipts find their producer among hundreds on one connection (the
 * connection's index by producer id), also after many of them left it
 * (a handle stopped, so entries are taken out of the index between
 * others) and others joined: every message of the handles still there is
 * acknowledged, over the one connection the broker accepted. */
Test(edges_connections, receipts_find_their_producer_among_hundreds_joining_and_leaving)
{
    enum { NP = 300 };
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    const char *topics[] = {"many-a", "many-b", "many-c"};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(upulsar_tb_set_partitions(tb, topics[i], NP), UPULSAR_OK);
    upulsar_producer_t *a = ft_producer(client, NULL, "many-a", NP, NULL);
    upulsar_producer_t *b = ft_producer(client, NULL, "many-b", NP, NULL);
    many_acks_t acks = {0};
    cr_assert(one_each_acked(a, NP, &acks));
    cr_assert(one_each_acked(b, NP, &acks));
    cr_assert_eq(upulsar_producer_stop(a, 10000), UPULSAR_OK);
    upulsar_producer_t *c = ft_producer(client, NULL, "many-c", NP, NULL);
    cr_assert(one_each_acked(b, NP, &acks));
    cr_assert(one_each_acked(c, NP, &acks));
    cr_assert_eq(atomic_load(&acks.bad), 0);
    cr_assert_eq(atomic_load(&acks.ok), 4 * NP);
    upulsar_tb_stats_t st;
    upulsar_tb_stats(tb, &st);
    cr_assert_eq(st.messages, 4 * NP, "stored %llu", (unsigned long long)st.messages);
    cr_assert_eq(st.connections_accepted, 1, "%llu connections: not one shared",
                 (unsigned long long)st.connections_accepted);
    cr_assert_eq(upulsar_producer_stop(c, 10000), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(b, 10000), UPULSAR_OK);
    upulsar_client_destroy(client);
    upulsar_tb_stop(tb);
}
