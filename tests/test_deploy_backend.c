/* test_deploy_backend.c -- io.backend where io_uring is denied, as in a
 * container under Docker's default seccomp profile: the test process
 * installs a seccomp filter that makes io_uring_setup, io_uring_enter and
 * io_uring_register fail with EPERM, then
 *  - with io.backend=auto the client runs on epoll: 100,000 messages reach
 *    the test broker, none lost, duplicated or out of order (the log check
 *    of fault_common.h), the statistics name epoll, and the log callback
 *    got exactly one line saying which backend and why (EPERM);
 *  - with io.backend=io_uring client creation fails with IO, the detail
 *    naming the call, the errno and io.backend.
 * Without the filter, io.backend=epoll is used when asked for (same
 * checks), and auto takes io_uring where the kernel allows it.
 *
 * A seccomp filter cannot be removed: Criterion runs each test in a process
 * of its own; the TSan build's stand-in runs every test in one process, so
 * there the tests that install the filter run in a forked child. */
#include "fault_common.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#if defined(__x86_64__)
#define DB_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define DB_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

enum { THREADS = 4, TOTAL = 100000 / FT_SCALE, PER_THREAD = TOTAL / THREADS, PARTS = 4 };

/* ---- the filter ----------------------------------------------------------- */

/* Deny the io_uring system calls with EPERM for every thread of this
 * process and those it starts. 0, or -1 (errno) where seccomp filters
 * cannot be installed. */
static int deny_io_uring(void)
{
#ifdef DB_AUDIT_ARCH
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, DB_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
    };
    struct sock_fprog prog = {.len = (unsigned short)(sizeof f / sizeof f[0]), .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return -1;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
#else
    errno = ENOSYS;
    return -1;
#endif
}

/* Install the filter and prove it works: io_uring_setup now fails with
 * EPERM (else the test would prove nothing). Skips where seccomp is not
 * available. */
static void install_filter(void)
{
    if (deny_io_uring())
        cr_skip_test("cannot install a seccomp filter here: %s", strerror(errno));
    struct {
        uint32_t w[30];
    } params; /* struct io_uring_params: 120 bytes */
    memset(&params, 0, sizeof params);
    errno = 0;
    long rc = syscall(__NR_io_uring_setup, 4, &params);
    cr_assert_eq(rc, -1, "io_uring_setup still works under the filter");
    cr_assert_eq(errno, EPERM, "io_uring_setup: %s", strerror(errno));
}

/* Run @p body in a forked child where the test runner shares one process
 * between tests (the TSan stand-in): the filter must not outlive it. */
static void isolated(void (*body)(void))
{
#ifdef UPULSAR_TSAN_SHIM_CRITERION_H
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        body(); /* a failed assertion exits 1 here */
        fflush(NULL);
        _exit(0);
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child failed (status %d)", st);
#else
    body();
#endif
}

/* ---- the log callback ---------------------------------------------------- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static int backend_lines;
static char backend_line[512];
static upulsar_log_level_t backend_level;

static void log_cb(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)opaque;
    if (strncmp(line, "io backend:", 11))
        return;
    pthread_mutex_lock(&log_mu);
    backend_lines++;
    backend_level = level;
    snprintf(backend_line, sizeof backend_line, "%s", line);
    pthread_mutex_unlock(&log_mu);
}

static void log_reset(void)
{
    pthread_mutex_lock(&log_mu);
    backend_lines = 0;
    backend_line[0] = '\0';
    pthread_mutex_unlock(&log_mu);
}

/* ---- the run ------------------------------------------------------------- */

/* A client of a new broker with @p kv (NULL: defaults, io.backend=auto)
 * sends TOTAL messages over PARTS partitions of @p topic; the log check
 * proves every one stored once, in order, with its id. Then the statistics
 * name @p backend and the log callback got one backend line, which starts
 * with @p line_prefix and contains @p line_has (NULL: nothing more). */
