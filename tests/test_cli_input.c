/* test_cli_input.c -- upulsar-produce as a daily tool, run as a child
 * process against an in-process test broker: ids written as receipts
 * arrive (--line-buffered), delimiters (-D, escapes, NUL), CRLF lines,
 * whole files as messages (-F), base64 input, --rate, --progress, --stats,
 * keys that are not UTF-8 in --json, and the documented exit codes. What
 * the broker stored (every message, in order, with its exact bytes) is
 * the oracle. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_common.h"
#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

TestSuite(cli_input, .init = cli_setup, .fini = cli_teardown, .timeout = 180);

/* One expected message: its exact bytes. */
typedef struct want {
    const char *bytes;
    size_t len;
} want_t;

#define W(s) {(s), sizeof(s) - 1}

/* The broker stored exactly @p n messages on @p topic, these bytes in this
 * order. */
static void assert_stored(const char *topic, const want_t *w, size_t n)
{
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), n, "%s: %zu messages stored, want %zu", topic,
                 upulsar_tb_snapshot_count(s), n);
    for (size_t i = 0; i < n; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, i);
        cr_assert_eq(m->payload_len, w[i].len, "%s message %zu: %zu bytes, want %zu", topic, i,
                     m->payload_len, w[i].len);
        cr_assert(!memcmp(m->payload, w[i].bytes, w[i].len), "%s message %zu: other bytes",
                  topic, i);
    }
    upulsar_tb_snapshot_free(s);
}

static char *temp_file(const void *bytes, size_t len)
{
    char *path = strdup("/tmp/upulsar-cli-input-XXXXXX");
    cr_assert_not_null(path);
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, bytes, len), (ssize_t)len);
    close(fd);
    return path;
}

/* ---- ids as receipts arrive ---------------------------------------------- */

/* Read the child's stdout until it holds @p lines complete lines (bounded). */
static void read_lines(child_t *c, run_t *r, size_t lines)
{
    while (count_of(r->out, "\n") < lines) {
        struct pollfd pf = {.fd = c->out, .events = POLLIN};
        int n = poll(&pf, 1, CLI_HANG_GUARD_MS);
        if (n < 0 && errno == EINTR)
            continue;
        cr_assert_eq(n, 1, "no id on stdout within %d ms while stdin stays open",
                     CLI_HANG_GUARD_MS);
        char buf[4096];
        ssize_t got = read(c->out, buf, sizeof buf);
        cr_assert_gt(got, 0, "stdout closed before an id: the CLI ended");
        cli_append(&r->out, &r->out_len, buf, (size_t)got);
    }
}

/* Scenario: one line is written to the CLI's stdin and stdin stays open.
 * With --line-buffered, its id must come out on stdout (a pipe) while the
 * CLI still waits for more input; it is the id the broker stored the
 * message at. The same for a second line; only then is stdin closed. */
Test(cli_input, line_buffered_writes_each_id_while_stdin_is_still_open)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-lb", "--line-buffered", NULL};
    child_t c = spawn_cli(args);
    run_t r = {0};
    cli_append(&r.out, &r.out_len, "", 0);
    cr_assert_eq(write(c.in, "first\n", 6), 6);
    read_lines(&c, &r, 1);
    cr_assert_eq(upulsar_tb_wait_messages(tb, "cli-lb", 1, CLI_HANG_GUARD_MS), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "cli-lb", &s), UPULSAR_OK);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 0);
    char want[96];
    snprintf(want, sizeof want, "-1:%llu:%llu:%d\n", (unsigned long long)m->ledger_id,
             (unsigned long long)m->entry_id, m->batch_index);
    cr_assert_str_eq(r.out, want, "the first id");
    upulsar_tb_snapshot_free(s);

    cr_assert_eq(write(c.in, "second\n", 7), 7);
    read_lines(&c, &r, 2);
    r = finish_cli(&c, NULL, 0, r);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert_eq(count_of(r.out, "\n"), 2, "%s", r.out);
    want_t w[] = {W("first"), W("second")};
    assert_stored("cli-lb", w, 2);
    run_free(&r);
}

/* ---- delimiters ----------------------------------------------------------- */

Test(cli_input, nul_delimiter_splits_records_and_keeps_every_other_byte)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-nul", "-q", "-D", "\\0", NULL};
    static const char in[] = "a\0b\nc\0\0d\r\n";
    run_t r = run_bytes(args, in, sizeof in - 1);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    /* no '\r' is dropped outside line mode; the last record has no delimiter */
    want_t w[] = {W("a"), W("b\nc"), W(""), W("d\r\n")};
    assert_stored("cli-nul", w, 4);
    run_free(&r);
}

