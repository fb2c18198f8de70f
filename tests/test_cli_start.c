/* upulsar-produce at start: a configuration the library refuses is bad
 * usage (exit 2, as an invalid -X value is), and --token-file is the
 * library's auth.token.file (read again at every connection, so a rotated
 * token is used after a reconnection), except for a pipe, read once. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_common.h"
#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

TestSuite(cli_start, .init = cli_setup, .fini = cli_teardown, .timeout = 180);

Test(cli_start, a_configuration_the_library_refuses_at_start_is_a_usage_error)
{
    /* each value alone is valid (-X accepts it); the library refuses the
     * combination, or the partition count, when the producer starts */
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "x", "-X", "chunking.enabled=true",
                          NULL};
    run_t r = run_cli(args, "m\n");
    cr_assert_eq(r.status, 2, "status %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "chunking.enabled"), "%s", r.err);
    run_free(&r);
    const char *args2[] = {"-b", upulsar_tb_url(tb), "-t", "y", "-p", "2000", NULL};
    r = run_cli(args2, "m\n");
    cr_assert_eq(r.status, 2, "status %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "partitions.max"), "%s", r.err);
    run_free(&r);
    /* a tenant Pulsar refuses; a CA file that cannot be loaded */
    const char *args3[] = {"-b", upulsar_tb_url(tb), "-t", "bad tenant/ns/x", NULL};
    r = run_cli(args3, "m\n");
    cr_assert_eq(r.status, 2, "status %d: %s", r.status, r.err);
    run_free(&r);
    const char *args4[] = {"-b", "pulsar+ssl://127.0.0.1:1", "-t", "x", "--tls-ca",
                           "/nonexistent/ca.pem", NULL};
    r = run_cli(args4, "m\n");
    cr_assert_eq(r.status, 2, "status %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "/nonexistent/ca.pem"), "%s", r.err);
    run_free(&r);
}

Test(cli_start, an_unreachable_broker_is_a_failure_not_a_usage_error)
{
    const char *args[] = {"-b", "pulsar://127.0.0.1:1", "-t", "x", "-X",
                          "operation.timeout.ms=500", NULL};
    run_t r = run_cli(args, "m\n");
    cr_assert_eq(r.status, 1, "status %d: %s", r.status, r.err);
    run_free(&r);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

Test(cli_start, a_rotated_token_file_is_used_after_a_reconnection)
{
    const char *t1[] = {"tok-one"}, *t2[] = {"tok-two"};
    cr_assert_eq(upulsar_tb_set_tokens(tb, t1, 1), UPULSAR_OK);
    char tf[] = "/tmp/upulsar-cli-rot-XXXXXX";
    int fd = mkstemp(tf);
    cr_assert(fd >= 0);
    close(fd);
    write_file(tf, "tok-one\n");
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-rot", "--token-file", tf,
                          "-X", "backoff.initial.ms=20", NULL};
    child_t c = spawn_cli(args);
    cr_assert_eq(write(c.in, "a\n", 2), 2);
    cr_assert_eq(upulsar_tb_wait_messages(tb, "cli-rot", 1, 30000), UPULSAR_OK);
    /* the token changes, in the file and at the broker, and the
     * connection is lost: only the new token gets the second message in */
    write_file(tf, "tok-two\n");
    cr_assert_eq(upulsar_tb_set_tokens(tb, t2, 1), UPULSAR_OK);
    cr_assert_geq(upulsar_tb_drop_connections(tb, NULL), 1);
    cr_assert_eq(write(c.in, "b\n", 2), 2);
    cr_assert_eq(upulsar_tb_wait_messages(tb, "cli-rot", 2, 30000), UPULSAR_OK,
                 "the second message was not stored: the old token was presented again");
    run_t r = finish_cli(&c, NULL, 0, (run_t){0});
    unlink(tf);
    cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "2 messages acknowledged, 0 failed"), "%s", r.err);
    run_free(&r);
}

/* A token written into a pipe once the CLI opens it. */
typedef struct {
    const char *path, *token;
} fifo_job_t;

static void *fifo_job(void *arg)
{
    fifo_job_t *j = arg;
    int fd = open(j->path, O_WRONLY); /* waits for the CLI to open it */
    if (fd >= 0) {
        (void)!write(fd, j->token, strlen(j->token));
        close(fd);
    }
    return NULL;
}

Test(cli_start, a_token_from_a_pipe_is_read_once_without_its_surrounding_whitespace)
{
    const char *t[] = {"tok-pipe"};
    cr_assert_eq(upulsar_tb_set_tokens(tb, t, 1), UPULSAR_OK);
    char dir[] = "/tmp/upulsar-cli-fifo-XXXXXX";
    cr_assert(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/token", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    fifo_job_t j = {path, "  tok-pipe \n"};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fifo_job, &j), 0);
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-pipe", "--token-file", path, NULL};
    run_t r = run_cli(args, "m\n");
    pthread_join(th, NULL);
    unlink(path);
    rmdir(dir);
    cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "1 message acknowledged"), "%s", r.err);
    run_free(&r);
}

