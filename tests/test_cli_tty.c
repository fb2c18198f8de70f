/* test_cli_tty.c -- upulsar-produce's defaults when it talks to a terminal,
 * run as a child process whose stdout or stderr is a pseudo-terminal
 * (openpty): ids are written as their receipts arrive without
 * --line-buffered, and progress lines come on stderr without --progress.
 * What the broker stored (every message, in order) and the ids it gave
 * are the oracle. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli_common.h"
#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

TestSuite(cli_tty, .init = cli_setup, .fini = cli_teardown, .timeout = 180);

/* The CLI with @p args, stdin on a pipe (*@p in, ours), and stdout
 * (@p tty_out) or stderr on the slave side of a new pseudo-terminal whose
 * master is *@p master; the other output on a pipe whose read end is
 * *@p other. */
static pid_t spawn_on_tty(const char *const *args, bool tty_out, int *in, int *master, int *other)
{
    const char *argv[32];
    size_t n = 0;
    argv[n++] = UPULSAR_CLI_PATH;
    for (; args[n - 1]; n++) {
        cr_assert_lt(n, 31);
        argv[n] = args[n - 1];
    }
    argv[n] = NULL;
    int m, s;
    cr_assert_eq(openpty(&m, &s, NULL, NULL, NULL), 0, "openpty: %s", strerror(errno));
    int pin[2], po[2];
    cr_assert_eq(pipe(pin), 0);
    cr_assert_eq(pipe(po), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    posix_spawn_file_actions_adddup2(&fa, tty_out ? s : po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, tty_out ? po[1] : s, 2);
    int fds[] = {pin[0], pin[1], po[0], po[1], m, s};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        posix_spawn_file_actions_addclose(&fa, fds[i]);
    pid_t pid;
    int rc = posix_spawn(&pid, UPULSAR_CLI_PATH, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn: %s", strerror(rc));
    close(pin[0]);
    close(po[1]);
    close(s);
    signal(SIGPIPE, SIG_IGN);
    *in = pin[1];
    *master = m;
    *other = po[0];
    return pid;
}

/* Read the terminal's output into *@p buf until it holds @p needle (a hang
 * guard bounds the wait); the terminal writes "\r\n" for each "\n". */
static void read_until(int master, char **buf, size_t *len, const char *needle)
{
    if (!*buf)
        cli_append(buf, len, "", 0);
    while (!strstr(*buf, needle)) {
        struct pollfd pf = {.fd = master, .events = POLLIN};
        int n = poll(&pf, 1, CLI_HANG_GUARD_MS);
        if (n < 0 && errno == EINTR)
            continue;
        cr_assert_gt(n, 0, "no \"%s\" on the terminal within %d ms; it shows: %s", needle,
                     CLI_HANG_GUARD_MS, *buf);
        cr_assert(cli_drain(master, buf, len), "the terminal closed before \"%s\": %s", needle,
                  *buf);
    }
}

/* The id of message @p i of @p topic as the CLI prints it, with the
 * terminal's line end. */
static void stored_id(const char *topic, size_t i, char *out, size_t n)
{
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    cr_assert_gt(upulsar_tb_snapshot_count(s), i);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, i);
    snprintf(out, n, "-1:%llu:%llu:%d\r\n", (unsigned long long)m->ledger_id,
             (unsigned long long)m->entry_id, m->batch_index);
    upulsar_tb_snapshot_free(s);
}

/* Scenario: stdout is a terminal and no --line-buffered is given. One line
 * is written to stdin, which stays open: its id (the one the broker stored
 * it at) must come out on the terminal while the CLI still waits for
 * input; the same for a second line; then stdin is closed, the CLI exits
 * 0 and the broker holds both lines, in order. */
Test(cli_tty, ids_come_out_as_receipts_arrive_when_stdout_is_a_terminal)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-tty", NULL};
    int in, master, err;
    pid_t pid = spawn_on_tty(args, true, &in, &master, &err);
    char *out = NULL;
    size_t out_len = 0;
    char want[96];
    cr_assert_eq(write(in, "first\n", 6), 6);
    cr_assert_eq(upulsar_tb_wait_messages(tb, "cli-tty", 1, CLI_HANG_GUARD_MS), UPULSAR_OK);
    stored_id("cli-tty", 0, want, sizeof want);
    read_until(master, &out, &out_len, want);
    cr_assert_str_eq(out, want, "the terminal shows more than the first id");
    cr_assert_eq(write(in, "second\n", 7), 7);
    cr_assert_eq(upulsar_tb_wait_messages(tb, "cli-tty", 2, CLI_HANG_GUARD_MS), UPULSAR_OK);
    stored_id("cli-tty", 1, want, sizeof want);
    read_until(master, &out, &out_len, want);
    close(in);
    run_t r = finish_cli(&(child_t){pid, -1, -1, err}, NULL, 0, (run_t){0});
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
    close(master);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "cli-tty", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 2);
    const upulsar_tb_msg_t *m0 = upulsar_tb_snapshot_msg(s, 0), *m1 = upulsar_tb_snapshot_msg(s, 1);
    cr_assert(m0->payload_len == 5 && !memcmp(m0->payload, "first", 5));
    cr_assert(m1->payload_len == 6 && !memcmp(m1->payload, "second", 6));
    upulsar_tb_snapshot_free(s);
    run_free(&r);
    free(out);
}

/* Scenario: stderr is a terminal, no --progress and no -q. One line is
 * written and stdin stays open: a progress line counting it as sent must
 * come out on the terminal (the first one is due a second after the
 * start) while the CLI still runs; then stdin is closed and it exits 0. */
Test(cli_tty, progress_lines_come_out_when_stderr_is_a_terminal)
{
    const char *args[] = {"-b", upulsar_tb_url(tb), "-t", "cli-tty-progress", NULL};
    int in, master, out_fd;
    pid_t pid = spawn_on_tty(args, false, &in, &master, &out_fd);
    cr_assert_eq(write(in, "one\n", 4), 4);
    char *err = NULL;
    size_t err_len = 0;
    read_until(master, &err, &err_len, "progress: 1 sent");
    close(in);
    run_t r = finish_cli(&(child_t){pid, -1, out_fd, -1}, NULL, 0, (run_t){0});
    cr_assert_eq(r.status, 0, "exit %d: %s", r.status, err);
    cr_assert_eq(count_of(r.out, "\n"), 1, "one id on stdout: %s", r.out);
    close(master);
    cr_assert_eq(upulsar_tb_wait_messages(tb, "cli-tty-progress", 1, CLI_HANG_GUARD_MS),
                 UPULSAR_OK);
    run_free(&r);
    free(err);
}
