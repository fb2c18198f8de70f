/* test_broker_access.c -- producer access modes when the broker closes a
 * topic's producers (upulsar_tb_unload_topic(), upulsar_tb_move_topic()),
 * driven over the raw protocol: a WaitForExclusive producer still queued
 * is answered (ERROR ServiceNotReady on its PRODUCER request, as a Pulsar
 * broker answers a waiter whose topic is closed) so it looks the topic up
 * again, and the closed exclusive producer no longer holds the topic. */
/* UPULSAR_TEST_LABEL_CONCURRENCY */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "broker_common.h"

#define SHARED PULSAR__PROTO__PRODUCER_ACCESS_MODE__Shared
#define EXCLUSIVE PULSAR__PROTO__PRODUCER_ACCESS_MODE__Exclusive
#define WAIT_EXCL PULSAR__PROTO__PRODUCER_ACCESS_MODE__WaitForExclusive
#define FENCING PULSAR__PROTO__PRODUCER_ACCESS_MODE__ExclusiveWithFencing

/* A broker sharing the store of @p share (NULL: a store of its own). */
static upulsar_tb_t *start(upulsar_tb_t *share)
{
    upulsar_tb_opts_t o = bc_opts();
    o.shared_store_with = share;
    return bc_start(&o);
}

/* Send PRODUCER{topic, producer_id, name, access mode, topic_epoch = @p epoch
 * (< 0: none)}; returns its request id. */
static uint64_t send_producer_epoch(upulsar_tb_client_t *c, const char *topic, uint64_t pid,
                                    const char *name, int mode, int64_t epoch)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandProducer p = PULSAR__PROTO__COMMAND_PRODUCER__INIT;
    cmd.type = UP_CMD(PRODUCER);
    cmd.producer = &p;
    p.topic = (char *)topic;
    p.producer_id = pid;
    p.request_id = upulsar_tb_client_next_request_id(c);
    p.producer_name = (char *)name;
    p.has_producer_access_mode = 1;
    p.producer_access_mode = mode;
    if (epoch >= 0) {
        p.has_topic_epoch = 1;
        p.topic_epoch = (uint64_t)epoch;
    }
    cr_assert_eq(upulsar_tb_client_send_cmd(c, &cmd), UPULSAR_OK, "%s", upulsar_last_error());
    return p.request_id;
}

/* Send PRODUCER{topic, producer_id, name, access mode} (no topic_epoch);
 * returns its request id. */
static uint64_t send_producer(upulsar_tb_client_t *c, const char *topic, uint64_t pid,
                              const char *name, int mode)
{
    return send_producer_epoch(c, topic, pid, name, mode, -1);
}

/* The next frame is PRODUCER_SUCCESS for @p rid with producer_ready =
 * @p ready; returns its topic_epoch (-1: none). */
static int64_t expect_success(upulsar_tb_client_t *c, uint64_t rid, int ready)
{
    upulsar_tb_frame_t f;
    upulsar_err_t err = upulsar_tb_client_expect(c, UP_CMD(PRODUCER_SUCCESS), WAIT_MS, &f);
    if (err == UPULSAR_ERR__STATE && f.type == UP_CMD(ERROR))
        cr_assert(0, "request %llu: ERROR %d (%s) instead of PRODUCER_SUCCESS",
                  (unsigned long long)rid, (int)f.cmd->error->error,
                  f.cmd->error->message ? f.cmd->error->message : "");
    cr_assert_eq(err, UPULSAR_OK, "request %llu: no PRODUCER_SUCCESS: %s",
                 (unsigned long long)rid, upulsar_last_error());
    const Pulsar__Proto__CommandProducerSuccess *ps = f.cmd->producer_success;
    cr_assert_eq(ps->request_id, rid);
    cr_assert_eq(ps->has_producer_ready ? (int)ps->producer_ready : 1, ready,
                 "request %llu: producer_ready should be %d", (unsigned long long)rid, ready);
    return ps->has_topic_epoch ? (int64_t)ps->topic_epoch : -1;
}

/* The next frame is ERROR @p server_error for @p rid. */
static void expect_error(upulsar_tb_client_t *c, uint64_t rid, int server_error)
{
    upulsar_tb_frame_t f;
    upulsar_err_t err = upulsar_tb_client_expect(c, UP_CMD(ERROR), WAIT_MS, &f);
    cr_assert_eq(err, UPULSAR_OK, "request %llu: no ERROR (%s; frame type %d)",
                 (unsigned long long)rid, upulsar_last_error(),
                 err == UPULSAR_ERR__STATE ? f.type : -1);
    cr_assert_eq(f.cmd->error->request_id, rid);
    cr_assert_eq((int)f.cmd->error->error, server_error, "ERROR %d (%s), expected %d",
                 (int)f.cmd->error->error, f.cmd->error->message ? f.cmd->error->message : "",
                 server_error);
}

