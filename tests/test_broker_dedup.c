/* test_broker_dedup.c -- de-duplication by producer name and sequence id:
 * resent entries are not stored again and are acknowledged with
 * ledger/entry -1, across connections, per name and per topic. */
#include <string.h>

#include "broker_common.h"

/* A raw client of @p tb with producer @p pid (@p name) on @p topic; the
 * name's last sequence id on the topic into *@p last. */
static upulsar_tb_client_t *producer_with_last(upulsar_tb_t *tb, const char *topic, uint64_t pid,
                                               const char *name, int64_t *last)
{
    upulsar_tb_client_t *c = bc_connect(tb);
    cr_assert_eq(upulsar_tb_client_create_producer(c, topic, pid, name, WAIT_MS, NULL, 0, last),
                 UPULSAR_OK, "%s", upulsar_last_error());
    return c;
}

/* Send messages first..first+n-1 as one entry; return the receipt's entry
 * id (UINT64_MAX for a duplicate) after checking the echoed ids. */
static uint64_t send_entry(upulsar_tb_client_t *c, uint64_t pid, const char *name,
                           uint64_t first, size_t n, int flags)
{
    upulsar_tb_out_msg_t m[16];
    cr_assert_leq(n, 16);
    for (size_t i = 0; i < n; i++)
        m[i] = (upulsar_tb_out_msg_t){.payload = "d", .len = 1};
    cr_assert_eq(upulsar_tb_client_send_messages(c, pid, name, first, m, n, 0, flags), UPULSAR_OK);
    upulsar_tb_frame_t f;
    const Pulsar__Proto__CommandSendReceipt *r = bc_receipt(c, &f);
    cr_assert_eq(r->producer_id, pid);
    cr_assert_eq(r->sequence_id, first);
    cr_assert_eq(r->message_id->ledgerid == UINT64_MAX, r->message_id->entryid == UINT64_MAX,
                 "a duplicate has both ids -1");
    return r->message_id->entryid;
}

/* Topic "t" holds @p entries entries of @p messages messages in all, and
 * @p duplicates resends were recognised. */
static void assert_stored(upulsar_tb_t *tb, uint64_t entries, uint64_t messages,
                          uint64_t duplicates)
{
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.entries, entries);
    cr_assert_eq(st.messages, messages);
    cr_assert_eq(st.duplicates, duplicates);
}

