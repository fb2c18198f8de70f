/* test_edges_sizes.c -- the sizes a user can pass to upulsar_send(): every
 * accepted message is stored whole (its exact payload, key, ordering key and
 * properties), every other one is refused at upulsar_send() with an error
 * naming the limit, and a refused or oversized message never takes another
 * message down with it.
 *  - keys up to 65535 bytes in every batcher, unbatched and chunked (a batch
 *    whose metadata outgrew a fixed head room failed whole);
 *  - entries at the broker's max_message_size: metadata counts too;
 *  - payloads beyond what Pulsar can carry (4 GiB + 100 bytes was narrowed
 *    to 100 bytes) and lengths near SIZE_MAX (overflowed the size check);
 *  - a property block written across the ring's wrap (its temporary copy
 *    could fail and leave stale bytes).
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <stdint.h>
#include <sys/mman.h>

#include "fault_common.h"

TestSuite(edges_sizes, .timeout = 120);

/* ---- allocation failures on the sending thread (release builds) -------- */

/* While fail_allocs is set on a thread, every malloc() of that thread fails
 * and is counted. The sanitizers bring their own allocator, so this stand-in
 * is only compiled without them. */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define ES_CAN_FAIL_ALLOCS 1
extern void *__libc_malloc(size_t n);
static _Thread_local int fail_allocs;
static _Thread_local unsigned failed_allocs;
void *malloc(size_t n)
{
    if (fail_allocs) {
        failed_allocs++;
        return NULL;
    }
    return __libc_malloc(n);
}
#else
#define ES_CAN_FAIL_ALLOCS 0
static _Thread_local int fail_allocs;
static _Thread_local unsigned failed_allocs;
#endif

/* ---- helpers ------------------------------------------------------------ */

static void fill(void *dst, size_t n, uint32_t seed, int printable)
{
    uint8_t *p = dst;
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = printable ? (uint8_t)('a' + x % 26) : (uint8_t)(x >> 8);
    }
}

/* A NUL-terminated string of @p n printable bytes (caller frees). */
static char *str_of(size_t n, uint32_t seed)
{
    char *s = malloc(n + 1);
    cr_assert_not_null(s);
    fill(s, n, seed, 1);
    s[n] = '\0';
    return s;
}

/* One message as sent, to check against the broker's log. */
typedef struct es_msg {
    const void *payload;
    size_t len;
    const char *key;
    const void *okey;
    size_t okey_len;
    const upulsar_property_t *props;
    size_t nprops;
} es_msg_t;

/* The log of @p topic holds exactly @p want[0..n), in order. */
static void expect_log(upulsar_tb_t *tb, const char *topic, const es_msg_t *want, size_t n)
{
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_tb_snapshot_skipped(s), 0, "%s: entries that do not decode", topic);
    cr_assert_eq(upulsar_tb_snapshot_count(s), n, "%s: %zu stored, %zu sent", topic,
                 upulsar_tb_snapshot_count(s), n);
    for (size_t i = 0; i < n; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, i);
        const es_msg_t *w = &want[i];
        cr_assert_eq(m->payload_len, w->len, "%s #%zu: payload of %zu bytes, sent %zu", topic, i,
                     m->payload_len, w->len);
        cr_assert(w->len == 0 || memcmp(m->payload, w->payload, w->len) == 0,
                  "%s #%zu: payload differs", topic, i);
        if (w->key) {
            cr_assert_not_null(m->partition_key, "%s #%zu: key lost", topic, i);
            cr_assert_str_eq(m->partition_key, w->key, "%s #%zu: key differs", topic, i);
        } else {
            cr_assert_null(m->partition_key, "%s #%zu: key where none was sent", topic, i);
        }
        if (w->okey) {
            cr_assert_not_null(m->ordering_key, "%s #%zu: ordering key lost", topic, i);
            cr_assert_eq(m->ordering_key_len, w->okey_len, "%s #%zu", topic, i);
            cr_assert_eq(memcmp(m->ordering_key, w->okey, w->okey_len), 0,
                         "%s #%zu: ordering key differs", topic, i);
        } else {
            cr_assert_null(m->ordering_key, "%s #%zu", topic, i);
        }
        cr_assert_eq(m->properties_cnt, w->nprops, "%s #%zu: %zu properties, sent %zu", topic,
                     i, m->properties_cnt, w->nprops);
        for (size_t k = 0; k < w->nprops; k++) {
            cr_assert_str_eq(m->properties[k].key, w->props[k].key, "%s #%zu prop %zu", topic, i,
                             k);
            cr_assert_str_eq(m->properties[k].value, w->props[k].value, "%s #%zu prop %zu",
                             topic, i, k);
        }
    }
    upulsar_tb_snapshot_free(s);
}

