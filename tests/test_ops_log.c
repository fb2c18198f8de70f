/* test_ops_log.c -- the structured log callback: each record names its
 * level, error, partition topic, partition and broker; an outage on many
 * partitions of a topic is logged once per kind of line with the count of
 * the partitions it stands for, instead of once per partition; the debug
 * level is turned on and off at run time.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <stdlib.h>
#include <string.h>

#include "fault_common.h"
#include "client.h"

TestSuite(ops_log, .timeout = 180);

typedef struct rec {
    int level;
    upulsar_err_t err;
    char topic[256];
    int partition;
    char broker[280];
    char line[600];
    unsigned collapsed;
} rec_t;

/* Every record the callback received, in order. */
typedef struct recs {
    pthread_mutex_t mu;
    rec_t *r;
    size_t n, cap;
    int oom;
} recs_t;

static void on_record(const upulsar_log_record_t *r, void *opaque)
{
    recs_t *rs = opaque;
    pthread_mutex_lock(&rs->mu);
    if (rs->n == rs->cap) {
        size_t nc = rs->cap ? 2 * rs->cap : 64;
        rec_t *nr = realloc(rs->r, nc * sizeof *nr);
        if (!nr) {
            rs->oom = 1;
            pthread_mutex_unlock(&rs->mu);
            return;
        }
        rs->r = nr;
        rs->cap = nc;
    }
    rec_t *x = &rs->r[rs->n++];
    x->level = (int)r->level;
    x->err = r->err;
    snprintf(x->topic, sizeof x->topic, "%s", r->topic);
    x->partition = r->partition;
    snprintf(x->broker, sizeof x->broker, "%s", r->broker);
    snprintf(x->line, sizeof x->line, "%s", r->line);
    x->collapsed = r->collapsed;
    pthread_mutex_unlock(&rs->mu);
}

/* Over the records whose line contains @p what: how many lines, and how
 * many events they stand for (1 + collapsed each). */
typedef struct tally {
    size_t lines;
    size_t events;
} tally_t;

static tally_t tally(recs_t *rs, const char *what)
{
    tally_t t = {0, 0};
    pthread_mutex_lock(&rs->mu);
    for (size_t i = 0; i < rs->n; i++)
        if (strstr(rs->r[i].line, what)) {
            t.lines++;
            t.events += 1 + rs->r[i].collapsed;
        }
    pthread_mutex_unlock(&rs->mu);
    return t;
}

typedef struct wait_events {
    recs_t *rs;
    const char *what;
    size_t n;
} wait_events_t;

static int events_at_least(void *a)
{
    wait_events_t *w = a;
    return tally(w->rs, w->what).events >= w->n;
}

static recs_t *recs_new(void)
{
    recs_t *rs = calloc(1, sizeof *rs);
    cr_assert_not_null(rs);
    pthread_mutex_init(&rs->mu, NULL);
    return rs;
}

static void recs_free(recs_t *rs)
{
    pthread_mutex_destroy(&rs->mu);
    free(rs->r);
    free(rs);
}

#define PARTS 16

/* Scenario: a topic of 16 partitions, a structured log callback, reconnect
 * backoff of 100 to 200 ms. The broker will refuse the next 16 PRODUCER
 * requests (ServiceNotReady) and drops every connection: 16 re-creation
 * attempts fail, then each partition's producer is re-created, once. Over
 * the lines that came (checked after the client's destroy, which delivers
 * what is still held back): the failed attempts add up to 16 events (1 +
 * collapsed per line) in fewer than 16 lines, so do the re-creations; a
 * line that stands for others says so in its text, "(and <collapsed> more
 * partitions)". Each of these records names its partition topic, the
 * partition that topic has and the broker ("127.0.0.1:<port>"), the failed
 * ones their error (SERVICE_NOT_READY), the re-creations none; the dropped
 * connection's record names the broker and its error, and no partition.
 * The whole outage took fewer lines than there are partitions (one
 * partition's line per kind would be 48). */