Test(cli_input, delimiter_escapes_and_multibyte_delimiters)
{
    const char *a1[] = {"-b", upulsar_tb_url(tb), "-t", "cli-tab", "-q", "-D", "\\t", NULL};
    run_t r = run_cli(a1, "x y\tz\\t\t\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    want_t w1[] = {W("x y"), W("z\\t"), W("\n")};
    assert_stored("cli-tab", w1, 3);
    run_free(&r);

    const char *a2[] = {"-b", upulsar_tb_url(tb), "-t", "cli-two", "-q", "-D", "|\\x7c", NULL};
    r = run_cli(a2, "x||y|z|||w||");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    want_t w2[] = {W("x"), W("y|z"), W("|w")};
    assert_stored("cli-two", w2, 3);
    run_free(&r);

    /* -K takes the same escapes */
    const char *a3[] = {"-b", upulsar_tb_url(tb), "-t", "cli-ktab", "-q", "-K", "\\t", NULL};
    r = run_cli(a3, "k1\tv1\nno tab\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    want_t w3[] = {W("v1"), W("no tab")};
    assert_stored("cli-ktab", w3, 2);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "cli-ktab", &s), UPULSAR_OK);
    cr_assert_str_eq(upulsar_tb_snapshot_msg(s, 0)->partition_key, "k1");
    cr_assert_null(upulsar_tb_snapshot_msg(s, 1)->partition_key);
    upulsar_tb_snapshot_free(s);
    run_free(&r);
}

Test(cli_input, bad_delimiters_are_usage_errors)
{
    const char *bad[][2] = {{"-D", ""},      {"-D", "\\q"}, {"-D", "\\x4"},
                            {"-D", "ab\\"},  {"-K", ""},    {"-K", "\\xzz"}};
    const char *why[] = {"must not be empty", "unknown escape", "two hex digits",
                         "lone '\\'", "must not be empty", "two hex digits"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "x", bad[i][0], bad[i][1], NULL};
        run_t r = run_cli(args, "m\n");
        cr_assert_eq(r.status, 2, "%s '%s': exit %d", bad[i][0], bad[i][1], r.status);
        cr_assert(strstr(r.err, why[i]), "%s '%s': %s", bad[i][0], bad[i][1], r.err);
        run_free(&r);
    }
    const char *count[] = {"-b", upulsar_tb_url(tb), "-t", "x", "--count", "2", "-D", ";", NULL};
    run_t r = run_cli(count, NULL);
    cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
    run_free(&r);
    assert_no_connection(tb);
}

/* ---- CRLF ----------------------------------------------------------------- */

