/* test_broker_send.c -- publishing: receipts, the log read back through
 * snapshots (batches, LZ4/ZSTD, keys, properties), checksum and size
 * errors, receipt order, decode-error accounting. */
#include <stdio.h>
#include <string.h>

#include "batch.h"
#include "broker_common.h"
#include "testbroker/tb.h"

static upulsar_tb_t *start_broker(int max_message_size)
{
    upulsar_tb_opts_t o = bc_opts();
    if (max_message_size)
        o.max_message_size = max_message_size;
    return bc_start(&o);
}

static uint64_t ledger_of(upulsar_tb_t *tb, const char *topic)
{
    return bc_topic_stats(tb, topic).ledger_id;
}

/* 1000 messages with distinct keys, properties, ordering keys, times */
typedef struct gen {
    char payload[1000][32];
    char key[1000][32];
    char idx[1000][24];
    char okey[1000][24];
    upulsar_property_t props[1000][2];
    upulsar_tb_out_msg_t m[1000];
} gen_t;

static void gen_fill(gen_t *g, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(g->payload[i], sizeof g->payload[i], "payload-%zu-%s", i, i % 3 ? "x" : "yyyy");
        snprintf(g->key[i], sizeof g->key[i], "key-%zu", i % 37);
        snprintf(g->idx[i], sizeof g->idx[i], "%zu", i);
        snprintf(g->okey[i], sizeof g->okey[i], "o%zu", i % 5);
        g->props[i][0] = (upulsar_property_t){"idx", g->idx[i]};
        g->props[i][1] = (upulsar_property_t){"kind", i % 2 ? "odd" : "even"};
        g->m[i] = (upulsar_tb_out_msg_t){
            .payload = g->payload[i],
            .len = strlen(g->payload[i]),
            .key = i % 10 == 9 ? NULL : g->key[i], /* some without a key */
            .ordering_key = i % 4 == 0 ? g->okey[i] : NULL,
            .ordering_key_len = i % 4 == 0 ? strlen(g->okey[i]) : 0,
            .properties = g->props[i],
            .properties_cnt = i % 5 == 4 ? 0 : 2,
            .event_time = i % 3 == 0 ? 0 : 1700000000000ull + i,
        };
    }
}

static void check_batch(const upulsar_tb_snapshot_t *s, size_t base, const gen_t *g, size_t n,
                        uint64_t first_seq, uint64_t ledger, uint64_t entry, int compression)
{
    for (size_t i = 0; i < n; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, base + i);
        cr_assert_not_null(m);
        cr_assert_eq(m->payload_len, g->m[i].len, "msg %zu", i);
        cr_assert_eq(memcmp(m->payload, g->m[i].payload, m->payload_len), 0, "msg %zu", i);
        if (g->m[i].key)
            cr_assert_str_eq(m->partition_key, g->m[i].key, "msg %zu", i);
        else
            cr_assert_null(m->partition_key, "msg %zu", i);
        if (g->m[i].ordering_key) {
            cr_assert_eq(m->ordering_key_len, g->m[i].ordering_key_len);
            cr_assert_eq(memcmp(m->ordering_key, g->m[i].ordering_key, m->ordering_key_len), 0);
        } else {
            cr_assert_null(m->ordering_key);
        }
        cr_assert_eq(m->properties_cnt, g->m[i].properties_cnt, "msg %zu", i);
        for (size_t k = 0; k < m->properties_cnt; k++) {
            cr_assert_str_eq(m->properties[k].key, g->m[i].properties[k].key);
            cr_assert_str_eq(m->properties[k].value, g->m[i].properties[k].value);
        }
        cr_assert_eq(m->event_time, g->m[i].event_time, "msg %zu", i);
        cr_assert_eq(m->sequence_id, first_seq + i);
        cr_assert_str_eq(m->producer_name, "p");
        cr_assert_gt(m->publish_time, 0);
        cr_assert_eq(m->ledger_id, ledger);
        cr_assert_eq(m->entry_id, entry);
        cr_assert_eq(m->batch_index, (int32_t)i);
        cr_assert_eq(m->batch_size, (int32_t)n);
        cr_assert_eq(m->compression, compression);
    }
}

