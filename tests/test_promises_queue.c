/* test_promises_queue.c -- what include/upulsar/upulsar.h promises about a
 * full queue and the memory limit, against the test broker:
 *  - block.if.queue.full=false: a send to a full ring returns QUEUE_FULL at
 *    once, queues nothing, and calls nothing back;
 *  - block.if.queue.full=true: a send that waits for room gives up with
 *    QUEUE_FULL once send.timeout.ms has passed, both when the ring stays
 *    full and when the client's memory.limit.bytes stays used up;
 *  - memory.limit.bytes with no-copy sends and with chunked sends: each
 *    message is counted while it is pending, a send that would exceed the
 *    limit is refused, and once everything resolved the budget is back to
 *    exactly zero.
 * Outcomes are asserted by error code and by the broker's log, never by
 * how long anything took.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

TestSuite(promises_queue, .timeout = 120);

/* Send message @p i of thread 0 of @p r (the "0:<i>:" payload ft_check
 * reads back), with ft_cb and a future; returns upulsar_send()'s result,
 * recorded in the message. */
static upulsar_err_t send_one(ft_run_t *r, int i)
{
    ft_msg_t *m = ft_msg(r, 0, i);
    char payload[64];
    memset(payload, 'x', r->payload_len);
    int n = snprintf(payload, sizeof payload, "0:%d:", i);
    payload[n] = 'x';
    upulsar_send_opts_t o = {.cb = ft_cb, .opaque = m};
    m->send_err = upulsar_send(r->p, payload, r->payload_len, &o, &m->f);
    if (m->send_err != UPULSAR_OK)
        cr_assert_null(m->f, "message %d: a refused send handed out a future", i);
    return m->send_err;
}

/* Scenario:
 *  1. queue.buffer.bytes = 64 KiB (the smallest ring), max.inflight.batches
 *     = 1, block.if.queue.full = false, send.timeout.ms = 0; receipts held.
 *  2. A first message goes out and is stored: with its receipt withheld no
 *     further batch may leave, so nothing drains the ring any more.
 *  3. Messages are sent until one is refused: QUEUE_FULL; 20 more sends
 *     are all refused the same way.
 *  4. The receipts are released: every accepted message succeeds, and the
 *     log check proves each stored exactly once in send order, with no
 *     refused message stored or called back. */
Test(promises_queue, a_full_ring_fails_fast_without_blocking)
{
    enum { MAX = 5000 };
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"queue.buffer.bytes", "65536", "max.inflight.batches", "1",
                        "block.if.queue.full", "false", "send.timeout.ms", "0", NULL};
    upulsar_producer_t *p = ft_producer(c, "qf", "queue-full", 0, kv);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "queue-full"), UPULSAR_OK);
    ft_run_t *run = ft_run_new(p, 1, MAX, 0);
    cr_assert_eq(send_one(run, 0), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_wait_messages(tb, "queue-full", 1, FT_WAIT_MS), UPULSAR_OK);
    int i = 1;
    while (i < MAX - 20 && send_one(run, i) == UPULSAR_OK)
        i++;
    cr_assert_lt(i, MAX - 20, "the ring never filled");
    cr_assert_eq(ft_msg(run, 0, i)->send_err, UPULSAR_ERR__QUEUE_FULL, "%s",
                 upulsar_err_name(ft_msg(run, 0, i)->send_err));
    int accepted = i;
    for (int k = 1; k <= 20; k++)
        cr_assert_eq(send_one(run, i + k), UPULSAR_ERR__QUEUE_FULL, "send %d after the ring filled",
                     k);
    cr_assert_eq(upulsar_tb_release_receipts(tb, "queue-full"), UPULSAR_OK);
    cr_assert_eq(ft_collect(run), 0);
    cr_assert(ft_wait_for(ft_cbs_done, run));
    ft_check_opts_t o = {.topic = "queue-full"};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)accepted);
    cr_assert_eq(res.stored, (size_t)accepted);
    ft_run_free(run);
    ft_stop_client_and_broker(tb, c);
}

/* A delivery callback that holds the io loop until the test opens the
 * gate: while it runs, the loop drains no ring and expires nothing, so a
 * full ring stays full. (Callbacks must not block; this one stands in for
 * a loop busy elsewhere, and is bounded by FT_WAIT_MS.) */
typedef struct {
    _Atomic int entered, open, calls;
    upulsar_err_t err;
} gate_t;

static void gate_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)id;
    gate_t *g = opaque;
    g->err = err;
    atomic_fetch_add(&g->calls, 1);
    atomic_store(&g->entered, 1);
    uint64_t end = ft_now_ms() + FT_WAIT_MS;
    while (!atomic_load(&g->open) && ft_now_ms() < end)
        ft_pause_ms(1);
}

