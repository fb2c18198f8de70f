/* test_fault_start.c -- upulsar_producer_start() against a broker that is
 * not ready: connections refused for a moment, PRODUCER refused with a
 * retriable error (ServiceNotReady) are retried within operation.timeout.ms
 * and the start succeeds; a non-retriable refusal fails the start at once
 * and closes the producers already created; a broker unreachable for longer
 * than operation.timeout.ms fails the start with the connection error.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"
#include "pb.h"

TestSuite(fault_start, .timeout = 60);

enum { PARTS = 4 };

static upulsar_client_t *client_of(upulsar_tb_t *tb, const char *op_timeout_ms)
{
    const char *kv[] = {"operation.timeout.ms", op_timeout_ms, NULL};
    return ft_client(tb, kv);
}

/* One message to every partition of @p p is acknowledged. */
static void send_everywhere(upulsar_producer_t *p)
{
    for (int i = 0; i < 64; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        upulsar_send_opts_t o = {.partition_key = key};
        ft_send_ok(p, &o);
    }
}

static int active_producers(upulsar_tb_t *tb, const char *topic)
{
    upulsar_tb_topic_stats_t ts;
    if (upulsar_tb_topic_stats(tb, topic, &ts) != UPULSAR_OK)
        return 0;
    return ts.producers;
}

Test(fault_start, refused_connections_are_retried_within_the_operation_timeout)
{
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "boot", PARTS), UPULSAR_OK);
    upulsar_client_t *c = client_of(tb, "20000");
    /* the broker is still starting: connections are refused for 300 ms */
    cr_assert_eq(upulsar_tb_refuse_connections(tb, 300), UPULSAR_OK);
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(c, "boot", "boot", 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    cr_assert_geq(st.connections_refused, 1, "nothing was refused: the test proved nothing");
    cr_assert_eq(upulsar_producer_partitions(p), PARTS);
    send_everywhere(p);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(fault_start, retriable_producer_refusals_are_retried)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = client_of(tb, "20000");
    /* three of the four PRODUCER requests are refused once each */
    cr_assert_eq(upulsar_tb_fail_producers(tb, NULL, 3, UP_SERR(ServiceNotReady)), UPULSAR_OK);
    upulsar_producer_t *p = NULL;
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "notready", PARTS), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(c, "snr", "notready", PARTS, NULL, &p), UPULSAR_OK,
                 "%s", upulsar_last_error());
    for (int i = 0; i < PARTS; i++) {
        char t[64];
        snprintf(t, sizeof t, "notready-partition-%d", i);
        cr_assert_eq(active_producers(tb, t), 1, "%s", t);
    }
    send_everywhere(p);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(fault_start, non_retriable_refusal_fails_start_and_closes_the_rest)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = client_of(tb, "20000");
    cr_assert_eq(upulsar_tb_fail_producers(tb, "denied-partition-2", 1,
                                           UP_SERR(AuthorizationError)),
                 UPULSAR_OK);
    upulsar_producer_t *p = NULL;
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "denied", PARTS), UPULSAR_OK);
    upulsar_err_t e = upulsar_producer_start(c, "den", "denied", PARTS, NULL, &p);
    cr_assert_eq(e, UPULSAR_ERR_AUTHORIZATION_ERROR, "%s: %s", upulsar_err_name(e),
                 upulsar_last_error());
    cr_assert_null(p);
    cr_assert(strstr(upulsar_last_error(), "denied-partition-2") ||
                  strstr(upulsar_last_error(), "PRODUCER"),
              "error \"%s\"", upulsar_last_error());
    /* nothing stays registered at the broker */
    for (int i = 0; i < PARTS; i++) {
        char t[64];
        snprintf(t, sizeof t, "denied-partition-%d", i);
        cr_assert_eq(active_producers(tb, t), 0, "%s still has a producer", t);
    }
    /* and the refusal was not retried: a second start works at once */
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "denied", PARTS), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(c, "den", "denied", PARTS, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(fault_start, unreachable_broker_fails_start_after_the_operation_timeout)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = client_of(tb, "400");
    cr_assert_eq(upulsar_tb_refuse_connections(tb, 3600000), UPULSAR_OK);
    upulsar_producer_t *p = NULL;
    /* one producer (one connection attempt each time), then the partition
     * count asked of the broker first */
    int parts[] = {1, 0};
    for (int k = 0; k < 2; k++) {
        upulsar_tb_stats_t st0, st;
        cr_assert_eq(upulsar_tb_stats(tb, &st0), UPULSAR_OK);
        /* the broker declares the partitions start uses (it checks its count) */
        cr_assert_eq(upulsar_tb_set_partitions(tb, "away", parts[k]), UPULSAR_OK);
        upulsar_err_t e = upulsar_producer_start(c, NULL, "away", parts[k], NULL, &p);
        cr_assert_eq(e, UPULSAR_ERR__CONNECT, "%s: %s", upulsar_err_name(e),
                     upulsar_last_error());
        cr_assert_null(p);
        cr_assert(strstr(upulsar_last_error(), upulsar_tb_url(tb) + strlen("pulsar://")),
                  "error \"%s\" does not name the broker", upulsar_last_error());
        cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
        cr_assert_geq(st.connections_refused - st0.connections_refused, 2,
                      "start did not try again (%llu attempts)",
                      (unsigned long long)(st.connections_refused - st0.connections_refused));
    }
    cr_assert_eq(upulsar_tb_refuse_connections(tb, 0), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

/* "pulsar://a,b": a service URL of several hosts (as the Java client takes
 * it). A host that cannot be reached is passed over: at start, and when
 * the one in use goes away later. */
Test(fault_start, service_url_hosts_are_tried_in_turn)
{
    char dead[64];
    int dead_fd = ft_dead_address(dead, sizeof dead); /* refuses connections */
    upulsar_tb_t *a = ft_broker(), *b = NULL;
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.shared_store_with = a;
    cr_assert_eq(upulsar_tb_start(&o, &b), UPULSAR_OK, "%s", upulsar_last_error());
    char url[256];
    snprintf(url, sizeof url, "pulsar://%s,%s,%s", dead, strstr(upulsar_tb_url(a), "://") + 3,
             strstr(upulsar_tb_url(b), "://") + 3);
    const char *kv[] = {"service.url", url, "operation.timeout.ms", "20000", NULL};
    upulsar_client_t *c = ft_client(a, kv);
    upulsar_producer_t *p = NULL;
    /* the first host refuses: start goes on with the second */
    cr_assert_eq(upulsar_producer_start(c, "mh", "multihost", 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    ft_send_ok(p, NULL);
    /* the second goes away: re-creation goes on with the third */
    upulsar_tb_stop(a);
    ft_send_ok(p, NULL);
    upulsar_producer_info_t pi;
    size_t n = 0;
    cr_assert_eq(upulsar_producer_list(p, &pi, 1, &n), UPULSAR_OK);
    cr_assert_str_eq(pi.broker, strstr(upulsar_tb_url(b), "://") + 3);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(b, "multihost", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 2);
    upulsar_tb_snapshot_free(s);
    upulsar_client_destroy(c);
    upulsar_tb_stop(b);
    close(dead_fd);
}
