/* test_firstrun.c -- what a new user meets first: a key set on the object
 * that does not read it (a client key on a producer's conf is refused,
 * naming its scope; producer keys on the client's conf are the defaults of
 * its producers), and `upulsar-produce -X stats.interval.ms=N` printing the
 * statistics it asks for. Against an in-process test broker. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

static upulsar_tb_t *tb;

static void setup(void)
{
    cr_assert_eq(upulsar_tb_start(NULL, &tb), UPULSAR_OK, "%s", upulsar_last_error());
}

static void teardown(void)
{
    upulsar_tb_stop(tb);
    tb = NULL;
}

TestSuite(firstrun, .init = setup, .fini = teardown, .timeout = 120);

static void set(upulsar_conf_t *c, const char *key, const char *value)
{
    char err[256] = "";
    cr_assert_eq(upulsar_conf_set(c, key, value, err, sizeof err), UPULSAR_CONF_OK, "%s=%s: %s",
                 key, value, err);
}

/* A conf naming the test broker. */
static upulsar_conf_t *client_conf(void)
{
    upulsar_conf_t *c = upulsar_conf_new();
    cr_assert_not_null(c);
    set(c, "service.url", upulsar_tb_url(tb));
    return c;
}

static upulsar_client_t *client_from(const upulsar_conf_t *conf)
{
    upulsar_client_t *client;
    cr_assert_eq(upulsar_client_new(conf, &client), UPULSAR_OK, "%s", upulsar_last_error());
    return client;
}

/* Send @p n messages through @p p and wait for every receipt. */
static void send_all(upulsar_producer_t *p, int n)
{
    for (int i = 0; i < n; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "m-%d", i);
        upulsar_future_t *f;
        cr_assert_eq(upulsar_send(p, msg, (size_t)len, NULL, &f), UPULSAR_OK, "%s",
                     upulsar_last_error());
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f, 30000, &id), UPULSAR_OK, "%s", upulsar_last_error());
        upulsar_future_release(f);
    }
}

/* Every message stored on @p topic: @p n of them, in order, each with the
 * entry compression @p compression (Pulsar's CompressionType). */
static void expect_stored(const char *topic, int n, int compression)
{
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)n, "%s: %zu messages stored, want %d",
                 topic, upulsar_tb_snapshot_count(s), n);
    for (int i = 0; i < n; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        char want[32];
        int len = snprintf(want, sizeof want, "m-%d", i);
        cr_assert(m->payload_len == (size_t)len && !memcmp(m->payload, want, (size_t)len),
                  "%s: message %d is not %s", topic, i, want);
        cr_assert_eq(m->compression, compression, "%s: message %d compression %d, want %d",
                     topic, i, m->compression, compression);
    }
    upulsar_tb_snapshot_free(s);
}

Test(firstrun, client_key_on_a_producer_conf_is_refused_naming_its_scope)
{
    upulsar_conf_t *cc = client_conf();
    upulsar_client_t *client = client_from(cc);
    upulsar_conf_t *pc = upulsar_conf_new();
    set(pc, "stats.interval.ms", "500");
    upulsar_producer_t *p = NULL;
    upulsar_err_t err = upulsar_producer_start(client, NULL, "scope-refused", 0, pc, &p);
    cr_assert_eq(err, UPULSAR_ERR__INVALID_ARG, "start gave %s, want INVALID_ARG",
                 upulsar_err_name(err));
    cr_assert_null(p);
    cr_assert_not_null(strstr(upulsar_last_error(), "stats.interval.ms is a client setting"),
                       "detail: %s", upulsar_last_error());
    /* the refusal comes before anything reaches the broker */
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "scope-refused", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 0);
    upulsar_tb_snapshot_free(s);

    /* auth.token likewise, without its value in the detail */
    upulsar_conf_t *pt = upulsar_conf_new();
    set(pt, "auth.token", "secret-token-value");
    err = upulsar_producer_start(client, NULL, "scope-refused", 0, pt, &p);
    cr_assert_eq(err, UPULSAR_ERR__INVALID_ARG, "start gave %s", upulsar_err_name(err));
    cr_assert_not_null(strstr(upulsar_last_error(), "auth.token is a client setting"), "%s",
                       upulsar_last_error());
    cr_assert_null(strstr(upulsar_last_error(), "secret-token-value"), "%s",
                   upulsar_last_error());

    upulsar_client_destroy(client);
    upulsar_conf_destroy(pt);
    upulsar_conf_destroy(pc);
    upulsar_conf_destroy(cc);
}

Test(firstrun, one_conf_serving_client_and_producer_is_accepted)
{
    upulsar_conf_t *conf = client_conf();
    set(conf, "stats.interval.ms", "500");
    set(conf, "compression", "lz4");
    upulsar_client_t *client = client_from(conf);
    upulsar_producer_t *p;
    cr_assert_eq(upulsar_producer_start(client, NULL, "scope-shared", 0, conf, &p), UPULSAR_OK,
                 "%s", upulsar_last_error());
    send_all(p, 3);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);

    /* a separate producer conf may repeat a client key at the client's value */
    upulsar_conf_t *pc = upulsar_conf_new();
    set(pc, "stats.interval.ms", "500");
    set(pc, "service.url", upulsar_tb_url(tb));
    cr_assert_eq(upulsar_producer_start(client, NULL, "scope-shared-2", 0, pc, &p), UPULSAR_OK,
                 "%s", upulsar_last_error());
    send_all(p, 2);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);

    expect_stored("scope-shared", 3, 1 /* LZ4 */);
    expect_stored("scope-shared-2", 2, 1 /* LZ4: the client conf's, pc does not set it */);
    upulsar_client_destroy(client);
    upulsar_conf_destroy(pc);
    upulsar_conf_destroy(conf);
}

