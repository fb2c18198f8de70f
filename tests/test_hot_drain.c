/* test_hot_drain.c -- the drain of the producer's loop takes messages
 * without options (plain records) into the open batch the fast way, and
 * every other record (keys, properties, one that wraps at the ring's end,
 * one the batch has no room for) the general way. Whichever way a message
 * goes, what the broker stores must be the same:
 *  - every message exactly once, in send order, with its bytes, its event
 *    time, the sequence id its position gives it (written in the message's
 *    SingleMessageMetadata), its key and properties;
 *  - no entry over batch.max.messages, or (its records' bytes) over
 *    batch.max.bytes or the broker's max_message_size;
 *  - each future resolves with the position the broker stored its message
 *    at, each callback runs once with that position; with
 *    latency.sample.every=1 every message's send time reaches the latency
 *    statistics (each latency between a microsecond and the time the sends
 *    took), with 0 none;
 *  - the statistics count every payload byte acknowledged, and the memory
 *    the messages took is all given back once they resolved.
 * A 64 KiB ring (records wrap at its end every few hundred messages),
 * batches of 37 messages, and max.inflight.batches 2 on one of the topics
 * (at that limit the drain adds a record only to a batch with room for
 * it, the general way and the fast way alike). */
#include <inttypes.h>

#include "fault_common.h"

TestSuite(hot_drain, .timeout = 120);

enum { DR_N = 6000, DR_MAXMSG = 37, DR_MAXBYTES = 2000, DR_BROKER_MAX = 6000 };

static char dr_buf[DR_N][1500];
static char dr_key[DR_N][40];
static upulsar_property_t dr_prop[DR_N];
static upulsar_send_opts_t dr_opts[DR_N];
static upulsar_msg_t dr_msgs[DR_N];
static upulsar_future_t *dr_fut[DR_N];
static _Atomic int dr_cbs[DR_N];
static upulsar_msg_id_t dr_cb_id[DR_N];

static void dr_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    int i = (int)(intptr_t)opaque;
    if (err == UPULSAR_OK) {
        dr_cb_id[i] = *id;
        atomic_fetch_add(&dr_cbs[i], 1);
    }
}

/* Message @p i: 0 to 1500 bytes (empty, around a cache line and a cell,
 * the common size, and sizes that fill a batch of 2000 bytes in a few);
 * a callback on every third, an event time on every fourth (both still
 * plain records); properties on every eleventh (general records) and a
 * partition key of up to 38 bytes (empty on every fourth of them) on
 * every 29th (plain records through
 * upulsar_send(), general ones through upulsar_send_many(); a keyed
 * batch's entry metadata is larger). */
static void dr_make(int i)
{
    static const size_t lens[] = {0, 1, 31, 63, 64, 65, 100, 100, 127, 128, 129, 300, 700, 1500};
    /* stretches of small messages, whose batches fill by count */
    size_t len = lens[i % ((i / 500) % 2 ? 11 : 14)];
    for (size_t k = 0; k < len; k++)
        dr_buf[i][k] = (char)(i * 31 + (int)k * 7 + 1);
    upulsar_send_opts_t *o = &dr_opts[i];
    *o = (upulsar_send_opts_t){0};
    if (i % 3 == 0) {
        o->cb = dr_cb;
        o->opaque = (void *)(intptr_t)i;
    }
    if (i % 4 == 1)
        o->event_time_ms = (uint64_t)i + 1;
    if (i % 11 == 5) {
        dr_prop[i] = (upulsar_property_t){"i", dr_key[i]};
        snprintf(dr_key[i], sizeof dr_key[i], "%d", i);
        o->properties = &dr_prop[i];
        o->properties_cnt = 1;
    } else if (i % 29 == 7) {
        int n = snprintf(dr_key[i], sizeof dr_key[i], "key-%d-", i);
        memset(dr_key[i] + n, 'k', (size_t)(i % 31));
        dr_key[i][n + i % 31] = 0;
        if ((i / 29) % 4 == 0)
            dr_key[i][0] = 0; /* now and then an empty key: present, of 0 bytes */
        o->partition_key = dr_key[i];
    }
    bool opts = o->cb || o->event_time_ms || o->properties || o->partition_key;
    dr_msgs[i] = (upulsar_msg_t){len ? dr_buf[i] : NULL, len, opts ? o : NULL};
}

/* The number after the first @p key (e.g. "\"in_use\":") in @p p's
 * statistics. */
static unsigned long long dr_stat(upulsar_producer_t *p, const char *key)
{
    char *js = NULL;
    cr_assert_eq(upulsar_producer_stats_json(p, &js), UPULSAR_OK);
    const char *at = strstr(js, key);
    cr_assert_not_null(at, "%s not in %s", key, js);
    unsigned long long n = strtoull(at + strlen(key), NULL, 10);
    free(js);
    return n;
}

static size_t dr_varint(uint64_t v)
{
    size_t n = 1;
    for (; v >= 128; v >>= 7)
        n++;
    return n;
}