static void send_and_check(const char *topic, const char *const *kv, const char *backend,
                           const char *line_prefix, const char *line_has)
{
    log_reset();
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, kv);
    cr_assert_eq(upulsar_client_set_log_cb(client, log_cb, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_partitions(tb, topic, PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "db", topic, PARTS, NULL);

    char *json = NULL, want[64];
    cr_assert_eq(upulsar_producer_stats_json(p, &json), UPULSAR_OK);
    snprintf(want, sizeof want, "\"io_backend\":\"%s\"", backend);
    cr_assert(strstr(json, want), "statistics do not say %s: %.300s", want, json);
    free(json);

    ft_run_t *run = ft_run_new(p, THREADS, PER_THREAD, 0);
    ft_run_start(run);
    ft_run_join(run);
    cr_assert_eq(atomic_load(&run->refused), 0, "%s", upulsar_last_error());
    cr_assert_eq(ft_collect(run), 0, "futures left pending");
    cr_assert(ft_wait_for(ft_cbs_done, run));
    ft_check_opts_t o = {.topic = topic, .partitions = PARTS};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)TOTAL, "failed futures: %zu", res.failed);
    cr_assert_eq(res.stored, (size_t)TOTAL);
    ft_run_free(run);
    ft_stop_client_and_broker(tb, client);

    /* every thread of the client has ended: no line can still come */
    pthread_mutex_lock(&log_mu);
    int lines = backend_lines;
    upulsar_log_level_t level = backend_level;
    char line[512];
    snprintf(line, sizeof line, "%s", backend_line);
    pthread_mutex_unlock(&log_mu);
    cr_assert_eq(lines, 1, "backend lines: %d (last: %s)", lines, line);
    cr_assert_eq(level, UPULSAR_LOG_INFO, "%s", line);
    cr_assert(!strncmp(line, line_prefix, strlen(line_prefix)), "line: %s", line);
    if (line_has)
        cr_assert(strstr(line, line_has), "line: %s (wanted %s)", line, line_has);
}

/* the tests decide the backend themselves */
static void no_env(void) { unsetenv("UPULSAR_IO_BACKEND"); }

TestSuite(deploy_backend, .init = no_env);

static void auto_denied_body(void)
{
    install_filter();
    send_and_check("denied-auto", NULL, "epoll",
                   "io backend: epoll (io_uring unavailable: io_uring_queue_init: "
                   "Operation not permitted (EPERM",
                   "io.backend=auto");
}

Test(deploy_backend, auto_runs_on_epoll_when_io_uring_is_denied_and_says_why_once,
     .timeout = 300)
{
    isolated(auto_denied_body);
}

static void explicit_denied_body(void)
{
    install_filter();
    upulsar_conf_t *conf = upulsar_conf_new();
    char err[256];
    cr_assert_eq(upulsar_conf_set(conf, "io.backend", "io_uring", err, sizeof err),
                 UPULSAR_CONF_OK, "%s", err);
    upulsar_client_t *client = NULL;
    upulsar_err_t rc = upulsar_client_new(conf, &client);
    char detail[512];
    snprintf(detail, sizeof detail, "%s", upulsar_last_error());
    upulsar_conf_destroy(conf);
    cr_assert_eq(rc, UPULSAR_ERR__IO, "%s: %s", upulsar_err_name(rc), detail);
    cr_assert_null(client);
    cr_assert(strstr(detail, "io_uring_queue_init: Operation not permitted"), "%s", detail);
    cr_assert(strstr(detail, "EPERM"), "%s", detail);
    cr_assert(strstr(detail, "io.backend=epoll"), "%s", detail);
}

Test(deploy_backend, explicit_io_uring_fails_client_creation_naming_errno_when_denied)
{
    isolated(explicit_denied_body);
}

Test(deploy_backend, explicit_epoll_runs_without_a_filter, .timeout = 300)
{
    const char *kv[] = {"io.backend", "epoll", NULL};
    send_and_check("asked-epoll", kv, "epoll", "io backend: epoll (io.backend=epoll)", NULL);
}

Test(deploy_backend, auto_takes_io_uring_where_the_kernel_allows_it, .timeout = 300)
{
    struct {
        uint32_t w[30];
    } params;
    memset(&params, 0, sizeof params);
    long fd = syscall(__NR_io_uring_setup, 4, &params);
    if (fd < 0)
        cr_skip_test("io_uring is not available here: %s", strerror(errno));
    close((int)fd);
    send_and_check("auto-uring", NULL, "io_uring", "io backend: io_uring (io.backend=auto)",
                   NULL);
}

