/* test_fidelity_producer_timeout.c -- a PRODUCER request that times out is
 * followed by CLOSE_PRODUCER for that producer id before the next attempt,
 * as the official clients do: a broker whose topic was slow to load may
 * still create the producer after the client gave up, and would then keep
 * its name (ProducerBusy for other connections) and answer a repeated
 * PRODUCER on the same connection with the name only, without
 * last_sequence_id. A producer never ready before (lazy start) would then
 * number its messages from 0 again and a de-duplicating broker would drop
 * them as duplicates while their futures succeed.
 * The same holds for a PRODUCER answered with what the producer cannot use
 * (an unexpected command, a schema version over 16 bytes): the broker
 * created the producer, so it is closed before the retry
 * (unusable_answer_is_closed_before_the_retry).
 * The test broker's side: a repeated PRODUCER for a live producer id is
 * answered with the name only; one for a producer still being created gets
 * ServiceNotReady; CLOSE_PRODUCER cancels a creation in progress.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "broker_common.h"
#include "fault_common.h"

TestSuite(fidelity_producer_timeout, .timeout = 90);

/* PRODUCER{topic, @p pid, name} by hand; its request id into *@p rid. */
static void producer_cmd(upulsar_tb_client_t *c, const char *topic, uint64_t pid,
                         const char *name, uint64_t *rid)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandProducer pr = PULSAR__PROTO__COMMAND_PRODUCER__INIT;
    cmd.type = UP_CMD(PRODUCER);
    cmd.producer = &pr;
    pr.topic = (char *)topic;
    pr.producer_id = pid;
    pr.request_id = *rid = upulsar_tb_client_next_request_id(c);
    pr.producer_name = (char *)name;
    cr_assert_eq(upulsar_tb_client_send_cmd(c, &cmd), UPULSAR_OK);
}

/* CLOSE_PRODUCER{@p pid} by hand; its request id into *@p rid. */
static void close_producer_cmd(upulsar_tb_client_t *c, uint64_t pid, uint64_t *rid)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandCloseProducer cp = PULSAR__PROTO__COMMAND_CLOSE_PRODUCER__INIT;
    cmd.type = UP_CMD(CLOSE_PRODUCER);
    cmd.close_producer = &cp;
    cp.producer_id = pid;
    cp.request_id = *rid = upulsar_tb_client_next_request_id(c);
    cr_assert_eq(upulsar_tb_client_send_cmd(c, &cmd), UPULSAR_OK);
}

Test(fidelity_producer_timeout, broker_answers_repeated_and_pending_producers_as_pulsar)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_connect(tb);
    upulsar_tb_frame_t f;
    uint64_t rid;
    /* history for the name: last stored sequence id 0 */
    bc_create_producer(c, "rp", 1, "p");
    bc_send_one(c, 1, "p", 0);
    cr_assert_not_null(bc_receipt(c, &f));

    /* repeated PRODUCER for the live producer id: name only */
    producer_cmd(c, "rp", 1, "p", &rid);
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(PRODUCER_SUCCESS), WAIT_MS, &f), UPULSAR_OK);
    const Pulsar__Proto__CommandProducerSuccess *ps = f.cmd->producer_success;
    cr_assert_eq(ps->request_id, rid);
    cr_assert_str_eq(ps->producer_name, "p");
    cr_assert(!ps->has_last_sequence_id, "a repeated PRODUCER carries no last_sequence_id");
    cr_assert(!ps->has_topic_epoch);

    /* a creation in progress: the id is taken, a repeat is ServiceNotReady,
     * CLOSE_PRODUCER cancels it and its PRODUCER is never answered */
    cr_assert_eq(upulsar_tb_delay_producers(tb, "rp", 1, 60000), UPULSAR_OK);
    uint64_t slow;
    producer_cmd(c, "rp", 2, "q", &slow);
    bc_assert_quiet(c);
    producer_cmd(c, "rp", 2, "q", &rid);
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(ERROR), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.cmd->error->request_id, rid);
    cr_assert_eq(f.cmd->error->error, UP_SERR(ServiceNotReady));
    close_producer_cmd(c, 2, &rid);
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(SUCCESS), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.cmd->success->request_id, rid);
    /* the name was never taken: another connection gets it */
    upulsar_tb_client_t *d = bc_connect(tb);
    bc_create_producer(d, "rp", 7, "q");
    upulsar_tb_client_close(d);

    /* the request log, in arrival order */
    upulsar_tb_request_t rq[8];
    int n = upulsar_tb_producer_requests(tb, "rp", rq, 8);
    cr_assert_eq(n, 6, "%d requests logged", n);
    int want_type[6] = {UPULSAR_TB_REQ_PRODUCER, UPULSAR_TB_REQ_PRODUCER,
                        UPULSAR_TB_REQ_PRODUCER, UPULSAR_TB_REQ_PRODUCER,
                        UPULSAR_TB_REQ_CLOSE_PRODUCER, UPULSAR_TB_REQ_PRODUCER};
    uint64_t want_pid[6] = {1, 1, 2, 2, 2, 7};
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(rq[i].type, want_type[i], "request %d", i);
        cr_assert_eq(rq[i].producer_id, want_pid[i], "request %d", i);
        if (i < 5)
            cr_assert_eq(rq[i].connection, rq[0].connection, "request %d", i);
    }
    cr_assert_neq(rq[5].connection, rq[0].connection);
    cr_assert_eq(rq[2].request_id, slow);
    cr_assert_eq(rq[4].request_id, rid);
    /* nothing more arrives for the cancelled request */
    bc_assert_quiet(c);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

