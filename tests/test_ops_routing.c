/* test_ops_routing.c -- where a message goes and what it carries:
 * explicit partitions (UPULSAR_SEND_PARTITION), a router callback
 * (upulsar_conf_set_router), null values (UPULSAR_SEND_NULL_VALUE) and
 * binary keys (partition_key_bytes), each checked in the broker's log;
 * and the growth of upulsar_send_opts_t: a program built against the 0.2
 * header (whose struct ends at disable_replication) still sends, and
 * options this library does not know are refused unless unset.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_common.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(ops_routing, .init = setup, .fini = teardown, .timeout = 120);

#define PARTS 4
#define N 40

static upulsar_producer_t *start_on(const char *topic, int parts, upulsar_conf_t *conf)
{
    if (parts)
        cr_assert_eq(upulsar_tb_set_partitions(tb, topic, parts), UPULSAR_OK);
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(client, NULL, topic, parts, conf, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    return p;
}

static upulsar_tb_snapshot_t *snap(const char *topic, int part)
{
    char t[160];
    if (part >= 0)
        snprintf(t, sizeof t, "%s-partition-%d", topic, part);
    else
        snprintf(t, sizeof t, "%s", topic);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, t, &s), UPULSAR_OK);
    return s;
}

/* Every message i in 0..n with want[i] == part is stored on @p part, once,
 * in send order, with payload "m<i>"; nothing else is. */
static void check_partition_log(const char *topic, int part, int n, const int *want)
{
    upulsar_tb_snapshot_t *s = snap(topic, part);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        if (want[i] != part)
            continue;
        char pl[16];
        snprintf(pl, sizeof pl, "m%d", i);
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, k++);
        cr_assert(m, "message %d missing on partition %d", i, part);
        cr_assert_eq(m->payload_len, strlen(pl));
        cr_assert_eq(memcmp(m->payload, pl, m->payload_len), 0,
                     "partition %d: message %zu is not %s", part, k - 1, pl);
    }
    cr_assert_eq(upulsar_tb_snapshot_count(s), k, "partition %d holds more than was sent there",
                 part);
    upulsar_tb_snapshot_free(s);
}

static void send_all(upulsar_producer_t *p, int n, upulsar_send_opts_t *o, int *got)
{
    upulsar_future_t *f[N];
    for (int i = 0; i < n; i++) {
        char pl[16];
        snprintf(pl, sizeof pl, "m%d", i);
        cr_assert_eq(upulsar_send(p, pl, strlen(pl), &o[i], &f[i]), UPULSAR_OK, "%d: %s", i,
                     upulsar_last_error());
    }
    for (int i = 0; i < n; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, &id), UPULSAR_OK, "%d: %s", i,
                     upulsar_last_error());
        upulsar_future_release(f[i]);
        got[i] = id.partition;
    }
}

Test(ops_routing, explicit_partition_sends_are_stored_on_that_partition_in_order)
{
    upulsar_producer_t *p = start_on("rt-explicit", PARTS, NULL);
    upulsar_send_opts_t o[N];
    int want[N], got[N];
    char keys[N][16];
    for (int i = 0; i < N; i++) {
        /* the key would route elsewhere: the explicit partition wins */
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        want[i] = (i * 3 + 1) % PARTS;
        if (i % 2 && upulsar_producer_partition_for_key(p, keys[i]) == want[i])
            want[i] = (want[i] + 1) % PARTS;
        o[i] = (upulsar_send_opts_t){.flags = UPULSAR_SEND_PARTITION, .partition = want[i],
                                     .partition_key = i % 2 ? keys[i] : NULL};
    }
    send_all(p, N, o, got);
    for (int i = 0; i < N; i++)
        cr_assert_eq(got[i], want[i], "message %d", i);
    for (int g = 0; g < PARTS; g++)
        check_partition_log("rt-explicit", g, N, want);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}