static void expect_close_producer(upulsar_tb_client_t *c, uint64_t pid)
{
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(CLOSE_PRODUCER), WAIT_MS, &f), UPULSAR_OK,
                 "no CLOSE_PRODUCER: %s", upulsar_last_error());
    cr_assert_eq(f.cmd->close_producer->producer_id, pid);
}

/* Nothing but PINGs/PONGs arrives for QUIET_MS. */
static void expect_quiet(upulsar_tb_client_t *c)
{
    upulsar_tb_frame_t f;
    upulsar_err_t err = upulsar_tb_client_expect(c, UP_CMD(PING), QUIET_MS, &f);
    cr_assert_eq(err, UPULSAR_ERR__TIMED_OUT, "unexpected frame of type %d",
                 err == UPULSAR_ERR__STATE ? f.type : -1);
}

static void expect_producers(upulsar_tb_t *tb, const char *topic, int n)
{
    cr_assert_eq(bc_topic_stats(tb, topic).producers, n);
}

/* @p holder takes @p topic (producer 1, EXCLUSIVE) and @p waiter queues
 * behind it (producer 1, WaitForExclusive: answered producer_ready =
 * false); returns the waiter's request id. */
static uint64_t hold_and_queue(upulsar_tb_client_t *holder, upulsar_tb_client_t *waiter,
                               const char *topic, const char *waiter_name)
{
    expect_success(holder, send_producer(holder, topic, 1, "holder", EXCLUSIVE), 1);
    uint64_t rid = send_producer(waiter, topic, 1, waiter_name, WAIT_EXCL);
    expect_success(waiter, rid, 0);
    return rid;
}

Test(broker_access, unload_answers_every_waiting_producer_with_service_not_ready)
{
    upulsar_tb_t *tb = start(NULL);
    upulsar_tb_client_t *holder = bc_connect(tb), *w1 = bc_connect(tb), *w2 = bc_connect(tb);
    uint64_t r1 = hold_and_queue(holder, w1, "ul", "waiter-1");
    uint64_t r2 = send_producer(w2, "ul", 1, "waiter-2", WAIT_EXCL);
    expect_success(w2, r2, 0);

    /* the holder and both waiters */
    cr_assert_eq(upulsar_tb_unload_topic(tb, "ul"), 3);
    expect_close_producer(holder, 1);
    /* the queued PRODUCER requests fail (retriable): neither waiter is
     * handed the topic being unloaded */
    expect_error(w1, r1, UP_SERR(ServiceNotReady));
    expect_error(w2, r2, UP_SERR(ServiceNotReady));
    expect_quiet(w1);
    expect_quiet(w2);
    expect_producers(tb, "ul", 0);

    /* a waiter looking the topic up again gets it: nobody holds it now */
    expect_success(w1, send_producer(w1, "ul", 2, "waiter-1", WAIT_EXCL), 1);
    expect_producers(tb, "ul", 1);
    upulsar_tb_client_close(holder);
    upulsar_tb_client_close(w1);
    upulsar_tb_client_close(w2);
    upulsar_tb_stop(tb);
}

Test(broker_access, unload_ends_the_exclusive_hold_so_a_shared_producer_is_accepted)
{
    upulsar_tb_t *tb = start(NULL);
    upulsar_tb_client_t *holder = bc_connect(tb), *other = bc_connect(tb);
    expect_success(holder, send_producer(holder, "ush", 1, "holder", EXCLUSIVE), 1);
    expect_error(other, send_producer(other, "ush", 1, "shared", SHARED), UP_SERR(ProducerBusy));

    cr_assert_eq(upulsar_tb_unload_topic(tb, "ush"), 1);
    expect_close_producer(holder, 1);
    /* the holder's connection is still open: the hold ended with the close */
    expect_success(other, send_producer(other, "ush", 2, "shared", SHARED), 1);
    /* and now the old holder is the one refused (Exclusive against shared
     * producers: ProducerFenced, as Pulsar answers) */
    expect_error(holder, send_producer(holder, "ush", 1, "holder", EXCLUSIVE),
                 UP_SERR(ProducerFenced));
    upulsar_tb_client_close(holder);
    upulsar_tb_client_close(other);
    upulsar_tb_stop(tb);
}

