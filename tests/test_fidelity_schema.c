/* test_fidelity_schema.c -- a producer declares its schema in PRODUCER, as
 * the official clients do, against a test broker that keeps a schema
 * registry per topic as Pulsar does (auto-update on, validation enforced
 * per topic or not):
 *
 * bytes_by_default_sends_no_schema: without schema keys PRODUCER carries
 *   no schema, nothing is registered and entries carry no schema_version
 *   (the broker's empty version is none).
 * string_schema_is_declared_and_its_version_is_in_every_entry: on a topic
 *   whose validation is enforced, a string producer is accepted; its
 *   schema is registered once (String, no data), every entry it stores
 *   (batched, unbatched, after a re-creation) carries version 0 as the
 *   broker gave it, and every PRODUCER (start and re-creation) carries the
 *   schema.
 * json_and_avro_definitions_are_the_schema_data: json with an inline
 *   definition and avro with '@file' are registered with the definition's
 *   exact bytes, the given name and schema.properties in order.
 * key_value_schema_is_encoded_as_the_official_clients_do: key_value
 *   (string key, json value, separated) is registered as KeyValue with
 *   schema_data = [-1][][len][value definition] and the seven properties
 *   of the official clients.
 * incompatible_schema_fails_the_start_at_once: a json producer on a topic
 *   holding a string schema, and a producer without a schema on an
 *   enforced topic holding one, fail upulsar_producer_start() with
 *   UPULSAR_ERR_INCOMPATIBLE_SCHEMA and the broker's reason, after exactly
 *   one PRODUCER (not retried); without enforcement the schema-less
 *   producer is accepted.
 * incompatible_schema_on_recreation_is_retried: a created producer whose
 *   re-creation is refused with IncompatibleSchema keeps its messages and
 *   is re-created once the refusal stops, as the official clients retry
 *   every refusal but fencing and termination.
 * schema_keys_that_make_no_schema_fail_the_start: json without a
 *   definition, a definition for string, key_value without its value's
 *   definition fail the start with INVALID_ARG before any request; an
 *   '@file' that does not exist is refused by upulsar_conf_set().
 * broker_wide_validation_and_topic_policy: the broker's own
 *   schema_validation_enforced refuses a schema-less producer on a topic
 *   with a schema; a topic policy of 0 overrides it.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_common.h"

TestSuite(fidelity_schema, .timeout = 120);

#define T_STRING 1
#define T_JSON 2
#define T_AVRO 4
#define T_KEY_VALUE 15
#define SE_INCOMPATIBLE_SCHEMA 18

static const char *const short_op[] = {"operation.timeout.ms", "3000", NULL};

static const char ORDER_DEF[] =
    "{\"type\":\"record\",\"name\":\"Order\",\"fields\":[{\"name\":\"id\",\"type\":\"long\"},"
    "{\"name\":\"item\",\"type\":\"string\"}]}";

/* Start a producer of @p c on @p topic with @p kv; its result (*@p p set
 * on success). */
static upulsar_err_t start(upulsar_client_t *c, const char *topic, const char *const *kv,
                           upulsar_producer_t **p)
{
    upulsar_conf_t *conf = ft_conf(kv);
    *p = NULL;
    upulsar_err_t e = upulsar_producer_start(c, NULL, topic, 0, conf, p);
    upulsar_conf_destroy(conf);
    return e;
}

