/* test_ops_metrics.c -- what an exporter reads: the Prometheus text of
 * upulsar_client_metrics_prometheus(), parsed line by line here (every
 * line a "# HELP" / "# TYPE" comment or "name{labels} value", every name
 * "upulsar_" and declared by a TYPE line before its samples), counts
 * exactly what was sent (messages, payload bytes, latency samples, per
 * partition and in sum), fails and refusals by kind, and "pending" counts
 * the messages still in the producer's queue while the broker cannot be
 * reached (the statistics JSON, upulsar_producer_list() and the
 * exposition agree).
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "fault_common.h"

TestSuite(ops_metrics, .timeout = 180);

/* ---- a parser of the text exposition format ---- */

#define MAX_LABELS 8

typedef struct sample {
    char name[128];
    int nlabels;
    char key[MAX_LABELS][32];
    char val[MAX_LABELS][512];
    double value;
    char raw_value[64];
} sample_t;

typedef struct scrape {
    sample_t *s;
    size_t n, cap;
    char types[256][128]; /* family names declared by TYPE */
    char kinds[256][16];
    int ntypes;
} scrape_t;

static const char *family_type(const scrape_t *sc, const char *family)
{
    for (int i = 0; i < sc->ntypes; i++)
        if (!strcmp(sc->types[i], family))
            return sc->kinds[i];
    return NULL;
}

/* The family a sample belongs to: its name, or a histogram's name without
 * _bucket / _sum / _count. */
static const char *family_of(const scrape_t *sc, const char *name, char *buf, size_t n)
{
    if (family_type(sc, name))
        return name;
    static const char *const suf[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(name), sl = strlen(suf[i]);
        if (l > sl && !strcmp(name + l - sl, suf[i]) && l - sl < n) {
            memcpy(buf, name, l - sl);
            buf[l - sl] = '\0';
            const char *t = family_type(sc, buf);
            if (t && !strcmp(t, "histogram"))
                return buf;
        }
    }
    return NULL;
}

static int name_char(int c, int first)
{
    return isalpha(c) || c == '_' || c == ':' || (!first && isdigit(c));
}

