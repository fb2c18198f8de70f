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
    /* every entry decoded, one message each, as its SEND said */
    upulsar_tb_topic_stats_t ts;
    cr_assert_eq(upulsar_tb_topic_stats(tb, topic, &ts), UPULSAR_OK);
    cr_assert(ts.entries == UB_N && ts.messages == UB_N && ts.decode_errors == 0,
              "%llu entries, %llu messages, %llu decode errors", (unsigned long long)ts.entries,
              (unsigned long long)ts.messages, (unsigned long long)ts.decode_errors);
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

/* ---- what fits in one entry goes whole ---------------------------------- */

enum { UB_MAX = 65536 };

/* Scenario: batching off, chunking on, a broker whose max_message_size is
 * 64 KiB; messages of 64 KiB less 400 to less 300 bytes (their entry, a
 * few dozen bytes of metadata and the payload, fits in the limit). Each is
 * stored whole, as one plain entry (as the official clients send it, which
 * split only what does not fit), not in chunks. */
Test(fidelity_unbatched, a_message_that_fits_one_entry_is_not_chunked)
{
    upulsar_tb_t *tb = ft_broker_max(UB_MAX);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"batching.enabled", "false", "chunking.enabled", "true", NULL};
    upulsar_producer_t *p = ft_producer(c, "t", "near-limit", 0, kv);
    static char buf[UB_MAX];
    memset(buf, 'x', sizeof buf);
    int n = 0;
    for (size_t less = 400; less >= 300; less -= 20, n++) {
        upulsar_future_t *f;
        cr_assert_eq(upulsar_send(p, buf, UB_MAX - less, NULL, &f), UPULSAR_OK, "%s",
                     upulsar_last_error());
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, &id), UPULSAR_OK);
        upulsar_future_release(f);
    }
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "near-limit", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)n);
    for (int i = 0; i < n; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        cr_assert_eq(m->payload_len, (size_t)UB_MAX - 400 + 20 * (size_t)i, "message %d: %zu bytes", i, m->payload_len);
        cr_assert(m->num_chunks == 0 && m->batch_index == -1,
                  "a message of %zu bytes, which fits in an entry of %d, went in %u chunks",
                  m->payload_len, UB_MAX, m->num_chunks);
    }
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}

/* ---- delivery reports of plain entries ---------------------------------- */

typedef struct ub_report {
    int reports, kept, err;
    int64_t seq;
    char payload[96];
    size_t len;
    char key[24];
    size_t key_len;
} ub_report_t;

static ub_report_t ub_rep[UB_N];

static void ub_on_report(const upulsar_delivery_report_t *dr, void *opaque)
{
    (void)opaque;
    int i = (int)(intptr_t)dr->msg_opaque - 1;
    if (i < 0 || i >= UB_N)
        return;
    ub_report_t *r = &ub_rep[i];
    r->reports++;
    r->err = dr->err;
    r->kept = dr->payload_kept;
    r->seq = dr->sequence_id;
    r->len = dr->len;
    if (dr->payload && dr->len <= sizeof r->payload)
        memcpy(r->payload, dr->payload, dr->len);
    r->key_len = dr->key ? dr->key_len : 0;
    if (dr->key && dr->key_len < sizeof r->key)
        memcpy(r->key, dr->key, dr->key_len);
}

/* the free_cb of a NOCOPY payload: spoils it (a report read from it after
 * this would not be the message), then frees it */
static void ub_spoil_free(void *payload, void *opaque)
{
    (void)opaque;
    memset(payload, '#', 90);
    free(payload);
}

/* Scenario: batching off, lz4, a delivery report callback; the 12 messages
 * above (every opaque its index + 1), every other one NOCOPY from a heap
 * copy its free_cb spoils. Each report is the message's: kept, its exact
 * payload and key, its sequence id; each stored payload is exact. */
Test(fidelity_unbatched, reports_of_plain_entries_give_the_message_back)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    upulsar_conf_t *conf = ft_conf((const char *[]){"batching.enabled", "false", "compression",
                                                    "lz4", NULL});
    cr_assert_eq(upulsar_conf_set_delivery_report_cb(conf, ub_on_report, NULL), UPULSAR_OK);
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(c, NULL, "unbatched-dr", 0, conf, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_conf_destroy(conf);
    memset(ub_rep, 0, sizeof ub_rep);
    upulsar_future_t *f[UB_N];
    for (int i = 0; i < UB_N; i++) {
        ub_make(i);
        upulsar_send_opts_t o = ub[i].o;
        o.cb = NULL;
        o.opaque = (void *)(intptr_t)(i + 1);
        const void *pl = ub[i].len ? ub[i].payload : NULL;
        if (i % 2 == 1 && ub[i].len) {
            char *copy = malloc(96);
            cr_assert_not_null(copy);
            memcpy(copy, ub[i].payload, ub[i].len);
            o.flags |= UPULSAR_SEND_NOCOPY;
            o.free_cb = ub_spoil_free;
            pl = copy;
        }
        cr_assert_eq(upulsar_send(p, pl, ub[i].len, &o, &f[i]), UPULSAR_OK, "message %d: %s", i,
                     upulsar_last_error());
    }
    for (int i = 0; i < UB_N; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, NULL), UPULSAR_OK, "message %d", i);
        upulsar_future_release(f[i]);
    }
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    for (int i = 0; i < UB_N; i++) {
        const ub_report_t *r = &ub_rep[i];
        cr_assert(r->reports == 1 && r->err == UPULSAR_OK && r->kept,
                  "message %d: %d reports, err %d, kept %d", i, r->reports, r->err, r->kept);
        cr_assert(r->len == ub[i].len && !memcmp(r->payload, ub[i].payload, ub[i].len),
                  "message %d: the report's payload is not the message's", i);
        cr_assert_eq(r->seq, (int64_t)i, "message %d: sequence id", i);
        if (ub[i].o.partition_key)
            cr_assert(r->key_len == strlen(ub[i].key) && !memcmp(r->key, ub[i].key, r->key_len),
                      "message %d: the report's key", i);
        else
            cr_assert_eq(r->key_len, 0u, "message %d: a key it was not sent with", i);
    }
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "unbatched-dr", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)UB_N);
    for (int i = 0; i < UB_N; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        cr_assert(m->payload_len == ub[i].len && !memcmp(m->payload, ub[i].payload, ub[i].len),
                  "message %d: stored payload", i);
    }
    upulsar_tb_snapshot_free(s);
    ft_stop_client_and_broker(tb, c);
}
