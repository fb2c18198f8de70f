/* test_deploy_startup.c -- a producer that cannot start says so at once and
 * says why: every failed connection attempt is logged when it fails (the
 * address and the system's reason), connection.timeout.ms bounds one
 * attempt (TCP connect, TLS handshake and CONNECT/CONNECTED), and the
 * common mistakes in a service URL fail the start after one attempt with a
 * hint: a TLS port behind pulsar://, an HTTP port, pulsar+ssl:// to a plain
 * port. Also through upulsar-produce, whose stderr shows the same lines.
 *
 * Nothing here measures time: "at once" is shown by order (the lines were
 * logged before the start returned) and by counting (connections the
 * server saw, lines logged, one per attempt). */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tls_certs.h"
#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

#define HINT_TLS "looks like TLS: use pulsar+ssl://"
#define HINT_HTTP "this is an HTTP port (the web service?)"
#define HINT_PLAIN "the server does not speak TLS: use pulsar://"

static tls_certs_t certs;
static int have_certs;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* the servers write to clients that may have gone */
    have_certs = tls_certs_make(&certs) == 0;
}
static void teardown(void)
{
    if (have_certs)
        tls_certs_remove(&certs);
}
TestSuite(deploy_startup, .init = setup, .fini = teardown, .timeout = 120);

/* ---- the log callback --------------------------------------------------- */

/* Every line the client logged, and whether the start had returned then. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    int level;
    int after_return;
    char text[512];
} lines[512];
static int nlines;
static atomic_int start_returned;

static void on_log(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)opaque;
    pthread_mutex_lock(&mu);
    if (nlines < (int)(sizeof lines / sizeof lines[0])) {
        lines[nlines].level = (int)level;
        lines[nlines].after_return = atomic_load(&start_returned);
        snprintf(lines[nlines].text, sizeof lines[0].text, "%s", line);
        nlines++;
    }
    pthread_mutex_unlock(&mu);
}

/* Lines naming @p addr ("host:port"): each must be a WARNING logged before
 * the start returned and contain @p must (when not NULL). Returns their
 * count. */
static int attempt_lines(const char *addr, const char *must)
{
    int n = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nlines; i++) {
        if (!strstr(lines[i].text, addr))
            continue;
        n++;
        cr_assert_eq(lines[i].level, UPULSAR_LOG_WARNING, "%s", lines[i].text);
        cr_assert_not(lines[i].after_return, "logged only after the start returned: %s",
                      lines[i].text);
        if (must)
            cr_assert(strstr(lines[i].text, must), "'%s' not in: %s", must, lines[i].text);
    }
    pthread_mutex_unlock(&mu);
    return n;
}

/* A client of @p url logging to on_log, with short backoff so that a start
 * makes several attempts, and @p kv (NULL-terminated pairs) on top. */
static upulsar_client_t *client_of(const char *url, const char *const *kv)
{
    pthread_mutex_lock(&mu);
    nlines = 0;
    pthread_mutex_unlock(&mu);
    atomic_store(&start_returned, 0);
    upulsar_conf_t *conf = upulsar_conf_new();
    cr_assert_not_null(conf);
    const char *base[] = {"service.url", url, "backoff.initial.ms", "10", "backoff.max.ms", "100",
                          "operation.timeout.ms", "3000", NULL};
    char err[256];
    for (int i = 0; base[i]; i += 2)
        cr_assert_eq(upulsar_conf_set(conf, base[i], base[i + 1], err, sizeof err),
                     UPULSAR_CONF_OK, "%s", err);
    for (int i = 0; kv && kv[i]; i += 2)
        cr_assert_eq(upulsar_conf_set(conf, kv[i], kv[i + 1], err, sizeof err),
                     UPULSAR_CONF_OK, "%s", err);
    upulsar_client_t *c = NULL;
    cr_assert_eq(upulsar_client_new(conf, &c), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_conf_destroy(conf);
    cr_assert_eq(upulsar_client_set_log_cb(c, on_log, NULL), UPULSAR_OK);
    return c;
}

/* upulsar_producer_start() that must fail; *@p why gets its detail. */
static upulsar_err_t start_fails(upulsar_client_t *c, int partitions, char *why, size_t cap)
{
    upulsar_producer_t *p = NULL;
    upulsar_err_t err = upulsar_producer_start(c, NULL, "startup", partitions, NULL, &p);
    atomic_store(&start_returned, 1);
    snprintf(why, cap, "%s", upulsar_last_error());
    cr_assert_neq(err, UPULSAR_OK, "the start succeeded");
    cr_assert_null(p);
    return err;
}

/* ---- servers ------------------------------------------------------------ */

static int listen_any(int *port, int listening)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    if (listening)
        cr_assert_eq(listen(fd, 64), 0);
    socklen_t l = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

enum srv_kind {
    SRV_SILENT, /* accepts, never answers, keeps the connection */
    SRV_REPLY,  /* answers the first bytes with reply[], then closes */
    SRV_TLS,    /* an OpenSSL server (answering reply[] inside TLS, if set) */
};

typedef struct {
    enum srv_kind kind;
    const uint8_t *reply;
    size_t reply_len;
    int lfd, port;
    atomic_int stop;
    atomic_int conns;        /* connections accepted */
    atomic_int hellos;       /* SRV_TLS: ClientHellos received */
    int fds[256];            /* SRV_SILENT: the connections kept */
    SSL_CTX *ctx;
    pthread_t th;
} srv_t;

static int on_hello(SSL *ssl, int *al, void *arg)
{
    (void)ssl;
    (void)al;
    atomic_fetch_add(&((srv_t *)arg)->hellos, 1);
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* recv with a bound (the peer may never send) */
static ssize_t recv_some(int fd, void *buf, size_t cap)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1)
        return -1;
    return recv(fd, buf, cap, 0);
}