/* Parse @p text into @p sc, failing the test on any malformed line. */
static void parse(const char *text, scrape_t *sc)
{
    memset(sc, 0, sizeof *sc);
    const char *p = text;
    int lineno = 0;
    cr_assert(*text, "empty exposition");
    while (*p) {
        const char *eol = strchr(p, '\n');
        cr_assert_not_null(eol, "the last line has no newline: %s", p);
        lineno++;
        char line[2048];
        size_t len = (size_t)(eol - p);
        cr_assert_lt(len, sizeof line, "line %d too long", lineno);
        memcpy(line, p, len);
        line[len] = '\0';
        p = eol + 1;
        if (line[0] == '#') {
            char kw[8], name[128], rest[1024];
            int k = sscanf(line, "# %7s %127s %1023[^\n]", kw, name, rest);
            cr_assert_eq(k, 3, "line %d: bad comment: %s", lineno, line);
            cr_assert(!strcmp(kw, "HELP") || !strcmp(kw, "TYPE"), "line %d: %s", lineno, line);
            cr_assert_eq(strncmp(name, "upulsar_", 8), 0, "line %d: %s", lineno, line);
            if (!strcmp(kw, "TYPE")) {
                cr_assert(!strcmp(rest, "counter") || !strcmp(rest, "gauge") ||
                              !strcmp(rest, "histogram"),
                          "line %d: type %s", lineno, rest);
                cr_assert_null(family_type(sc, name), "line %d: %s declared twice", lineno, name);
                cr_assert_lt(sc->ntypes, 256);
                snprintf(sc->types[sc->ntypes], sizeof sc->types[0], "%s", name);
                snprintf(sc->kinds[sc->ntypes], sizeof sc->kinds[0], "%.15s", rest);
                sc->ntypes++;
            }
            continue;
        }
        if (sc->n == sc->cap) {
            sc->cap = sc->cap ? 2 * sc->cap : 256;
            sc->s = realloc(sc->s, sc->cap * sizeof *sc->s);
            cr_assert_not_null(sc->s);
        }
        sample_t *s = &sc->s[sc->n];
        memset(s, 0, sizeof *s);
        const char *q = line;
        size_t nl = 0;
        cr_assert(name_char((unsigned char)*q, 1), "line %d: bad name: %s", lineno, line);
        while (name_char((unsigned char)*q, 0)) {
            cr_assert_lt(nl + 1, sizeof s->name);
            s->name[nl++] = *q++;
        }
        cr_assert_eq(strncmp(s->name, "upulsar_", 8), 0, "line %d: %s", lineno, line);
        if (*q == '{') {
            q++;
            while (*q != '}') {
                cr_assert_lt(s->nlabels, MAX_LABELS, "line %d: too many labels", lineno);
                size_t kl = 0;
                cr_assert(name_char((unsigned char)*q, 1), "line %d: label: %s", lineno, line);
                while (name_char((unsigned char)*q, 0) && kl + 1 < sizeof s->key[0])
                    s->key[s->nlabels][kl++] = *q++;
                cr_assert_eq(*q, '=', "line %d: %s", lineno, line);
                q++;
                cr_assert_eq(*q, '"', "line %d: %s", lineno, line);
                q++;
                size_t vl = 0;
                while (*q != '"') {
                    cr_assert(*q, "line %d: unterminated label value", lineno);
                    char ch = *q++;
                    if (ch == '\\') {
                        ch = *q++;
                        cr_assert(ch == '\\' || ch == '"' || ch == 'n', "line %d: escape", lineno);
                        if (ch == 'n')
                            ch = '\n';
                    }
                    cr_assert_lt(vl + 1, sizeof s->val[0]);
                    s->val[s->nlabels][vl++] = ch;
                }
                q++;
                s->nlabels++;
                if (*q == ',')
                    q++;
                else
                    cr_assert_eq(*q, '}', "line %d: %s", lineno, line);
            }
            q++;
        }
        cr_assert_eq(*q, ' ', "line %d: no value: %s", lineno, line);
        q++;
        snprintf(s->raw_value, sizeof s->raw_value, "%s", q);
        char *end;
        s->value = strtod(q, &end);
        cr_assert(end != q && *end == '\0', "line %d: bad value '%s'", lineno, q);
        char fam[128];
        cr_assert_not_null(family_of(sc, s->name, fam, sizeof fam),
                           "line %d: %s has no TYPE line before it", lineno, s->name);
        sc->n++;
    }
    /* a series is named once: no two samples with the same name and labels
     * (Prometheus drops the scrape otherwise) */
    for (size_t i = 0; i < sc->n; i++)
        for (size_t j = i + 1; j < sc->n; j++) {
            const sample_t *a = &sc->s[i], *b = &sc->s[j];
            if (strcmp(a->name, b->name) || a->nlabels != b->nlabels)
                continue;
            int same = 1;
            for (int k = 0; k < a->nlabels && same; k++)
                same = !strcmp(a->key[k], b->key[k]) && !strcmp(a->val[k], b->val[k]);
            cr_assert_not(same, "the series %s{%s=\"%s\",...} appears twice", a->name,
                          a->nlabels ? a->key[0] : "", a->nlabels ? a->val[0] : "");
        }
}

static const char *label(const sample_t *s, const char *key)
{
    for (int i = 0; i < s->nlabels; i++)
        if (!strcmp(s->key[i], key))
            return s->val[i];
    return NULL;
}

/* The sum of @p name's samples whose label @p key is @p val (key NULL:
 * all); *@p count receives how many there were. */
static double sum_of(const scrape_t *sc, const char *name, const char *key, const char *val,
                     int *count)
{
    double v = 0;
    int n = 0;
    for (size_t i = 0; i < sc->n; i++) {
        if (strcmp(sc->s[i].name, name))
            continue;
        if (key && (!label(&sc->s[i], key) || strcmp(label(&sc->s[i], key), val)))
            continue;
        v += sc->s[i].value;
        n++;
    }
    if (count)
        *count = n;
    return v;
}

