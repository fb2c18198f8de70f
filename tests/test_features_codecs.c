/* test_features_codecs.c -- ZSTD and ZLIB batches through the test broker
 * (compressed by the producer, decoded by the broker's snapshot), and the
 * ZLIB decoder on a stream ending in a SYNC_FLUSH (the Java client's form). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "batch.h"
#include "fault_common.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_plain_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

/* A codec left out of the build skips its test, except where the build
 * requires every codec (UPULSAR_REQUIRE_ALL_CODECS, as CI configures it):
 * there a missing codec fails. */
#ifdef UPULSAR_TEST_REQUIRE_ALL_CODECS
#define codec_missing(what) cr_assert_fail("%s is not compiled in, but every codec is required", what)
#else
#define codec_missing(what) cr_skip_test("%s is not compiled in", what)
#endif

TestSuite(features_codecs, .init = setup, .fini = teardown, .timeout = 60);

static void round_trip(const char *codec, int wire)
{
    upulsar_conf_t *conf = upulsar_conf_new();
    if (upulsar_conf_set(conf, "compression", codec, NULL, 0) != UPULSAR_CONF_OK) {
        upulsar_conf_destroy(conf);
        codec_missing(codec);
    }
    cr_assert_eq(upulsar_conf_set(conf, "batch.max.messages", "100", NULL, 0), UPULSAR_CONF_OK);
    /* a fixed window: every entry holds several messages (batch.mode
     * adaptive would send the first message alone, an entry of one) */
    cr_assert_eq(upulsar_conf_set(conf, "batch.mode", "linger", NULL, 0), UPULSAR_CONF_OK);
    /* a window long enough that only batch.max.messages and the flush close
     * batches, however slowly the senders run (sanitizers) */
    cr_assert_eq(upulsar_conf_set(conf, "batch.max.delay.ms", "60000", NULL, 0), UPULSAR_CONF_OK);
    char topic[32];
    snprintf(topic, sizeof topic, "codec-%s", codec);
    upulsar_producer_t *p;
    cr_assert_eq(upulsar_producer_start(client, NULL, topic, 0, conf, &p), UPULSAR_OK);
    upulsar_conf_destroy(conf);
    enum { N = 1000 };
    static char pl[N][300];
    for (int i = 0; i < N; i++) {
        int len = snprintf(pl[i], sizeof pl[i], "message %d ", i);
        for (; len < 64 + i % 200; len++)
            pl[i][len] = (char)('a' + (len * 7 + i) % 5); /* compressible */
        pl[i][len] = '\0';
        char key[8];
        snprintf(key, sizeof key, "k%d", i % 3);
        upulsar_property_t prop = {"n", key};
        upulsar_send_opts_t o = {.partition_key = key, .properties = &prop, .properties_cnt = 1};
        cr_assert_eq(upulsar_send(p, pl[i], strlen(pl[i]), &o, NULL), UPULSAR_OK);
    }
    cr_assert_eq(upulsar_producer_flush(p, 10000), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_skipped(s), 0);
    cr_assert_eq(upulsar_tb_snapshot_count(s), N);
    for (size_t j = 0; j < N; j++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, j);
        cr_assert_eq(m->compression, wire);
        cr_assert_gt(m->batch_size, 1);
        cr_assert_eq(m->payload_len, strlen(pl[j]));
        cr_assert_eq(memcmp(m->payload, pl[j], m->payload_len), 0, "message %zu", j);
        cr_assert_eq(m->properties_cnt, 1);
        cr_assert_str_eq(m->properties[0].value, m->partition_key);
    }
    upulsar_tb_snapshot_free(s);
}

Test(features_codecs, zstd_batches_round_trip) { round_trip("zstd", 3); }

Test(features_codecs, zlib_batches_round_trip) { round_trip("zlib", 2); }

#if defined(__has_include)
#if __has_include(<zlib.h>)
#include <zlib.h>
#define HAVE_ZLIB_H 1
#endif
#endif

