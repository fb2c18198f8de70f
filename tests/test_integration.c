/* test_integration.c -- opt-in runs against a real Pulsar cluster.
 * Skipped unless UPULSAR_SERVICE_URL is set (e.g. pulsar://localhost:6650
 * with the official standalone container). UPULSAR_IT_CONF may add client
 * and producer keys, "key=value" pairs separated by ';' (e.g.
 * "tls.ca.file=/etc/pulsar/ca.pem;auth.token.file=/etc/pulsar/token").
 *
 * real_broker_round_trip:
 *   1. ask the broker how many partitions "upulsar-it-<pid>" has (auto-created
 *      topics are non-partitioned: one group);
 *   2. send 1000 keyed messages with properties, wait for every future;
 *   3. check ids: distinct (ledger, entry, batch_index) per message;
 *   4. stop resolves everything with OK.
 * partitioned_topic_routing (also needs UPULSAR_IT_PARTITIONED_TOPIC, a
 * topic created with pulsar-admin topics create-partitioned-topic ... -p N,
 * N > 1):
 *   1. start with partitions = 0: the broker's count is used;
 *   2. 2000 keyed messages (100 keys): each is acknowledged from the
 *      partition JavaStringHash(key) mod N names, as the Java client would
 *      route it; every partition gets traffic;
 *   3. every group and producer is READY and names the broker it lives on.
 * named_partitioned_producer (also needs UPULSAR_IT_PARTITIONED_TOPIC):
 *   a producer name given to start is used as is on every partition topic
 *   (as the official clients do), and each partition stores its message.
 * chunked_message_round_trip: with chunking.enabled (batching off, as the
 *   official clients require for chunking), a message of three times the
 *   broker's default max_message_size (5 MiB) is acknowledged once, its id
 *   naming its first and last chunk.
 * plain_entries_without_batching: with batching off, 20 messages (keys,
 *   properties, an event time, lz4) and with batching a delayed one are
 *   each acknowledged as a plain entry (batch_index -1, batch_size 0), in
 *   order, as the official clients send them.
 * schema_is_declared_and_enforced: a producer declaring schema.type=string
 *   registers the topic's schema and sends; one declaring a JSON schema on
 *   that topic is refused with INCOMPATIBLE_SCHEMA.
 * explicit_partitions_null_values_and_reports (also needs
 *   UPULSAR_IT_PARTITIONED_TOPIC): a message sent to each partition with
 *   UPULSAR_SEND_PARTITION is acknowledged from that partition; a null
 *   value (tombstone) and a binary key are accepted by the broker; the
 *   delivery report of each message names its partition and carries its
 *   payload, once.
 * through_a_proxy (needs UPULSAR_IT_PROXY_URL, the service URL of a Pulsar
 *   proxy in front of the same cluster): lookups answered "through the
 *   service URL"; 100 keyed messages acknowledged, in order per key.
 * partitioned_topic_and_chunks_through_a_proxy (needs UPULSAR_IT_PROXY_URL
 *   and UPULSAR_IT_PARTITIONED_TOPIC): partitioned_topic_routing's checks
 *   and a chunked message (as chunked_message_round_trip), through the
 *   proxy. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "upulsar/upulsar.h"

/* The service URL; without one the calling test is skipped (a binary whose
 * tests all skipped is reported "Skipped" by ctest, see skip_gate.c). */
static const char *service_url(void)
{
    const char *url = getenv("UPULSAR_SERVICE_URL");
    if (!url || !*url)
        cr_skip_test("UPULSAR_SERVICE_URL is not set; no real broker to test against");
    return url;
}

/* A conf with the service URL and the UPULSAR_IT_CONF pairs. */
static upulsar_conf_t *it_conf(const char *url)
{
    upulsar_conf_t *conf = upulsar_conf_new();
    char err[256];
    cr_assert_eq(upulsar_conf_set(conf, "service.url", url, err, sizeof err), UPULSAR_CONF_OK,
                 "%s", err);
    const char *extra = getenv("UPULSAR_IT_CONF");
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", extra ? extra : "");
    for (char *save = NULL, *kv = strtok_r(buf, ";", &save); kv; kv = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(kv, '=');
        cr_assert_not_null(eq, "UPULSAR_IT_CONF: \"%s\" is not key=value", kv);
        *eq = '\0';
        cr_assert_eq(upulsar_conf_set(conf, kv, eq + 1, err, sizeof err), UPULSAR_CONF_OK,
                     "UPULSAR_IT_CONF: %s", err);
    }
    return conf;
}