Test(deploy_backend, environment_variable_replaces_auto_but_not_an_explicit_choice)
{
    /* UPULSAR_IO_BACKEND=epoll with auto: epoll; with io.backend=io_uring
     * set explicitly the variable changes nothing; a bad value is refused */
    setenv("UPULSAR_IO_BACKEND", "epoll", 1);
    log_reset();
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    cr_assert_eq(upulsar_client_set_log_cb(client, log_cb, NULL), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "env", "env-auto", 0, NULL);
    ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    ft_stop_client_and_broker(tb, client);
    pthread_mutex_lock(&log_mu);
    cr_assert_eq(backend_lines, 1);
    cr_assert_str_eq(backend_line, "io backend: epoll (UPULSAR_IO_BACKEND=epoll)");
    pthread_mutex_unlock(&log_mu);

    setenv("UPULSAR_IO_BACKEND", "io_uring", 1);
    log_reset();
    tb = ft_broker();
    const char *kv[] = {"io.backend", "epoll", NULL};
    client = ft_client(tb, kv);
    cr_assert_eq(upulsar_client_set_log_cb(client, log_cb, NULL), UPULSAR_OK);
    p = ft_producer(client, "env", "env-explicit", 0, NULL);
    ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    ft_stop_client_and_broker(tb, client);
    pthread_mutex_lock(&log_mu);
    cr_assert_eq(backend_lines, 1);
    cr_assert_str_eq(backend_line, "io backend: epoll (io.backend=epoll)");
    pthread_mutex_unlock(&log_mu);

    setenv("UPULSAR_IO_BACKEND", "kqueue", 1);
    upulsar_client_t *bad = NULL;
    cr_assert_eq(upulsar_client_new(NULL, &bad), UPULSAR_ERR__INVALID_ARG);
    cr_assert(strstr(upulsar_last_error(), "UPULSAR_IO_BACKEND=kqueue"), "%s",
              upulsar_last_error());
    cr_assert_null(bad);
    unsetenv("UPULSAR_IO_BACKEND");
}

Test(deploy_backend, under_valgrind_auto_runs_on_epoll_but_an_explicit_choice_stays)
{
    /* valgrind runs a program with its vgpreload_*.so in LD_PRELOAD; there
     * an io_uring wait would hold valgrind's thread lock and hang every
     * other thread. (Set here only for the client's creation: nothing is
     * loaded or started from it in this process.) */
    const char *old = getenv("LD_PRELOAD");
    char *saved = old ? strdup(old) : NULL;
    setenv("LD_PRELOAD", "/usr/libexec/valgrind/vgpreload_core-amd64-linux.so", 1);
    log_reset();
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    const char *kv[] = {"io.backend", "io_uring", NULL};
    upulsar_conf_t *conf = upulsar_conf_new();
    cr_assert_eq(upulsar_conf_set(conf, "service.url", upulsar_tb_url(tb), NULL, 0),
                 UPULSAR_CONF_OK);
    cr_assert_eq(upulsar_conf_set(conf, kv[0], kv[1], NULL, 0), UPULSAR_CONF_OK);
    upulsar_client_t *explicit_client = NULL;
    upulsar_err_t ee = upulsar_client_new(conf, &explicit_client);
    upulsar_conf_destroy(conf);
    if (saved) {
        setenv("LD_PRELOAD", saved, 1);
        free(saved);
    } else {
        unsetenv("LD_PRELOAD");
    }
    cr_assert_eq(upulsar_client_set_log_cb(client, log_cb, NULL), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "vg", "valgrind-auto", 0, NULL);
    ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_client_destroy(client);
    pthread_mutex_lock(&log_mu);
    cr_assert_eq(backend_lines, 1);
    cr_assert(!strncmp(backend_line, "io backend: epoll (under valgrind", 33), "%s",
              backend_line);
    pthread_mutex_unlock(&log_mu);
    /* io.backend=io_uring is not overridden: it runs on io_uring where the
     * kernel allows it, or fails naming why */
    if (ee == UPULSAR_OK) {
        upulsar_producer_t *xp = ft_producer(explicit_client, "vgx", "valgrind-explicit", 0, NULL);
        char *json = NULL;
        cr_assert_eq(upulsar_producer_stats_json(xp, &json), UPULSAR_OK);
        cr_assert(strstr(json, "\"io_backend\":\"io_uring\""), "%.300s", json);
        free(json);
        cr_assert_eq(upulsar_producer_stop(xp, 10000), UPULSAR_OK);
        upulsar_client_destroy(explicit_client);
    } else {
        cr_assert_eq(ee, UPULSAR_ERR__IO, "%s", upulsar_err_name(ee));
    }
    upulsar_tb_stop(tb);
}