Test(broker_send, lz4_batch_of_1000_stored_with_keys_and_properties_and_receipted)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 5, "p");
    uint64_t ledger = ledger_of(tb, "t");
    static gen_t g;
    gen_fill(&g, 1000);

    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_send_messages(c, 5, "p", 0, g.m, 1000, UP_COMP_LZ4, 0),
                 UPULSAR_OK);
    const Pulsar__Proto__CommandSendReceipt *r = bc_receipt(c, &f);
    cr_assert_eq(r->producer_id, 5);
    cr_assert_eq(r->sequence_id, 0);
    cr_assert(r->has_highest_sequence_id);
    cr_assert_eq(r->highest_sequence_id, 0); /* not sent: repeats sequence_id */
    cr_assert_eq(r->message_id->ledgerid, ledger);
    cr_assert_eq(r->message_id->entryid, 0);

    /* Java style: highest_sequence_id sent, and echoed */
    cr_assert_eq(upulsar_tb_client_send_messages(c, 5, "p", 1000, g.m, 1000, UP_COMP_LZ4,
                                                 UPULSAR_TB_SEND_HIGHEST),
                 UPULSAR_OK);
    r = bc_receipt(c, &f);
    cr_assert_eq(r->sequence_id, 1000);
    cr_assert_eq(r->highest_sequence_id, 1999);
    cr_assert_eq(r->message_id->ledgerid, ledger);
    cr_assert_eq(r->message_id->entryid, 1);

    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "persistent://public/default/t");
    cr_assert_eq(st.entries, 2);
    cr_assert_eq(st.messages, 2000);
    cr_assert_eq(st.decode_errors, 0);
    cr_assert_eq(st.duplicates, 0);

    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "t", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 2000);
    cr_assert_eq(upulsar_tb_snapshot_skipped(s), 0);
    check_batch(s, 0, &g, 1000, 0, ledger, 0, UP_COMP_LZ4);
    check_batch(s, 1000, &g, 1000, 1000, ledger, 1, UP_COMP_LZ4);
    cr_assert_null(upulsar_tb_snapshot_msg(s, 2000));
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
    /* a snapshot outlives its broker */
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 1999)->sequence_id, 1999);
    upulsar_tb_snapshot_free(s);
}

Test(broker_send, zstd_and_uncompressed_batches_decode)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    static gen_t g;
    gen_fill(&g, 50);
    bool zstd = up_compress_bound(UP_COMP_ZSTD, 16) != 0;
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 0, g.m, 50, UP_COMP_NONE, 0),
                 UPULSAR_OK);
    bc_receipt(c, &f);
    if (zstd) {
        cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 50, g.m, 50, UP_COMP_ZSTD, 0),
                     UPULSAR_OK);
        bc_receipt(c, &f);
    }
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "t", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), zstd ? 100 : 50);
    check_batch(s, 0, &g, 50, 0, ledger_of(tb, "t"), 0, UP_COMP_NONE);
    if (zstd)
        check_batch(s, 50, &g, 50, 50, ledger_of(tb, "t"), 1, UP_COMP_ZSTD);
    upulsar_tb_snapshot_free(s);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_send, single_message_keeps_metadata_fields)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    upulsar_property_t props[] = {{"a", "1"}, {"b", ""}};
    upulsar_tb_out_msg_t m = {.payload = "hello", .len = 5, .key = "k", .ordering_key = "ok",
                              .ordering_key_len = 2, .properties = props, .properties_cnt = 2,
                              .event_time = 123};
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 41, &m, 1, UP_COMP_LZ4, 0),
                 UPULSAR_OK);
    const Pulsar__Proto__CommandSendReceipt *r = bc_receipt(c, &f);
    cr_assert_eq(r->sequence_id, 41);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "t", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    const upulsar_tb_msg_t *x = upulsar_tb_snapshot_msg(s, 0);
    cr_assert_eq(x->payload_len, 5);
    cr_assert_eq(memcmp(x->payload, "hello", 5), 0);
    cr_assert_str_eq(x->partition_key, "k");
    cr_assert_eq(x->ordering_key_len, 2);
    cr_assert_eq(memcmp(x->ordering_key, "ok", 2), 0);
    cr_assert_eq(x->properties_cnt, 2);
    cr_assert_str_eq(x->properties[1].key, "b");
    cr_assert_str_eq(x->properties[1].value, "");
    cr_assert_eq(x->event_time, 123);
    cr_assert_eq(x->sequence_id, 41);
    cr_assert_eq(x->batch_index, -1);
    cr_assert_eq(x->batch_size, 0);
    upulsar_tb_snapshot_free(s);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_send, bad_checksum_gets_checksum_error_and_connection_stays)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 3, "p");
    upulsar_tb_out_msg_t m = {.payload = "abc", .len = 3};
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_send_messages(c, 3, "p", 10, &m, 1, 0, UPULSAR_TB_SEND_BAD_CRC),
                 UPULSAR_OK);
    const Pulsar__Proto__CommandSendError *e = bc_send_error(c, &f);
    cr_assert_eq(e->producer_id, 3);
    cr_assert_eq(e->sequence_id, 10);
    cr_assert_eq(e->error, UP_SERR(ChecksumError));
    cr_assert_not_null(e->message);
    /* same connection, a good frame is stored as entry 0 */
    cr_assert_eq(upulsar_tb_client_send_messages(c, 3, "p", 10, &m, 1, 0, 0), UPULSAR_OK);
    const Pulsar__Proto__CommandSendReceipt *r = bc_receipt(c, &f);
    cr_assert_eq(r->sequence_id, 10);
    cr_assert_eq(r->message_id->entryid, 0);
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.checksum_errors, 1);
    cr_assert_eq(st.entries, 1);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_send, frames_without_checksum_are_accepted)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 3, "p");
    upulsar_tb_out_msg_t m = {.payload = "abc", .len = 3};
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_send_messages(c, 3, "p", 0, &m, 1, 0, UPULSAR_TB_SEND_NO_CRC),
                 UPULSAR_OK);
    bc_receipt(c, &f);
    cr_assert_eq(upulsar_tb_wait_messages(tb, "t", 1, WAIT_MS), UPULSAR_OK);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

