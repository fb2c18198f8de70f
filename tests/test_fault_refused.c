/* test_fault_refused.c -- PRODUCER refused with a retriable error while
 * re-creating: retried, one attempt per refusal, until it succeeds; with
 * the backoff's mandatory stop, an outage's attempts and their order.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * Nothing here is timed: attempts are counted by the client
 * (upulsar_producer_info_t.reconnects), by its log lines and by the
 * broker's answers to PRODUCER requests (upulsar_tb_producer_answers()). */
#include "fault_common.h"

enum { TOTAL = 20000 / FT_SCALE };

/* The client's re-creation log lines, in order: 'F' for a failed attempt
 * (each one is followed by a backoff step), 'R' for a re-creation. */
typedef struct {
    pthread_mutex_t mu;
    char seq[64];
    size_t n;
} recreations_t;

static void on_log(upulsar_log_level_t level, const char *line, void *opaque)
{
    recreations_t *r = opaque;
    char ev = 0;
    if (strstr(line, "re-creating producer") && strstr(line, "failed"))
        ev = 'F';
    else if (strstr(line, "re-created"))
        ev = 'R';
    (void)level;
    if (!ev)
        return;
    pthread_mutex_lock(&r->mu);
    if (r->n + 1 < sizeof r->seq) {
        r->seq[r->n++] = ev;
        r->seq[r->n] = '\0';
    }
    pthread_mutex_unlock(&r->mu);
}

/* For ft_wait_for(): has the log a re-creation ('R') line yet? (It is
 * written when the watchdog takes the result, which may come just after
 * the producer shows READY.) */
static int recreation_logged(void *a)
{
    recreations_t *r = a;
    pthread_mutex_lock(&r->mu);
    int yes = strchr(r->seq, 'R') != NULL;
    pthread_mutex_unlock(&r->mu);
    return yes;
}

/* Scenario:
 *  1. backoff.initial.ms = 50; a producer on a non-partitioned topic; a
 *     thread sends 20,000 messages.
 *  2. When a quarter is stored, the next 3 PRODUCER requests for the topic
 *     are refused with ServiceNotReady and the topic is unloaded
 *     (CLOSE_PRODUCER).
 *  3. The client re-creates the producer after the backoff (closed by the
 *     broker, no new owner named), is refused, backs off, is refused, backs
 *     off, is refused, backs off, and succeeds: exactly 4 attempts. The broker answered exactly four
 *     PRODUCER requests after the first one, in this order: refused three
 *     times, then created -- each attempt came after the previous one was
 *     refused, never two at once, and none after the success. The client
 *     logged three failed attempts (three backoff steps) and then one
 *     re-creation, so its attempts are the backoff steps plus the one
 *     after the close. The messages sent meanwhile wait and
 *     are then sent.
 *  4. Every future succeeds; the log check passes.
 * (How long each backoff step lasts is not measured; that a failed attempt
 * waits before the next one is checked structurally by the *_backs_off
 * tests of test_fault_intensity.c and test_e2e_lookup.c.) */
Test(fault_refused, refused_recreation_is_retried_once_per_refusal, .timeout = 60)
{
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"backoff.initial.ms", "50", "backoff.max.ms", "10000", NULL};
    upulsar_client_t *client = ft_client(tb, ckv);
    recreations_t log = {.mu = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_eq(upulsar_client_set_log_cb(client, on_log, &log), UPULSAR_OK);
    const char *kv[] = {"queue.buffer.bytes", "262144", NULL};
    upulsar_producer_t *p = ft_producer(client, "rf", "refused", 0, kv);
    ft_run_t *run = ft_run_new(p, 1, TOTAL, 0);
    ft_run_allow(run, TOTAL / 2); /* the rest once the fault is in place */
    ft_run_start(run);
    ft_stored_t s = {tb, "refused", TOTAL / 4};
    cr_assert(ft_wait_for(ft_stored_at_least, &s));
    cr_assert_eq(upulsar_tb_fail_producers(tb, "refused", 3, 6 /* ServiceNotReady */), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_unload_topic(tb, "refused"), 1);
    ft_run_allow(run, TOTAL);
    ft_reconnects_wait_t at = {p, 4};
    cr_assert(ft_wait_for(ft_reconnects_at_least, &at));
    cr_assert(ft_wait_for(ft_all_ready, p));
    ft_run_join(run);
    cr_assert_eq(ft_collect(run), 0);
    ft_assert_cbs_done(run);
    cr_assert_eq(ft_reconnects(p), 4, "attempts: %llu", (unsigned long long)ft_reconnects(p));
    int answers[16];
    size_t n = ft_producer_answers(tb, "refused", answers, 16);
    const int want[] = {UPULSAR_TB_PRODUCER_CREATED, 6, 6, 6, UPULSAR_TB_PRODUCER_CREATED};
    cr_assert_eq(n, 5, "%zu PRODUCER requests", n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(answers[i], want[i], "answer %zu: %d", i, answers[i]);
    cr_assert(ft_wait_for(recreation_logged, &log), "re-creation not logged");
    pthread_mutex_lock(&log.mu);
    char seq[64];
    snprintf(seq, sizeof seq, "%s", log.seq);
    pthread_mutex_unlock(&log.mu);
    cr_assert_str_eq(seq, "FFFR", "re-creation log: %s", seq);
    ft_check_opts_t o = {.topic = "refused"};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)TOTAL);
    ft_run_free(run);
    ft_stop_client_and_broker(tb, client);
}

