/* test_broker_producer.c -- producer registration: generated names,
 * last_sequence_id, ProducerBusy, re-creation on the same connection,
 * CLOSE_PRODUCER, SEND for an unknown producer id.
 * UPULSAR_TEST_LABEL_CONCURRENCY (names shared across connection threads) */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "broker_common.h"

Test(broker_producer, generated_names_are_unique_and_start_without_history)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_connect(tb);
    char n1[128], n2[128];
    int64_t last = 42;
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 1, NULL, WAIT_MS, n1, sizeof n1, &last),
                 UPULSAR_OK);
    cr_assert_gt(strlen(n1), 0);
    cr_assert_eq(last, -1);
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 2, NULL, WAIT_MS, n2, sizeof n2, &last),
                 UPULSAR_OK);
    cr_assert_str_neq(n1, n2);
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.producers, 2);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_producer, given_name_is_echoed)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_connect(tb);
    char n[128];
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 7, "mine", WAIT_MS, n, sizeof n, NULL),
                 UPULSAR_OK);
    cr_assert_str_eq(n, "mine");
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_producer, duplicate_name_on_topic_is_producer_busy)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *a = bc_connect(tb), *b = bc_connect(tb);
    bc_create_producer(a, "t", 1, "p");
    /* another connection, same name: busy */
    bc_create_producer_gets(b, "t", 1, "p", UPULSAR_ERR_PRODUCER_BUSY);
    /* same connection, another producer id, same name: busy too */
    bc_create_producer_gets(a, "t", 2, "p", UPULSAR_ERR_PRODUCER_BUSY);
    /* same name on another topic is fine */
    bc_create_producer(b, "other", 1, "p");
    /* same connection + producer id re-creating: success again */
    char n[64];
    cr_assert_eq(upulsar_tb_client_create_producer(a, "t", 1, "p", WAIT_MS, n, sizeof n, NULL),
                 UPULSAR_OK);
    cr_assert_str_eq(n, "p");
    /* once the holder's connection is gone the name is free */
    upulsar_tb_client_close(a);
    bc_wait_no_producers(tb, "t");
    bc_create_producer(b, "t", 9, "p");
    upulsar_tb_client_close(b);
    upulsar_tb_stop(tb);
}

Test(broker_producer, close_producer_gets_success_and_frees_the_name)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
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
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.producers, 0);
    upulsar_tb_client_t *d = bc_producer_on(tb, "t", 1, "p");
    upulsar_tb_client_close(d);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_producer, last_sequence_id_reports_what_the_name_stored)
{
    upulsar_tb_t *tb = bc_broker_dedup();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    upulsar_tb_frame_t f;
    for (uint64_t s = 0; s < 3; s++) {
        bc_send_one(c, 1, "p", s);
        bc_receipt(c, &f);
    }
    upulsar_tb_client_close(c);
    c = bc_connect(tb);
    int64_t last = -7;
    bc_wait_no_producers(tb, "t");
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
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_connect(tb);
    bc_send_one(c, 99, "ghost", 0);
    bc_assert_closed(c);
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.entries, 0);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_producer, invalid_topic_is_refused_with_invalid_topic_name)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_connect(tb);
    bc_create_producer_gets(c, "a/b", 1, NULL, UPULSAR_ERR_INVALID_TOPIC_NAME);
    /* tenant and namespace names as Pulsar's NamedEntity.checkName takes
     * them: letters, digits, '_' and "-=:." */
    bc_create_producer_gets(c, "persistent://ten+ant/ns/t", 2, NULL,
                            UPULSAR_ERR_INVALID_TOPIC_NAME);
    bc_create_producer_gets(c, "persistent://tenant/n s/t", 3, NULL,
                            UPULSAR_ERR_INVALID_TOPIC_NAME);
    bc_create_producer(c, "persistent://te_n-a.n=t:1/ns/t", 4, NULL);
    /* the connection stays usable */
    bc_create_producer(c, "ok", 1, NULL);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

/* CLOSE_PRODUCER @p pid over @p c, answered with SUCCESS. */
static void close_producer(upulsar_tb_client_t *c, uint64_t pid)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandCloseProducer cp = PULSAR__PROTO__COMMAND_CLOSE_PRODUCER__INIT;
    cmd.type = UP_CMD(CLOSE_PRODUCER);
    cmd.close_producer = &cp;
    cp.producer_id = pid;
    cp.request_id = upulsar_tb_client_next_request_id(c);
    cr_assert_eq(upulsar_tb_client_send_cmd(c, &cmd), UPULSAR_OK);
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(SUCCESS), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.cmd->success->request_id, cp.request_id);
}