static void scrape(upulsar_client_t *c, scrape_t *sc)
{
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(upulsar_client_metrics_prometheus(c, &text, &len), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_not_null(text);
    cr_assert_eq(len, strlen(text));
    parse(text, sc);
    free(text);
}

static void scrape_free(scrape_t *sc) { free(sc->s); }

/* Every histogram series of @p family: buckets in increasing le,
 * cumulative counts never decreasing, "+Inf" equal to _count. Returns the
 * sum of the _count samples. */
static uint64_t check_histograms(const scrape_t *sc, const char *family)
{
    char bucket[160], count[160];
    snprintf(bucket, sizeof bucket, "%s_bucket", family);
    snprintf(count, sizeof count, "%s_count", family);
    uint64_t total = 0;
    int series = 0;
    for (size_t i = 0; i < sc->n; i++) {
        const sample_t *c = &sc->s[i];
        if (strcmp(c->name, count))
            continue;
        series++;
        total += (uint64_t)c->value;
        /* the buckets of the same series: same labels but le */
        double last_le = -1, last = 0;
        int nb = 0, inf = 0;
        for (size_t j = 0; j < sc->n; j++) {
            const sample_t *b = &sc->s[j];
            if (strcmp(b->name, bucket) || b->nlabels != c->nlabels + 1)
                continue;
            int same = 1;
            for (int k = 0; k < c->nlabels && same; k++)
                same = label(b, c->key[k]) && !strcmp(label(b, c->key[k]), c->val[k]);
            if (!same)
                continue;
            const char *le = label(b, "le");
            cr_assert_not_null(le, "a bucket without le");
            cr_assert_not(inf, "a bucket after +Inf");
            double lev = strcmp(le, "+Inf") ? strtod(le, NULL) : 1e300;
            cr_assert_gt(lev, last_le, "le %s not increasing", le);
            cr_assert_geq(b->value, last, "bucket le=%s decreases: %g < %g", le, b->value, last);
            last_le = lev;
            last = b->value;
            nb++;
            if (!strcmp(le, "+Inf")) {
                inf = 1;
                cr_assert_eq((uint64_t)b->value, (uint64_t)c->value,
                             "+Inf bucket %g, count %g", b->value, c->value);
            }
        }
        cr_assert(inf, "no +Inf bucket");
        cr_assert_gt(nb, 10, "only %d buckets", nb);
    }
    cr_assert_gt(series, 0, "no %s series", family);
    return total;
}

/* ---- tests ---- */

#define PARTS 4
#define PAYLOAD 37

/* Scenario: a topic of 4 partitions, every message's latency sampled
 * (latency.sample.every=1); N keyless messages of 37 bytes, all
 * acknowledged. The exposition parses; over the partitions, accepted and
 * acknowledged messages are exactly N, acknowledged payload bytes exactly
 * N * 37, nothing failed or pending; each partition has its own series
 * (topic, partition and producer labels) and its share is what the broker
 * stored there; the latency histogram of each producer is well formed and
 * the counts add up to N; the client-level and connection figures are
 * there. */
Test(ops_metrics, exposition_counts_every_acknowledged_message_and_byte)
{
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "m1", PARTS), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"latency.sample.every", "1", NULL};
    upulsar_producer_t *p = ft_producer(c, "mx", "m1", 0, kv);
    const int N = 2000 / FT_SCALE;
    char payload[PAYLOAD];
    memset(payload, 'x', sizeof payload);
    for (int i = 0; i < N; i++) {
        upulsar_err_t e;
        while ((e = upulsar_send(p, payload, sizeof payload, NULL, NULL)) ==
               UPULSAR_ERR__QUEUE_FULL)
            ft_pause_ms(1);
        cr_assert_eq(e, UPULSAR_OK, "%s", upulsar_last_error());
    }
    cr_assert_eq(upulsar_producer_flush(p, FT_WAIT_MS), UPULSAR_OK);

    scrape_t sc;
    scrape(c, &sc);
    int n;
    cr_assert_eq(sum_of(&sc, "upulsar_producer_messages_accepted_total", NULL, NULL, &n), N);
    cr_assert_eq(n, PARTS, "%d accepted series", n);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_messages_acked_total", NULL, NULL, &n), N);
    cr_assert_eq(n, PARTS);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_acked_bytes_total", NULL, NULL, NULL),
                 (double)N * PAYLOAD);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_messages_failed_total", NULL, NULL, NULL), 0);
    sum_of(&sc, "upulsar_producer_errors_total", NULL, NULL, &n);
    cr_assert_eq(n, 0, "errors reported: %d", n);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_pending_messages", NULL, NULL, NULL), 0);
    cr_assert_eq(sum_of(&sc, "upulsar_client_pending_messages", NULL, NULL, NULL), 0);
    cr_assert_eq(sum_of(&sc, "upulsar_client_producers", NULL, NULL, NULL), PARTS);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_ready", NULL, NULL, NULL), PARTS);
    /* per partition: labels, and the share the broker stored there */
    for (int k = 0; k < PARTS; k++) {
        char part[16], topic[128];
        snprintf(part, sizeof part, "%d", k);
        snprintf(topic, sizeof topic, "m1-partition-%d", k);
        double acked = sum_of(&sc, "upulsar_producer_messages_acked_total", "partition", part, &n);
        cr_assert_eq(n, 1, "partition %d: %d series", k, n);
        cr_assert_eq((uint64_t)acked, ft_topic_messages(tb, topic), "partition %d", k);
        for (size_t i = 0; i < sc.n; i++)
            if (!strcmp(sc.s[i].name, "upulsar_producer_acked_bytes_total") &&
                !strcmp(label(&sc.s[i], "partition"), part)) {
                cr_assert_str_eq(label(&sc.s[i], "topic"), "persistent://public/default/m1");
                cr_assert_str_eq(label(&sc.s[i], "producer"), "mx");
                cr_assert_eq(sc.s[i].value, acked * PAYLOAD, "partition %d", k);
            }
    }
    uint64_t lat = check_histograms(&sc, "upulsar_producer_send_latency_seconds");
    cr_assert_eq(lat, (uint64_t)N, "latency samples %llu of %d", (unsigned long long)lat, N);
    cr_assert_gt(sum_of(&sc, "upulsar_producer_send_latency_seconds_sum", NULL, NULL, NULL), 0);
    /* client and connections */
    cr_assert_geq(sum_of(&sc, "upulsar_client_connections_open", NULL, NULL, NULL), 1);
    cr_assert_geq(sum_of(&sc, "upulsar_client_connections_opened_total", NULL, NULL, NULL), 1);
    char broker[64];
    snprintf(broker, sizeof broker, "127.0.0.1:%d", upulsar_tb_port(tb));
    cr_assert_geq(sum_of(&sc, "upulsar_connection_info", "broker", broker, NULL), 1);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_info", "broker", broker, &n), PARTS);
    cr_assert_gt(sum_of(&sc, "upulsar_client_memory_limit_bytes", NULL, NULL, NULL), 0);
    sum_of(&sc, "upulsar_client_info", "version", upulsar_version(), &n);
    cr_assert_eq(n, 1);
    scrape_free(&sc);

    cr_assert_eq(upulsar_client_metrics_prometheus(NULL, NULL, NULL), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}