/* As Pulsar's frame decoder: a frame within max_message_size + 10 KiB is
 * taken whatever its payload size (the room is for commands and metadata;
 * the client's own check is the limit), a larger one closes the
 * connection. */
Test(broker_send, frames_within_the_padding_are_stored_larger_ones_close)
{
    upulsar_tb_t *tb = start_broker(1000);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    static char big[12 * 1024];
    memset(big, 'z', sizeof big);
    upulsar_tb_out_msg_t m = {.payload = big, .len = 2000};
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 0, &m, 1, 0, 0), UPULSAR_OK);
    cr_assert_eq(bc_receipt(c, &f)->message_id->entryid, 0);
    m.len = sizeof big; /* 12 KiB > 1000 + 10 KiB */
    cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 1, &m, 1, 0, 0), UPULSAR_OK);
    bc_assert_closed(c);
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.send_errors, 0);
    cr_assert_eq(st.entries, 1);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

/* NotAllowedError for size comes from the topic's maxMessageSize policy
 * only (below the broker's limit; chunks skip it), and the connection and
 * producer stay. */
Test(broker_send, topic_max_message_size_policy_gets_not_allowed_and_connection_stays)
{
    upulsar_tb_t *tb = start_broker(0);
    cr_assert_eq(upulsar_tb_set_max_message_size(tb, "t", 1000), UPULSAR_OK);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    static char big[2000];
    memset(big, 'z', sizeof big);
    upulsar_tb_out_msg_t m = {.payload = big, .len = sizeof big};
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 0, &m, 1, 0, 0), UPULSAR_OK);
    const Pulsar__Proto__CommandSendError *e = bc_send_error(c, &f);
    cr_assert_eq(e->error, UP_SERR(NotAllowedError));
    cr_assert_eq(e->sequence_id, 0);
    m.len = 10;
    cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 1, &m, 1, 0, 0), UPULSAR_OK);
    cr_assert_eq(bc_receipt(c, &f)->message_id->entryid, 0);
    /* no policy: the same size is stored */
    cr_assert_eq(upulsar_tb_set_max_message_size(tb, "t", 0), UPULSAR_OK);
    m.len = sizeof big;
    cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 2, &m, 1, 0, 0), UPULSAR_OK);
    cr_assert_eq(bc_receipt(c, &f)->message_id->entryid, 1);
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.send_errors, 1);
    cr_assert_eq(st.entries, 2);
    cr_assert_eq(upulsar_tb_set_max_message_size(tb, "t", -1), UPULSAR_ERR__INVALID_ARG);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_send, frame_beyond_the_decoder_limit_closes_the_connection)
{
    upulsar_tb_t *tb = start_broker(1000);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    static char big[1000 + UP_FRAME_PADDING + 100];
    upulsar_tb_out_msg_t m = {.payload = big, .len = sizeof big};
    cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 0, &m, 1, 0, 0), UPULSAR_OK);
    bc_assert_closed(c);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_send, receipts_come_in_arrival_order_per_producer)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    bc_create_producer(c, "t", 2, "q");
    upulsar_tb_out_msg_t m[3] = {{.payload = "a", .len = 1}, {.payload = "b", .len = 1},
                                 {.payload = "c", .len = 1}};
    enum { N = 300 };
    for (uint64_t i = 0; i < N; i++) {
        /* producer 1 sends batches of 3, producer 2 single messages */
        cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 3 * i, m, 3, 0, 0), UPULSAR_OK);
        cr_assert_eq(upulsar_tb_client_send_messages(c, 2, "q", i, m, 1, 0, 0), UPULSAR_OK);
    }
    uint64_t next1 = 0, next2 = 0, last_entry = 0;
    for (int i = 0; i < 2 * N; i++) {
        upulsar_tb_frame_t f;
        const Pulsar__Proto__CommandSendReceipt *r = bc_receipt(c, &f);
        if (i)
            cr_assert_eq(r->message_id->entryid, last_entry + 1);
        last_entry = r->message_id->entryid;
        if (r->producer_id == 1) {
            cr_assert_eq(r->sequence_id, 3 * next1++);
        } else {
            cr_assert_eq(r->producer_id, 2);
            cr_assert_eq(r->sequence_id, next2++);
        }
    }
    cr_assert_eq(next1, N);
    cr_assert_eq(next2, N);
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.messages, 4 * N);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_send, batch_with_fewer_records_than_announced_counts_a_decode_error)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    /* two records, metadata and SEND claim three */
    uint8_t body[64];
    up_smm_t a = {.sequence_id = 0, .payload_size = 1}, b = {.sequence_id = 1, .payload_size = 1};
    size_t n = up_record_put(body, &a, "x");
    n += up_record_put(body + n, &b, "y");
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    md.producer_name = "p";
    md.publish_time = 1;
    md.has_num_messages_in_batch = 1;
    md.num_messages_in_batch = 3;
    bc_send_entry(c, 1, 0, 3, &md, body, n);
    upulsar_tb_frame_t f;
    bc_receipt(c, &f); /* a broker stores what it is given */
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.entries, 1);
    cr_assert_eq(st.decode_errors, 1);
    upulsar_tb_snapshot_t *snap;
    cr_assert_eq(upulsar_tb_snapshot(tb, "t", &snap), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(snap), 0);
    cr_assert_eq(upulsar_tb_snapshot_skipped(snap), 1);
    upulsar_tb_snapshot_free(snap);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_send, hand_encoded_receipt_matches_protobuf_c)
{
    const uint64_t vals[] = {0, 1, 127, 128, 300, 1ull << 35, UINT64_MAX};
    for (size_t i = 0; i < 7; i++)
        for (int hh = 0; hh < 2; hh++) {
            up_buf_t mine = UP_BUF_INIT, ref = UP_BUF_INIT;
            uint64_t v = vals[i], w = vals[6 - i];
            cr_assert_eq(tb_put_receipt(&mine, v, w, v ^ w, hh, w, v), 0);
            up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
            Pulsar__Proto__CommandSendReceipt r = PULSAR__PROTO__COMMAND_SEND_RECEIPT__INIT;
            Pulsar__Proto__MessageIdData id = PULSAR__PROTO__MESSAGE_ID_DATA__INIT;
            cmd.type = UP_CMD(SEND_RECEIPT);
            cmd.send_receipt = &r;
            r.producer_id = v;
            r.sequence_id = w;
            r.message_id = &id;
            id.ledgerid = w;
            id.entryid = v;
            r.has_highest_sequence_id = hh;
            r.highest_sequence_id = v ^ w;
            cr_assert_eq(up_frame_put_cmd(&ref, &cmd), 0);
            cr_assert_eq(mine.len, ref.len);
            cr_assert_arr_eq(mine.data, ref.data, ref.len);
            up_buf_free(&mine);
            up_buf_free(&ref);
        }
}
