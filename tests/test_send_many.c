/* test_send_many.c -- upulsar_send_many() queues the messages of a call in
 * runs (one reservation for consecutive messages to one producer); what a
 * caller sees must be what upulsar_send() in a loop gives:
 *  - mixed calls (keys changing, keyless round robin, explicit partitions,
 *    options differing per message, NOCOPY payloads) store every message
 *    exactly once, in order per partition, with its exact bytes, key and
 *    properties; each future resolves with the position the broker stored
 *    its message at; each free_cb runs once;
 *  - an invalid message in the middle of a run ends the call: *accepted is
 *    the prefix before it, the error and detail are its own, nothing after
 *    it is stored or called back, and its future slot is NULL;
 *  - a memory budget too small for the call: QUEUE_FULL, and exactly the
 *    accepted prefix is stored;
 *  - the messages of one call that go to one producer one after another are
 *    queued together: with several threads sending at once, another
 *    thread's messages never come between them.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <inttypes.h>

#include "fault_common.h"

TestSuite(send_many, .timeout = 120);

/* ---- mixed runs ---------------------------------------------------------- */

enum { MIX_N = 1200, MIX_PARTS = 3 };

typedef struct mix_msg {
    char buf[48]; /* the payload (copied sends) */
    char *nc;     /* the payload of a NOCOPY send (heap), else NULL */
    size_t len;
    char key[16];
    int keyed, part, props;
    int key_part; /* a keyed message: its key's partition */
    upulsar_property_t pr[2];
    char pv[2][32];
    upulsar_send_opts_t o;
    upulsar_future_t *f;
    upulsar_msg_id_t id;
    _Atomic int frees, cbs;
    int seen;
} mix_msg_t;

static mix_msg_t *mix;

static void mix_free(void *payload, void *opaque)
{
    mix_msg_t *m = opaque;
    if (payload == m->nc)
        atomic_fetch_add(&m->frees, 1);
}

static void mix_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)id;
    mix_msg_t *m = opaque;
    if (err == UPULSAR_OK)
        atomic_fetch_add(&m->cbs, 1);
}

/* Message @p i: stretches of 40 keyless messages (round robin), of keyed
 * ones (the key changing every 5), of ones to an explicit partition
 * (changing every 7); properties on every third, NOCOPY on every fifth,
 * a callback on every fourth, the event time i + 1 on all (it names the
 * message in the broker's log). */
static void mix_make(int i, mix_msg_t *m)
{
    int kind = (i / 40) % 3;
    m->len = (size_t)snprintf(m->buf, sizeof m->buf, "mix:%d:", i) + (size_t)(i % 17);
    memset(m->buf + m->len - (size_t)(i % 17), 'a' + i % 26, (size_t)(i % 17));
    m->o = (upulsar_send_opts_t){.event_time_ms = (uint64_t)i + 1};
    m->part = -1;
    if (kind == 1) {
        snprintf(m->key, sizeof m->key, "key-%d", i / 5);
        m->o.partition_key = m->key;
        m->keyed = 1;
    } else if (kind == 2) {
        m->part = (i / 7) % MIX_PARTS;
        m->o.flags |= UPULSAR_SEND_PARTITION;
        m->o.partition = m->part;
    }
    if (i % 3 == 0) {
        m->props = 1 + i % 2;
        for (int k = 0; k < m->props; k++) {
            snprintf(m->pv[k], sizeof m->pv[k], "v%d.%d", i, k);
            m->pr[k] = (upulsar_property_t){k ? "b" : "a", m->pv[k]};
        }
        m->o.properties = m->pr;
        m->o.properties_cnt = (size_t)m->props;
    }
    if (i % 4 == 0) {
        m->o.cb = mix_cb;
        m->o.opaque = m;
    }
    if (i % 5 == 0) {
        m->nc = malloc(m->len);
        cr_assert_not_null(m->nc);
        memcpy(m->nc, m->buf, m->len);
        m->o.flags |= UPULSAR_SEND_NOCOPY;
        m->o.free_cb = mix_free;
        m->o.opaque = m;
    }
}

/* Scenario:
 *  1. A topic of 3 partitions; 1,200 messages of mixed kinds (mix_make())
 *     in calls of 1, 2, 7, 64, 100 and 200 messages, each with a future.
 *  2. Every call queues all of its messages (OK, accepted = its count).
 *  3. Every future succeeds; after the stop, each partition's log holds
 *     each message once, in send order, with its bytes, key and
 *     properties, a keyed one on its key's partition, an explicit one on
 *     its partition, at the position its future reported; every callback
 *     and every free_cb ran once. */
