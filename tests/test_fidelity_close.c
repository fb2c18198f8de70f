/* test_fidelity_close.c -- PRODUCER requests and re-creation after a close
 * by the broker, as the official clients do them (pulsar-client-cpp:
 * Commands::newProducer, HandlerBase::scheduleReconnection):
 *
 * unnamed_producer_says_its_name_is_not_user_provided: the PRODUCER of a
 *   producer without a name carries user_provided_producer_name = false
 *   (the field's default is true), its first one and, with the name the
 *   broker gave, every re-creation; a named producer's carry true.
 * close_without_a_new_owner_backs_off: after CLOSE_PRODUCER without an
 *   assigned broker (an unload) the producer is re-created after the
 *   backoff, not at once: with a backoff no test outlives, no PRODUCER
 *   follows the close in the watchdog passes after it.
 * close_naming_the_new_owner_is_followed_at_once: a CLOSE_PRODUCER naming
 *   the new owner (a bundle transfer) is followed at once, without a
 *   lookup, whatever the backoff.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "fault_common.h"

TestSuite(fidelity_close, .timeout = 120);

static const char *const short_op[] = {"operation.timeout.ms", "3000", NULL};

/* The PRODUCER requests @p tb received for @p topic into @p out (room for
 * @p max); returns how many. */
static size_t producer_requests(upulsar_tb_t *tb, const char *topic, upulsar_tb_request_t *out,
                                size_t max)
{
    upulsar_tb_request_t r[64];
    int n = upulsar_tb_producer_requests(tb, topic, r, 64);
    cr_assert(n >= 0 && n <= 64, "%s: %d requests", topic, n);
    size_t k = 0;
    for (int i = 0; i < n; i++)
        if (r[i].type == UPULSAR_TB_REQ_PRODUCER && k < max)
            out[k++] = r[i];
    return k;
}

static int recreated_once(void *a) { return ft_reconnects(a) >= 1 && ft_all_ready(a); }

Test(fidelity_close, unnamed_producer_says_its_name_is_not_user_provided)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, short_op);
    const struct {
        const char *name, *topic;
        int want;
    } cases[] = {{NULL, "unnamed", 0}, {"given", "named", 1}};
    for (size_t i = 0; i < 2; i++) {
        upulsar_producer_t *p = ft_producer(c, cases[i].name, cases[i].topic, 0, NULL);
        ft_send_ok(p, NULL);
        cr_assert_geq(upulsar_tb_drop_connections(tb, cases[i].topic), 1);
        cr_assert(ft_wait_for(recreated_once, p), "%s: not re-created", cases[i].topic);
        ft_send_ok(p, NULL);
        cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
        upulsar_tb_request_t r[8];
        size_t n = producer_requests(tb, cases[i].topic, r, 8);
        cr_assert_eq(n, 2, "%s: %zu PRODUCER requests", cases[i].topic, n);
        for (size_t k = 0; k < n; k++)
            cr_assert_eq(r[k].user_provided_name, cases[i].want,
                         "%s: PRODUCER %zu: user_provided_producer_name %d (-1: absent), want %d",
                         cases[i].topic, k, r[k].user_provided_name, cases[i].want);
    }
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

/* A client of @p url whose backoff no test outlives, counting its
 * watchdog passes into @p w. */
static upulsar_client_t *never_client(const char *url, ft_passes_t *w)
{
    const char *kv[] = {"backoff.initial.ms", FT_NEVER_MS, "backoff.max.ms", FT_NEVER_MS,
                        "stats.interval.ms", "1", NULL};
    upulsar_client_t *c = ft_client_with(url, short_op, kv);
    ft_passes_watch(c, w);
    return c;
}

/* Has @p a (a producer) seen its close: backing off, or tried again? */
static int close_noticed(void *a)
{
    ft_reconnects_wait_t none = {a, 0};
    return ft_reconnects(a) > 0 || ft_backing_off_after(&none);
}

static const char *const no_timeout[] = {"send.timeout.ms", "0", NULL}; /* no mandatory stop */

Test(fidelity_close, close_without_a_new_owner_backs_off)
{
    upulsar_tb_t *tb = ft_broker();
    ft_passes_t passes;
    upulsar_client_t *c = never_client(upulsar_tb_url(tb), &passes);
    upulsar_producer_t *p = ft_producer(c, "bo", "unloaded", 0, no_timeout);
    ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_tb_unload_topic(tb, "unloaded"), 1);
    cr_assert(ft_wait_for(close_noticed, p), "the close was not noticed");
    cr_assert(ft_passes_wait(&passes, FT_PASSES), "the watchdog stopped");
    cr_assert_eq(ft_reconnects(p), 0, "%llu attempts right after a close without a new owner",
                 (unsigned long long)ft_reconnects(p));
    upulsar_tb_request_t r[8];
    cr_assert_eq(producer_requests(tb, "unloaded", r, 8), 1, "a PRODUCER followed the close");
    ft_reconnects_wait_t none = {p, 0};
    cr_assert(ft_backing_off_after(&none), "not backing off");
    upulsar_producer_stop(p, 1000);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

typedef struct {
    upulsar_producer_t *p;
    const char *broker;
} at_t;

static int ready_at(void *a)
{
    at_t *w = a;
    upulsar_producer_info_t pi;
    size_t n = 0;
    return upulsar_producer_list(w->p, &pi, 1, &n) == UPULSAR_OK && n == 1 &&
           pi.state == UPULSAR_STATE_READY && !strcmp(pi.broker, w->broker);
}

Test(fidelity_close, close_naming_the_new_owner_is_followed_at_once)
{
    upulsar_tb_t *a = ft_broker();
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.shared_store_with = a;
    upulsar_tb_t *b = ft_broker_of(&o);
    ft_passes_t passes;
    upulsar_client_t *c = never_client(upulsar_tb_url(a), &passes);
    upulsar_producer_t *p = ft_producer(c, "xf", "moved", 0, no_timeout);
    ft_send_ok(p, NULL);
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(a, &st), UPULSAR_OK);
    uint64_t lookups = st.lookups;
    cr_assert_eq(upulsar_tb_move_topic_ex(a, "moved", upulsar_tb_url(b), UPULSAR_TB_MOVE_ASSIGNED),
                 1);
    const char *url = upulsar_tb_url(b);
    at_t w = {p, strstr(url, "://") + 3};
    cr_assert(ft_wait_for(ready_at, &w), "not re-created at the new owner");
    cr_assert_eq(ft_reconnects(p), 1);
    ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_tb_stats(a, &st), UPULSAR_OK);
    cr_assert_eq(st.lookups, lookups, "looked the topic up instead of following the close");
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(b, "moved", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 2);
    upulsar_tb_snapshot_free(s);
    upulsar_client_destroy(c);
    upulsar_tb_stop(b);
    upulsar_tb_stop(a);
}
