/* test_ops_delivery.c -- delivery reports (upulsar_conf_set_delivery_report_cb):
 * every message gets exactly one report, on success and on failure, with
 * exactly its payload bytes, key, partition, sequence id, opaque and id
 * (success) or error and detail (failure), whether it resolved from a
 * batch (plain, compressed, behind an entry header that moved the
 * records) or failed while still in its producer's queue.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_common.h"
#include "fault.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(ops_delivery, .init = setup, .fini = teardown, .timeout = 120);

#define N 60
#define PARTS 3

/* What was sent, and what the reports said (written on the io thread,
 * read once every report has come: `reports` is the handoff). */
typedef struct {
    char payload[N][3000];
    size_t len[N];
    char key[N][2100];
    int keyed[N];
    int nocopy[N];
    /* reports */
    _Atomic int reports;
    int nreports[N];
    upulsar_err_t err[N];
    int partition[N];
    int64_t seq[N];
    int kept[N];
    int payload_ok[N];
    int key_ok[N];
    int detail_ok[N];
    int id_ok[N];
    upulsar_msg_id_t id[N];
    int freed_before_report[N];
    _Atomic int freed[N];
    int nullv[N];
    int cb_at[N], dr_at[N]; /* order the message's callback and report ran in */
    int order;              /* (io thread) */
    int bad_opaque;
} book_t;

static book_t *book;

/* Message i's opaque is &book->len[i]: the report must hand it back. */
static int index_of(void *opaque)
{
    if (!opaque)
        return -1;
    ptrdiff_t i = (size_t *)opaque - book->len;
    return i >= 0 && i < N ? (int)i : -1;
}

static void on_report(const upulsar_delivery_report_t *dr, void *opaque)
{
    book_t *b = opaque;
    int i = index_of(dr->msg_opaque);
    if (i < 0) {
        b->bad_opaque++;
        return;
    }
    b->nreports[i]++;
    b->err[i] = dr->err;
    b->partition[i] = dr->partition;
    b->seq[i] = dr->sequence_id;
    b->kept[i] = dr->payload_kept;
    b->payload_ok[i] = dr->payload_kept && dr->len == b->len[i] && !dr->null_value &&
                       (dr->len == 0 || memcmp(dr->payload, b->payload[i], dr->len) == 0);
    if (b->keyed[i])
        b->key_ok[i] = dr->key && !dr->key_b64 && dr->key_len == strlen(b->key[i]) &&
                       memcmp(dr->key, b->key[i], dr->key_len) == 0;
    else
        b->key_ok[i] = dr->key == NULL && dr->key_len == 0;
    if (dr->err == UPULSAR_OK) {
        b->detail_ok[i] = dr->detail == NULL;
        b->id_ok[i] = dr->id != NULL;
        if (dr->id)
            b->id[i] = *dr->id;
    } else {
        /* the detail, also through upulsar_last_error() */
        b->detail_ok[i] = dr->detail && dr->detail[0] &&
                          strcmp(upulsar_last_error(), dr->detail) == 0;
        b->id_ok[i] = dr->id == NULL;
    }
    b->freed_before_report[i] = atomic_load(&b->freed[i]);
    b->nullv[i] = dr->null_value;
    b->dr_at[i] = ++b->order;
    atomic_fetch_add(&b->reports, 1);
}

static void free_copy(void *payload, void *opaque)
{
    int i = index_of(opaque);
    if (i >= 0) {
        atomic_fetch_add(&book->freed[i], 1);
        memset(payload, 'X', book->len[i]); /* a report after this would differ */
    }
    free(payload);
}

static void fill(int i, size_t len, int keyed, size_t key_len)
{
    book->len[i] = len;
    for (size_t j = 0; j < len; j++)
        book->payload[i][j] = (char)('a' + (i * 7 + (int)j) % 26);
    book->keyed[i] = keyed;
    if (keyed) {
        int n = snprintf(book->key[i], sizeof book->key[i], "key-%d-", i);
        for (size_t j = (size_t)n; j < key_len; j++)
            book->key[i][j] = (char)('A' + (int)j % 26);
        book->key[i][key_len > (size_t)n ? key_len : (size_t)n] = '\0';
    }
}

