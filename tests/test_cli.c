/* test_cli.c -- the upulsar-produce command-line producer, run as a child
 * process against an in-process test broker (or its own --embedded one):
 * options, keys and properties as the broker stored them, message ids on
 * stdout, file input, and the failures that must end in a non-zero exit
 * with a message. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_common.h"
#include "tls_certs.h"
#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

TestSuite(cli, .init = cli_setup, .fini = cli_teardown, .timeout = 120);

static upulsar_tb_snapshot_t *snap(const char *topic)
{
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    return s;
}

static const char *prop(const upulsar_tb_msg_t *m, const char *name)
{
    for (size_t i = 0; i < m->properties_cnt; i++)
        if (!strcmp(m->properties[i].key, name))
            return m->properties[i].value;
    return NULL;
}

static bool payload_is(const upulsar_tb_msg_t *m, const char *s)
{
    return m->payload_len == strlen(s) && !memcmp(m->payload, s, m->payload_len);
}

/* Split r->out into lines (modifies it); returns the count. */
static size_t lines_of(run_t *r, char **lines, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(r->out, "\n", &save); l && n < max;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    return n;
}

/* "partition:ledger:entry:batch_index" */
static void parse_id(const char *line, int *part, long long *ledger, long long *entry, int *bi)
{
    char tail;
    cr_assert_eq(sscanf(line, "%d:%lld:%lld:%d%c", part, ledger, entry, bi, &tail), 4,
                 "not an id line: '%s'", line);
}

Test(cli, stdin_lines_arrive_in_order_with_key_properties_and_printed_ids)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-basic", "-k", "fixed", "-H",
                          "origin=cli", "-H", "idx=n%d", NULL};
    run_t r = run_cli(args, "one\ntwo\nthree\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);

    upulsar_tb_snapshot_t *s = snap("cli-basic");
    cr_assert_eq(upulsar_tb_snapshot_count(s), 3);
    const char *want[] = {"one", "two", "three"};
    char *lines[8];
    cr_assert_eq(lines_of(&r, lines, 8), 3, "stdout: one line per message");
    for (size_t i = 0; i < 3; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, i);
        cr_assert(payload_is(m, want[i]), "message %zu", i);
        cr_assert_str_eq(m->partition_key, "fixed");
        cr_assert_str_eq(prop(m, "origin"), "cli");
        char idx[8];
        snprintf(idx, sizeof idx, "n%zu", i);
        cr_assert_str_eq(prop(m, "idx"), idx, "%%d is the message index");
        int part, bi;
        long long ledger, entry;
        parse_id(lines[i], &part, &ledger, &entry, &bi);
        cr_assert_eq(part, -1, "non-partitioned topic");
        cr_assert_eq((uint64_t)ledger, m->ledger_id, "line %zu: %s", i, lines[i]);
        cr_assert_eq((uint64_t)entry, m->entry_id, "line %zu: %s", i, lines[i]);
        cr_assert_eq(bi, m->batch_index, "line %zu: %s", i, lines[i]);
    }
    upulsar_tb_snapshot_free(s);
    run_free(&r);
}

Test(cli, key_delimiter_splits_each_line_into_key_and_value)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-delim", "-K", "::", NULL};
    run_t r = run_cli(args, "k1::v1\nk2::v::2\nno key here\n::empty key\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    upulsar_tb_snapshot_t *s = snap("cli-delim");
    cr_assert_eq(upulsar_tb_snapshot_count(s), 4);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 0);
    cr_assert(payload_is(m, "v1"));
    cr_assert_str_eq(m->partition_key, "k1");
    m = upulsar_tb_snapshot_msg(s, 1);
    cr_assert(payload_is(m, "v::2"), "only the first delimiter splits");
    cr_assert_str_eq(m->partition_key, "k2");
    m = upulsar_tb_snapshot_msg(s, 2);
    cr_assert(payload_is(m, "no key here"));
    cr_assert_null(m->partition_key, "a line without the delimiter has no key");
    m = upulsar_tb_snapshot_msg(s, 3);
    cr_assert(payload_is(m, "empty key"));
    cr_assert_not_null(m->partition_key);
    cr_assert_str_eq(m->partition_key, "");
    upulsar_tb_snapshot_free(s);
    run_free(&r);
}

