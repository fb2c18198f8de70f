/* test_broker_consumer.c -- the consumer side: SUBSCRIBE at Earliest or
 * Latest, FLOW permits counted in messages, MESSAGE frames carrying the
 * published bytes, live push of new entries, ACK / ACK_RESPONSE,
 * redelivery of unacknowledged entries, CLOSE_CONSUMER, exclusivity.
 * UPULSAR_TEST_LABEL_CONCURRENCY (entries cross connection threads) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "broker_common.h"

/* A published entry as the test built it: metadata and payload bytes. */
typedef struct sent {
    uint8_t md[256];
    size_t md_len;
    uint8_t payload[4096];
    size_t payload_len;
} sent_t;

/* Publish @p n messages ("m<seq>") as one entry, LZ4-compressed batch when
 * n > 1, and wait for its receipt. */
static void publish(upulsar_tb_client_t *c, uint64_t pid, uint64_t seq, int n, sent_t *out)
{
    uint8_t body[2048];
    size_t bl = 0;
    for (int i = 0; i < n; i++) {
        char p[32];
        int pl = snprintf(p, sizeof p, "m%llu", (unsigned long long)(seq + (uint64_t)i));
        up_smm_t m = {.key = "k", .key_len = 1, .sequence_id = seq + (uint64_t)i,
                      .payload_size = (uint32_t)pl};
        bl += up_record_put(body + bl, &m, p);
    }
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    md.producer_name = "p";
    md.sequence_id = seq;
    md.publish_time = 1700000000000ull + seq;
    const uint8_t *wire = body;
    size_t wl = bl;
    uint8_t packed[4096];
    if (n > 1) {
        md.has_num_messages_in_batch = 1;
        md.num_messages_in_batch = n;
        long cl = up_compress(UP_COMP_LZ4, body, bl, packed, sizeof packed);
        cr_assert_gt(cl, 0);
        md.has_compression = 1;
        md.compression = PULSAR__PROTO__COMPRESSION_TYPE__LZ4;
        md.has_uncompressed_size = 1;
        md.uncompressed_size = (uint32_t)bl;
        wire = packed;
        wl = (size_t)cl;
    } else {
        wire = (const uint8_t *)"single";
        wl = 6;
    }
    if (out) {
        out->md_len = protobuf_c_message_get_packed_size(&md.base);
        cr_assert_leq(out->md_len, sizeof out->md);
        protobuf_c_message_pack(&md.base, out->md);
        cr_assert_leq(wl, sizeof out->payload);
        memcpy(out->payload, wire, wl);
        out->payload_len = wl;
    }
    bc_send_entry(c, pid, seq, n > 1 ? n : 0, &md, wire, wl);
    upulsar_tb_frame_t f;
    bc_receipt(c, &f);
}

/* Consumer @p cid of subscription "s" on topic "t" (from the earliest
 * entry if @p earliest, else only new ones), with @p permits granted. */
static void subscribe_with_permits(upulsar_tb_client_t *k, uint64_t cid, int earliest,
                                   uint32_t permits)
{
    cr_assert_eq(upulsar_tb_client_subscribe(k, "t", "s", cid, earliest, 0, WAIT_MS), UPULSAR_OK,
                 "%s", upulsar_last_error());
    cr_assert_eq(upulsar_tb_client_flow(k, cid, permits), UPULSAR_OK);
}

static const Pulsar__Proto__CommandMessage *next_message(upulsar_tb_client_t *c,
                                                         upulsar_tb_frame_t *f)
{
    upulsar_err_t err = upulsar_tb_client_expect(c, UP_CMD(MESSAGE), WAIT_MS, f);
    cr_assert_eq(err, UPULSAR_OK, "%s: %s", upulsar_err_name(err), upulsar_last_error());
    cr_assert(f->has_payload);
    cr_assert(f->has_crc);
    cr_assert(f->crc_ok);
    return f->cmd->message;
}