Test(send_many, mixed_runs_store_each_message_once_in_order_with_its_bytes)
{
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "mix", MIX_PARTS), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(c, "mixp", "mix", 0, NULL);
    mix = calloc(MIX_N, sizeof *mix);
    upulsar_msg_t *msgs = calloc(MIX_N, sizeof *msgs);
    upulsar_future_t **futs = calloc(MIX_N, sizeof *futs);
    cr_assert(mix && msgs && futs);
    for (int i = 0; i < MIX_N; i++) {
        mix_make(i, &mix[i]);
        msgs[i] = (upulsar_msg_t){mix[i].nc ? mix[i].nc : mix[i].buf, mix[i].len, &mix[i].o};
    }
    static const int sizes[] = {1, 2, 7, 64, 100, 200};
    for (int i = 0, k = 0; i < MIX_N; k++) {
        int n = sizes[k % 6] < MIX_N - i ? sizes[k % 6] : MIX_N - i;
        size_t acc = 0;
        cr_assert_eq(upulsar_send_many(p, msgs + i, (size_t)n, futs + i, &acc), UPULSAR_OK,
                     "call at %d: %s", i, upulsar_last_error());
        cr_assert_eq(acc, (size_t)n);
        i += n;
    }
    for (int i = 0; i < MIX_N; i++) {
        cr_assert_not_null(futs[i], "message %d has no future", i);
        cr_assert_eq(upulsar_future_wait(futs[i], FT_WAIT_MS, &mix[i].id), UPULSAR_OK,
                     "message %d: %s", i, upulsar_last_error());
        upulsar_future_release(futs[i]);
        if (mix[i].keyed)
            mix[i].key_part = upulsar_producer_partition_for_key(p, mix[i].key);
    }
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    for (int part = 0; part < MIX_PARTS; part++) {
        char topic[64];
        snprintf(topic, sizeof topic, "mix-partition-%d", part);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK, "%s", upulsar_last_error());
        cr_assert_eq(upulsar_tb_snapshot_skipped(s), 0);
        int last = -1;
        for (size_t j = 0; j < upulsar_tb_snapshot_count(s); j++) {
            const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, j);
            int i = (int)sm->event_time - 1;
            cr_assert(i >= 0 && i < MIX_N, "%s #%zu: not a sent message", topic, j);
            mix_msg_t *m = &mix[i];
            cr_assert_eq(++m->seen, 1, "message %d stored twice", i);
            cr_assert_gt(i, last, "%s: message %d stored after %d", topic, i, last);
            last = i;
            cr_assert(sm->payload_len == m->len && !memcmp(sm->payload, m->buf, m->len),
                      "message %d: bytes differ", i);
            if (m->keyed) {
                cr_assert(sm->partition_key && !strcmp(sm->partition_key, m->key),
                          "message %d: key", i);
                cr_assert_eq(part, m->key_part,
                             "message %d (key %s) on partition %d", i, m->key, part);
            } else {
                cr_assert_null(sm->partition_key, "message %d", i);
            }
            if (m->part >= 0)
                cr_assert_eq(part, m->part, "message %d for partition %d on %d", i, m->part,
                             part);
            cr_assert_eq(sm->properties_cnt, (size_t)m->props, "message %d: properties", i);
            for (int k = 0; k < m->props; k++)
                cr_assert(!strcmp(sm->properties[k].key, m->pr[k].key) &&
                              !strcmp(sm->properties[k].value, m->pr[k].value),
                          "message %d: property %d", i, k);
            cr_assert_eq(m->id.partition, part, "message %d: future's partition", i);
            cr_assert(m->id.ledger_id == sm->ledger_id && m->id.entry_id == sm->entry_id &&
                          m->id.batch_index == sm->batch_index,
                      "message %d: future says %" PRIu64 ":%" PRIu64 ":%d, stored at %" PRIu64
                      ":%" PRIu64 ":%d",
                      i, m->id.ledger_id, m->id.entry_id, m->id.batch_index, sm->ledger_id,
                      sm->entry_id, sm->batch_index);
        }
        upulsar_tb_snapshot_free(s);
    }
    for (int i = 0; i < MIX_N; i++) {
        cr_assert_eq(mix[i].seen, 1, "message %d stored %d times", i, mix[i].seen);
        cr_assert_eq(atomic_load(&mix[i].cbs), i % 4 == 0, "message %d: callbacks", i);
        cr_assert_eq(atomic_load(&mix[i].frees), mix[i].nc != NULL, "message %d: free_cb", i);
        free(mix[i].nc);
    }
    free(mix);
    free(msgs);
    free(futs);
    ft_stop_client_and_broker(tb, c);
}

/* ---- a refused message in the middle --------------------------------------- */

enum { MID_N = 50, MID_BAD = 30 };

static _Atomic int mid_cbs[MID_N], mid_frees[MID_N];

static void mid_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)err;
    (void)id;
    atomic_fetch_add(&mid_cbs[(intptr_t)opaque], 1);
}

static void mid_free(void *payload, void *opaque)
{
    (void)payload;
    atomic_fetch_add(&mid_frees[(intptr_t)opaque], 1);
}

/* One call of MID_N keyless messages to a non-partitioned topic (one run),
 * message MID_BAD made invalid by @p spoil; every message with a callback,
 * every second NOCOPY. Returns after checking that exactly messages
 * 0 .. MID_BAD - 1 were queued, stored and called back, that the error is
 * @p want with a detail containing @p detail, and that the refused
 * message's future slot is NULL. */
