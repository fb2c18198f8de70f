/* test_broker_topology.c -- several test brokers in one process: a
 * 16-partition topic spread over three brokers (per-partition owners,
 * lookups redirected to the owner, producers refused elsewhere), a shared
 * store (one log and dedup state per topic, readable from every broker),
 * and upulsar_tb_move_topic(): CLOSE_PRODUCER to the old owner's producers,
 * lookups that follow, the producer's sequence continued on the new owner,
 * also while a sender streams into the topic. */
/* UPULSAR_TEST_LABEL_CONCURRENCY */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "broker_common.h"

#define NPART 16
#define NB 3

/* A broker sharing the store of @p share (NULL: a store of its own). */
static upulsar_tb_t *start(upulsar_tb_t *share)
{
    upulsar_tb_opts_t o = bc_opts();
    o.shared_store_with = share;
    o.deduplication = 1; /* the dedup state moves with the topic */
    return bc_start(&o);
}

#define REDIRECT PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Redirect
#define CONNECT PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect

/* Look @p topic up as a client does: start at @p brokers[0], follow
 * Redirects (copying authoritative) until Connect. Returns the index of the
 * broker answering Connect; *@p hops counts the redirects. */
static int resolve(upulsar_tb_t **brokers, int n, const char *topic, int *hops)
{
    const char *url = upulsar_tb_url(brokers[0]);
    int authoritative = 0;
    *hops = 0;
    for (;;) {
        upulsar_tb_client_t *c = bc_connect_url(url);
        upulsar_tb_frame_t f;
        bc_lookup_resp_t *r = bc_lookup(c, topic, authoritative, &f);
        cr_assert(r->brokerserviceurl, "plaintext brokers answer in brokerServiceUrl");
        cr_assert_null(r->brokerserviceurltls);
        int idx = -1;
        for (int i = 0; i < n; i++)
            if (!strcmp(r->brokerserviceurl, upulsar_tb_url(brokers[i])))
                idx = i;
        cr_assert_geq(idx, 0, "unknown broker %s", r->brokerserviceurl);
        int response = r->response;
        authoritative = r->has_authoritative && r->authoritative;
        upulsar_tb_client_close(c);
        if (response == CONNECT)
            return idx;
        cr_assert_eq(response, REDIRECT);
        url = upulsar_tb_url(brokers[idx]);
        cr_assert_lt(++*hops, 20, "redirect loop for %s", topic);
    }
}

static void send_one(upulsar_tb_client_t *c, uint64_t pid, const char *name, uint64_t seq,
                     const char *payload, upulsar_tb_frame_t *f)
{
    upulsar_tb_out_msg_t m = {.payload = payload, .len = strlen(payload)};
    cr_assert_eq(upulsar_tb_client_send_messages(c, pid, name, seq, &m, 1, 0, 0), UPULSAR_OK);
    cr_assert_eq(bc_receipt(c, f)->sequence_id, seq);
}