static void *serve(void *a)
{
    srv_t *s = a;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 20) != 1)
            continue;
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        int n = atomic_load(&s->conns);
        atomic_store(&s->conns, n + 1);
        if (s->kind == SRV_SILENT) {
            if (n < (int)(sizeof s->fds / sizeof s->fds[0]))
                s->fds[n] = fd;
            else
                close(fd);
        } else if (s->kind == SRV_REPLY) {
            uint8_t buf[4096];
            if (recv_some(fd, buf, sizeof buf) > 0) {
                ssize_t w = send(fd, s->reply, s->reply_len, MSG_NOSIGNAL);
                (void)w;
            }
            shutdown(fd, SHUT_WR);
            while (recv_some(fd, buf, sizeof buf) > 0) {
            }
            close(fd);
        } else {
            SSL *ssl = SSL_new(s->ctx);
            SSL_set_fd(ssl, fd);
            if (SSL_accept(ssl) == 1) {
                char buf[4096];
                if (s->reply && SSL_read(ssl, buf, sizeof buf) > 0)
                    SSL_write(ssl, s->reply, (int)s->reply_len);
                SSL_shutdown(ssl);
            }
            ERR_clear_error();
            SSL_free(ssl);
            close(fd);
        }
    }
    return NULL;
}

static void srv_start(srv_t *s, enum srv_kind kind)
{
    s->kind = kind;
    s->lfd = listen_any(&s->port, 1);
    if (kind == SRV_TLS) {
        cr_assert(have_certs, "openssl CLI failed: no certificates");
        s->ctx = SSL_CTX_new(TLS_server_method());
        cr_assert_not_null(s->ctx);
        cr_assert_eq(SSL_CTX_use_certificate_chain_file(s->ctx, certs.srv_cert), 1);
        cr_assert_eq(SSL_CTX_use_PrivateKey_file(s->ctx, certs.srv_key, SSL_FILETYPE_PEM), 1);
        SSL_CTX_set_client_hello_cb(s->ctx, on_hello, s);
    }
    cr_assert_eq(pthread_create(&s->th, NULL, serve, s), 0);
}

static void srv_stop(srv_t *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->th, NULL);
    close(s->lfd);
    if (s->ctx)
        SSL_CTX_free(s->ctx);
}

/* SRV_SILENT: close the connections kept. */
static void srv_close_kept(srv_t *s)
{
    for (int i = 0; i < atomic_load(&s->conns) && i < 256; i++)
        close(s->fds[i]);
}

/* SRV_SILENT: whether the client closed connection @p i (it sent its bytes,
 * then EOF). */
static int closed_by_client(srv_t *s, int i)
{
    uint8_t buf[4096];
    for (;;) {
        ssize_t n = recv_some(s->fds[i], buf, sizeof buf);
        if (n == 0)
            return 1;
        if (n < 0)
            return 0;
    }
}

/* ---- connection refused and connections never answered ------------------ */

