/* test_fault_log.c -- the log callback shows what fails without a failed
 * future: a connection dropped for bytes that are not Pulsar frames
 * (WARNING, naming the broker and the reason, one line per connection the
 * bytes reached), the producer re-created (INFO), re-creations refused
 * (WARNING each: refused authentication is retried) and a partition group
 * failed by a terminal refusal (WARNING, then ERR, once); tokens never
 * appear in a line; NULL restores the default (the same kind of line goes
 * to stderr) and the callback is not called any more, down to the client's
 * end.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault_common.h"

TestSuite(fault_log, .timeout = 120);

#define TOKEN "eyJhbGciOiJIUzI1NiJ9.log-test-token.sig"

/* Every line the callback received, in order (no cap: a line that came
 * late is never hidden by a full buffer). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char **lines;
static int *levels;
static int nlines, cap, oom;

static void on_log(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)opaque;
    pthread_mutex_lock(&mu);
    if (nlines == cap) {
        int ncap = cap ? 2 * cap : 64;
        char **nl = realloc(lines, (size_t)ncap * sizeof *nl);
        if (nl)
            lines = nl;
        int *nv = realloc(levels, (size_t)ncap * sizeof *nv);
        if (nv)
            levels = nv;
        if (nl && nv)
            cap = ncap;
    }
    char *copy = nlines < cap ? strdup(line) : NULL;
    if (copy) {
        lines[nlines] = copy;
        levels[nlines++] = (int)level;
    } else {
        oom = 1; /* fails the test: no line may go unseen */
    }
    pthread_mutex_unlock(&mu);
}

static void free_lines(void)
{
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nlines; i++)
        free(lines[i]);
    free(lines);
    free(levels);
    lines = NULL;
    levels = NULL;
    nlines = cap = 0;
    pthread_mutex_unlock(&mu);
}

typedef struct {
    int level;
    const char *a, *b; /* substrings, b may be NULL */
    int n;             /* for has_lines: how many lines must match */
} want_t;

static int matches(int i, const want_t *w)
{
    return levels[i] == w->level && strstr(lines[i], w->a) &&
           (!w->b || strstr(lines[i], w->b));
}

/* Index of the first line matching @p w, -1 if none. */
static int first_line(const want_t *w)
{
    int at = -1;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nlines && at < 0; i++)
        if (matches(i, w))
            at = i;
    pthread_mutex_unlock(&mu);
    return at;
}

static int count_matching(const want_t *w)
{
    int n = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nlines; i++)
        n += matches(i, w);
    pthread_mutex_unlock(&mu);
    return n;
}

static int has_line(void *arg) { return first_line(arg) >= 0; }

static int has_lines(void *arg)
{
    want_t *w = arg;
    return count_matching(w) >= w->n;
}

static int count_lines(void)
{
    pthread_mutex_lock(&mu);
    int n = nlines + oom;
    pthread_mutex_unlock(&mu);
    return n;
}

/* ---- stderr, where the default sink writes --------------------------- */

typedef struct {
    int fd;    /* the file stderr writes to meanwhile */
    int saved; /* the real stderr */
} capture_t;

static void capture_stderr(capture_t *c)
{
    char path[] = "/tmp/upulsar-log-XXXXXX";
    c->fd = mkstemp(path);
    cr_assert_geq(c->fd, 0);
    unlink(path);
    fflush(stderr);
    c->saved = dup(2);
    cr_assert_geq(c->saved, 0);
    cr_assert_geq(dup2(c->fd, 2), 0);
}

static void restore_stderr(capture_t *c)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
}

/* Lines of the captured file containing both @p a and @p b. */
static int captured_count(const capture_t *c, const char *a, const char *b)
{
    struct stat st;
    if (fstat(c->fd, &st) != 0 || st.st_size == 0)
        return 0;
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return 0;
    ssize_t got = pread(c->fd, buf, (size_t)st.st_size, 0);
    int n = 0;
    if (got > 0) {
        buf[got] = '\0';
        for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l;
             l = strtok_r(NULL, "\n", &save))
            n += strstr(l, a) && strstr(l, b);
    }
    free(buf);
    return n;
}

typedef struct {
    const capture_t *cap;
    const char *a, *b;
    int want;      /* lines expected in the file */
    int cb_before; /* callback lines when the capture began */
} stderr_wait_t;

/* The lines arrived on stderr, or (a broken promise, reported by the
 * caller) the callback got a line after all. */
static int stderr_has_lines_or_cb_called(void *arg)
{
    stderr_wait_t *w = arg;
    return captured_count(w->cap, w->a, w->b) >= w->want || count_lines() > w->cb_before;
}

typedef struct {
    upulsar_producer_t *p;
    uint64_t reconnects;
} recreated_t;

static int recreated_and_ready(void *arg)
{
    recreated_t *r = arg;
    return ft_reconnects(r->p) > r->reconnects && ft_all_ready(r->p);
}

