/* test_fault_resolve.c -- a DNS server that does not answer holds up no
 * start, stop or client destroy beyond its own bound.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * getaddrinfo() has no timeout and cannot be cancelled: a resolver that
 * does not answer keeps it for as long as the system's resolver settings
 * say (timeout x attempts x servers, tens of seconds and more). The
 * library resolves a broker's host name before every connection, so a
 * resolution that hangs must be given up at the connection's own deadline
 * (connection.timeout.ms) and when the attempt is cancelled (stop, client
 * destroy), like the connect and the handshake that follow it.
 *
 * The internal fault point up_fault_resolve_stall_ms (src/fault.h) makes
 * each resolution first sleep as a silent DNS server would. The stall
 * (STALL_MS) is far longer than any bound the tests check (BOUND_MS), and
 * the bounds are far longer than the configured timeouts, so only a
 * resolution that waits for the stall can fail them. */
#include "fault_common.h"

#include "fault.h"

enum { STALL_MS = 30000, BOUND_MS = 10000, N = 1000 };

/* A client of @p tb through the host name "localhost" (upulsar_tb_url()
 * names 127.0.0.1, which needs no resolver), plus @p kv. */
static upulsar_client_t *named_client(upulsar_tb_t *tb, const char *const *kv)
{
    char url[64];
    snprintf(url, sizeof url, "pulsar://localhost:%d", upulsar_tb_port(tb));
    return ft_client_with(url, kv, NULL);
}

static int resolving(void *a)
{
    (void)a;
    return atomic_load(&up_fault_resolve_stalls) > 0;
}

/* Scenario: resolutions hang; upulsar_producer_start() with
 * connection.timeout.ms=500 fails with CONNECT, saying the name did not
 * resolve in time, well before the stall ends; once the DNS answers
 * again, a start succeeds and its message is stored. */
Test(fault_resolve, start_gives_up_on_a_hung_resolution_at_the_connection_timeout,
     .timeout = 60)
{
    upulsar_tb_t *tb = ft_broker();
    const char *kv[] = {"connection.timeout.ms", "500", "operation.timeout.ms", "2000", NULL};
    upulsar_client_t *client = named_client(tb, kv);
    atomic_store(&up_fault_resolve_stall_ms, STALL_MS);
    upulsar_producer_t *p = NULL;
    uint64_t t0 = ft_now_ms();
    upulsar_err_t err = upulsar_producer_start(client, NULL, "dns-start", 0, NULL, &p);
    uint64_t took = ft_now_ms() - t0;
    atomic_store(&up_fault_resolve_stall_ms, 0);
    cr_assert_gt(atomic_load(&up_fault_resolve_stalls), 0, "no resolution was made");
    cr_assert_lt(took, (uint64_t)BOUND_MS, "start waited %llu ms for the resolver",
                 (unsigned long long)took);
    cr_assert_neq(err, UPULSAR_OK);
    cr_assert_null(p);
    cr_assert(strstr(upulsar_last_error(), "resolv") != NULL, "%s: %s", upulsar_err_name(err),
              upulsar_last_error());
    p = ft_producer(client, NULL, "dns-start", 0, NULL);
    cr_assert_eq(upulsar_send(p, "after", 5, NULL, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "dns-start", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    cr_assert_arr_eq(upulsar_tb_snapshot_msg(s, 0)->payload, "after", 5);
    upulsar_tb_snapshot_free(s);
    ft_stop_client_and_broker(tb, client);
}

/* Scenario:
 *  1. A producer over 2 partitions, started while the DNS answers.
 *  2. Resolutions start to hang; the broker drops the connections; 1,000
 *     messages are sent (they queue while the producers back off).
 *  3. Once the watchdog's reconnect attempt is inside a resolution,
 *     upulsar_producer_stop(p, 200) returns within its bound (timeout and
 *     1 s for the closes), every future resolved (CLOSED).
 *  4. The same again with a second producer, ended this time by
 *     upulsar_client_destroy(), which returns within the bound too. */
Test(fault_resolve, stop_and_destroy_during_a_dns_outage_keep_their_bounds, .timeout = 90)
{
    upulsar_tb_t *tb = ft_broker();
    const char *kv[] = {"connection.timeout.ms", "3600000", "operation.timeout.ms", "3600000",
                        NULL};
    upulsar_client_t *client = named_client(tb, kv);
    upulsar_producer_t *p = ft_producer(client, "dns", "dns-stop", 2, NULL);
    atomic_store(&up_fault_resolve_stall_ms, STALL_MS);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    upulsar_future_t *f[N];
    for (int i = 0; i < N; i++) {
        char body[16];
        int len = snprintf(body, sizeof body, "m%d", i);
        cr_assert_eq(upulsar_send(p, body, (size_t)len, NULL, &f[i]), UPULSAR_OK);
    }
    cr_assert(ft_wait_for(resolving, NULL), "the watchdog never started a resolution");
    uint64_t t0 = ft_now_ms();
    upulsar_err_t err = upulsar_producer_stop(p, 200);
    uint64_t took = ft_now_ms() - t0;
    cr_assert_lt(took, (uint64_t)BOUND_MS, "stop(200) took %llu ms (%s)",
                 (unsigned long long)took, upulsar_err_name(err));
    for (int i = 0; i < N; i++) {
        upulsar_err_t e = upulsar_future_poll(f[i], NULL);
        cr_assert_eq(e, UPULSAR_ERR__CLOSED, "message %d: %s", i, upulsar_err_name(e));
        upulsar_future_release(f[i]);
    }
    atomic_store(&up_fault_resolve_stall_ms, 0);
    p = ft_producer(client, "dns2", "dns-stop-2", 0, NULL);
    atomic_store(&up_fault_resolve_stalls, 0);
    atomic_store(&up_fault_resolve_stall_ms, STALL_MS);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    cr_assert(ft_wait_for(resolving, NULL), "the second producer never started a resolution");
    t0 = ft_now_ms();
    upulsar_client_destroy(client);
    took = ft_now_ms() - t0;
    cr_assert_lt(took, (uint64_t)BOUND_MS, "client destroy took %llu ms",
                 (unsigned long long)took);
    atomic_store(&up_fault_resolve_stall_ms, 0);
    upulsar_tb_stop(tb);
}