/* Scenario (the backoff's mandatory stop, as in the official clients):
 *  1. send.timeout.ms = 5000, backoff.initial.ms = 2000, backoff.max.ms =
 *     60000; a producer on a non-partitioned topic.
 *  2. The next PRODUCER request for the topic will be refused
 *     (ServiceNotReady); every connection is dropped; 100 messages are
 *     sent and wait.
 *  3. The first re-creation comes after the initial backoff and is
 *     refused; the next delay (4 s) is shortened, once, so that an attempt
 *     comes a tenth of the timeout before the messages expire.
 *  4. That attempt succeeds: exactly 2 attempts, the broker answered
 *     created (the start), refused, created, in that order; the client
 *     logged one failed attempt, then one re-creation. Every message
 *     resolves exactly once, in send order: acknowledged (resent by the
 *     second attempt) or MSG_TIMED_OUT, and the log check passes.
 *  Whether the resend beats the timeout is a race of 0.5 s against the
 *  machine's load, so which of the two each message gets is not asserted
 *  (the library offers no observation of the shortened delay that would
 *  not be a duration); the attempts and their order are. */
Test(fault_refused, backoff_leaves_a_last_attempt_before_the_send_timeout, .timeout = 60)
{
    enum { N = 100 };
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"backoff.initial.ms", "2000", "backoff.max.ms", "60000", NULL};
    upulsar_client_t *client = ft_client(tb, ckv);
    recreations_t log = {.mu = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_eq(upulsar_client_set_log_cb(client, on_log, &log), UPULSAR_OK);
    const char *kv[] = {"send.timeout.ms", "5000", NULL};
    upulsar_producer_t *p = ft_producer(client, "ms", "laststop", 0, kv);
    cr_assert_eq(upulsar_tb_fail_producers(tb, "laststop", 1, 6 /* ServiceNotReady */),
                 UPULSAR_OK);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    ft_run_t *run = ft_run_new(p, 1, N, 0);
    ft_run_start(run);
    ft_run_join(run);
    cr_assert_eq(ft_collect(run), 0);
    ft_assert_cbs_done(run);
    ft_reconnects_wait_t two = {p, 2};
    cr_assert(ft_wait_for(ft_reconnects_at_least, &two));
    cr_assert(ft_wait_for(ft_all_ready, p));
    cr_assert_eq(ft_reconnects(p), 2, "attempts: %llu", (unsigned long long)ft_reconnects(p));
    int answers[8];
    size_t n = ft_producer_answers(tb, "laststop", answers, 8);
    cr_assert_eq(n, 3, "%zu PRODUCER requests", n);
    cr_assert_eq(answers[0], UPULSAR_TB_PRODUCER_CREATED);
    cr_assert_eq(answers[1], 6);
    cr_assert_eq(answers[2], UPULSAR_TB_PRODUCER_CREATED);
    cr_assert(ft_wait_for(recreation_logged, &log), "re-creation not logged");
    pthread_mutex_lock(&log.mu);
    char seq[64];
    snprintf(seq, sizeof seq, "%s", log.seq);
    pthread_mutex_unlock(&log.mu);
    cr_assert_str_eq(seq, "FR", "re-creation log: %s", seq);
    for (int i = 0; i < N; i++) {
        upulsar_err_t e = ft_msg(run, 0, i)->err;
        cr_assert(e == UPULSAR_OK || e == UPULSAR_ERR__MSG_TIMED_OUT, "message %d: %s", i,
                  upulsar_err_name(e));
        if (i > 0) /* callbacks in send order */
            cr_assert_gt(ft_msg(run, 0, i)->cb_seq, ft_msg(run, 0, i - 1)->cb_seq, "%d", i);
    }
    ft_check_opts_t o = {.topic = "laststop", .failed_may_be_stored = 1,
                         .gaps_of_failed_allowed = 1};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok + res.failed, (size_t)N);
    cr_log_info("laststop: %zu acknowledged, %zu timed out", res.ok, res.failed);
    ft_run_free(run);
    ft_stop_client_and_broker(tb, client);
}