Test(ops_log, an_outage_on_many_partitions_is_logged_once_per_kind_with_the_count)
{
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "lg", PARTS), UPULSAR_OK);
    const char *ckv[] = {"backoff.initial.ms", "100", "backoff.max.ms", "200", NULL};
    upulsar_client_t *c = ft_client(tb, ckv);
    recs_t *rs = recs_new();
    cr_assert_eq(upulsar_client_set_log_record_cb(c, on_record, rs), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(c, "lx", "lg", 0, NULL);
    pthread_mutex_lock(&rs->mu);
    size_t before = rs->n;
    pthread_mutex_unlock(&rs->mu);
    cr_assert_eq(upulsar_tb_fail_producers(tb, NULL, PARTS, 6 /* ServiceNotReady */),
                 UPULSAR_OK);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    ft_assert_every_producer_recreated(p);
    wait_events_t w = {rs, "re-created", PARTS};
    cr_assert(ft_wait_for(events_at_least, &w), "re-creations logged: %zu events",
              tally(rs, "re-created").events);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);

    cr_assert_not(rs->oom);
    tally_t f = tally(rs, "re-creating producer");
    cr_assert_eq(f.events, (size_t)PARTS, "failed attempts: %zu events in %zu lines", f.events,
                 f.lines);
    cr_assert_lt(f.lines, (size_t)PARTS, "failed attempts: %zu lines for %d partitions",
                 f.lines, PARTS);
    tally_t t = tally(rs, "re-created");
    cr_assert_eq(t.events, (size_t)PARTS, "re-created: %zu events in %zu lines", t.events,
                 t.lines);
    cr_assert_lt(t.lines, (size_t)PARTS, "re-created: %zu lines for %d partitions", t.lines,
                 PARTS);
    int seen_more = 0, seen_drop = 0;
    size_t outage_lines = 0;
    for (size_t i = before; i < rs->n; i++) {
        rec_t *r = &rs->r[i];
        outage_lines++;
        int failed = strstr(r->line, "re-creating producer") != NULL;
        if (failed || strstr(r->line, "re-created")) {
            cr_assert_eq(r->level, failed ? UPULSAR_LOG_WARNING : UPULSAR_LOG_INFO, "%s", r->line);
            cr_assert_eq(r->err, failed ? UPULSAR_ERR_SERVICE_NOT_READY : UPULSAR_OK, "%s",
                         r->line);
            cr_assert_geq(r->partition, 0, "%s", r->line);
            cr_assert_lt(r->partition, PARTS, "%s", r->line);
            char topic[128];
            snprintf(topic, sizeof topic, "persistent://public/default/lg-partition-%d",
                     r->partition);
            cr_assert_str_eq(r->topic, topic, "%s", r->line);
            cr_assert_eq(strncmp(r->broker, "127.0.0.1:", 10), 0, "broker '%s': %s", r->broker,
                         r->line);
            if (r->collapsed) {
                char more[64];
                snprintf(more, sizeof more, "(and %u more partition%s)", r->collapsed,
                         r->collapsed == 1 ? "" : "s");
                cr_assert_not_null(strstr(r->line, more), "'%s' not in: %s", more, r->line);
                seen_more = 1;
            }
        } else if (strstr(r->line, "dropped")) {
            cr_assert_eq(r->level, UPULSAR_LOG_WARNING, "%s", r->line);
            cr_assert_neq(r->err, UPULSAR_OK, "%s", r->line);
            cr_assert_eq(r->partition, -1, "%s", r->line);
            cr_assert_str_eq(r->topic, "", "%s", r->line);
            cr_assert_eq(strncmp(r->broker, "127.0.0.1:", 10), 0, "broker '%s': %s", r->broker,
                         r->line);
            cr_assert_not_null(strstr(r->line, r->broker), "%s", r->line);
            seen_drop = 1;
        }
    }
    cr_assert(seen_more, "no line says how many partitions it stands for");
    cr_assert(seen_drop, "the dropped connection was not logged");
    cr_assert_lt(outage_lines, (size_t)PARTS, "%zu lines for an outage of %d partitions",
                 outage_lines, PARTS);
    recs_free(rs);
}

static size_t count_level(recs_t *rs, int level, size_t from)
{
    size_t n = 0;
    pthread_mutex_lock(&rs->mu);
    for (size_t i = from; i < rs->n; i++)
        n += rs->r[i].level == level;
    pthread_mutex_unlock(&rs->mu);
    return n;
}

typedef struct wait_level {
    recs_t *rs;
    int level;
    size_t from;
} wait_level_t;

static int some_at_level(void *a)
{
    wait_level_t *w = a;
    return count_level(w->rs, w->level, w->from) > 0;
}

static size_t nrecs(recs_t *rs)
{
    pthread_mutex_lock(&rs->mu);
    size_t n = rs->n;
    pthread_mutex_unlock(&rs->mu);
    return n;
}

/* Scenario: a producer on a non-partitioned topic, the client at its
 * default level. The broker drops its connections: the producer is
 * re-created and no debug record comes. The level is raised to debug at
 * run time and the connections dropped again: debug records come, each
 * naming the topic (partition -1) and a state change of the producer.
 * Back to info, a third drop: the re-creation is logged (info) and no
 * debug record comes after the level went back. A level out of range is
 * refused and changes nothing; the plain callback still receives lines
 * once set again (it replaces the structured one). */