static int all_resolved(void *a)
{
    upulsar_future_t **f = a;
    for (int i = 0; f[i]; i++)
        if (upulsar_future_poll(f[i], NULL) == UPULSAR_ERR__PENDING)
            return 0;
    return 1;
}

/* Scenario: receipts withheld; a producer with max.pending.messages=5,
 * block.if.queue.full=false and send.timeout.ms=300. Five sends are
 * accepted, the next three refused with QUEUE_FULL; the five then fail by
 * the send timeout. The exposition counts the three refusals under reason
 * max_pending (none waited), the five failures under their error
 * (UPULSAR_ERR__MSG_TIMED_OUT) and in failed and timed_out, five accepted,
 * none acknowledged or pending. */
Test(ops_metrics, failures_are_counted_by_kind_and_refused_sends_by_reason)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"max.pending.messages", "5", "block.if.queue.full", "false",
                        "send.timeout.ms", "300", NULL};
    upulsar_producer_t *p = ft_producer(c, "fx", "m2", 0, kv);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    upulsar_future_t *f[6] = {0};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(upulsar_send(p, "abc", 3, NULL, &f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    for (int i = 0; i < 3; i++)
        cr_assert_eq(upulsar_send(p, "abc", 3, NULL, NULL), UPULSAR_ERR__QUEUE_FULL);
    cr_assert(ft_wait_for(all_resolved, f));
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], 0, NULL), UPULSAR_ERR__MSG_TIMED_OUT);
        upulsar_future_release(f[i]);
    }
    scrape_t sc;
    scrape(c, &sc);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_send_refused_total", "reason", "max_pending", NULL),
                 3);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_send_refused_total", "reason", "queue", NULL), 0);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_send_refused_total", "reason", "memory", NULL), 0);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_send_waits_total", NULL, NULL, NULL), 0);
    int n;
    cr_assert_eq(sum_of(&sc, "upulsar_producer_errors_total", "error",
                        "UPULSAR_ERR__MSG_TIMED_OUT", NULL),
                 5);
    sum_of(&sc, "upulsar_producer_errors_total", NULL, NULL, &n);
    cr_assert_eq(n, 1, "%d error kinds", n);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_messages_failed_total", NULL, NULL, NULL), 5);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_timed_out_total", NULL, NULL, NULL), 5);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_messages_accepted_total", NULL, NULL, NULL), 5);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_messages_acked_total", NULL, NULL, NULL), 0);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_pending_messages", NULL, NULL, NULL), 0);
    scrape_free(&sc);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    upulsar_producer_stop(p, FT_WAIT_MS);
    ft_stop_client_and_broker(tb, c);
}