Test(cli, files_are_read_in_order_and_dash_reads_stdin)
{
    char f1[] = "/tmp/upulsar-cli-XXXXXX", f2[] = "/tmp/upulsar-cli-XXXXXX";
    int fd1 = mkstemp(f1), fd2 = mkstemp(f2);
    cr_assert(fd1 >= 0 && fd2 >= 0);
    cr_assert_eq(write(fd1, "a1\na2\n", 6), 6);
    cr_assert_eq(write(fd2, "c1", 2), 2); /* no final newline */
    close(fd1);
    close(fd2);
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-files", "-q",
                          "-f", f1, "-f", "-", "-f", f2, NULL};
    run_t r = run_cli(args, "b1\n");
    unlink(f1);
    unlink(f2);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    upulsar_tb_snapshot_t *s = snap("cli-files");
    const char *want[] = {"a1", "a2", "b1", "c1"};
    cr_assert_eq(upulsar_tb_snapshot_count(s), 4);
    for (size_t i = 0; i < 4; i++)
        cr_assert(payload_is(upulsar_tb_snapshot_msg(s, i), want[i]), "message %zu", i);
    upulsar_tb_snapshot_free(s);
    run_free(&r);
}

Test(cli, partitioned_ids_name_the_partition_entry_and_position_that_stored_each_message)
{
    /* the broker's count: -p is checked against it */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "cli-parts", 3), UPULSAR_OK);
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-parts", "-p", "3", "-K", "=", NULL};
    char input[2048] = "";
    for (int i = 0; i < 40; i++) {
        char l[32];
        snprintf(l, sizeof l, "key-%d=value-%d\n", i % 7, i);
        strcat(input, l);
    }
    run_t r = run_cli(args, input);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "3 partitions"), "summary: %s", r.err);
    char *lines[64];
    cr_assert_eq(lines_of(&r, lines, 64), 40);
    upulsar_tb_snapshot_t *s[3];
    for (int p = 0; p < 3; p++) {
        char t[64];
        snprintf(t, sizeof t, "cli-parts-partition-%d", p);
        s[p] = snap(t);
    }
    for (int i = 0; i < 40; i++) {
        int part, bi;
        long long ledger, entry;
        parse_id(lines[i], &part, &ledger, &entry, &bi);
        cr_assert(part >= 0 && part < 3, "line %d: %s", i, lines[i]);
        char want[32];
        snprintf(want, sizeof want, "value-%d", i);
        const upulsar_tb_msg_t *found = NULL;
        for (size_t k = 0; k < upulsar_tb_snapshot_count(s[part]); k++)
            if (payload_is(upulsar_tb_snapshot_msg(s[part], k), want))
                found = upulsar_tb_snapshot_msg(s[part], k);
        cr_assert_not_null(found, "%s is not on partition %d", want, part);
        cr_assert_eq((uint64_t)ledger, found->ledger_id);
        cr_assert_eq((uint64_t)entry, found->entry_id);
        cr_assert_eq(bi, found->batch_index);
    }
    for (int p = 0; p < 3; p++)
        upulsar_tb_snapshot_free(s[p]);
    run_free(&r);
}