static void mid_case(const char *topic, void (*spoil)(upulsar_send_opts_t *),
                     upulsar_err_t want, const char *detail)
{
    memset(mid_cbs, 0, sizeof mid_cbs);
    memset(mid_frees, 0, sizeof mid_frees);
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(c, NULL, topic, 0, NULL);
    static char bufs[MID_N][32];
    upulsar_send_opts_t o[MID_N];
    upulsar_msg_t msgs[MID_N];
    upulsar_future_t *futs[MID_N];
    for (int i = 0; i < MID_N; i++) {
        int n = snprintf(bufs[i], sizeof bufs[i], "mid:%d", i);
        o[i] = (upulsar_send_opts_t){.cb = mid_cb, .opaque = (void *)(intptr_t)i,
                                     .event_time_ms = (uint64_t)i + 1};
        if (i % 2) {
            o[i].flags = UPULSAR_SEND_NOCOPY;
            o[i].free_cb = mid_free;
        }
        msgs[i] = (upulsar_msg_t){bufs[i], (size_t)n, &o[i]};
        futs[i] = (upulsar_future_t *)(intptr_t)1; /* must be overwritten */
    }
    spoil(&o[MID_BAD]);
    size_t acc = 99;
    upulsar_err_t e = upulsar_send_many(p, msgs, MID_N, futs, &acc);
    cr_assert_eq(e, want, "%s", upulsar_err_name(e));
    cr_assert(strstr(upulsar_last_error(), detail), "detail: %s", upulsar_last_error());
    cr_assert_eq(acc, (size_t)MID_BAD);
    cr_assert_null(futs[MID_BAD], "the refused message's future slot is not NULL");
    for (int i = 0; i < MID_BAD; i++) {
        cr_assert(futs[i] != NULL && futs[i] != (upulsar_future_t *)(intptr_t)1,
                  "message %d has no future", i);
        cr_assert_eq(upulsar_future_wait(futs[i], FT_WAIT_MS, NULL), UPULSAR_OK);
        upulsar_future_release(futs[i]);
    }
    for (int i = MID_BAD + 1; i < MID_N; i++)
        cr_assert_eq(futs[i], (upulsar_future_t *)(intptr_t)1, "message %d: slot written", i);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)MID_BAD);
    for (size_t j = 0; j < upulsar_tb_snapshot_count(s); j++) {
        const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, j);
        cr_assert_eq(sm->event_time, j + 1, "#%zu is message %" PRIu64, j, sm->event_time - 1);
        cr_assert(sm->payload_len == strlen(bufs[j]) &&
                  !memcmp(sm->payload, bufs[j], sm->payload_len));
    }
    upulsar_tb_snapshot_free(s);
    for (int i = 0; i < MID_N; i++) {
        cr_assert_eq(atomic_load(&mid_cbs[i]), i < MID_BAD, "message %d: callbacks", i);
        /* a refused NOCOPY payload stays the caller's: no free_cb */
        cr_assert_eq(atomic_load(&mid_frees[i]), i < MID_BAD && i % 2, "message %d: free_cb", i);
    }
    ft_stop_client_and_broker(tb, c);
}

static void bad_ordering_key(upulsar_send_opts_t *o)
{
    o->ordering_key = "x";
    o->ordering_key_len = 0;
}

static void bad_partition(upulsar_send_opts_t *o)
{
    o->flags |= UPULSAR_SEND_PARTITION;
    o->partition = 5;
}

static void bad_nocopy(upulsar_send_opts_t *o)
{
    o->flags |= UPULSAR_SEND_NOCOPY;
    o->free_cb = NULL;
}

Test(send_many, invalid_option_in_a_run_queues_exactly_the_prefix)
{
    mid_case("mid-okey", bad_ordering_key, UPULSAR_ERR__INVALID_ARG, "ordering_key");
}

Test(send_many, partition_out_of_range_in_a_run_queues_exactly_the_prefix)
{
    mid_case("mid-part", bad_partition, UPULSAR_ERR__INVALID_ARG, "out of range");
}

Test(send_many, nocopy_without_free_cb_in_a_run_queues_exactly_the_prefix)
{
    mid_case("mid-nocopy", bad_nocopy, UPULSAR_ERR__INVALID_ARG, "free_cb");
}

/* ---- the memory budget ------------------------------------------------------ */

/* Scenario:
 *  1. memory.limit.bytes 64 KiB, fail fast, receipts held: nothing the
 *     producer takes comes back.
 *  2. upulsar_send_many() of 5,000 100-byte messages, every third NOCOPY
 *     (its payload counted too): QUEUE_FULL naming memory.limit.bytes,
 *     some accepted, not all.
 *  3. Receipts released: exactly that prefix is stored, in order, once
 *     each, and the NOCOPY payloads of the prefix (only) are freed. */
enum { BUD_N = 5000 };
static _Atomic int bud_frees[BUD_N];

static void bud_free(void *payload, void *opaque)
{
    (void)payload;
    atomic_fetch_add(&bud_frees[(intptr_t)opaque], 1);
}

/* A broker holding @p topic's receipts, a client of memory.limit.bytes
 * 64 KiB failing fast, and its producer on @p topic. */
static upulsar_producer_t *budget_producer(const char *topic, upulsar_tb_t **tb,
                                           upulsar_client_t **c)
{
    *tb = ft_broker();
    const char *ckv[] = {"memory.limit.bytes", "65536", NULL};
    *c = ft_client(*tb, ckv);
    /* queue.buffer.bytes set: a ring of its own size, not sized from the
     * small budget (the budget, not the ring, must refuse here) */
    const char *kv[] = {"block.if.queue.full", "false", "send.timeout.ms", "0",
                        "queue.buffer.bytes", "1048576", NULL};
    upulsar_producer_t *p = ft_producer(*c, NULL, topic, 0, kv);
    cr_assert_eq(upulsar_tb_hold_receipts(*tb, topic), UPULSAR_OK);
    return p;
}

/* One upulsar_send_many() of the BUD_N @p msgs to budget_producer() @p p:
 * QUEUE_FULL naming memory.limit.bytes, some accepted, not all; then the
 * receipts released and the producer stopped, and *@p s the topic's log,
 * holding as many entries as were accepted. Returns that count. */
static size_t budget_run(upulsar_tb_t *tb, upulsar_producer_t *p, const char *topic,
                         const upulsar_msg_t *msgs, upulsar_tb_snapshot_t **s)
{
    size_t acc = 0;
    upulsar_err_t e = upulsar_send_many(p, msgs, BUD_N, NULL, &acc);
    cr_assert_eq(e, UPULSAR_ERR__QUEUE_FULL, "%s", upulsar_err_name(e));
    cr_assert(strstr(upulsar_last_error(), "memory.limit.bytes"), "%s", upulsar_last_error());
    cr_assert(acc > 0 && acc < BUD_N, "accepted %zu", acc);
    cr_assert_eq(upulsar_tb_release_receipts(tb, topic), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(*s), acc);
    return acc;
}