Test(cli_input, crlf_lines_lose_their_cr_unless_keep_cr)
{
    const char *in = "a\r\nb\r\n\r\nx\ry\r\nk=v\r\nlast\r";
    const char *a1[] = {"-b", upulsar_tb_url(tb), "-t", "cli-crlf", "-q", NULL};
    run_t r = run_cli(a1, in);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    /* only a '\r' ending a line goes */
    want_t w1[] = {W("a"), W("b"), W(""), W("x\ry"), W("k=v"), W("last")};
    assert_stored("cli-crlf", w1, 6);
    run_free(&r);

    const char *a2[] = {"-b", upulsar_tb_url(tb), "-t", "cli-keepcr", "-q", "--keep-cr", NULL};
    r = run_cli(a2, in);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    want_t w2[] = {W("a\r"), W("b\r"), W("\r"), W("x\ry\r"), W("k=v\r"), W("last\r")};
    assert_stored("cli-keepcr", w2, 6);
    run_free(&r);

    /* the value after -K loses it too */
    const char *a3[] = {"-b", upulsar_tb_url(tb), "-t", "cli-crkey", "-q", "-K", "=", NULL};
    r = run_cli(a3, "k=v\r\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    want_t w3[] = {W("v")};
    assert_stored("cli-crkey", w3, 1);
    run_free(&r);
}

/* ---- whole files ---------------------------------------------------------- */

Test(cli_input, message_file_sends_each_file_whole_in_order_with_line_files)
{
    char bin[256];
    for (int i = 0; i < 256; i++)
        bin[i] = (char)i; /* '\0', '\n', '\r', '=' and every other byte */
    char *f1 = temp_file(bin, sizeof bin);
    char *f2 = temp_file("k=l1\nl2\n", 8);
    char *f3 = temp_file("", 0);
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-whole", "-q", "-K", "=",
                          "-F", f1, "-f", f2, "-F", f3, "-F", f1, NULL};
    run_t r = run_cli(args, NULL);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    want_t w[] = {{bin, sizeof bin}, W("l1"), W("l2"), W(""), {bin, sizeof bin}};
    assert_stored("cli-whole", w, 5);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "cli-whole", &s), UPULSAR_OK);
    cr_assert_null(upulsar_tb_snapshot_msg(s, 0)->partition_key, "-K does not split -F files");
    cr_assert_str_eq(upulsar_tb_snapshot_msg(s, 1)->partition_key, "k");
    upulsar_tb_snapshot_free(s);
    run_free(&r);

    /* '-F -': all of stdin is one message */
    const char *a2[] = {"-b", upulsar_tb_url(tb), "-t", "cli-whole-stdin", "-q", "-F", "-", NULL};
    r = run_cli(a2, "two\nlines\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    want_t w2[] = {W("two\nlines\n")};
    assert_stored("cli-whole-stdin", w2, 1);
    run_free(&r);

    const char *a3[] = {"-b", upulsar_tb_url(tb), "-t", "x", "-F", "/nonexistent/upulsar", NULL};
    r = run_cli(a3, NULL);
    cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "-F /nonexistent/upulsar: No such file"), "%s", r.err);
    run_free(&r);

    /* a directory is refused before anything is connected or sent, also
     * after a stdin source */
    upulsar_tb_stats_t before, after;
    cr_assert_eq(upulsar_tb_stats(tb, &before), UPULSAR_OK);
    const char *a4[] = {"-b", upulsar_tb_url(tb), "-t", "cli-dir", "-f", "-", "-F", "/tmp", NULL};
    r = run_cli(a4, "first\n");
    cr_assert_eq(r.status, 2, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "-F /tmp: Is a directory"), "%s", r.err);
    cr_assert_eq(upulsar_tb_stats(tb, &after), UPULSAR_OK);
    cr_assert_eq(after.connections_accepted, before.connections_accepted,
                 "a connection was made before the usage error");
    run_free(&r);
    unlink(f1);
    unlink(f2);
    unlink(f3);
    free(f1);
    free(f2);
    free(f3);
}

/* ---- base64 --------------------------------------------------------------- */

Test(cli_input, base64_values_are_decoded_to_their_exact_bytes)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-b64", "-q", "--base64",
                          "-K", ":", NULL};
    run_t r = run_cli(args, "AAEC/w==\naGk\n aGVs bG8= \r\nkey:AP8=\n!!!!\nQQ=x\nQ\nZW5k\n");
    cr_assert_eq(r.status, 1, "invalid lines fail: exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "message 4 not sent: INVALID_BASE64"), "%s", r.err);
    cr_assert(strstr(r.err, "message 5 not sent: INVALID_BASE64"), "%s", r.err);
    cr_assert(strstr(r.err, "message 6 not sent: INVALID_BASE64"), "%s", r.err);
    cr_assert(strstr(r.err, "5 messages acknowledged, 3 failed"), "%s", r.err);
    want_t w[] = {W("\x00\x01\x02\xff"), W("hi"), W("hello"), W("\x00\xff"), W("end")};
    assert_stored("cli-b64", w, 5);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "cli-b64", &s), UPULSAR_OK);
    cr_assert_str_eq(upulsar_tb_snapshot_msg(s, 3)->partition_key, "key");
    upulsar_tb_snapshot_free(s);
    run_free(&r);

    /* a whole file of wrapped base64 (as base64(1) writes it) */
    char *f = temp_file("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\nISIj\n", 50);
    const char *a2[] = {"-b", upulsar_tb_url(tb), "-t", "cli-b64-file", "-q", "--base64",
                        "-F", f, NULL};
    r = run_cli(a2, NULL);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    char bytes[36];
    for (int i = 0; i < 36; i++)
        bytes[i] = (char)i;
    want_t w2[] = {{bytes, sizeof bytes}};
    assert_stored("cli-b64-file", w2, 1);
    run_free(&r);
    unlink(f);
    free(f);
}

/* ---- --rate --------------------------------------------------------------- */

