/* test_broker_robustness.c -- nothing a client sends crashes the broker:
 * mutated command frames, and SENDs whose metadata and batch payload are
 * mutated behind a correct checksum (so the decoding paths run), on many
 * connections; afterwards the broker still serves. Meant to be run under
 * ASan/UBSan, where any bad access fails it.
 * UPULSAR_TEST_LABEL_CONCURRENCY (hundreds of short-lived connection threads) */
#include <stdio.h>
#include <string.h>

#include "batch.h"
#include "broker_common.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static void mutate(uint8_t *p, size_t n)
{
    int k = 1 + (int)(rnd() % 4);
    for (int i = 0; i < k && n; i++) {
        size_t at = rnd() % n;
        switch (rnd() % 3) {
        case 0: p[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
        case 1: p[at] = (uint8_t)rnd(); break;
        default: p[at] = (uint8_t)(rnd() % 2 ? 0xff : 0x00); break;
        }
    }
}

static void put_cmd(up_buf_t *b, up_cmd_t *cmd)
{
    cr_assert_eq(up_frame_put_cmd(b, cmd), 0);
}

/* The commands a session sends after CONNECT, framed back to back. */
static void session(up_buf_t *b)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandProducer p = PULSAR__PROTO__COMMAND_PRODUCER__INIT;
    cmd.type = UP_CMD(PRODUCER);
    cmd.producer = &p;
    p.topic = "fuzz";
    p.producer_id = 1;
    p.request_id = 1;
    put_cmd(b, &cmd);

    up_cmd_t c2 = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSubscribe s = PULSAR__PROTO__COMMAND_SUBSCRIBE__INIT;
    c2.type = UP_CMD(SUBSCRIBE);
    c2.subscribe = &s;
    s.topic = "fuzz";
    s.subscription = "s";
    s.consumer_id = 1;
    s.request_id = 2;
    s.has_initialposition = 1;
    s.initialposition = PULSAR__PROTO__COMMAND_SUBSCRIBE__INITIAL_POSITION__Earliest;
    put_cmd(b, &c2);

    up_cmd_t c3 = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandFlow fl = PULSAR__PROTO__COMMAND_FLOW__INIT;
    c3.type = UP_CMD(FLOW);
    c3.flow = &fl;
    fl.consumer_id = 1;
    fl.messagepermits = 1000;
    put_cmd(b, &c3);

    up_cmd_t c4 = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandAck a = PULSAR__PROTO__COMMAND_ACK__INIT;
    Pulsar__Proto__MessageIdData id = PULSAR__PROTO__MESSAGE_ID_DATA__INIT;
    Pulsar__Proto__MessageIdData *ids[1] = {&id};
    int64_t set[2] = {0, 5};
    c4.type = UP_CMD(ACK);
    c4.ack = &a;
    a.consumer_id = 1;
    a.n_message_id = 1;
    a.message_id = ids;
    id.ledgerid = 1001;
    id.entryid = 0;
    id.n_ack_set = 2;
    id.ack_set = set;
    a.has_request_id = 1;
    a.request_id = 3;
    put_cmd(b, &c4);
}

/* A SEND of a 3-message LZ4 batch for producer 1, with metadata and
 * payload mutated before the checksum is computed. */
static void mutated_send(up_buf_t *b, int mutate_md, int mutate_payload)
{
    uint8_t body[256];
    size_t bl = 0;
    for (int i = 0; i < 3; i++) {
        up_smm_t m = {.key = "k", .key_len = 1, .sequence_id = (uint64_t)i, .payload_size = 3};
        bl += up_record_put(body + bl, &m, "abc");
    }
    uint8_t packed[512];
    long cl = up_compress(UP_COMP_LZ4, body, bl, packed, sizeof packed);
    cr_assert_gt(cl, 0);
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    md.producer_name = "x";
    md.has_num_messages_in_batch = 1;
    md.num_messages_in_batch = 3;
    md.has_compression = 1;
    md.compression = PULSAR__PROTO__COMPRESSION_TYPE__LZ4;
    md.has_uncompressed_size = 1;
    md.uncompressed_size = (uint32_t)bl;
    uint8_t mdb[128];
    size_t ml = protobuf_c_message_get_packed_size(&md.base);
    protobuf_c_message_pack(&md.base, mdb);
    if (mutate_md)
        mutate(mdb, ml);
    if (mutate_payload)
        mutate(rnd() % 2 ? packed : body, rnd() % 2 ? (size_t)cl : bl);
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSend s = PULSAR__PROTO__COMMAND_SEND__INIT;
    cmd.type = UP_CMD(SEND);
    cmd.send = &s;
    s.producer_id = 1;
    s.sequence_id = rnd();
    s.has_num_messages = 1;
    s.num_messages = 3;
    struct iovec iov = {packed, (size_t)cl};
    cr_assert_eq(up_frame_put_payload_raw(b, &cmd, mdb, ml, &iov, 1, true), 0);
}

static void run_round(upulsar_tb_t *tb, int perf_round)
{
    for (int i = 0; i < 150; i++) {
        upulsar_tb_client_t *c = bc_connect(tb);
        up_buf_t b = UP_BUF_INIT;
        session(&b);
        for (int k = 0; k < 4; k++)
            mutated_send(&b, (int)(rnd() % 2), 1);
        if (i % 2 && b.len)
            mutate(b.data, b.len); /* framing and commands too */
        /* the broker may close early: a failed send is fine */
        (void)upulsar_tb_client_send_raw(c, b.data, b.len);
        up_buf_free(&b);
        /* read a little, then go away */
        upulsar_tb_frame_t f;
        for (int r = 0; r < 3 && upulsar_tb_client_read(c, perf_round ? 0 : 5, &f) == UPULSAR_OK;
             r++)
            ;
        upulsar_tb_client_close(c);
    }
}

Test(broker_robustness, mutated_frames_never_crash_the_broker)
{
    for (int perf = 0; perf < 2; perf++) {
        upulsar_tb_opts_t o = bc_opts();
        o.perf = perf;
        upulsar_tb_t *tb = bc_start(&o);
        run_round(tb, perf);
        /* still serving; stored garbage is skipped by snapshots, not fatal */
        upulsar_tb_client_t *c = bc_producer_on(tb, "after", 1, NULL);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, "fuzz", &s), UPULSAR_OK);
        upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "fuzz");
        cr_assert_eq(upulsar_tb_snapshot_count(s) > 0 || upulsar_tb_snapshot_skipped(s) > 0,
                     st.entries > 0);
        upulsar_tb_snapshot_free(s);
        upulsar_tb_client_close(c);
        upulsar_tb_stop(tb);
    }
}
