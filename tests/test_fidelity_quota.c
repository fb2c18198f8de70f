/* test_fidelity_quota.c -- backlog quota refusals of PRODUCER, as the
 * official clients treat them (pulsar-client-cpp ProducerImpl
 * handleCreateProducer, isResultRetryable):
 *  - on creation, ProducerBlockedQuotaExceededError (policy
 *    producer_request_hold) and ...Exception (producer_exception) fail
 *    upulsar_producer_start() at once with that error: one attempt, no
 *    retries until operation.timeout.ms;
 *  - on re-creation, ...Exception fails every message the producer holds
 *    with that error (they do not wait for send.timeout.ms) and the
 *    producer is still re-created with backoff: later messages are stored;
 *  - on re-creation, ...Error keeps the messages waiting: once the
 *    producer is re-created they are stored, once each, in order.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

TestSuite(fidelity_quota, .timeout = 120);

#define SE_QUOTA_ERROR 7     /* ServerError ProducerBlockedQuotaExceededError */
#define SE_QUOTA_EXCEPTION 8 /* ServerError ProducerBlockedQuotaExceededException */

static const char *const short_op[] = {"operation.timeout.ms", "3000", NULL};

Test(fidelity_quota, quota_refusal_on_creation_fails_the_start_at_once)
{
    const struct {
        int server_error;
        upulsar_err_t err;
        const char *topic;
    } cases[] = {
        {SE_QUOTA_ERROR, UPULSAR_ERR_PRODUCER_BLOCKED_QUOTA_EXCEEDED_ERROR, "q-hold"},
        {SE_QUOTA_EXCEPTION, UPULSAR_ERR_PRODUCER_BLOCKED_QUOTA_EXCEEDED_EXCEPTION, "q-exc"},
    };
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, short_op);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(upulsar_tb_fail_producers(tb, cases[i].topic, 1000, cases[i].server_error),
                     UPULSAR_OK);
        upulsar_producer_t *p = NULL;
        upulsar_err_t e = upulsar_producer_start(c, "q", cases[i].topic, 0, NULL, &p);
        cr_assert_eq(e, cases[i].err, "%s: %s: %s", cases[i].topic, upulsar_err_name(e),
                     upulsar_last_error());
        cr_assert_null(p);
        int answers = upulsar_tb_producer_answers(tb, cases[i].topic, NULL, 0);
        cr_assert_eq(answers, 1, "%s: %d PRODUCER attempts, want 1 (not retried)",
                     cases[i].topic, answers);
    }
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

/* For ft_wait_for(): has @p a (tb, topic, count) answered more PRODUCERs
 * than count? */
typedef struct {
    upulsar_tb_t *tb;
    const char *topic;
    int after;
} answers_wait_t;

static int more_answers(void *a)
{
    answers_wait_t *w = a;
    return upulsar_tb_producer_answers(w->tb, w->topic, NULL, 0) > w->after;
}