/* The bytes message @p i, stored with sequence id @p seq, takes in its
 * entry's records: [size][SingleMessageMetadata][payload], the metadata's
 * fields as Pulsar numbers them (properties 1, partition_key 2,
 * payload_size 3, event_time 5, sequence_id 8). */
static size_t dr_record_bytes(int i, uint64_t seq)
{
    const upulsar_send_opts_t *o = &dr_opts[i];
    size_t len = dr_msgs[i].len;
    size_t n = 4 + 1 + dr_varint(len) + 1 + dr_varint(seq) + len;
    if (o->event_time_ms)
        n += 1 + dr_varint(o->event_time_ms);
    if (o->properties) { /* KeyValue {key "i" (1), value (2)} */
        size_t kv = 2 + 1 + 1 + dr_varint(strlen(o->properties[0].value)) +
                    strlen(o->properties[0].value);
        n += 1 + dr_varint(kv) + kv;
    }
    if (o->partition_key)
        n += 1 + dr_varint(strlen(o->partition_key)) + strlen(o->partition_key);
    return n;
}

/* Send the DR_N messages to @p topic (one upulsar_send() each, or
 * upulsar_send_many() calls of 64 with @p many) with producer settings
 * @p kv, and check what the broker stored (see the file's head). */
static void dr_case(upulsar_tb_t *tb, upulsar_client_t *c, const char *topic, bool many,
                    const char *const *kv, size_t max_bytes, bool sampled)
{
    unsigned long long payload_bytes = 0;
    for (int i = 0; i < DR_N; i++) {
        dr_make(i);
        atomic_store(&dr_cbs[i], 0);
        payload_bytes += dr_msgs[i].len;
    }
    upulsar_producer_t *p = ft_producer(c, NULL, topic, 0, kv);
    uint64_t t0 = ft_now_ms();
    if (many) {
        for (int i = 0; i < DR_N; i += 64) {
            size_t n = DR_N - i < 64 ? (size_t)(DR_N - i) : 64, acc = 0;
            cr_assert_eq(upulsar_send_many(p, dr_msgs + i, n, dr_fut + i, &acc), UPULSAR_OK,
                         "%s: %s", topic, upulsar_last_error());
            cr_assert_eq(acc, n);
        }
    } else {
        for (int i = 0; i < DR_N; i++)
            cr_assert_eq(upulsar_send(p, dr_msgs[i].payload, dr_msgs[i].len, dr_msgs[i].opts,
                                      &dr_fut[i]),
                         UPULSAR_OK, "%s: message %d: %s", topic, i, upulsar_last_error());
    }
    static upulsar_msg_id_t ids[DR_N];
    for (int i = 0; i < DR_N; i++) {
        cr_assert_eq(upulsar_future_wait(dr_fut[i], FT_WAIT_MS, &ids[i]), UPULSAR_OK,
                     "%s: message %d: %s", topic, i, upulsar_last_error());
        upulsar_future_release(dr_fut[i]);
    }
    uint64_t took_us = (ft_now_ms() - t0 + 1) * 1000;
    unsigned long long nlat = dr_stat(p, "\"latency_us\":{\"count\":");
    cr_assert_eq(nlat, sampled ? (unsigned long long)DR_N : 0ull,
                 "%s: the send times sampled (latency.sample.every=%d)", topic, sampled);
    char sum_key[64];
    snprintf(sum_key, sizeof sum_key, "\"latency_us\":{\"count\":%llu,\"sum\":", nlat);
    unsigned long long sum = dr_stat(p, sum_key);
    /* each between a round trip to the broker (at least a microsecond: a
     * send time misread as later than the receipt counts 0) and the time
     * the sends took */
    cr_assert(sum >= nlat && sum <= nlat * took_us,
              "%s: %llu latencies sum to %llu us: not 1 to %llu us each", topic, nlat, sum,
              (unsigned long long)took_us);
    char *js = NULL;
    cr_assert_eq(upulsar_producer_stats_json(p, &js), UPULSAR_OK);
    cr_assert_null(strstr(js, "\"buckets\":[[0,"), "%s: latencies of 0 us: %s", topic, js);
    free(js);
    cr_assert_eq(dr_stat(p, "\"acked_bytes\":"), payload_bytes, "%s: payload bytes acknowledged",
                 topic);
    /* what the messages took of the budget goes back once they resolved
     * (the loop gives it back just after resolving them) */
    uint64_t end = ft_now_ms() + FT_WAIT_MS;
    unsigned long long in_use;
    while ((in_use = dr_stat(p, "\"in_use\":")) != 0 && ft_now_ms() < end)
        ft_pause_ms(2);
    cr_assert_eq(in_use, 0ull, "%s: memory in use once every message resolved", topic);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);

    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)DR_N, "%s: messages stored", topic);
    size_t entry_msgs = 0, entry_bytes = 0, entry_records = 0;
    for (int i = 0; i < DR_N; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        const upulsar_send_opts_t *o = &dr_opts[i];
        cr_assert(m->payload_len == dr_msgs[i].len &&
                      (!m->payload_len || !memcmp(m->payload, dr_buf[i], m->payload_len)),
                  "%s #%d: not message %d's bytes (%zu stored, %zu sent)", topic, i, i,
                  m->payload_len, dr_msgs[i].len);
        cr_assert_eq(m->event_time, o->event_time_ms, "%s: message %d: event time", topic, i);
        cr_assert(m->sequence_id == (uint64_t)i && m->sequence_id_in_batch,
                  "%s: message %d: sequence id %" PRIu64 " (in its metadata: %d)", topic, i,
                  m->sequence_id, m->sequence_id_in_batch);
        cr_assert_eq(m->properties_cnt, o->properties ? 1u : 0u, "%s: message %d: properties",
                     topic, i);
        if (o->properties)
            cr_assert_str_eq(m->properties[0].value, dr_key[i], "%s: message %d", topic, i);
        if (o->partition_key)
            cr_assert(m->partition_key && !strcmp(m->partition_key, o->partition_key),
                      "%s: message %d: partition key", topic, i);
        else
            cr_assert_null(m->partition_key, "%s: message %d: a key it was not given", topic, i);
        cr_assert(ids[i].ledger_id == m->ledger_id && ids[i].entry_id == m->entry_id &&
                      ids[i].batch_index == m->batch_index,
                  "%s: message %d: its future's position is not where it is stored", topic, i);
        if (o->cb) {
            cr_assert_eq(atomic_load(&dr_cbs[i]), 1, "%s: message %d: callbacks", topic, i);
            cr_assert(dr_cb_id[i].ledger_id == m->ledger_id &&
                          dr_cb_id[i].entry_id == m->entry_id &&
                          dr_cb_id[i].batch_index == m->batch_index,
                      "%s: message %d: its callback's position", topic, i);
        }
        /* the entry's limits */
        if (m->batch_index == 0) {
            entry_msgs = 0;
            entry_bytes = 0;
            entry_records = 0;
        }
        entry_msgs++;
        entry_bytes += m->payload_len;
        entry_records += dr_record_bytes(i, m->sequence_id);
        cr_assert_leq(entry_msgs, (size_t)DR_MAXMSG, "%s: an entry over batch.max.messages",
                      topic);
        cr_assert_leq((size_t)m->batch_size, (size_t)DR_MAXMSG, "%s", topic);
        if (entry_msgs > 1)
            cr_assert(entry_records <= max_bytes && entry_bytes <= max_bytes,
                      "%s: message %d: an entry of %zu record bytes (%zu of payload), over %zu",
                      topic, i, entry_records, entry_bytes, max_bytes);
    }
    upulsar_tb_snapshot_free(s);
}

