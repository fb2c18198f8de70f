/* test_features_chunking.c -- chunking.enabled: a 20 MiB message (four
 * times the broker's max_message_size) is sent in chunks, stored whole by
 * the test broker and read back byte-exact; one future. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_common.h"
#include "frame.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_plain_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(features_chunking, .init = setup, .fini = teardown, .timeout = 120);

static upulsar_producer_t *start(const char *topic, const char *chunking)
{
    const char *kv[] = {"chunking.enabled", chunking, "batching.enabled", "false", NULL};
    return ft_producer(client, "ch", topic, 0, kv);
}

/* @p n bytes of noise (incompressible) from @p seed into @p buf. */
static void fill_noise(uint8_t *buf, size_t n, uint32_t seed)
{
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
}

Test(features_chunking, twenty_mib_message_is_chunked_and_stored_whole)
{
    upulsar_producer_t *p = start("big", "true");
    size_t len = 20u << 20;
    uint8_t *big = malloc(len);
    cr_assert_not_null(big);
    fill_noise(big, len, 12345);
    upulsar_future_t *f[3];
    upulsar_property_t prop = {"kind", "big"};
    upulsar_send_opts_t o = {.partition_key = "bk", .properties = &prop, .properties_cnt = 1,
                             .event_time_ms = 42};
    cr_assert_eq(upulsar_send(p, "before", 6, NULL, &f[0]), UPULSAR_OK);
    cr_assert_eq(upulsar_send(p, big, len, &o, &f[1]), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_send(p, "after", 5, NULL, &f[2]), UPULSAR_OK);
    upulsar_msg_id_t id[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], 60000, &id[i]), UPULSAR_OK, "future %d", i);
        upulsar_future_release(f[i]);
    }
    cr_assert_lt(id[0].entry_id, id[1].entry_id);
    cr_assert_lt(id[1].entry_id, id[2].entry_id);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);

    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "big", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 3);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 1);
    cr_assert_eq(m->payload_len, len);
    cr_assert_eq(memcmp(m->payload, big, len), 0, "payload differs");
    cr_assert_str_eq(m->partition_key, "bk");
    cr_assert_eq(m->properties_cnt, 1);
    cr_assert_str_eq(m->properties[0].value, "big");
    cr_assert_eq(m->event_time, 42);
    cr_assert_eq(m->entry_id, id[1].entry_id);
    /* the id names both ends, as the official clients' ChunkMessageId, and
     * no batch position (each chunk is a plain entry) */
    cr_assert_geq(m->num_chunks, 4);
    cr_assert_eq(id[1].first_chunk_ledger_id, m->first_chunk_ledger_id);
    cr_assert_eq(id[1].first_chunk_entry_id, m->first_chunk_entry_id);
    cr_assert_lt(id[1].first_chunk_entry_id, id[1].entry_id);
    cr_assert_eq(id[1].batch_index, -1);
    cr_assert_eq(id[1].batch_size, 0);
    cr_assert_eq(id[0].first_chunk_entry_id, id[0].entry_id, "a message sent whole");
    cr_assert_eq(id[0].first_chunk_ledger_id, id[0].ledger_id);
    cr_assert_eq(memcmp(upulsar_tb_snapshot_msg(s, 0)->payload, "before", 6), 0);
    cr_assert_eq(memcmp(upulsar_tb_snapshot_msg(s, 2)->payload, "after", 5), 0);
    upulsar_tb_snapshot_free(s);
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, "big", &st), UPULSAR_OK);
    cr_assert_eq(st.messages, 3);
    free(big);
}

/* A chunked message keeps its delayed delivery and its replication
 * clusters: every chunk carries them (as the official clients copy the
 * message's metadata into each chunk), so the stored message has them. */