Test(send_many, memory_budget_reached_queues_exactly_the_prefix)
{
    upulsar_tb_t *tb;
    upulsar_client_t *c;
    upulsar_producer_t *p = budget_producer("many-budget", &tb, &c);
    char(*bufs)[100] = calloc(BUD_N, 100);
    upulsar_send_opts_t *o = calloc(BUD_N, sizeof *o);
    upulsar_msg_t *msgs = calloc(BUD_N, sizeof *msgs);
    cr_assert(bufs && o && msgs);
    for (int i = 0; i < BUD_N; i++) {
        snprintf(bufs[i], 100, "budget:%d:", i);
        o[i].event_time_ms = (uint64_t)i + 1;
        if (i % 3 == 0) {
            o[i].flags = UPULSAR_SEND_NOCOPY;
            o[i].free_cb = bud_free;
            o[i].opaque = (void *)(intptr_t)i;
        }
        msgs[i] = (upulsar_msg_t){bufs[i], 100, &o[i]};
    }
    upulsar_tb_snapshot_t *s;
    size_t acc = budget_run(tb, p, "many-budget", msgs, &s);
    for (size_t j = 0; j < acc; j++) {
        const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, j);
        cr_assert_eq(sm->event_time, j + 1, "#%zu is message %" PRIu64, j, sm->event_time - 1);
        cr_assert(sm->payload_len == 100 && !memcmp(sm->payload, bufs[j], 100));
    }
    upulsar_tb_snapshot_free(s);
    for (int i = 0; i < BUD_N; i++)
        cr_assert_eq(atomic_load(&bud_frees[i]), (size_t)i < acc && i % 3 == 0,
                     "message %d: free_cb", i);
    free(bufs);
    free(o);
    free(msgs);
    ft_stop_client_and_broker(tb, c);
}

/* Scenario: as above on a topic without partitions (one producer: keyed
 * messages share runs), every message with a key of its own ("key-<i>")
 * and nothing else but an event time (plain records), memory.limit.bytes
 * 64 KiB: the run the budget refuses goes one by one until a message is
 * refused. Exactly the prefix is stored, in order, each with its key and
 * bytes. */
Test(send_many, memory_budget_reached_with_keyed_runs_queues_exactly_the_prefix)
{
    upulsar_tb_t *tb;
    upulsar_client_t *c;
    upulsar_producer_t *p = budget_producer("many-budget-keyed", &tb, &c);
    char(*bufs)[100] = calloc(BUD_N, 100);
    char(*keys)[16] = calloc(BUD_N, 16);
    upulsar_send_opts_t *o = calloc(BUD_N, sizeof *o);
    upulsar_msg_t *msgs = calloc(BUD_N, sizeof *msgs);
    cr_assert(bufs && keys && o && msgs);
    for (int i = 0; i < BUD_N; i++) {
        memset(bufs[i], 'a' + i % 26, 100);
        snprintf(bufs[i], 100, "keyed-budget:%d:", i);
        snprintf(keys[i], 16, "key-%d", i);
        o[i] = (upulsar_send_opts_t){.partition_key = keys[i], .event_time_ms = (uint64_t)i + 1};
        msgs[i] = (upulsar_msg_t){bufs[i], 100, &o[i]};
    }
    upulsar_tb_snapshot_t *s;
    size_t acc = budget_run(tb, p, "many-budget-keyed", msgs, &s);
    cr_assert_gt(acc, 64, "accepted %zu: not a whole run", acc);
    for (size_t j = 0; j < acc; j++) {
        const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, j);
        cr_assert_eq(sm->event_time, j + 1, "#%zu is message %" PRIu64, j, sm->event_time - 1);
        cr_assert(sm->payload_len == 100 && !memcmp(sm->payload, bufs[j], 100), "#%zu: bytes",
                  j);
        cr_assert(sm->partition_key && !strcmp(sm->partition_key, keys[j]), "#%zu: key %s", j,
                  sm->partition_key ? sm->partition_key : "(none)");
    }
    upulsar_tb_snapshot_free(s);
    free(bufs);
    free(keys);
    free(o);
    free(msgs);
    ft_stop_client_and_broker(tb, c);
}

/* Scenario: one call of 3 keyed messages without other options to a topic
 * without partitions (a ring of 1 MiB): 100 bytes, 80 KiB (more than a
 * sixteenth of the ring: it goes alone), 100 bytes. All three are stored,
 * in order, with their keys and bytes. */
Test(send_many, a_large_keyed_message_goes_alone_between_its_neighbours)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"queue.buffer.bytes", "1048576", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, "many-alone-keyed", 0, kv);
    enum { BIG = 80 * 1024 };
    static char small[2][100], big[BIG];
    memset(small[0], 'x', 100);
    memset(small[1], 'y', 100);
    for (int i = 0; i < BIG; i++)
        big[i] = (char)(i * 13 + 5);
    static const char *const k[3] = {"first", "the-large-one", "last"};
    upulsar_send_opts_t o[3] = {
        {.partition_key = k[0]}, {.partition_key = k[1]}, {.partition_key = k[2]}};
    upulsar_msg_t msgs[3] = {{small[0], 100, &o[0]}, {big, BIG, &o[1]}, {small[1], 100, &o[2]}};
    const void *want[3] = {small[0], big, small[1]};
    size_t wlen[3] = {100, BIG, 100};
    upulsar_future_t *f[3];
    size_t acc = 0;
    cr_assert_eq(upulsar_send_many(p, msgs, 3, f, &acc), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(acc, 3u);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, NULL), UPULSAR_OK, "message %d: %s",
                     i, upulsar_last_error());
        upulsar_future_release(f[i]);
    }
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "many-alone-keyed", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 3u);
    for (size_t j = 0; j < 3; j++) {
        const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, j);
        cr_assert(sm->payload_len == wlen[j] && !memcmp(sm->payload, want[j], wlen[j]),
                  "#%zu: bytes", j);
        cr_assert(sm->partition_key && !strcmp(sm->partition_key, k[j]), "#%zu: key", j);
    }
    upulsar_tb_snapshot_free(s);
    ft_stop_client_and_broker(tb, c);
}