/* The request log of @p topic (at most 64). */
static int requests(upulsar_tb_t *tb, const char *topic, upulsar_tb_request_t *rq)
{
    int n = upulsar_tb_producer_requests(tb, topic, rq, 64);
    cr_assert_geq(n, 0);
    cr_assert_leq(n, 64);
    return n;
}

/* A first run of producer @p name on @p topic (1 partition) of @p tb,
 * client keys @p kv: stores sequence ids 0..@p n - 1, then stops. */
static void first_run(upulsar_tb_t *tb, const char **kv, const char *name, const char *topic,
                      int n)
{
    upulsar_client_t *c = ft_client(tb, kv);
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, topic, 1), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(c, name, topic, 1, NULL);
    for (int i = 0; i < n; i++)
        ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_client_destroy(c);
}

Test(fidelity_producer_timeout, timed_out_producer_is_closed_before_the_retry)
{
    const char *topic = "tmo";
    const char *part = "tmo-partition-0";
    enum { FIRST = 5, SECOND = 5, OP_TIMEOUT_MS = 500 };
    upulsar_tb_t *tb = ft_broker();
    char op[16];
    snprintf(op, sizeof op, "%d", (int)OP_TIMEOUT_MS);
    const char *kv[] = {"operation.timeout.ms", op, NULL};

    /* a first run of the named producer stores sequence ids 0..FIRST-1 */
    first_run(tb, kv, "dd", topic, FIRST);
    upulsar_tb_request_t rq[64];
    int before = requests(tb, part, rq);

    /* the broker is slow to create the producer the second time: far longer
     * than the client waits */
    cr_assert_eq(upulsar_tb_delay_producers(tb, part, 1, 20 * OP_TIMEOUT_MS), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, kv);
    const char *lazy[] = {"lazy.start.partitions", "true", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, topic, 1), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(c, "dd", topic, 1, lazy);
    upulsar_future_t *fs[SECOND];
    for (int i = 0; i < SECOND; i++) {
        char body[16];
        int len = snprintf(body, sizeof body, "second-%d", i);
        cr_assert_eq(upulsar_send(p, body, (size_t)len, NULL, &fs[i]), UPULSAR_OK);
    }
    for (int i = 0; i < SECOND; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(fs[i], FT_WAIT_MS, &id), UPULSAR_OK, "%s",
                     upulsar_last_error());
        cr_assert_neq(id.ledger_id, UPULSAR_ID_UNKNOWN,
                      "message %d acknowledged as a duplicate: it was never stored", i);
        upulsar_future_release(fs[i]);
    }
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_client_destroy(c);

    /* the log: the first PRODUCER of this run timed out; CLOSE_PRODUCER for
     * its producer id, on its connection, came before any later PRODUCER
     * for that id */
    int n = requests(tb, part, rq);
    cr_assert_gt(n, before + 1, "%d requests, %d before the run", n, before);
    /* (the first run's connection may still log its CLOSE_PRODUCER late) */
    uint64_t old_conn = rq[0].connection;
    int at = before;
    while (at < n && rq[at].connection == old_conn)
        at++;
    cr_assert_lt(at, n, "no PRODUCER from the second run");
    upulsar_tb_request_t first = rq[at];
    cr_assert_eq(first.type, UPULSAR_TB_REQ_PRODUCER);
    int next = -1;
    for (int i = at + 1; i < n && next < 0; i++)
        if (rq[i].producer_id == first.producer_id && rq[i].connection != old_conn)
            next = i;
    cr_assert_geq(next, 0, "nothing followed the timed-out PRODUCER");
    cr_assert_eq(rq[next].type, UPULSAR_TB_REQ_CLOSE_PRODUCER,
                 "the PRODUCER that timed out was retried without CLOSE_PRODUCER first");
    cr_assert_eq(rq[next].connection, first.connection);

    /* every message stored once, in order, numbered on from the first run */
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, part, &st), UPULSAR_OK);
    cr_assert_eq(st.duplicates, 0, "%llu SENDs dropped as duplicates",
                 (unsigned long long)st.duplicates);
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, part, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)(FIRST + SECOND));
    const char *name = upulsar_tb_snapshot_msg(s, 0)->producer_name;
    for (int i = 0; i < FIRST + SECOND; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        cr_assert_str_eq(m->producer_name, name);
        cr_assert_eq(m->sequence_id, (uint64_t)i, "message %d has sequence id %llu", i,
                     (unsigned long long)m->sequence_id);
        if (i >= FIRST) {
            char body[16];
            int len = snprintf(body, sizeof body, "second-%d", i - FIRST);
            cr_assert_eq(m->payload_len, (size_t)len);
            cr_assert_eq(memcmp(m->payload, body, (size_t)len), 0);
        }
    }
    upulsar_tb_snapshot_free(s);
    upulsar_tb_stop(tb);
}