Test(cli_input, rate_takes_only_a_positive_number_of_messages_per_second)
{
    const char *bad[] = {"0", "-5", "abc", "", "nan", "inf", "1e12", "10x", "0.0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "x", "--rate", bad[i], NULL};
        run_t r = run_cli(args, "m\n");
        cr_assert_eq(r.status, 2, "--rate '%s': exit %d", bad[i], r.status);
        cr_assert(strstr(r.err, "--rate"), "--rate '%s': %s", bad[i], r.err);
        run_free(&r);
    }
    assert_no_connection(tb);
}

Test(cli_input, rate_limited_runs_deliver_every_message_in_order)
{
    const char *a1[] = {"-b", upulsar_tb_url(tb), "-t", "cli-rate", "-q", "--rate", "200", NULL};
    run_t r = run_cli(a1, "r0\nr1\nr2\nr3\nr4\nr5\nr6\nr7\nr8\nr9\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    want_t w1[] = {W("r0"), W("r1"), W("r2"), W("r3"), W("r4"),
                   W("r5"), W("r6"), W("r7"), W("r8"), W("r9")};
    assert_stored("cli-rate", w1, 10);
    run_free(&r);

    const char *a2[] = {"-b", upulsar_tb_url(tb), "-t", "cli-rate-gen", "-q", "--rate", "7.5",
                        "--count", "4", "--prefix", "g", NULL};
    r = run_cli(a2, NULL);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    want_t w2[] = {W("g0"), W("g1"), W("g2"), W("g3")};
    assert_stored("cli-rate-gen", w2, 4);
    run_free(&r);
}

/* ---- --progress ----------------------------------------------------------- */

/* --rate 4 makes the 6 messages span more than a second (5 intervals of
 * 250 ms at least), so at least one progress line is due; each names
 * counts that never exceed what was sent. Without --progress (stderr is
 * a pipe here) there is none. */
Test(cli_input, progress_lines_go_to_stderr_when_asked)
{
    const char *a1[] = {"-b", upulsar_tb_url(tb), "-t", "cli-prog", "--progress",
                        "--rate", "4", "--count", "6", NULL};
    run_t r = run_cli(a1, NULL);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert_eq(count_of(r.out, "\n"), 6, "ids stay on stdout: %s", r.out);
    cr_assert_null(strstr(r.out, "progress"), "%s", r.out);
    size_t lines = 0;
    for (const char *p = strstr(r.err, "progress: "); p; p = strstr(p + 1, "progress: ")) {
        unsigned long long sent, acked, failed;
        cr_assert_eq(sscanf(p, "progress: %llu sent, %llu acknowledged, %llu failed", &sent,
                            &acked, &failed),
                     3, "%s", p);
        cr_assert(sent <= 6 && acked <= sent && failed == 0, "%s", p);
        lines++;
    }
    cr_assert_geq(lines, 1, "no progress line: %s", r.err);
    run_free(&r);

    const char *a2[] = {"-b", upulsar_tb_url(tb), "-t", "cli-noprog", "--rate", "4", "--count",
                        "6", NULL};
    r = run_cli(a2, NULL);
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert_null(strstr(r.err, "progress"), "%s", r.err);
    run_free(&r);
}

/* ---- --stats -------------------------------------------------------------- */