Test(cli, partitions_zero_asks_the_broker)
{
    cr_assert_eq(upulsar_tb_set_partitions(tb, "cli-meta", 2), UPULSAR_OK);
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-meta", "-k", "k%d", NULL};
    run_t r = run_cli(args, "x\ny\nz\nw\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "2 partitions"), "summary: %s", r.err);
    upulsar_tb_topic_stats_t a, b;
    cr_assert_eq(upulsar_tb_topic_stats(tb, "cli-meta-partition-0", &a), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_topic_stats(tb, "cli-meta-partition-1", &b), UPULSAR_OK);
    cr_assert_eq(a.messages + b.messages, 4);
    run_free(&r);
}

/* -p N on a topic the broker gives another count: the broker's count is
 * used (warned about on stderr, naming both), so every message goes to a
 * partition that exists, routed by the broker's count; nothing reaches the
 * partitions beyond it. */
static void check_count_mismatch(const char *topic, const char *given, int real)
{
    cr_assert_eq(upulsar_tb_set_partitions(tb, topic, real), UPULSAR_OK);
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", topic, "-p", given, "-K", "=", NULL};
    char input[4096] = "";
    for (int i = 0; i < 64; i++) {
        char l[48];
        snprintf(l, sizeof l, "key-%d=value-%d\n", i, i);
        strcat(input, l);
    }
    run_t r = run_cli(args, input);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    char want[64];
    snprintf(want, sizeof want, "%s partitions given, but the broker reports %d", given, real);
    cr_assert(strstr(r.err, want), "stderr does not warn '%s': %s", want, r.err);
    snprintf(want, sizeof want, "%d partitions", real);
    cr_assert(strstr(r.err, want), "summary: %s", r.err);
    char *lines[80];
    cr_assert_eq(lines_of(&r, lines, 80), 64);
    uint64_t stored = 0;
    for (int p = 0; p < real; p++) {
        char t[96];
        snprintf(t, sizeof t, "%s-partition-%d", topic, p);
        upulsar_tb_snapshot_t *s = snap(t);
        for (size_t k = 0; k < upulsar_tb_snapshot_count(s); k++) {
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, k);
            /* on the partition the broker's count routes its key to */
            char key[32];
            cr_assert_not_null(m->partition_key);
            snprintf(key, sizeof key, "%s", m->partition_key);
            uint32_t hsh = 0;
            for (const char *c = key; *c; c++)
                hsh = 31 * hsh + (uint32_t)(unsigned char)*c;
            int want_part = (int)((hsh & 0x7fffffffu) % (uint32_t)real);
            cr_assert_eq(want_part, p, "%s stored on partition %d, not %d", key, p, want_part);
        }
        stored += upulsar_tb_snapshot_count(s);
        upulsar_tb_snapshot_free(s);
    }
    cr_assert_eq(stored, 64, "%llu of 64 messages stored", (unsigned long long)stored);
    int given_n = atoi(given);
    for (int p = real; p < given_n; p++) {
        char t[96];
        snprintf(t, sizeof t, "%s-partition-%d", topic, p);
        upulsar_tb_topic_stats_t st;
        cr_assert(upulsar_tb_topic_stats(tb, t, &st) != UPULSAR_OK || st.messages == 0,
                  "%s, beyond the broker's count, got messages", t);
    }
    for (int i = 0; i < 64; i++) {
        int part, bi;
        long long ledger, entry;
        parse_id(lines[i], &part, &ledger, &entry, &bi);
        cr_assert(part >= 0 && part < real, "line %d: %s", i, lines[i]);
    }
    run_free(&r);
}

Test(cli, more_partitions_than_the_broker_has_uses_the_brokers_count)
{
    check_count_mismatch("cli-more", "32", 16);
}

Test(cli, fewer_partitions_than_the_broker_has_uses_the_brokers_count)
{
    check_count_mismatch("cli-fewer", "4", 16);
}

Test(cli, quiet_prints_no_ids_only_the_summary)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-quiet", "-q", NULL};
    run_t r = run_cli(args, "1\n2\n3\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert_eq(r.out_len, 0, "stdout: '%s'", r.out);
    cr_assert(strstr(r.err, "3 messages acknowledged, 0 failed"), "stderr: %s", r.err);
    run_free(&r);
}

Test(cli, json_prints_one_object_per_message_and_a_summary)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-json", "--json",
                          "-k", "q\"k", "-H", "a=b", NULL};
    run_t r = run_cli(args, "plain\nwith \"quotes\" and \\\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert_eq(count_of(r.out, "\"event\":\"created\""), 1, "%s", r.out);
    cr_assert_eq(count_of(r.out, "\"event\":\"sent\""), 2, "%s", r.out);
    cr_assert(strstr(r.out, "\"payload\":\"with \\\"quotes\\\" and \\\\\""), "%s", r.out);
    cr_assert(strstr(r.out, "\"key\":\"q\\\"k\""), "%s", r.out);
    cr_assert(strstr(r.out, "\"properties\":{\"a\":\"b\"}"), "%s", r.out);
    cr_assert(strstr(r.out, "{\"event\":\"done\",\"sent\":2,\"failed\":0}\n"), "%s", r.out);
    run_free(&r);
}