Test(broker_access, move_answers_the_waiting_producer_which_gets_the_topic_at_the_new_owner)
{
    upulsar_tb_t *a = start(NULL), *b = start(a);
    upulsar_tb_client_t *holder = bc_connect(a), *waiter = bc_connect(a);
    uint64_t rid = hold_and_queue(holder, waiter, "mw", "waiter");

    cr_assert_eq(upulsar_tb_move_topic(a, "mw", upulsar_tb_url(b)), 2);
    expect_close_producer(holder, 1);
    expect_error(waiter, rid, UP_SERR(ServiceNotReady));
    expect_quiet(waiter);

    /* the retry at the new owner (same store, so the same topic) is not
     * queued behind the producer the old owner closed */
    upulsar_tb_client_t *wb = bc_connect(b);
    expect_success(wb, send_producer(wb, "mw", 1, "waiter", WAIT_EXCL), 1);
    /* the old holder following the topic is refused now (Exclusive against
     * a holder: ProducerFenced) */
    upulsar_tb_client_t *hb = bc_connect(b);
    expect_error(hb, send_producer(hb, "mw", 1, "holder", EXCLUSIVE), UP_SERR(ProducerFenced));
    upulsar_tb_client_close(holder);
    upulsar_tb_client_close(waiter);
    upulsar_tb_client_close(wb);
    upulsar_tb_client_close(hb);
    upulsar_tb_stop(b);
    upulsar_tb_stop(a);
}

Test(broker_access, move_ends_the_exclusive_hold_so_a_shared_producer_is_accepted_at_the_new_owner)
{
    upulsar_tb_t *a = start(NULL), *b = start(a);
    upulsar_tb_client_t *holder = bc_connect(a);
    expect_success(holder, send_producer(holder, "msh", 1, "holder", EXCLUSIVE), 1);
    cr_assert_eq(upulsar_tb_move_topic_ex(a, "msh", upulsar_tb_url(b), UPULSAR_TB_MOVE_ASSIGNED),
                 1);
    expect_close_producer(holder, 1);
    /* the old holder's connection to the old owner stays open */
    upulsar_tb_client_t *sb = bc_connect(b);
    expect_success(sb, send_producer(sb, "msh", 1, "shared", SHARED), 1);
    expect_producers(b, "msh", 1);
    upulsar_tb_client_close(holder);
    upulsar_tb_client_close(sb);
    upulsar_tb_stop(b);
    upulsar_tb_stop(a);
}

Test(broker_access, moving_a_partitioned_topic_answers_the_waiters_of_its_partitions)
{
    upulsar_tb_t *a = start(NULL), *b = start(a);
    cr_assert_eq(upulsar_tb_set_partitions(a, "pw", 2), UPULSAR_OK);
    upulsar_tb_client_t *holder = bc_connect(a), *waiter = bc_connect(a);
    uint64_t rids[2];
    for (int i = 0; i < 2; i++) {
        char part[32];
        snprintf(part, sizeof part, "pw-partition-%d", i);
        expect_success(holder, send_producer(holder, part, (uint64_t)i, "holder", EXCLUSIVE), 1);
        rids[i] = send_producer(waiter, part, (uint64_t)i, "waiter", WAIT_EXCL);
        expect_success(waiter, rids[i], 0);
    }
    cr_assert_eq(upulsar_tb_move_topic(a, "pw", upulsar_tb_url(b)), 4);
    /* partition by partition, in no particular order */
    bool closed[2] = {false, false}, failed[2] = {false, false};
    for (int i = 0; i < 2; i++) {
        upulsar_tb_frame_t f;
        cr_assert_eq(upulsar_tb_client_expect(holder, UP_CMD(CLOSE_PRODUCER), WAIT_MS, &f),
                     UPULSAR_OK, "%s", upulsar_last_error());
        uint64_t pid = f.cmd->close_producer->producer_id;
        cr_assert(pid < 2 && !closed[pid]);
        closed[pid] = true;
        cr_assert_eq(upulsar_tb_client_expect(waiter, UP_CMD(ERROR), WAIT_MS, &f), UPULSAR_OK,
                     "%s", upulsar_last_error());
        cr_assert_eq((int)f.cmd->error->error, UP_SERR(ServiceNotReady));
        int k = f.cmd->error->request_id == rids[0] ? 0 : 1;
        cr_assert_eq(f.cmd->error->request_id, rids[k]);
        cr_assert_not(failed[k]);
        failed[k] = true;
    }
    upulsar_tb_client_t *wb = bc_connect(b);
    expect_success(wb, send_producer(wb, "pw-partition-1", 1, "waiter", WAIT_EXCL), 1);
    upulsar_tb_client_close(holder);
    upulsar_tb_client_close(waiter);
    upulsar_tb_client_close(wb);
    upulsar_tb_stop(b);
    upulsar_tb_stop(a);
}

