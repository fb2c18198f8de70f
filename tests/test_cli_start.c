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

static void *fifo_writer(void *arg)
{
    int fd = open(arg, O_WRONLY); /* waits for the CLI to open it */
    if (fd >= 0) {
        (void)!write(fd, "  tok-pipe \n", 12);
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
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fifo_writer, path), 0);
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-pipe", "--token-file", path, NULL};
    run_t r = run_cli(args, "m\n");
    pthread_join(th, NULL);
    unlink(path);
    rmdir(dir);
    cr_assert_eq(r.status, 0, "status %d: %s", r.status, r.err);
    cr_assert(strstr(r.err, "1 message acknowledged"), "%s", r.err);
    run_free(&r);
}
