/* test_fault_hung_broker.c -- one broker of two hangs with its sockets open:
 * the producers on the healthy broker are re-created while the attempt on
 * the hung one is still waiting (re-creations run in parallel, not one
 * after another), the producers waiting for the hung broker share one
 * connection attempt instead of opening one each, and once it answers
 * again they all continue: nothing lost, nothing duplicated.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

TestSuite(fault_hung_broker, .timeout = 120);

/* keep-alive notices a hung broker quickly; connecting to one and requests
 * to it wait far longer than any test */
static const char *const hang_kv[] = {"keepalive.interval.ms", "100", "connection.timeout.ms",
                                      "300000", "operation.timeout.ms", "300000", NULL};

/* partitions 0..2 live on broker A, 3 on broker C; B answers lookups */
enum { PARTS = 4, ON_A = 3 };

static upulsar_producer_info_t info_of(upulsar_producer_t *p, int partition)
{
    upulsar_producer_info_t pi[PARTS];
    size_t n = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, PARTS, &n), UPULSAR_OK);
    cr_assert_eq(n, (size_t)PARTS);
    return pi[partition];
}

typedef struct {
    upulsar_producer_t *p;
    int partition;
    uint64_t reconnects; /* at least */
    upulsar_producer_state_t state;
} wait_state_t;

static int in_state(void *a)
{
    wait_state_t *w = a;
    upulsar_producer_info_t pi = info_of(w->p, w->partition);
    return pi.reconnects >= w->reconnects && pi.state == w->state;
}

static int one_connection(void *tb)
{
    upulsar_tb_stats_t st;
    return upulsar_tb_stats(tb, &st) == UPULSAR_OK && st.connections_active == 1;
}

static upulsar_future_t *send_to(upulsar_producer_t *p, int partition, const char *payload)
{
    char key[32];
    ft_key_for(p, partition, key, sizeof key);
    upulsar_send_opts_t o = {.partition_key = key};
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(p, payload, strlen(payload), &o, &f), UPULSAR_OK, "%s",
                 upulsar_last_error());
    return f;
}

static void expect_ok(upulsar_future_t *f, int partition)
{
    upulsar_msg_id_t id;
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, &id), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(id.partition, partition);
    upulsar_future_release(f);
}

static size_t stored(upulsar_tb_t *tb, int partition)
{
    char topic[64];
    snprintf(topic, sizeof topic, "hung-partition-%d", partition);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    size_t n = upulsar_tb_snapshot_count(s);
    upulsar_tb_snapshot_free(s);
    return n;
}

/* Scenario:
 *  1. Partitions 0..2 live on broker A, 3 on broker C; lookups go to B
 *     (the service URL), which redirects. One message to each partition.
 *  2. A hangs (reads nothing, answers nothing, sockets stay open). The
 *     client's keep-alive declares its connection dead; the producers of
 *     partitions 0..2 start their re-creation, which waits for A's
 *     handshake (connection.timeout.ms is far longer than the test).
 *  3. C drops its connections: partition 3's producer must be re-created,
 *     and a message to it acknowledged, while the attempts on A are still
 *     waiting (state CONNECTING, still the first attempt).
 *  4. A answers again: its producers are created over ONE new connection
 *     (they waited for the same attempt); a message to each partition of A
 *     is stored. Every partition holds exactly its two messages. */