/* A client and a producer on @p topic (named @p name, NULL: by the broker)
 * from the service URL @p url, the UPULSAR_IT_CONF pairs and @p kv (extra
 * key, value pairs, NULL-terminated; may be NULL). */
typedef struct {
    upulsar_conf_t *conf;
    upulsar_client_t *client;
    upulsar_producer_t *p;
} it_run_t;

static it_run_t it_start(const char *url, const char *name, const char *topic,
                         const char *const *kv)
{
    it_run_t r = {it_conf(url), NULL, NULL};
    char err[256];
    for (; kv && kv[0]; kv += 2)
        cr_assert_eq(upulsar_conf_set(r.conf, kv[0], kv[1], err, sizeof err), UPULSAR_CONF_OK,
                     "%s", err);
    cr_assert_eq(upulsar_client_new(r.conf, &r.client), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_producer_start(r.client, name, topic, 0, r.conf, &r.p), UPULSAR_OK,
                 "%s", upulsar_last_error());
    return r;
}

/* Set by the proxy tests: the proxy's service URL, which every run must
 * have gone through. */
static const char *it_via_proxy;

/* The client's connections (upulsar_connection_info in its metrics) all go
 * to the proxy's address, and one at least names a broker behind it
 * (proxy_to: the producers' connections; the lookup connection names
 * none). */
static void it_assert_proxied(upulsar_client_t *c, const char *proxy_url)
{
    const char *hp = strstr(proxy_url, "://");
    hp = hp ? hp + 3 : proxy_url;
    char want[300];
    snprintf(want, sizeof want, "broker=\"%.*s\"", (int)strcspn(hp, "/"), hp);
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(upulsar_client_metrics_prometheus(c, &text, &len), UPULSAR_OK, "%s",
                 upulsar_last_error());
    int conns = 0, proxied = 0;
    for (char *line = text; line && *line;) {
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = '\0';
        if (!strncmp(line, "upulsar_connection_info{", 24)) {
            conns++;
            cr_assert_not_null(strstr(line, want), "a connection not to the proxy (%s): %s", want,
                               line);
            proxied += strstr(line, "proxy_to=\"\"") == NULL;
        }
        line = eol ? eol + 1 : NULL;
    }
    free(text);
    cr_assert_gt(conns, 0, "no open connection in the metrics");
    cr_assert_gt(proxied, 0, "no connection names a broker behind the proxy (proxy_to)");
}

/* Stop the producer (everything acknowledged), then the client. */
static void it_stop(it_run_t *r)
{
    if (it_via_proxy)
        it_assert_proxied(r->client, it_via_proxy);
    cr_assert_eq(upulsar_producer_stop(r->p, 30000), UPULSAR_OK);
    upulsar_client_destroy(r->client);
    upulsar_conf_destroy(r->conf);
}

Test(integration, real_broker_round_trip, .timeout = 120)
{
    const char *url = service_url();
    char topic[128];
    snprintf(topic, sizeof topic, "upulsar-it-%d", (int)getpid());
    it_run_t r = it_start(url, NULL, topic, NULL);
    upulsar_producer_t *p = r.p;
    enum { N = 1000 };
    static upulsar_future_t *f[N];
    static upulsar_msg_id_t id[N];
    upulsar_property_t props[1] = {{"source", "upulsar-integration"}};
    for (int i = 0; i < N; i++) {
        char key[16], payload[32];
        snprintf(key, sizeof key, "k%d", i % 10);
        int len = snprintf(payload, sizeof payload, "message %d", i);
        upulsar_send_opts_t o = {.partition_key = key, .properties = props, .properties_cnt = 1};
        cr_assert_eq(upulsar_send(p, payload, (size_t)len, &o, &f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], 30000, &id[i]), UPULSAR_OK, "message %d", i);
        upulsar_future_release(f[i]);
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            cr_assert(id[i].ledger_id != id[j].ledger_id || id[i].entry_id != id[j].entry_id ||
                          id[i].batch_index != id[j].batch_index,
                      "messages %d and %d share an id", i, j);
    it_stop(&r);
}