Test(ops_log, debug_level_turned_on_and_off_at_run_time)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    recs_t *rs = recs_new();
    cr_assert_eq(upulsar_client_set_log_record_cb(c, on_record, rs), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(c, "dx", "dbg", 0, NULL);

    wait_events_t w = {rs, "re-created", 1};
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    ft_assert_every_producer_recreated(p);
    cr_assert(ft_wait_for(events_at_least, &w));
    cr_assert_eq(count_level(rs, UPULSAR_LOG_DEBUG, 0), 0, "debug lines at the default level");

    cr_assert_eq(upulsar_client_set_log_level(c, UPULSAR_LOG_DEBUG), UPULSAR_OK);
    size_t from = nrecs(rs);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    wait_level_t wl = {rs, UPULSAR_LOG_DEBUG, from};
    cr_assert(ft_wait_for(some_at_level, &wl), "no debug line once turned on");
    w.n = 2;
    cr_assert(ft_wait_for(events_at_least, &w));
    pthread_mutex_lock(&rs->mu);
    for (size_t i = from; i < rs->n; i++)
        if (rs->r[i].level == UPULSAR_LOG_DEBUG) {
            cr_assert_str_eq(rs->r[i].topic, "persistent://public/default/dbg", "%s",
                             rs->r[i].line);
            cr_assert_eq(rs->r[i].partition, -1, "%s", rs->r[i].line);
            cr_assert_not_null(strstr(rs->r[i].line, "->"), "%s", rs->r[i].line);
        }
    pthread_mutex_unlock(&rs->mu);

    cr_assert_eq(upulsar_client_set_log_level(c, (upulsar_log_level_t)9),
                 UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_client_set_log_level(NULL, UPULSAR_LOG_INFO), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_client_set_log_record_cb(NULL, on_record, rs), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_client_set_log_level(c, UPULSAR_LOG_INFO), UPULSAR_OK);
    /* the producer is READY again (its last debug line written) before the
     * level goes back; from then on no debug line */
    ft_assert_every_producer_recreated(p);
    size_t from2 = nrecs(rs);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    w.n = 3;
    cr_assert(ft_wait_for(events_at_least, &w));
    ft_assert_every_producer_recreated(p);
    cr_assert_eq(count_level(rs, UPULSAR_LOG_DEBUG, from2), 0, "debug lines after turning it off");
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
    cr_assert_not(rs->oom);
    recs_free(rs);
}

/* Lines of one producer keep their order when some are collapsed: after
 * "failed" for partitions 0, 1 and 2 (1 and 2 held back in the window
 * opened by 0), partition 2's "re-created" comes only after the summary
 * that stands for its failure. */
Test(ops_log, a_producers_lines_keep_their_order_when_others_are_collapsed)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    recs_t *rs = recs_new();
    cr_assert_eq(upulsar_client_set_log_record_cb(c, on_record, rs), UPULSAR_OK);
    static const char *topics[] = {"persistent://public/default/ord-partition-0",
                                   "persistent://public/default/ord-partition-1",
                                   "persistent://public/default/ord-partition-2"};
    for (int i = 0; i < 3; i++) {
        up_log_at_t at = {UPULSAR_ERR__CONNECT, topics[i], i, "b:6650", NULL, 0};
        up_log_at(c, UPULSAR_LOG_WARNING, &at, "%s: re-creating failed", topics[i]);
    }
    up_log_at_t at2 = {UPULSAR_OK, topics[2], 2, "b:6650", NULL, 0};
    up_log_at(c, UPULSAR_LOG_INFO, &at2, "%s: re-created", topics[2]);
    pthread_mutex_lock(&rs->mu);
    size_t n = rs->n;
    int failed2_at = -1, recreated2_at = -1;
    for (size_t i = 0; i < n; i++) {
        rec_t *r = &rs->r[i];
        if (strstr(r->line, "re-created") && r->partition == 2)
            recreated2_at = (int)i;
        /* the line that stands for partition 2's failure: its own, or a
         * summary counting it */
        if (strstr(r->line, "re-creating failed") &&
            (r->partition == 2 || (r->partition == 1 && r->collapsed >= 1)))
            failed2_at = (int)i;
    }
    pthread_mutex_unlock(&rs->mu);
    cr_assert_neq(recreated2_at, -1);
    cr_assert_neq(failed2_at, -1, "partition 2's failure not delivered before its re-creation");
    cr_assert_lt(failed2_at, recreated2_at);
    ft_stop_client_and_broker(tb, c);
    recs_free(rs);
}