static void dr_all(bool many)
{
    upulsar_tb_t *tb = ft_broker_max(DR_BROKER_MAX);
    upulsar_client_t *c = ft_client(tb, NULL);
    static const struct {
        const char *topic, *topic_many;
        const char *kv[13];
        size_t max_bytes;
        bool sampled;
    } cases[] = {
        /* batch.max.bytes the limit, no send time sampled */
        {"drain-bytes", "drain-bytes-many",
         {"batch.max.bytes", "2000", "latency.sample.every", "0", "batch.max.messages", "37",
          "batch.max.delay.ms", "5", "queue.buffer.bytes", "65536", "block.if.queue.full",
          "true", NULL},
         DR_MAXBYTES, false},
        /* the broker's 6000 bytes the limit (less the entry's metadata),
         * two batches in flight at most, every send time sampled */
        {"drain-broker", "drain-broker-many",
         {"max.inflight.batches", "2", "latency.sample.every", "1", "batch.max.messages", "37",
          "batch.max.delay.ms", "5", "queue.buffer.bytes", "65536", "block.if.queue.full",
          "true", NULL},
         DR_BROKER_MAX, true},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        dr_case(tb, c, many ? cases[k].topic_many : cases[k].topic, many, cases[k].kv,
                cases[k].max_bytes, cases[k].sampled);
    ft_stop_client_and_broker(tb, c);
}

/* Scenario: the DR_N messages above, one upulsar_send() each, to a topic
 * whose batches are bounded by batch.max.bytes (2000), no send time
 * sampled, and to one whose batches are bounded by the broker's
 * max_message_size (6000) with two batches in flight at most, every send
 * time sampled; both with batches of at most 37 messages and a 64 KiB
 * ring. Each topic holds every message
 * once, in order, as the file's head says. */
Test(hot_drain, plain_records_are_stored_in_order_with_their_fields_within_the_entry_limits)
{
    dr_all(false);
}

/* Scenario: the same through upulsar_send_many() calls of 64. */
Test(hot_drain, plain_records_of_send_many_are_stored_in_order_within_the_entry_limits)
{
    dr_all(true);
}