/* ---- pending while the broker cannot be reached ---- */

static uint64_t list_pending(upulsar_producer_t *p)
{
    upulsar_producer_info_t pi[8];
    size_t n = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, 8, &n), UPULSAR_OK);
    uint64_t sum = 0;
    for (size_t i = 0; i < n && i < 8; i++)
        sum += pi[i].pending;
    return sum;
}

static int not_ready(void *a) { return !ft_all_ready(a); }

static int acked_all(void *a)
{
    upulsar_producer_t *p = a;
    return ft_all_ready(p) && list_pending(p) == 0;
}

/* The number after "key": in @p json (the first one). */
static long long json_num(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *at = strstr(json, k);
    cr_assert_not_null(at, "%s not in %s", key, json);
    return strtoll(at + strlen(k), NULL, 10);
}

/* Scenario: a producer created on the broker, at most one batch of at
 * most 10 messages in flight; the broker then refuses every connection
 * and drops the one it has. N messages sent meanwhile are accepted: at
 * most one batch of them leaves the queue (ring), the rest wait there.
 * pending is N in upulsar_producer_list(), in the statistics JSON
 * ("pending", and "accepted" N) and in the exposition (producer and
 * client), the queue holds bytes, and the group's "state" in the JSON is
 * the one upulsar_producer_groups() reports. Once the broker takes
 * connections again every message is acknowledged and pending is 0. */
Test(ops_metrics, pending_counts_messages_still_in_the_queue_while_the_broker_is_down)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"max.inflight.batches", "1", "batch.max.messages", "10",
                        "send.timeout.ms", "0", NULL};
    upulsar_producer_t *p = ft_producer(c, "px", "m3", 0, kv);
    cr_assert_eq(upulsar_tb_refuse_connections(tb, 600000), UPULSAR_OK);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    cr_assert(ft_wait_for(not_ready, p), "the producer never noticed the broker went away");
    const int N = 5000 / FT_SCALE;
    for (int i = 0; i < N; i++)
        cr_assert_eq(upulsar_send(p, "pending", 7, NULL, NULL), UPULSAR_OK, "%d: %s", i,
                     upulsar_last_error());
    cr_assert_eq(list_pending(p), (uint64_t)N);
    char *json = NULL;
    cr_assert_eq(upulsar_producer_stats_json(p, &json), UPULSAR_OK);
    cr_assert_eq(json_num(json, "pending"), N, "%s", json);
    cr_assert_eq(json_num(json, "accepted"), N, "%s", json);
    cr_assert_eq(json_num(json, "acked"), 0, "%s", json);
    cr_assert_gt(json_num(json, "queue_bytes"), 0, "%s", json);
    upulsar_group_info_t gi;
    size_t ng = 0;
    cr_assert_eq(upulsar_producer_groups(p, &gi, 1, &ng), UPULSAR_OK);
    char want[64];
    snprintf(want, sizeof want, "\"state\":\"%s\",\"failed\":\"\"", upulsar_state_name(gi.state));
    cr_assert_not_null(strstr(json, want), "%s not in %s", want, json);
    free(json);
    scrape_t sc;
    scrape(c, &sc);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_pending_messages", NULL, NULL, NULL), N);
    cr_assert_eq(sum_of(&sc, "upulsar_client_pending_messages", NULL, NULL, NULL), N);
    cr_assert_gt(sum_of(&sc, "upulsar_producer_queue_bytes", NULL, NULL, NULL), 0);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_ready", NULL, NULL, NULL), 0);
    scrape_free(&sc);

    cr_assert_eq(upulsar_tb_refuse_connections(tb, 0), UPULSAR_OK);
    cr_assert(ft_wait_for(acked_all, p), "pending stays at %llu",
              (unsigned long long)list_pending(p));
    scrape(c, &sc);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_messages_acked_total", NULL, NULL, NULL), N);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_acked_bytes_total", NULL, NULL, NULL), 7.0 * N);
    cr_assert_eq(sum_of(&sc, "upulsar_producer_pending_messages", NULL, NULL, NULL), 0);
    scrape_free(&sc);
    cr_assert_eq(ft_topic_messages(tb, "m3"), (uint64_t)N);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}

