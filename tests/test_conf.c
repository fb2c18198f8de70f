/* test_conf.c -- the configuration table: defaults, parsing, validation,
 * secrecy, error strings and the generated reference. */
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "conf.h"

/* Every key and its default as upulsar_conf_get() prints it. */
static const struct {
    const char *key;
    const char *def;
} all_keys[] = {
    {"service.url", "pulsar://localhost:6650"},
    {"io.threads", "1"},
    {"io.backend", "auto"},
    {"connections.per.broker", "1"},
    {"operation.timeout.ms", "30000"},
    {"connection.timeout.ms", "10000"},
    {"keepalive.interval.ms", "30000"},
    {"connection.idle.timeout.ms", "60000"},
    {"backoff.initial.ms", "100"},
    {"backoff.max.ms", "60000"},
    {"lookup.max.redirects", "20"},
    {"listener.name", ""},
    {"memory.limit.bytes", "67108864"},
    {"stats.interval.ms", "0"},
    {"auth.token", ""},
    {"auth.token.file", ""},
    {"auth.token.env", ""},
    {"tls.ca.file", ""},
    {"tls.ca.path", ""},
    {"tls.cert.file", ""},
    {"tls.key.file", ""},
    {"tls.verify.hostname", "true"},
    {"tls.allow.insecure", "false"},
    {"producers.per.partition", "1"},
    {"batching.enabled", "true"},
    {"batch.max.messages", "1000"},
    {"batch.max.bytes", "131072"},
    {"batch.max.delay.ms", "1"},
    {"batch.mode", "adaptive"},
    {"latency.sample.every", "16"},
    {"compression", "none"},
    {"hashing.scheme", "java_string"},
    {"routing.mode", "round_robin"},
    {"queue.buffer.bytes", "1048576"},
    {"queue.idle.release.ms", "1000"},
    {"max.pending.messages", "0"},
    {"block.if.queue.full", "false"},
    {"send.timeout.ms", "30000"},
    {"restart.intensity", "0"},
    {"restart.period.ms", "60000"},
    {"initial.sequence.id", "-1"},
    {"partitions.update.interval.ms", "60000"},
    {"partitions.max", "1024"},
    {"chunking.enabled", "false"},
    {"producer.access.mode", "shared"},
    {"batching.type", "default"},
    {"lazy.start.partitions", "false"},
    {"producer.properties", ""},
    {"max.inflight.batches", "32"},
    {"schema.type", "bytes"},
    {"schema.name", ""},
    {"schema.definition", ""},
    {"schema.properties", ""},
    {"schema.key.type", "bytes"},
    {"schema.key.definition", ""},
    {"schema.value.type", "bytes"},
    {"schema.value.definition", ""},
    {"schema.kv.encoding", "inline"},
};
#define NKEYS (sizeof all_keys / sizeof all_keys[0])

static upulsar_conf_t *conf;

static void setup(void)
{
    conf = upulsar_conf_new();
    cr_assert_not_null(conf);
}

static void teardown(void) { upulsar_conf_destroy(conf); }

TestSuite(conf, .init = setup, .fini = teardown);

static void expect_get(const char *key, const char *want)
{
    char buf[600];
    cr_assert_eq(upulsar_conf_get(conf, key, buf, sizeof buf), UPULSAR_CONF_OK, "%s", key);
    cr_assert_str_eq(buf, want, "%s", key);
}

static void expect_set_ok(const char *key, const char *value)
{
    char e[256] = "";
    cr_assert_eq(upulsar_conf_set(conf, key, value, e, sizeof e), UPULSAR_CONF_OK,
                 "%s=%s: %s", key, value, e);
}

/* Setting @p value must fail with INVALID, leave the conf untouched and
 * give an errstr naming the key and containing @p must_mention. */
static void expect_invalid(const char *key, const char *value, const char *must_mention)
{
    struct upulsar_conf before;
    memcpy(&before, conf, sizeof before);
    char e[512];
    memset(e, 'X', sizeof e);
    cr_assert_eq(upulsar_conf_set(conf, key, value, e, sizeof e), UPULSAR_CONF_INVALID,
                 "%s=\"%s\" was accepted", key, value);
    cr_assert(memchr(e, '\0', sizeof e), "errstr not terminated");
    cr_assert(strstr(e, key), "errstr \"%s\" does not name %s", e, key);
    if (must_mention)
        cr_assert(strstr(e, must_mention), "errstr \"%s\" lacks \"%s\"", e, must_mention);
    cr_assert_eq(memcmp(&before, conf, sizeof before), 0, "%s=\"%s\" changed the conf", key,
                 value);
    cr_assert(strstr(upulsar_last_error(), key), "last error \"%s\"", upulsar_last_error());
}