Test(cli, count_generates_numbered_messages)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-count", "--count", "5",
                          "--prefix", "gen-", "-q", NULL};
    run_t r = run_cli(args, NULL);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    upulsar_tb_snapshot_t *s = snap("cli-count");
    cr_assert_eq(upulsar_tb_snapshot_count(s), 5);
    cr_assert(payload_is(upulsar_tb_snapshot_msg(s, 0), "gen-0"));
    cr_assert(payload_is(upulsar_tb_snapshot_msg(s, 4), "gen-4"));
    upulsar_tb_snapshot_free(s);
    run_free(&r);
}

Test(cli, conf_keys_given_with_X_reach_the_producer)
{
    /* batch.max.messages=1: every message is its own entry */
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-conf", "-q",
                          "-X", "batch.max.messages=1", NULL};
    run_t r = run_cli(args, "a\nb\nc\nd\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, "cli-conf", &st), UPULSAR_OK);
    cr_assert_eq(st.messages, 4);
    cr_assert_eq(st.entries, 4);
    run_free(&r);
}

Test(cli, embedded_broker_prints_its_url_and_a_message_id)
{
    const char *args[] = {"--embedded", "-t", "hello", NULL};
    run_t r = run_cli(args, "hi\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "embedded test broker at pulsar://127.0.0.1:"), "%s", r.err);
    char *lines[4];
    cr_assert_eq(lines_of(&r, lines, 4), 1);
    int part, bi;
    long long ledger, entry;
    parse_id(lines[0], &part, &ledger, &entry, &bi);
    cr_assert_eq(part, -1);
    cr_assert(ledger >= 0 && entry == 0, "%s", lines[0]);
    run_free(&r);
}

Test(cli, unknown_option_is_a_usage_error)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "x", "--bogus", NULL};
    run_t r = run_cli(args, "m\n");
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "unknown option --bogus"), "%s", r.err);
    run_free(&r);
    const char *args2[] = {"-b", upulsar_tb_url(tb), "-t", "x", "-Z", NULL};
    r = run_cli(args2, "m\n");
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "unknown option -Z"), "%s", r.err);
    run_free(&r);
    assert_no_connection(tb);
}

Test(cli, option_without_its_value_is_a_usage_error)
{
    const char *args[] = {"-t", "x", "-b", NULL};
    run_t r = run_cli(args, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "-b needs a value"), "%s", r.err);
    run_free(&r);
}

/* Pulsar's message properties are protobuf strings (UTF-8): a -H name or
 * value that is not UTF-8 is refused before connecting, not sent and then
 * printed as null by --json. */
Test(cli, property_that_is_not_utf8_is_a_usage_error)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "x", "-H", "k=\xff\xfe", NULL};
    run_t r = run_cli(args, "m\n");
    cr_assert_eq(r.status, 2, "status %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "UTF-8"), "%s", r.err);
    run_free(&r);
    const char *args2[] = {"-b", upulsar_tb_url(tb), "-t", "x", "-H", "\xc3=v", NULL};
    r = run_cli(args2, "m\n");
    cr_assert_eq(r.status, 2, "status %d: %s", r.status, r.err);
    run_free(&r);
    assert_no_connection(tb);
}

Test(cli, missing_topic_is_a_usage_error)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), NULL};
    run_t r = run_cli(args, "m\n");
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "-t TOPIC is required"), "%s", r.err);
    run_free(&r);
    assert_no_connection(tb);
}

Test(cli, unknown_conf_key_fails_before_connecting)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "x", "-X", "no.such.key=1", NULL};
    run_t r = run_cli(args, "m\n");
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "no.such.key: unknown configuration key"), "%s", r.err);
    run_free(&r);
    assert_no_connection(tb);
}

Test(cli, invalid_conf_value_fails_before_connecting)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "x", "-X", "batch.max.messages=0",
                          NULL};
    run_t r = run_cli(args, "m\n");
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "batch.max.messages: invalid value"), "%s", r.err);
    run_free(&r);
    const char *args2[] = {"-b", upulsar_tb_url(tb), "-t", "x", "-X", "nokeyvalue", NULL};
    r = run_cli(args2, "m\n");
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "want KEY=VALUE"), "%s", r.err);
    run_free(&r);
    assert_no_connection(tb);
}

Test(cli, unreadable_file_fails_before_connecting)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "x", "-f",
                          "/nonexistent/upulsar-cli-input", NULL};
    run_t r = run_cli(args, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "/nonexistent/upulsar-cli-input: No such file"), "%s", r.err);
    run_free(&r);
    assert_no_connection(tb);
}

