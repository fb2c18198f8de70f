/* test_fault_auth_refresh.c -- a producer that has worked survives refused
 * authentication or authorization: its re-creation is retried with backoff
 * (each refusal logged as a WARNING naming the error, never the token)
 * until the token is fixed, and every message sent before and during the
 * outage is stored exactly once, in order; messages that outlive
 * send.timeout.ms during the outage fail with MSG_TIMED_OUT, not with the
 * refusal, and the group stays usable. Only ProducerFenced and
 * TopicTerminated stay terminal for it.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <unistd.h>

#include "fault_common.h"

TestSuite(fault_auth_refresh, .timeout = 120);

#define GOOD "eyJhbGciOiJIUzI1NiJ9.auth-refresh-one.sig"
#define GOOD2 "eyJhbGciOiJIUzI1NiJ9.auth-refresh-two.sig"
#define PLEN 32

/* ---- log lines ---------------------------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char lines[256][512];
static int levels[256];
static int nlines;

/* (tests may run one after the other in one process) */
static void log_reset(void)
{
    pthread_mutex_lock(&mu);
    nlines = 0;
    pthread_mutex_unlock(&mu);
}

static void on_log(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)opaque;
    pthread_mutex_lock(&mu);
    if (nlines < 256) {
        snprintf(lines[nlines], sizeof lines[0], "%s", line);
        levels[nlines++] = (int)level;
    }
    pthread_mutex_unlock(&mu);
}

/* Lines of @p level containing @p a and @p b (b may be NULL). */
static int count_lines(int level, const char *a, const char *b)
{
    int n = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nlines; i++)
        n += levels[i] == level && strstr(lines[i], a) && (!b || strstr(lines[i], b));
    pthread_mutex_unlock(&mu);
    return n;
}

static void assert_no_token_logged(void)
{
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nlines; i++) {
        cr_assert_null(strstr(lines[i], GOOD), "a token in the log: %s", lines[i]);
        cr_assert_null(strstr(lines[i], GOOD2), "a token in the log: %s", lines[i]);
    }
    pthread_mutex_unlock(&mu);
}

/* ---- messages ----------------------------------------------------------- */

typedef struct {
    const char *tag;
    int i;
    upulsar_future_t *f;
} sent_t;

static void payload_of(char *buf, const char *tag, int i)
{
    memset(buf, 'x', PLEN);
    int n = snprintf(buf, PLEN, "%s:%d:", tag, i);
    buf[n] = 'x';
}

static void send_n(upulsar_producer_t *p, sent_t *out, const char *tag, int n)
{
    char payload[PLEN];
    for (int i = 0; i < n; i++) {
        payload_of(payload, tag, i);
        out[i] = (sent_t){tag, i, NULL};
        cr_assert_eq(upulsar_send(p, payload, PLEN, NULL, &out[i].f), UPULSAR_OK, "%s:%d: %s",
                     tag, i, upulsar_last_error());
    }
}

static void wait_all(sent_t *s, int n, upulsar_err_t want)
{
    for (int i = 0; i < n; i++) {
        upulsar_err_t e = upulsar_future_wait(s[i].f, FT_WAIT_MS, NULL);
        cr_assert_eq(e, want, "%s:%d: %s", s[i].tag, s[i].i, upulsar_err_name(e));
        upulsar_future_release(s[i].f);
        s[i].f = NULL;
    }
}

/* The log of @p topic is exactly @p s[0..n), in that order. */
static void expect_log(upulsar_tb_t *tb, const char *topic, const sent_t *s, int n)
{
    upulsar_tb_snapshot_t *snap = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &snap), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(snap), (size_t)n, "stored %zu, want %d",
                 upulsar_tb_snapshot_count(snap), n);
    char want[PLEN];
    for (int k = 0; k < n; k++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(snap, (size_t)k);
        payload_of(want, s[k].tag, s[k].i);
        cr_assert_eq(m->payload_len, (size_t)PLEN);
        cr_assert_arr_eq(m->payload, want, PLEN, "message %d is not %s:%d", k, s[k].tag, s[k].i);
    }
    upulsar_tb_snapshot_free(snap);
}

static upulsar_producer_state_t group_state(upulsar_producer_t *p)
{
    upulsar_group_info_t gi;
    size_t n = 0;
    cr_assert_eq(upulsar_producer_groups(p, &gi, 1, &n), UPULSAR_OK);
    cr_assert_eq(n, 1);
    return gi.state;
}