static int gate_entered(void *a) { return atomic_load(&((gate_t *)a)->entered); }

/* Scenario:
 *  1. block.if.queue.full = true, send.timeout.ms = 300, the smallest ring.
 *  2. A first message is sent with a callback that holds the io loop (see
 *     gate_t) once its receipt arrives.
 *  3. Messages are sent until one returns something else than OK: the ring
 *     fills, the next send waits for room that cannot come, and gives up
 *     with QUEUE_FULL (not CLOSED, not a hang); nothing of it is queued.
 *  4. The loop is let go: every accepted message resolves exactly once
 *     (stored, or failed by its own send timeout, since it waited in the
 *     ring), the refused one is neither stored nor called back. */
Test(promises_queue, a_blocked_send_on_a_full_ring_gives_up_after_the_send_timeout)
{
    enum { MAX = 5000 };
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"queue.buffer.bytes", "65536", "block.if.queue.full", "true",
                        "send.timeout.ms", "300", NULL};
    upulsar_producer_t *p = ft_producer(c, "qb", "queue-blocked", 0, kv);
    gate_t gate = {0};
    upulsar_send_opts_t go = {.cb = gate_cb, .opaque = &gate};
    cr_assert_eq(upulsar_send(p, "gate", 4, &go, NULL), UPULSAR_OK);
    cr_assert(ft_wait_for(gate_entered, &gate), "the first message never resolved");
    ft_run_t *run = ft_run_new(p, 1, MAX, 0);
    int i = 0;
    while (i < MAX - 1 && send_one(run, i) == UPULSAR_OK)
        i++;
    upulsar_err_t refused = ft_msg(run, 0, i)->send_err;
    atomic_store(&gate.open, 1);
    cr_assert_lt(i, MAX - 1, "the ring never filled");
    cr_assert_gt(i, 0);
    cr_assert_eq(refused, UPULSAR_ERR__QUEUE_FULL, "%s: %s", upulsar_err_name(refused),
                 upulsar_last_error());
    cr_assert_eq(ft_collect(run), 0);
    cr_assert(ft_wait_for(ft_cbs_done, run));
    cr_assert_eq(atomic_load(&gate.calls), 1);
    cr_assert_eq(gate.err, UPULSAR_OK);
    for (int k = 0; k < i; k++) {
        upulsar_err_t e = ft_msg(run, 0, k)->err;
        cr_assert(e == UPULSAR_OK || e == UPULSAR_ERR__MSG_TIMED_OUT, "message %d: %s", k,
                  upulsar_err_name(e));
    }
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    /* the gate message is not in the run's format: check from a snapshot
     * that it is first, then the run's messages */
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, "queue-blocked", &s), UPULSAR_OK);
    cr_assert_geq(upulsar_tb_snapshot_count(s), 1);
    const upulsar_tb_msg_t *g0 = upulsar_tb_snapshot_msg(s, 0);
    cr_assert(g0->payload_len == 4 && !memcmp(g0->payload, "gate", 4));
    upulsar_tb_snapshot_free(s);
    /* every run message stored at most once, in order, none refused */
    s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, "queue-blocked", &s), UPULSAR_OK);
    int last = -1;
    for (size_t j = 1; j < upulsar_tb_snapshot_count(s); j++) {
        const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, j);
        int t = -1, k = -1;
        cr_assert_eq(sscanf((const char *)sm->payload, "%d:%d:", &t, &k), 2);
        cr_assert_gt(k, last, "message %d stored after %d", k, last);
        cr_assert_lt(k, i, "refused message %d stored", k);
        last = k;
        if (ft_msg(run, 0, k)->err == UPULSAR_OK)
            ft_msg(run, 0, k)->seen = 1;
    }
    upulsar_tb_snapshot_free(s);
    for (int k = 0; k < i; k++) {
        ft_msg_t *m = ft_msg(run, 0, k);
        cr_assert_eq(atomic_load(&m->cb_calls), 1, "message %d called back %d times", k,
                     atomic_load(&m->cb_calls));
        cr_assert_eq(m->cb_err, m->err);
        if (m->err == UPULSAR_OK)
            cr_assert_eq(m->seen, 1, "message %d acknowledged but not stored", k);
    }
    cr_assert_eq(atomic_load(&ft_msg(run, 0, i)->cb_calls), 0, "the refused send was called back");
    ft_run_free(run);
    ft_stop_client_and_broker(tb, c);
}