/* Java's String.hashCode of an ASCII key, as the Java client's
 * JavaStringHash takes it: (hash & Integer.MAX_VALUE) % partitions. */
static int java_partition(const char *key, int n)
{
    int32_t h = 0;
    for (const char *c = key; *c; c++)
        h = (int32_t)((uint32_t)h * 31u + (uint8_t)*c);
    return (int)((h & 0x7fffffff) % n);
}

/* The partitioned topic @p topic from @p url: keyed messages acknowledged
 * from the partition JavaStringHash names, every partition gets some, every
 * producer READY and naming its broker. */
static void routed_by_key(const char *url, const char *topic)
{
    it_run_t r = it_start(url, NULL, topic, NULL);
    upulsar_producer_t *p = r.p;
    int n = upulsar_producer_partitions(p);
    cr_assert_gt(n, 1, "%s has %d partitions: not a partitioned topic", topic, n);
    enum { N = 2000, KEYS = 100 };
    static upulsar_future_t *f[N];
    for (int i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof key, "key-%d", i % KEYS);
        upulsar_send_opts_t o = {.partition_key = key};
        cr_assert_eq(upulsar_send(p, "routed", 6, &o, &f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    int per_part[256] = {0};
    for (int i = 0; i < N; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], 30000, &id), UPULSAR_OK, "message %d: %s", i,
                     upulsar_last_error());
        upulsar_future_release(f[i]);
        char key[16];
        snprintf(key, sizeof key, "key-%d", i % KEYS);
        cr_assert_eq(id.partition, java_partition(key, n), "%s acknowledged from partition %d",
                     key, id.partition);
        if (id.partition >= 0 && id.partition < 256)
            per_part[id.partition]++;
    }
    for (int i = 0; i < n && i < 256; i++)
        cr_assert_gt(per_part[i], 0, "partition %d got nothing", i);
    upulsar_producer_info_t pi[256];
    size_t np = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, 256, &np), UPULSAR_OK);
    for (size_t i = 0; i < np && i < 256; i++) {
        cr_assert_eq(pi[i].state, UPULSAR_STATE_READY, "%s", pi[i].partition_topic);
        cr_assert(pi[i].broker[0], "%s names no broker", pi[i].partition_topic);
    }
    it_stop(&r);
}

Test(integration, partitioned_topic_routing, .timeout = 120)
{
    const char *url = service_url();
    const char *topic = getenv("UPULSAR_IT_PARTITIONED_TOPIC");
    if (!topic || !*topic)
        cr_skip_test("UPULSAR_IT_PARTITIONED_TOPIC is not set (create one with "
                     "pulsar-admin topics create-partitioned-topic <topic> -p 4)");
    routed_by_key(url, topic);
}

Test(integration, named_partitioned_producer, .timeout = 120)
{
    const char *url = service_url();
    const char *topic = getenv("UPULSAR_IT_PARTITIONED_TOPIC");
    if (!topic || !*topic)
        cr_skip_test("UPULSAR_IT_PARTITIONED_TOPIC is not set");
    char name[64];
    snprintf(name, sizeof name, "upulsar-it-%d", (int)getpid());
    it_run_t r = it_start(url, name, topic, NULL);
    upulsar_producer_t *p = r.p;
    int n = upulsar_producer_partitions(p);
    upulsar_producer_info_t pi[256];
    size_t np = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, 256, &np), UPULSAR_OK);
    cr_assert_eq(np, (size_t)n);
    for (size_t i = 0; i < np && i < 256; i++)
        cr_assert_str_eq(pi[i].name, name, "%s", pi[i].partition_topic);
    for (int part = 0, k = 0; part < n && part < 256; k++) {
        char key[16];
        snprintf(key, sizeof key, "key-%d", k);
        if (java_partition(key, n) != part)
            continue;
        upulsar_future_t *f;
        upulsar_send_opts_t o = {.partition_key = key};
        cr_assert_eq(upulsar_send(p, "named", 5, &o, &f), UPULSAR_OK);
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f, 30000, &id), UPULSAR_OK, "%s",
                     upulsar_last_error());
        cr_assert_eq(id.partition, part);
        upulsar_future_release(f);
        part++;
    }
    it_stop(&r);
}