Test(features_codecs, zlib_decoder_accepts_sync_flush_streams)
{
#ifndef HAVE_ZLIB_H
    codec_missing("zlib (no zlib.h)");
#else
    upulsar_conf_t *conf = upulsar_conf_new();
    upulsar_conf_res_t have = upulsar_conf_set(conf, "compression", "zlib", NULL, 0);
    upulsar_conf_destroy(conf);
    if (have != UPULSAR_CONF_OK)
        codec_missing("zlib");
    static uint8_t src[10000], z[12000], out[10000];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)("pulsar"[i % 6] + (i / 1000));
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    cr_assert_eq(deflateInit(&zs, Z_DEFAULT_COMPRESSION), Z_OK);
    zs.next_in = src;
    zs.avail_in = sizeof src;
    zs.next_out = z;
    zs.avail_out = sizeof z;
    cr_assert_eq(deflate(&zs, Z_SYNC_FLUSH), Z_OK); /* no Z_FINISH: no stream end */
    size_t zn = sizeof z - zs.avail_out;
    deflateEnd(&zs);
    cr_assert_eq(up_decompress(UP_COMP_ZLIB, z, zn, out, sizeof src), 0);
    cr_assert_eq(memcmp(out, src, sizeof src), 0);
    /* wrong sizes and a truncated stream are refused */
    cr_assert_neq(up_decompress(UP_COMP_ZLIB, z, zn, out, sizeof src - 1), 0);
    static uint8_t big[10001];
    cr_assert_neq(up_decompress(UP_COMP_ZLIB, z, zn, big, sizeof big), 0);
    cr_assert_neq(up_decompress(UP_COMP_ZLIB, z, zn / 2, out, sizeof src), 0);
    /* our own output (a complete stream) too */
    long cn = up_compress(UP_COMP_ZLIB, src, sizeof src, z, sizeof z);
    cr_assert_gt(cn, 0);
    cr_assert_eq(up_decompress(UP_COMP_ZLIB, z, (size_t)cn, out, sizeof src), 0);
    cr_assert_eq(memcmp(out, src, sizeof src), 0);
#endif
}

/* Send @p len bytes of @p body on @p p as one message and wait for its
 * receipt: the io thread's batch pool's bytes then ("batch_pool_bytes"). */
static long long sent_pool_bytes(upulsar_producer_t *p, const void *body, size_t len)
{
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(p, body, len, NULL, &f), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(f, 30000, NULL), UPULSAR_OK);
    upulsar_future_release(f);
    return ft_mem_figure(p, "batch_pool_bytes");
}

/* A message sent alone (batching off) that the codec cannot shrink goes
 * uncompressed; the compression buffer its try took (the codec's bound,
 * larger than the message) is not kept with its entry: once the message
 * is acknowledged, the io thread's batch pool holds about one copy of it
 * ("batch_pool_bytes"), not two. The same for one the codec shrank: its
 * compressed copy was moved into the entry. */
static void alone_keeps_one_buffer(const char *codec, int compressible)
{
    enum { LEN = 1 << 20 };
    const char *kv[] = {"compression", codec, "batching.enabled", "false", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, compressible ? "zone-c" : "zone-r", 0, kv);
    uint8_t *body = malloc(LEN);
    cr_assert_not_null(body);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < LEN; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift: incompressible */
        body[i] = compressible ? (uint8_t)('a' + i % 7) : (uint8_t)x;
    }
    long long pool = sent_pool_bytes(p, body, LEN);
    cr_assert_lt(pool, (long long)LEN * 3 / 2, "%s: the pool holds %lld bytes for one %d-byte message",
                 codec, pool, LEN);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    free(body);
}

Test(features_codecs, a_message_alone_keeps_one_buffer_not_the_codecs_too)
{
    alone_keeps_one_buffer("lz4", 0);
    alone_keeps_one_buffer("lz4", 1);
    alone_keeps_one_buffer("zstd", 0);
}

/* Batches with a codec: once a batch is compressed and framed, it keeps
 * one buffer (the one its entry is in), not also the other (the records
 * before compression, or the codec's output when that was no smaller,
 * then sent uncompressed): 20 full batches of 64 KiB, held until their
 * receipts and then back in the io thread's pool, take about 20 buffers
 * there, not 40. */