Test(broker_topology, sixteen_partitions_over_three_brokers)
{
    upulsar_tb_t *b[NB];
    b[0] = start(NULL);
    b[1] = start(b[0]);
    b[2] = start(b[0]);
    /* metadata lives in the shared store: set once, seen by every broker */
    cr_assert_eq(upulsar_tb_set_partitions(b[1], "spread", NPART), UPULSAR_OK);
    /* every broker knows the owner of every partition: p % 3 */
    for (int i = 0; i < NB; i++)
        for (int p = 0; p < NPART; p++) {
            char t[64];
            snprintf(t, sizeof t, "spread-partition-%d", p);
            cr_assert_eq(upulsar_tb_set_owner(b[i], t, upulsar_tb_url(b[p % NB])), UPULSAR_OK);
        }

    for (int p = 0; p < NPART; p++) {
        char t[64];
        snprintf(t, sizeof t, "persistent://public/default/spread-partition-%d", p);
        int hops;
        int owner = resolve(b, NB, t, &hops);
        cr_assert_eq(owner, p % NB, "partition %d resolved to broker %d", p, owner);
        cr_assert_eq(hops, p % NB == 0 ? 0 : 1);

        /* only the owner accepts the producer */
        for (int i = 0; i < NB; i++) {
            upulsar_tb_client_t *c = bc_connect(b[i]);
            upulsar_err_t e = upulsar_tb_client_create_producer(c, t, 1, "w", WAIT_MS, NULL, 0,
                                                                NULL);
            if (i == owner) {
                cr_assert_eq(e, UPULSAR_OK, "%s", upulsar_last_error());
                upulsar_tb_frame_t f;
                char payload[32];
                snprintf(payload, sizeof payload, "m%d", p);
                send_one(c, 1, "w", 0, payload, &f);
            } else {
                cr_assert_eq(e, UPULSAR_ERR_SERVICE_NOT_READY);
            }
            upulsar_tb_client_close(c);
        }
    }
    /* every broker answers PARTITIONED_METADATA and sees each partition's log */
    for (int i = 0; i < NB; i++)
        for (int p = 0; p < NPART; p++) {
            char t[64];
            snprintf(t, sizeof t, "spread-partition-%d", p);
            upulsar_tb_snapshot_t *s;
            cr_assert_eq(upulsar_tb_snapshot(b[i], t, &s), UPULSAR_OK);
            cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
            char want[32];
            snprintf(want, sizeof want, "m%d", p);
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 0);
            cr_assert_eq(m->payload_len, strlen(want));
            cr_assert_arr_eq(m->payload, want, m->payload_len);
            upulsar_tb_snapshot_free(s);
        }
    upulsar_tb_stats_t st[NB];
    for (int i = 0; i < NB; i++) {
        upulsar_tb_stats(b[i], &st[i]);
        /* each broker stored its own partitions: 6, 5, 5 */
        cr_assert_eq(st[i].entries, (uint64_t)(NPART / NB + (i < NPART % NB)));
    }
    for (int i = NB - 1; i >= 0; i--)
        upulsar_tb_stop(b[i]);
}