/* A closed port (bound, not listening): each refused attempt is logged
 * when it fails, naming the address and the system's reason, and the
 * start ends with that reason. The refusal stays retriable: more than one
 * attempt is made before operation.timeout.ms. */
static void refused(int partitions)
{
    int port;
    int hold = listen_any(&port, 0);
    char url[64], addr[64], why[512];
    snprintf(url, sizeof url, "pulsar://127.0.0.1:%d", port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    upulsar_client_t *c = client_of(url, NULL);
    upulsar_err_t err = start_fails(c, partitions, why, sizeof why);
    cr_assert_eq(err, UPULSAR_ERR__CONNECT, "%s: %s", upulsar_err_name(err), why);
    cr_assert(strstr(why, addr), "the error names the address: %s", why);
    cr_assert(strstr(why, strerror(ECONNREFUSED)), "the error gives the reason: %s", why);
    int n = attempt_lines(addr, strerror(ECONNREFUSED));
    cr_assert_geq(n, 2, "%d attempt(s) logged before the start returned: each attempt is "
                  "logged, not only the last", n);
    upulsar_client_destroy(c);
    close(hold);
}

Test(deploy_startup, refused_attempts_are_each_logged_before_the_start_returns)
{
    refused(0); /* partitions asked from the broker first, as upulsar-produce does */
}

Test(deploy_startup, refused_attempts_are_each_logged_with_known_partitions)
{
    refused(1); /* straight to the lookup of each partition */
}

/* When the next attempt could only come after operation.timeout.ms, the
 * start does not wait for the deadline doing nothing: it fails with the
 * last attempt's reason after that one attempt (the backoff here is as long
 * as the start's whole budget, 10 minutes: a start that waited would run
 * into the test's timeout). */
static void no_time_for_another_attempt(int partitions)
{
    int port;
    int hold = listen_any(&port, 0);
    char url[64], addr[64], why[512];
    snprintf(url, sizeof url, "pulsar://127.0.0.1:%d", port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    const char *kv[] = {"operation.timeout.ms", "600000", "backoff.initial.ms", "600000",
                        "backoff.max.ms", "600000", NULL};
    upulsar_client_t *c = client_of(url, kv);
    upulsar_err_t err = start_fails(c, partitions, why, sizeof why);
    cr_assert_eq(err, UPULSAR_ERR__CONNECT, "%s: %s", upulsar_err_name(err), why);
    cr_assert(strstr(why, strerror(ECONNREFUSED)), "%s", why);
    cr_assert_eq(attempt_lines(addr, strerror(ECONNREFUSED)), 1);
    upulsar_client_destroy(c);
    close(hold);
}

Test(deploy_startup, no_time_left_for_another_attempt_fails_the_start_at_once)
{
    no_time_for_another_attempt(0);
}

Test(deploy_startup, no_time_left_for_another_attempt_fails_the_start_at_once_known_partitions)
{
    no_time_for_another_attempt(1);
}

/* A server that accepts and never answers: connection.timeout.ms ends each
 * attempt (the client closes it), the next one follows, and each is logged
 * before the start returns; with the default connection.timeout.ms (10 s)
 * the 3 s start would fit one attempt only. */
static void silent(const char *scheme, const char *must)
{
    srv_t s = {0};
    srv_start(&s, SRV_SILENT);
    char url[80], addr[64], why[512];
    snprintf(url, sizeof url, "%s://127.0.0.1:%d", scheme, s.port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s.port);
    const char *kv[] = {"connection.timeout.ms", "100", "tls.allow.insecure", "true", NULL};
    upulsar_client_t *c = client_of(url, kv);
    upulsar_err_t err = start_fails(c, 0, why, sizeof why);
    cr_assert_eq(err, UPULSAR_ERR__TIMED_OUT, "%s: %s", upulsar_err_name(err), why);
    cr_assert(strstr(why, addr), "%s", why);
    upulsar_client_destroy(c);
    srv_stop(&s);
    int conns = atomic_load(&s.conns);
    cr_assert_geq(conns, 2, "one attempt was not bounded by connection.timeout.ms");
    for (int i = 0; i < conns - 1; i++)
        cr_assert(closed_by_client(&s, i), "attempt %d was not given up by the client", i);
    srv_close_kept(&s);
    int n = attempt_lines(addr, must);
    cr_assert_eq(n, conns, "%d lines for %d attempts", n, conns);
}

Test(deploy_startup, connection_timeout_bounds_the_connect_exchange_and_each_attempt_is_logged)
{
    silent("pulsar", "connection.timeout.ms");
}

Test(deploy_startup, connection_timeout_bounds_the_tls_handshake_and_each_attempt_is_logged)
{
    silent("pulsar+ssl", "connection.timeout.ms");
}

/* ---- the wrong kind of port --------------------------------------------- */

/* Start against @p url; it must fail with @p want after exactly one attempt
 * (one line naming the address), the hint in the error and in the line. */
static void one_attempt_with_hint(const char *url, const char *addr, upulsar_err_t want,
                                  const char *hint)
{
    char why[512];
    const char *kv[] = {"tls.allow.insecure", "true", NULL};
    upulsar_client_t *c = client_of(url, kv);
    upulsar_err_t err = start_fails(c, 0, why, sizeof why);
    cr_assert_eq(err, want, "%s: %s", upulsar_err_name(err), why);
    cr_assert(strstr(why, hint), "no hint in: %s", why);
    cr_assert(strstr(why, addr), "the error names the address: %s", why);
    cr_assert_eq(upulsar_err_is_retriable(err), 0, "a wrong URL does not fix itself");
    cr_assert_eq(attempt_lines(addr, hint), 1, "not exactly one attempt");
    upulsar_client_destroy(c);
}

/* An OpenSSL server (it drops what is not TLS without a word, as TLS
 * servers do) behind a pulsar:// URL. */
Test(deploy_startup, tls_server_behind_a_pulsar_url_fails_at_once_saying_use_pulsar_ssl)
{
    srv_t s = {0};
    srv_start(&s, SRV_TLS);
    char url[64], addr[64];
    snprintf(url, sizeof url, "pulsar://127.0.0.1:%d", s.port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s.port);
    one_attempt_with_hint(url, addr, UPULSAR_ERR__TLS, HINT_TLS);
    srv_stop(&s);
    int conns = atomic_load(&s.conns), hellos = atomic_load(&s.hellos);
    cr_assert_eq(conns - hellos, 1, "%d Pulsar connection attempts (%d connections, %d of "
                 "them TLS)", conns - hellos, conns, hellos);
}

/* A server that answers the CONNECT with a TLS alert record. */
Test(deploy_startup, tls_record_where_a_frame_was_expected_fails_at_once_saying_use_pulsar_ssl)
{
    static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46};
    srv_t s = {.reply = alert, .reply_len = sizeof alert};
    srv_start(&s, SRV_REPLY);
    char url[64], addr[64];
    snprintf(url, sizeof url, "pulsar://127.0.0.1:%d", s.port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s.port);
    one_attempt_with_hint(url, addr, UPULSAR_ERR__TLS, HINT_TLS);
    srv_stop(&s);
    cr_assert_eq(atomic_load(&s.conns), 1);
}

static const char HTTP_400[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 11\r\nConnection: close\r\n\r\nBad Request";

Test(deploy_startup, http_port_fails_at_once_naming_the_web_service)
{
    srv_t s = {.reply = (const uint8_t *)HTTP_400, .reply_len = sizeof HTTP_400 - 1};
    srv_start(&s, SRV_REPLY);
    char url[64], addr[64];
    snprintf(url, sizeof url, "pulsar://127.0.0.1:%d", s.port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s.port);
    one_attempt_with_hint(url, addr, UPULSAR_ERR__INVALID_URL, HINT_HTTP);
    srv_stop(&s);
    cr_assert_eq(atomic_load(&s.conns), 1);
}

/* pulsar+ssl:// to an HTTPS port: TLS works, the answer inside is HTTP. */
Test(deploy_startup, https_port_fails_at_once_naming_the_web_service)
{
    srv_t s = {.reply = (const uint8_t *)HTTP_400, .reply_len = sizeof HTTP_400 - 1};
    srv_start(&s, SRV_TLS);
    char url[64], addr[64];
    snprintf(url, sizeof url, "pulsar+ssl://127.0.0.1:%d", s.port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s.port);
    one_attempt_with_hint(url, addr, UPULSAR_ERR__INVALID_URL, HINT_HTTP);
    srv_stop(&s);
    cr_assert_eq(atomic_load(&s.conns), 1);
    cr_assert_eq(atomic_load(&s.hellos), 1);
}

Test(deploy_startup, pulsar_ssl_url_to_a_plain_broker_fails_at_once_saying_use_pulsar)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    const char *plain = upulsar_tb_url(tb); /* pulsar://host:port */
    const char *hp = strstr(plain, "://");
    cr_assert_not_null(hp);
    char url[300], addr[280];
    snprintf(addr, sizeof addr, "%s", hp + 3);
    snprintf(url, sizeof url, "pulsar+ssl://%s", addr);
    one_attempt_with_hint(url, addr, UPULSAR_ERR__TLS, HINT_PLAIN);
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    cr_assert_eq(st.partition_lookups + st.lookups, 0, "a request reached the broker");
    upulsar_tb_stop(tb);
}

/* ---- through upulsar-produce -------------------------------------------- */

/* The CLI next to this test program (both are built into the same
 * directory). */
static void cli_path(char *out, size_t cap)
{
#ifdef UPULSAR_CLI_PATH
    snprintf(out, cap, "%s", UPULSAR_CLI_PATH);
#else
    char self[PATH_MAX - 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert_gt(n, 0);
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    cr_assert_not_null(slash);
    *slash = '\0';
    snprintf(out, cap, "%s/upulsar-produce", self);
#endif
    cr_assert_eq(access(out, X_OK), 0, "%s: %s", out, strerror(errno));
}

extern char **environ;

/* Run `echo hi | upulsar-produce -t x -b URL -X ...`; returns its exit
 * status and its stderr (malloc'd) in *@p err. */
static int run_cli(const char *url, char **err)
{
    char path[PATH_MAX], errfile[] = "/tmp/upulsar-cli-err-XXXXXX";
    cli_path(path, sizeof path);
    int efd = mkstemp(errfile);
    cr_assert_geq(efd, 0);
    int in[2];
    cr_assert_eq(pipe(in), 0);
    const char *argv[] = {path, "-t", "x", "-b", url, "-X", "operation.timeout.ms=3000",
                          "-X", "backoff.initial.ms=10", "-X", "backoff.max.ms=100", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, efd, 2);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    pid_t pid;
    int rc = posix_spawn(&pid, path, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "%s", strerror(rc));
    close(in[0]);
    cr_assert_eq(write(in[1], "hi\n", 3), 3);
    close(in[1]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        cr_assert_eq(errno, EINTR);
    off_t len = lseek(efd, 0, SEEK_END);
    cr_assert_geq(len, 0);
    *err = calloc(1, (size_t)len + 1);
    cr_assert_not_null(*err);
    cr_assert_eq(pread(efd, *err, (size_t)len, 0), len);
    close(efd);
    unlink(errfile);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Lines of @p text containing both @p a and @p b, before the first line
 * containing @p end (which must be there). */
static int lines_before(const char *text, const char *a, const char *b, const char *end)
{
    int n = 0;
    for (const char *l = text; *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)len, l);
        if (strstr(line, end))
            return n;
        if (strstr(line, a) && strstr(line, b))
            n++;
        l += len + (nl ? 1 : 0);
    }
    cr_assert_fail("no line with '%s' in:\n%s", end, text);
    return -1;
}

Test(deploy_startup, cli_shows_each_refused_attempt_before_it_gives_up)
{
    int port;
    int hold = listen_any(&port, 0);
    char url[64], addr[64], *err = NULL;
    snprintf(url, sizeof url, "pulsar://127.0.0.1:%d", port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    int status = run_cli(url, &err);
    close(hold);
    cr_assert_eq(status, 1, "exit %d: %s", status, err);
    int n = lines_before(err, addr, strerror(ECONNREFUSED), "cannot produce to 'x'");
    cr_assert_geq(n, 2, "%d attempt line(s) before the final error:\n%s", n, err);
    cr_assert(strstr(err, "is a broker running there? (--embedded"), "%s", err);
    free(err);
}

Test(deploy_startup, cli_names_the_http_port)
{
    srv_t s = {.reply = (const uint8_t *)HTTP_400, .reply_len = sizeof HTTP_400 - 1};
    srv_start(&s, SRV_REPLY);
    char url[64], *err = NULL;
    snprintf(url, sizeof url, "pulsar://127.0.0.1:%d", s.port);
    int status = run_cli(url, &err);
    srv_stop(&s);
    cr_assert_eq(status, 1, "exit %d: %s", status, err);
    cr_assert(strstr(err, HINT_HTTP), "%s", err);
    cr_assert(strstr(err, "cannot produce to 'x'"), "%s", err);
    cr_assert_null(strstr(err, "is a broker running"), "%s", err);
    cr_assert_eq(atomic_load(&s.conns), 1, "%s", err);
    free(err);
}
