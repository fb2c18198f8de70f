/* test_broker_faults_requests.c -- request-level fault injection: delayed
 * and withheld receipts, injected SEND_ERRORs and PRODUCER errors, topic
 * unload (broker-initiated CLOSE_PRODUCER).
 * UPULSAR_TEST_LABEL_CONCURRENCY (faults are driven from the test thread
 * while connection threads run) */
#include <string.h>
#include <time.h>

#include "broker_common.h"

/* A broker, and one raw client with producers @p pid1 ("p" on "t") and
 * @p pid2 ("q" on "u"). */
static upulsar_tb_t *broker_with_two_producers(upulsar_tb_client_t **c, uint64_t pid1,
                                               uint64_t pid2)
{
    upulsar_tb_t *tb = bc_broker_dedup();
    *c = bc_producer_on(tb, "t", pid1, "p");
    bc_create_producer(*c, "u", pid2, "q");
    return tb;
}

/* The next answer is SEND_ERROR @p error for producer @p pid's @p seq. */
static void expect_send_error(upulsar_tb_client_t *c, uint64_t pid, uint64_t seq, int error)
{
    upulsar_tb_frame_t f;
    const Pulsar__Proto__CommandSendError *e = bc_send_error(c, &f);
    cr_assert_eq(e->producer_id, pid);
    cr_assert_eq(e->sequence_id, seq);
    cr_assert_eq(e->error, error);
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
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    cr_assert_eq(upulsar_tb_delay_receipts(tb, 250), UPULSAR_OK);
    int64_t t0 = mono_ms();
    for (uint64_t s = 0; s < 5; s++)
        bc_send_one(c, 1, "p", s);
    upulsar_tb_frame_t f;
    for (uint64_t s = 0; s < 5; s++) {
        cr_assert_eq(bc_receipt(c, &f)->sequence_id, s);
        /* lower bound only: the broker may never answer early */
        cr_assert_geq(mono_ms() - t0, 250);
    }
    /* stored at once, only the answer waits */
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.entries, 5);
    cr_assert_eq(upulsar_tb_delay_receipts(tb, 0), UPULSAR_OK);
    bc_send_one(c, 1, "p", 5);
    cr_assert_eq(bc_receipt(c, &f)->sequence_id, 5);
    cr_assert_eq(upulsar_tb_queued_receipts(tb), 0);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_faults_requests, withheld_receipts_are_released_in_order)
{
    upulsar_tb_client_t *c;
    upulsar_tb_t *tb = broker_with_two_producers(&c, 1, 2);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "t"), UPULSAR_OK);
    for (uint64_t s = 0; s < 3; s++)
        bc_send_one(c, 1, "p", s);
    /* another topic on the same connection is not held */
    bc_send_one(c, 2, "q", 0);
    upulsar_tb_frame_t f;
    cr_assert_eq(bc_receipt(c, &f)->producer_id, 2);
    wait_queued(tb, 3);
    bc_assert_quiet(c);
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.entries, 3); /* stored, just not acknowledged */
    cr_assert_eq(upulsar_tb_release_receipts(tb, "t"), UPULSAR_OK);
    for (uint64_t s = 0; s < 3; s++) {
        const Pulsar__Proto__CommandSendReceipt *r = bc_receipt(c, &f);
        cr_assert_eq(r->producer_id, 1);
        cr_assert_eq(r->sequence_id, s);
        cr_assert_eq(r->message_id->entryid, s);
    }
    cr_assert_eq(upulsar_tb_queued_receipts(tb), 0);
    /* hold everything */
    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    bc_send_one(c, 2, "q", 1);
    wait_queued(tb, 1);
    bc_assert_quiet(c);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    cr_assert_eq(bc_receipt(c, &f)->sequence_id, 1);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_faults_requests, withheld_receipts_die_with_their_connection)
{
    upulsar_tb_t *tb = bc_broker_dedup();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    bc_send_one(c, 1, "p", 0);
    wait_queued(tb, 1);
    cr_assert_eq(upulsar_tb_drop_connections(tb, NULL), 1);
    cr_assert_eq(upulsar_tb_queued_receipts(tb), 0);
    upulsar_tb_client_close(c);
    /* the resend after reconnecting is a duplicate, acknowledged with -1 */
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    c = bc_producer_on(tb, "t", 1, "p");
    bc_send_one(c, 1, "p", 0);
    upulsar_tb_frame_t f;
    cr_assert_eq(bc_receipt(c, &f)->message_id->entryid, UINT64_MAX);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_faults_requests, next_sends_fail_with_the_chosen_error)
{
    upulsar_tb_client_t *c;
    upulsar_tb_t *tb = broker_with_two_producers(&c, 1, 2);
    cr_assert_eq(upulsar_tb_fail_sends(tb, "t", 2, UP_SERR(PersistenceError)), UPULSAR_OK);
    upulsar_tb_frame_t f;
    bc_send_one(c, 2, "q", 0); /* other topic: unaffected */
    bc_receipt(c, &f);
    for (uint64_t s = 0; s < 2; s++) {
        bc_send_one(c, 1, "p", s);
        expect_send_error(c, 1, s, UP_SERR(PersistenceError));
    }
    bc_send_one(c, 1, "p", 0); /* the failed ones were not stored: no dedup hit */
    cr_assert_eq(bc_receipt(c, &f)->message_id->entryid, 0);
    /* any topic */
    cr_assert_eq(upulsar_tb_fail_sends(tb, NULL, 1, UP_SERR(TopicTerminatedError)), UPULSAR_OK);
    bc_send_one(c, 2, "q", 1);
    expect_send_error(c, 2, 1, UP_SERR(TopicTerminatedError));
    bc_send_one(c, 2, "q", 1);
    bc_receipt(c, &f);
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.send_errors, 2);
    cr_assert_eq(st.entries, 1);
    cr_assert_eq(upulsar_tb_fail_sends(tb, "t", 1, 99), UPULSAR_ERR__INVALID_ARG);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_faults_requests, next_producer_requests_fail_with_the_chosen_error)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_connect(tb);
    cr_assert_eq(upulsar_tb_fail_producers(tb, "t", 2, UP_SERR(ServiceNotReady)), UPULSAR_OK);
    bc_create_producer(c, "u", 1, NULL);
    for (int i = 0; i < 2; i++)
        bc_create_producer_gets(c, "t", 2, "p", UPULSAR_ERR_SERVICE_NOT_READY);
    bc_create_producer(c, "t", 2, "p");
    cr_assert_eq(upulsar_tb_fail_producers(tb, NULL, 1, UP_SERR(TopicNotFound)), UPULSAR_OK);
    bc_create_producer_gets(c, "v", 3, NULL, UPULSAR_ERR_TOPIC_NOT_FOUND);
    bc_create_producer(c, "v", 3, NULL);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_faults_requests, unload_closes_producers_and_ignores_their_sends_until_recreated)
{
    upulsar_tb_client_t *c;
    upulsar_tb_t *tb = broker_with_two_producers(&c, 7, 8);
    upulsar_tb_frame_t f;
    bc_send_one(c, 7, "p", 0);
    bc_receipt(c, &f);
    cr_assert_eq(upulsar_tb_unload_topic(tb, "t"), 1);
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(CLOSE_PRODUCER), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.cmd->close_producer->producer_id, 7);
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.producers, 0);
    /* a SEND for the closed id is ignored (no answer, connection kept):
     * the next answer on the connection is the other producer's receipt */
    bc_send_one(c, 7, "p", 1);
    bc_send_one(c, 8, "q", 0);
    cr_assert_eq(bc_receipt(c, &f)->producer_id, 8);
    /* re-created with the same id: works again, nothing was stored */
    int64_t last = 0;
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 7, "p", WAIT_MS, NULL, 0, &last),
                 UPULSAR_OK);
    cr_assert_eq(last, 0);
    bc_send_one(c, 7, "p", 1);
    const Pulsar__Proto__CommandSendReceipt *r = bc_receipt(c, &f);
    cr_assert_eq(r->producer_id, 7);
    cr_assert_eq(r->message_id->entryid, 1);
    cr_assert_eq(upulsar_tb_unload_topic(tb, "nothing-here"), 0);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