Test(broker_topology, partition_owner_overrides_and_self_urls)
{
    upulsar_tb_t *a = start(NULL), *b = start(NULL);
    upulsar_tb_client_t *ca = bc_connect(a);
    upulsar_tb_frame_t f;
    /* the partitioned topic on b, but partition 5 stays on a */
    cr_assert_eq(upulsar_tb_set_owner(a, "ov", upulsar_tb_url(b)), UPULSAR_OK);
    char self[64];
    snprintf(self, sizeof self, "pulsar://localhost:%d", upulsar_tb_port(a));
    cr_assert_eq(upulsar_tb_set_owner(a, "ov-partition-5", self), UPULSAR_OK);
    bc_lookup_resp_t *r = bc_lookup(ca, "ov-partition-5", 0, &f);
    cr_assert_eq(r->response, CONNECT);
    cr_assert_str_eq(r->brokerserviceurl, upulsar_tb_url(a));
    r = bc_lookup(ca, "ov-partition-4", 0, &f);
    cr_assert_eq(r->response, REDIRECT);
    cr_assert_str_eq(r->brokerserviceurl, upulsar_tb_url(b));
    bc_create_producer(ca, "ov-partition-5", 1, NULL);
    bc_create_producer_gets(ca, "ov-partition-4", 2, NULL, UPULSAR_ERR_SERVICE_NOT_READY);
    /* removing the override: the partition follows its topic again */
    cr_assert_eq(upulsar_tb_set_owner(a, "ov-partition-5", NULL), UPULSAR_OK);
    r = bc_lookup(ca, "ov-partition-5", 0, &f);
    cr_assert_eq(r->response, REDIRECT);
    /* a partition owned elsewhere while its topic stays here */
    cr_assert_eq(upulsar_tb_set_owner(a, "ov", NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_owner(a, "ov-partition-7", upulsar_tb_url(b)), UPULSAR_OK);
    r = bc_lookup(ca, "ov-partition-7", 0, &f);
    cr_assert_eq(r->response, REDIRECT);
    r = bc_lookup(ca, "ov-partition-6", 0, &f);
    cr_assert_eq(r->response, CONNECT);
    /* without a shared store each broker has its own topics */
    upulsar_tb_client_t *cb = bc_producer_on(b, "solo", 1, "n");
    send_one(cb, 1, "n", 0, "x", &f);
    upulsar_tb_topic_stats_t ts = bc_topic_stats(a, "solo");
    cr_assert_eq(ts.messages, 0);
    ts = bc_topic_stats(b, "solo");
    cr_assert_eq(ts.messages, 1);
    cr_assert_eq(upulsar_tb_set_owner(a, "ov", "ftp://x"), UPULSAR_ERR__INVALID_URL);
    cr_assert_eq(upulsar_tb_move_topic(a, "ov", upulsar_tb_url(a)), UPULSAR_ERR__INVALID_ARG);
    upulsar_tb_client_close(ca);
    upulsar_tb_client_close(cb);
    upulsar_tb_stop(a);
    upulsar_tb_stop(b);
}

Test(broker_topology, move_topic_closes_producers_and_lookups_follow)
{
    upulsar_tb_t *a = start(NULL), *b = start(a);
    upulsar_tb_client_t *ca = bc_connect(a);
    upulsar_tb_frame_t f;
    bc_create_producer(ca, "mv", 7, "prod");
    for (uint64_t s = 0; s < 5; s++)
        send_one(ca, 7, "prod", s, "before", &f);

    cr_assert_eq(upulsar_tb_move_topic(a, "mv", upulsar_tb_url(b)), 1);
    cr_assert_eq(upulsar_tb_client_expect(ca, UP_CMD(CLOSE_PRODUCER), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.cmd->close_producer->producer_id, 7);
    cr_assert_null(f.cmd->close_producer->assignedbrokerserviceurl);
    /* a SEND for the closed producer is ignored: the LOOKUP behind it is
     * answered first, no receipt before it */
    upulsar_tb_out_msg_t m = {.payload = "late", .len = 4};
    cr_assert_eq(upulsar_tb_client_send_messages(ca, 7, "prod", 5, &m, 1, 0, 0), UPULSAR_OK);
    bc_lookup_resp_t *r = bc_lookup(ca, "mv", 0, &f);
    cr_assert_eq(r->response, REDIRECT);
    cr_assert_str_eq(r->brokerserviceurl, upulsar_tb_url(b));
    bc_create_producer_gets(ca, "mv", 8, "prod", UPULSAR_ERR_SERVICE_NOT_READY);

    /* the new owner continues the producer's sequence */
    upulsar_tb_client_t *cb = bc_connect(b);
    r = bc_lookup(cb, "mv", 1, &f);
    cr_assert_eq(r->response, CONNECT);
    cr_assert_str_eq(r->brokerserviceurl, upulsar_tb_url(b));
    int64_t last = -2;
    cr_assert_eq(upulsar_tb_client_create_producer(cb, "mv", 7, "prod", WAIT_MS, NULL, 0, &last),
                 UPULSAR_OK);
    cr_assert_eq(last, 4);
    send_one(cb, 7, "prod", 4, "dup", &f); /* a resend: recognised */
    cr_assert_eq(f.cmd->send_receipt->message_id->ledgerid, UINT64_MAX);
    send_one(cb, 7, "prod", 5, "after", &f);
    cr_assert_neq(f.cmd->send_receipt->message_id->ledgerid, UINT64_MAX);
    cr_assert_eq(f.cmd->send_receipt->message_id->entryid, 5);

    /* one log, from either broker */
    upulsar_tb_t *both[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(both[i], "mv", &s), UPULSAR_OK);
        cr_assert_eq(upulsar_tb_snapshot_count(s), 6);
        for (size_t k = 0; k < 6; k++)
            cr_assert_eq(upulsar_tb_snapshot_msg(s, k)->sequence_id, k);
        cr_assert_eq(upulsar_tb_snapshot_msg(s, 5)->payload_len, 5);
        cr_assert_arr_eq(upulsar_tb_snapshot_msg(s, 5)->payload, "after", 5);
        upulsar_tb_snapshot_free(s);
    }

    /* and back, announcing the new owner in CLOSE_PRODUCER */
    cr_assert_eq(upulsar_tb_move_topic_ex(b, "mv", upulsar_tb_url(a), UPULSAR_TB_MOVE_ASSIGNED),
                 1);
    cr_assert_eq(upulsar_tb_client_expect(cb, UP_CMD(CLOSE_PRODUCER), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_str_eq(f.cmd->close_producer->assignedbrokerserviceurl, upulsar_tb_url(a));
    r = bc_lookup(cb, "mv", 0, &f);
    cr_assert_eq(r->response, REDIRECT);
    cr_assert_str_eq(r->brokerserviceurl, upulsar_tb_url(a));
    r = bc_lookup(ca, "mv", 0, &f);
    cr_assert_eq(r->response, CONNECT);
    cr_assert_eq(upulsar_tb_client_create_producer(ca, "mv", 9, "prod", WAIT_MS, NULL, 0, &last),
                 UPULSAR_OK);
    cr_assert_eq(last, 5);

    /* the store outlives the broker that made it */
    upulsar_tb_client_close(ca);
    upulsar_tb_stop(a);
    upulsar_tb_topic_stats_t ts = bc_topic_stats(b, "mv");
    cr_assert_eq(ts.messages, 6);
    upulsar_tb_client_close(cb);
    upulsar_tb_stop(b);
}

Test(broker_topology, moving_a_partitioned_topic_moves_its_partitions)
{
    upulsar_tb_t *a = start(NULL), *b = start(a);
    cr_assert_eq(upulsar_tb_set_partitions(a, "pt", 4), UPULSAR_OK);
    /* partition 3 has its own owner on a (a itself): it does not move */
    cr_assert_eq(upulsar_tb_set_owner(a, "pt-partition-3", upulsar_tb_url(a)), UPULSAR_OK);
    upulsar_tb_client_t *ca = bc_connect(a);
    for (uint64_t p = 0; p < 4; p++) {
        char t[32];
        snprintf(t, sizeof t, "pt-partition-%d", (int)p);
        bc_create_producer(ca, t, p, NULL);
    }
    cr_assert_eq(upulsar_tb_move_topic(a, "pt", upulsar_tb_url(b)), 3);
    bool closed[4] = {false};
    upulsar_tb_frame_t f;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(upulsar_tb_client_expect(ca, UP_CMD(CLOSE_PRODUCER), WAIT_MS, &f),
                     UPULSAR_OK);
        closed[f.cmd->close_producer->producer_id] = true;
    }
    cr_assert(closed[0] && closed[1] && closed[2] && !closed[3]);
    cr_assert_eq(bc_lookup(ca, "pt-partition-1", 0, &f)->response, REDIRECT);
    cr_assert_eq(bc_lookup(ca, "pt-partition-3", 0, &f)->response, CONNECT);
    upulsar_tb_client_t *cb = bc_connect(b);
    cr_assert_eq(bc_lookup(cb, "pt-partition-1", 1, &f)->response, CONNECT);
    upulsar_tb_client_close(ca);
    upulsar_tb_client_close(cb);
    upulsar_tb_stop(b);
    upulsar_tb_stop(a);
}

/* ---- a move while a sender streams ---------------------------------------- */

typedef struct {
    upulsar_tb_t *brokers[2];
    atomic_int owner;   /* index the mover last moved the topic to */
    atomic_bool done;
    uint64_t sent;      /* messages acknowledged (stored or recognised) */
    int recreations;
} stream_t;

#define STREAM_MSGS 3000

/* A minimal producer: sends in order, on CLOSE_PRODUCER looks the topic up
 * again, re-creates the producer where it lives now and resends everything
 * not acknowledged. */
static void *streamer(void *arg)
{
    stream_t *s = arg;
    uint64_t next = 0, acked = 0;
    int cur = 0;
    upulsar_tb_client_t *c = bc_producer_on(s->brokers[cur], "stream", 1, "s");
    while (acked < STREAM_MSGS) {
        while (next < STREAM_MSGS && next - acked < 50) {
            char payload[32];
            int n = snprintf(payload, sizeof payload, "%llu", (unsigned long long)next);
            upulsar_tb_out_msg_t m = {.payload = payload, .len = (size_t)n};
            cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "s", next, &m, 1, 0, 0),
                         UPULSAR_OK);
            next++;
        }
        upulsar_tb_frame_t f;
        cr_assert_eq(upulsar_tb_client_read(c, WAIT_MS, &f), UPULSAR_OK, "%s",
                     upulsar_last_error());
        if (f.type == UP_CMD(SEND_RECEIPT)) {
            cr_assert_eq(f.cmd->send_receipt->sequence_id, acked, "receipts in order");
            acked++;
            continue;
        }
        cr_assert_eq(f.type, UP_CMD(CLOSE_PRODUCER), "unexpected %d", f.type);
        /* follow the topic: ask the broker we are on, as a client does */
        for (;;) {
            upulsar_tb_frame_t lf;
            bc_lookup_resp_t *r = bc_lookup(c, "stream", 0, &lf);
            int idx = !strcmp(r->brokerserviceurl, upulsar_tb_url(s->brokers[0])) ? 0 : 1;
            if (idx != cur) {
                upulsar_tb_client_close(c);
                cur = idx;
                c = bc_connect(s->brokers[cur]);
                continue; /* confirm with the new broker */
            }
            break;
        }
        int64_t last = -2;
        upulsar_err_t e;
        /* the mover may move it again meanwhile: then re-resolve */
        while ((e = upulsar_tb_client_create_producer(c, "stream", 1, "s", WAIT_MS, NULL, 0,
                                                      &last)) == UPULSAR_ERR_SERVICE_NOT_READY) {
            upulsar_tb_client_close(c);
            cur = atomic_load(&s->owner);
            c = bc_connect(s->brokers[cur]);
        }
        cr_assert_eq(e, UPULSAR_OK, "%s", upulsar_last_error());
        s->recreations++;
        /* receipts of SENDs after the close never come: resend from the
         * first unacknowledged one; the store recognises what it has */
        cr_assert_geq(last + 1, (int64_t)acked);
        next = acked;
    }
    upulsar_tb_client_close(c);
    s->sent = acked;
    atomic_store(&s->done, true);
    return NULL;
}