static void send_ok(upulsar_producer_t *p, const es_msg_t *m, upulsar_future_t **f)
{
    upulsar_send_opts_t o = {.partition_key = m->key,
                             .ordering_key = m->okey,
                             .ordering_key_len = m->okey_len,
                             .properties = m->props,
                             .properties_cnt = m->nprops};
    cr_assert_eq(upulsar_send(p, m->payload, m->len, &o, f), UPULSAR_OK, "%s",
                 upulsar_last_error());
}

static void wait_all_ok(upulsar_future_t **f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        upulsar_err_t e = upulsar_future_wait(f[i], FT_WAIT_MS, NULL);
        cr_assert_eq(e, UPULSAR_OK, "message %zu: %s", i, upulsar_err_name(e));
        upulsar_future_release(f[i]);
    }
}

/* ---- item: long keys ------------------------------------------------------- */

Test(edges_sizes, a_1000_byte_key_does_not_fail_its_batch)
{
    upulsar_tb_t *tb = ft_broker_max(0);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"batch.max.delay.ms", "50", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, "key1000", 0, kv);
    char *key = str_of(1000, 1);
    enum { N = 100 };
    static char payload[N][16];
    es_msg_t m[N];
    upulsar_future_t *f[N];
    for (int i = 0; i < N; i++) {
        snprintf(payload[i], sizeof payload[i], "m%03d", i);
        m[i] = (es_msg_t){.payload = payload[i], .len = strlen(payload[i]),
                          .key = i == 0 ? key : NULL};
        send_ok(p, &m[i], &f[i]);
    }
    wait_all_ok(f, N);
    expect_log(tb, "key1000", m, N);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
    free(key);
}

/* Keys and ordering keys of the protocol's largest size, with properties
 * and keyless batch-mates, in one batcher configuration. */
static void largest_keys_in(const char *topic, const char *const *kv, size_t big_len)
{
    enum { MAX = 1 << 20 };
    upulsar_tb_t *tb = ft_broker_max(MAX);
    upulsar_client_t *c = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(c, NULL, topic, 0, kv);
    char *key = str_of(65535, 2), *okey = str_of(65535, 3), *pv = str_of(700, 4);
    char *small = malloc(64), *big = malloc(big_len);
    cr_assert(small && big);
    fill(small, 64, 5, 0);
    fill(big, big_len, 6, 0);
    upulsar_property_t props[2] = {{"p1", pv}, {"p2", "v"}};
    es_msg_t m[] = {
        {small, 10, NULL, NULL, 0, NULL, 0},
        {small, 20, key, NULL, 0, props, 2},
        {small, 30, NULL, NULL, 0, NULL, 0},
        {small, 40, NULL, okey, 65535, NULL, 0},
        {big, big_len, key, okey, 65535, props, 2},
        {small, 50, "short", NULL, 0, NULL, 0},
        {small, 60, key, okey, 65535, props, 1},
    };
    size_t n = sizeof m / sizeof m[0];
    upulsar_future_t *f[sizeof m / sizeof m[0]];
    for (size_t i = 0; i < n; i++)
        send_ok(p, &m[i], &f[i]);
    wait_all_ok(f, n);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    /* key_based batching stores per key: compare as a multiset by payload
     * length (all distinct) */
    if (kv[1] && !strcmp(kv[1], "key_based")) {
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
        cr_assert_eq(upulsar_tb_snapshot_count(s), n);
        es_msg_t sorted[sizeof m / sizeof m[0]];
        for (size_t i = 0; i < n; i++) {
            size_t len = upulsar_tb_snapshot_msg(s, i)->payload_len, j = 0;
            while (j < n && m[j].len != len)
                j++;
            cr_assert_lt(j, n, "%s: stored a message of %zu bytes never sent", topic, len);
            sorted[i] = m[j];
        }
        upulsar_tb_snapshot_free(s);
        expect_log(tb, topic, sorted, n);
    } else {
        expect_log(tb, topic, m, n);
    }
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
    free(key);
    free(okey);
    free(pv);
    free(small);
    free(big);
}