static upulsar_producer_t *start_dr(const char *topic, int parts, const char *const *kv)
{
    if (parts)
        cr_assert_eq(upulsar_tb_set_partitions(tb, topic, parts), UPULSAR_OK);
    upulsar_conf_t *conf = ft_conf(kv);
    cr_assert_eq(upulsar_conf_set_delivery_report_cb(conf, on_report, book), UPULSAR_OK);
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(client, NULL, topic, parts, conf, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_conf_destroy(conf);
    return p;
}

/* Send message @p i as fill() made it, keyed if it is, its opaque
 * &book->len[i]; with @p nocopy from a heap copy handed over with
 * UPULSAR_SEND_NOCOPY (freed by free_copy). */
static void send_filled(upulsar_producer_t *p, int i, int nocopy, upulsar_future_t **f)
{
    upulsar_send_opts_t o = {.partition_key = book->keyed[i] ? book->key[i] : NULL,
                             .opaque = &book->len[i]};
    const void *pl = book->payload[i];
    if (nocopy) {
        char *copy = malloc(book->len[i] + 1);
        cr_assert(copy);
        memcpy(copy, book->payload[i], book->len[i]);
        o.flags = UPULSAR_SEND_NOCOPY;
        o.free_cb = free_copy;
        pl = copy;
        book->nocopy[i] = 1;
    }
    cr_assert_eq(upulsar_send(p, pl, book->len[i], &o, f), UPULSAR_OK, "%d: %s", i,
                 upulsar_last_error());
}

static int all_reported(void *a) { return atomic_load(&book->reports) >= *(int *)a; }

/* Send N messages (every other keyed, every fifth NOCOPY), wait for every
 * future; check each report against what was sent and the future. */
static void send_and_check_success(const char *topic, const char *const *kv, size_t first_key_len)
{
    book = calloc(1, sizeof *book);
    cr_assert(book);
    upulsar_producer_t *p = start_dr(topic, PARTS, kv);
    upulsar_future_t *f[N];
    for (int i = 0; i < N; i++) {
        fill(i, (size_t)(i * 37) % 2500, i % 2 == 0, i == 0 ? first_key_len : 8);
        send_filled(p, i, i % 5 == 4, &f[i]);
    }
    upulsar_msg_id_t ids[N];
    for (int i = 0; i < N; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, &ids[i]), UPULSAR_OK, "%d: %s", i,
                     upulsar_last_error());
        upulsar_future_release(f[i]);
    }
    int want = N;
    cr_assert_eq(ft_wait_for(all_reported, &want), 1, "%d reports of %d",
                 atomic_load(&book->reports), N);
    cr_assert_eq(book->bad_opaque, 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(book->nreports[i], 1, "message %d: %d reports", i, book->nreports[i]);
        cr_assert_eq(book->err[i], UPULSAR_OK);
        cr_assert(book->kept[i] && book->payload_ok[i], "message %d: payload not reported as sent",
                  i);
        cr_assert(book->key_ok[i], "message %d: key not reported as sent", i);
        cr_assert(book->detail_ok[i] && book->id_ok[i]);
        cr_assert_eq(memcmp(&book->id[i], &ids[i], sizeof ids[i]), 0, "message %d: id differs",
                     i);
        cr_assert_eq(book->partition[i], ids[i].partition);
    }
    /* the sequence id reported is the one the broker stored the message with */
    for (int g = 0; g < PARTS; g++) {
        char t[128];
        snprintf(t, sizeof t, "%s-partition-%d", topic, g);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, t, &s), UPULSAR_OK);
        for (size_t k = 0; k < upulsar_tb_snapshot_count(s); k++) {
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, k);
            int found = 0;
            for (int i = 0; i < N; i++)
                if (ids[i].partition == g && ids[i].ledger_id == m->ledger_id &&
                    ids[i].entry_id == m->entry_id && ids[i].batch_index == m->batch_index) {
                    cr_assert_eq(book->seq[i], (int64_t)m->sequence_id, "message %d", i);
                    cr_assert_eq(m->payload_len, book->len[i]);
                    found++;
                }
            cr_assert_eq(found, 1);
        }
        upulsar_tb_snapshot_free(s);
    }
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    for (int i = 0; i < N; i++)
        cr_assert_eq(atomic_load(&book->freed[i]), book->nocopy[i]);
    free(book);
    book = NULL;
}

