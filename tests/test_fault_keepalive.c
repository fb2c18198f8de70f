/* test_fault_keepalive.c -- a broker that stops answering: keep-alive
 * declares the connection dead, the producers reconnect, nothing is lost.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

enum { PARTS = 2 };

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void)
{
    /* ping every 50 ms; a connection silent for two intervals is dead */
    const char *kv[] = {"keepalive.interval.ms", "50", "connection.timeout.ms", "500", NULL};
    ft_start_broker_and_client(&tb, &client, kv);
}

static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(fault_keepalive, .init = setup, .fini = teardown, .timeout = 60);

/* Scenario:
 *  1. A producer over 2 partitions sends 10,000 messages while the broker
 *     answers normally.
 *  2. The broker stops answering PINGs (it still answers everything else).
 *     The connection is idle: the client's PING goes unanswered for a whole
 *     interval, so it declares the connection dead and every producer is
 *     re-created on a new one.
 *  3. Pings are answered again; 10,000 more messages are sent.
 *  4. Every future succeeds; the log check passes. */
Test(fault_keepalive, unanswered_pings_make_the_client_reconnect)
{
    enum { N = 20000 / FT_SCALE };
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "pings", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "ka", "pings", PARTS, NULL);
    ft_run_t *run = ft_run_new(p, 1, N, 0);
    run->per_thread = N / 2; /* first half */
    ft_run_start(run);
    ft_run_join(run);
    cr_assert_eq(upulsar_producer_flush(p, FT_WAIT_MS), UPULSAR_OK);
    cr_assert_eq(ft_reconnects(p), 0);
    ft_reconnects_wait_t rc = {p, 1};
    cr_assert_eq(upulsar_tb_ignore_pings(tb, 1), UPULSAR_OK);
    cr_assert(ft_wait_for(ft_reconnects_at_least, &rc),
              "the silent connection was not declared dead");
    cr_assert_eq(upulsar_tb_ignore_pings(tb, 0), UPULSAR_OK);
    cr_assert(ft_wait_for(ft_all_ready, p));
    /* second half: the sender continues where the first stopped */
    run->per_thread = N;
    ft_send_range(run, N / 2, N, 1);
    cr_assert_eq(ft_collect(run), 0);
    ft_assert_cbs_done(run);
    ft_check_opts_t o = {.topic = "pings", .partitions = PARTS};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)N);
    ft_run_free(run);
}

/* Scenario:
 *  1. A producer over 2 partitions; a sender thread sends 40,000 messages.
 *  2. When a quarter is stored, the broker hangs entirely (freeze: it reads
 *     nothing, answers nothing, its sockets stay open). Batches are in
 *     flight, unanswered.
 *  3. The client's keep-alive declares the connection dead; reconnect
 *     attempts connect at TCP level but get no CONNECTED and time out
 *     (connection.timeout.ms 500), and are retried with backoff.
 *  4. The broker resumes: it reads what the old connections had buffered
 *     (storing those SENDs) while the re-created producers resend the same
 *     batches on new connections (refused with ProducerBusy until the old
 *     connection is gone; then de-duplicated).
 *  5. Every future succeeds; the log check passes (no loss, no duplicate,
 *     order kept despite two connections carrying the same batches). */
Test(fault_keepalive, hung_broker_is_detected_and_nothing_is_lost)
{
    enum { N = 40000 / FT_SCALE };
    const char *kv[] = {"queue.buffer.bytes", "262144", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "frozen", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "kf", "frozen", PARTS, kv);
    ft_run_t *run = ft_run_new(p, 1, N, 0);
    ft_run_allow(run, N / 2); /* the rest once the broker hangs */
    ft_run_start(run);
    ft_stored_t s = {tb, NULL, N / 4};
    cr_assert(ft_wait_for(ft_stored_at_least, &s));
    cr_assert_eq(upulsar_tb_freeze(tb, 1), UPULSAR_OK);
    ft_run_allow(run, N);
    ft_reconnects_wait_t rc = {p, ft_reconnects(p) + 1};
    cr_assert(ft_wait_for(ft_reconnects_at_least, &rc),
              "the hung connection was not declared dead");
    rc.n += 2 * PARTS; /* and a few attempts that time out */
    cr_assert(ft_wait_for(ft_reconnects_at_least, &rc));
    cr_assert_eq(upulsar_tb_freeze(tb, 0), UPULSAR_OK);
    ft_run_join(run);
    cr_assert_eq(atomic_load(&run->refused), 0, "%s", upulsar_last_error());
    cr_assert_eq(ft_collect(run), 0);
    ft_assert_cbs_done(run);
    ft_check_opts_t o = {.topic = "frozen", .partitions = PARTS};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)N);
    ft_run_free(run);
}
