/* test_fidelity_unbatched.c -- messages the official clients send alone
 * go as plain entries, not as batches of one: with batching.enabled=false
 * every message, and with batching a delayed one (deliver_at /
 * deliver_after), is an entry whose MessageMetadata carries the message
 * itself (its keys, properties, event time, null value, sequence id,
 * compression) and whose payload is the message's bytes, as the official
 * clients send such a message (pulsar-client-cpp ProducerImpl: a message
 * that cannot be added to a batch is sent individually). A consumer reads
 * it with batch index -1, and the message id the future and the callback
 * report has batch_index -1 and batch_size 0. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "fault_common.h"

TestSuite(fidelity_unbatched, .timeout = 60);

enum { UB_N = 12 };

typedef struct ub_msg {
    char payload[96];
    size_t len;
    char key[24], okey[24], pv[24];
    upulsar_property_t prop;
    upulsar_send_opts_t o;
} ub_msg_t;

static ub_msg_t ub[UB_N];
static _Atomic int ub_cbs[UB_N];
static upulsar_msg_id_t ub_cb_id[UB_N];

static void ub_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    int i = (int)(intptr_t)opaque;
    if (!err) {
        ub_cb_id[i] = *id;
        atomic_fetch_add(&ub_cbs[i], 1);
    }
}

/* Message @p i: a payload that compresses (90 repeated bytes, every third
 * one short and not worth compressing); a partition key on every second,
 * an ordering key on every third, a property on every fourth, an event
 * time on every fifth, a callback on every sixth; message 7 a null value. */
static void ub_make(int i)
{
    ub_msg_t *m = &ub[i];
    memset(m, 0, sizeof *m);
    m->len = i % 3 == 1 ? (size_t)snprintf(m->payload, sizeof m->payload, "m%d", i) : 90;
    if (m->len == 90)
        memset(m->payload, 'a' + i, 90);
    if (i % 2 == 0) {
        snprintf(m->key, sizeof m->key, "key-%d", i);
        m->o.partition_key = m->key;
    }
    if (i % 3 == 0) {
        m->o.ordering_key_len = (size_t)snprintf(m->okey, sizeof m->okey, "ok-%d", i);
        m->o.ordering_key = m->okey;
    }
    if (i % 4 == 0) {
        snprintf(m->pv, sizeof m->pv, "v%d", i);
        m->prop = (upulsar_property_t){"p", m->pv};
        m->o.properties = &m->prop;
        m->o.properties_cnt = 1;
    }
    if (i % 5 == 0)
        m->o.event_time_ms = 1000u + (uint64_t)i;
    if (i % 6 == 0) {
        m->o.cb = ub_cb;
        m->o.opaque = (void *)(intptr_t)i;
    }
    if (i == 7) {
        m->len = 0;
        m->o.flags |= UPULSAR_SEND_NULL_VALUE;
    }
}

/* Send the UB_N messages to @p topic (settings @p kv), wait for each, and
 * check each stored message (and its id) is a plain entry holding exactly
 * the message; @p codec: the compression each entry whose payload
 * compresses must name (0: none). */
static void ub_case(const char *topic, const char *const *kv, int codec)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(c, NULL, topic, 0, kv);
    upulsar_future_t *f[UB_N];
    for (int i = 0; i < UB_N; i++) {
        ub_make(i);
        atomic_store(&ub_cbs[i], 0);
        cr_assert_eq(upulsar_send(p, ub[i].len ? ub[i].payload : NULL, ub[i].len, &ub[i].o, &f[i]),
                     UPULSAR_OK, "message %d: %s", i, upulsar_last_error());
    }
    upulsar_msg_id_t ids[UB_N];
    for (int i = 0; i < UB_N; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, &ids[i]), UPULSAR_OK, "message %d", i);
        upulsar_future_release(f[i]);
        cr_assert(ids[i].batch_index == -1 && ids[i].batch_size == 0,
                  "message %d: batch index %d, size %d (a plain entry has -1, 0)", i,
                  ids[i].batch_index, ids[i].batch_size);
    }
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)UB_N);
    for (int i = 0; i < UB_N; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        const ub_msg_t *u = &ub[i];
        cr_assert(m->batch_index == -1 && m->batch_size == 0,
                  "message %d stored in a batch (index %d of %d)", i, m->batch_index,
                  m->batch_size);
        cr_assert(m->payload_len == u->len && !memcmp(m->payload, u->payload, u->len),
                  "message %d: payload", i);
        cr_assert_eq(m->sequence_id, (uint64_t)i, "message %d: sequence id", i);
        cr_assert_eq(m->event_time, u->o.event_time_ms, "message %d: event time", i);
        cr_assert_eq(m->null_value, i == 7, "message %d: null value", i);
        if (u->o.partition_key)
            cr_assert(m->partition_key && !strcmp(m->partition_key, u->key),
                      "message %d: partition key", i);
        else
            cr_assert_null(m->partition_key, "message %d: a partition key", i);
        if (u->o.ordering_key)
            cr_assert(m->ordering_key && m->ordering_key_len == u->o.ordering_key_len &&
                          !memcmp(m->ordering_key, u->okey, m->ordering_key_len),
                      "message %d: ordering key", i);
        else
            cr_assert_null(m->ordering_key, "message %d: an ordering key", i);
        cr_assert_eq(m->properties_cnt, u->o.properties ? 1u : 0u, "message %d: properties", i);
        if (u->o.properties)
            cr_assert(!strcmp(m->properties[0].key, "p") && !strcmp(m->properties[0].value, u->pv),
                      "message %d: property", i);
        /* a 90-byte run of one byte compresses: its entry names the codec */
        if (u->len == 90)
            cr_assert_eq(m->compression, codec, "message %d: compression %d", i, m->compression);
        cr_assert(ids[i].ledger_id == m->ledger_id && ids[i].entry_id == m->entry_id,
                  "message %d: its future's position", i);
        if (u->o.cb) {
            cr_assert_eq(atomic_load(&ub_cbs[i]), 1, "message %d: callbacks", i);
            cr_assert(ub_cb_id[i].entry_id == m->entry_id && ub_cb_id[i].batch_index == -1,
                      "message %d: its callback's id", i);
        }
    }
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}

/* Scenario: batching.enabled=false, 12 messages with keys, ordering keys,
 * properties, event times, callbacks and a null value among them. Each is
 * stored as a plain entry holding exactly it. */
Test(fidelity_unbatched, messages_without_batching_are_plain_entries)
{
    const char *kv[] = {"batching.enabled", "false", NULL};
    ub_case("unbatched", kv, 0);
}

/* Scenario: the same with lz4: each entry's payload is compressed on its
 * own (the metadata names the codec and the size before it). */
Test(fidelity_unbatched, compressed_messages_without_batching_are_plain_entries)
{
    const char *kv[] = {"batching.enabled", "false", "compression", "lz4", NULL};
    ub_case("unbatched-lz4", kv, 1 /* CompressionType LZ4 */);
}