Test(ops_routing, out_of_range_partitions_are_refused_and_nothing_is_queued)
{
    upulsar_producer_t *p = start_on("rt-range", PARTS, NULL);
    int bad[] = {PARTS, -1, 1 << 30};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        upulsar_send_opts_t o = {.flags = UPULSAR_SEND_PARTITION, .partition = bad[i]};
        upulsar_future_t *f = (upulsar_future_t *)&o; /* must be set to NULL */
        cr_assert_eq(upulsar_send(p, "x", 1, &o, &f), UPULSAR_ERR__INVALID_ARG);
        cr_assert_null(f);
        cr_assert(strstr(upulsar_last_error(), "out of range"), "%s", upulsar_last_error());
    }
    /* without the flag the field is not read: 0 does not mean partition 0 */
    int got[N], want[N];
    upulsar_send_opts_t o[N];
    for (int i = 0; i < N; i++) {
        o[i] = (upulsar_send_opts_t){.partition = PARTS + 5};
        want[i] = -1;
    }
    send_all(p, N, o, got);
    cr_assert_eq(upulsar_producer_flush(p, FT_WAIT_MS), UPULSAR_OK);
    size_t stored = 0;
    for (int g = 0; g < PARTS; g++) {
        upulsar_tb_snapshot_t *s = snap("rt-range", g);
        stored += upulsar_tb_snapshot_count(s);
        upulsar_tb_snapshot_free(s);
    }
    cr_assert_eq(stored, (size_t)N, "only the accepted messages are stored");
    (void)want;
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}

typedef struct {
    _Atomic int calls;
    int bad_count; /* partitions argument differed from the topic's */
} router_state_t;

/* Payload "m<i>": partition (i / 2) % partitions, whatever the key; a
 * payload starting with 'z' gets an answer out of range. */
static int by_payload(const upulsar_route_msg_t *m, int partitions, void *opaque)
{
    router_state_t *st = opaque;
    atomic_fetch_add(&st->calls, 1);
    if (partitions != PARTS)
        st->bad_count++;
    const char *s = m->payload;
    if (m->len && s[0] == 'z')
        return partitions + 3;
    int i = atoi(s + 1);
    return (i / 2) % partitions;
}

Test(ops_routing, a_routers_choice_is_honoured_for_keyed_and_keyless_messages)
{
    router_state_t st = {0};
    upulsar_conf_t *conf = upulsar_conf_new();
    cr_assert_eq(upulsar_conf_set_router(conf, by_payload, &st), UPULSAR_OK);
    upulsar_producer_t *p = start_on("rt-router", PARTS, conf);
    upulsar_conf_destroy(conf);
    upulsar_send_opts_t o[N];
    int want[N], got[N];
    char keys[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "key%d", i);
        o[i] = (upulsar_send_opts_t){.partition_key = i % 3 ? keys[i] : NULL};
        want[i] = (i / 2) % PARTS;
    }
    send_all(p, N, o, got);
    cr_assert_eq(atomic_load(&st.calls), N, "the router sees every message");
    cr_assert_eq(st.bad_count, 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(got[i], want[i], "message %d", i);
    for (int g = 0; g < PARTS; g++)
        check_partition_log("rt-router", g, N, want);
    /* an answer out of range refuses the send */
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(p, "zz", 2, NULL, &f), UPULSAR_ERR__INVALID_ARG);
    cr_assert_null(f);
    /* an explicit partition does not ask the router */
    int before = atomic_load(&st.calls);
    upulsar_send_opts_t ex = {.flags = UPULSAR_SEND_PARTITION, .partition = 3};
    cr_assert_eq(upulsar_send(p, "zz", 2, &ex, &f), UPULSAR_OK);
    upulsar_msg_id_t id;
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, &id), UPULSAR_OK);
    upulsar_future_release(f);
    cr_assert_eq(id.partition, 3);
    cr_assert_eq(atomic_load(&st.calls), before);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}