Test(conf, new_conf_has_documented_defaults_in_fields)
{
    cr_assert_str_eq(conf->service_url, "pulsar://localhost:6650");
    cr_assert_eq(conf->io_threads, 1);
    cr_assert_eq(conf->connections_per_broker, 1);
    cr_assert_eq(conf->operation_timeout_ms, 30000);
    cr_assert_eq(conf->connection_timeout_ms, 10000);
    cr_assert_eq(conf->keepalive_interval_ms, 30000);
    cr_assert_eq(conf->backoff_initial_ms, 100);
    cr_assert_eq(conf->backoff_max_ms, 60000);
    cr_assert_eq(conf->lookup_max_redirects, 20);
    cr_assert_eq(conf->stats_interval_ms, 0);
    cr_assert_str_eq(conf->auth_token, "");
    cr_assert_str_eq(conf->auth_token_file, "");
    cr_assert_str_eq(conf->tls_ca_file, "");
    cr_assert_eq(conf->tls_verify_hostname, true);
    cr_assert_eq(conf->tls_allow_insecure, false);
    cr_assert_eq(conf->producers_per_partition, 1);
    cr_assert_eq(conf->batching_enabled, true);
    cr_assert_eq(conf->batch_max_messages, 1000);
    cr_assert_eq(conf->batch_max_bytes, 131072);
    cr_assert_eq(conf->batch_max_delay_us, 1000);
    cr_assert_eq(conf->compression, UP_COMP_NONE);
    cr_assert_eq(conf->hashing, UP_HASH_JAVA_STRING);
    cr_assert_eq(conf->routing, UP_ROUTE_ROUND_ROBIN);
    cr_assert_eq(conf->queue_buffer_bytes, 1024 * 1024);
    cr_assert_eq(conf->max_pending_messages, 0);
    cr_assert_eq(conf->block_if_queue_full, false);
    cr_assert_eq(conf->send_timeout_ms, 30000);
    cr_assert_eq(conf->restart_intensity, 0);
    cr_assert_eq(conf->restart_period_ms, 60000);
    cr_assert_eq(conf->initial_sequence_id, -1);
    cr_assert_eq(conf->max_inflight_batches, 32);

    struct upulsar_conf c;
    memset(&c, 0xa5, sizeof c);
    up_conf_defaults(&c);
    cr_assert_eq(memcmp(&c, conf, sizeof c), 0, "up_conf_defaults differs from conf_new");
}

Test(conf, get_prints_every_default_and_default_reparses)
{
    for (size_t i = 0; i < NKEYS; i++) {
        expect_get(all_keys[i].key, all_keys[i].def);
        /* the printed default is itself accepted and changes no value (it
         * only marks the key as set, in set_keys, the last member) */
        struct upulsar_conf before;
        memcpy(&before, conf, sizeof before);
        expect_set_ok(all_keys[i].key, all_keys[i].def);
        cr_assert_eq(memcmp(&before, conf, offsetof(struct upulsar_conf, set_keys)), 0, "%s",
                     all_keys[i].key);
        cr_assert_neq(memcmp(before.set_keys, conf->set_keys, sizeof before.set_keys), 0,
                      "%s: not marked as set", all_keys[i].key);
    }
}

