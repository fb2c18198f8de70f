/* test_broker_producer.c -- producer registration: generated names,
 * last_sequence_id, ProducerBusy, re-creation on the same connection,
 * CLOSE_PRODUCER, SEND for an unknown producer id.
 * UPULSAR_TEST_LABEL_CONCURRENCY (names shared across connection threads) */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

#include "frame.h"
#include "upulsar/testbroker.h"

#define WAIT_MS 5000

static upulsar_tb_t *start_broker(void)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.ping_interval_ms = 0;
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    return tb;
}

static upulsar_tb_client_t *connect_to(upulsar_tb_t *tb)
{
    upulsar_tb_client_t *c = NULL;
    cr_assert_eq(upulsar_tb_client_connect(upulsar_tb_url(tb), WAIT_MS, &c), UPULSAR_OK, "%s",
                 upulsar_last_error());
    return c;
}

/* The broker notices a client's close asynchronously: wait until the
 * topic has no producer left (bounded, generous). */
static void wait_no_producers(upulsar_tb_t *tb, const char *topic)
{
    for (int i = 0; i < 10000; i++) {
        upulsar_tb_topic_stats_t st;
        cr_assert_eq(upulsar_tb_topic_stats(tb, topic, &st), UPULSAR_OK);
        if (st.producers == 0)
            return;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    cr_assert(0, "producers of %s never went away", topic);
}

static void send_one(upulsar_tb_client_t *c, uint64_t pid, const char *name, uint64_t seq)
{
    upulsar_tb_out_msg_t m = {.payload = "x", .len = 1};
    cr_assert_eq(upulsar_tb_client_send_messages(c, pid, name, seq, &m, 1, 0, 0), UPULSAR_OK);
}

Test(broker_producer, generated_names_are_unique_and_start_without_history)
{
    upulsar_tb_t *tb = start_broker();
    upulsar_tb_client_t *c = connect_to(tb);
    char n1[128], n2[128];
    int64_t last = 42;
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 1, NULL, WAIT_MS, n1, sizeof n1, &last),
                 UPULSAR_OK);
    cr_assert_gt(strlen(n1), 0);
    cr_assert_eq(last, -1);
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 2, NULL, WAIT_MS, n2, sizeof n2, &last),
                 UPULSAR_OK);
    cr_assert_str_neq(n1, n2);
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, "t", &st), UPULSAR_OK);
    cr_assert_eq(st.producers, 2);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_producer, given_name_is_echoed)
{
    upulsar_tb_t *tb = start_broker();
    upulsar_tb_client_t *c = connect_to(tb);
    char n[128];
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 7, "mine", WAIT_MS, n, sizeof n, NULL),
                 UPULSAR_OK);
    cr_assert_str_eq(n, "mine");
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_producer, duplicate_name_on_topic_is_producer_busy)
{
    upulsar_tb_t *tb = start_broker();
    upulsar_tb_client_t *a = connect_to(tb), *b = connect_to(tb);
    cr_assert_eq(upulsar_tb_client_create_producer(a, "t", 1, "p", WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK);
    /* another connection, same name: busy */
    cr_assert_eq(upulsar_tb_client_create_producer(b, "t", 1, "p", WAIT_MS, NULL, 0, NULL),
                 UPULSAR_ERR_PRODUCER_BUSY);
    /* same connection, another producer id, same name: busy too */
    cr_assert_eq(upulsar_tb_client_create_producer(a, "t", 2, "p", WAIT_MS, NULL, 0, NULL),
                 UPULSAR_ERR_PRODUCER_BUSY);
    /* same name on another topic is fine */
    cr_assert_eq(upulsar_tb_client_create_producer(b, "other", 1, "p", WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK);
    /* same connection + producer id re-creating: success again */
    char n[64];
    cr_assert_eq(upulsar_tb_client_create_producer(a, "t", 1, "p", WAIT_MS, n, sizeof n, NULL),
                 UPULSAR_OK);
    cr_assert_str_eq(n, "p");
    /* once the holder's connection is gone the name is free */
    upulsar_tb_client_close(a);
    wait_no_producers(tb, "t");
    cr_assert_eq(upulsar_tb_client_create_producer(b, "t", 9, "p", WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK);
    upulsar_tb_client_close(b);
    upulsar_tb_stop(tb);
}

Test(broker_producer, close_producer_gets_success_and_frees_the_name)
{
    upulsar_tb_t *tb = start_broker();
    upulsar_tb_client_t *c = connect_to(tb);
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 1, "p", WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK);
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandCloseProducer cp = PULSAR__PROTO__COMMAND_CLOSE_PRODUCER__INIT;
    cmd.type = UP_CMD(CLOSE_PRODUCER);
    cmd.close_producer = &cp;
    cp.producer_id = 1;
    cp.request_id = 777;
    cr_assert_eq(upulsar_tb_client_send_cmd(c, &cmd), UPULSAR_OK);
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(SUCCESS), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.cmd->success->request_id, 777);
    upulsar_tb_topic_stats_t st;
    upulsar_tb_topic_stats(tb, "t", &st);
    cr_assert_eq(st.producers, 0);
    upulsar_tb_client_t *d = connect_to(tb);
    cr_assert_eq(upulsar_tb_client_create_producer(d, "t", 1, "p", WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK);
    upulsar_tb_client_close(d);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_producer, last_sequence_id_reports_what_the_name_stored)
{
    upulsar_tb_t *tb = start_broker();
    upulsar_tb_client_t *c = connect_to(tb);
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 1, "p", WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK);
    upulsar_tb_frame_t f;
    for (uint64_t s = 0; s < 3; s++) {
        send_one(c, 1, "p", s);
        cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(SEND_RECEIPT), WAIT_MS, &f), UPULSAR_OK);
    }
    upulsar_tb_client_close(c);
    c = connect_to(tb);
    int64_t last = -7;
    wait_no_producers(tb, "t");
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 1, "p", WAIT_MS, NULL, 0, &last),
                 UPULSAR_OK);
    cr_assert_eq(last, 2);
    /* per topic: the same name elsewhere has no history */
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t2", 2, "p", WAIT_MS, NULL, 0, &last),
                 UPULSAR_OK);
    cr_assert_eq(last, -1);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_producer, send_for_unknown_producer_closes_the_connection)
{
    upulsar_tb_t *tb = start_broker();
    upulsar_tb_client_t *c = connect_to(tb);
    send_one(c, 99, "ghost", 0);
    upulsar_tb_frame_t f;
    upulsar_err_t err;
    while ((err = upulsar_tb_client_read(c, WAIT_MS, &f)) == UPULSAR_OK)
        ;
    cr_assert_eq(err, UPULSAR_ERR__CLOSED);
    upulsar_tb_topic_stats_t st;
    upulsar_tb_topic_stats(tb, "t", &st);
    cr_assert_eq(st.entries, 0);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_producer, invalid_topic_is_refused_with_invalid_topic_name)
{
    upulsar_tb_t *tb = start_broker();
    upulsar_tb_client_t *c = connect_to(tb);
    cr_assert_eq(upulsar_tb_client_create_producer(c, "a/b", 1, NULL, WAIT_MS, NULL, 0, NULL),
                 UPULSAR_ERR_INVALID_TOPIC_NAME);
    /* the connection stays usable */
    cr_assert_eq(upulsar_tb_client_create_producer(c, "ok", 1, NULL, WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}