Test(ops_routing, null_values_arrive_with_null_value_set_and_an_empty_payload)
{
    upulsar_producer_t *p = start_on("rt-null", 0, NULL);
    const char *key = "compacted-key";
    upulsar_send_opts_t tomb = {.partition_key = key, .flags = UPULSAR_SEND_NULL_VALUE};
    upulsar_send_opts_t empty = {.partition_key = key};
    upulsar_future_t *f[3];
    cr_assert_eq(upulsar_send(p, "v1", 2, &empty, &f[0]), UPULSAR_OK);
    cr_assert_eq(upulsar_send(p, NULL, 0, &tomb, &f[1]), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_send(p, "", 0, &empty, &f[2]), UPULSAR_OK);
    /* a null value has no payload */
    upulsar_future_t *g = NULL;
    cr_assert_eq(upulsar_send(p, "x", 1, &tomb, &g), UPULSAR_ERR__INVALID_ARG);
    cr_assert_null(g);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, NULL), UPULSAR_OK);
        upulsar_future_release(f[i]);
    }
    upulsar_tb_snapshot_t *s = snap("rt-null", -1);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 3);
    const upulsar_tb_msg_t *m0 = upulsar_tb_snapshot_msg(s, 0), *m1 = upulsar_tb_snapshot_msg(s, 1),
                           *m2 = upulsar_tb_snapshot_msg(s, 2);
    cr_assert(m0->payload_len == 2 && !m0->null_value);
    cr_assert_eq(m1->payload_len, 0);
    cr_assert_eq(m1->null_value, 1, "the tombstone carries null_value");
    cr_assert_str_eq(m1->partition_key, key);
    cr_assert_eq(m2->payload_len, 0);
    cr_assert_eq(m2->null_value, 0, "an empty value is not a null value");
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}

/* The test's own base64 (RFC 4648, with padding). */
static void b64(const uint8_t *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t a = in[i], b = i + 1 < n ? in[i + 1] : 0, c = i + 2 < n ? in[i + 2] : 0;
        uint32_t v = a << 16 | b << 8 | c;
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

static void binary_keys_with(const char *scheme, const char *topic)
{
    upulsar_conf_t *conf = upulsar_conf_new();
    cr_assert_eq(upulsar_conf_set(conf, "hashing.scheme", scheme, NULL, 0), UPULSAR_CONF_OK);
    upulsar_producer_t *p = start_on(topic, PARTS, conf);
    upulsar_conf_destroy(conf);
    enum { K = 24 };
    static uint8_t keys[K][UPULSAR_MAX_KEY_BYTES_BINARY + 1];
    static char text[K][UPULSAR_MAX_KEY_BYTES + 1];
    size_t klen[K];
    upulsar_send_opts_t o[K];
    int got[K], want[K];
    for (int i = 0; i < K; i++) {
        /* lengths 0..20 (every padding case), two long ones and the
         * longest; bytes include 0 and 0xff */
        klen[i] = i < 21 ? (size_t)i : i == 21 ? 1000 : i == 22 ? 4097 : UPULSAR_MAX_KEY_BYTES_BINARY;
        for (size_t j = 0; j < klen[i]; j++)
            keys[i][j] = (uint8_t)(j * 31 + (size_t)i * 7 + (j % 5 == 0 ? 0 : 200));
        b64(keys[i], klen[i], text[i]);
        o[i] = (upulsar_send_opts_t){.partition_key_bytes = keys[i],
                                     .partition_key_bytes_len = klen[i]};
        /* routed as its base64 text given as a text key */
        want[i] = upulsar_producer_partition_for_key(p, text[i]);
    }
    upulsar_future_t *f[K];
    for (int i = 0; i < K; i++) {
        char pl[16];
        snprintf(pl, sizeof pl, "m%d", i);
        cr_assert_eq(upulsar_send(p, pl, strlen(pl), &o[i], &f[i]), UPULSAR_OK, "%d: %s", i,
                     upulsar_last_error());
    }
    for (int i = 0; i < K; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, &id), UPULSAR_OK, "%d: %s", i,
                     upulsar_last_error());
        upulsar_future_release(f[i]);
        got[i] = id.partition;
        cr_assert_eq(got[i], want[i], "%s: key %d (%zu bytes) on partition %d, its base64 text "
                     "routes to %d", scheme, i, klen[i], got[i], want[i]);
    }
    for (int g = 0; g < PARTS; g++) {
        upulsar_tb_snapshot_t *s = snap(topic, g);
        size_t k = 0;
        for (int i = 0; i < K; i++) {
            if (want[i] != g)
                continue;
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, k++);
            cr_assert(m, "key %d missing", i);
            char pl[16];
            snprintf(pl, sizeof pl, "m%d", i);
            cr_assert(m->payload_len == strlen(pl) && memcmp(m->payload, pl, m->payload_len) == 0,
                      "partition %d out of order at key %d", g, i);
            cr_assert_not_null(m->partition_key);
            cr_assert_str_eq(m->partition_key, text[i], "key %d", i);
            cr_assert_eq(m->partition_key_b64_encoded, 1, "key %d", i);
            /* the entry's key (its first message's) is flagged too */
            if (m->entry_partition_key)
                cr_assert_eq(m->entry_partition_key_b64_encoded, 1, "key %d: entry key %s", i,
                             m->entry_partition_key);
        }
        cr_assert_eq(upulsar_tb_snapshot_count(s), k);
        upulsar_tb_snapshot_free(s);
    }
    /* a text key is not flagged */
    upulsar_send_opts_t tk = {.partition_key = "plain"};
    upulsar_send_opts_t both = {.partition_key = "plain", .partition_key_bytes = keys[1],
                                .partition_key_bytes_len = 1};
    upulsar_send_opts_t big = {.partition_key_bytes = keys[0],
                               .partition_key_bytes_len = UPULSAR_MAX_KEY_BYTES_BINARY + 1};
    upulsar_future_t *h = NULL;
    cr_assert_eq(upulsar_send(p, "b", 1, &both, &h), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_send(p, "b", 1, &big, &h), UPULSAR_ERR__INVALID_ARG);
    cr_assert_null(h);
    cr_assert_eq(upulsar_send(p, "t", 1, &tk, &h), UPULSAR_OK);
    upulsar_msg_id_t id;
    cr_assert_eq(upulsar_future_wait(h, FT_WAIT_MS, &id), UPULSAR_OK);
    upulsar_future_release(h);
    upulsar_tb_snapshot_t *s = snap(topic, id.partition);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, upulsar_tb_snapshot_count(s) - 1);
    cr_assert_str_eq(m->partition_key, "plain");
    cr_assert_eq(m->partition_key_b64_encoded, 0);
    cr_assert_eq(m->entry_partition_key_b64_encoded, 0);
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}

