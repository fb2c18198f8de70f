/* test_broker_faults_requests.c -- request-level fault injection: delayed
 * and withheld receipts, injected SEND_ERRORs and PRODUCER errors, topic
 * unload (broker-initiated CLOSE_PRODUCER).
 * UPULSAR_TEST_LABEL_CONCURRENCY (faults are driven from the test thread
 * while connection threads run) */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

#include "frame.h"
#include "upulsar/testbroker.h"

#define WAIT_MS 5000
#define QUIET_MS 200

static upulsar_tb_t *start_broker(void)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.ping_interval_ms = 0;
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    return tb;
}

static upulsar_tb_client_t *producer_on(upulsar_tb_t *tb, const char *topic, uint64_t pid,
                                        const char *name)
{
    upulsar_tb_client_t *c = NULL;
    cr_assert_eq(upulsar_tb_client_connect(upulsar_tb_url(tb), WAIT_MS, &c), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_create_producer(c, topic, pid, name, WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK, "%s", upulsar_last_error());
    return c;
}

static void send_one(upulsar_tb_client_t *c, uint64_t pid, const char *name, uint64_t seq)
{
    upulsar_tb_out_msg_t m = {.payload = "x", .len = 1};
    cr_assert_eq(upulsar_tb_client_send_messages(c, pid, name, seq, &m, 1, 0, 0), UPULSAR_OK);
}

static const Pulsar__Proto__CommandSendReceipt *receipt(upulsar_tb_client_t *c,
                                                        upulsar_tb_frame_t *f)
{
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(SEND_RECEIPT), WAIT_MS, f), UPULSAR_OK, "%s",
                 upulsar_last_error());
    return f->cmd->send_receipt;
}

static void assert_quiet(upulsar_tb_client_t *c)
{
    upulsar_tb_frame_t f;
    upulsar_err_t err = upulsar_tb_client_read(c, QUIET_MS, &f);
    cr_assert_eq(err, UPULSAR_ERR__TIMED_OUT, "unexpected %s", err ? "" : up_cmd_name(f.type));
}

