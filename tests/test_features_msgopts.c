/* test_features_msgopts.c -- per-message options against the test broker:
 * delayed delivery, replication clusters, explicit sequence ids. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fault_common.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_plain_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(features_msgopts, .init = setup, .fini = teardown, .timeout = 60);

/* A producer on @p topic with @p k = @p v set (k NULL: nothing more). */
static upulsar_producer_t *start(const char *topic, const char *k, const char *v)
{
    /* a long fixed window (batch.mode=linger: adaptive batching would send
     * the first message at once, alone), so that plain messages around a
     * delayed one would share its batch if it were batched */
    const char *kv[] = {"batch.max.delay.ms", "50", "batch.mode", "linger", k, v, NULL};
    return ft_producer(client, "mo", topic, 0, kv);
}

static upulsar_err_t send_wait(upulsar_producer_t *p, const char *payload,
                               const upulsar_send_opts_t *o, upulsar_msg_id_t *id)
{
    upulsar_future_t *f;
    upulsar_err_t e = upulsar_send(p, payload, strlen(payload), o, &f);
    if (e)
        return e;
    e = upulsar_future_wait(f, 10000, id);
    upulsar_future_release(f);
    return e;
}

Test(features_msgopts, delayed_messages_are_entries_of_their_own_in_order)
{
    upulsar_producer_t *p = start("delayed", NULL, NULL);
    upulsar_future_t *f[6];
    const uint64_t at = 4102444800000ull; /* 2100-01-01 */
    upulsar_send_opts_t plain = {0};
    upulsar_send_opts_t d_at = {.deliver_at_ms = at};
    upulsar_send_opts_t d_after = {.deliver_after_ms = 60000};
    const upulsar_send_opts_t *opts[6] = {&plain, &plain, &d_at, &plain, &d_after, &plain};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t before = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    for (int i = 0; i < 6; i++) {
        char pl[8];
        snprintf(pl, sizeof pl, "m%d", i);
        cr_assert_eq(upulsar_send(p, pl, strlen(pl), opts[i], &f[i]), UPULSAR_OK);
    }
    upulsar_msg_id_t ids[6];
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], 10000, &ids[i]), UPULSAR_OK);
        upulsar_future_release(f[i]);
    }
    /* a delayed message is a plain entry, as the official clients send it
     * (never added to a batch), not a batch of one */
    for (int i = 2; i <= 4; i += 2)
        cr_assert(ids[i].batch_index == -1 && ids[i].batch_size == 0,
                  "delayed message %d: batch index %d, size %d", i, ids[i].batch_index,
                  ids[i].batch_size);
    cr_assert_neq(ids[1].entry_id, ids[2].entry_id);
    cr_assert_neq(ids[2].entry_id, ids[3].entry_id);
    cr_assert_lt(ids[1].entry_id, ids[2].entry_id);
    cr_assert_lt(ids[2].entry_id, ids[3].entry_id);
    cr_assert_lt(ids[3].entry_id, ids[4].entry_id);
    cr_assert_lt(ids[4].entry_id, ids[5].entry_id);
    cr_assert_eq(ids[0].entry_id, ids[1].entry_id, "plain messages still batch");

    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "delayed", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 6);
    for (size_t j = 0; j < 6; j++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, j);
        char want[8];
        snprintf(want, sizeof want, "m%zu", j);
        cr_assert_eq(m->payload_len, strlen(want));
        cr_assert_eq(memcmp(m->payload, want, m->payload_len), 0, "order broken at %zu", j);
        if (j == 2 || j == 4)
            cr_assert_eq(m->batch_index, -1, "delayed message %zu stored in a batch", j);
        else
            cr_assert_geq(m->batch_index, 0, "message %zu not batched", j);
        if (j == 2)
            cr_assert_eq(m->deliver_at_time, at);
        else if (j == 4) {
            /* deliver_after: the wall clock at send + 60 s; the entry's
             * publish_time is taken later still, so it bounds it from above */
            cr_assert_geq(m->deliver_at_time, before + 60000);
            cr_assert_leq(m->deliver_at_time, m->publish_time + 60000);
        } else
            cr_assert_eq(m->deliver_at_time, 0, "message %zu delayed", j);
    }
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}