/* Scenario: two handles on one topic of 2 partitions, unnamed and started
 * lazily, so no producer has a name yet (the broker names them at their
 * first creation). Every producer still has a series of its own: the
 * scrape has no two samples with the same labels (the parser checks it),
 * and the producer label tells the 4 producers apart. */
Test(ops_metrics, unnamed_producers_of_two_handles_on_one_topic_have_distinct_series)
{
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "m4", 2), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"lazy.start.partitions", "true", NULL};
    upulsar_producer_t *a = ft_producer(c, NULL, "m4", 0, kv);
    upulsar_producer_t *b = ft_producer(c, NULL, "m4", 0, kv);
    scrape_t sc;
    scrape(c, &sc);
    int n;
    sum_of(&sc, "upulsar_producer_messages_accepted_total", NULL, NULL, &n);
    cr_assert_eq(n, 4, "%d series for 2 handles of 2 partitions", n);
    scrape_free(&sc);
    cr_assert_eq(upulsar_producer_stop(a, FT_WAIT_MS), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(b, FT_WAIT_MS), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}

/* Scenario: two handles on one topic of 2 partitions, both given the name
 * "twin" and started lazily (so the second is not refused yet: the broker
 * would refuse its creation, as Pulsar does, only at its first send); one
 * message sent through the first.
 * Their producers would share topic, partition and producer labels. Every
 * producer still has a series of its own: the scrape has no two samples
 * with the same labels (the parser checks it); on each partition one of
 * them is labelled "twin" (the first handle's: its series does not
 * change when the second handle comes) and the other "twin#<producer
 * id>"; the labels of a producer are the same in every family. */
Test(ops_metrics, producers_given_one_name_on_one_topic_have_distinct_series)
{
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "m5", 2), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"lazy.start.partitions", "true", NULL};
    upulsar_producer_t *a = ft_producer(c, "twin", "m5", 0, kv);
    upulsar_producer_t *b = ft_producer(c, "twin", "m5", 0, kv);
    ft_send_ok(a, NULL); /* one message, through the first handle */
    scrape_t sc;
    scrape(c, &sc);
    int n, plain = 0, suffixed = 0;
    sum_of(&sc, "upulsar_producer_messages_accepted_total", NULL, NULL, &n);
    cr_assert_eq(n, 4, "%d series for 2 handles of 2 partitions", n);
    for (size_t i = 0; i < sc.n; i++) {
        if (strcmp(sc.s[i].name, "upulsar_producer_messages_accepted_total"))
            continue;
        const char *pr = label(&sc.s[i], "producer");
        cr_assert_not_null(pr);
        if (!strcmp(pr, "twin")) {
            plain++;
        } else {
            char *end = NULL;
            cr_assert(!strncmp(pr, "twin#", 5) && strtoull(pr + 5, &end, 10) > 0 && !*end,
                      "producer label %s", pr);
            suffixed++;
        }
        /* the same producer label on that partition in another family */
        int m;
        sum_of(&sc, "upulsar_producer_ready", "producer", pr, &m);
        cr_assert_eq(m, !strcmp(pr, "twin") ? 2 : 1, "%s: %d ready samples", pr, m);
    }
    cr_assert(plain == 2 && suffixed == 2, "%d named twin, %d suffixed", plain, suffixed);
    /* the series named twin are the first handle's (its one message) */
    double sent = sum_of(&sc, "upulsar_producer_messages_accepted_total", "producer", "twin", &n);
    cr_assert_eq(sent, 1.0, "%g messages counted by the series named twin", sent);
    scrape_free(&sc);
    upulsar_producer_stop(a, FT_WAIT_MS);
    upulsar_producer_stop(b, FT_WAIT_MS);
    ft_stop_client_and_broker(tb, c);
}