static void wait_queued(upulsar_tb_t *tb, uint64_t n)
{
    for (int i = 0; i < 10000; i++) {
        if (upulsar_tb_queued_receipts(tb) == n)
            return;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    cr_assert(0, "queued receipts stayed at %llu, wanted %llu",
              (unsigned long long)upulsar_tb_queued_receipts(tb), (unsigned long long)n);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

Test(broker_faults_requests, delayed_receipts_arrive_no_sooner_than_the_delay_in_order)
{
    upulsar_tb_t *tb = start_broker();
    upulsar_tb_client_t *c = producer_on(tb, "t", 1, "p");
    cr_assert_eq(upulsar_tb_delay_receipts(tb, 250), UPULSAR_OK);
    int64_t t0 = mono_ms();
    for (uint64_t s = 0; s < 5; s++)
        send_one(c, 1, "p", s);
    upulsar_tb_frame_t f;
    for (uint64_t s = 0; s < 5; s++) {
        cr_assert_eq(receipt(c, &f)->sequence_id, s);
        /* lower bound only: the broker may never answer early */
        cr_assert_geq(mono_ms() - t0, 250);
    }
    /* stored at once, only the answer waits */
    upulsar_tb_topic_stats_t st;
    upulsar_tb_topic_stats(tb, "t", &st);
    cr_assert_eq(st.entries, 5);
    cr_assert_eq(upulsar_tb_delay_receipts(tb, 0), UPULSAR_OK);
    send_one(c, 1, "p", 5);
    cr_assert_eq(receipt(c, &f)->sequence_id, 5);
    cr_assert_eq(upulsar_tb_queued_receipts(tb), 0);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_faults_requests, withheld_receipts_are_released_in_order)
{
    upulsar_tb_t *tb = start_broker();
    upulsar_tb_client_t *c = producer_on(tb, "t", 1, "p");
    cr_assert_eq(upulsar_tb_client_create_producer(c, "u", 2, "q", WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "t"), UPULSAR_OK);
    for (uint64_t s = 0; s < 3; s++)
        send_one(c, 1, "p", s);
    /* another topic on the same connection is not held */
    send_one(c, 2, "q", 0);
    upulsar_tb_frame_t f;
    cr_assert_eq(receipt(c, &f)->producer_id, 2);
    wait_queued(tb, 3);
    assert_quiet(c);
    upulsar_tb_topic_stats_t st;
    upulsar_tb_topic_stats(tb, "t", &st);
    cr_assert_eq(st.entries, 3); /* stored, just not acknowledged */
    cr_assert_eq(upulsar_tb_release_receipts(tb, "t"), UPULSAR_OK);
    for (uint64_t s = 0; s < 3; s++) {
        const Pulsar__Proto__CommandSendReceipt *r = receipt(c, &f);
        cr_assert_eq(r->producer_id, 1);
        cr_assert_eq(r->sequence_id, s);
        cr_assert_eq(r->message_id->entryid, s);
    }
    cr_assert_eq(upulsar_tb_queued_receipts(tb), 0);
    /* hold everything */
    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    send_one(c, 2, "q", 1);
    wait_queued(tb, 1);
    assert_quiet(c);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    cr_assert_eq(receipt(c, &f)->sequence_id, 1);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_faults_requests, withheld_receipts_die_with_their_connection)
{
    upulsar_tb_t *tb = start_broker();
    upulsar_tb_client_t *c = producer_on(tb, "t", 1, "p");
    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    send_one(c, 1, "p", 0);
    wait_queued(tb, 1);
    cr_assert_eq(upulsar_tb_drop_connections(tb, NULL), 1);
    cr_assert_eq(upulsar_tb_queued_receipts(tb), 0);
    upulsar_tb_client_close(c);
    /* the resend after reconnecting is a duplicate, acknowledged with -1 */
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    c = producer_on(tb, "t", 1, "p");
    send_one(c, 1, "p", 0);
    upulsar_tb_frame_t f;
    cr_assert_eq(receipt(c, &f)->message_id->entryid, UINT64_MAX);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_faults_requests, next_sends_fail_with_the_chosen_error)
{
    upulsar_tb_t *tb = start_broker();
    upulsar_tb_client_t *c = producer_on(tb, "t", 1, "p");
    cr_assert_eq(upulsar_tb_client_create_producer(c, "u", 2, "q", WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK);
    cr_assert_eq(upulsar_tb_fail_sends(tb, "t", 2, UP_SERR(PersistenceError)), UPULSAR_OK);
    upulsar_tb_frame_t f;
    send_one(c, 2, "q", 0); /* other topic: unaffected */
    receipt(c, &f);
    for (uint64_t s = 0; s < 2; s++) {
        send_one(c, 1, "p", s);
        cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(SEND_ERROR), WAIT_MS, &f), UPULSAR_OK);
        cr_assert_eq(f.cmd->send_error->producer_id, 1);
        cr_assert_eq(f.cmd->send_error->sequence_id, s);
        cr_assert_eq(f.cmd->send_error->error, UP_SERR(PersistenceError));
    }
    send_one(c, 1, "p", 0); /* the failed ones were not stored: no dedup hit */
    cr_assert_eq(receipt(c, &f)->message_id->entryid, 0);
    /* any topic */
    cr_assert_eq(upulsar_tb_fail_sends(tb, NULL, 1, UP_SERR(TopicTerminatedError)), UPULSAR_OK);
    send_one(c, 2, "q", 1);
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(SEND_ERROR), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.cmd->send_error->error, UP_SERR(TopicTerminatedError));
    send_one(c, 2, "q", 1);
    receipt(c, &f);
    upulsar_tb_topic_stats_t st;
    upulsar_tb_topic_stats(tb, "t", &st);
    cr_assert_eq(st.send_errors, 2);
    cr_assert_eq(st.entries, 1);
    cr_assert_eq(upulsar_tb_fail_sends(tb, "t", 1, 99), UPULSAR_ERR__INVALID_ARG);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_faults_requests, next_producer_requests_fail_with_the_chosen_error)
{
    upulsar_tb_t *tb = start_broker();
    upulsar_tb_client_t *c = NULL;
    cr_assert_eq(upulsar_tb_client_connect(upulsar_tb_url(tb), WAIT_MS, &c), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_fail_producers(tb, "t", 2, UP_SERR(ServiceNotReady)), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_create_producer(c, "u", 1, NULL, WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 2, "p", WAIT_MS, NULL, 0, NULL),
                     UPULSAR_ERR_SERVICE_NOT_READY);
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 2, "p", WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK);
    cr_assert_eq(upulsar_tb_fail_producers(tb, NULL, 1, UP_SERR(TopicNotFound)), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_create_producer(c, "v", 3, NULL, WAIT_MS, NULL, 0, NULL),
                 UPULSAR_ERR_TOPIC_NOT_FOUND);
    cr_assert_eq(upulsar_tb_client_create_producer(c, "v", 3, NULL, WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_faults_requests, unload_closes_producers_and_ignores_their_sends_until_recreated)
{
    upulsar_tb_t *tb = start_broker();
    upulsar_tb_client_t *c = producer_on(tb, "t", 7, "p");
    cr_assert_eq(upulsar_tb_client_create_producer(c, "u", 8, "q", WAIT_MS, NULL, 0, NULL),
                 UPULSAR_OK);
    upulsar_tb_frame_t f;
    send_one(c, 7, "p", 0);
    receipt(c, &f);
    cr_assert_eq(upulsar_tb_unload_topic(tb, "t"), 1);
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(CLOSE_PRODUCER), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.cmd->close_producer->producer_id, 7);
    upulsar_tb_topic_stats_t st;
    upulsar_tb_topic_stats(tb, "t", &st);
    cr_assert_eq(st.producers, 0);
    /* a SEND for the closed id is ignored (no answer, connection kept):
     * the next answer on the connection is the other producer's receipt */
    send_one(c, 7, "p", 1);
    send_one(c, 8, "q", 0);
    cr_assert_eq(receipt(c, &f)->producer_id, 8);
    /* re-created with the same id: works again, nothing was stored */
    int64_t last = 0;
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 7, "p", WAIT_MS, NULL, 0, &last),
                 UPULSAR_OK);
    cr_assert_eq(last, 0);
    send_one(c, 7, "p", 1);
    const Pulsar__Proto__CommandSendReceipt *r = receipt(c, &f);
    cr_assert_eq(r->producer_id, 7);
    cr_assert_eq(r->message_id->entryid, 1);
    cr_assert_eq(upulsar_tb_unload_topic(tb, "nothing-here"), 0);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}