/* A 15 MiB message on a fresh topic (@p prefix-<pid>) from @p url, chunked:
 * acknowledged once, its id naming its first and last chunk. */
static void chunked_round_trip(const char *url, const char *prefix)
{
    char topic[128];
    snprintf(topic, sizeof topic, "%s-%d", prefix, (int)getpid());
    const char *kv[] = {"chunking.enabled", "true", "batching.enabled", "false", NULL};
    it_run_t r = it_start(url, NULL, topic, kv);
    upulsar_producer_t *p = r.p;
    size_t len = 15u << 20;
    char *big = malloc(len);
    cr_assert_not_null(big);
    for (size_t i = 0; i < len; i++)
        big[i] = (char)('a' + i % 23);
    upulsar_future_t *f;
    cr_assert_eq(upulsar_send(p, big, len, NULL, &f), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_msg_id_t id;
    cr_assert_eq(upulsar_future_wait(f, 60000, &id), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_neq(id.ledger_id, UPULSAR_ID_UNKNOWN);
    /* both ends of the chunked message, as the official ChunkMessageId */
    cr_assert_neq(id.first_chunk_entry_id, UPULSAR_ID_UNKNOWN);
    cr_assert(id.first_chunk_ledger_id < id.ledger_id ||
                  (id.first_chunk_ledger_id == id.ledger_id &&
                   id.first_chunk_entry_id < id.entry_id),
              "the first chunk is not before the last");
    cr_assert_eq(id.batch_index, -1);
    upulsar_future_release(f);
    free(big);
    it_stop(&r);
}

Test(integration, chunked_message_round_trip, .timeout = 120)
{
    chunked_round_trip(service_url(), "upulsar-it-chunks");
}

/* Send @p n messages (keyed, with a property and an event time; the one at
 * @p delayed, if any, delivered a minute later) through @p r and check each
 * is acknowledged as a plain entry, in order. */
static void plain_entries(it_run_t *r, int n, int delayed)
{
    upulsar_future_t *f[20];
    cr_assert_leq(n, 20);
    for (int i = 0; i < n; i++) {
        char payload[64], key[16];
        snprintf(payload, sizeof payload, "plain entry %d %s", i, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        snprintf(key, sizeof key, "k%d", i % 3);
        upulsar_property_t prop = {"idx", payload};
        upulsar_send_opts_t o = {.partition_key = key, .properties = &prop,
                                 .properties_cnt = 1, .event_time_ms = 1000u + (uint64_t)i};
        if (i == delayed)
            o.deliver_after_ms = 60000;
        cr_assert_eq(upulsar_send(r->p, payload, strlen(payload), &o, &f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    upulsar_msg_id_t prev = {0};
    for (int i = 0; i < n; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], 30000, &id), UPULSAR_OK, "message %d: %s", i,
                     upulsar_last_error());
        upulsar_future_release(f[i]);
        if (delayed < 0 || i == delayed)
            cr_assert(id.batch_index == -1 && id.batch_size == 0,
                      "message %d: batch index %d of %d, not a plain entry", i, id.batch_index,
                      id.batch_size);
        if (i)
            cr_assert(id.ledger_id > prev.ledger_id ||
                          (id.ledger_id == prev.ledger_id && id.entry_id >= prev.entry_id),
                      "message %d acknowledged before the one sent before it", i);
        prev = id;
    }
}

Test(integration, plain_entries_without_batching, .timeout = 120)
{
    const char *url = service_url();
    char topic[128];
    snprintf(topic, sizeof topic, "upulsar-it-plain-%d", (int)getpid());
    const char *off[] = {"batching.enabled", "false", "compression", "lz4", NULL};
    it_run_t r = it_start(url, NULL, topic, off);
    plain_entries(&r, 20, -1);
    it_stop(&r);
    snprintf(topic, sizeof topic, "upulsar-it-delayed-%d", (int)getpid());
    it_run_t d = it_start(url, NULL, topic, NULL);
    plain_entries(&d, 5, 2);
    it_stop(&d);
}

/* A producer declaring a schema on a fresh topic registers it and sends;
 * a second producer declaring an incompatible schema (JSON on a STRING
 * topic) is refused with INCOMPATIBLE_SCHEMA, a terminal error. */
Test(integration, schema_is_declared_and_enforced, .timeout = 120)
{
    const char *url = service_url();
    char topic[128];
    snprintf(topic, sizeof topic, "upulsar-it-schema-%d", (int)getpid());
    const char *kv[] = {"schema.type", "string", NULL};
    it_run_t r = it_start(url, NULL, topic, kv);
    upulsar_future_t *f;
    cr_assert_eq(upulsar_send(r.p, "hello", 5, NULL, &f), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(f, 30000, NULL), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_future_release(f);
    upulsar_conf_t *jc = it_conf(url);
    char err[256];
    cr_assert_eq(upulsar_conf_set(jc, "schema.type", "json", err, sizeof err), UPULSAR_CONF_OK);
    cr_assert_eq(upulsar_conf_set(jc, "schema.definition",
                                  "{\"type\":\"record\",\"name\":\"R\",\"fields\":"
                                  "[{\"name\":\"a\",\"type\":\"int\"}]}",
                                  err, sizeof err),
                 UPULSAR_CONF_OK, "%s", err);
    upulsar_producer_t *q = NULL;
    cr_assert_eq(upulsar_producer_start(r.client, NULL, topic, 0, jc, &q),
                 UPULSAR_ERR_INCOMPATIBLE_SCHEMA, "%s", upulsar_last_error());
    cr_assert_null(q);
    upulsar_conf_destroy(jc);
    it_stop(&r);
}

Test(integration, through_a_proxy, .timeout = 120)
{
    const char *proxy = getenv("UPULSAR_IT_PROXY_URL");
    if (!proxy || !*proxy)
        cr_skip_test("UPULSAR_IT_PROXY_URL is not set (the service URL of a Pulsar proxy)");
    it_via_proxy = proxy;
    char topic[128];
    snprintf(topic, sizeof topic, "upulsar-it-proxy-%d", (int)getpid());
    it_run_t r = it_start(proxy, NULL, topic, NULL);
    upulsar_producer_t *p = r.p;
    enum { N = 100, KEYS = 5 };
    upulsar_future_t *f[N];
    for (int i = 0; i < N; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i % KEYS);
        upulsar_send_opts_t o = {.partition_key = key};
        cr_assert_eq(upulsar_send(p, "proxied", 7, &o, &f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    upulsar_msg_id_t last[KEYS];
    for (int i = 0; i < N; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], 30000, &id), UPULSAR_OK, "message %d: %s", i,
                     upulsar_last_error());
        upulsar_future_release(f[i]);
        if (i >= KEYS) { /* one producer: a key's messages in send order */
            const upulsar_msg_id_t *prev = &last[i % KEYS];
            cr_assert(id.ledger_id > prev->ledger_id ||
                          (id.ledger_id == prev->ledger_id &&
                           (id.entry_id > prev->entry_id ||
                            (id.entry_id == prev->entry_id &&
                             id.batch_index > prev->batch_index))),
                      "message %d stored before an earlier one of its key", i);
        }
        last[i % KEYS] = id;
    }
    it_stop(&r);
}

/* Through the proxy as well: a partitioned topic (routing and producers as
 * partitioned_topic_routing checks them) and a chunked message. */
Test(integration, partitioned_topic_and_chunks_through_a_proxy, .timeout = 180)
{
    const char *proxy = getenv("UPULSAR_IT_PROXY_URL");
    if (!proxy || !*proxy)
        cr_skip_test("UPULSAR_IT_PROXY_URL is not set (the service URL of a Pulsar proxy)");
    const char *topic = getenv("UPULSAR_IT_PARTITIONED_TOPIC");
    if (!topic || !*topic)
        cr_skip_test("UPULSAR_IT_PARTITIONED_TOPIC is not set");
    it_via_proxy = proxy;
    routed_by_key(proxy, topic);
    chunked_round_trip(proxy, "upulsar-it-proxy-chunks");
}

/* the delivery reports of explicit_partitions_null_values_and_reports */
enum { DR_MAX = 300 };
typedef struct {
    _Atomic int n;
    int partition[DR_MAX];
    size_t len[DR_MAX];
    char first[DR_MAX];
    int null_value[DR_MAX];
    int err[DR_MAX];
} it_reports_t;

static void it_on_report(const upulsar_delivery_report_t *dr, void *opaque)
{
    it_reports_t *r = opaque;
    intptr_t i = (intptr_t)dr->msg_opaque;
    if (i < 0 || i >= DR_MAX)
        return;
    r->partition[i] = dr->partition;
    r->len[i] = dr->payload_kept ? dr->len : (size_t)-1;
    r->first[i] = dr->payload_kept && dr->len ? *(const char *)dr->payload : 0;
    r->null_value[i] = dr->null_value;
    r->err[i] = dr->err;
    atomic_fetch_add(&r->n, 1);
}

Test(integration, explicit_partitions_null_values_and_reports, .timeout = 120)
{
    const char *url = service_url();
    const char *topic = getenv("UPULSAR_IT_PARTITIONED_TOPIC");
    if (!topic || !*topic)
        cr_skip_test("UPULSAR_IT_PARTITIONED_TOPIC is not set");
    static it_reports_t rep;
    it_run_t r = {it_conf(url), NULL, NULL};
    cr_assert_eq(upulsar_conf_set_delivery_report_cb(r.conf, it_on_report, &rep), UPULSAR_OK);
    cr_assert_eq(upulsar_client_new(r.conf, &r.client), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_producer_start(r.client, NULL, topic, 0, r.conf, &r.p), UPULSAR_OK,
                 "%s", upulsar_last_error());
    int n = upulsar_producer_partitions(r.p);
    cr_assert_gt(n, 1);
    int parts = n < DR_MAX - 2 ? n : DR_MAX - 2;
    static upulsar_future_t *f[DR_MAX];
    for (int i = 0; i < parts; i++) {
        upulsar_send_opts_t o = {.flags = UPULSAR_SEND_PARTITION, .partition = i,
                                 .partition_key = "a key that routes elsewhere",
                                 .opaque = (void *)(intptr_t)i};
        cr_assert_eq(upulsar_send(r.p, "explicit", 8, &o, &f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    upulsar_send_opts_t tomb = {.flags = UPULSAR_SEND_NULL_VALUE, .partition_key = "deleted",
                                .opaque = (void *)(intptr_t)parts};
    cr_assert_eq(upulsar_send(r.p, NULL, 0, &tomb, &f[parts]), UPULSAR_OK, "%s",
                 upulsar_last_error());
    static const unsigned char bin[] = {0x00, 0xff, 0x10, 0x80, 0x7f};
    upulsar_send_opts_t bk = {.partition_key_bytes = bin, .partition_key_bytes_len = sizeof bin,
                              .opaque = (void *)(intptr_t)(parts + 1)};
    cr_assert_eq(upulsar_send(r.p, "binary key", 10, &bk, &f[parts + 1]), UPULSAR_OK, "%s",
                 upulsar_last_error());
    for (int i = 0; i < parts + 2; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], 30000, &id), UPULSAR_OK, "message %d: %s", i,
                     upulsar_last_error());
        upulsar_future_release(f[i]);
        if (i < parts)
            cr_assert_eq(id.partition, i, "sent to partition %d, acknowledged from %d", i,
                         id.partition);
    }
    it_stop(&r);
    /* every report has run by the time stop returned */
    cr_assert_eq(atomic_load(&rep.n), parts + 2);
    for (int i = 0; i < parts; i++) {
        cr_assert_eq(rep.err[i], UPULSAR_OK);
        cr_assert_eq(rep.partition[i], i);
        cr_assert_eq(rep.len[i], 8u);
        cr_assert_eq(rep.first[i], 'e');
    }
    cr_assert(rep.null_value[parts]);
    cr_assert_eq(rep.len[parts + 1], 10u);
}