Test(cli, unreachable_broker_fails_with_a_connect_error)
{
    /* a bound socket that does not listen: connecting to it is refused, and
     * no other process can take the port while it is held */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    char url[64];
    snprintf(url, sizeof url, "pulsar://127.0.0.1:%d", ntohs(a.sin_port));
    const char *args[] = {"-b", url, "-t", "x", "-X", "operation.timeout.ms=5000", NULL};
    run_t r = run_cli(args, "m\n");
    close(fd);
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "cannot produce to 'x'"), "%s", r.err);
    cr_assert(strstr(r.err, url), "the message names the URL: %s", r.err);
    cr_assert_eq(r.out_len, 0, "no message id: %s", r.out);
    run_free(&r);
}

Test(cli, message_without_receipt_fails_and_exits_nonzero)
{
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "cli-held"), UPULSAR_OK);
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-held", "-X", "send.timeout.ms=300",
                          NULL};
    run_t r = run_cli(args, "never acknowledged\n");
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "message 0 failed: UPULSAR_ERR__MSG_TIMED_OUT"), "%s", r.err);
    /* with the library's detail: the partition topic and the setting */
    cr_assert(strstr(r.err, "persistent://public/default/cli-held"), "%s", r.err);
    cr_assert(strstr(r.err, "send.timeout.ms"), "%s", r.err);
    cr_assert(strstr(r.err, "0 messages acknowledged, 1 failed"), "%s", r.err);
    cr_assert_eq(r.out_len, 0, "no id for a failed message: %s", r.out);
    run_free(&r);
    upulsar_tb_release_receipts(tb, NULL);
}

Test(cli, timeout_ms_bounds_the_wait_for_receipts)
{
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "cli-giveup"), UPULSAR_OK);
    /* send.timeout.ms 0 = never: only --timeout-ms ends the wait */
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-giveup", "-X", "send.timeout.ms=0",
                          "--timeout-ms", "300", NULL};
    run_t r = run_cli(args, "a\nb\n");
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "no receipt within 300 ms"), "%s", r.err);
    cr_assert(strstr(r.err, "0 messages acknowledged, 2 failed"), "%s", r.err);
    run_free(&r);
    upulsar_tb_release_receipts(tb, NULL);
}

Test(cli, oversized_message_fails_the_rest_are_sent)
{
    upulsar_tb_stop(tb);
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.max_message_size = 1024;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK);
    char input[4096];
    char big[2049];
    memset(big, 'x', 2048);
    big[2048] = '\0';
    snprintf(input, sizeof input, "small-1\n%s\nsmall-2\n", big);
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-big", NULL};
    run_t r = run_cli(args, input);
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "message 1"), "%s", r.err);
    cr_assert(strstr(r.err, "MSG_TOO_LARGE"), "%s", r.err);
    upulsar_tb_snapshot_t *s = snap("cli-big");
    cr_assert_eq(upulsar_tb_snapshot_count(s), 2);
    cr_assert(payload_is(upulsar_tb_snapshot_msg(s, 0), "small-1"));
    cr_assert(payload_is(upulsar_tb_snapshot_msg(s, 1), "small-2"));
    upulsar_tb_snapshot_free(s);
    run_free(&r);
}

/* A listener that reads the first frame of one connection (the CONNECT). */
typedef struct sniff {
    int lfd;
    char frame[4096];
    size_t len;
} sniff_t;

static void *sniff_main(void *arg)
{
    sniff_t *s = arg;
    int c = accept(s->lfd, NULL, NULL);
    if (c < 0)
        return NULL;
    while (s->len < sizeof s->frame) {
        ssize_t n = read(c, s->frame + s->len, sizeof s->frame - s->len);
        if (n <= 0)
            break;
        s->len += (size_t)n;
        if (s->len >= 4) {
            uint32_t total = ((uint32_t)(uint8_t)s->frame[0] << 24) |
                             ((uint32_t)(uint8_t)s->frame[1] << 16) |
                             ((uint32_t)(uint8_t)s->frame[2] << 8) | (uint8_t)s->frame[3];
            if (s->len >= 4 + (size_t)total)
                break;
        }
    }
    close(c); /* no CONNECTED: the client fails to connect */
    return NULL;
}