/* ---- runs from several threads ---------------------------------------------- */

enum { RUN_THREADS = 4, RUN_CALLS = 300 / FT_SCALE * 3, RUN_LEN = 16 };

static upulsar_producer_t *run_p;

static void *run_sender(void *a)
{
    int t = (int)(intptr_t)a;
    char bufs[RUN_LEN][32];
    upulsar_msg_t msgs[RUN_LEN];
    for (int k = 0; k < RUN_CALLS; k++) {
        for (int i = 0; i < RUN_LEN; i++) {
            int n = snprintf(bufs[i], sizeof bufs[i], "%d:%d:%d", t, k, i);
            msgs[i] = (upulsar_msg_t){bufs[i], (size_t)n, NULL};
        }
        size_t acc = 0;
        upulsar_err_t e = upulsar_send_many(run_p, msgs, RUN_LEN, NULL, &acc);
        if (e || acc != RUN_LEN)
            return (void *)(intptr_t)1;
    }
    return NULL;
}

/* Scenario:
 *  1. A non-partitioned topic, a ring with room for everything sent;
 *     4 threads each make 900 calls of 16 keyless messages "t:k:i".
 *  2. Every call queues all 16.
 *  3. The log holds each message once; each call's 16 messages are
 *     stored one after another, in order, nothing of another thread's
 *     between them. */
Test(send_many, a_call_to_one_producer_is_queued_together)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"queue.buffer.bytes", "16777216", NULL};
    run_p = ft_producer(c, NULL, "many-runs", 0, kv);
    pthread_t th[RUN_THREADS];
    for (int t = 0; t < RUN_THREADS; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, run_sender, (void *)(intptr_t)t), 0);
    int failed = 0;
    for (int t = 0; t < RUN_THREADS; t++) {
        void *r;
        pthread_join(th[t], &r);
        failed |= r != NULL;
    }
    cr_assert_eq(failed, 0, "a call did not queue all of its messages: %s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_producer_stop(run_p, 10000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "many-runs", &s), UPULSAR_OK);
    size_t n = upulsar_tb_snapshot_count(s);
    cr_assert_eq(n, (size_t)RUN_THREADS * RUN_CALLS * RUN_LEN);
    int next_call[RUN_THREADS] = {0};
    size_t split = 0;
    for (size_t j = 0; j < n; j += RUN_LEN) {
        int t0 = -1, k0 = -1;
        for (int i = 0; i < RUN_LEN; i++) {
            const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, j + (size_t)i);
            char txt[32];
            size_t l = sm->payload_len < sizeof txt - 1 ? sm->payload_len : sizeof txt - 1;
            memcpy(txt, sm->payload, l);
            txt[l] = 0;
            int t, k, x;
            cr_assert_eq(sscanf(txt, "%d:%d:%d", &t, &k, &x), 3, "#%zu: %s", j + (size_t)i, txt);
            cr_assert(t >= 0 && t < RUN_THREADS);
            if (i == 0) {
                t0 = t;
                k0 = k;
            }
            if (t != t0 || k != k0 || x != i)
                split++;
        }
        if (t0 >= 0 && k0 == next_call[t0])
            next_call[t0]++;
    }
    cr_assert_eq(split, 0, "%zu messages stored among another call's", split);
    for (int t = 0; t < RUN_THREADS; t++)
        cr_assert_eq(next_call[t], RUN_CALLS);
    upulsar_tb_snapshot_free(s);
    ft_stop_client_and_broker(tb, c);
}

/* ---- round robin, message by message -------------------------------------------- */

/* Scenario:
 *  1. 3 partitions, batching off: the round robin moves on with every
 *     keyless message (as upulsar_send() routes it).
 *  2. One call of 30 keyless messages, every third with a key in between
 *     (which does not move the round robin).
 *  3. The keyless ones went to the partitions in turn: keyless message j
 *     (j-th among them) to partition (first + j) mod 3; the keyed ones to
 *     their key's partition. */
Test(send_many, round_robin_moves_per_message_as_upulsar_send)
{
    enum { N = 30 };
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "many-rr", 3), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"batching.enabled", "false", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, "many-rr", 0, kv);
    char bufs[N][16], keys[N][16];
    upulsar_send_opts_t o[N];
    upulsar_msg_t msgs[N];
    upulsar_future_t *futs[N];
    for (int i = 0; i < N; i++) {
        int n = snprintf(bufs[i], sizeof bufs[i], "rr:%d", i);
        o[i] = (upulsar_send_opts_t){.event_time_ms = (uint64_t)i + 1};
        if (i % 3 == 2) {
            snprintf(keys[i], sizeof keys[i], "k%d", i);
            o[i].partition_key = keys[i];
        }
        msgs[i] = (upulsar_msg_t){bufs[i], (size_t)n, &o[i]};
    }
    size_t acc = 0;
    cr_assert_eq(upulsar_send_many(p, msgs, N, futs, &acc), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(acc, (size_t)N);
    int part[N], first = -1, j = 0;
    for (int i = 0; i < N; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(futs[i], FT_WAIT_MS, &id), UPULSAR_OK);
        upulsar_future_release(futs[i]);
        part[i] = id.partition;
        if (i % 3 == 2) {
            cr_assert_eq(part[i], upulsar_producer_partition_for_key(p, keys[i]),
                         "keyed message %d", i);
            continue;
        }
        if (first < 0)
            first = part[i];
        cr_assert_eq(part[i], (first + j) % 3, "keyless message %d (the %d-th) on partition %d",
                     i, j, part[i]);
        j++;
    }
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}