/* ---- token file ----------------------------------------------------------- */

static char dir[64], path[128];

static void token_file(const char *tok)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/upulsar-auth-XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/token", dir);
    }
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fputs(tok, f);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, path), 0); /* readers see the old or the new one */
}

static void token_file_remove(void)
{
    unlink(path);
    rmdir(dir);
    dir[0] = '\0';
}

typedef struct {
    upulsar_producer_t *p;
    int lines; /* refusal warnings logged before */
} refusals_t;

static int refusal_lines(void)
{
    return count_lines(UPULSAR_LOG_WARNING, "UPULSAR_ERR_AUTHENTICATION_ERROR", "ar");
}

/* three more re-creations refused and logged, or the group gave up */
static int refused_thrice_or_failed(void *a)
{
    refusals_t *r = a;
    return refusal_lines() >= r->lines + 3 || group_state(r->p) == UPULSAR_STATE_FAILED;
}

static int ready(void *p) { return group_state(p) == UPULSAR_STATE_READY; }

typedef struct {
    upulsar_tb_t *tb;
    upulsar_client_t *c;
    upulsar_producer_t *p;
} env_t;

/* A broker accepting GOOD, a client reading it from a file, a producer
 * that has worked (@p kv: its conf). */
static env_t start_with_token(const char *topic, const char *const *kv, sent_t *a, int na)
{
    env_t e;
    log_reset();
    const char *tokens[] = {GOOD};
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.auth_tokens = tokens;
    o.auth_tokens_cnt = 1;
    cr_assert_eq(upulsar_tb_start(&o, &e.tb), UPULSAR_OK, "%s", upulsar_last_error());
    token_file(GOOD);
    const char *ckv[] = {"auth.token.file", path, NULL};
    e.c = ft_client(e.tb, ckv);
    cr_assert_eq(upulsar_client_set_log_cb(e.c, on_log, NULL), UPULSAR_OK);
    e.p = ft_producer(e.c, "ar", topic, 0, kv);
    send_n(e.p, a, "before", na);
    wait_all(a, na, UPULSAR_OK);
    return e;
}

/* The broker stops accepting the client's token and drops its
 * connections: re-creation is refused; wait until it was refused three
 * times (or the group gave up, which fails the test). */
static void refuse_token(env_t *e)
{
    static const char *const rotated[] = {GOOD2};
    upulsar_tb_stats_t st0, st1;
    cr_assert_eq(upulsar_tb_stats(e->tb, &st0), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_tokens(e->tb, rotated, 1), UPULSAR_OK);
    cr_assert_geq(upulsar_tb_drop_connections(e->tb, NULL), 1);
    refusals_t r = {e->p, refusal_lines()};
    cr_assert(ft_wait_for(refused_thrice_or_failed, &r),
              "refused re-creations were not logged as warnings");
    cr_assert_neq(group_state(e->p), UPULSAR_STATE_FAILED,
                  "one refused authentication failed the group of a producer that worked");
    /* they were the broker's refusals */
    cr_assert_eq(upulsar_tb_stats(e->tb, &st1), UPULSAR_OK);
    cr_assert_geq(st1.auth_failed, st0.auth_failed + 3);
}

Test(fault_auth_refresh, refused_token_is_retried_until_fixed_and_nothing_is_lost)
{
    enum { NA = 10, NB = 10, NC = 5 };
    sent_t s[NA + NB + NC];
    env_t e = start_with_token("auth-fixed", NULL, s, NA);
    refuse_token(&e);
    send_n(e.p, s + NA, "during", NB);
    /* still refused: the messages wait (send.timeout.ms is 30 s) */
    refusals_t r = {e.p, refusal_lines()};
    cr_assert(ft_wait_for(refused_thrice_or_failed, &r));
    cr_assert_neq(group_state(e.p), UPULSAR_STATE_FAILED);
    for (int i = 0; i < NB; i++)
        cr_assert_eq(upulsar_future_poll(s[NA + i].f, NULL), UPULSAR_ERR__PENDING,
                     "during:%d resolved while refused", i);
    /* the token is fixed: the producer comes back with everything */
    token_file(GOOD2);
    wait_all(s + NA, NB, UPULSAR_OK);
    send_n(e.p, s + NA + NB, "after", NC);
    wait_all(s + NA + NB, NC, UPULSAR_OK);
    expect_log(e.tb, "auth-fixed", s, NA + NB + NC);
    cr_assert_eq(group_state(e.p), UPULSAR_STATE_READY);
    assert_no_token_logged();
    cr_assert_eq(upulsar_producer_stop(e.p, 10000), UPULSAR_OK);
    upulsar_client_destroy(e.c);
    upulsar_tb_stop(e.tb);
    token_file_remove();
}