Test(edges_sizes, largest_keys_work_in_the_default_batcher)
{
    const char *kv[] = {"batching.type", "default", "batch.max.delay.ms", "20", NULL};
    largest_keys_in("lk-default", kv, 100000);
}

Test(edges_sizes, largest_keys_work_in_the_key_based_batcher)
{
    const char *kv[] = {"batching.type", "key_based", "batch.max.delay.ms", "20", NULL};
    largest_keys_in("lk-keybased", kv, 100000);
}

Test(edges_sizes, largest_keys_work_unbatched)
{
    const char *kv[] = {"batching.enabled", "false", NULL};
    largest_keys_in("lk-unbatched", kv, 100000);
}

Test(edges_sizes, largest_keys_work_chunked)
{
    const char *kv[] = {"chunking.enabled", "true", "batching.enabled", "false", NULL};
    largest_keys_in("lk-chunked", kv, (5u << 20) / 2); /* 2.5 brokers' maxima */
}

Test(edges_sizes, chunked_message_with_a_kilobyte_of_key_and_properties_is_stored)
{
    upulsar_tb_t *tb = ft_broker_max(256 * 1024);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"chunking.enabled", "true", "batching.enabled", "false", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, "chunk-kib", 0, kv);
    size_t len = 700 * 1024;
    char *big = malloc(len), *key = str_of(600, 7), *pv = str_of(600, 8);
    cr_assert_not_null(big);
    fill(big, len, 9, 0);
    upulsar_property_t prop = {"k", pv};
    es_msg_t m[] = {{"a", 1, NULL, NULL, 0, NULL, 0},
                    {big, len, key, NULL, 0, &prop, 1},
                    {"b", 1, NULL, NULL, 0, NULL, 0}};
    upulsar_future_t *f[3];
    for (int i = 0; i < 3; i++)
        send_ok(p, &m[i], &f[i]);
    wait_all_ok(f, 3);
    expect_log(tb, "chunk-kib", m, 3);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
    free(big);
    free(key);
    free(pv);
}

/* ---- item: a message that cannot fit is refused alone --------------------- */

static int names_a_limit(const char *detail)
{
    return strstr(detail, "max_message_size") || strstr(detail, "65535") ||
           strstr(detail, "2147483647") || strstr(detail, "queue.buffer.bytes") ||
           strstr(detail, "1 MiB");
}

Test(edges_sizes, message_that_cannot_fit_is_refused_at_send_and_alone)
{
    enum { MAX = 64 * 1024 };
    upulsar_tb_t *tb = ft_broker_max(MAX);
    upulsar_client_t *c = ft_client(tb, NULL);
    for (int chunking = 0; chunking < 2; chunking++) {
        const char *topic = chunking ? "nofit-chunked" : "nofit";
        const char *kv[] = {"chunking.enabled", chunking ? "true" : "false",
                            "batching.enabled", chunking ? "false" : "true",
                            "batch.max.delay.ms", "20", NULL};
        upulsar_producer_t *p = ft_producer(c, NULL, topic, 0, kv);
        char *key = str_of(40000, 10), *okey = str_of(40000, 11);
        es_msg_t ok[2] = {{"before", 6, NULL, NULL, 0, NULL, 0},
                          {"after", 5, NULL, NULL, 0, NULL, 0}};
        upulsar_future_t *f[2];
        send_ok(p, &ok[0], &f[0]);
        /* 80000 bytes of keys: more than the broker's 64 KiB, in one entry or
         * in every chunk's metadata */
        upulsar_send_opts_t o = {.partition_key = key, .ordering_key = okey,
                                 .ordering_key_len = 40000};
        upulsar_future_t *bad = NULL;
        upulsar_err_t e = upulsar_send(p, "x", 1, &o, &bad);
        cr_assert_eq(e, UPULSAR_ERR__MSG_TOO_LARGE, "%s: %s", topic, upulsar_err_name(e));
        cr_assert_null(bad);
        cr_assert(names_a_limit(upulsar_last_error()), "%s", upulsar_last_error());
        send_ok(p, &ok[1], &f[1]);
        wait_all_ok(f, 2);
        expect_log(tb, topic, ok, 2);
        cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
        free(key);
        free(okey);
    }
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

/* Payloads from 1 KiB below the broker's maximum to its maximum, each after
 * a small batch-mate, with a 100-byte key: each is stored, or refused at
 * send naming max_message_size; the batch-mates are always stored. With
 * compression, the payload does not compress (random bytes). */
static void entries_at_the_limit(const char *topic, const char *compression)
{
    enum { MAX = 64 * 1024 };
    upulsar_tb_t *tb = ft_broker_max(MAX);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"compression", compression, "batch.max.delay.ms", "5",
                        "batch.max.bytes", "1048576", "block.if.queue.full", "true", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, topic, 0, kv);
    ft_send_ok(p, NULL);
    static char payload[MAX];
    fill(payload, sizeof payload, 12, 0);
    char *key = str_of(100, 13);
    es_msg_t want[128];
    upulsar_future_t *f[128];
    size_t n = 0, refused = 0, stored_big = 0;
    want[n] = (es_msg_t){"x", 1, NULL, NULL, 0, NULL, 0};
    n++; /* ft_send_ok's message */
    for (size_t len = MAX - 1024; len <= MAX; len += 41) {
        es_msg_t mate = {"mate", 4, NULL, NULL, 0, NULL, 0};
        send_ok(p, &mate, &f[n]);
        want[n++] = mate;
        upulsar_send_opts_t o = {.partition_key = key};
        upulsar_err_t e = upulsar_send(p, payload, len, &o, &f[n]);
        if (e == UPULSAR_OK) {
            want[n++] = (es_msg_t){payload, len, key, NULL, 0, NULL, 0};
            stored_big++;
        } else {
            cr_assert_eq(e, UPULSAR_ERR__MSG_TOO_LARGE, "%zu bytes: %s", len,
                         upulsar_err_name(e));
            cr_assert(strstr(upulsar_last_error(), "max_message_size"), "%s",
                      upulsar_last_error());
            refused++;
        }
    }
    cr_assert_gt(stored_big, 0, "nothing near the limit was accepted");
    cr_assert_gt(refused, 0, "a payload of max_message_size with a key was accepted");
    wait_all_ok(f + 1, n - 1);
    expect_log(tb, topic, want, n);
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    cr_assert_eq(st.protocol_errors, 0);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
    free(key);
}

