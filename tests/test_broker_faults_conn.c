/* test_broker_faults_conn.c -- connection-level fault injection: dropping
 * connections (all or per topic), refusing connects, a broker that stops
 * answering pings, a frozen broker, restart on the same port.
 * UPULSAR_TEST_LABEL_CONCURRENCY (faults are driven from the test thread
 * while connection threads run) */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "broker_common.h"

static upulsar_tb_t *start_broker(int ping_ms)
{
    upulsar_tb_opts_t o = bc_opts();
    o.ping_interval_ms = ping_ms;
    return bc_start(&o);
}

/* A PING gets its PONG (the broker's own PINGs answered and skipped). */
static void assert_alive(upulsar_tb_client_t *c)
{
    bc_send_ping_pong(c, UP_CMD(PING));
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(PONG), WAIT_MS, &f), UPULSAR_OK, "%s",
                 upulsar_last_error());
}

/* A new raw client of @p tb gets its PONG: the broker still serves. */
static void assert_serving(upulsar_tb_t *tb)
{
    upulsar_tb_client_t *c = bc_connect(tb);
    assert_alive(c);
    upulsar_tb_client_close(c);
}

Test(broker_faults_conn, drop_all_connections_closes_every_client)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = bc_connect(tb);
    cr_assert_eq(upulsar_tb_drop_connections(tb, NULL), 3);
    for (int i = 0; i < 3; i++) {
        bc_assert_closed(c[i]);
        upulsar_tb_client_close(c[i]);
    }
    upulsar_tb_stats_t st = bc_stats(tb);
    cr_assert_eq(st.connections_active, 0);
    /* the broker still accepts */
    assert_serving(tb);
    upulsar_tb_stop(tb);
}

Test(broker_faults_conn, drop_connections_of_a_topic_spares_the_others)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *a = bc_connect(tb), *b = bc_connect(tb), *k = bc_connect(tb), *idle = bc_connect(tb);
    bc_create_producer(a, "t1", 1, "a");
    bc_create_producer(b, "t2", 1, "b");
    cr_assert_eq(upulsar_tb_client_subscribe(k, "persistent://public/default/t1", "s", 1, 1, 0,
                                             WAIT_MS),
                 UPULSAR_OK);
    cr_assert_eq(upulsar_tb_drop_connections(tb, "t1"), 2);
    bc_assert_closed(a);
    bc_assert_closed(k);
    assert_alive(b);
    assert_alive(idle);
    /* when drop returns, the producers are gone: the name is free */
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t1");
    cr_assert_eq(st.producers, 0);
    cr_assert_eq(st.consumers, 0);
    bc_create_producer(b, "t1", 2, "a");
    cr_assert_eq(upulsar_tb_drop_connections(tb, "never-used"), 0);
    cr_assert_lt(upulsar_tb_drop_connections(tb, "a/b"), 0);
    upulsar_tb_client_close(a);
    upulsar_tb_client_close(b);
    upulsar_tb_client_close(k);
    upulsar_tb_client_close(idle);
    upulsar_tb_stop(tb);
}

Test(broker_faults_conn, refused_connections_never_handshake_until_the_period_ends)
{
    upulsar_tb_t *tb = start_broker(0);
    cr_assert_eq(upulsar_tb_refuse_connections(tb, 60000), UPULSAR_OK);
    for (int i = 0; i < 3; i++) {
        upulsar_tb_client_t *c = NULL;
        upulsar_err_t err = upulsar_tb_client_connect(upulsar_tb_url(tb), WAIT_MS, &c);
        cr_assert(err == UPULSAR_ERR__CLOSED || err == UPULSAR_ERR__CONNECT ||
                      err == UPULSAR_ERR__IO,
                  "connect during refusal gave %s", upulsar_err_name(err));
        cr_assert_null(c);
    }
    upulsar_tb_stats_t st = bc_stats(tb);
    cr_assert_eq(st.connections_refused, 3);
    cr_assert_eq(upulsar_tb_refuse_connections(tb, 0), UPULSAR_OK);
    assert_serving(tb);
    upulsar_tb_stop(tb);
}