Test(fault_auth_refresh, messages_keep_their_send_timeout_while_refused)
{
    enum { NA = 5, NB = 5, NC = 5 };
    sent_t s[NA + NB + NC];
    const char *kv[] = {"send.timeout.ms", "300", NULL};
    env_t e = start_with_token("auth-timeout", kv, s, NA);
    refuse_token(&e);
    /* the outage outlasts their send timeout: they time out, the group
     * carries on */
    send_n(e.p, s + NA, "during", NB);
    wait_all(s + NA, NB, UPULSAR_ERR__MSG_TIMED_OUT);
    cr_assert_neq(group_state(e.p), UPULSAR_STATE_FAILED);
    token_file(GOOD2);
    cr_assert(ft_wait_for(ready, e.p), "the producer did not come back");
    send_n(e.p, s + NA + NB, "after", NC);
    wait_all(s + NA + NB, NC, UPULSAR_OK);
    sent_t stored[NA + NC];
    memcpy(stored, s, sizeof(sent_t) * NA);
    memcpy(stored + NA, s + NA + NB, sizeof(sent_t) * NC);
    expect_log(e.tb, "auth-timeout", stored, NA + NC);
    assert_no_token_logged();
    cr_assert_eq(upulsar_producer_stop(e.p, 10000), UPULSAR_OK);
    upulsar_client_destroy(e.c);
    upulsar_tb_stop(e.tb);
    token_file_remove();
}

/* PRODUCER answered with AuthorizationError three times (permissions
 * taken away, then given back): each refusal is logged, the fourth
 * attempt succeeds, nothing is lost. */
Test(fault_auth_refresh, refused_authorization_after_working_is_retried)
{
    enum { NA = 10, NB = 10 };
    enum { SE_AUTHZ = UPULSAR_ERR_AUTHORIZATION_ERROR - UPULSAR_ERR_BROKER_BASE };
    log_reset();
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    cr_assert_eq(upulsar_client_set_log_cb(c, on_log, NULL), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(c, "ar", "authz", 0, NULL);
    sent_t s[NA + NB];
    send_n(p, s, "before", NA);
    wait_all(s, NA, UPULSAR_OK);
    cr_assert_eq(upulsar_tb_fail_producers(tb, "authz", 3, SE_AUTHZ), UPULSAR_OK);
    cr_assert_geq(upulsar_tb_drop_connections(tb, NULL), 1);
    send_n(p, s + NA, "during", NB);
    wait_all(s + NA, NB, UPULSAR_OK);
    expect_log(tb, "authz", s, NA + NB);
    cr_assert_eq(count_lines(UPULSAR_LOG_WARNING, "UPULSAR_ERR_AUTHORIZATION_ERROR", "authz"), 3,
                 "each of the 3 refusals is logged once");
    cr_assert_eq(count_lines(UPULSAR_LOG_ERR, "partition group failed", NULL), 0);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

/* TopicTerminated stays terminal after the producer worked: the group
 * fails and its messages fail with that error. */
Test(fault_auth_refresh, topic_terminated_after_working_still_fails_the_group)
{
    enum { SE_TERM = UPULSAR_ERR_TOPIC_TERMINATED - UPULSAR_ERR_BROKER_BASE };
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(c, "ar", "terminated", 0, NULL);
    sent_t s[2];
    send_n(p, s, "before", 1);
    wait_all(s, 1, UPULSAR_OK);
    cr_assert_eq(upulsar_tb_fail_producers(tb, "terminated", 1, SE_TERM), UPULSAR_OK);
    cr_assert_geq(upulsar_tb_drop_connections(tb, NULL), 1);
    upulsar_future_t *f = NULL;
    upulsar_err_t e = upulsar_send(p, "x", 1, NULL, &f);
    if (e == UPULSAR_OK) {
        e = upulsar_future_wait(f, FT_WAIT_MS, NULL);
        upulsar_future_release(f);
    }
    cr_assert_eq(e, UPULSAR_ERR_TOPIC_TERMINATED, "got %s", upulsar_err_name(e));
    cr_assert_eq(group_state(p), UPULSAR_STATE_FAILED);
    upulsar_producer_stop(p, 10000);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}