Test(cli_start, the_last_token_option_wins)
{
    const char *t[] = {"tok-b"};
    cr_assert_eq(upulsar_tb_set_tokens(tb, t, 1), UPULSAR_OK);
    char fa[] = "/tmp/upulsar-cli-tok-a-XXXXXX", fb[] = "/tmp/upulsar-cli-tok-b-XXXXXX";
    int da = mkstemp(fa), db = mkstemp(fb);
    cr_assert(da >= 0 && db >= 0);
    close(da);
    close(db);
    write_file(fa, "tok-a\n");
    write_file(fb, "tok-b\n");
    /* a file, then a token: the token */
    const char *a1[] = {"-b", upulsar_tb_url(tb), "-t", "x", "--token-file", fa, "--token",
                        "tok-b", NULL};
    run_t r = run_cli(a1, "m\n");
    cr_assert_eq(r.status, 0, "file then token: status %d: %s", r.status, r.err);
    run_free(&r);
    /* a token, then a file: the file */
    const char *a2[] = {"-b", upulsar_tb_url(tb), "-t", "x", "--token", "tok-a", "--token-file",
                        fb, NULL};
    r = run_cli(a2, "m\n");
    cr_assert_eq(r.status, 0, "token then file: status %d: %s", r.status, r.err);
    run_free(&r);
    /* and the wrong one last fails: the order is what decides */
    const char *a3[] = {"-b", upulsar_tb_url(tb), "-t", "x", "--token-file", fb, "--token",
                        "tok-a", "-X", "operation.timeout.ms=3000", NULL};
    r = run_cli(a3, "m\n");
    cr_assert_neq(r.status, 0, "a refused token was accepted");
    run_free(&r);
    unlink(fa);
    unlink(fb);
}

Test(cli_start, two_token_pipes_the_second_is_used)
{
    const char *t[] = {"tok-second"};
    cr_assert_eq(upulsar_tb_set_tokens(tb, t, 1), UPULSAR_OK);
    char dir[] = "/tmp/upulsar-cli-fifo2-XXXXXX";
    cr_assert(mkdtemp(dir));
    char p1[64], p2[64];
    snprintf(p1, sizeof p1, "%s/one", dir);
    snprintf(p2, sizeof p2, "%s/two", dir);
    cr_assert_eq(mkfifo(p1, 0600), 0);
    cr_assert_eq(mkfifo(p2, 0600), 0);
    fifo_job_t j1 = {p1, "tok-first\n"}, j2 = {p2, "tok-second\n"};
    pthread_t t1, t2;
    cr_assert_eq(pthread_create(&t1, NULL, fifo_job, &j1), 0);
    cr_assert_eq(pthread_create(&t2, NULL, fifo_job, &j2), 0);
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "x", "--token-file", p1,
                          "--token-file", p2, NULL};
    run_t r = run_cli(args, "m\n");
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    unlink(p1);
    unlink(p2);
    rmdir(dir);
    cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
    run_free(&r);
}

/* Each token option takes two entries of the tool's configuration list
 * from one word of the command line: forty of them (the last the broker's)
 * are taken as given, the last winning, and the message is stored. */
Test(cli_start, many_token_options_the_last_wins)
{
    const char *t[] = {"tok-last"};
    cr_assert_eq(upulsar_tb_set_tokens(tb, t, 1), UPULSAR_OK);
    enum { K = 40 };
    const char *args[6 + K + 1];
    int n = 0;
    args[n++] = "-b";
    args[n++] = upulsar_tb_url(tb);
    args[n++] = "-t";
    args[n++] = "cli-many-tokens";
    for (int i = 0; i < K - 1; i++)
        args[n++] = "--token=tok-wrong";
    args[n++] = "--token=tok-last";
    args[n] = NULL;
    run_t r = run_cli(args, "m\n");
    cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
    run_free(&r);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "cli-many-tokens", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    upulsar_tb_snapshot_free(s);
}

/* Ctrl-C while the producer is being started (a broker that refuses
 * connections, retried for up to operation.timeout.ms) ends the tool at
 * once with 130, as --help says; it used to be held until the start gave
 * up, then exit 1. */
Test(cli_start, ctrl_c_while_the_producer_starts_exits_130)
{
    const char *args[] = {"-b", "pulsar://127.0.0.1:1", "-t", "x", "-X",
                          "operation.timeout.ms=30000", NULL};
    child_t c = spawn_cli(args);
    run_t r = {0};
    cli_append(&r.err, &r.err_len, "", 0);
    /* the start is under way once a failed attempt is reported */
    for (int waited = 0; !strstr(r.err, "connecting to") && waited < CLI_HANG_GUARD_MS;
         waited += 10) {
        struct pollfd pf = {.fd = c.err, .events = POLLIN};
        if (poll(&pf, 1, 10) > 0)
            cr_assert(cli_drain(c.err, &r.err, &r.err_len), "the CLI ended: %s", r.err);
    }
    cr_assert(strstr(r.err, "connecting to"), "no connection attempt reported: %s", r.err);
    cr_assert_eq(kill(c.pid, SIGINT), 0);
    r = finish_cli(&c, "", 0, r);
    cr_assert_eq(r.status, 130, "status %d: %s", r.status, r.err);
    run_free(&r);
}

/* A -b that is no service URL is bad usage (exit 2), as an invalid -X
 * value is: the library refuses it when the client is created. */
Test(cli_start, a_broker_url_that_does_not_parse_is_a_usage_error)
{
    const char *bad[] = {"pulsar://h:abc", "pulsar://:6650", "pulsar://h:0", "pulsar://[::1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"-b", bad[i], "-t", "x", NULL};
        run_t r = run_cli(args, "m\n");
        cr_assert_eq(r.status, 2, "-b %s: status %d: %s", bad[i], r.status, r.err);
        run_free(&r);
    }
}