Test(broker_dedup, resent_message_is_acknowledged_with_minus_one_and_not_stored)
{
    upulsar_tb_t *tb = bc_broker_dedup();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    for (uint64_t s = 0; s < 3; s++)
        cr_assert_eq(send_entry(c, 1, "p", s, 1, 0), s);
    cr_assert_eq(send_entry(c, 1, "p", 1, 1, 0), UINT64_MAX);
    cr_assert_eq(send_entry(c, 1, "p", 2, 1, 0), UINT64_MAX);
    cr_assert_eq(send_entry(c, 1, "p", 3, 1, 0), 3);
    assert_stored(tb, 4, 4, 2);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_dedup, batches_without_highest_id_dedup_on_their_first_id)
{
    upulsar_tb_t *tb = bc_broker_dedup();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    /* C++ style: no highest_sequence_id; like Pulsar the broker only knows
     * the first id [0..9] -> last stored 0 */
    cr_assert_eq(send_entry(c, 1, "p", 0, 10, 0), 0);
    cr_assert_eq(send_entry(c, 1, "p", 0, 10, 0), UINT64_MAX); /* resend */
    cr_assert_eq(send_entry(c, 1, "p", 10, 10, 0), 1);
    cr_assert_eq(send_entry(c, 1, "p", 10, 10, 0), UINT64_MAX);
    assert_stored(tb, 2, 20, 2);
    upulsar_tb_client_close(c);
    /* and reports that first id as the name's last_sequence_id */
    bc_wait_no_producers(tb, "t");
    int64_t last = 0;
    c = producer_with_last(tb, "t", 1, "p", &last);
    cr_assert_eq(last, 10);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_dedup, clients_numbering_batches_not_messages_are_not_deduplicated)
{
    /* pulsar-flex gives each batch one sequence id (1, 2, 3...) whatever
     * its size: consecutive batches must all be stored */
    upulsar_tb_t *tb = bc_broker_dedup();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    for (uint64_t s = 1; s <= 8; s++)
        cr_assert_eq(send_entry(c, 1, "p", s, s == 8 ? 1 : 7, 0), s - 1);
    assert_stored(tb, 8, 50, 0);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

/* Pulsar's rule (MessageDeduplication.isDuplicateNormal): an entry is a
 * duplicate when its sequence_id, its lowest id, is not past the highest
 * id stored for the name, whatever its own highest id; the highest stored
 * is then the entry's highest_sequence_id. */
Test(broker_dedup, an_entry_is_a_duplicate_when_its_first_id_is_not_past_the_last_stored)
{
    upulsar_tb_t *tb = bc_broker_dedup();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    /* Java style: highest_sequence_id sent */
    cr_assert_eq(send_entry(c, 1, "p", 0, 10, UPULSAR_TB_SEND_HIGHEST), 0);     /* [0..9] */
    cr_assert_eq(send_entry(c, 1, "p", 0, 10, UPULSAR_TB_SEND_HIGHEST), UINT64_MAX);
    cr_assert_eq(send_entry(c, 1, "p", 5, 5, UPULSAR_TB_SEND_HIGHEST), UINT64_MAX); /* [5..9] */
    /* straddles the last stored id: dropped whole, not stored */
    cr_assert_eq(send_entry(c, 1, "p", 5, 10, UPULSAR_TB_SEND_HIGHEST), UINT64_MAX); /* [5..14] */
    cr_assert_eq(send_entry(c, 1, "p", 10, 5, UPULSAR_TB_SEND_HIGHEST), 1); /* [10..14] */
    cr_assert_eq(send_entry(c, 1, "p", 15, 1, 0), 2);
    cr_assert_eq(send_entry(c, 1, "p", 14, 1, 0), UINT64_MAX);
    assert_stored(tb, 3, 16, 4);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_dedup, state_follows_the_name_across_connections)
{
    upulsar_tb_t *tb = bc_broker_dedup();
    int64_t last = 0;
    upulsar_tb_client_t *c = producer_with_last(tb, "t", 1, "p", &last);
    cr_assert_eq(last, -1);
    cr_assert_eq(send_entry(c, 1, "p", 0, 5, UPULSAR_TB_SEND_HIGHEST), 0); /* [0..4] */
    upulsar_tb_client_close(c);
    /* wait until the broker saw the close, then come back as "p" */
    bc_wait_no_producers(tb, "t");
    c = producer_with_last(tb, "t", 8, "p", &last);
    cr_assert_eq(last, 4);
    cr_assert_eq(send_entry(c, 8, "p", 2, 3, UPULSAR_TB_SEND_HIGHEST), UINT64_MAX); /* [2..4] */
    cr_assert_eq(send_entry(c, 8, "p", 5, 1, 0), 1);
    /* another name on the same topic has its own history */
    cr_assert_eq(upulsar_tb_client_create_producer(c, "t", 9, "q", WAIT_MS, NULL, 0, &last),
                 UPULSAR_OK);
    cr_assert_eq(last, -1);
    cr_assert_eq(send_entry(c, 9, "q", 0, 1, 0), 2);
    /* the same name on another topic too */
    cr_assert_eq(upulsar_tb_client_create_producer(c, "u", 10, "p", WAIT_MS, NULL, 0, &last),
                 UPULSAR_OK);
    cr_assert_eq(last, -1);
    cr_assert_eq(send_entry(c, 10, "p", 0, 1, 0), 0);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_dedup, duplicates_leave_the_log_unchanged)
{
    upulsar_tb_t *tb = bc_broker_dedup();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    upulsar_tb_out_msg_t a = {.payload = "first", .len = 5}, b = {.payload = "second", .len = 6};
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 0, &a, 1, 0, 0), UPULSAR_OK);
    bc_receipt(c, &f);
    /* same sequence id, other content: still a duplicate, first one kept */
    cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 0, &b, 1, 0, 0), UPULSAR_OK);
    cr_assert_eq(bc_receipt(c, &f)->message_id->entryid, UINT64_MAX);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "t", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    cr_assert_eq(memcmp(upulsar_tb_snapshot_msg(s, 0)->payload, "first", 5), 0);
    upulsar_tb_snapshot_free(s);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

/* Pulsar's default: de-duplication off. A resend is stored again with a
 * new position, and PRODUCER_SUCCESS carries last_sequence_id -1 although
 * the name has stored messages before. */
Test(broker_dedup, without_deduplication_resends_are_stored_again)
{
    upulsar_tb_t *tb = bc_broker();
    int64_t last = 0;
    upulsar_tb_client_t *c = producer_with_last(tb, "t", 1, "p", &last);
    cr_assert_eq(last, -1);
    for (uint64_t s = 0; s < 3; s++)
        cr_assert_eq(send_entry(c, 1, "p", s, 1, 0), s);
    cr_assert_eq(send_entry(c, 1, "p", 1, 1, 0), 3);
    upulsar_tb_client_close(c);
    bc_wait_no_producers(tb, "t");
    c = producer_with_last(tb, "t", 1, "p", &last);
    cr_assert_eq(last, -1, "no last_sequence_id without de-duplication");
    cr_assert_eq(send_entry(c, 1, "p", 2, 1, 0), 4);
    assert_stored(tb, 5, 5, 0);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

/* The topic policy overrides the broker's setting both ways, and the
 * history stored while it was off counts once it is on. */
Test(broker_dedup, topic_policy_turns_deduplication_on_and_off)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    cr_assert_eq(send_entry(c, 1, "p", 0, 1, 0), 0);
    cr_assert_eq(send_entry(c, 1, "p", 1, 1, 0), 1);
    cr_assert_eq(upulsar_tb_set_deduplication(tb, "t", 1), UPULSAR_OK);
    cr_assert_eq(send_entry(c, 1, "p", 1, 1, 0), UINT64_MAX);
    cr_assert_eq(send_entry(c, 1, "p", 2, 1, 0), 2);
    cr_assert_eq(upulsar_tb_set_deduplication(tb, "t", -1), UPULSAR_OK);
    cr_assert_eq(send_entry(c, 1, "p", 2, 1, 0), 3);
    assert_stored(tb, 4, 4, 1);
    cr_assert_eq(upulsar_tb_set_deduplication(tb, "t", 2), UPULSAR_ERR__INVALID_ARG);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}
