/* test_fidelity_checksum.c -- SEND_ERROR ChecksumError: the broker found
 * the entry damaged on its way. As the official Java client does, the
 * producer checks its own copy: intact, it sends the entry again (when
 * nothing was written behind it, so the resend cannot land behind later
 * entries); damaged (or refused again and again), the entry's messages
 * fail with CHECKSUM_ERROR. */
#include "fault_common.h"
#include "pb.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(fidelity_checksum, .init = setup, .fini = teardown, .timeout = 60);

static uint64_t stored(const char *topic)
{
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, topic, &st), UPULSAR_OK);
    return st.messages;
}

/* One message, its entry refused once with ChecksumError though the bytes
 * the producer holds are intact: sent again, stored once, the future
 * succeeds with the stored position. */
Test(fidelity_checksum, intact_entry_refused_once_is_sent_again)
{
    cr_assert_eq(upulsar_tb_fail_sends(tb, "ck", 1, UP_SERR(ChecksumError)), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "ck", "ck", 0, NULL);
    upulsar_msg_id_t id = ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    cr_assert_eq(stored("ck"), 1);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "ck", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 0)->entry_id, id.entry_id);
    upulsar_tb_snapshot_free(s);
}

/* A broker that keeps refusing the entry: after a few resends its message
 * fails with CHECKSUM_ERROR (no endless loop), nothing is stored, and the
 * producer goes on with the next message. */
Test(fidelity_checksum, entry_refused_again_and_again_fails)
{
    cr_assert_eq(upulsar_tb_fail_sends(tb, "ck2", 1000, UP_SERR(ChecksumError)), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "ck2", "ck2", 0, NULL);
    upulsar_future_t *f;
    cr_assert_eq(upulsar_send(p, "x", 1, NULL, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f, 10000, NULL), UPULSAR_ERR_CHECKSUM_ERROR);
    upulsar_future_release(f);
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, "ck2", &st), UPULSAR_OK);
    cr_assert_gt(st.send_errors, 1, "never sent again");
    cr_assert_lt(st.send_errors, 10, "sent again without end");
    cr_assert_eq(upulsar_tb_fail_sends(tb, "ck2", 0, 0), UPULSAR_OK);
    ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    cr_assert_eq(stored("ck2"), 1);
}