static void batches_keep_one_buffer(int compressible)
{
    enum { MSG = 1024, PER = 64, BATCHES = 20 };
    const char *topic = compressible ? "zbatch-c" : "zbatch-r";
    const char *kv[] = {"compression", "lz4", "batch.max.messages", "64", "batch.max.bytes", "70000",
                        "send.timeout.ms", "0", "block.if.queue.full", "true", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, topic, 0, kv);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, topic), UPULSAR_OK);
    static uint8_t body[MSG];
    uint64_t x = 88172645463325252ull;
    static upulsar_future_t *f[PER * BATCHES + 1];
    for (int i = 0; i < PER * BATCHES + 1; i++) {
        for (size_t k = 0; k < MSG; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            body[k] = compressible ? (uint8_t)('a' + (i + k) % 5) : (uint8_t)x;
        }
        cr_assert_eq(upulsar_send(p, body, MSG, NULL, &f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    cr_assert_eq(upulsar_tb_release_receipts(tb, topic), UPULSAR_OK);
    for (int i = 0; i < PER * BATCHES + 1; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], 20000, NULL), UPULSAR_OK, "message %d", i);
        upulsar_future_release(f[i]);
    }
    long long pool = ft_mem_figure(p, "batch_pool_bytes");
    /* a batch's buffer grows to at most batch.max.bytes and head room
     * (about 72 KiB here), plus its done slots and the batch itself */
    long long one = 76 * 1024;
    cr_assert_lt(pool, one * BATCHES * 3 / 2,
                 "%s: the pool holds %lld bytes for %d batches of about %lld", topic, pool,
                 BATCHES, one);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
}

Test(features_codecs, a_compressed_batch_keeps_one_buffer)
{
    batches_keep_one_buffer(1);
    batches_keep_one_buffer(0);
}

/* The io thread's spare compression buffer (a compressed batch's second
 * buffer, kept for the next) is idle memory like the batch pool's: with
 * nothing sent any more, the pool's trim gives it back too, down to the
 * pool's floor (UP_POOL_FLOOR, 256 KiB). Batches of 4 MiB make it about
 * 1 MiB here. */
Test(features_codecs, the_spare_compression_buffer_is_given_back_when_idle, .timeout = 120)
{
    enum { MSG = 4096, N = 4096 };
    const char *kv[] = {"compression", "lz4", "batch.max.bytes", "4194304",
                        "batch.max.messages", "10000", "block.if.queue.full", "true", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, "zspare", 0, kv);
    static char body[MSG];
    for (int i = 0; i < N; i++) {
        memset(body, 'a' + i % 7, sizeof body);
        cr_assert_eq(upulsar_send(p, body, MSG, NULL, NULL), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    cr_assert_eq(upulsar_producer_flush(p, 20000), UPULSAR_OK, "%s", upulsar_last_error());
    ft_figure_wait_t w = {p, "batch_pool_bytes", 256 * 1024};
    cr_assert(ft_wait_for(ft_figure_at_most, &w), "the pool keeps %lld bytes while idle",
              ft_mem_figure(p, "batch_pool_bytes"));
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
}

/* A chunked message: its first chunk's buffer, which held the codec's try
 * (the whole message's size), is brought down to its own chunk once the
 * other chunks are copied out, compressible or not; once acknowledged the
 * pool holds about one copy of the message in its chunks' buffers, not
 * also a second whole one. */
static void chunked_keeps_one_copy(int compressible)
{
    enum { LEN = 12 << 20 };
    const char *kv[] = {"compression", "lz4", "batching.enabled", "false",
                        "chunking.enabled", "true", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, compressible ? "zchunk-c" : "zchunk-r", 0,
                                        kv);
    uint8_t *body = malloc(LEN);
    cr_assert_not_null(body);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < LEN; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        /* compressible: 1 byte in 4 random, so it still needs chunks */
        body[i] = compressible && i % 4 ? 'z' : (uint8_t)x;
    }
    long long pool = sent_pool_bytes(p, body, LEN);
    cr_assert_lt(pool, (long long)LEN * 3 / 2, "the pool holds %lld bytes for one %d-byte message",
                 pool, LEN);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    free(body);
}

Test(features_codecs, a_chunked_message_keeps_one_copy)
{
    chunked_keeps_one_copy(0);
    chunked_keeps_one_copy(1);
}