Test(edges_sizes, entries_at_the_brokers_limit_are_stored_or_refused_at_send)
{
    entries_at_the_limit("at-limit", "none");
}

Test(edges_sizes, incompressible_entries_at_the_limit_are_stored_or_refused_at_send)
{
    entries_at_the_limit("at-limit-lz4", "lz4");
}

/* ---- item: lengths beyond 32 bits and near SIZE_MAX ------------------------ */

static _Atomic int freed;
static void count_free(void *payload, void *opaque)
{
    (void)payload;
    (void)opaque;
    atomic_fetch_add(&freed, 1);
}

Test(edges_sizes, payload_beyond_what_pulsar_can_carry_is_refused_at_send)
{
    upulsar_tb_t *tb = ft_broker_max(0);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"chunking.enabled", "true", "batching.enabled", "false", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, "huge", 0, kv);
    /* address space only: never touched by a refused send */
    size_t sizes[] = {((size_t)4 << 30) + 100, ((size_t)3 << 30), (size_t)INT32_MAX + 1};
    size_t maplen = sizes[0];
    void *region = mmap(NULL, maplen, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                        -1, 0);
    cr_assert_neq(region, MAP_FAILED);
    atomic_store(&freed, 0);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        upulsar_send_opts_t o = {.flags = UPULSAR_SEND_NOCOPY, .free_cb = count_free};
        upulsar_future_t *f = NULL;
        upulsar_err_t e = upulsar_send(p, region, sizes[i], &o, &f);
        cr_assert_eq(e, UPULSAR_ERR__MSG_TOO_LARGE, "%zu bytes: %s", sizes[i],
                     upulsar_err_name(e));
        cr_assert_null(f);
        cr_assert(strstr(upulsar_last_error(), "2147483647"), "%s", upulsar_last_error());
    }
    cr_assert_eq(atomic_load(&freed), 0, "free_cb called for a refused send");
    munmap(region, maplen);
    es_msg_t m = {"still fine", 10, NULL, NULL, 0, NULL, 0};
    upulsar_future_t *f;
    send_ok(p, &m, &f);
    wait_all_ok(&f, 1);
    expect_log(tb, "huge", &m, 1);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(edges_sizes, payload_length_near_size_max_is_refused)
{
    upulsar_tb_t *tb = ft_broker_max(0);
    upulsar_client_t *c = ft_client(tb, NULL);
    static char buf[64];
    char *key = str_of(1000, 14);
    for (int chunking = 0; chunking < 2; chunking++) {
        const char *topic = chunking ? "sizemax-chunked" : "sizemax";
        const char *kv[] = {"chunking.enabled", chunking ? "true" : "false",
                            "batching.enabled", chunking ? "false" : "true", NULL};
        upulsar_producer_t *p = ft_producer(c, NULL, topic, 0, kv);
        size_t lens[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 999, SIZE_MAX - 1000,
                         SIZE_MAX - 70000, SIZE_MAX / 2 + 1};
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
            for (int nocopy = 0; nocopy < 2; nocopy++) {
                upulsar_property_t prop = {"k", "v"};
                upulsar_send_opts_t o = {.partition_key = key,
                                         .ordering_key = key,
                                         .ordering_key_len = 1000,
                                         .properties = &prop,
                                         .properties_cnt = 1};
                if (nocopy) {
                    o.flags = UPULSAR_SEND_NOCOPY;
                    o.free_cb = count_free;
                }
                upulsar_future_t *f = NULL;
                upulsar_err_t e = upulsar_send(p, buf, lens[i], &o, &f);
                cr_assert_eq(e, UPULSAR_ERR__MSG_TOO_LARGE, "%s: length %zu: %s", topic,
                             lens[i], upulsar_err_name(e));
                cr_assert_null(f);
                cr_assert(names_a_limit(upulsar_last_error()), "%s", upulsar_last_error());
            }
        es_msg_t m = {"ok", 2, key, NULL, 0, NULL, 0};
        upulsar_future_t *f;
        send_ok(p, &m, &f);
        wait_all_ok(&f, 1);
        expect_log(tb, topic, &m, 1);
        cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    }
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
    free(key);
}