Test(broker_faults_conn, ignoring_pings_answers_nothing_but_serves_commands)
{
    upulsar_tb_t *tb = start_broker(30);
    cr_assert_eq(upulsar_tb_ignore_pings(tb, 1), UPULSAR_OK);
    upulsar_tb_client_t *c = bc_connect(tb);
    bc_send_ping_pong(c, UP_CMD(PING));
    /* no PONG, no PING from the broker, and no idle close across many
     * ping intervals (the client says nothing either) */
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_read(c, QUIET_MS, &f), UPULSAR_ERR__TIMED_OUT);
    upulsar_tb_stats_t st = bc_stats(tb);
    cr_assert_eq(st.connections_active, 1);
    cr_assert_eq(st.pings_sent, 0);
    /* other commands are still answered */
    bc_create_producer(c, "t", 1, NULL);
    cr_assert_eq(upulsar_tb_ignore_pings(tb, 0), UPULSAR_OK);
    assert_alive(c);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_faults_conn, frozen_broker_reads_nothing_and_resumes_after)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c = bc_connect(tb);
    cr_assert_eq(upulsar_tb_freeze(tb, 1), UPULSAR_OK);
    bc_send_ping_pong(c, UP_CMD(PING));
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_read(c, QUIET_MS, &f), UPULSAR_ERR__TIMED_OUT);
    /* a new connection is accepted by the kernel but never handshaken */
    upulsar_tb_client_t *d = NULL;
    cr_assert_eq(upulsar_tb_client_connect(upulsar_tb_url(tb), QUIET_MS, &d),
                 UPULSAR_ERR__TIMED_OUT);
    cr_assert_eq(upulsar_tb_freeze(tb, 0), UPULSAR_OK);
    /* the PING sent while frozen is answered now */
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(PONG), WAIT_MS, &f), UPULSAR_OK);
    d = bc_connect(tb);
    assert_alive(d);
    upulsar_tb_client_close(c);
    upulsar_tb_client_close(d);
    upulsar_tb_stop(tb);
}

Test(broker_faults_conn, restart_keeps_the_log_and_listens_on_the_same_port)
{
    upulsar_tb_t *tb = bc_broker_dedup(); /* dedup state survives too */
    int port = upulsar_tb_port(tb);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    upulsar_tb_frame_t f;
    for (uint64_t s = 0; s < 3; s++) {
        bc_send_one(c, 1, "p", s);
        bc_receipt(c, &f);
    }
    cr_assert_eq(upulsar_tb_set_partitions(tb, "parted", 3), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_restart(tb), UPULSAR_OK, "%s", upulsar_last_error());
    bc_assert_closed(c);
    upulsar_tb_client_close(c);
    cr_assert_eq(upulsar_tb_port(tb), port);

    c = bc_connect(tb);
    int64_t last = 0;
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 1, "p", WAIT_MS, NULL, 0, &last),
                 UPULSAR_OK);
    cr_assert_eq(last, 2);
    bc_send_one(c, 1, "p", 3);
    cr_assert_eq(bc_receipt(c, &f)->message_id->entryid, 3);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "t", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 4);
    upulsar_tb_snapshot_free(s);
    upulsar_tb_stats_t st = bc_stats(tb);
    cr_assert_eq(st.restarts, 1);
    cr_assert_eq(st.connections_active, 1);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

typedef struct churn {
    upulsar_tb_t *tb;
    atomic_int stop;
    int created;
} churn_t;

static void *producer_churn(void *arg)
{
    churn_t *ch = arg;
    while (!atomic_load(&ch->stop)) {
        upulsar_tb_client_t *c = NULL;
        if (upulsar_tb_client_connect(upulsar_tb_url(ch->tb), WAIT_MS, &c))
            continue;
        /* broker-generated names, on the topic being dropped */
        for (uint64_t id = 0; id < 4; id++)
            if (upulsar_tb_client_create_producer(c, "churn", id, NULL, WAIT_MS, NULL, 0, NULL) ==
                UPULSAR_OK)
                ch->created++;
        upulsar_tb_client_close(c);
    }
    return NULL;
}

Test(broker_faults_conn, dropping_a_topic_while_producers_are_created_on_it_is_safe)
{
    upulsar_tb_t *tb = start_broker(0);
    churn_t ch = {.tb = tb};
    atomic_init(&ch.stop, 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, producer_churn, &ch), 0);
    int dropped = 0;
    for (int i = 0; i < 200; i++) {
        int n = upulsar_tb_drop_connections(tb, "churn");
        cr_assert_geq(n, 0);
        dropped += n;
        nanosleep(&(struct timespec){0, 500000}, NULL);
    }
    atomic_store(&ch.stop, 1);
    pthread_join(th, NULL);
    cr_assert_gt(ch.created, 0);
    assert_serving(tb);
    upulsar_tb_stop(tb);
}