/* Send @p n messages "<tag>-<i>" and wait for each. */
static void send_wait(upulsar_producer_t *p, const char *tag, int n)
{
    upulsar_future_t *fs[64];
    cr_assert_leq(n, 64);
    for (int i = 0; i < n; i++) {
        char body[32];
        int len = snprintf(body, sizeof body, "%s-%d", tag, i);
        cr_assert_eq(upulsar_send(p, body, (size_t)len, NULL, &fs[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    for (int i = 0; i < n; i++) {
        cr_assert_eq(upulsar_future_wait(fs[i], FT_WAIT_MS, NULL), UPULSAR_OK, "%s %d: %s", tag,
                     i, upulsar_last_error());
        upulsar_future_release(fs[i]);
    }
}

/* Every stored message of @p topic carries the schema version @p v (8
 * bytes big-endian, as Pulsar's LongSchemaVersion), or none when @p v is
 * -1; returns how many messages there are. */
static size_t check_versions(upulsar_tb_t *tb, const char *topic, int64_t v)
{
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    size_t n = upulsar_tb_snapshot_count(s);
    for (size_t i = 0; i < n; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, i);
        if (v < 0) {
            cr_assert_null(m->schema_version, "%s message %zu carries a schema version", topic,
                           i);
            continue;
        }
        cr_assert_not_null(m->schema_version, "%s message %zu has no schema version", topic, i);
        cr_assert_eq(m->schema_version_len, 8, "%s message %zu: version of %zu bytes", topic, i,
                     m->schema_version_len);
        for (int b = 0; b < 8; b++)
            cr_assert_eq(m->schema_version[b], (uint8_t)((uint64_t)v >> (56 - 8 * b)),
                         "%s message %zu byte %d", topic, i, b);
    }
    upulsar_tb_snapshot_free(s);
    return n;
}

/* Every PRODUCER @p tb received for @p topic carried a schema of
 * @p type (-1: none); returns how many there were. */
static size_t check_requests(upulsar_tb_t *tb, const char *topic, int type)
{
    upulsar_tb_request_t r[32];
    int n = upulsar_tb_producer_requests(tb, topic, r, 32);
    cr_assert(n >= 1 && n <= 32, "%s: %d requests", topic, n);
    size_t np = 0;
    for (int i = 0; i < n; i++) {
        if (r[i].type != UPULSAR_TB_REQ_PRODUCER)
            continue;
        np++;
        cr_assert_eq(r[i].schema_type, type, "%s: PRODUCER %d carried schema type %d, want %d",
                     topic, i, r[i].schema_type, type);
    }
    return np;
}

static upulsar_tb_schema_t *schema_of(upulsar_tb_t *tb, const char *topic, uint64_t v)
{
    upulsar_tb_schema_t *s = NULL;
    cr_assert_eq(upulsar_tb_schema_get(tb, topic, v, &s), UPULSAR_OK, "%s: %s", topic,
                 upulsar_last_error());
    return s;
}

static const char *prop(const upulsar_tb_schema_t *s, const char *key)
{
    for (size_t i = 0; i < s->properties_cnt; i++)
        if (!strcmp(s->properties[i].key, key))
            return s->properties[i].value;
    return NULL;
}

Test(fidelity_schema, bytes_by_default_sends_no_schema)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, short_op);
    upulsar_producer_t *p = ft_producer(c, NULL, "raw", 0, NULL);
    send_wait(p, "raw", 5);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    cr_assert_eq(check_versions(tb, "raw", -1), 5);
    cr_assert_eq(check_requests(tb, "raw", -1), 1);
    cr_assert_eq(upulsar_tb_schema_versions(tb, "raw"), 0);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

static int recreated_once(void *a) { return ft_reconnects(a) >= 1 && ft_all_ready(a); }

Test(fidelity_schema, string_schema_is_declared_and_its_version_is_in_every_entry)
{
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_schema_validation_enforced(tb, "texts", 1), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, short_op);
    /* batched, then unbatched: both framings carry the version */
    const char *kv[] = {"schema.type", "string", NULL};
    upulsar_producer_t *p = NULL;
    cr_assert_eq(start(c, "texts", kv, &p), UPULSAR_OK, "%s", upulsar_last_error());
    send_wait(p, "batched", 10);
    cr_assert_geq(upulsar_tb_drop_connections(tb, NULL), 1);
    cr_assert(ft_wait_for(recreated_once, p), "not re-created");
    send_wait(p, "after", 3);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    const char *kv1[] = {"schema.type", "string", "batching.enabled", "false", NULL};
    cr_assert_eq(start(c, "texts", kv1, &p), UPULSAR_OK, "%s", upulsar_last_error());
    send_wait(p, "single", 3);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);

    cr_assert_eq(check_versions(tb, "texts", 0), 16);
    cr_assert_eq(check_requests(tb, "texts", T_STRING), 3);
    cr_assert_eq(upulsar_tb_schema_versions(tb, "texts"), 1);
    upulsar_tb_schema_t *s = schema_of(tb, "texts", 0);
    cr_assert_eq(s->type, T_STRING);
    cr_assert_str_eq(s->name, "String");
    cr_assert_eq(s->data_len, 0);
    cr_assert_eq(s->properties_cnt, 0);
    upulsar_tb_schema_free(s);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(fidelity_schema, json_and_avro_definitions_are_the_schema_data)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, short_op);
    const char *kvj[] = {"schema.type",       "json",          "schema.definition", ORDER_DEF,
                         "schema.name",       "orders",        "schema.properties",
                         "owner=shop,rev=3",  NULL};
    upulsar_producer_t *p = NULL;
    cr_assert_eq(start(c, "orders-json", kvj, &p), UPULSAR_OK, "%s", upulsar_last_error());
    send_wait(p, "j", 2);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);

    char path[] = "/tmp/upulsar-avro-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, ORDER_DEF, strlen(ORDER_DEF)), (ssize_t)strlen(ORDER_DEF));
    close(fd);
    char at[sizeof path + 1];
    snprintf(at, sizeof at, "@%s", path);
    const char *kva[] = {"schema.type", "avro", "schema.definition", at, NULL};
    cr_assert_eq(start(c, "orders-avro", kva, &p), UPULSAR_OK, "%s", upulsar_last_error());
    unlink(path);
    send_wait(p, "a", 2);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);

    upulsar_tb_schema_t *s = schema_of(tb, "orders-json", 0);
    cr_assert_eq(s->type, T_JSON);
    cr_assert_str_eq(s->name, "orders");
    cr_assert_eq(s->data_len, strlen(ORDER_DEF));
    cr_assert_eq(memcmp(s->data, ORDER_DEF, s->data_len), 0);
    cr_assert_eq(s->properties_cnt, 2);
    cr_assert_str_eq(s->properties[0].key, "owner");
    cr_assert_str_eq(s->properties[0].value, "shop");
    cr_assert_str_eq(s->properties[1].key, "rev");
    cr_assert_str_eq(s->properties[1].value, "3");
    upulsar_tb_schema_free(s);
    s = schema_of(tb, "orders-avro", 0);
    cr_assert_eq(s->type, T_AVRO);
    cr_assert_str_eq(s->name, "");
    cr_assert_eq(s->data_len, strlen(ORDER_DEF));
    cr_assert_eq(memcmp(s->data, ORDER_DEF, s->data_len), 0);
    cr_assert_eq(s->properties_cnt, 0);
    upulsar_tb_schema_free(s);
    cr_assert_eq(check_versions(tb, "orders-json", 0), 2);
    cr_assert_eq(check_versions(tb, "orders-avro", 0), 2);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(fidelity_schema, key_value_schema_is_encoded_as_the_official_clients_do)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, short_op);
    const char *kv[] = {"schema.type",
                        "key_value",
                        "schema.key.type",
                        "string",
                        "schema.value.type",
                        "json",
                        "schema.value.definition",
                        ORDER_DEF,
                        "schema.kv.encoding",
                        "separated",
                        NULL};
    upulsar_producer_t *p = NULL;
    cr_assert_eq(start(c, "kv", kv, &p), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_send_opts_t o = {.partition_key = "order-1"};
    ft_send_ok(p, &o);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);

    upulsar_tb_schema_t *s = schema_of(tb, "kv", 0);
    cr_assert_eq(s->type, T_KEY_VALUE);
    cr_assert_str_eq(s->name, "KeyValue");
    size_t vl = strlen(ORDER_DEF);
    cr_assert_eq(s->data_len, 8 + vl);
    const uint8_t none[4] = {0xff, 0xff, 0xff, 0xff}; /* the key has no definition */
    cr_assert_eq(memcmp(s->data, none, 4), 0);
    const uint8_t len[4] = {(uint8_t)(vl >> 24), (uint8_t)(vl >> 16), (uint8_t)(vl >> 8),
                            (uint8_t)vl};
    cr_assert_eq(memcmp(s->data + 4, len, 4), 0);
    cr_assert_eq(memcmp(s->data + 8, ORDER_DEF, vl), 0);
    const char *want[][2] = {{"key.schema.name", "String"},  {"key.schema.type", "STRING"},
                             {"key.schema.properties", "{}"}, {"value.schema.name", ""},
                             {"value.schema.type", "JSON"},   {"value.schema.properties", "{}"},
                             {"kv.encoding.type", "SEPARATED"}};
    cr_assert_eq(s->properties_cnt, 7);
    for (size_t i = 0; i < 7; i++) {
        const char *v = prop(s, want[i][0]);
        cr_assert_not_null(v, "no property %s", want[i][0]);
        cr_assert_str_eq(v, want[i][1], "%s", want[i][0]);
    }
    upulsar_tb_schema_free(s);
    cr_assert_eq(check_versions(tb, "kv", 0), 1);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