/* The second run of a named, lazily started producer whose first PRODUCER
 * is answered with what it cannot use (@p how, UPULSAR_TB_MANGLE_*): the
 * broker created the producer, so the client must close it (CLOSE_PRODUCER
 * for that producer id, on that connection) before it asks again; else the
 * retry on the same connection is answered as a repeat, without
 * last_sequence_id, the producer numbers its messages from 0 again and the
 * de-duplicating broker drops them while their futures succeed. */
static void unusable_answer(const char *topic, int how)
{
    char part[64];
    snprintf(part, sizeof part, "%s-partition-0", topic);
    enum { FIRST = 5, SECOND = 5 };
    upulsar_tb_t *tb = ft_broker();
    const char *kv[] = {"operation.timeout.ms", "5000", NULL};

    /* a first run of the named producer stores sequence ids 0..FIRST-1 */
    first_run(tb, kv, "ua", topic, FIRST);
    upulsar_tb_request_t rq[64];
    int before = requests(tb, part, rq);

    /* the second run's first PRODUCER creates the producer on the broker,
     * but its answer is unusable */
    cr_assert_eq(upulsar_tb_mangle_producers(tb, part, 1, how), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, kv);
    const char *lazy[] = {"lazy.start.partitions", "true", NULL};
    upulsar_producer_t *p = ft_producer(c, "ua", topic, 1, lazy);
    upulsar_future_t *fs[SECOND];
    for (int i = 0; i < SECOND; i++) {
        char body[16];
        int len = snprintf(body, sizeof body, "second-%d", i);
        cr_assert_eq(upulsar_send(p, body, (size_t)len, NULL, &fs[i]), UPULSAR_OK);
    }
    for (int i = 0; i < SECOND; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(fs[i], FT_WAIT_MS, &id), UPULSAR_OK, "%s: %s", topic,
                     upulsar_last_error());
        cr_assert_neq(id.ledger_id, UPULSAR_ID_UNKNOWN,
                      "%s: message %d acknowledged as a duplicate: it was never stored", topic, i);
        upulsar_future_release(fs[i]);
    }
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_client_destroy(c);

    /* the log: the second run's first PRODUCER, then CLOSE_PRODUCER for its
     * producer id on its connection, then (only then) a PRODUCER again */
    int n = requests(tb, part, rq);
    uint64_t old_conn = rq[0].connection;
    int at = before;
    while (at < n && rq[at].connection == old_conn)
        at++; /* the first run's connection may still log its close late */
    cr_assert_lt(at, n, "%s: no PRODUCER from the second run", topic);
    upulsar_tb_request_t first = rq[at];
    cr_assert_eq(first.type, UPULSAR_TB_REQ_PRODUCER);
    int next = -1;
    for (int i = at + 1; i < n && next < 0; i++)
        if (rq[i].producer_id == first.producer_id && rq[i].connection == first.connection)
            next = i;
    cr_assert_geq(next, 0, "%s: nothing followed the PRODUCER answered unusably", topic);
    cr_assert_eq(rq[next].type, UPULSAR_TB_REQ_CLOSE_PRODUCER,
                 "%s: the PRODUCER answered unusably was retried without CLOSE_PRODUCER", topic);
    int retry = -1;
    for (int i = next + 1; i < n && retry < 0; i++)
        if (rq[i].type == UPULSAR_TB_REQ_PRODUCER && rq[i].connection != old_conn)
            retry = i;
    cr_assert_geq(retry, 0, "%s: no PRODUCER after the CLOSE_PRODUCER", topic);

    /* every message stored once, in order, numbered on from the first run */
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, part, &st), UPULSAR_OK);
    cr_assert_eq(st.duplicates, 0, "%s: %llu SENDs dropped as duplicates", topic,
                 (unsigned long long)st.duplicates);
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, part, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)(FIRST + SECOND));
    for (int i = 0; i < FIRST + SECOND; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        cr_assert_str_eq(m->producer_name, "ua");
        cr_assert_eq(m->sequence_id, (uint64_t)i, "%s: message %d has sequence id %llu", topic,
                     i, (unsigned long long)m->sequence_id);
        if (i >= FIRST) {
            char body[16];
            int len = snprintf(body, sizeof body, "second-%d", i - FIRST);
            cr_assert_eq(m->payload_len, (size_t)len);
            cr_assert_eq(memcmp(m->payload, body, (size_t)len), 0, "%s: message %d", topic, i);
        }
    }
    upulsar_tb_snapshot_free(s);
    upulsar_tb_stop(tb);
}

Test(fidelity_producer_timeout, unusable_answer_is_closed_before_the_retry)
{
    unusable_answer("ua-command", UPULSAR_TB_MANGLE_COMMAND);
    unusable_answer("ua-schema-version", UPULSAR_TB_MANGLE_SCHEMA_VERSION);
}