Test(conf, set_then_get_round_trips_every_type)
{
    expect_set_ok("service.url", "pulsar+ssl://broker-1.example:6651");
    expect_get("service.url", "pulsar+ssl://broker-1.example:6651");
    cr_assert_str_eq(conf->service_url, "pulsar+ssl://broker-1.example:6651");
    expect_set_ok("service.url", "pulsar://h1:6650,h2:6650");
    expect_get("service.url", "pulsar://h1:6650,h2:6650");

    expect_set_ok("io.threads", "64");
    cr_assert_eq(conf->io_threads, 64);
    expect_get("io.threads", "64");

    expect_set_ok("batching.enabled", "false");
    cr_assert_eq(conf->batching_enabled, false);
    expect_get("batching.enabled", "false");
    expect_set_ok("batching.enabled", "1");
    cr_assert_eq(conf->batching_enabled, true);
    expect_set_ok("batching.enabled", "0");
    cr_assert_eq(conf->batching_enabled, false);
    expect_set_ok("batching.enabled", "TRUE");
    cr_assert_eq(conf->batching_enabled, true);

    expect_set_ok("compression", "lz4");
    cr_assert_eq(conf->compression, UP_COMP_LZ4);
    expect_get("compression", "lz4");
    expect_set_ok("compression", "NONE");
    cr_assert_eq(conf->compression, UP_COMP_NONE);

    expect_set_ok("hashing.scheme", "murmur3_32");
    cr_assert_eq(conf->hashing, UP_HASH_MURMUR3_32);
    expect_get("hashing.scheme", "murmur3_32");

    expect_set_ok("routing.mode", "single");
    cr_assert_eq(conf->routing, UP_ROUTE_SINGLE);
    expect_get("routing.mode", "single");
    expect_set_ok("routing.mode", "random");
    cr_assert_eq(conf->routing, UP_ROUTE_RANDOM);

    expect_set_ok("queue.buffer.bytes", "1073741824");
    cr_assert_eq(conf->queue_buffer_bytes, 1073741824);
    expect_get("queue.buffer.bytes", "1073741824");

    expect_set_ok("initial.sequence.id", "9223372036854775806");
    cr_assert_eq(conf->initial_sequence_id, INT64_MAX - 1);
    expect_get("initial.sequence.id", "9223372036854775806");
    expect_set_ok("initial.sequence.id", "0");
    cr_assert_eq(conf->initial_sequence_id, 0);

    expect_set_ok("block.if.queue.full", "true");
    cr_assert_eq(conf->block_if_queue_full, true);
    expect_set_ok("send.timeout.ms", "0");
    cr_assert_eq(conf->send_timeout_ms, 0);
    expect_set_ok("keepalive.interval.ms", "0");
    cr_assert_eq(conf->keepalive_interval_ms, 0);
}

Test(conf, integer_bounds_are_inclusive)
{
    expect_set_ok("batch.max.messages", "1");
    cr_assert_eq(conf->batch_max_messages, 1);
    expect_set_ok("batch.max.messages", "100000");
    cr_assert_eq(conf->batch_max_messages, 100000);
    expect_set_ok("batch.max.bytes", "1024");
    expect_set_ok("batch.max.bytes", "5242880");
    cr_assert_eq(conf->batch_max_bytes, 5242880);
    expect_set_ok("producers.per.partition", "64");
    expect_set_ok("max.inflight.batches", "100000");
    expect_set_ok("queue.buffer.bytes", "65536");
}

Test(conf, out_of_range_integers_are_invalid_with_the_range_in_errstr)
{
    expect_invalid("batch.max.messages", "0", "between 1 and 100000");
    expect_invalid("batch.max.messages", "100001", "between 1 and 100000");
    expect_invalid("batch.max.bytes", "1023", "between 1024 and 5242880");
    expect_invalid("batch.max.bytes", "5242881", "between 1024 and 5242880");
    expect_invalid("io.threads", "0", "between 1 and 64");
    expect_invalid("io.threads", "65", "between 1 and 64");
    expect_invalid("io.threads", "-1", "between 1 and 64");
    expect_invalid("connections.per.broker", "0", "between 1 and 64");
    expect_invalid("connections.per.broker", "65", "between 1 and 64");
    expect_invalid("producers.per.partition", "0", NULL);
    expect_invalid("queue.buffer.bytes", "65535", "between 65536 and 1073741824");
    expect_invalid("queue.buffer.bytes", "1073741825", NULL);
    expect_invalid("restart.intensity", "1000001", "between 0 and 1000000");
    expect_set_ok("restart.intensity", "1000000");
    expect_set_ok("restart.intensity", "0");
    expect_invalid("initial.sequence.id", "-2", "between -1 and 9223372036854775806");
    /* the next id after it must fit */
    expect_invalid("initial.sequence.id", "9223372036854775807", "9223372036854775806");
    expect_invalid("initial.sequence.id", "9223372036854775808", NULL);
    expect_invalid("max.inflight.batches", "0", NULL);
    expect_invalid("send.timeout.ms", "-1", NULL);
    /* an int field must not silently truncate a value above INT_MAX */
    expect_invalid("max.pending.messages", "4294967296", NULL);
    expect_invalid("operation.timeout.ms", "0", NULL);
}