/* Scenario: memory.limit.bytes 64 KiB, fail fast, receipts held; 64
 * messages of 1900 bytes in one call to one producer. A run is not one
 * message: the budget's allowances for a single message (a producer
 * holding nothing may take one message while there is room) must not let
 * the whole run in. The call accepts exactly what upulsar_send() called in
 * turn accepts on a second producer set up the same way (the oracle), and
 * the budget's own peak never passes its limit. */
Test(send_many, a_run_takes_the_budget_as_its_messages_would_one_by_one)
{
    enum { N = 64, SZ = 1900 };
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"memory.limit.bytes", "65536", NULL};
    /* queue.buffer.bytes set: a ring of its own size, not sized from the
     * small budget (the budget, not the ring, must refuse here) */
    const char *kv[] = {"block.if.queue.full", "false", "send.timeout.ms", "0",
                        "queue.buffer.bytes", "1048576", NULL};
    static char payload[SZ];
    memset(payload, 'b', sizeof payload);
    upulsar_msg_t msgs[N];
    for (int i = 0; i < N; i++)
        msgs[i] = (upulsar_msg_t){.payload = payload, .len = SZ};

    /* the oracle: one upulsar_send() after another */
    upulsar_client_t *c1 = ft_client(tb, ckv);
    upulsar_producer_t *p1 = ft_producer(c1, NULL, "many-run-1", 0, kv);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "many-run-1"), UPULSAR_OK);
    size_t one_by_one = 0;
    while (one_by_one < N && upulsar_send(p1, payload, SZ, NULL, NULL) == UPULSAR_OK)
        one_by_one++;
    cr_assert_lt(one_by_one, (size_t)N, "the budget did not refuse any message");
    cr_assert_leq(ft_mem_figure(p1, "peak"), 65536);

    upulsar_client_t *c2 = ft_client(tb, ckv);
    upulsar_producer_t *p2 = ft_producer(c2, NULL, "many-run-2", 0, kv);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "many-run-2"), UPULSAR_OK);
    size_t acc = 0;
    upulsar_err_t e = upulsar_send_many(p2, msgs, N, NULL, &acc);
    cr_assert_eq(e, UPULSAR_ERR__QUEUE_FULL, "%s", upulsar_err_name(e));
    cr_assert_eq(acc, one_by_one, "upulsar_send_many accepted %zu, upulsar_send %zu", acc,
                 one_by_one);
    cr_assert_leq(ft_mem_figure(p2, "peak"), 65536, "the budget's peak passed its limit");

    cr_assert_eq(upulsar_tb_release_receipts(tb, "many-run-1"), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_release_receipts(tb, "many-run-2"), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(p1, FT_WAIT_MS), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(p2, FT_WAIT_MS), UPULSAR_OK);
    cr_assert_eq(ft_topic_messages(tb, "many-run-2"), (uint64_t)acc);
    upulsar_client_destroy(c1);
    upulsar_client_destroy(c2);
    upulsar_tb_stop(tb);
}

/* ---- messages without options ----------------------------------------------- */

enum { PL_N = 400, PL_PARTS = 3, PL_WINDOW = 40 };

static _Atomic int pl_cbs[PL_N];

static void pl_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)id;
    if (err == UPULSAR_OK)
        atomic_fetch_add(&pl_cbs[(intptr_t)opaque], 1);
}

/* Message @p i without options: a length from the list (the sizes around
 * a cache line and a cell, empty included), bytes that depend on i. */
static size_t pl_make(int i, char *buf)
{
    static const size_t lens[] = {0, 1, 31, 63, 64, 65, 100, 127, 128, 129, 300};
    size_t len = lens[i % 11];
    for (size_t k = 0; k < len; k++)
        buf[k] = (char)(i * 31 + (int)k * 7 + 1);
    return len;
}

/* Send msgs to topic @p topic (PL_PARTS partitions, batches of PL_WINDOW
 * messages, the send time on every third) with one upulsar_send_many()
 * call (@p many) or one upulsar_send() each; stop; the partition of each
 * message (its future's) in @p part. */
static void pl_send(upulsar_tb_t *tb, upulsar_client_t *c, const char *topic, bool many,
                    const upulsar_msg_t *msgs, int *part, upulsar_msg_id_t *ids)
{
    cr_assert_eq(upulsar_tb_set_partitions(tb, topic, PL_PARTS), UPULSAR_OK);
    const char *kv[] = {"batch.max.messages", "40", "batch.max.delay.ms", "60000",
                        "latency.sample.every", "3", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, topic, 0, kv);
    upulsar_future_t **futs = calloc(PL_N, sizeof *futs);
    cr_assert_not_null(futs);
    if (many) {
        size_t acc = 0;
        cr_assert_eq(upulsar_send_many(p, msgs, PL_N, futs, &acc), UPULSAR_OK, "%s",
                     upulsar_last_error());
        cr_assert_eq(acc, (size_t)PL_N);
    } else {
        for (int i = 0; i < PL_N; i++)
            cr_assert_eq(upulsar_send(p, msgs[i].payload, msgs[i].len, msgs[i].opts, &futs[i]),
                         UPULSAR_OK, "%s", upulsar_last_error());
    }
    /* the windows are long: the stop sends what is open */
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    for (int i = 0; i < PL_N; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(futs[i], FT_WAIT_MS, &id), UPULSAR_OK, "message %d",
                     i);
        upulsar_future_release(futs[i]);
        part[i] = id.partition;
        if (ids)
            ids[i] = id;
    }
    free(futs);
}