Test(ops_delivery, reports_carry_each_messages_payload_key_partition_sequence_and_id)
{
    const char *kv[] = {"batch.max.delay.ms", "5", "batch.mode", "linger", NULL};
    send_and_check_success("dr-plain", kv, 8);
}

Test(ops_delivery, reports_read_payloads_back_from_compressed_batches)
{
    const char *kv[] = {"batch.max.delay.ms", "5", "batch.mode", "linger", "compression", "lz4",
                        NULL};
    send_and_check_success("dr-lz4", kv, 8);
}

Test(ops_delivery, reports_read_payloads_back_when_a_long_entry_key_moved_the_records)
{
    /* the first message's 2000-byte key is the entry's key: its header is
     * larger than the room kept in front of the records, which move up */
    const char *kv[] = {"batch.max.delay.ms", "5", "batch.mode", "linger", NULL};
    send_and_check_success("dr-longkey", kv, 2000);
}

Test(ops_delivery, reports_read_payloads_back_with_batching_off_and_key_based_batches)
{
    const char *off[] = {"batching.enabled", "false", NULL};
    send_and_check_success("dr-nobatch", off, 8);
    const char *kb[] = {"batching.type", "key_based", "batch.max.delay.ms", "5", NULL};
    send_and_check_success("dr-keybased", kb, 8);
}

/* A record that wraps around the end of its ring and cannot be copied out
 * (no memory for the copy) fails alone, and like any message that fails in
 * the queue: its future, its own callback, its report with its payload,
 * then its free_cb; the others are stored. */
static _Atomic int wrap_cb_calls[N];
static void wrap_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)err;
    (void)id;
    int i = index_of(opaque);
    if (i >= 0) {
        atomic_fetch_add(&wrap_cb_calls[i], 1);
        book->cb_at[i] = ++book->order;
    }
}

/* Message i of the wrap test: NOCOPY payload, the ring holds its
 * 2000-byte key (about 2 KiB). QUEUE_FULL is returned as is. */
static upulsar_err_t wrap_send(upulsar_producer_t *p, int i, upulsar_future_t **f)
{
    if (!book->len[i]) {
        atomic_store(&wrap_cb_calls[i], 0);
        fill(i, 100 + (size_t)i, 1, 2000);
    }
    char *copy = malloc(book->len[i]);
    cr_assert(copy);
    memcpy(copy, book->payload[i], book->len[i]);
    upulsar_send_opts_t o = {.partition_key = book->key[i], .flags = UPULSAR_SEND_NOCOPY,
                             .free_cb = free_copy, .cb = wrap_cb, .opaque = &book->len[i]};
    upulsar_err_t e = upulsar_send(p, copy, book->len[i], &o, f);
    if (e != UPULSAR_OK)
        free(copy);
    else
        book->nocopy[i] = 1;
    return e;
}

/* A record that wraps around the end of its ring and cannot be copied out
 * (no memory for the copy) fails alone, and like any message that fails in
 * the queue: its future, its own callback, its report with its payload,
 * then its free_cb; the others are stored.
 * Making a record wrap: the ring starts over at its first cell whenever it
 * is empty, so it is kept from emptying. With every receipt 20 ms late and
 * one entry (of one message) in flight, the ring empties one record per
 * receipt; records fill it until QUEUE_FULL, and the next record, written
 * once the first leaves the ring (the others, drained over about half a
 * second, still in it), is the one that passes the ring's end. */
