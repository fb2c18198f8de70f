/* test_features_sizes.c -- the broker's max_message_size bounds what goes
 * on the wire: batches close before they outgrow it even when
 * batch.max.bytes is larger (a Pulsar broker closes the connection on a
 * frame beyond max_message_size + 10 KiB, and the batch would be resent
 * until send.timeout.ms), and a message whose keys and properties with its
 * payload cannot fit is refused with MSG_TOO_LARGE, nothing else affected.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

TestSuite(features_sizes, .timeout = 60);

enum { BROKER_MAX = 64 * 1024 };

/* The broker refused no frame and the producer never reconnected (a frame
 * over the limit costs both); then stop everything. */
static void stop_with_no_frame_refused(upulsar_tb_t *tb, upulsar_client_t *c,
                                       upulsar_producer_t *p)
{
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    cr_assert_eq(st.protocol_errors, 0, "the broker refused frames");
    cr_assert_eq(ft_reconnects(p), 0);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(features_sizes, batches_stay_within_the_brokers_max_message_size)
{
    upulsar_tb_t *tb = ft_broker_max(BROKER_MAX);
    upulsar_client_t *c = ft_client(tb, NULL);
    /* batches of up to 1 MiB asked for, 64 KiB allowed by the broker */
    const char *kv[] = {"batch.max.bytes", "1048576", "batch.max.messages", "100000",
                        "batch.max.delay.ms", "50", "send.timeout.ms", "10000",
                        "block.if.queue.full", "true", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, "sizes", 0, kv);
    enum { N = 2000, SIZE = 1000 };
    static upulsar_future_t *f[N];
    static char payload[SIZE];
    memset(payload, 'p', sizeof payload);
    for (int i = 0; i < N; i++)
        cr_assert_eq(upulsar_send(p, payload, SIZE, NULL, &f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    for (int i = 0; i < N; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, &id), UPULSAR_OK, "message %d: %s", i,
                     upulsar_last_error());
        cr_assert_lt((size_t)id.batch_size * SIZE, (size_t)BROKER_MAX, "a %d-message batch",
                     id.batch_size);
        upulsar_future_release(f[i]);
    }
    stop_with_no_frame_refused(tb, c, p);
}

Test(features_sizes, payload_plus_properties_beyond_the_maximum_is_refused_alone)
{
    upulsar_tb_t *tb = ft_broker_max(BROKER_MAX);
    upulsar_client_t *c = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(c, NULL, "props", 0, NULL);
    ft_send_ok(p, NULL); /* learns the broker's max_message_size */
    static char payload[BROKER_MAX - 1024], big[8192];
    memset(payload, 'p', sizeof payload);
    memset(big, 'v', sizeof big - 1);
    upulsar_property_t prop = {"big", big};
    upulsar_send_opts_t o = {.properties = &prop, .properties_cnt = 1};
    upulsar_future_t *f = NULL;
    upulsar_err_t e = upulsar_send(p, payload, sizeof payload, &o, &f);
    cr_assert_eq(e, UPULSAR_ERR__MSG_TOO_LARGE, "%s", upulsar_err_name(e));
    cr_assert_null(f);
    cr_assert(strstr(upulsar_last_error(), "max_message_size"), "%s", upulsar_last_error());
    /* without the property it fits, and the producer is unaffected */
    ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_send(p, payload, sizeof payload, NULL, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, NULL), UPULSAR_OK);
    upulsar_future_release(f);
    cr_assert_eq(ft_reconnects(p), 0);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

/* The first message of a batch with an ordering key and a long partition
 * key: the entry's metadata carries both keys (as the official clients
 * copy them from the first message), and the batch still closes before it
 * outgrows the broker's limit. */
Test(features_sizes, a_first_message_with_both_keys_keeps_its_batch_within_the_limit)
{
    upulsar_tb_t *tb = ft_broker_max(BROKER_MAX);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"batch.max.bytes", "1048576", "batch.max.messages", "100000",
                        "batch.max.delay.ms", "200", "send.timeout.ms", "10000", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, "twokeys", 0, kv);
    ft_send_ok(p, NULL); /* learns the broker's max_message_size */
    enum { N = 600, SIZE = 100, KEY = 20000 };
    static char key[KEY + 1], payload[SIZE];
    memset(key, 'k', KEY);
    memset(payload, 'p', sizeof payload);
    static upulsar_future_t *f[N];
    for (int i = 0; i < N; i++) {
        upulsar_send_opts_t o = {0};
        if (i == 0) {
            o.partition_key = key;
            o.ordering_key = "o";
            o.ordering_key_len = 1;
        }
        cr_assert_eq(upulsar_send(p, payload, SIZE, i == 0 ? &o : NULL, &f[i]), UPULSAR_OK,
                     "%s", upulsar_last_error());
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, NULL), UPULSAR_OK, "message %d: %s",
                     i, upulsar_last_error());
        upulsar_future_release(f[i]);
    }
    stop_with_no_frame_refused(tb, c, p);
}