Test(features_msgopts, replication_clusters_and_disable_replication)
{
    upulsar_producer_t *p = start("repl", NULL, NULL);
    const char *const cl[] = {"us-east", "eu-west"};
    upulsar_send_opts_t o1 = {.replication_clusters = cl, .replication_clusters_cnt = 2};
    upulsar_send_opts_t o2 = {.disable_replication = 1, .replication_clusters = cl,
                              .replication_clusters_cnt = 2};
    upulsar_msg_id_t id;
    cr_assert_eq(send_wait(p, "a", &o1, &id), UPULSAR_OK);
    cr_assert_eq(send_wait(p, "b", &o2, &id), UPULSAR_OK);
    cr_assert_eq(send_wait(p, "c", NULL, &id), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "repl", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 3);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 0);
    cr_assert_eq(m->replicate_to_cnt, 2);
    cr_assert_str_eq(m->replicate_to[0], "us-east");
    cr_assert_str_eq(m->replicate_to[1], "eu-west");
    m = upulsar_tb_snapshot_msg(s, 1);
    cr_assert_eq(m->replicate_to_cnt, 1);
    cr_assert_str_eq(m->replicate_to[0], "__local__");
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 2)->replicate_to_cnt, 0);
    upulsar_tb_snapshot_free(s);

    /* bad lists are refused before anything is queued */
    const char *const bad[] = {"ok", ""};
    upulsar_send_opts_t ob = {.replication_clusters = bad, .replication_clusters_cnt = 2};
    cr_assert_eq(upulsar_send(p, "x", 1, &ob, NULL), UPULSAR_ERR__INVALID_ARG);
    upulsar_send_opts_t on = {.replication_clusters_cnt = 1};
    cr_assert_eq(upulsar_send(p, "x", 1, &on, NULL), UPULSAR_ERR__INVALID_ARG);
    const char *many[UPULSAR_MAX_REPLICATION_CLUSTERS + 1];
    for (int i = 0; i <= UPULSAR_MAX_REPLICATION_CLUSTERS; i++)
        many[i] = "c";
    upulsar_send_opts_t om = {.replication_clusters = many,
                              .replication_clusters_cnt = UPULSAR_MAX_REPLICATION_CLUSTERS + 1};
    cr_assert_eq(upulsar_send(p, "x", 1, &om, NULL), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}

Test(features_msgopts, explicit_sequence_ids_must_increase)
{
    upulsar_producer_t *p = start("seq", NULL, NULL);
    upulsar_send_opts_t o = {.flags = UPULSAR_SEND_SEQUENCE_ID};
    upulsar_msg_id_t id;
    o.sequence_id = 100;
    cr_assert_eq(send_wait(p, "a", &o, &id), UPULSAR_OK);
    cr_assert_eq(send_wait(p, "b", NULL, &id), UPULSAR_OK); /* 101 */
    o.sequence_id = 101; /* already used */
    cr_assert_eq(send_wait(p, "c", &o, &id), UPULSAR_ERR__INVALID_ARG);
    o.sequence_id = 50;
    cr_assert_eq(send_wait(p, "d", &o, &id), UPULSAR_ERR__INVALID_ARG);
    o.sequence_id = 200;
    cr_assert_eq(send_wait(p, "e", &o, &id), UPULSAR_OK);
    cr_assert_eq(send_wait(p, "f", NULL, &id), UPULSAR_OK); /* 201 */
    o.sequence_id = -1;
    cr_assert_eq(upulsar_send(p, "g", 1, &o, NULL), UPULSAR_ERR__INVALID_ARG);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "seq", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 4);
    const char *want_pl[] = {"a", "b", "e", "f"};
    const uint64_t want_seq[] = {100, 101, 200, 201};
    for (size_t j = 0; j < 4; j++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, j);
        cr_assert_eq(m->payload[0], (uint8_t)want_pl[j][0]);
        cr_assert_eq(m->sequence_id, want_seq[j], "message %zu: seq %llu", j,
                     (unsigned long long)m->sequence_id);
    }
    upulsar_tb_snapshot_free(s);
    upulsar_producer_info_t pi;
    size_t n;
    cr_assert_eq(upulsar_producer_list(p, &pi, 1, &n), UPULSAR_OK);
    cr_assert_eq(pi.last_sequence_id, 201);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}

Test(features_msgopts, sequence_ids_that_would_overflow_are_refused)
{
    upulsar_producer_t *p = start("seqmax", NULL, NULL);
    upulsar_send_opts_t o = {.flags = UPULSAR_SEND_SEQUENCE_ID, .sequence_id = INT64_MAX};
    cr_assert_eq(upulsar_send(p, "x", 1, &o, NULL), UPULSAR_ERR__INVALID_ARG);
    cr_assert(strstr(upulsar_last_error(), "INT64_MAX - 1"), "%s", upulsar_last_error());
    /* the largest that leaves the next id representable */
    upulsar_msg_id_t id;
    o.sequence_id = INT64_MAX - 1;
    cr_assert_eq(send_wait(p, "a", &o, &id), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "seqmax", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 0)->sequence_id, (uint64_t)INT64_MAX - 1);
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_conf_t *cf = upulsar_conf_new();
    char err[256];
    cr_assert_neq(upulsar_conf_set(cf, "initial.sequence.id", "9223372036854775807", err,
                                   sizeof err),
                  UPULSAR_CONF_OK);
    cr_assert_eq(upulsar_conf_set(cf, "initial.sequence.id", "9223372036854775806", err,
                                  sizeof err),
                 UPULSAR_CONF_OK, "%s", err);
    upulsar_conf_destroy(cf);
}