Test(cli_input, stats_count_messages_bytes_failures_and_latencies)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-stats", "-q", "--stats", NULL};
    run_t r = run_cli(args, "a\nbb\nccc\ndddd\n\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    const char *p = strstr(r.err, "stats: acknowledged=");
    cr_assert_not_null(p, "%s", r.err);
    unsigned long long acked, failed, bytes;
    double secs, rate;
    cr_assert_eq(sscanf(p, "stats: acknowledged=%llu failed=%llu bytes=%llu elapsed_s=%lf "
                           "msgs_per_s=%lf",
                        &acked, &failed, &bytes, &secs, &rate),
                 5, "%s", p);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "cli-stats", &s), UPULSAR_OK);
    size_t n = upulsar_tb_snapshot_count(s);
    unsigned long long stored_bytes = 0;
    for (size_t i = 0; i < n; i++)
        stored_bytes += upulsar_tb_snapshot_msg(s, i)->payload_len;
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(n, 5);
    cr_assert_eq(acked, n);
    cr_assert_eq(failed, 0);
    cr_assert_eq(bytes, stored_bytes, "bytes=%llu, the broker stored %llu", bytes,
                 stored_bytes);
    cr_assert(secs >= 0 && rate >= 0, "%s", p);
    p = strstr(r.err, "stats: latency_us count=");
    cr_assert_not_null(p, "%s", r.err);
    unsigned long long count, p50, p90, p99, p999;
    double mean;
    cr_assert_eq(sscanf(p, "stats: latency_us count=%llu mean=%lf p50=%llu p90=%llu p99=%llu "
                           "p999=%llu",
                        &count, &mean, &p50, &p90, &p99, &p999),
                 6, "%s", p);
    cr_assert_eq(count, 5, "every acknowledged message is sampled: %s", p);
    cr_assert(p50 > 0 && p50 <= p90 && p90 <= p99 && p99 <= p999, "%s", p);
    cr_assert(mean > 0, "%s", p);
    run_free(&r);

    /* --json: the same as an object before "done" */
    const char *a2[] = {"-b", upulsar_tb_url(tb), "-t", "cli-stats-json", "--json", "--stats",
                        NULL};
    r = run_cli(a2, "xyz\n12\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.out, "{\"event\":\"stats\",\"acknowledged\":2,\"failed\":0,\"bytes\":5,"),
              "%s", r.out);
    cr_assert(strstr(r.out, "\"latencyUs\":{\"count\":2,"), "%s", r.out);
    cr_assert(strstr(r.out, "\"event\":\"stats\"") < strstr(r.out, "\"event\":\"done\""));
    run_free(&r);
}

Test(cli_input, stats_count_a_failed_message)
{
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "cli-stats-fail"), UPULSAR_OK);
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-stats-fail", "--stats",
                          "-X", "send.timeout.ms=300", NULL};
    run_t r = run_cli(args, "never acknowledged\n");
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "stats: acknowledged=0 failed=1 bytes=0 "), "%s", r.err);
    cr_assert(strstr(r.err, "stats: latency_us count=0 "), "failures are not timed: %s", r.err);
    run_free(&r);
    upulsar_tb_release_receipts(tb, NULL);
}

/* ---- keys that are not UTF-8 ---------------------------------------------- */

Test(cli_input, json_gives_a_key_that_is_not_utf8_in_base64_with_a_flag)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-key8", "--json", "-K", "=",
                          NULL};
    run_t r = run_cli(args, "\xff\xfe=v1\nok=v2\n\xc3\xa9t\xc3\xa9=v3\nnone\n");
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "cli-key8", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 4);
    cr_assert_str_eq(upulsar_tb_snapshot_msg(s, 0)->partition_key, "\xff\xfe");
    upulsar_tb_snapshot_free(s);
    cr_assert(strstr(r.out, "\"key\":\"//4=\",\"keyBase64\":true"), "%s", r.out);
    cr_assert(strstr(r.out, "\"key\":\"ok\",\"keyBase64\":false"), "%s", r.out);
    cr_assert(strstr(r.out, "\"key\":\"\xc3\xa9t\xc3\xa9\",\"keyBase64\":false"), "%s", r.out);
    cr_assert(strstr(r.out, "\"key\":null,\"keyBase64\":false"), "%s", r.out);
    cr_assert_eq(count_of(r.out, "\"key\":"), 4, "%s", r.out);
    run_free(&r);
}

/* ---- documentation -------------------------------------------------------- */

Test(cli_input, help_lists_the_input_options_and_the_exit_codes)
{
    const char *args[] = {"--help", NULL};
    run_t r = run_cli(args, NULL);
    cr_assert_eq(r.status, 0);
    const char *opts[] = {"-D, --delimiter", "-F, --message-file", "--keep-cr", "--base64",
                          "--rate N", "--line-buffered", "--progress", "--stats",
                          "\"keyBase64\":true", "130 after Ctrl-C", "2 bad usage"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        cr_assert(strstr(r.out, opts[i]), "help lacks %s", opts[i]);
    run_free(&r);
}

/* A key with a NUL byte (-K) is not sent cut at the NUL (which would be
 * another key): the message fails as INVALID_KEY, named, and the others
 * are sent. */
Test(cli_input, a_key_with_a_nul_byte_is_refused_not_cut)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-key-nul", "-K", ":", NULL};
    static const char in[] = "a\0b:v1\nk:v2\n";
    run_t r = run_bytes(args, in, sizeof in - 1);
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "message 0 not sent: INVALID_KEY"), "%s", r.err);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "cli-key-nul", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    cr_assert_str_eq(upulsar_tb_snapshot_msg(s, 0)->partition_key, "k");
    upulsar_tb_snapshot_free(s);
    run_free(&r);
}