Test(broker_topology, move_while_streaming_keeps_every_message_once)
{
    stream_t s;
    memset(&s, 0, sizeof s);
    s.brokers[0] = start(NULL);
    s.brokers[1] = start(s.brokers[0]);
    atomic_init(&s.owner, 0);
    atomic_init(&s.done, false);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, streamer, &s), 0);
    int moves = 0;
    /* move on progress, not on time: every 500 stored messages */
    for (uint64_t target = 500; target < STREAM_MSGS; target += 500) {
        if (upulsar_tb_wait_messages(s.brokers[0], "stream", target, WAIT_MS) != UPULSAR_OK)
            break;
        int from = atomic_load(&s.owner), to = 1 - from;
        atomic_store(&s.owner, to);
        cr_assert_geq(upulsar_tb_move_topic(s.brokers[from], "stream",
                                            upulsar_tb_url(s.brokers[to])),
                      0);
        moves++;
    }
    pthread_join(th, NULL);
    cr_assert_eq(s.sent, STREAM_MSGS);
    cr_assert_eq(moves, STREAM_MSGS / 500 - 1 + (STREAM_MSGS % 500 != 0));
    cr_assert_geq(s.recreations, 1, "the producer followed the topic");
    upulsar_tb_snapshot_t *snap;
    cr_assert_eq(upulsar_tb_snapshot(s.brokers[1], "stream", &snap), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(snap), STREAM_MSGS, "no loss, no duplicate");
    for (size_t i = 0; i < STREAM_MSGS; i++)
        cr_assert_eq(upulsar_tb_snapshot_msg(snap, i)->sequence_id, i, "in order");
    upulsar_tb_snapshot_free(snap);
    upulsar_tb_stop(s.brokers[0]);
    upulsar_tb_stop(s.brokers[1]);
}
