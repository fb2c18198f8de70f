/* test_producer.c -- the partitioned producer against the test broker:
 * routing, futures, ordering, stop. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK);
    upulsar_conf_t *conf = upulsar_conf_new();
    char err[256];
    cr_assert_eq(upulsar_conf_set(conf, "service.url", upulsar_tb_url(tb), err, sizeof err),
                 UPULSAR_CONF_OK, "%s", err);
    cr_assert_eq(upulsar_client_new(conf, &client), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_conf_destroy(conf);
}

static void teardown(void)
{
    upulsar_client_destroy(client);
    upulsar_tb_stop(tb);
}

TestSuite(producer, .init = setup, .fini = teardown, .timeout = 60);

Test(producer, keyed_messages_land_on_hashed_partition_in_order)
{
    upulsar_producer_t *p;
    cr_assert_eq(upulsar_producer_start(client, "kp", "keyed", 4, NULL, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    enum { N = 2000 };
    static upulsar_future_t *fut[N];
    static char keys[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "key-%d", i % 37);
        char payload[32];
        int len = snprintf(payload, sizeof payload, "msg-%d", i);
        upulsar_send_opts_t o = {.partition_key = keys[i]};
        cr_assert_eq(upulsar_send(p, payload, (size_t)len, &o, &fut[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    for (int i = 0; i < N; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(fut[i], 10000, &id), UPULSAR_OK, "message %d", i);
        cr_assert_eq(id.partition, upulsar_producer_partition_for_key(p, keys[i]));
        upulsar_future_release(fut[i]);
    }
    /* the broker holds every message, per partition in send order */
    size_t total = 0;
    for (int part = 0; part < 4; part++) {
        char t[128];
        snprintf(t, sizeof t, "keyed-partition-%d", part);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, t, &s), UPULSAR_OK);
        int last = -1;
        for (size_t j = 0; j < upulsar_tb_snapshot_count(s); j++) {
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, j);
            int i;
            cr_assert_eq(sscanf((const char *)m->payload, "msg-%d", &i), 1);
            cr_assert_gt(i, last, "order broken on partition %d", part);
            last = i;
            cr_assert_str_eq(m->partition_key, keys[i]);
            cr_assert_eq(upulsar_producer_partition_for_key(p, keys[i]), part);
        }
        total += upulsar_tb_snapshot_count(s);
        upulsar_tb_snapshot_free(s);
    }
    cr_assert_eq(total, N);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
}
