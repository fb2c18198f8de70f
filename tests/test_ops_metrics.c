/* test_ops_metrics.c -- "pending" counts the messages still in the
 * producer's queue while the broker cannot be reached
 * (upulsar_producer_list() and the statistics JSON agree), and the
 * statistics JSON has the group fields the header names.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "fault_common.h"

TestSuite(ops_metrics, .timeout = 180);

/* ---- pending while the broker cannot be reached ---- */

static uint64_t list_pending(upulsar_producer_t *p)
{
    upulsar_producer_info_t pi[8];
    size_t n = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, 8, &n), UPULSAR_OK);
    uint64_t sum = 0;
    for (size_t i = 0; i < n && i < 8; i++)
        sum += pi[i].pending;
    return sum;
}

static int not_ready(void *a) { return !ft_all_ready(a); }

static int acked_all(void *a)
{
    upulsar_producer_t *p = a;
    return ft_all_ready(p) && list_pending(p) == 0;
}

/* The number after "key": in @p json (the first one). */
static long long json_num(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *at = strstr(json, k);
    cr_assert_not_null(at, "%s not in %s", key, json);
    return strtoll(at + strlen(k), NULL, 10);
}

/* Scenario: a producer created on the broker, at most one batch of at
 * most 10 messages in flight; the broker then refuses every connection
 * and drops the one it has. N messages sent meanwhile are accepted: at
 * most one batch of them leaves the queue (ring), the rest wait there.
 * pending is N in upulsar_producer_list(), in the statistics JSON
 * ("pending"), the queue holds bytes, and the group's "state" in the JSON is
 * the one upulsar_producer_groups() reports. Once the broker takes
 * connections again every message is acknowledged and pending is 0. */
Test(ops_metrics, pending_counts_messages_still_in_the_queue_while_the_broker_is_down)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"max.inflight.batches", "1", "batch.max.messages", "10",
                        "send.timeout.ms", "0", NULL};
    upulsar_producer_t *p = ft_producer(c, "px", "m3", 0, kv);
    cr_assert_eq(upulsar_tb_refuse_connections(tb, 600000), UPULSAR_OK);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    cr_assert(ft_wait_for(not_ready, p), "the producer never noticed the broker went away");
    const int N = 5000 / FT_SCALE;
    for (int i = 0; i < N; i++)
        cr_assert_eq(upulsar_send(p, "pending", 7, NULL, NULL), UPULSAR_OK, "%d: %s", i,
                     upulsar_last_error());
    cr_assert_eq(list_pending(p), (uint64_t)N);
    char *json = NULL;
    cr_assert_eq(upulsar_producer_stats_json(p, &json), UPULSAR_OK);
    cr_assert_eq(json_num(json, "pending"), N, "%s", json);
    cr_assert_eq(json_num(json, "acked"), 0, "%s", json);
    cr_assert_gt(json_num(json, "queue_bytes"), 0, "%s", json);
    upulsar_group_info_t gi;
    size_t ng = 0;
    cr_assert_eq(upulsar_producer_groups(p, &gi, 1, &ng), UPULSAR_OK);
    char want[64];
    snprintf(want, sizeof want, "\"state\":\"%s\",\"failed\":\"\"", upulsar_state_name(gi.state));
    cr_assert_not_null(strstr(json, want), "%s not in %s", want, json);
    free(json);

    cr_assert_eq(upulsar_tb_refuse_connections(tb, 0), UPULSAR_OK);
    cr_assert(ft_wait_for(acked_all, p), "pending stays at %llu",
              (unsigned long long)list_pending(p));
    cr_assert_eq(ft_topic_messages(tb, "m3"), (uint64_t)N);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}