Test(cli, token_file_token_goes_into_connect_and_never_into_messages)
{
    const char *token = "eyJhbGciOiJIUzI1NiJ9.test-token.sig";
    char tf[] = "/tmp/upulsar-cli-token-XXXXXX";
    int fd = mkstemp(tf);
    cr_assert(fd >= 0);
    dprintf(fd, "%s\n", token);
    close(fd);

    sniff_t s = {0};
    s.lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s.lfd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(s.lfd, 4), 0);
    socklen_t al = sizeof a;
    cr_assert_eq(getsockname(s.lfd, (struct sockaddr *)&a, &al), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, sniff_main, &s), 0);
    char url[64];
    snprintf(url, sizeof url, "pulsar://127.0.0.1:%d", ntohs(a.sin_port));
    const char *args[] = {"-b", url, "-t", "x", "--token-file", tf,
                          "-X", "operation.timeout.ms=3000", "-X", "connection.timeout.ms=3000",
                          "-X", "backoff.initial.ms=5000", NULL};
    run_t r = run_cli(args, "m\n");
    pthread_join(th, NULL);
    close(s.lfd);
    unlink(tf);
    cr_assert_neq(r.status, 0, "the fake broker never answers CONNECT");
    cr_assert(memmem(s.frame, s.len, token, strlen(token)), "token not in the CONNECT frame");
    cr_assert(memmem(s.frame, s.len, "token", 5), "auth method name");
    cr_assert_null(strstr(r.err, token), "the token leaked into stderr: %s", r.err);
    cr_assert_null(strstr(r.out, token), "the token leaked into stdout");
    run_free(&r);
}

/* ---- TLS options: what each one sets, observed at a TLS broker ---- */

/* A TLS broker with the server certificate of @p c; with @p client_ca it
 * asks clients for a certificate signed by it (and requires one if
 * @p require_cert); with @p token set, authentication is on. */
static upulsar_tb_t *tls_broker(const tls_certs_t *c, const char *client_ca, int require_cert,
                                const char *token)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.tls_cert_file = c->srv_cert;
    o.tls_key_file = c->srv_key;
    o.tls_ca_file = client_ca;
    o.tls_require_client_cert = require_cert;
    const char *tokens[] = {token};
    o.auth_tokens = token ? tokens : NULL;
    o.auth_tokens_cnt = token ? 1 : 0;
    upulsar_tb_t *t = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &t), UPULSAR_OK, "%s", upulsar_last_error());
    return t;
}

static upulsar_tb_stats_t tb_stats(upulsar_tb_t *t)
{
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(t, &st), UPULSAR_OK);
    return st;
}

/* The payloads stored on @p topic of @p t, joined with ','. */
static void stored_payloads(upulsar_tb_t *t, const char *topic, char *out, size_t size)
{
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(t, topic, &s), UPULSAR_OK);
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; i < upulsar_tb_snapshot_count(s); i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, i);
        int n = snprintf(out + off, size - off, "%s%.*s", i ? "," : "", (int)m->payload_len,
                         (const char *)m->payload);
        cr_assert(n >= 0 && (size_t)n < size - off);
        off += (size_t)n;
    }
    upulsar_tb_snapshot_free(s);
}

/* Failing runs give up quickly: one short connect and operation timeout. */
#define QUICK_FAIL "-X", "operation.timeout.ms=3000", "-X", "connection.timeout.ms=3000"

/* Scenario:
 *  1. A TLS broker whose certificate is signed by CA 1.
 *  2. --tls-ca <CA 1>: exit 0, the broker completed a TLS handshake and
 *     stored both lines.
 *  3. --tls-ca <CA 2> (does not sign the broker's certificate): exit 1,
 *     stderr names the TLS failure (certificate verification), the broker
 *     saw the handshake fail, nothing more stored.
 *  4. --tls-ca <CA 2> --tls-insecure: exit 0 and stored (no chain check). */