static void ack(upulsar_tb_client_t *c, uint64_t consumer, uint64_t ledger, uint64_t entry,
                int cumulative, uint64_t request_id)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandAck a = PULSAR__PROTO__COMMAND_ACK__INIT;
    Pulsar__Proto__MessageIdData id = PULSAR__PROTO__MESSAGE_ID_DATA__INIT;
    Pulsar__Proto__MessageIdData *ids[1] = {&id};
    cmd.type = UP_CMD(ACK);
    cmd.ack = &a;
    a.consumer_id = consumer;
    a.ack_type = cumulative ? PULSAR__PROTO__COMMAND_ACK__ACK_TYPE__Cumulative
                            : PULSAR__PROTO__COMMAND_ACK__ACK_TYPE__Individual;
    a.n_message_id = 1;
    a.message_id = ids;
    id.ledgerid = ledger;
    id.entryid = entry;
    if (request_id) {
        a.has_request_id = 1;
        a.request_id = request_id;
    }
    cr_assert_eq(upulsar_tb_client_send_cmd(c, &cmd), UPULSAR_OK);
}

static void close_consumer(upulsar_tb_client_t *c, uint64_t consumer, uint64_t rid)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandCloseConsumer cc = PULSAR__PROTO__COMMAND_CLOSE_CONSUMER__INIT;
    cmd.type = UP_CMD(CLOSE_CONSUMER);
    cmd.close_consumer = &cc;
    cc.consumer_id = consumer;
    cc.request_id = rid;
    cr_assert_eq(upulsar_tb_client_send_cmd(c, &cmd), UPULSAR_OK);
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(SUCCESS), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.cmd->success->request_id, rid);
}

Test(broker_consumer, earliest_subscription_receives_stored_entries_byte_for_byte)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *p = bc_producer_on(tb, "t", 1, "p"), *k = bc_connect(tb);
    sent_t *sent = calloc(3, sizeof *sent);
    cr_assert_not_null(sent);
    publish(p, 1, 0, 10, &sent[0]);
    publish(p, 1, 10, 1, &sent[1]);
    publish(p, 1, 11, 5, &sent[2]);
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");

    subscribe_with_permits(k, 42, 1, 1000);
    for (uint64_t e = 0; e < 3; e++) {
        upulsar_tb_frame_t f;
        const Pulsar__Proto__CommandMessage *m = next_message(k, &f);
        cr_assert_eq(m->consumer_id, 42);
        cr_assert_eq(m->message_id->ledgerid, st.ledger_id);
        cr_assert_eq(m->message_id->entryid, e);
        cr_assert_eq(f.metadata_len, sent[e].md_len, "entry %llu", (unsigned long long)e);
        cr_assert_arr_eq(f.metadata, sent[e].md, sent[e].md_len);
        cr_assert_eq(f.payload_len, sent[e].payload_len);
        cr_assert_arr_eq(f.payload, sent[e].payload, sent[e].payload_len);
    }
    bc_assert_quiet(k);
    st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.consumers, 1);
    free(sent);
    upulsar_tb_client_close(p);
    upulsar_tb_client_close(k);
    upulsar_tb_stop(tb);
}

Test(broker_consumer, latest_subscription_gets_only_new_entries_pushed_live)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *p = bc_producer_on(tb, "t", 1, "p"), *k = bc_connect(tb);
    publish(p, 1, 0, 1, NULL);
    publish(p, 1, 1, 1, NULL);
    subscribe_with_permits(k, 1, 0, 100);
    bc_assert_quiet(k); /* nothing from before the subscription */
    for (uint64_t i = 2; i < 5; i++) {
        publish(p, 1, i, 1, NULL);
        upulsar_tb_frame_t f;
        cr_assert_eq(next_message(k, &f)->message_id->entryid, i);
    }
    upulsar_tb_client_close(p);
    upulsar_tb_client_close(k);
    upulsar_tb_stop(tb);
}