Test(firstrun, producer_keys_on_the_client_conf_are_defaults_of_its_producers)
{
    upulsar_conf_t *cc = client_conf();
    set(cc, "compression", "lz4");
    set(cc, "partitions.max", "4");
    upulsar_client_t *client = client_from(cc);
    upulsar_conf_destroy(cc); /* the client keeps its copy */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "scope-wide", 8), UPULSAR_OK);

    /* NULL conf: the client's producer keys */
    upulsar_producer_t *p = NULL;
    upulsar_err_t err = upulsar_producer_start(client, NULL, "scope-wide", 8, NULL, &p);
    cr_assert_eq(err, UPULSAR_ERR__INVALID_ARG, "start gave %s: %s", upulsar_err_name(err),
                 upulsar_last_error());
    cr_assert_not_null(strstr(upulsar_last_error(), "partitions.max=4"), "%s",
                       upulsar_last_error());
    cr_assert_eq(upulsar_producer_start(client, NULL, "scope-default", 0, NULL, &p), UPULSAR_OK,
                 "%s", upulsar_last_error());
    send_all(p, 3);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    expect_stored("scope-default", 3, 1 /* LZ4 */);

    /* a producer conf that sets neither key keeps both defaults */
    upulsar_conf_t *other = upulsar_conf_new();
    set(other, "batch.max.messages", "2");
    err = upulsar_producer_start(client, NULL, "scope-wide", 8, other, &p);
    cr_assert_eq(err, UPULSAR_ERR__INVALID_ARG, "start gave %s", upulsar_err_name(err));
    cr_assert_eq(upulsar_producer_start(client, NULL, "scope-other", 0, other, &p), UPULSAR_OK,
                 "%s", upulsar_last_error());
    send_all(p, 2);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    expect_stored("scope-other", 2, 1 /* LZ4 */);

    /* a producer conf that sets them wins, key by key */
    upulsar_conf_t *own = upulsar_conf_new();
    set(own, "partitions.max", "16");
    set(own, "compression", "none");
    cr_assert_eq(upulsar_producer_start(client, NULL, "scope-wide", 8, own, &p), UPULSAR_OK,
                 "%s", upulsar_last_error());
    cr_assert_eq(upulsar_producer_partitions(p), 8);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(client, NULL, "scope-own", 0, own, &p), UPULSAR_OK,
                 "%s", upulsar_last_error());
    send_all(p, 2);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    expect_stored("scope-own", 2, 0 /* NONE */);

    upulsar_client_destroy(client);
    upulsar_conf_destroy(own);
    upulsar_conf_destroy(other);
}

/* ---- the command-line producer ----------------------------------------- */

#ifdef UPULSAR_CLI_PATH
#include "cli_common.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* `-X stats.interval.ms=50`: while the CLI waits for input, a statistics
 * report naming its producer's topic appears on stderr (one JSON object per
 * line); then one message is sent and acknowledged as usual. The CLI's
 * stdin stays open until that report is seen (bounded only against a hang). */
Test(firstrun, cli_prints_statistics_when_stats_interval_is_set)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-stats",
                          "-X", "stats.interval.ms=50", NULL};
    child_t c = spawn_cli(args);

    const char *marker = "\"topic\":\"persistent://public/default/cli-stats\"";
    char *out = NULL, *err = NULL;
    size_t out_len = 0, err_len = 0;
    int fds[2] = {c.out, c.err};
    bool seen = false;
    double deadline = now_s() + 60; /* only against a hang */
    while ((fds[0] >= 0 || fds[1] >= 0) && now_s() < deadline) {
        struct pollfd pf[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};
        if (poll(pf, 2, 1000) < 0) {
            cr_assert_eq(errno, EINTR);
            continue;
        }
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0 && (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
                !cli_drain(fds[i], i ? &err : &out, i ? &err_len : &out_len)) {
                close(fds[i]);
                fds[i] = -1;
            }
        if (!seen && err) {
            /* a whole line that is a report naming the topic */
            for (char *l = err; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
                char *nl = strchr(l, '\n');
                if (nl && !strncmp(l, "{\"ts_ms\":", 9) && strstr(l, marker) &&
                    strstr(l, marker) < nl) {
                    seen = true;
                    break;
                }
            }
            if (seen) {
                cr_assert_eq(write(c.in, "hello\n", 6), 6);
                close(c.in);
                c.in = -1;
            }
        }
    }
    if (c.in >= 0)
        close(c.in);
    bool hung = fds[0] >= 0 || fds[1] >= 0;
    if (hung)
        kill(c.pid, SIGKILL);
    int status = reap_cli(c.pid);
    cr_assert(seen, "no statistics report naming the topic on stderr: %s", err ? err : "");
    cr_assert_not(hung, "the CLI did not exit; stderr: %s", err ? err : "");
    cr_assert_eq(status, 0, "exit status %d; stderr: %s", status, err ? err : "");
    int part;
    long long ledger, entry;
    int bi;
    char tail;
    cr_assert_not_null(out);
    cr_assert_eq(sscanf(out, "%d:%lld:%lld:%d%c", &part, &ledger, &entry, &bi, &tail), 5,
                 "stdout: %s", out);
    cr_assert_eq(tail, '\n');
    cr_assert_null(strchr(strchr(out, '\n') + 1, '\n'), "more than one id: %s", out);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "cli-stats", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 0);
    cr_assert(m->payload_len == 5 && !memcmp(m->payload, "hello", 5));
    cr_assert_eq((long long)m->ledger_id, ledger);
    cr_assert_eq((long long)m->entry_id, entry);
    upulsar_tb_snapshot_free(s);
    free(out);
    free(err);
}
#endif