Test(cli, tls_ca_decides_which_broker_is_trusted_and_insecure_trusts_any)
{
    tls_certs_t c;
    cr_assert_eq(tls_certs_make(&c), 0, "openssl CLI failed");
    upulsar_tb_t *t = tls_broker(&c, NULL, 0, NULL);
    const char *url = upulsar_tb_url(t);
    char stored[256];

    const char *good[] = {"-b", url, "-t", "cli-tls", "-q", "--tls-ca", c.ca, NULL};
    run_t r = run_cli(good, "a\nb\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    run_free(&r);
    upulsar_tb_stats_t st = tb_stats(t);
    cr_assert_geq(st.tls_handshakes, 1);
    stored_payloads(t, "cli-tls", stored, sizeof stored);
    cr_assert_str_eq(stored, "a,b");

    const char *wrong[] = {"-b", url, "-t", "cli-tls", "-q", "--tls-ca", c.ca2, QUICK_FAIL, NULL};
    r = run_cli(wrong, "c\n");
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "UPULSAR_ERR__TLS"), "no TLS error on stderr: %s", r.err);
    cr_assert(strstr(r.err, "certificate verify failed"),
              "stderr does not say the certificate was refused: %s", r.err);
    run_free(&r);
    upulsar_tb_stats_t st2 = tb_stats(t);
    cr_assert_gt(st2.tls_failures, st.tls_failures, "the broker saw no failed handshake");
    cr_assert_eq(st2.tls_handshakes, st.tls_handshakes, "a handshake completed with CA 2");
    stored_payloads(t, "cli-tls", stored, sizeof stored);
    cr_assert_str_eq(stored, "a,b");

    const char *insecure[] = {"-b", url, "-t", "cli-tls", "-q", "--tls-ca", c.ca2,
                              "--tls-insecure", NULL};
    r = run_cli(insecure, "d\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    run_free(&r);
    stored_payloads(t, "cli-tls", stored, sizeof stored);
    cr_assert_str_eq(stored, "a,b,d");

    upulsar_tb_stop(t);
    tls_certs_remove(&c);
}

/* Scenario:
 *  1. A TLS broker that requires a client certificate signed by CA 1, with
 *     authentication on (a token it would also accept exists, the CLI has
 *     none).
 *  2. --tls-cert/--tls-key of the client certificate (CN upulsar-client):
 *     exit 0, stored; the broker accepted it through TLS authentication
 *     with the certificate's CN as the role.
 *  3. Without them: exit 1 with a TLS error, the broker refused the
 *     handshake, nothing more stored. */
Test(cli, tls_client_certificate_authenticates_with_its_common_name)
{
    tls_certs_t c;
    cr_assert_eq(tls_certs_make(&c), 0, "openssl CLI failed");
    upulsar_tb_t *t = tls_broker(&c, c.ca, 1, "eyJhbGciOiJIUzI1NiJ9.cli-unused.sig");
    const char *url = upulsar_tb_url(t);
    char stored[256], role[256];
    cr_assert_eq(upulsar_tb_last_tls_role(t, role, sizeof role), UPULSAR_OK);
    cr_assert_str_eq(role, "");

    const char *mtls[] = {"-b", url, "-t", "cli-mtls", "-q", "--tls-ca", c.ca,
                          "--tls-cert", c.cli_cert, "--tls-key", c.cli_key, NULL};
    run_t r = run_cli(mtls, "a\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    run_free(&r);
    upulsar_tb_stats_t st = tb_stats(t);
    cr_assert_geq(st.auth_tls_ok, 1, "not authenticated by its certificate");
    cr_assert_eq(st.auth_failed, 0);
    cr_assert_eq(upulsar_tb_last_tls_role(t, role, sizeof role), UPULSAR_OK);
    cr_assert_str_eq(role, "upulsar-client");
    stored_payloads(t, "cli-mtls", stored, sizeof stored);
    cr_assert_str_eq(stored, "a");

    const char *nocert[] = {"-b", url, "-t", "cli-mtls", "-q", "--tls-ca", c.ca, QUICK_FAIL,
                            NULL};
    r = run_cli(nocert, "b\n");
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "UPULSAR_ERR__TLS"), "no TLS error on stderr: %s", r.err);
    run_free(&r);
    upulsar_tb_stats_t st2 = tb_stats(t);
    cr_assert_gt(st2.tls_failures, st.tls_failures, "the broker refused no handshake");
    cr_assert_eq(st2.auth_tls_ok, st.auth_tls_ok);
    stored_payloads(t, "cli-mtls", stored, sizeof stored);
    cr_assert_str_eq(stored, "a");

    upulsar_tb_stop(t);
    tls_certs_remove(&c);
}