/* Ids the producer gives itself stop at INT64_MAX: the message that would
 * take the next one fails with INVALID_ARG, naming why, instead of being
 * sent with an id a broker reads as negative (and, de-duplicating, drops
 * while it answers success). Three messages in one batch window. */
Test(features_msgopts, messages_whose_ids_would_pass_int64_max_fail)
{
    upulsar_producer_t *p = start("seqend", "initial.sequence.id", "9223372036854775805");
    upulsar_future_t *f[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(upulsar_send(p, "m", 1, NULL, &f[i]), UPULSAR_OK);
    upulsar_msg_id_t id;
    cr_assert_eq(upulsar_future_wait(f[0], 10000, &id), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f[1], 10000, &id), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f[2], 10000, &id), UPULSAR_ERR__INVALID_ARG);
    const char *why = upulsar_future_error_detail(f[2]);
    cr_assert(why && strstr(why, "INT64_MAX"), "%s", why ? why : "(none)");
    for (int i = 0; i < 3; i++)
        upulsar_future_release(f[i]);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "seqend", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 2);
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 0)->sequence_id, (uint64_t)INT64_MAX - 1);
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 1)->sequence_id, (uint64_t)INT64_MAX);
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}

Test(features_msgopts, delivery_times_past_what_pulsar_carries_are_refused)
{
    upulsar_producer_t *p = start("delaymax", NULL, NULL);
    upulsar_send_opts_t o = {.deliver_after_ms = UINT64_MAX - 1000};
    cr_assert_eq(upulsar_send(p, "x", 1, &o, NULL), UPULSAR_ERR__INVALID_ARG);
    cr_assert(strstr(upulsar_last_error(), "deliver_after_ms"), "%s", upulsar_last_error());
    o = (upulsar_send_opts_t){.deliver_at_ms = (uint64_t)INT64_MAX + 10};
    cr_assert_eq(upulsar_send(p, "x", 1, &o, NULL), UPULSAR_ERR__INVALID_ARG);
    cr_assert(strstr(upulsar_last_error(), "deliver_at_ms"), "%s", upulsar_last_error());
    /* a far but representable time goes as it is */
    upulsar_msg_id_t id;
    o = (upulsar_send_opts_t){.deliver_at_ms = (uint64_t)INT64_MAX};
    cr_assert_eq(send_wait(p, "a", &o, &id), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "delaymax", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 0)->deliver_at_time, INT64_MAX);
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}

Test(features_msgopts, a_last_sequence_id_below_minus_one_from_the_broker_means_none)
{
    cr_assert_eq(upulsar_tb_mangle_producers(tb, "lastseq", 1, UPULSAR_TB_MANGLE_LAST_SEQ),
                 UPULSAR_OK);
    upulsar_producer_t *p = start("lastseq", NULL, NULL);
    upulsar_msg_id_t id;
    cr_assert_eq(send_wait(p, "a", NULL, &id), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "lastseq", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 0)->sequence_id, 0, "seq %llu",
                 (unsigned long long)upulsar_tb_snapshot_msg(s, 0)->sequence_id);
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}

Test(features_msgopts, initial_sequence_id_is_honoured)
{
    upulsar_producer_t *p = start("initseq", "initial.sequence.id", "1000");
    upulsar_msg_id_t id;
    cr_assert_eq(send_wait(p, "a", NULL, &id), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "initseq", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 0)->sequence_id, 1001);
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}

Test(features_msgopts, producer_properties_are_sent_in_producer)
{
    upulsar_producer_t *p = start("pprops", "producer.properties", "app=billing,team=core,x=a=b");
    char md[256];
    cr_assert_eq(upulsar_tb_producer_metadata(tb, "pprops", md, sizeof md), UPULSAR_OK);
    cr_assert_str_eq(md, "app=billing,team=core,x=a=b");
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_conf_t *conf = upulsar_conf_new();
    cr_assert_eq(upulsar_conf_set(conf, "producer.properties", "a=1,,b=2", NULL, 0),
                 UPULSAR_CONF_INVALID);
    cr_assert_eq(upulsar_conf_set(conf, "producer.properties", "=1", NULL, 0),
                 UPULSAR_CONF_INVALID);
    cr_assert_eq(upulsar_conf_set(conf, "producer.properties", "novalue", NULL, 0),
                 UPULSAR_CONF_INVALID);
    cr_assert_eq(upulsar_conf_set(conf, "producer.properties", "k=", NULL, 0), UPULSAR_CONF_OK);
    upulsar_conf_destroy(conf);
}