Test(ops_delivery, a_record_that_cannot_be_copied_out_of_the_queue_is_reported_and_freed)
{
    book = calloc(1, sizeof *book);
    cr_assert(book);
    const char *topic = "dr-wrap";
    const char *kv[] = {"queue.buffer.bytes", "65536", "max.inflight.batches", "1",
                        "batch.max.messages", "1", "send.timeout.ms", "0", NULL};
    upulsar_producer_t *p = start_dr(topic, 0, kv);
    cr_assert_eq(upulsar_tb_delay_receipts(tb, 20), UPULSAR_OK);
    upulsar_future_t *f[N];
    int n = 0;
    while (n < N - 8 && wrap_send(p, n, &f[n]) == UPULSAR_OK)
        n++;
    cr_assert_lt(n, N - 8, "the ring never filled");
    cr_assert_gt(n, 2);
    atomic_store(&up_fault_rec_scratch_nomem, 1);
    for (int last = n + 4; n < last; n++) {
        upulsar_err_t e;
        while ((e = wrap_send(p, n, &f[n])) == UPULSAR_ERR__QUEUE_FULL)
            ft_pause_ms(1);
        cr_assert_eq(e, UPULSAR_OK, "%d: %s", n, upulsar_last_error());
    }
    int failed = -1;
    for (int i = 0; i < n; i++) {
        upulsar_err_t e = upulsar_future_wait(f[i], FT_WAIT_MS, NULL);
        upulsar_future_release(f[i]);
        if (e != UPULSAR_OK) {
            cr_assert_eq(e, UPULSAR_ERR__NOMEM, "message %d: %s", i, upulsar_err_name(e));
            cr_assert_eq(failed, -1, "messages %d and %d failed", failed, i);
            failed = i;
        }
    }
    cr_assert_eq(atomic_exchange(&up_fault_rec_scratch_nomem, 0), 0, "no record wrapped");
    cr_assert_neq(failed, -1, "the record that could not be copied out did not fail");
    cr_assert_eq(upulsar_tb_delay_receipts(tb, 0), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    cr_assert_eq(book->bad_opaque, 0);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(book->nreports[i], 1, "message %d: %d reports", i, book->nreports[i]);
        cr_assert_eq(atomic_load(&wrap_cb_calls[i]), 1, "message %d: %d callbacks", i,
                     atomic_load(&wrap_cb_calls[i]));
        cr_assert_eq(atomic_load(&book->freed[i]), 1, "message %d: freed %d times", i,
                     atomic_load(&book->freed[i]));
        cr_assert_eq(book->err[i], i == failed ? UPULSAR_ERR__NOMEM : UPULSAR_OK);
        cr_assert(book->kept[i] && book->payload_ok[i], "message %d: payload not reported", i);
        if (i == failed) /* a sent one is freed once encoded, before its receipt */
            cr_assert(!book->freed_before_report[i], "message %d: freed before its report", i);
        cr_assert_lt(book->cb_at[i], book->dr_at[i], "message %d: report before callback", i);
    }
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, topic, &st), UPULSAR_OK);
    cr_assert_eq(st.messages, (uint64_t)n - 1);
    free(book);
    book = NULL;
}

static int stored_at_least_one(void *a)
{
    upulsar_tb_topic_stats_t st;
    upulsar_tb_topic_stats(tb, a, &st);
    return st.messages >= 1;
}