/* One refused PRODUCER for @p topic: the start failed with
 * INCOMPATIBLE_SCHEMA, naming @p reason, after exactly one attempt. */
static void expect_refused(upulsar_tb_t *tb, upulsar_client_t *c, const char *topic,
                           const char *const *kv, const char *reason)
{
    int before = upulsar_tb_producer_answers(tb, topic, NULL, 0);
    upulsar_producer_t *p = NULL;
    upulsar_err_t e = start(c, topic, kv, &p);
    cr_assert_eq(e, UPULSAR_ERR_INCOMPATIBLE_SCHEMA, "%s: %s: %s", topic, upulsar_err_name(e),
                 upulsar_last_error());
    cr_assert_null(p);
    cr_assert(strstr(upulsar_last_error(), reason), "%s: detail \"%s\"", topic,
              upulsar_last_error());
    int answers[16];
    int n = upulsar_tb_producer_answers(tb, topic, answers, 16);
    cr_assert_eq(n, before + 1, "%s: %d PRODUCER attempts, want 1 (not retried)", topic,
                 n - before);
    cr_assert_eq(answers[n - 1], SE_INCOMPATIBLE_SCHEMA);
}

Test(fidelity_schema, incompatible_schema_fails_the_start_at_once)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, short_op);
    const char *str[] = {"schema.type", "string", NULL};
    upulsar_producer_t *p = NULL;
    cr_assert_eq(start(c, "typed", str, &p), UPULSAR_OK, "%s", upulsar_last_error());
    const char *json[] = {"schema.type", "json", "schema.definition", ORDER_DEF, NULL};
    expect_refused(tb, c, "typed", json, "exists schema type STRING, new schema type JSON");
    /* not enforced (Pulsar's default): a producer without a schema is
     * accepted; enforced: refused */
    const char *none[] = {NULL};
    upulsar_producer_t *q = NULL;
    cr_assert_eq(start(c, "typed", none, &q), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_producer_stop(q, 5000), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_schema_validation_enforced(tb, "typed", 1), UPULSAR_OK);
    expect_refused(tb, c, "typed", none, "without a schema");
    /* the string producer is not disturbed */
    send_wait(p, "s", 2);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_schema_versions(tb, "typed"), 1);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(fidelity_schema, incompatible_schema_on_recreation_is_retried)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, short_op);
    const char *kv[] = {"schema.type", "string", NULL};
    upulsar_producer_t *p = NULL;
    cr_assert_eq(start(c, "again", kv, &p), UPULSAR_OK, "%s", upulsar_last_error());
    send_wait(p, "before", 2);
    cr_assert_eq(upulsar_tb_fail_producers(tb, "again", 2, SE_INCOMPATIBLE_SCHEMA), UPULSAR_OK);
    cr_assert_geq(upulsar_tb_drop_connections(tb, NULL), 1);
    send_wait(p, "during", 4); /* wait through the refusals */
    cr_assert_eq(ft_group_state(p, 0), UPULSAR_STATE_READY);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    int answers[8];
    int n = upulsar_tb_producer_answers(tb, "again", answers, 8);
    const int want[] = {UPULSAR_TB_PRODUCER_CREATED, SE_INCOMPATIBLE_SCHEMA,
                        SE_INCOMPATIBLE_SCHEMA, UPULSAR_TB_PRODUCER_CREATED};
    cr_assert_eq(n, 4, "%d PRODUCER answers", n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(answers[i], want[i], "answer %d: %d", i, answers[i]);
    cr_assert_eq(check_versions(tb, "again", 0), 6);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(fidelity_schema, schema_keys_that_make_no_schema_fail_the_start)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, short_op);
    const char *const *bad[] = {
        (const char *const[]){"schema.type", "json", NULL},
        (const char *const[]){"schema.type", "string", "schema.definition", ORDER_DEF, NULL},
        (const char *const[]){"schema.type", "key_value", "schema.value.type", "avro", NULL},
        (const char *const[]){"schema.key.type", "string", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        upulsar_producer_t *p = NULL;
        upulsar_err_t e = start(c, "badschema", bad[i], &p);
        cr_assert_eq(e, UPULSAR_ERR__INVALID_ARG, "case %zu: %s: %s", i, upulsar_err_name(e),
                     upulsar_last_error());
        cr_assert_null(p);
        cr_assert(strstr(upulsar_last_error(), "schema"), "case %zu: %s", i,
                  upulsar_last_error());
    }
    cr_assert_eq(upulsar_tb_producer_answers(tb, "badschema", NULL, 0), 0, "a request was sent");
    upulsar_conf_t *conf = upulsar_conf_new();
    char err[256];
    cr_assert_eq(upulsar_conf_set(conf, "schema.definition", "@/nonexistent/upulsar-def.json",
                                  err, sizeof err),
                 UPULSAR_CONF_INVALID);
    cr_assert(strstr(err, "/nonexistent/upulsar-def.json"), "%s", err);
    upulsar_conf_destroy(conf);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

/* With lazy.start.partitions no producer is created at start: the schema
 * keys are still checked there, not left to fail every lazy creation. */
Test(fidelity_schema, schema_keys_are_checked_at_start_with_lazy_partitions)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, short_op);
    const char *kv[] = {"schema.type", "json", "lazy.start.partitions", "true", NULL};
    upulsar_conf_t *conf = ft_conf(kv);
    upulsar_producer_t *p = NULL;
    upulsar_err_t e = upulsar_producer_start(c, NULL, "lazybadschema", 3, conf, &p);
    upulsar_conf_destroy(conf);
    cr_assert_eq(e, UPULSAR_ERR__INVALID_ARG, "%s: %s", upulsar_err_name(e),
                 upulsar_last_error());
    cr_assert_null(p);
    cr_assert(strstr(upulsar_last_error(), "schema"), "%s", upulsar_last_error());
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

/* The broker's own setting (Pulsar's schemaValidationEnforced), and a
 * topic policy overriding it. */
Test(fidelity_schema, broker_wide_validation_and_topic_policy)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.schema_validation_enforced = 1;
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_client_t *c = ft_client(tb, short_op);
    const char *str[] = {"schema.type", "string", NULL};
    const char *none[] = {NULL};
    const char *topics[] = {"strict", "lenient"};
    upulsar_producer_t *p[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++)
        cr_assert_eq(start(c, topics[i], str, &p[i]), UPULSAR_OK, "%s", upulsar_last_error());
    expect_refused(tb, c, "strict", none, "without a schema");
    cr_assert_eq(upulsar_tb_set_schema_validation_enforced(tb, "lenient", 0), UPULSAR_OK);
    upulsar_producer_t *q = NULL;
    cr_assert_eq(start(c, "lenient", none, &q), UPULSAR_OK, "%s", upulsar_last_error());
    send_wait(q, "raw", 2);
    cr_assert_eq(upulsar_producer_stop(q, 5000), UPULSAR_OK);
    cr_assert_eq(check_versions(tb, "lenient", -1), 2);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(upulsar_producer_stop(p[i], 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}
