/* test_broker_chunks.c -- chunked messages as Pulsar keeps them: each chunk
 * an entry of its own with its own position, de-duplication on the last
 * chunk only, and the snapshot reading a message back whole as a consumer
 * does (chunk 0 starts it over). */
#include <string.h>

#include "broker_common.h"

/* SEND chunk @p id of @p n of message @p uuid (sequence id @p seq, whole
 * payload @p whole of @p total bytes, this chunk's slice [off, off+len)). */
static void send_chunk(upulsar_tb_client_t *c, uint64_t seq, const char *uuid, int id, int n,
                       const char *whole, size_t total, size_t off, size_t len)
{
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    md.producer_name = "p";
    md.sequence_id = seq;
    md.publish_time = 1;
    md.uuid = (char *)uuid;
    md.has_chunk_id = md.has_num_chunks_from_msg = md.has_total_chunk_msg_size = 1;
    md.chunk_id = id;
    md.num_chunks_from_msg = n;
    md.total_chunk_msg_size = (int32_t)total;
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSend s = PULSAR__PROTO__COMMAND_SEND__INIT;
    cmd.type = UP_CMD(SEND);
    cmd.send = &s;
    s.producer_id = 1;
    s.sequence_id = seq;
    s.has_num_messages = 1;
    s.num_messages = 1;
    s.has_is_chunk = 1;
    s.is_chunk = 1;
    up_buf_t fb = UP_BUF_INIT;
    struct iovec iov = {(void *)(whole + off), len};
    cr_assert_eq(up_frame_put_payload(&fb, &cmd, &md, &iov, 1, true), 0);
    cr_assert_eq(upulsar_tb_client_send_raw(c, fb.data, fb.len), UPULSAR_OK);
    up_buf_free(&fb);
}

static const char WHOLE[] = "0123456789abcdefghijKLMNOPQRST"; /* 30 bytes, 3 chunks of 10 */

/* Send chunk @p id (of 3) of WHOLE as message @p seq and read its receipt;
 * returns its entry id (UINT64_MAX: acknowledged as a duplicate). */
static uint64_t send_part(upulsar_tb_client_t *c, uint64_t seq, const char *uuid, int id)
{
    upulsar_tb_frame_t f;
    send_chunk(c, seq, uuid, id, 3, WHOLE, 30, (size_t)id * 10, 10);
    const Pulsar__Proto__CommandSendReceipt *r = bc_receipt(c, &f);
    cr_assert_eq(r->sequence_id, seq);
    return r->message_id->entryid;
}

/* Send the 3 chunks of WHOLE as message @p seq; returns the last chunk's
 * entry id (UINT64_MAX: acknowledged as a duplicate) and the first's in
 * *@p first. */
static uint64_t send_whole(upulsar_tb_client_t *c, uint64_t seq, const char *uuid, uint64_t *first)
{
    uint64_t e = 0;
    for (int i = 0; i < 3; i++) {
        e = send_part(c, seq, uuid, i);
        if (i == 0 && first)
            *first = e;
    }
    return e;
}

Test(broker_chunks, each_chunk_is_an_entry_and_the_snapshot_reads_the_message_whole)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    uint64_t first = 99;
    cr_assert_eq(send_whole(c, 0, "p-0", &first), 2);
    cr_assert_eq(first, 0);
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.entries, 3);
    cr_assert_eq(st.messages, 1, "a chunked message counts once");
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "t", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 0);
    cr_assert_eq(m->payload_len, 30);
    cr_assert_eq(memcmp(m->payload, WHOLE, 30), 0);
    cr_assert_eq(m->num_chunks, 3);
    cr_assert_eq(m->entry_id, 2);
    cr_assert_eq(m->first_chunk_entry_id, 0);
    cr_assert_eq(m->first_chunk_ledger_id, m->ledger_id);
    cr_assert_eq(upulsar_tb_snapshot_skipped(s), 0);
    upulsar_tb_snapshot_free(s);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

/* As Pulsar's MessageDeduplication: chunks before the last are always
 * stored, the last one is checked; a resent message therefore leaves its
 * first chunks in the log again, and the snapshot (as a consumer) sees the
 * message once. */
Test(broker_chunks, deduplication_checks_only_the_last_chunk)
{
    upulsar_tb_t *tb = bc_broker_dedup();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    uint64_t first = 0;
    cr_assert_eq(send_whole(c, 0, "p-0", &first), 2);
    cr_assert_eq(send_whole(c, 0, "p-0", &first), UINT64_MAX);
    cr_assert_eq(first, 3, "the resent first chunk is stored again");
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.entries, 5);
    cr_assert_eq(st.duplicates, 1);
    cr_assert_eq(send_whole(c, 1, "p-1", &first), 7);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "t", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 2);
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 0)->sequence_id, 0);
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 1)->sequence_id, 1);
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 1)->first_chunk_entry_id, 5);
    upulsar_tb_snapshot_free(s);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

/* A message whose chunks were cut off (a connection lost after chunk 1) and
 * then sent again from chunk 0 is read back once, from its second start;
 * chunks out of order abandon a message. */
Test(broker_chunks, chunk_zero_starts_a_message_over_and_gaps_abandon_it)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    send_part(c, 0, "p-0", 0);
    send_part(c, 0, "p-0", 1);
    uint64_t first = 0;
    cr_assert_eq(send_whole(c, 0, "p-0", &first), 4);
    /* message 1: chunk 0 then chunk 2 (1 missing): never whole */
    send_part(c, 1, "p-1", 0);
    send_part(c, 1, "p-1", 2);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "t", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 0);
    cr_assert_eq(m->first_chunk_entry_id, 2);
    cr_assert_eq(m->entry_id, 4);
    cr_assert_eq(memcmp(m->payload, WHOLE, 30), 0);
    upulsar_tb_snapshot_free(s);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

/* A chunk sent again after its receipt was lost (0, 1, 1, 2 in the log) is
 * skipped, as Pulsar's consumers skip a duplicated chunk: the message is
 * read back whole, once. */
Test(broker_chunks, a_chunk_sent_twice_is_skipped)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    send_part(c, 0, "p-0", 0);
    send_part(c, 0, "p-0", 1);
    send_part(c, 0, "p-0", 1);
    send_part(c, 0, "p-0", 2);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "t", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1, "message dropped by the snapshot");
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 0);
    cr_assert_eq(m->payload_len, 30);
    cr_assert_eq(memcmp(m->payload, WHOLE, 30), 0);
    cr_assert_eq(m->first_chunk_entry_id, 0);
    cr_assert_eq(m->entry_id, 3);
    upulsar_tb_snapshot_free(s);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}