/* Hundreds of producers on one connection, each on its own topic, closed
 * in a mixed order (oldest first, newest first, every third): every SEND
 * still reaches the topic of its own producer id, closed ids are free to be
 * created again (on another topic), and the connection's end removes every
 * producer that is left. */
Test(broker_producer, many_producers_on_one_connection_keep_their_ids_through_closes)
{
    enum { N = 300 };
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_connect(tb);
    char topic[64], name[64];
    bool closed[N] = {0};
    for (int i = 0; i < N; i++) {
        snprintf(topic, sizeof topic, "many-%d", i);
        snprintf(name, sizeof name, "p%d", i);
        bc_create_producer(c, topic, (uint64_t)i * 1024, name);
    }
    for (int i = 0; i < N; i += 3) { /* every third, oldest first */
        close_producer(c, (uint64_t)i * 1024);
        closed[i] = true;
    }
    for (int i = N - 1; i >= N - 40; i--) /* the newest, newest first */
        if (!closed[i]) {
            close_producer(c, (uint64_t)i * 1024);
            closed[i] = true;
        }
    for (int i = 1; i < 60; i += 2) /* some old ones among the holes */
        if (!closed[i]) {
            close_producer(c, (uint64_t)i * 1024);
            closed[i] = true;
        }
    upulsar_tb_frame_t f;
    int live = 0;
    for (int i = 0; i < N; i++) {
        snprintf(topic, sizeof topic, "many-%d", i);
        upulsar_tb_topic_stats_t st = bc_topic_stats(tb, topic);
        cr_assert_eq(st.producers, closed[i] ? 0 : 1, "%s", topic);
        if (closed[i])
            continue;
        live++;
        snprintf(name, sizeof name, "p%d", i);
        bc_send_one(c, (uint64_t)i * 1024, name, (uint64_t)i);
        const Pulsar__Proto__CommandSendReceipt *r = bc_receipt(c, &f);
        cr_assert_eq(r->producer_id, (uint64_t)i * 1024);
        cr_assert_eq(r->sequence_id, (uint64_t)i);
        cr_assert_eq(bc_topic_stats(tb, topic).entries, 1, "%s", topic);
    }
    cr_assert_gt(live, 0);
    cr_assert_lt(live, N);
    /* a closed id is free again, and now names its new topic */
    for (int i = 0; i < N; i += 3) {
        snprintf(topic, sizeof topic, "again-%d", i);
        bc_create_producer(c, topic, (uint64_t)i * 1024, NULL);
        bc_send_one(c, (uint64_t)i * 1024, "x", 7);
        cr_assert_eq(bc_receipt(c, &f)->producer_id, (uint64_t)i * 1024);
        cr_assert_eq(bc_topic_stats(tb, topic).entries, 1, "%s", topic);
        snprintf(topic, sizeof topic, "many-%d", i);
        cr_assert_eq(bc_topic_stats(tb, topic).entries, 0, "%s", topic);
    }
    upulsar_tb_client_close(c);
    for (int i = 0; i < N; i++) {
        snprintf(topic, sizeof topic, "many-%d", i);
        bc_wait_no_producers(tb, topic);
        if (i % 3 == 0) {
            snprintf(topic, sizeof topic, "again-%d", i);
            bc_wait_no_producers(tb, topic);
        }
    }
    upulsar_tb_stop(tb);
}

/* As a Pulsar broker creating a topic (BrokerService's consistency check of
 * a new topic against its partitioned metadata): a partition past the
 * topic's partition count, and the base name of a partitioned topic, are
 * refused with NotAllowedError; the partitions in range are served. */
Test(broker_producer, a_partition_past_the_count_and_the_base_of_a_partitioned_topic_are_refused)
{
    upulsar_tb_t *tb = bc_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "pc", 4), UPULSAR_OK);
    upulsar_tb_client_t *c = bc_connect(tb);
    bc_create_producer(c, "pc-partition-0", 1, NULL);
    bc_create_producer(c, "pc-partition-3", 2, NULL);
    bc_create_producer_gets(c, "pc-partition-4", 3, NULL, UPULSAR_ERR_NOT_ALLOWED);
    cr_assert(strstr(upulsar_last_error(), "max allowed 4 partitions") != NULL, "%s",
              upulsar_last_error());
    bc_create_producer_gets(c, "pc-partition-17", 4, NULL, UPULSAR_ERR_NOT_ALLOWED);
    bc_create_producer_gets(c, "pc", 5, NULL, UPULSAR_ERR_NOT_ALLOWED);
    /* a topic without partitions stays a topic of its own */
    bc_create_producer(c, "plain", 6, NULL);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}