Test(ops_routing, binary_keys_arrive_base64_with_the_flag_and_route_as_their_base64_text)
{
    binary_keys_with("java_string", "rt-bin-java");
    binary_keys_with("murmur3_32", "rt-bin-murmur");
}

Test(ops_routing, a_binary_key_of_a_chunked_message_keeps_its_flag)
{
    const char *kv[] = {"chunking.enabled", "true", "batching.enabled", "false", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, "rt-bin-chunk", 0, kv);
    /* over the broker's max_message_size (5 MiB by default): two chunks */
    enum { SIZE = 6 << 20 };
    char *payload = malloc(SIZE);
    cr_assert(payload);
    for (size_t i = 0; i < SIZE; i++)
        payload[i] = (char)(i * 13);
    const uint8_t key[] = {0, 1, 2, 0xfe, 0xff};
    char text[16];
    b64(key, sizeof key, text);
    upulsar_send_opts_t o = {.partition_key_bytes = key, .partition_key_bytes_len = sizeof key};
    upulsar_future_t *f;
    cr_assert_eq(upulsar_send(p, payload, SIZE, &o, &f), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, NULL), UPULSAR_OK, "%s",
                 upulsar_future_error_detail(f));
    upulsar_future_release(f);
    upulsar_tb_snapshot_t *s = snap("rt-bin-chunk", -1);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, 0);
    cr_assert_gt(m->num_chunks, 1);
    cr_assert(m->payload_len == SIZE && memcmp(m->payload, payload, SIZE) == 0);
    cr_assert_str_eq(m->partition_key, text);
    cr_assert_eq(m->partition_key_b64_encoded, 1);
    upulsar_tb_snapshot_free(s);
    free(payload);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}