Test(broker_access, a_waiter_answered_by_an_unload_queues_again_on_the_same_connection)
{
    upulsar_tb_t *tb = start(NULL);
    upulsar_tb_client_t *holder = bc_connect(tb), *waiter = bc_connect(tb);
    uint64_t rid = hold_and_queue(holder, waiter, "rq", "waiter");
    cr_assert_eq(upulsar_tb_unload_topic(tb, "rq"), 2);
    expect_close_producer(holder, 1);
    expect_error(waiter, rid, UP_SERR(ServiceNotReady));

    /* the holder comes back first; the waiter re-creates its producer (same
     * id, same connection, as clients do) and is queued again, not refused */
    rid = hold_and_queue(holder, waiter, "rq", "waiter");
    expect_producers(tb, "rq", 1);

    /* and gets the topic when the holder leaves */
    upulsar_tb_client_close(holder);
    expect_success(waiter, rid, 1);
    expect_producers(tb, "rq", 1);
    upulsar_tb_client_close(waiter);
    upulsar_tb_stop(tb);
}

Test(broker_access, a_closed_wait_for_exclusive_holder_queues_again_behind_the_new_holder)
{
    upulsar_tb_t *tb = start(NULL);
    upulsar_tb_client_t *first = bc_connect(tb), *second = bc_connect(tb);
    /* a WaitForExclusive producer that got the topic at once */
    expect_success(first, send_producer(first, "wq", 1, "first", WAIT_EXCL), 1);
    cr_assert_eq(upulsar_tb_unload_topic(tb, "wq"), 1);
    expect_close_producer(first, 1);
    expect_success(second, send_producer(second, "wq", 1, "second", EXCLUSIVE), 1);
    /* its re-creation waits for the new holder */
    uint64_t rid = send_producer(first, "wq", 1, "first", WAIT_EXCL);
    expect_success(first, rid, 0);
    upulsar_tb_client_close(second);
    expect_success(first, rid, 1);
    upulsar_tb_client_close(first);
    upulsar_tb_stop(tb);
}

/* Pulsar's answers: with a WaitForExclusive producer queued (behind shared
 * producers here), a new Shared producer is refused (ProducerBusy) and an
 * Exclusive one too (ProducerFenced); shared producers alone refuse
 * Exclusive with ProducerFenced. */
Test(broker_access, a_queued_waiter_refuses_shared_and_exclusive_producers)
{
    upulsar_tb_t *tb = start(NULL);
    upulsar_tb_client_t *sh = bc_connect(tb), *waiter = bc_connect(tb), *late = bc_connect(tb);
    expect_success(sh, send_producer(sh, "qw", 1, "shared-1", SHARED), 1);
    expect_error(late, send_producer(late, "qw", 1, "excl", EXCLUSIVE), UP_SERR(ProducerFenced));
    uint64_t rid = send_producer(waiter, "qw", 1, "waiter", WAIT_EXCL);
    expect_success(waiter, rid, 0);
    expect_error(late, send_producer(late, "qw", 2, "shared-2", SHARED), UP_SERR(ProducerBusy));
    expect_error(late, send_producer(late, "qw", 3, "excl", EXCLUSIVE), UP_SERR(ProducerFenced));
    expect_producers(tb, "qw", 1);
    upulsar_tb_client_close(sh);
    upulsar_tb_client_close(waiter);
    upulsar_tb_client_close(late);
    upulsar_tb_stop(tb);
}

/* A SEND for a producer still queued (WaitForExclusive, answered
 * producer_ready = false) closes the connection, as Pulsar's
 * ServerCnx.handleSend does for a producer whose creation is not done: a
 * client must wait for producer_ready before it writes. */
Test(broker_access, a_send_for_a_queued_producer_closes_its_connection)
{
    upulsar_tb_t *tb = start(NULL);
    upulsar_tb_client_t *holder = bc_connect(tb), *waiter = bc_connect(tb);
    hold_and_queue(holder, waiter, "sq", "waiter");
    bc_send_one(waiter, 1, "waiter", 0);
    upulsar_tb_frame_t f;
    upulsar_err_t err;
    do /* PINGs may come first */
        err = upulsar_tb_client_read(waiter, WAIT_MS, &f);
    while (err == UPULSAR_OK && f.type == UP_CMD(PING));
    cr_assert_eq(err, UPULSAR_ERR__CLOSED, "%s (frame type %d)", upulsar_err_name(err),
                 err == UPULSAR_OK ? f.type : -1);
    cr_assert_eq(bc_topic_stats(tb, "sq").entries, 0);
    upulsar_tb_client_close(waiter);
    upulsar_tb_client_close(holder);
    upulsar_tb_stop(tb);
}