Test(fault_log, failures_without_a_failed_future_are_logged)
{
    const char *tokens[] = {TOKEN};
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.auth_tokens = tokens;
    o.auth_tokens_cnt = 1;
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    const char *kv[] = {"auth.token", TOKEN, NULL};
    upulsar_client_t *c = ft_client(tb, kv);
    cr_assert_eq(upulsar_client_set_log_cb(c, on_log, NULL), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(c, "lg", "logged", 0, NULL);
    ft_send_ok(p, NULL);

    /* bytes that are not a frame (a length over any limit): each connection
     * they reach is dropped, with one line, then the producer is re-made */
    static const uint8_t junk[] = {0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    const char *hp = strstr(upulsar_tb_url(tb), "://") + 3;
    char dropped_at[300];
    snprintf(dropped_at, sizeof dropped_at, "connection to %s dropped", hp);
    int injected = upulsar_tb_inject_raw(tb, "logged", junk, sizeof junk);
    cr_assert_geq(injected, 1, "the bytes reached no connection: no fault happened");
    want_t dropped = {UPULSAR_LOG_WARNING, dropped_at, "FRAME_TOO_LARGE", injected};
    cr_assert(ft_wait_for(has_lines, &dropped), "%d of %d dropped connections logged",
              count_matching(&dropped), injected);
    want_t recreated = {UPULSAR_LOG_INFO, "producer lg re-created", "logged", 1};
    cr_assert(ft_wait_for(has_line, &recreated), "no line about the re-creation");
    ft_send_ok(p, NULL);

    /* the broker stops accepting the token: each refused re-creation is
     * logged (a producer that worked keeps being retried) */
    const char *other[] = {"eyJhbGciOiJIUzI1NiJ9.another.sig"};
    cr_assert_eq(upulsar_tb_set_tokens(tb, other, 1), UPULSAR_OK);
    cr_assert_geq(upulsar_tb_drop_connections(tb, NULL), 1, "no connection to drop");
    want_t auth_refused = {UPULSAR_LOG_WARNING, "UPULSAR_ERR_AUTHENTICATION_ERROR", "logged", 1};
    cr_assert(ft_wait_for(has_line, &auth_refused), "no line about the refused re-creation");
    cr_assert_eq(upulsar_tb_set_tokens(tb, tokens, 1), UPULSAR_OK);
    ft_send_ok(p, NULL);

    /* a refusal that is terminal (the topic was terminated): the group
     * fails, once */
    enum { SE_TERM = UPULSAR_ERR_TOPIC_TERMINATED - UPULSAR_ERR_BROKER_BASE };
    cr_assert_eq(upulsar_tb_fail_producers(tb, "logged", 1, SE_TERM), UPULSAR_OK);
    cr_assert_geq(upulsar_tb_drop_connections(tb, NULL), 1, "no connection to drop");
    want_t failed = {UPULSAR_LOG_ERR, "partition group failed", "logged", 1};
    cr_assert(ft_wait_for(has_line, &failed), "no line about the failed group");
    want_t refused = {UPULSAR_LOG_WARNING, "re-creating producer lg failed", "logged", 1};
    int refused_at = first_line(&refused), failed_at = first_line(&failed);
    cr_assert_geq(refused_at, 0, "no line about the refused re-creation");
    cr_assert_lt(refused_at, failed_at, "the group failed before a re-creation was refused");
    cr_assert_eq(count_matching(&failed), 1, "the group failed more than once");
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    cr_assert_geq(st.auth_failed, 1, "the broker refused no token: no fault happened");

    /* NULL: back to the default, stderr; the callback is not called any
     * more. A new producer (the token accepted again) gets the same junk:
     * its lines now go to stderr, none to the callback, up to the client's
     * destruction. */
    cr_assert_eq(upulsar_client_set_log_cb(c, NULL, NULL), UPULSAR_OK);
    int n = count_lines();
    capture_t err_file;
    capture_stderr(&err_file);
    upulsar_producer_stop(p, 5000);
    cr_assert_eq(upulsar_tb_set_tokens(tb, tokens, 1), UPULSAR_OK);
    upulsar_producer_t *p2 = ft_producer(c, "lg2", "logged2", 0, NULL);
    ft_send_ok(p2, NULL);
    recreated_t rc = {p2, ft_reconnects(p2)};
    int injected2 = upulsar_tb_inject_raw(tb, "logged2", junk, sizeof junk);
    stderr_wait_t sw = {&err_file, dropped_at, "FRAME_TOO_LARGE", injected2, n};
    int seen = injected2 >= 1 && ft_wait_for(stderr_has_lines_or_cb_called, &sw);
    int on_stderr = captured_count(&err_file, dropped_at, "FRAME_TOO_LARGE");
    /* the producer comes back: its INFO line (not written to stderr) was
     * decided by then */
    int back = seen && ft_wait_for(recreated_and_ready, &rc);
    restore_stderr(&err_file);
    close(err_file.fd);
    cr_assert_geq(injected2, 1, "the bytes reached no connection: no fault happened");
    cr_assert(seen, "the dropped connection was never logged");
    cr_assert_eq(count_lines(), n, "the callback was called after it was removed");
    cr_assert_geq(on_stderr, injected2, "%d of %d dropped connections on stderr", on_stderr,
                  injected2);
    cr_assert(back, "the producer was not re-created");
    ft_send_ok(p2, NULL);
    cr_assert_eq(upulsar_producer_stop(p2, 5000), UPULSAR_OK);
    cr_assert_eq(upulsar_client_set_log_cb(NULL, on_log, NULL), UPULSAR_ERR__INVALID_ARG);
    upulsar_client_destroy(c);
    cr_assert_eq(count_lines(), n, "the callback was called after it was removed");

    pthread_mutex_lock(&mu);
    cr_assert_not(oom, "out of memory keeping the log lines");
    for (int i = 0; i < nlines; i++)
        cr_assert_null(strstr(lines[i], TOKEN), "a token in the log: %s", lines[i]);
    pthread_mutex_unlock(&mu);
    free_lines();
    upulsar_tb_stop(tb);
}
