/* test_fault_log.c -- the log callback shows what fails without a failed
 * future: a connection dropped for bytes that are not Pulsar frames
 * (WARNING, naming the broker and the reason), the producer re-created
 * (INFO), re-creations refused (WARNING each: refused authentication is
 * retried) and a partition group failed by a terminal refusal (WARNING,
 * then ERR); tokens never appear in a line; NULL restores the
 * default (stderr) and the callback is not called any more.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

TestSuite(fault_log, .timeout = 60);

#define TOKEN "eyJhbGciOiJIUzI1NiJ9.log-test-token.sig"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char lines[64][512];
static int levels[64];
static int nlines;

static void on_log(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)opaque;
    pthread_mutex_lock(&mu);
    if (nlines < 64) {
        snprintf(lines[nlines], sizeof lines[0], "%s", line);
        levels[nlines++] = (int)level;
    }
    pthread_mutex_unlock(&mu);
}

typedef struct {
    int level;
    const char *a, *b; /* substrings, b may be NULL */
} want_t;

static int has_line(void *arg)
{
    want_t *w = arg;
    int found = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nlines && !found; i++)
        found = levels[i] == w->level && strstr(lines[i], w->a) &&
                (!w->b || strstr(lines[i], w->b));
    pthread_mutex_unlock(&mu);
    return found;
}

static int count_lines(void)
{
    pthread_mutex_lock(&mu);
    int n = nlines;
    pthread_mutex_unlock(&mu);
    return n;
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

    /* bytes that are not a frame: the connection is dropped, then re-made */
    static const uint8_t junk[] = {0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    cr_assert_geq(upulsar_tb_inject_raw(tb, "logged", junk, sizeof junk), 1);
    const char *hp = strstr(upulsar_tb_url(tb), "://") + 3;
    want_t dropped = {UPULSAR_LOG_WARNING, "dropped", hp};
    cr_assert(ft_wait_for(has_line, &dropped), "no line about the dropped connection");
    want_t recreated = {UPULSAR_LOG_INFO, "re-created", "logged"};
    cr_assert(ft_wait_for(has_line, &recreated), "no line about the re-creation");
    ft_send_ok(p, NULL);

    /* the broker stops accepting the token: each refused re-creation is
     * logged (a producer that worked keeps being retried) */
    const char *other[] = {"eyJhbGciOiJIUzI1NiJ9.another.sig"};
    cr_assert_eq(upulsar_tb_set_tokens(tb, other, 1), UPULSAR_OK);
    cr_assert_geq(upulsar_tb_drop_connections(tb, NULL), 1);
    want_t refused = {UPULSAR_LOG_WARNING, "UPULSAR_ERR_AUTHENTICATION_ERROR", "logged"};
    cr_assert(ft_wait_for(has_line, &refused), "no line about the refused re-creation");
    cr_assert_eq(upulsar_tb_set_tokens(tb, tokens, 1), UPULSAR_OK);
    ft_send_ok(p, NULL);

    /* a refusal that is terminal (the topic was terminated): the group
     * fails */
    enum { SE_TERM = UPULSAR_ERR_TOPIC_TERMINATED - UPULSAR_ERR_BROKER_BASE };
    cr_assert_eq(upulsar_tb_fail_producers(tb, "logged", 1, SE_TERM), UPULSAR_OK);
    cr_assert_geq(upulsar_tb_drop_connections(tb, NULL), 1);
    want_t failed = {UPULSAR_LOG_ERR, "partition group failed", "logged"};
    cr_assert(ft_wait_for(has_line, &failed), "no line about the failed group");
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nlines; i++)
        cr_assert_null(strstr(lines[i], TOKEN), "a token in the log: %s", lines[i]);
    pthread_mutex_unlock(&mu);

    /* NULL: back to stderr, the callback is not called any more */
    cr_assert_eq(upulsar_client_set_log_cb(c, NULL, NULL), UPULSAR_OK);
    int n = count_lines();
    upulsar_producer_stop(p, 5000);
    cr_assert_eq(upulsar_tb_set_tokens(tb, tokens, 1), UPULSAR_OK);
    cr_assert_geq(upulsar_tb_inject_raw(tb, NULL, junk, sizeof junk), 0);
    ft_pause_ms(100);
    cr_assert_eq(count_lines(), n);
    cr_assert_eq(upulsar_client_set_log_cb(NULL, on_log, NULL), UPULSAR_ERR__INVALID_ARG);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}