Test(features_chunking, chunks_keep_deliver_at_and_replicate_to)
{
    upulsar_producer_t *p = start("big-meta", "true");
    size_t len = 12u << 20;
    uint8_t *big = malloc(len);
    cr_assert_not_null(big);
    for (size_t i = 0; i < len; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    const char *clusters[] = {"east", "west"};
    upulsar_send_opts_t o = {.deliver_at_ms = 4102444800000ull, /* 2100-01-01 */
                             .replication_clusters = clusters,
                             .replication_clusters_cnt = 2};
    upulsar_future_t *f;
    cr_assert_eq(upulsar_send(p, big, len, &o, &f), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(f, 60000, NULL), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_future_release(f);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "big-meta", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 0);
    cr_assert_eq(m->payload_len, len);
    cr_assert_eq(memcmp(m->payload, big, len), 0, "payload differs");
    cr_assert_eq(m->deliver_at_time, 4102444800000ull, "deliver_at lost: %llu",
                 (unsigned long long)m->deliver_at_time);
    cr_assert_eq(m->replicate_to_cnt, 2, "replicate_to lost");
    cr_assert_str_eq(m->replicate_to[0], "east");
    cr_assert_str_eq(m->replicate_to[1], "west");
    upulsar_tb_snapshot_free(s);
    free(big);
}

Test(features_chunking, without_chunking_too_large_is_refused)
{
    upulsar_producer_t *p = start("nochunk", "false");
    size_t len = 6u << 20;
    uint8_t *big = calloc(1, len);
    cr_assert_eq(upulsar_send(p, big, len, NULL, NULL), UPULSAR_ERR__MSG_TOO_LARGE);
    free(big);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}

/* As the official clients: a message is compressed whole with the
 * producer's codec, then split; every chunk names the codec, the size
 * before compression and the compressed total, and all chunks carry one
 * publish time. Read back entry by entry through a subscription, and whole
 * through the snapshot. */
Test(features_chunking, message_is_compressed_before_it_is_split)
{
    const char *kv[] = {"chunking.enabled", "true", "batching.enabled", "false", "compression",
                        "lz4", NULL};
    upulsar_producer_t *p = ft_producer(client, "cz", "big-z", 0, kv);
    size_t len = 12u << 20, noisy = 6u << 20; /* 6 MiB noise + 6 MiB zeros */
    uint8_t *big = calloc(1, len);
    cr_assert_not_null(big);
    fill_noise(big, noisy, 777);
    upulsar_future_t *f;
    cr_assert_eq(upulsar_send(p, big, len, NULL, &f), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(f, 60000, NULL), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_future_release(f);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);

    upulsar_tb_client_t *k = NULL;
    cr_assert_eq(upulsar_tb_client_connect(upulsar_tb_url(tb), 5000, &k), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_subscribe(k, "big-z", "s", 1, 1, 0, 5000), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_flow(k, 1, 100), UPULSAR_OK);
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, "big-z", &st), UPULSAR_OK);
    cr_assert_eq(st.entries, 2, "12 MiB that compress to about 6 MiB take 2 chunks, not 3");
    uint64_t publish = 0;
    int32_t total = 0;
    for (uint64_t e = 0; e < st.entries; e++) {
        upulsar_tb_frame_t fr;
        cr_assert_eq(upulsar_tb_client_expect(k, UP_CMD(MESSAGE), 10000, &fr), UPULSAR_OK);
        up_md_t *md = pulsar__proto__message_metadata__unpack(NULL, fr.metadata_len, fr.metadata);
        cr_assert_not_null(md);
        cr_assert_eq(md->chunk_id, (int32_t)e);
        cr_assert_eq(md->num_chunks_from_msg, 2);
        cr_assert_eq(md->compression, PULSAR__PROTO__COMPRESSION_TYPE__LZ4);
        cr_assert_eq(md->uncompressed_size, len);
        cr_assert_lt((size_t)md->total_chunk_msg_size, len);
        if (e == 0) {
            publish = md->publish_time;
            total = md->total_chunk_msg_size;
        }
        cr_assert_eq(md->publish_time, publish, "chunk %llu has another publish time",
                     (unsigned long long)e);
        cr_assert_eq(md->total_chunk_msg_size, total);
        pulsar__proto__message_metadata__free_unpacked(md, NULL);
    }
    upulsar_tb_client_close(k);

    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "big-z", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 0);
    cr_assert_eq(m->payload_len, len);
    cr_assert_eq(memcmp(m->payload, big, len), 0, "payload differs");
    cr_assert_eq(m->num_chunks, 2);
    upulsar_tb_snapshot_free(s);
    free(big);
}

/* The official clients' rule: chunking and batching are not enabled
 * together (the Java client refuses such a producer; the C++ client
 * ignores chunking then). upulsar refuses it at start, naming both keys. */
Test(features_chunking, chunking_with_batching_is_refused_at_start)
{
    upulsar_conf_t *conf = ft_conf((const char *[]){"chunking.enabled", "true", NULL});
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(client, "cb", "chunk-batch", 0, conf, &p),
                 UPULSAR_ERR__INVALID_ARG);
    cr_assert_null(p);
    cr_assert_not_null(strstr(upulsar_last_error(), "batching.enabled"), "%s",
                       upulsar_last_error());
    upulsar_conf_destroy(conf);
}

/* Chunking applies to persistent topics only (as the official clients):
 * on a non-persistent topic a message over max_message_size is refused as
 * without chunking. */
Test(features_chunking, non_persistent_topics_are_not_chunked)
{
    upulsar_producer_t *p = start("non-persistent://public/default/np-big", "true");
    size_t len = 6u << 20;
    uint8_t *big = calloc(1, len);
    cr_assert_eq(upulsar_send(p, big, len, NULL, NULL), UPULSAR_ERR__MSG_TOO_LARGE);
    free(big);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}

/* A chunked message one of whose chunks the broker refuses cannot be read
 * back: its future fails with that chunk's error (not OK from the last
 * chunk's receipt), and the next chunked message names its own first
 * chunk. */
Test(features_chunking, a_refused_chunk_fails_its_message)
{
    upulsar_producer_t *p = start("rf", "true");
    size_t len = 12u << 20;
    uint8_t *big = malloc(len);
    cr_assert_not_null(big);
    fill_noise(big, len, 777);
    upulsar_future_t *f;
    upulsar_msg_id_t id1, id3;
    cr_assert_eq(upulsar_send(p, big, len, NULL, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f, 60000, &id1), UPULSAR_OK);
    upulsar_future_release(f);
    /* message 2: its chunk 0 refused */
    cr_assert_eq(upulsar_tb_fail_sends(tb, "rf", 1, PULSAR__PROTO__SERVER_ERROR__NotAllowedError),
                 UPULSAR_OK);
    cr_assert_eq(upulsar_send(p, big, len, NULL, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f, 60000, NULL), UPULSAR_ERR_NOT_ALLOWED);
    upulsar_future_release(f);
    /* message 3: fine, and its id names its own first chunk */
    cr_assert_eq(upulsar_send(p, big, len, NULL, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f, 60000, &id3), UPULSAR_OK);
    upulsar_future_release(f);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "rf", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 2);
    const upulsar_tb_msg_t *m3 = upulsar_tb_snapshot_msg(s, 1);
    cr_assert_eq(id3.entry_id, m3->entry_id);
    cr_assert_eq(id3.first_chunk_entry_id, m3->first_chunk_entry_id);
    cr_assert_gt(id3.first_chunk_entry_id, id1.entry_id);
    upulsar_tb_snapshot_free(s);
    free(big);
}