Test(conf, non_numeric_integers_are_invalid)
{
    const char *bad[] = {"", "abc", "12abc", " 1", "1 ", "+1", "0x10", "1.5", "1e3", "-",
                         "--1", "99999999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_invalid("batch.max.messages", bad[i], "integer");
        expect_invalid("initial.sequence.id", bad[i], "integer");
    }
}

Test(conf, booleans_and_enums_reject_other_words)
{
    expect_invalid("batching.enabled", "yes", "true, false, 1 or 0");
    expect_invalid("batching.enabled", "", NULL);
    expect_invalid("batching.enabled", "truex", NULL);
    expect_invalid("block.if.queue.full", "2", NULL);
    expect_invalid("compression", "gzip", "none, lz4, zlib, zstd");
    expect_invalid("compression", "", NULL);
    expect_invalid("compression", "lz4 ", NULL);
    expect_invalid("hashing.scheme", "boost", "java_string, murmur3_32");
    expect_invalid("routing.mode", "custom", "round_robin, random, single");
}

Test(conf, zstd_is_accepted_exactly_when_compiled_in)
{
    bool have_zstd = up_compress_bound(UP_COMP_ZSTD, 16) != 0;
    char e[256] = "";
    upulsar_conf_res_t r = upulsar_conf_set(conf, "compression", "zstd", e, sizeof e);
    if (have_zstd) {
        cr_assert_eq(r, UPULSAR_CONF_OK, "%s", e);
        cr_assert_eq(conf->compression, UP_COMP_ZSTD);
        expect_get("compression", "zstd");
    } else {
        cr_assert_eq(r, UPULSAR_CONF_INVALID);
        cr_assert(strstr(e, "compression"));
        cr_assert_eq(conf->compression, UP_COMP_NONE);
    }
}

Test(conf, service_url_needs_a_pulsar_scheme_and_a_host)
{
    expect_invalid("service.url", "http://localhost:8080", "pulsar://");
    expect_invalid("service.url", "localhost:6650", "pulsar+ssl://");
    expect_invalid("service.url", "PULSAR://x:1", NULL);
    expect_invalid("service.url", "pulsar://", NULL);
    expect_invalid("service.url", "pulsar+ssl://", NULL);
    expect_invalid("service.url", "pulsar:/x:6650", NULL);
    expect_invalid("service.url", "pulsar://bad host:6650", NULL);
    expect_invalid("service.url", "", NULL);
    char longurl[600];
    memset(longurl, 'a', sizeof longurl - 1);
    longurl[sizeof longurl - 1] = '\0';
    memcpy(longurl, "pulsar://", 9);
    expect_invalid("service.url", longurl, "511");
    /* 511 bytes fit */
    longurl[511] = '\0';
    expect_set_ok("service.url", longurl);
    expect_get("service.url", longurl);
}