/* Send @p n messages "<tag>-<i>" to @p p, futures into @p fs. */
static void send_n(upulsar_producer_t *p, const char *tag, int n, upulsar_future_t **fs)
{
    for (int i = 0; i < n; i++) {
        char body[32];
        int len = snprintf(body, sizeof body, "%s-%d", tag, i);
        cr_assert_eq(upulsar_send(p, body, (size_t)len, NULL, &fs[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
}

/* Stored messages of @p topic whose payload starts with @p tag. */
static size_t stored_with(upulsar_tb_t *tb, const char *topic, const char *tag)
{
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    size_t n = 0, tl = strlen(tag);
    for (size_t i = 0; i < upulsar_tb_snapshot_count(s); i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, i);
        if (m->payload_len >= tl && !memcmp(m->payload, tag, tl))
            n++;
    }
    upulsar_tb_snapshot_free(s);
    return n;
}

Test(fidelity_quota, quota_exception_on_recreation_fails_pending_messages_and_retries)
{
    enum { N = 8 };
    const char *topic = "q-recreate";
    upulsar_tb_t *tb = ft_broker();
    /* send.timeout.ms far above the backoff: the messages must fail with the
     * broker's refusal, not expire */
    const char *kv[] = {"operation.timeout.ms", "3000", NULL};
    upulsar_client_t *c = ft_client(tb, kv);
    const char *pk[] = {"send.timeout.ms", "30000", NULL};
    upulsar_producer_t *p = ft_producer(c, "q", topic, 0, pk);
    ft_send_ok(p, NULL);

    /* every re-creation is refused with the exception from now on */
    cr_assert_eq(upulsar_tb_fail_producers(tb, topic, 1000000, SE_QUOTA_EXCEPTION), UPULSAR_OK);
    answers_wait_t w = {tb, topic, upulsar_tb_producer_answers(tb, topic, NULL, 0)};
    cr_assert_eq(upulsar_tb_unload_topic(tb, topic), 1);
    cr_assert(ft_wait_for(more_answers, &w), "no re-creation attempt");

    upulsar_future_t *fs[N];
    send_n(p, "refused", N, fs);
    for (int i = 0; i < N; i++) {
        upulsar_err_t e = upulsar_future_wait(fs[i], FT_WAIT_MS, NULL);
        cr_assert_eq(e, UPULSAR_ERR_PRODUCER_BLOCKED_QUOTA_EXCEEDED_EXCEPTION,
                     "message %d: %s: %s", i, upulsar_err_name(e),
                     upulsar_future_error_detail(fs[i]));
        const char *d = upulsar_future_error_detail(fs[i]);
        cr_assert(d && strstr(d, topic), "detail \"%s\" names no topic", d ? d : "");
        upulsar_future_release(fs[i]);
    }

    /* the producer was not given up: once the quota clears it comes back */
    cr_assert_eq(upulsar_tb_fail_producers(tb, topic, 0, SE_QUOTA_EXCEPTION), UPULSAR_OK);
    /* (an attempt refused before the quota cleared may still be reported:
     * send once the producer is back) */
    cr_assert(ft_wait_for(ft_all_ready, p), "not re-created once the quota cleared");
    send_n(p, "after", N, fs);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(upulsar_future_wait(fs[i], FT_WAIT_MS, NULL), UPULSAR_OK, "%s",
                     upulsar_future_error_detail(fs[i]));
        upulsar_future_release(fs[i]);
    }
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    cr_assert_eq(stored_with(tb, topic, "refused-"), 0);
    cr_assert_eq(stored_with(tb, topic, "after-"), (size_t)N);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(fidelity_quota, quota_error_on_recreation_keeps_messages_waiting)
{
    enum { N = 8, REFUSALS = 3 };
    const char *topic = "q-hold-recreate";
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, short_op);
    const char *pk[] = {"send.timeout.ms", "0", NULL};
    upulsar_producer_t *p = ft_producer(c, "q", topic, 0, pk);
    ft_send_ok(p, NULL);
    int before = upulsar_tb_producer_answers(tb, topic, NULL, 0);
    cr_assert_eq(upulsar_tb_fail_producers(tb, topic, REFUSALS, SE_QUOTA_ERROR), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_unload_topic(tb, topic), 1);
    upulsar_future_t *fs[N];
    send_n(p, "held", N, fs);
    for (int i = 0; i < N; i++) {
        upulsar_err_t e = upulsar_future_wait(fs[i], FT_WAIT_MS, NULL);
        cr_assert_eq(e, UPULSAR_OK, "message %d: %s: %s", i, upulsar_err_name(e),
                     upulsar_future_error_detail(fs[i]));
        upulsar_future_release(fs[i]);
    }
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    /* REFUSALS refusals, then the re-creation that worked */
    int answers[64];
    int n = upulsar_tb_producer_answers(tb, topic, answers, 64);
    cr_assert_eq(n, before + REFUSALS + 1, "%d answers", n);
    for (int i = before; i < before + REFUSALS; i++)
        cr_assert_eq(answers[i], SE_QUOTA_ERROR);
    cr_assert_eq(answers[before + REFUSALS], UPULSAR_TB_PRODUCER_CREATED);
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)(1 + N));
    for (int i = 0; i < N; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)(1 + i));
        char body[32];
        int len = snprintf(body, sizeof body, "held-%d", i);
        cr_assert_eq(m->payload_len, (size_t)len);
        cr_assert_eq(memcmp(m->payload, body, (size_t)len), 0, "message %d out of place", i);
    }
    upulsar_tb_snapshot_free(s);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}