/* ---- growth of upulsar_send_opts_t ---- */

static _Atomic int old_cb_calls;
static void old_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)id;
    if (err == UPULSAR_OK && opaque == (void *)&old_cb_calls)
        atomic_fetch_add(&old_cb_calls, 1);
}

Test(ops_routing, options_of_the_0_2_layout_are_read_no_further_than_that_layout)
{
    upulsar_producer_t *p = start_on("rt-layout", 0, NULL);
    /* exactly the bytes a 0.2 program's struct has before its padding:
     * under AddressSanitizer a read past them fails the test */
    size_t n0 = UPULSAR_SEND_OPTS_SIZE_0_2;
    cr_assert_lt(n0, sizeof(upulsar_send_opts_t));
    upulsar_send_opts_t full = {.partition_key = "old-key", .cb = old_cb, .opaque = &old_cb_calls};
    void *old = malloc(n0);
    cr_assert(old);
    memcpy(old, &full, n0);
    upulsar_future_t *f = NULL;
    cr_assert_eq((upulsar_send)(p, "old", 3, old, &f), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, NULL), UPULSAR_OK);
    upulsar_future_release(f);
    upulsar_msg_t msgs[2] = {{"old2", 4, old}, {"old3", 4, old}};
    size_t acc = 0;
    cr_assert_eq((upulsar_send_many)(p, msgs, 2, NULL, &acc), UPULSAR_OK);
    cr_assert_eq(acc, 2);
    /* a flag that needs a field the old layout lacks */
    int fl = UPULSAR_SEND_PARTITION;
    memcpy((char *)old + offsetof(upulsar_send_opts_t, flags), &fl, sizeof fl);
    cr_assert_eq((upulsar_send)(p, "x", 1, old, &f), UPULSAR_ERR__INVALID_ARG);
    cr_assert_null(f);
    free(old);
    /* too small for any layout */
    cr_assert_eq(upulsar_send_sized(p, "x", 1, &full, &f, n0 - 1), UPULSAR_ERR__INVALID_ARG);
    /* a newer program's options: unset fields beyond ours are fine, a set
     * one is refused */
    struct {
        upulsar_send_opts_t o;
        uint64_t newer;
    } nw = {.o = {.partition_key = "old-key"}};
    cr_assert_eq(upulsar_send_sized(p, "new", 3, &nw.o, &f, sizeof nw), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, NULL), UPULSAR_OK);
    upulsar_future_release(f);
    nw.newer = 1;
    f = (upulsar_future_t *)&nw;
    cr_assert_eq(upulsar_send_sized(p, "x", 1, &nw.o, &f, sizeof nw), UPULSAR_ERR__INVALID_ARG);
    cr_assert_null(f);
    /* the macros take what a 0.2 program passes to the functions, also a
     * compound literal with commas of its own (one argument, not several) */
    cr_assert_eq(upulsar_send(p, "lit", 3,
                              &(upulsar_send_opts_t){.partition_key = "old-key", .cb = old_cb,
                                                     .opaque = &old_cb_calls},
                              NULL),
                 UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_send_many(p,
                                   (upulsar_msg_t[]){{"lit2", 4, NULL}, {"lit3", 4, NULL}}, 2,
                                   NULL, &acc),
                 UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_producer_flush(p, FT_WAIT_MS), UPULSAR_OK);
    cr_assert_eq(atomic_load(&old_cb_calls), 4, "the 0.2 options' callback ran for each");
    upulsar_tb_snapshot_t *s = snap("rt-layout", -1);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 7, "exactly the seven accepted messages");
    const char *want[] = {"old", "old2", "old3", "new", "lit", "lit2", "lit3"};
    for (size_t i = 0; i < 7; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, i);
        cr_assert(m->payload_len == strlen(want[i]) &&
                  memcmp(m->payload, want[i], m->payload_len) == 0);
        if (i < 5) /* lit2 and lit3 have no options */
            cr_assert_str_eq(m->partition_key, "old-key");
    }
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
}