Test(conf, batch_delay_accepts_fractional_ms_and_stores_microseconds)
{
    static const struct {
        const char *in;
        int us;
        const char *out;
    } ok[] = {
        {"0.5", 500, "0.5"},     {"1", 1000, "1"},        {"2.125", 2125, "2.125"},
        {"0.05", 50, "0.05"},    {"0.001", 1, "0.001"},   {"0", 0, "0"},
        {"10.", 10000, "10"},    {"0.5000", 500, "0.5"},  {"60000", 60000000, "60000"},
        {"007", 7000, "7"},      {"1.010", 1010, "1.01"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        expect_set_ok("batch.max.delay.ms", ok[i].in);
        cr_assert_eq(conf->batch_max_delay_us, ok[i].us, "%s", ok[i].in);
        expect_get("batch.max.delay.ms", ok[i].out);
    }
}

Test(conf, batch_delay_rejects_bad_or_out_of_range_numbers)
{
    const char *bad[] = {"",     ".",      "-1",   "-0.5",     "0.0005", "1e3",
                         "0,5",  "1.2.3",  " 1",   "60000.001", "60001", "abc",
                         "inf",  "nan",    "0x10", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_invalid("batch.max.delay.ms", bad[i], "between 0 and 60000");
}

Test(conf, unknown_key_is_reported_as_unknown)
{
    char e[128];
    cr_assert_eq(upulsar_conf_set(conf, "batch.max.mesages", "5", e, sizeof e),
                 UPULSAR_CONF_UNKNOWN);
    cr_assert(strstr(e, "batch.max.mesages"), "%s", e);
    cr_assert_eq(upulsar_conf_set(conf, "", "5", e, sizeof e), UPULSAR_CONF_UNKNOWN);
    cr_assert_eq(upulsar_conf_set(conf, NULL, "5", e, sizeof e), UPULSAR_CONF_UNKNOWN);
    /* keys are exact: no case folding, no surrounding blanks */
    cr_assert_eq(upulsar_conf_set(conf, "IO.THREADS", "2", NULL, 0), UPULSAR_CONF_UNKNOWN);
    cr_assert_eq(upulsar_conf_set(conf, "io.threads ", "2", NULL, 0), UPULSAR_CONF_UNKNOWN);
    char buf[16] = "junk";
    cr_assert_eq(upulsar_conf_get(conf, "nope", buf, sizeof buf), UPULSAR_CONF_UNKNOWN);
    cr_assert_str_eq(buf, "");
    cr_assert_eq(upulsar_conf_get(conf, NULL, buf, sizeof buf), UPULSAR_CONF_UNKNOWN);
}

Test(conf, null_arguments_are_rejected_without_crashing)
{
    cr_assert_eq(upulsar_conf_set(conf, "io.threads", NULL, NULL, 0), UPULSAR_CONF_INVALID);
    cr_assert_eq(upulsar_conf_set(NULL, "io.threads", "2", NULL, 0), UPULSAR_CONF_INVALID);
    char buf[8];
    cr_assert_eq(upulsar_conf_get(NULL, "io.threads", buf, sizeof buf), UPULSAR_CONF_INVALID);
    cr_assert_eq(upulsar_conf_get(conf, "io.threads", NULL, 0), UPULSAR_CONF_OK);
    cr_assert_null(upulsar_conf_dup(NULL));
    upulsar_conf_destroy(NULL);
    upulsar_conf_dump_doc(NULL);
}

Test(conf, errstr_is_always_terminated_and_never_overflows)
{
    /* a long message into ever smaller buffers; bytes past the given size
     * keep their canary */
    for (size_t size = 0; size < 40; size++) {
        char e[64];
        memset(e, '#', sizeof e);
        cr_assert_eq(upulsar_conf_set(conf, "batch.max.messages", "1000000", e, size),
                     UPULSAR_CONF_INVALID);
        if (size) {
            cr_assert_not_null(memchr(e, '\0', size), "size %zu", size);
            /* as much of the message as fits: it starts with the key */
            cr_assert_eq(strlen(e), size - 1, "size %zu", size);
            cr_assert_eq(strncmp(e, "batch.max.messages", size - 1 < 18 ? size - 1 : 18), 0);
        }
        for (size_t i = size; i < sizeof e; i++)
            cr_assert_eq(e[i], '#', "size %zu wrote byte %zu", size, i);
    }
    cr_assert_eq(upulsar_conf_set(conf, "batch.max.messages", "x", NULL, 100),
                 UPULSAR_CONF_INVALID);
    cr_assert_eq(upulsar_conf_set(conf, "nope", "x", NULL, 100), UPULSAR_CONF_UNKNOWN);
    /* get truncates the same way */
    char b[8];
    memset(b, '#', sizeof b);
    cr_assert_eq(upulsar_conf_get(conf, "service.url", b, 5), UPULSAR_CONF_OK);
    cr_assert_str_eq(b, "puls");
    cr_assert_eq(b[5], '#');
}

Test(conf, huge_values_are_quoted_truncated_in_errstr)
{
    char big[4000];
    memset(big, '7', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char e[1024];
    cr_assert_eq(upulsar_conf_set(conf, "io.threads", big, e, sizeof e), UPULSAR_CONF_INVALID);
    cr_assert(strstr(e, "io.threads"));
    cr_assert_lt(strlen(e), 200);
}

Test(conf, auth_token_is_secret_in_get_and_errors)
{
    expect_get("auth.token", "");
    expect_set_ok("auth.token", "eyJhbGciOiJIUzI1NiJ9.SECRETPART.sig");
    cr_assert_str_eq(conf->auth_token, "eyJhbGciOiJIUzI1NiJ9.SECRETPART.sig");
    expect_get("auth.token", "***");
    /* an over-long token is refused without echoing any of it */
    size_t n = sizeof conf->auth_token + 10;
    char *tok = malloc(n + 1);
    cr_assert_not_null(tok);
    memset(tok, 'S', n);
    memcpy(tok, "SECRETPART", 10);
    tok[n] = '\0';
    char e[512];
    cr_assert_eq(upulsar_conf_set(conf, "auth.token", tok, e, sizeof e), UPULSAR_CONF_INVALID);
    cr_assert(strstr(e, "auth.token"), "%s", e);
    cr_assert_null(strstr(e, "SECRET"), "errstr leaks the token: %s", e);
    cr_assert_null(strstr(e, "SSSS"), "errstr leaks the token: %s", e);
    cr_assert_null(strstr(upulsar_last_error(), "SECRET"));
    free(tok);
    /* unchanged after the failure, still hidden */
    expect_get("auth.token", "***");
    cr_assert_str_eq(conf->auth_token, "eyJhbGciOiJIUzI1NiJ9.SECRETPART.sig");
    /* the longest token that fits is accepted */
    char *max = malloc(sizeof conf->auth_token);
    memset(max, 'k', sizeof conf->auth_token - 1);
    max[sizeof conf->auth_token - 1] = '\0';
    expect_set_ok("auth.token", max);
    cr_assert_eq(strlen(conf->auth_token), sizeof conf->auth_token - 1);
    free(max);
    /* clearing it */
    expect_set_ok("auth.token", "");
    expect_get("auth.token", "");
}

Test(conf, dup_is_an_independent_copy)
{
    expect_set_ok("batch.max.messages", "77");
    expect_set_ok("auth.token", "tok");
    upulsar_conf_t *c2 = upulsar_conf_dup(conf);
    cr_assert_not_null(c2);
    cr_assert_eq(memcmp(c2, conf, sizeof *c2), 0);
    cr_assert_eq(upulsar_conf_set(c2, "batch.max.messages", "88", NULL, 0), UPULSAR_CONF_OK);
    cr_assert_eq(conf->batch_max_messages, 77);
    cr_assert_eq(c2->batch_max_messages, 88);
    cr_assert_str_eq(c2->auth_token, "tok");
    upulsar_conf_destroy(c2);
    cr_assert_eq(conf->batch_max_messages, 77);
}

static char *dump_to_string(size_t *len)
{
    char *s = NULL;
    FILE *fp = open_memstream(&s, len);
    cr_assert_not_null(fp);
    upulsar_conf_dump_doc(fp);
    fclose(fp);
    return s;
}

Test(conf, dump_doc_has_one_well_formed_row_per_key)
{
    size_t len;
    char *doc = dump_to_string(&len);
    cr_assert_gt(len, 0);
    size_t rows = 0;
    for (char *line = doc; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        if (ll > 3 && strncmp(line, "| `", 3) == 0) {
            rows++;
            /* 7 columns = 8 unescaped pipes */
            int pipes = 0;
            for (size_t i = 0; i < ll; i++)
                if (line[i] == '|' && (i == 0 || line[i - 1] != '\\'))
                    pipes++;
            cr_assert_eq(pipes, 8, "row: %.*s", (int)ll, line);
        }
        line = nl ? nl + 1 : NULL;
    }
    cr_assert_eq(rows, NKEYS, "rows %zu, keys %zu", rows, NKEYS);
    for (size_t i = 0; i < NKEYS; i++) {
        char needle[80];
        snprintf(needle, sizeof needle, "| `%s` |", all_keys[i].key);
        cr_assert(strstr(doc, needle), "key %s missing from the reference", all_keys[i].key);
    }
    /* ranges, units and Java names come from the same table */
    cr_assert(strstr(doc, "1 .. 100000"));
    cr_assert(strstr(doc, "batchingMaxMessages"));
    cr_assert(strstr(doc, "batchingMaxPublishDelayMicros"));
    cr_assert(strstr(doc, "none, lz4, zlib, zstd"));
    free(doc);
}

/* upulsar_conf_scope() agrees with the section of the reference each key
 * is listed in, for every key; anything else is UNKNOWN. */
Test(conf, scope_of_every_key_is_the_section_it_is_documented_in)
{
    size_t len, rows = 0;
    char *doc = dump_to_string(&len);
    upulsar_conf_scope_t section = UPULSAR_CONF_SCOPE_UNKNOWN;
    for (char *line = doc; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (!strcmp(line, "## Client keys"))
            section = UPULSAR_CONF_SCOPE_CLIENT;
        else if (!strcmp(line, "## Producer keys"))
            section = UPULSAR_CONF_SCOPE_PRODUCER;
        else if (!strncmp(line, "| `", 3)) {
            char key[80];
            const char *end = strchr(line + 3, '`');
            cr_assert_not_null(end, "row: %s", line);
            snprintf(key, sizeof key, "%.*s", (int)(end - (line + 3)), line + 3);
            cr_assert_neq(section, UPULSAR_CONF_SCOPE_UNKNOWN, "%s listed before a section", key);
            cr_assert_eq(upulsar_conf_scope(key), section, "%s: scope %d, listed under %d", key,
                         upulsar_conf_scope(key), section);
            rows++;
        }
        line = nl ? nl + 1 : NULL;
    }
    cr_assert_eq(rows, NKEYS);
    free(doc);
    cr_assert_eq(upulsar_conf_scope("no.such.key"), UPULSAR_CONF_SCOPE_UNKNOWN);
    cr_assert_eq(upulsar_conf_scope(""), UPULSAR_CONF_SCOPE_UNKNOWN);
    cr_assert_eq(upulsar_conf_scope(NULL), UPULSAR_CONF_SCOPE_UNKNOWN);
    cr_assert_eq(upulsar_conf_scope("stats.interval.ms"), UPULSAR_CONF_SCOPE_CLIENT);
    cr_assert_eq(upulsar_conf_scope("batch.max.messages"), UPULSAR_CONF_SCOPE_PRODUCER);
}

static void set_on(upulsar_conf_t *c, const char *key, const char *value)
{
    char e[256] = "";
    cr_assert_eq(upulsar_conf_set(c, key, value, e, sizeof e), UPULSAR_CONF_OK, "%s=%s: %s", key,
                 value, e);
}

/* A producer's conf: the client's conf, with the producer keys set on the
 * producer's conf over it (and only those). */
Test(conf, producer_conf_replaces_the_clients_producer_keys_only_where_set)
{
    upulsar_conf_t *cc = upulsar_conf_new(), *pc = upulsar_conf_new();
    set_on(cc, "io.threads", "2");
    set_on(cc, "batch.max.messages", "10");
    set_on(cc, "compression", "lz4");
    set_on(cc, "producer.properties", "team=a");
    set_on(pc, "compression", "none");
    set_on(pc, "send.timeout.ms", "30000"); /* the default, set on purpose */
    set_on(cc, "send.timeout.ms", "5000");

    struct upulsar_conf out;
    cr_assert_eq(up_conf_for_producer(&out, cc, NULL), UPULSAR_OK);
    cr_assert_eq(memcmp(&out, cc, sizeof out), 0, "NULL: not the client's conf");

    cr_assert_eq(up_conf_for_producer(&out, cc, pc), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(out.io_threads, 2);
    cr_assert_eq(out.batch_max_messages, 10, "unset on the producer: the client's");
    cr_assert_str_eq(out.producer_properties, "team=a");
    cr_assert_eq(out.compression, 0, "set on the producer: the producer's");
    cr_assert_eq(out.send_timeout_ms, 30000, "set to the default: still the producer's");
    upulsar_conf_destroy(pc);
    upulsar_conf_destroy(cc);
}

/* A client key on a producer's conf: refused, naming it and its scope,
 * when it differs from the client's (one conf serving both is fine), and
 * nothing is written. One key of each kind, and a secret. */
Test(conf, client_key_on_a_producer_conf_is_refused_unless_it_is_the_clients_value)
{
    static const struct {
        const char *key, *client_value, *other;
    } cases[] = {
        {"stats.interval.ms", "0", "500"},       {"io.threads", "2", "3"},
        {"listener.name", "internal", "external"}, {"tls.verify.hostname", "true", "false"},
        {"memory.limit.bytes", "1048576", "0"},  {"io.backend", "epoll", "auto"},
        {"auth.token", "tok-1", "tok-2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        upulsar_conf_t *cc = upulsar_conf_new(), *pc = upulsar_conf_new();
        set_on(cc, cases[i].key, cases[i].client_value);
        set_on(pc, "batch.max.messages", "7");

        set_on(pc, cases[i].key, cases[i].client_value);
        struct upulsar_conf out;
        cr_assert_eq(up_conf_for_producer(&out, cc, pc), UPULSAR_OK, "%s at the client's value: %s",
                     cases[i].key, upulsar_last_error());
        cr_assert_eq(out.batch_max_messages, 7);

        set_on(pc, cases[i].key, cases[i].other);
        memset(&out, 0x5a, sizeof out);
        struct upulsar_conf untouched;
        memset(&untouched, 0x5a, sizeof untouched);
        cr_assert_eq(up_conf_for_producer(&out, cc, pc), UPULSAR_ERR__INVALID_ARG,
                     "%s=%s on a producer conf was accepted", cases[i].key, cases[i].other);
        char want[128];
        snprintf(want, sizeof want, "%s is a client setting; set it on the client's conf",
                 cases[i].key);
        cr_assert_not_null(strstr(upulsar_last_error(), want), "detail: %s",
                           upulsar_last_error());
        cr_assert_null(strstr(upulsar_last_error(), cases[i].other), "value echoed: %s",
                       upulsar_last_error());
        cr_assert_eq(memcmp(&out, &untouched, sizeof out), 0, "%s: out written", cases[i].key);
        upulsar_conf_destroy(pc);
        upulsar_conf_destroy(cc);
    }
}

/* Only upulsar_conf_set() marks a key as set: a failed set does not, and a
 * fresh conf has none, so a producer conf from upulsar_conf_new() changes
 * nothing of the client's conf. */
Test(conf, a_fresh_or_refused_set_leaves_the_clients_keys_in_force)
{
    upulsar_conf_t *cc = upulsar_conf_new(), *pc = upulsar_conf_new();
    set_on(cc, "stats.interval.ms", "250");
    set_on(cc, "batch.max.messages", "10");
    cr_assert_eq(upulsar_conf_set(pc, "batch.max.messages", "0", NULL, 0), UPULSAR_CONF_INVALID);
    cr_assert_eq(upulsar_conf_set(pc, "stats.interval.ms", "-1", NULL, 0), UPULSAR_CONF_INVALID);
    struct upulsar_conf out;
    cr_assert_eq(up_conf_for_producer(&out, cc, pc), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(out.batch_max_messages, 10);
    cr_assert_eq(out.stats_interval_ms, 250);
    upulsar_conf_destroy(pc);
    upulsar_conf_destroy(cc);
}

/* CONFIGURATION.md at the repository root must be exactly what dump_doc
 * prints. To regenerate it after changing the table:
 *   UPULSAR_WRITE_CONFIGURATION_MD=1 build/test_conf --filter 'conf/configuration_md*' */
Test(conf, configuration_md_matches_dump_doc)
{
    char path[4096];
    const char *self = __FILE__; /* .../tests/test_conf.c */
    const char *slash = strrchr(self, '/');
    cr_assert_not_null(slash, "__FILE__ is not a path: %s", self);
    snprintf(path, sizeof path, "%.*s/../CONFIGURATION.md", (int)(slash - self), self);

    size_t len;
    char *doc = dump_to_string(&len);
    if (getenv("UPULSAR_WRITE_CONFIGURATION_MD")) {
        FILE *out = fopen(path, "w");
        cr_assert_not_null(out, "cannot write %s", path);
        cr_assert_eq(fwrite(doc, 1, len, out), len);
        fclose(out);
    }
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "cannot open %s", path);
    char *file = malloc(len + 2);
    size_t got = fread(file, 1, len + 1, fp);
    fclose(fp);
    cr_assert(got == len && memcmp(file, doc, len) == 0,
              "%s is stale: regenerate it with UPULSAR_WRITE_CONFIGURATION_MD=1 "
              "test_conf --filter 'conf/configuration_md*'",
              path);
    free(file);
    free(doc);
}