/* ExclusiveWithFencing fences the queued waiters out first (ERROR
 * ProducerFenced on their pending request, so none is handed the topic when
 * the holder goes), then the holder: silently, as Pulsar's
 * AbstractTopic closes it (no CLOSE_PRODUCER). The holder learns it when
 * its next SEND closes the connection (ServerCnx.handleSend: the producer
 * is no longer on the connection), nothing of it stored. */
Test(broker_access, fencing_fails_the_waiters_then_drops_the_holder_silently)
{
    upulsar_tb_t *tb = start(NULL);
    upulsar_tb_client_t *holder = bc_connect(tb), *w1 = bc_connect(tb), *w2 = bc_connect(tb),
                        *fencer = bc_connect(tb);
    expect_success(holder, send_producer(holder, "fw", 1, "holder", EXCLUSIVE), 1);
    uint64_t r1 = send_producer(w1, "fw", 1, "w1", WAIT_EXCL);
    expect_success(w1, r1, 0);
    uint64_t r2 = send_producer(w2, "fw", 1, "w2", WAIT_EXCL);
    expect_success(w2, r2, 0);
    expect_success(fencer, send_producer(fencer, "fw", 1, "fencer", FENCING), 1);
    expect_error(w1, r1, UP_SERR(ProducerFenced));
    expect_error(w2, r2, UP_SERR(ProducerFenced));
    expect_quiet(holder);
    expect_quiet(w1);
    expect_quiet(w2);
    expect_producers(tb, "fw", 1);
    bc_send_one(holder, 1, "holder", 0);
    bc_assert_closed(holder);
    cr_assert_eq(bc_topic_stats(tb, "fw").entries, 0);
    upulsar_tb_client_close(holder);
    upulsar_tb_client_close(w1);
    upulsar_tb_client_close(w2);
    upulsar_tb_client_close(fencer);
    upulsar_tb_stop(tb);
}

/* Topic epochs as Pulsar's AbstractTopic keeps them: the first exclusive
 * producer of a topic gets 0; a producer that brings its epoch back (a
 * reconnection) keeps it; one that brings none gets the next; one that
 * brings an older one than the topic's is refused ProducerFenced; a
 * Shared producer is answered the topic's epoch as it is. */
Test(broker_access, topic_epoch_starts_at_0_is_kept_on_reconnection_and_an_older_one_is_fenced)
{
    upulsar_tb_t *tb = start(NULL);
    upulsar_tb_client_t *c = bc_connect(tb);
    cr_assert_eq(expect_success(c, send_producer(c, "ep", 1, "a", EXCLUSIVE), 1), 0);
    upulsar_tb_client_close(c);
    bc_wait_no_producers(tb, "ep");
    c = bc_connect(tb); /* a's reconnection */
    cr_assert_eq(expect_success(c, send_producer_epoch(c, "ep", 1, "a", EXCLUSIVE, 0), 1), 0);
    upulsar_tb_client_close(c);
    bc_wait_no_producers(tb, "ep");
    c = bc_connect(tb); /* another exclusive producer: the next epoch */
    cr_assert_eq(expect_success(c, send_producer(c, "ep", 1, "b", FENCING), 1), 1);
    upulsar_tb_client_close(c);
    bc_wait_no_producers(tb, "ep");
    c = bc_connect(tb); /* a comes back with its old epoch */
    uint64_t rid = send_producer_epoch(c, "ep", 1, "a", EXCLUSIVE, 0);
    expect_error(c, rid, UP_SERR(ProducerFenced));
    rid = send_producer_epoch(c, "ep", 2, "a", WAIT_EXCL, 0);
    expect_error(c, rid, UP_SERR(ProducerFenced));
    cr_assert_eq(expect_success(c, send_producer_epoch(c, "ep", 3, "b", EXCLUSIVE, 1), 1), 1);
    upulsar_tb_client_close(c);
    bc_wait_no_producers(tb, "ep");
    c = bc_connect(tb); /* a Shared producer is answered the topic's epoch */
    cr_assert_eq(expect_success(c, send_producer(c, "ep", 1, "s", SHARED), 1), 1);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}