/* broker_with_two_producers() (7 "p" on "t", 8 "q" on "u") whose write of
 * p's first SEND failed (upulsar_tb_fail_writes(), PersistenceError): p
 * was closed (CLOSE_PRODUCER read), the SEND_ERROR is withheld. */
static upulsar_tb_t *broker_with_a_failed_write(upulsar_tb_client_t **c)
{
    upulsar_tb_t *tb = broker_with_two_producers(c, 7, 8);
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "t"), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_fail_writes(tb, "t", 1, UP_SERR(PersistenceError)), UPULSAR_OK);
    bc_send_one(*c, 7, "p", 0);
    cr_assert_eq(upulsar_tb_client_expect(*c, UP_CMD(CLOSE_PRODUCER), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.cmd->close_producer->producer_id, 7);
    wait_queued(tb, 1); /* the SEND_ERROR, withheld */
    return tb;
}

/* A failed write (upulsar_tb_fail_writes()) fences the topic until its
 * SEND_ERROR has gone out, as Pulsar's topic refuses producers until its
 * failed writes have completed: with the answer withheld, a re-creation is
 * refused with ServiceNotReady; once it is sent, the re-creation works.
 * (Otherwise a client could re-create its producer, resend, and then take
 * the old write's SEND_ERROR for the resend's answer.) */
Test(broker_faults_requests, a_failed_write_fences_its_topic_until_its_answer_is_sent)
{
    upulsar_tb_client_t *c;
    upulsar_tb_t *tb = broker_with_a_failed_write(&c);
    upulsar_tb_frame_t f;
    bc_create_producer_gets(c, "t", 7, "p", UPULSAR_ERR_SERVICE_NOT_READY);
    bc_create_producer(c, "u2", 9, "r"); /* other topics are not fenced */
    cr_assert_eq(upulsar_tb_release_receipts(tb, "t"), UPULSAR_OK);
    expect_send_error(c, 7, 0, UP_SERR(PersistenceError));
    bc_create_producer(c, "t", 7, "p");
    bc_send_one(c, 7, "p", 0);
    cr_assert_eq(bc_receipt(c, &f)->producer_id, 7);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

/* The fence also ends when the withheld answer dies with its connection. */
Test(broker_faults_requests, a_fence_ends_when_its_withheld_answer_is_dropped)
{
    upulsar_tb_client_t *c;
    upulsar_tb_t *tb = broker_with_a_failed_write(&c);
    upulsar_tb_client_close(c);
    wait_queued(tb, 0);
    cr_assert_eq(upulsar_tb_release_receipts(tb, "t"), UPULSAR_OK);
    upulsar_tb_client_t *c2 = bc_producer_on(tb, "t", 7, "p");
    upulsar_tb_client_close(c2);
    upulsar_tb_stop(tb);
}