/* Scenario:
 *  1. 3 partitions, batches of 40 messages and a window of 60 s (the round
 *     robin moves every 40 keyless messages, never by time, and reads the
 *     clock at its 32nd), the send time carried by every third message.
 *  2. One upulsar_send_many() call of 400 messages without options, of 0
 *     to 300 bytes; every 5th (from the 3rd) with only a callback and an
 *     event time instead (still a plain record), every 37th with a
 *     partition key (which splits the runs and does not move the round
 *     robin).
 *  3. The same messages through upulsar_send() to a second topic set up
 *     the same way: the oracle of the routing.
 *  4. Each message went to the partition upulsar_send() chose for it,
 *     relative to the first message's (the round robin's start is the
 *     thread's); the round robin moved many times inside the call; each
 *     partition's log holds exactly its messages, once, in order, with
 *     their bytes, at the positions their futures reported. */
Test(send_many, messages_without_options_are_routed_and_stored_as_upulsar_send_does)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    static char bufs[PL_N][300];
    static char keys[PL_N][16];
    static upulsar_send_opts_t o[PL_N];
    static upulsar_msg_t msgs[PL_N];
    static int part[PL_N], oracle[PL_N];
    static upulsar_msg_id_t ids[PL_N];
    for (int i = 0; i < PL_N; i++) {
        size_t len = pl_make(i, bufs[i]);
        msgs[i] = (upulsar_msg_t){len ? bufs[i] : NULL, len, NULL};
        if (i % 37 == 36) {
            snprintf(keys[i], sizeof keys[i], "k%d", i);
            o[i] = (upulsar_send_opts_t){.partition_key = keys[i]};
            msgs[i].opts = &o[i];
        } else if (i % 5 == 2) {
            o[i] = (upulsar_send_opts_t){
                .cb = pl_cb, .opaque = (void *)(intptr_t)i, .event_time_ms = (uint64_t)i + 1};
            msgs[i].opts = &o[i];
        }
    }
    pl_send(tb, c, "plain", true, msgs, part, ids);
    pl_send(tb, c, "plain-oracle", false, msgs, oracle, NULL);
    int moves = 0, prev = -1;
    for (int i = 0; i < PL_N; i++) {
        if (i % 37 == 36) {
            cr_assert_eq(part[i], oracle[i], "keyed message %d", i);
            continue;
        }
        /* each callback ran once for each of the two topics */
        cr_assert_eq(atomic_load(&pl_cbs[i]), i % 5 == 2 ? 2 : 0, "message %d: callbacks", i);
        cr_assert_eq((part[i] - part[0] + PL_PARTS) % PL_PARTS,
                     (oracle[i] - oracle[0] + PL_PARTS) % PL_PARTS,
                     "message %d on partition %d (first on %d), upulsar_send: %d (first on %d)",
                     i, part[i], part[0], oracle[i], oracle[0]);
        moves += prev >= 0 && part[i] != prev;
        prev = part[i];
    }
    cr_assert_geq(moves, PL_N / PL_WINDOW / 2, "the round robin moved %d times", moves);
    for (int pt = 0; pt < PL_PARTS; pt++) {
        char topic[64];
        snprintf(topic, sizeof topic, "plain-partition-%d", pt);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK, "%s", upulsar_last_error());
        size_t j = 0, n = upulsar_tb_snapshot_count(s);
        for (int i = 0; i < PL_N; i++) {
            if (part[i] != pt)
                continue;
            cr_assert_lt(j, n, "%s: message %d missing", topic, i);
            const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, j++);
            cr_assert(sm->payload_len == msgs[i].len &&
                          (!msgs[i].len || !memcmp(sm->payload, bufs[i], msgs[i].len)),
                      "%s #%zu: not message %d's bytes (%zu bytes stored, %zu sent)", topic,
                      j - 1, i, sm->payload_len, msgs[i].len);
            cr_assert_eq(sm->event_time, i % 5 == 2 && i % 37 != 36 ? (uint64_t)i + 1 : 0,
                         "message %d: event time", i);
            cr_assert(ids[i].ledger_id == sm->ledger_id && ids[i].entry_id == sm->entry_id &&
                          ids[i].batch_index == sm->batch_index,
                      "message %d: the future's position is not where it is stored", i);
        }
        cr_assert_eq(j, n, "%s holds %zu messages, %zu sent there", topic, n, j);
        upulsar_tb_snapshot_free(s);
    }
    ft_stop_client_and_broker(tb, c);
}

/* Scenario: one call of 50 messages without options to a non-partitioned
 * topic (one run), message 30 with a NULL payload of 5 bytes. The call
 * returns INVALID_ARG naming the payload, *accepted is 30, the refused
 * message's future slot is NULL, and the topic holds exactly messages
 * 0 .. 29, in order, with their bytes. */