Test(fault_hung_broker, healthy_broker_producers_recover_while_another_broker_hangs)
{
    upulsar_tb_t *a = ft_broker(), *b = ft_broker(), *c3 = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(b, "hung", PARTS), UPULSAR_OK);
    for (int i = 0; i < PARTS; i++) {
        char name[64];
        snprintf(name, sizeof name, "hung-partition-%d", i);
        cr_assert_eq(upulsar_tb_set_owner(b, name, upulsar_tb_url(i < ON_A ? a : c3)),
                     UPULSAR_OK);
    }
    upulsar_client_t *c = ft_client(b, hang_kv);
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(c, "hung", "hung", 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    for (int i = 0; i < PARTS; i++) {
        upulsar_producer_info_t pi = info_of(p, i);
        cr_assert_eq(pi.state, UPULSAR_STATE_READY);
        cr_assert_eq(pi.reconnects, 0);
        expect_ok(send_to(p, i, "before"), i);
    }

    /* 2. A hangs; its producers' first re-creation attempt starts and waits */
    cr_assert_eq(upulsar_tb_freeze(a, 1), UPULSAR_OK);
    for (int i = 0; i < ON_A; i++) {
        wait_state_t w = {p, i, 1, UPULSAR_STATE_CONNECTING};
        cr_assert(ft_wait_for(in_state, &w), "partition %d: no re-creation attempt", i);
    }

    /* 3. C's producer recovers meanwhile */
    cr_assert_geq(upulsar_tb_drop_connections(c3, NULL), 1);
    wait_state_t w3 = {p, ON_A, 1, UPULSAR_STATE_READY};
    cr_assert(ft_wait_for(in_state, &w3), "partition %d was not re-created", ON_A);
    expect_ok(send_to(p, ON_A, "during"), ON_A);
    for (int i = 0; i < ON_A; i++) {
        upulsar_producer_info_t pi = info_of(p, i);
        cr_assert_eq(pi.state, UPULSAR_STATE_CONNECTING,
                     "partition %d: its attempt on the hung broker ended (%s): the healthy "
                     "partition waited for it",
                     i, upulsar_state_name(pi.state));
        cr_assert_eq(pi.reconnects, 1, "partition %d: attempt %llu", i,
                     (unsigned long long)pi.reconnects);
    }
    upulsar_future_t *fa[ON_A];
    for (int i = 0; i < ON_A; i++)
        fa[i] = send_to(p, i, "during"); /* wait in the ring */

    /* 4. A answers again */
    cr_assert_eq(upulsar_tb_freeze(a, 0), UPULSAR_OK);
    for (int i = 0; i < ON_A; i++)
        expect_ok(fa[i], i);
    /* (the connection A hung on goes away once A reads its close) */
    cr_assert(ft_wait_for(one_connection, a),
              "the producers waiting for A opened more than one connection");
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    for (int i = 0; i < PARTS; i++)
        cr_assert_eq(stored(i < ON_A ? a : c3, i), 2, "partition %d", i);
    upulsar_client_destroy(c);
    upulsar_tb_stop(a);
    upulsar_tb_stop(b);
    upulsar_tb_stop(c3);
}

/* Stopping while a re-creation waits for a hung broker returns without
 * waiting for connection.timeout.ms, and resolves the waiting message. */
Test(fault_hung_broker, stop_does_not_wait_for_an_attempt_on_a_hung_broker)
{
    upulsar_tb_t *a = ft_broker();
    upulsar_client_t *c = ft_client(a, hang_kv);
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(c, "hung", "solo", 0, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_tb_freeze(a, 1), UPULSAR_OK);
    upulsar_producer_info_t pi;
    size_t n;
    do {
        ft_pause_ms(5);
        cr_assert_eq(upulsar_producer_list(p, &pi, 1, &n), UPULSAR_OK);
    } while (!(pi.reconnects >= 1 && pi.state == UPULSAR_STATE_CONNECTING));
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(p, "x", 1, NULL, &f), UPULSAR_OK);
    /* the suite's timeout (120 s) is far below connection.timeout.ms */
    upulsar_producer_stop(p, 200);
    upulsar_msg_id_t id;
    upulsar_err_t e = upulsar_future_wait(f, 0, &id);
    cr_assert_neq(e, UPULSAR_ERR__PENDING, "future left pending by stop");
    cr_assert_neq(e, UPULSAR_OK);
    upulsar_future_release(f);
    upulsar_client_destroy(c);
    cr_assert_eq(upulsar_tb_freeze(a, 0), UPULSAR_OK);
    upulsar_tb_stop(a);
}