/* ---- item: properties across the ring's wrap ------------------------------- */

Test(edges_sizes, properties_across_the_ring_wrap_are_stored_without_allocating)
{
    upulsar_tb_t *tb = ft_broker_max(0);
    upulsar_client_t *c = ft_client(tb, NULL);
    /* the smallest ring: 2048 cells of 32 bytes */
    const char *kv[] = {"queue.buffer.bytes", "65536", "block.if.queue.full", "true", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, "wrap", 0, kv);
    enum { CELLS = 65536 / 32, CELL = 32, HDR = 32 };
    /* a plain record of L payload bytes takes (HDR + L) / CELL cells: put
     * the ring's next record 8 cells before its end, then send a property
     * block of 8 KiB, which wraps */
    static char filler[1024];
    fill(filler, sizeof filler, 15, 0);
    es_msg_t want[80];
    size_t n = 0;
    size_t at = 0;
    while (at + 32 <= CELLS - 8) {
        cr_assert_eq(upulsar_send(p, filler, 32 * CELL - HDR, NULL, NULL), UPULSAR_OK);
        want[n++] = (es_msg_t){filler, 32 * CELL - HDR, NULL, NULL, 0, NULL, 0};
        at += 32;
    }
    size_t rest = CELLS - 8 - at;
    cr_assert_gt(rest, 1);
    cr_assert_eq(upulsar_send(p, filler, rest * CELL - HDR, NULL, NULL), UPULSAR_OK);
    want[n++] = (es_msg_t){filler, rest * CELL - HDR, NULL, NULL, 0, NULL, 0};
    char *v1 = str_of(5000, 16), *v2 = str_of(3000, 17);
    upulsar_property_t props[2] = {{"first", v1}, {"second", v2}};
    upulsar_send_opts_t o = {.properties = props, .properties_cnt = 2};
    fail_allocs = 1;
    failed_allocs = 0;
    upulsar_err_t e = upulsar_send(p, "wrapped", 7, &o, NULL);
    fail_allocs = 0;
    cr_assert_eq(e, UPULSAR_OK, "%s", upulsar_last_error());
    if (ES_CAN_FAIL_ALLOCS)
        cr_assert_eq(failed_allocs, 0, "upulsar_send() allocated %u times", failed_allocs);
    want[n++] = (es_msg_t){"wrapped", 7, NULL, NULL, 0, props, 2};
    upulsar_future_t *f;
    want[n] = (es_msg_t){"last", 4, NULL, NULL, 0, NULL, 0};
    send_ok(p, &want[n++], &f);
    wait_all_ok(&f, 1);
    expect_log(tb, "wrap", want, n);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
    free(v1);
    free(v2);
}