Test(ops_delivery, failed_messages_are_reported_with_payload_key_and_detail_from_batch_and_queue)
{
    /* receipts held, one batch in flight at most: the first entry waits
     * for its receipt, everything after it waits in the queue; a stop
     * without waiting fails both kinds */
    book = calloc(1, sizeof *book);
    cr_assert(book);
    const char *topic = "dr-fail";
    const char *kv[] = {"max.inflight.batches", "1", "batch.max.messages", "4",
                        "send.timeout.ms", "0", NULL};
    cr_assert_eq(upulsar_tb_hold_receipts(tb, topic), UPULSAR_OK);
    upulsar_producer_t *p = start_dr(topic, 0, kv);
    for (int i = 0; i < N; i++) {
        fill(i, (size_t)(i * 53) % 2900, i % 3 != 0, 12);
        send_filled(p, i, i % 4 == 1, NULL);
        if (i == 0) /* the first entry is out before the rest is sent */
            cr_assert_eq(ft_wait_for(stored_at_least_one, (void *)topic), 1);
    }
    cr_assert_eq(upulsar_producer_stop(p, 0), UPULSAR_ERR__TIMED_OUT);
    /* stop returns once every message resolved */
    cr_assert_eq(atomic_load(&book->reports), N);
    cr_assert_eq(book->bad_opaque, 0);
    int from_batch = 0, from_queue = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_eq(book->nreports[i], 1, "message %d: %d reports", i, book->nreports[i]);
        cr_assert_eq(book->err[i], UPULSAR_ERR__CLOSED, "message %d: %s", i,
                     upulsar_err_name(book->err[i]));
        cr_assert(book->payload_ok[i], "message %d: payload not reported as sent", i);
        cr_assert(book->key_ok[i], "message %d: key not reported as sent", i);
        cr_assert(book->detail_ok[i] && book->id_ok[i], "message %d", i);
        cr_assert_eq(book->partition[i], -1);
        cr_assert_eq(book->freed_before_report[i], 0, "message %d: payload freed first", i);
        cr_assert_eq(atomic_load(&book->freed[i]), book->nocopy[i], "message %d", i);
        if (book->seq[i] >= 0)
            from_batch++;
        else
            from_queue++;
    }
    /* both places a failed message's payload is read from were used */
    cr_assert_geq(from_batch, 1);
    cr_assert_geq(from_queue, 1);
    free(book);
    book = NULL;
}

static void legacy_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)err;
    (void)id;
    int i = index_of(opaque);
    if (i >= 0)
        book->cb_at[i] = ++book->order; /* same io thread as the reports */
}

Test(ops_delivery, null_values_are_reported_as_such_and_the_own_callback_still_runs_first)
{
    book = calloc(1, sizeof *book);
    cr_assert(book);
    upulsar_producer_t *p = start_dr("dr-null", 0, (const char *[]){"batch.max.delay.ms", "1", NULL});
    book->len[0] = 0;
    book->len[1] = 0;
    upulsar_send_opts_t tomb = {.flags = UPULSAR_SEND_NULL_VALUE, .opaque = &book->len[0],
                                .cb = legacy_cb};
    upulsar_send_opts_t empty = {.opaque = &book->len[1], .cb = legacy_cb};
    upulsar_future_t *f[2];
    cr_assert_eq(upulsar_send(p, NULL, 0, &tomb, &f[0]), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_send(p, "", 0, &empty, &f[1]), UPULSAR_OK);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, NULL), UPULSAR_OK);
        upulsar_future_release(f[i]);
    }
    int want = 2;
    cr_assert_eq(ft_wait_for(all_reported, &want), 1);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(book->nreports[i], 1);
        cr_assert(book->kept[i]);
        cr_assert(book->cb_at[i] > 0 && book->cb_at[i] < book->dr_at[i],
                  "message %d: its own callback (%d) must run before its report (%d)", i,
                  book->cb_at[i], book->dr_at[i]);
    }
    cr_assert_eq(book->nullv[0], 1, "the tombstone is reported as a null value");
    cr_assert_eq(book->nullv[1], 0, "an empty value is not a null value");
    cr_assert(book->payload_ok[1]);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    free(book);
    book = NULL;
}