/* Scenario:
 *  1. A client with memory.limit.bytes = 2000 and two producers: "mem-hold"
 *     (fail fast, no send timeout) and "mem-wait" (block.if.queue.full =
 *     true, send.timeout.ms = 300).
 *  2. mem-hold sends 2000 bytes whose receipt is withheld: the budget is
 *     used up, and nothing of mem-wait can free it.
 *  3. mem-wait sends 100 bytes: the send waits for room, then gives up with
 *     QUEUE_FULL, handing out no future.
 *  4. The receipt is released: mem-hold's message succeeds; mem-wait's next
 *     send succeeds; mem-wait's topic holds exactly that one message. */
Test(promises_queue, a_send_blocked_on_the_memory_limit_gives_up_after_the_send_timeout)
{
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"memory.limit.bytes", "2000", NULL};
    upulsar_client_t *c = ft_client(tb, ckv);
    const char *hold_kv[] = {"send.timeout.ms", "0", NULL};
    upulsar_producer_t *hold = ft_producer(c, "mh", "mem-hold", 0, hold_kv);
    const char *wait_kv[] = {"block.if.queue.full", "true", "send.timeout.ms", "300", NULL};
    upulsar_producer_t *wait = ft_producer(c, "mw", "mem-wait", 0, wait_kv);
    static char buf[2000];
    memset(buf, 'm', sizeof buf);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "mem-hold"), UPULSAR_OK);
    upulsar_future_t *fh = NULL, *fw = NULL;
    cr_assert_eq(upulsar_send(hold, buf, sizeof buf, NULL, &fh), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_wait_messages(tb, "mem-hold", 1, FT_WAIT_MS), UPULSAR_OK);
    upulsar_err_t e = upulsar_send(wait, buf, 100, NULL, &fw);
    cr_assert_eq(e, UPULSAR_ERR__QUEUE_FULL, "%s: %s", upulsar_err_name(e), upulsar_last_error());
    cr_assert_null(fw);
    cr_assert_eq(upulsar_future_poll(fh, NULL), UPULSAR_ERR__PENDING,
                 "the message holding the budget resolved: the test proves nothing");
    cr_assert_eq(upulsar_tb_release_receipts(tb, "mem-hold"), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(fh, FT_WAIT_MS, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_future_release(fh), UPULSAR_OK);
    cr_assert_eq(upulsar_send(wait, "after", 5, NULL, &fw), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(fw, FT_WAIT_MS, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_future_release(fw), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(hold, 10000), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(wait, 10000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, "mem-wait", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1, "the refused send was stored");
    cr_assert_eq(upulsar_tb_snapshot_msg(s, 0)->payload_len, 5);
    upulsar_tb_snapshot_free(s);
    ft_stop_client_and_broker(tb, c);
}

/* ---- memory.limit.bytes with no-copy and chunked sends ---- */

/* The budget is exactly zero: with every receipt of @p topic withheld, a
 * message of exactly @p limit bytes (its record is larger than the budget,
 * which upulsar_send() accepts only while nothing else is taken) is
 * accepted (so nothing is taken: a positive leftover would refuse it) and
 * then a 1-byte message is refused (so the first one is counted in full on
 * top of nothing: a negative leftover would let it in). Both resolve
 * afterwards. */
static void assert_budget_zero(upulsar_tb_t *tb, upulsar_producer_t *p, const char *topic,
                               size_t limit)
{
    char *buf = malloc(limit);
    cr_assert_not_null(buf);
    memset(buf, 'z', limit);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, topic), UPULSAR_OK);
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(p, buf, limit, NULL, &f), UPULSAR_OK,
                 "a message of exactly the limit is refused: the budget did not return to zero (%s)",
                 upulsar_last_error());
    cr_assert_eq(upulsar_send(p, buf, 1, NULL, NULL), UPULSAR_ERR__QUEUE_FULL,
                 "1 byte over the limit accepted: the budget went below zero");
    cr_assert_eq(upulsar_tb_release_receipts(tb, topic), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_future_release(f), UPULSAR_OK);
    free(buf);
}

/* One no-copy message: its payload, how often free_cb ran, and what it
 * had seen by the time the message resolved. */
typedef struct {
    char *payload;
    size_t len;
    _Atomic int frees, calls, wrong_ptr;
    int frees_at_resolution;
    upulsar_err_t err;
} nc_msg_t;

static void nc_free(void *payload, void *opaque)
{
    nc_msg_t *m = opaque;
    if (payload != m->payload) /* a library thread: checked on the test's */
        atomic_store(&m->wrong_ptr, 1);
    atomic_fetch_add(&m->frees, 1);
}

