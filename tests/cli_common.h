/* cli_common.h -- the upulsar-produce binary run as a child process by the
 * command-line tests (tests/test_cli*.c, test_firstrun.c): its stdin,
 * stdout and stderr on pipes, input fed and output collected without
 * deadlock (poll on all three), the exit status reaped.
 *
 * The output buffers are always NUL-terminated. A poll that sees nothing
 * for CLI_HANG_GUARD_MS fails the test: a bound that only guards against
 * a hang. */
#ifndef UPULSAR_CLI_COMMON_H
#define UPULSAR_CLI_COMMON_H
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "upulsar/testbroker.h"

#ifndef UPULSAR_CLI_PATH
#error "UPULSAR_CLI_PATH must name the upulsar-produce binary"
#endif

extern char **environ;

/* The suites' test broker: started before each test, stopped after
 * (cli_setup / cli_teardown as .init / .fini). */
static upulsar_tb_t *tb;

static inline void cli_setup(void)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
}

static inline void cli_teardown(void)
{
    upulsar_tb_stop(tb);
    tb = NULL;
}

/* A generous bound that only guards against a hang. */
#define CLI_HANG_GUARD_MS 60000

typedef struct child {
    pid_t pid;
    int in, out, err; /* our ends; -1 once closed */
} child_t;

typedef struct run {
    int status; /* exit code, or 128 + signal */
    char *out;
    size_t out_len;
    char *err;
    size_t err_len;
} run_t;

static inline void run_free(run_t *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

/* Append @p n bytes to *buf (*len bytes, NUL-terminated; *buf may be NULL
 * when *len is 0). */
static inline void cli_append(char **buf, size_t *len, const char *p, size_t n)
{
    char *nb = realloc(*buf, *len + n + 1);
    cr_assert_not_null(nb);
    memcpy(nb + *len, p, n);
    *len += n;
    nb[*len] = '\0';
    *buf = nb;
}

/* Append what one read() of @p fd gives to *buf; false at end of file or
 * on an error (an interrupted read is neither). */
static inline bool cli_drain(int fd, char **buf, size_t *len)
{
    char chunk[4096];
    ssize_t got = read(fd, chunk, sizeof chunk);
    if (got < 0 && errno == EINTR)
        return true;
    if (got <= 0)
        return false;
    cli_append(buf, len, chunk, (size_t)got);
    return true;
}

/* Start the CLI with @p args (NULL-terminated, without argv[0]), its
 * stdin, stdout and stderr on pipes. SIGPIPE is ignored from then on (a
 * CLI that exits before reading all its input must not kill the test). */
static inline child_t spawn_cli(const char *const *args)
{
    const char *argv[64];
    size_t n = 0;
    argv[n++] = UPULSAR_CLI_PATH;
    for (; args[n - 1]; n++) {
        cr_assert_lt(n, 63);
        argv[n] = args[n - 1];
    }
    argv[n] = NULL;
    int pin[2], pout[2], perr[2];
    cr_assert_eq(pipe(pin), 0);
    cr_assert_eq(pipe(pout), 0);
    cr_assert_eq(pipe(perr), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
    for (int i = 0; i < 2; i++) {
        posix_spawn_file_actions_addclose(&fa, pin[i]);
        posix_spawn_file_actions_addclose(&fa, pout[i]);
        posix_spawn_file_actions_addclose(&fa, perr[i]);
    }
    child_t c;
    int rc = posix_spawn(&c.pid, UPULSAR_CLI_PATH, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn %s: %s", UPULSAR_CLI_PATH, strerror(rc));
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    signal(SIGPIPE, SIG_IGN);
    c.in = pin[1];
    c.out = pout[0];
    c.err = perr[0];
    return c;
}

/* Wait for the child to end: its exit code, or 128 + the signal that
 * ended it. */
static inline int reap_cli(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        cr_assert_eq(errno, EINTR);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Feed @p in_len bytes of @p input (then close stdin), collect stdout and
 * stderr into @p r (what it holds already is kept) until both close, and
 * reap the child. */
static inline run_t finish_cli(child_t *c, const void *input, size_t in_len, run_t r)
{
    if (!r.out)
        cli_append(&r.out, &r.out_len, "", 0);
    if (!r.err)
        cli_append(&r.err, &r.err_len, "", 0);
    size_t in_off = 0;
    if (c->in >= 0 && in_len == 0) {
        close(c->in);
        c->in = -1;
    }
    while (c->out >= 0 || c->err >= 0 || c->in >= 0) {
        struct pollfd pf[3] = {{.fd = c->out, .events = POLLIN},
                               {.fd = c->err, .events = POLLIN},
                               {.fd = c->in, .events = POLLOUT}};
        int n = poll(pf, 3, CLI_HANG_GUARD_MS);
        if (n < 0) {
            cr_assert_eq(errno, EINTR);
            continue;
        }
        cr_assert_gt(n, 0, "the CLI neither wrote nor exited within %d ms", CLI_HANG_GUARD_MS);
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            bool more = i == 0 ? cli_drain(pf[i].fd, &r.out, &r.out_len)
                               : cli_drain(pf[i].fd, &r.err, &r.err_len);
            if (!more) {
                close(pf[i].fd);
                if (i == 0)
                    c->out = -1;
                else
                    c->err = -1;
            }
        }
        if (c->in >= 0 && (pf[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(c->in, (const char *)input + in_off, in_len - in_off);
            if (w > 0)
                in_off += (size_t)w;
            if ((w < 0 && errno != EINTR && errno != EAGAIN) || in_off == in_len) {
                close(c->in);
                c->in = -1;
            }
        }
    }
    r.status = reap_cli(c->pid);
    return r;
}

/* Run the CLI with @p args, @p len bytes of @p input on its stdin (none:
 * empty stdin), and collect its output and exit status. */
static inline run_t run_bytes(const char *const *args, const void *input, size_t len)
{
    child_t c = spawn_cli(args);
    return finish_cli(&c, input, len, (run_t){0});
}

/* The same with a string as input (NULL: empty stdin). */
static inline run_t run_cli(const char *const *args, const char *input)
{
    return run_bytes(args, input, input ? strlen(input) : 0);
}

/* How many times @p needle occurs in @p hay (overlaps count). */
static inline size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Nothing connected to @p broker: a usage error ends the CLI before it
 * dials. */
static inline void assert_no_connection(upulsar_tb_t *broker)
{
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(broker, &st), UPULSAR_OK);
    cr_assert_eq(st.connections_accepted, 0, "nothing may connect after a usage error");
}

#endif