Test(broker_consumer, permits_count_messages_and_gate_dispatch)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *p = bc_producer_on(tb, "t", 1, "p"), *k = bc_connect(tb);
    publish(p, 1, 0, 1, NULL);  /* entry 0: 1 message */
    publish(p, 1, 1, 10, NULL); /* entry 1: 10 messages */
    publish(p, 1, 11, 1, NULL); /* entry 2: 1 message */
    cr_assert_eq(upulsar_tb_client_subscribe(k, "t", "s", 1, 1, 0, WAIT_MS), UPULSAR_OK);
    upulsar_tb_frame_t f;
    bc_assert_quiet(k); /* no permits, no messages */
    cr_assert_eq(upulsar_tb_client_flow(k, 1, 2), UPULSAR_OK);
    cr_assert_eq(next_message(k, &f)->message_id->entryid, 0);
    /* one permit left: the 10-message entry goes, permits end at -9 */
    cr_assert_eq(next_message(k, &f)->message_id->entryid, 1);
    bc_assert_quiet(k);
    cr_assert_eq(upulsar_tb_client_flow(k, 1, 9), UPULSAR_OK); /* back to 0 */
    bc_assert_quiet(k);
    cr_assert_eq(upulsar_tb_client_flow(k, 1, 1), UPULSAR_OK);
    cr_assert_eq(next_message(k, &f)->message_id->entryid, 2);
    upulsar_tb_client_close(p);
    upulsar_tb_client_close(k);
    upulsar_tb_stop(tb);
}

Test(broker_consumer, unacknowledged_entries_are_redelivered_after_close)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *p = bc_producer_on(tb, "t", 1, "p"), *k = bc_connect(tb);
    for (uint64_t i = 0; i < 5; i++)
        publish(p, 1, i, 1, NULL);
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    subscribe_with_permits(k, 1, 1, 100);
    upulsar_tb_frame_t f;
    for (uint64_t i = 0; i < 5; i++)
        cr_assert_eq(next_message(k, &f)->message_id->entryid, i);
    ack(k, 1, st.ledger_id, 1, 1, 0);  /* cumulative: 0 and 1 */
    ack(k, 1, st.ledger_id, 3, 0, 77); /* individual 3, with a receipt */
    cr_assert_eq(upulsar_tb_client_expect(k, UP_CMD(ACK_RESPONSE), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.cmd->ackresponse->consumer_id, 1);
    cr_assert(f.cmd->ackresponse->has_request_id);
    cr_assert_eq(f.cmd->ackresponse->request_id, 77);
    cr_assert_not(f.cmd->ackresponse->has_error);
    close_consumer(k, 1, 5);
    st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.consumers, 0);

    /* same subscription again: 2 and 4 come back, 0, 1, 3 do not */
    subscribe_with_permits(k, 2, 0, 100);
    cr_assert_eq(next_message(k, &f)->message_id->entryid, 2);
    cr_assert_eq(next_message(k, &f)->message_id->entryid, 4);
    bc_assert_quiet(k);
    upulsar_tb_client_close(p);
    upulsar_tb_client_close(k);
    upulsar_tb_stop(tb);
}

Test(broker_consumer, exclusive_subscription_refuses_a_second_consumer)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *a = bc_connect(tb), *b = bc_connect(tb);
    cr_assert_eq(upulsar_tb_client_subscribe(a, "t", "s", 1, 1, 0, WAIT_MS), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_subscribe(b, "t", "s", 1, 1, 0, WAIT_MS),
                 UPULSAR_ERR_CONSUMER_BUSY);
    cr_assert_eq(upulsar_tb_client_subscribe(b, "t", "other", 1, 1, 0, WAIT_MS), UPULSAR_OK);
    upulsar_tb_client_close(a);
    upulsar_tb_client_close(b);
    upulsar_tb_stop(tb);
}

Test(broker_consumer, shared_consumers_split_the_entries)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *p = bc_producer_on(tb, "t", 1, "p"), *a = bc_connect(tb),
                        *b = bc_connect(tb);
    cr_assert_eq(upulsar_tb_client_subscribe(a, "t", "s", 1, 1, 1, WAIT_MS), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_subscribe(b, "t", "s", 1, 1, 1, WAIT_MS), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_flow(a, 1, 2), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_flow(b, 1, 2), UPULSAR_OK);
    for (uint64_t i = 0; i < 4; i++)
        publish(p, 1, i, 1, NULL);
    /* each gets two (its permits), every entry exactly once */
    int seen[4] = {0};
    upulsar_tb_frame_t f;
    for (int i = 0; i < 2; i++) {
        seen[next_message(a, &f)->message_id->entryid]++;
        seen[next_message(b, &f)->message_id->entryid]++;
    }
    for (int i = 0; i < 4; i++)
        cr_assert_eq(seen[i], 1, "entry %d", i);
    upulsar_tb_client_close(p);
    upulsar_tb_client_close(a);
    upulsar_tb_client_close(b);
    upulsar_tb_stop(tb);
}