static void nc_done(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)id;
    nc_msg_t *m = opaque;
    m->frees_at_resolution = atomic_load(&m->frees);
    m->err = err;
    atomic_fetch_add(&m->calls, 1);
}

static upulsar_err_t nc_send(upulsar_producer_t *p, nc_msg_t *m, char fill, size_t len)
{
    free(m->payload); /* a refused send left it with the caller */
    m->len = len;
    m->payload = malloc(len);
    cr_assert_not_null(m->payload);
    memset(m->payload, fill, len);
    upulsar_send_opts_t o = {.flags = UPULSAR_SEND_NOCOPY, .free_cb = nc_free,
                             .cb = nc_done, .opaque = m};
    return upulsar_send(p, m->payload, len, &o, NULL);
}

static int nc_done_all(nc_msg_t *ms, int n)
{
    for (int i = 0; i < n; i++)
        if (atomic_load(&ms[i].calls) == 0)
            return 0;
    return 1;
}

typedef struct {
    nc_msg_t *ms;
    int n;
} nc_wait_t;

static int nc_resolved(void *a)
{
    nc_wait_t *w = a;
    return nc_done_all(w->ms, w->n);
}

/* Check the messages @p ms[0..n) accepted as no-copy sends: each resolved
 * once with OK, free_cb ran exactly once and before the resolution, and
 * the broker stored exactly its bytes, in order, after @p skip earlier
 * messages of @p topic. */
static void nc_check(upulsar_tb_t *tb, const char *topic, nc_msg_t *ms, int n, size_t skip)
{
    nc_wait_t w = {ms, n};
    cr_assert(ft_wait_for(nc_resolved, &w));
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    cr_assert_geq(upulsar_tb_snapshot_count(s), skip + (size_t)n);
    for (int i = 0; i < n; i++) {
        nc_msg_t *m = &ms[i];
        cr_assert_eq(atomic_load(&m->calls), 1, "message %d called back %d times", i,
                     atomic_load(&m->calls));
        cr_assert_eq(m->err, UPULSAR_OK, "message %d: %s", i, upulsar_err_name(m->err));
        cr_assert_eq(atomic_load(&m->frees), 1, "message %d: free_cb ran %d times", i,
                     atomic_load(&m->frees));
        cr_assert_eq(m->frees_at_resolution, 1, "message %d resolved before free_cb", i);
        cr_assert_eq(atomic_load(&m->wrong_ptr), 0, "message %d: free_cb got another pointer", i);
        const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, skip + (size_t)i);
        cr_assert_eq(sm->payload_len, m->len, "message %d: stored %zu bytes of %zu", i,
                     sm->payload_len, m->len);
        cr_assert_eq(memcmp(sm->payload, m->payload, m->len), 0, "message %d: bytes differ", i);
    }
    upulsar_tb_snapshot_free(s);
}

/* Scenario:
 *  1. memory.limit.bytes = 16000; no-copy sends of 1000 bytes with receipts
 *     withheld until one is refused with QUEUE_FULL (at least two fit; how
 *     many follows from the record sizes and the producer's share); the
 *     refused one's free_cb never runs (the caller keeps its payload), and
 *     it is refused again while nothing is acknowledged.
 *  2. Receipts released: those accepted succeed, each free_cb ran once,
 *     before its message resolved, and the broker stored each one's bytes.
 *  3. The budget is back to exactly zero (assert_budget_zero). */
Test(promises_queue, the_memory_limit_counts_no_copy_sends_and_returns_to_zero)
{
    enum { LIMIT = 16000, LEN = 1000, MAX = 16 };
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"memory.limit.bytes", "16000", NULL};
    upulsar_client_t *c = ft_client(tb, ckv);
    const char *kv[] = {"send.timeout.ms", "0", NULL};
    upulsar_producer_t *p = ft_producer(c, "mn", "mem-nocopy", 0, kv);
    nc_msg_t ms[MAX + 1];
    memset(ms, 0, sizeof ms);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "mem-nocopy"), UPULSAR_OK);
    int fit = 0;
    upulsar_err_t e;
    while (fit < MAX && (e = nc_send(p, &ms[fit], (char)('a' + fit), LEN)) == UPULSAR_OK)
        fit++;
    cr_assert_lt(fit, MAX, "the limit never refused a send");
    cr_assert_eq(e, UPULSAR_ERR__QUEUE_FULL, "%s", upulsar_last_error());
    cr_assert_geq(fit, 2);
    cr_assert_geq(ft_mem_figure(p, "in_use"), (long long)fit * LEN,
                  "the no-copy payloads are not counted");
    cr_assert_eq(upulsar_tb_wait_messages(tb, "mem-nocopy", (uint64_t)fit, FT_WAIT_MS),
                 UPULSAR_OK);
    cr_assert_eq(nc_send(p, &ms[fit], 'z', LEN), UPULSAR_ERR__QUEUE_FULL,
                 "room while nothing is acknowledged");
    cr_assert_eq(upulsar_tb_release_receipts(tb, "mem-nocopy"), UPULSAR_OK);
    nc_check(tb, "mem-nocopy", ms, fit, 0);
    cr_assert_eq(atomic_load(&ms[fit].frees), 0, "free_cb ran for a refused send");
    cr_assert_eq(atomic_load(&ms[fit].calls), 0, "a refused send was called back");
    assert_budget_zero(tb, p, "mem-nocopy", LIMIT);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    cr_assert_eq(ft_topic_messages(tb, "mem-nocopy"), (uint64_t)fit + 1);
    for (int i = 0; i <= fit; i++)
        free(ms[i].payload);
    ft_stop_client_and_broker(tb, c);
}