Test(send_many, an_invalid_message_among_messages_without_options_queues_exactly_the_prefix)
{
    enum { N = 50, BAD = 30 };
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(c, NULL, "plain-mid", 0, NULL);
    static char bufs[N][300];
    upulsar_msg_t msgs[N];
    upulsar_future_t *futs[N];
    for (int i = 0; i < N; i++) {
        size_t len = pl_make(i, bufs[i]);
        msgs[i] = (upulsar_msg_t){len ? bufs[i] : NULL, len, NULL};
        futs[i] = (upulsar_future_t *)&futs; /* not NULL: the refused slot must be set */
    }
    msgs[BAD] = (upulsar_msg_t){NULL, 5, NULL};
    size_t acc = 99;
    upulsar_err_t e = upulsar_send_many(p, msgs, N, futs, &acc);
    cr_assert_eq(e, UPULSAR_ERR__INVALID_ARG, "%s", upulsar_err_name(e));
    cr_assert(strstr(upulsar_last_error(), "payload is NULL"), "%s", upulsar_last_error());
    cr_assert_eq(acc, (size_t)BAD);
    cr_assert_null(futs[BAD]);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    for (int i = 0; i < BAD; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(futs[i], FT_WAIT_MS, &id), UPULSAR_OK, "message %d", i);
        upulsar_future_release(futs[i]);
    }
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "plain-mid", &s), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)BAD);
    for (int i = 0; i < BAD; i++) {
        const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, (size_t)i);
        cr_assert(sm->payload_len == msgs[i].len &&
                      (!msgs[i].len || !memcmp(sm->payload, bufs[i], msgs[i].len)),
                  "#%d: not message %d's bytes", i, i);
    }
    upulsar_tb_snapshot_free(s);
    ft_stop_client_and_broker(tb, c);
}

/* ---- keys in the size rule ------------------------------------------------------ */

/* Scenario: a broker whose max_message_size is 8 KiB (M). One call of 4
 * messages with nothing but a partition key each (plain records):
 *  0. 100 bytes, key "a";
 *  1. 100 bytes, key "b";
 *  2. a payload that fits alone (M - 512 - 1000 bytes) with a key of 600
 *     bytes: with the key counted twice (upulsar.h: len + 2 * K + 512 <= M)
 *     it does not fit;
 *  3. 100 bytes, key "c".
 * The call returns MSG_TOO_LARGE, as upulsar_send() of message 2 does
 * (checked first, on its own); *accepted is 2; the topic holds messages 0
 * and 1, with their keys, and nothing else. Then message 2 with a key of
 * 500 bytes (len + 2 * 500 + 512 = M) is accepted by both calls and
 * stored with its whole key, twice. */
Test(send_many, a_partition_key_counts_in_the_size_rule_as_for_upulsar_send)
{
    enum { M = 8192, BIG = M - UPULSAR_MSG_OVERHEAD - 1000 };
    upulsar_tb_t *tb = ft_broker_max(M);
    upulsar_client_t *c = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(c, NULL, "keysize", 0, NULL);
    static char small[100], big[BIG], longkey[601];
    memset(small, 's', sizeof small);
    memset(big, 'b', sizeof big);
    memset(longkey, 'k', 600);
    upulsar_send_opts_t o[4] = {{.partition_key = "a"},
                                {.partition_key = "b"},
                                {.partition_key = longkey},
                                {.partition_key = "c"}};
    upulsar_msg_t msgs[4] = {{small, sizeof small, &o[0]},
                             {small, sizeof small, &o[1]},
                             {big, sizeof big, &o[2]},
                             {small, sizeof small, &o[3]}};
    /* the oracle: upulsar_send() refuses message 2 */
    upulsar_future_t *f1 = NULL;
    cr_assert_eq(upulsar_send(p, big, sizeof big, &o[2], &f1), UPULSAR_ERR__MSG_TOO_LARGE, "%s",
                 upulsar_last_error());
    cr_assert_null(f1);
    upulsar_future_t *futs[4];
    size_t acc = 99;
    upulsar_err_t e = upulsar_send_many(p, msgs, 4, futs, &acc);
    cr_assert_eq(e, UPULSAR_ERR__MSG_TOO_LARGE, "%s: %s", upulsar_err_name(e),
                 e ? upulsar_last_error() : "(accepted)");
    cr_assert_eq(acc, 2u);
    cr_assert_null(futs[2]);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(upulsar_future_wait(futs[i], FT_WAIT_MS, NULL), UPULSAR_OK, "message %d", i);
        upulsar_future_release(futs[i]);
    }
    /* at the limit exactly: accepted by both */
    longkey[500] = '\0';
    cr_assert_eq(upulsar_send_many(p, &msgs[2], 1, futs, &acc), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_send(p, big, sizeof big, &o[2], &f1), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(futs[0], FT_WAIT_MS, NULL), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(f1, FT_WAIT_MS, NULL), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_future_release(futs[0]);
    upulsar_future_release(f1);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "keysize", &s), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_tb_snapshot_count(s), 4u);
    static const char *const want[2] = {"a", "b"};
    for (size_t j = 0; j < 4; j++) {
        const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, j);
        if (j < 2) {
            cr_assert(sm->payload_len == sizeof small && !memcmp(sm->payload, small, sizeof small),
                      "#%zu: bytes", j);
            cr_assert(sm->partition_key && !strcmp(sm->partition_key, want[j]), "#%zu: key", j);
        } else {
            cr_assert(sm->payload_len == sizeof big && !memcmp(sm->payload, big, sizeof big),
                      "#%zu: bytes", j);
            cr_assert(sm->partition_key && strlen(sm->partition_key) == 500 &&
                          !strcmp(sm->partition_key, longkey),
                      "#%zu: key", j);
        }
    }
    upulsar_tb_snapshot_free(s);
    ft_stop_client_and_broker(tb, c);
}