Test(cli, missing_token_file_is_a_usage_error)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "x", "--token-file",
                          "/nonexistent/token", NULL};
    run_t r = run_cli(args, "m\n");
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "--token-file /nonexistent/token"), "%s", r.err);
    run_free(&r);
    assert_no_connection(tb);
}

Test(cli, conflicting_options_are_usage_errors)
{
    const char *a1[] = {"-t", "x", "-k", "k", "-K", ":", NULL};
    run_t r = run_cli(a1, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "-k and -K exclude each other"), "%s", r.err);
    run_free(&r);
    const char *a2[] = {"-t", "x", "--embedded", "-b", upulsar_tb_url(tb), NULL};
    r = run_cli(a2, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "--embedded and -b exclude each other"), "%s", r.err);
    run_free(&r);
    assert_no_connection(tb);
}

static void read_all(int fd, char **buf, size_t *len)
{
    while (cli_drain(fd, buf, len))
        ;
    close(fd);
}

Test(cli, interrupt_stops_reading_and_still_resolves_what_was_sent)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-int", NULL};
    child_t c = spawn_cli(args);

    /* two lines, and stdin stays open: only the signal ends the input */
    cr_assert_eq(write(c.in, "a\nb\n", 4), 4);
    cr_assert_eq(upulsar_tb_wait_messages(tb, "cli-int", 2, 30000), UPULSAR_OK);
    cr_assert_eq(kill(c.pid, SIGINT), 0);

    run_t r = {0};
    cli_append(&r.out, &r.out_len, "", 0);
    cli_append(&r.err, &r.err_len, "", 0);
    read_all(c.out, &r.out, &r.out_len);
    read_all(c.err, &r.err, &r.err_len);
    int st;
    cr_assert_eq(waitpid(c.pid, &st, 0), c.pid);
    close(c.in);
    cr_assert(WIFEXITED(st), "killed by the signal instead of handling it");
    cr_assert_eq(WEXITSTATUS(st), 128 + SIGINT, "%s", r.err);
    char *lines[4];
    cr_assert_eq(lines_of(&r, lines, 4), 2, "both messages resolved and printed");
    cr_assert(strstr(r.err, "2 messages acknowledged, 0 failed"), "%s", r.err);
    run_free(&r);
}

Test(cli, help_lists_the_options_and_exits_zero)
{
    const char *args[] = {"--help", NULL};
    run_t r = run_cli(args, NULL);
    cr_assert_eq(r.status, 0);
    const char *opts[] = {"-t, --topic", "-b, --url", "--embedded", "-p, --partitions",
                          "-k, --key", "-K, --key-delimiter", "-H, --prop", "-f, --file",
                          "-X, --conf", "--token", "--token-file", "--tls-ca", "--tls-cert",
                          "--tls-key", "--tls-insecure", "-q, --quiet", "--json"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        cr_assert(strstr(r.out, opts[i]), "help lacks %s", opts[i]);
    run_free(&r);
}

/* --json names both ends of a message sent in chunks (firstChunkId beside
 * msgId, the last chunk's position), as upulsar_msg_id_t does. */
Test(cli, json_names_the_first_chunk_of_a_chunked_message)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.max_message_size = 65536;
    upulsar_tb_t *small = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &small), UPULSAR_OK);
    const char *args[] = {"-b", upulsar_tb_url(small), "-t", "cli-chunk", "--json",
                          "-X", "chunking.enabled=true", "-X", "batching.enabled=false", NULL};
    size_t len = 150000;
    char *line = malloc(len + 2);
    cr_assert_not_null(line);
    for (size_t i = 0; i < len; i++)
        line[i] = (char)('a' + i % 26);
    line[len] = '\n';
    line[len + 1] = '\0';
    run_t r = run_cli(args, line);
    free(line);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(small, "cli-chunk", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 0);
    cr_assert_gt(m->num_chunks, 1);
    char want[128];
    snprintf(want, sizeof want, "\"firstChunkId\":{\"ledgerId\":%llu,\"entryId\":%llu}",
             (unsigned long long)m->first_chunk_ledger_id,
             (unsigned long long)m->first_chunk_entry_id);
    cr_assert(strstr(r.out, want), "%s not in the output", want);
    upulsar_tb_snapshot_free(s);
    run_free(&r);
    upulsar_tb_stop(small);
}