/* Scenario:
 *  1. The broker's max_message_size is 16 KiB; chunking.enabled = true;
 *     memory.limit.bytes = 100,000; receipts withheld; two producers of
 *     the client, p and q.
 *  2. p sends a 60,000-byte message (copied): sent as chunks, counted once
 *     for its whole size (the client's "in_use" is its size plus less than
 *     1 KiB of record). A second 60,000-byte one would exceed the limit:
 *     refused. q then sends a no-copy message of what is left minus 1 KiB:
 *     accepted (q holds nothing); a single byte more is refused.
 *  3. Receipts released: both messages succeed and are stored whole, with
 *     their exact bytes; the no-copy one's free_cb ran once, before it
 *     resolved.
 *  4. The budget is back to exactly zero. */
Test(promises_queue, the_memory_limit_counts_chunked_sends_and_returns_to_zero)
{
    enum { LIMIT = 100000, BIG = 60000 };
    upulsar_tb_opts_t bo;
    upulsar_tb_opts_init(&bo);
    bo.max_message_size = 16 * 1024;
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&bo, &tb), UPULSAR_OK);
    const char *ckv[] = {"memory.limit.bytes", "100000", NULL};
    upulsar_client_t *c = ft_client(tb, ckv);
    const char *kv[] = {"send.timeout.ms", "0", "chunking.enabled", "true",
                        "batching.enabled", "false", NULL};
    upulsar_producer_t *p = ft_producer(c, "mc", "mem-chunked", 0, kv);
    upulsar_producer_t *q = ft_producer(c, "mq", "mem-chunked-nc", 0, kv);
    char *big = malloc(BIG);
    cr_assert_not_null(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (char)('A' + i % 23);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "mem-chunked"), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "mem-chunked-nc"), UPULSAR_OK);
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(p, big, BIG, NULL, &f), UPULSAR_OK, "%s", upulsar_last_error());
    long long used = ft_mem_figure(p, "in_use");
    cr_assert(used >= BIG && used < BIG + 1024, "a %d-byte message counts %lld bytes", BIG, used);
    cr_assert_eq(upulsar_send(p, big, BIG, NULL, NULL), UPULSAR_ERR__QUEUE_FULL);
    nc_msg_t nc;
    memset(&nc, 0, sizeof nc);
    size_t rest = (size_t)(LIMIT - used - 1024);
    cr_assert_eq(nc_send(q, &nc, 'r', rest), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_send(q, "1", 1, NULL, NULL), UPULSAR_ERR__QUEUE_FULL);
    cr_assert_leq(ft_mem_figure(p, "peak"), LIMIT);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f, FT_WAIT_MS, NULL), UPULSAR_OK);
    cr_assert_eq(upulsar_future_release(f), UPULSAR_OK);
    nc_check(tb, "mem-chunked-nc", &nc, 1, 0);
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, "mem-chunked", &s), UPULSAR_OK);
    const upulsar_tb_msg_t *m0 = upulsar_tb_snapshot_msg(s, 0);
    cr_assert_eq(m0->payload_len, BIG);
    cr_assert_eq(memcmp(m0->payload, big, BIG), 0, "the chunked message was not stored whole");
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(q, 10000), UPULSAR_OK);
    assert_budget_zero(tb, p, "mem-chunked", LIMIT);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    cr_assert_eq(ft_topic_messages(tb, "mem-chunked"), 2);
    cr_assert_eq(ft_topic_messages(tb, "mem-chunked-nc"), 1);
    free(nc.payload);
    free(big);
    ft_stop_client_and_broker(tb, c);
}
