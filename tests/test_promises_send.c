/* test_promises_send.c -- what include/upulsar/upulsar.h promises about
 * sending, against the test broker, each checked on the broker's log:
 *  - send.timeout.ms also fails messages while the producer is
 *    disconnected or backing off (the broker refusing connections, refusing
 *    the producer's re-creation, or gone): MSG_TIMED_OUT, future and
 *    callback, in order, and none of them is stored later;
 *  - upulsar_send_many() queues its messages in order (per key and
 *    partition) and, when it stops early, exactly the prefix it reports;
 *  - UPULSAR_SEND_NOCOPY: free_cb runs exactly once per accepted message,
 *    no later than its resolution, never for a refused send, and the
 *    library reads the payload no more once it ran;
 *  - routing.mode=single puts every keyless message on one partition;
 *    routing.mode=random spreads them over every partition;
 *  - a key stays on the same real producer (producers.per.partition > 1)
 *    across re-creation: the same producer names before and after.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

TestSuite(promises_send, .timeout = 120);

/* ---- send timeout while disconnected or backing off ---------------------- */

/* Has the producer of @p p tried to come back at least once, and is it not
 * READY? */
static int down_and_retrying(void *a)
{
    upulsar_producer_t *p = a;
    upulsar_producer_info_t pi;
    size_t n = 0;
    if (upulsar_producer_list(p, &pi, 1, &n) != UPULSAR_OK || n != 1)
        return 0;
    return pi.reconnects >= 1 && pi.state != UPULSAR_STATE_READY;
}

/* Messages [0, n) of thread 0 of @p run are sent while the producer is
 * down (and stays down): each fails with MSG_TIMED_OUT, future and
 * callback, callbacks in send order; the producer is still not READY when
 * they have all failed. */
static void sends_expire_while_down(ft_run_t *run, int n)
{
    ft_send_range(run, 0, n, 0);
    ft_range_t r = {run, 0, n};
    cr_assert(ft_wait_for(ft_range_resolved, &r), "the messages never expired");
    cr_assert_not(ft_all_ready(run->p), "the producer came back: the test proves nothing");
    cr_assert(ft_wait_for(ft_cbs_done, run));
    for (int i = 0; i < n; i++) {
        ft_msg_t *m = ft_msg(run, 0, i);
        cr_assert_eq(upulsar_future_poll(m->f, NULL), UPULSAR_ERR__MSG_TIMED_OUT, "message %d", i);
        cr_assert_eq(m->cb_err, UPULSAR_ERR__MSG_TIMED_OUT, "message %d", i);
        if (i > 0)
            cr_assert_gt(m->cb_seq, ft_msg(run, 0, i - 1)->cb_seq, "callback %d out of order", i);
    }
    cr_assert_geq(ft_stats(run->p).timed_out, (uint64_t)n);
}

/* After the producer is back: messages [n, 2n) all succeed, and the log
 * holds exactly them (none of the expired ones was stored late). */
static void later_sends_succeed_and_expired_ones_stay_out(upulsar_tb_t *tb, ft_run_t *run,
                                                          const char *topic, int n)
{
    cr_assert(ft_wait_for(ft_all_ready, run->p), "the producer never came back");
    ft_send_range(run, n, 2 * n, 1);
    cr_assert_eq(ft_collect(run), 0);
    cr_assert(ft_wait_for(ft_cbs_done, run));
    /* expired messages may have taken sequence ids that were never stored */
    ft_check_opts_t o = {.topic = topic, .gaps_of_failed_allowed = 1};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.failed, (size_t)n);
    cr_assert_eq(res.ok, (size_t)n);
    cr_assert_eq(res.stored, (size_t)n);
}

/* Scenario:
 *  1. send.timeout.ms = 500; the broker resets every new connection and
 *     drops the current ones; the producer is seen retrying, not READY.
 *  2. 200 messages are sent and all fail with MSG_TIMED_OUT while the
 *     broker still refuses connections.
 *  3. The broker accepts connections again: the producer comes back, 200
 *     more messages succeed, and the log holds exactly those 200. */
Test(promises_send, messages_time_out_while_connections_are_refused)
{
    enum { N = 200 };
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"send.timeout.ms", "500", NULL};
    upulsar_producer_t *p = ft_producer(c, "tr", "timeout-refused-conn", 0, kv);
    cr_assert_eq(upulsar_tb_refuse_connections(tb, 600000), UPULSAR_OK);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    cr_assert(ft_wait_for(down_and_retrying, p));
    ft_run_t *run = ft_run_new(p, 1, 2 * N, 0);
    sends_expire_while_down(run, N);
    cr_assert_eq(upulsar_tb_refuse_connections(tb, 0), UPULSAR_OK);
    later_sends_succeed_and_expired_ones_stay_out(tb, run, "timeout-refused-conn", N);
    ft_run_free(run);
    ft_stop_client_and_broker(tb, c);
}

/* Scenario:
 *  1. send.timeout.ms = 500; every PRODUCER request for the topic is
 *     refused with ServiceNotReady (retriable) and the topic is unloaded:
 *     the producer backs off and retries, refused each time.
 *  2. 200 messages are sent and all fail with MSG_TIMED_OUT while the
 *     refusals go on.
 *  3. The refusals end: the producer is re-created, 200 more messages
 *     succeed, and the log holds exactly those 200. */
Test(promises_send, messages_time_out_while_recreation_is_refused)
{
    enum { N = 200 };
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"send.timeout.ms", "500", NULL};
    upulsar_producer_t *p = ft_producer(c, "tp", "timeout-refused-producer", 0, kv);
    cr_assert_eq(upulsar_tb_fail_producers(tb, "timeout-refused-producer", 1000000,
                                           6 /* ServiceNotReady */),
                 UPULSAR_OK);
    cr_assert_eq(upulsar_tb_unload_topic(tb, "timeout-refused-producer"), 1);
    cr_assert(ft_wait_for(down_and_retrying, p));
    ft_run_t *run = ft_run_new(p, 1, 2 * N, 0);
    sends_expire_while_down(run, N);
    cr_assert_eq(upulsar_tb_fail_producers(tb, "timeout-refused-producer", 0, 6), UPULSAR_OK);
    later_sends_succeed_and_expired_ones_stay_out(tb, run, "timeout-refused-producer", N);
    ft_run_free(run);
    ft_stop_client_and_broker(tb, c);
}

/* Scenario: the broker is stopped for good (its port closed): 200 messages
 * sent afterwards all fail with MSG_TIMED_OUT, future and callback, in
 * order; stopping the producer then resolves nothing twice. */
Test(promises_send, messages_time_out_when_the_broker_is_gone)
{
    enum { N = 200 };
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"send.timeout.ms", "500", NULL};
    upulsar_producer_t *p = ft_producer(c, "tg", "timeout-gone", 0, kv);
    upulsar_tb_stop(tb);
    cr_assert(ft_wait_for(down_and_retrying, p));
    ft_run_t *run = ft_run_new(p, 1, N, 0);
    sends_expire_while_down(run, N);
    cr_assert_eq(upulsar_producer_stop(p, 2000), UPULSAR_OK);
    for (int i = 0; i < N; i++)
        cr_assert_eq(atomic_load(&ft_msg(run, 0, i)->cb_calls), 1, "message %d", i);
    cr_assert_eq(ft_collect(run), 0);
    ft_run_free(run);
    upulsar_client_destroy(c);
}

/* ---- upulsar_send_many --------------------------------------------------- */

/* Fill @p msgs[i] / @p opts[i] for message i of thread 0 of @p run (the
 * payload in @p bufs, 64 bytes per message), keyed "k<i % 64>" on every
 * second message, with ft_cb. */
static void many_prepare(ft_run_t *run, int from, int to, upulsar_msg_t *msgs,
                         upulsar_send_opts_t *opts, char *bufs, char (*keys)[16])
{
    for (int i = from; i < to; i++) {
        ft_msg_t *m = ft_msg(run, 0, i);
        char *b = bufs + (size_t)i * 64;
        memset(b, 'x', run->payload_len);
        int n = snprintf(b, 64, "0:%d:", i);
        b[n] = 'x';
        opts[i] = (upulsar_send_opts_t){.cb = ft_cb, .opaque = m};
        if (i & 1) {
            snprintf(keys[i], sizeof keys[i], "k%d", i % 64);
            opts[i].partition_key = keys[i];
        }
        msgs[i] = (upulsar_msg_t){b, run->payload_len, &opts[i]};
    }
}

/* Scenario:
 *  1. A topic of 3 partitions; 3,000 messages in one upulsar_send_many()
 *     call, every second one keyed, each with a callback and a future.
 *  2. All are accepted (accepted = 3,000, OK); every future succeeds.
 *  3. The log check: each message stored once, in send order per
 *     partition, with the position its future reported; each keyed
 *     message on the partition upulsar_producer_partition_for_key() names. */
Test(promises_send, send_many_queues_every_message_in_order)
{
    enum { N = 3000 / FT_SCALE };
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "many", 3), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(c, "sm", "many", 0, NULL);
    ft_run_t *run = ft_run_new(p, 1, N, 0);
    upulsar_msg_t *msgs = calloc(N, sizeof *msgs);
    upulsar_send_opts_t *opts = calloc(N, sizeof *opts);
    char *bufs = calloc(N, 64);
    char(*keys)[16] = calloc(N, sizeof *keys);
    upulsar_future_t **futs = calloc(N, sizeof *futs);
    cr_assert(msgs && opts && bufs && keys && futs);
    many_prepare(run, 0, N, msgs, opts, bufs, keys);
    size_t accepted = 0;
    cr_assert_eq(upulsar_send_many(p, msgs, N, futs, &accepted), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(accepted, (size_t)N);
    for (int i = 0; i < N; i++) {
        cr_assert_not_null(futs[i], "message %d has no future", i);
        ft_msg(run, 0, i)->f = futs[i];
        ft_msg(run, 0, i)->send_err = UPULSAR_OK;
    }
    cr_assert_eq(ft_collect(run), 0);
    cr_assert(ft_wait_for(ft_cbs_done, run));
    int *want = calloc(N, sizeof *want); /* the partition of each keyed message */
    cr_assert_not_null(want);
    for (int i = 1; i < N; i += 2)
        want[i] = upulsar_producer_partition_for_key(p, keys[i]);
    ft_check_opts_t o = {.topic = "many", .partitions = 3};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)N);
    cr_assert_eq(res.stored, (size_t)N);
    int parts_used[3] = {0};
    for (int i = 0; i < N; i++) {
        ft_msg_t *m = ft_msg(run, 0, i);
        parts_used[m->part]++;
        if (i & 1)
            cr_assert_eq(m->part, want[i], "key %s stored on partition %d, not %d", keys[i],
                         m->part, want[i]);
    }
    free(want);
    cr_assert(parts_used[0] && parts_used[1] && parts_used[2]);
    free(msgs);
    free(opts);
    free(bufs);
    free(keys);
    free(futs);
    ft_run_free(run);
    ft_stop_client_and_broker(tb, c);
}

/* Scenario:
 *  1. The smallest ring, max.inflight.batches = 1, fail fast, receipts
 *     held; a first message is stored, so nothing drains the ring any
 *     more.
 *  2. upulsar_send_many() of 5,000 messages: it stops at the full ring,
 *     returns QUEUE_FULL and reports how many it queued (some, not all).
 *  3. Receipts released: exactly that prefix is stored, in order, each
 *     once; nothing after it is stored or called back. */
Test(promises_send, send_many_stopped_by_a_full_ring_queues_exactly_its_prefix)
{
    enum { N = 5000 };
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"queue.buffer.bytes", "65536", "max.inflight.batches", "1",
                        "block.if.queue.full", "false", "send.timeout.ms", "0", NULL};
    upulsar_producer_t *p = ft_producer(c, "sp", "many-prefix", 0, kv);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "many-prefix"), UPULSAR_OK);
    ft_run_t *run = ft_run_new(p, 1, N + 1, 0);
    ft_send_range(run, 0, 1, 0);
    cr_assert_eq(upulsar_tb_wait_messages(tb, "many-prefix", 1, FT_WAIT_MS), UPULSAR_OK);
    upulsar_msg_t *msgs = calloc(N + 1, sizeof *msgs);
    upulsar_send_opts_t *opts = calloc(N + 1, sizeof *opts);
    char *bufs = calloc(N + 1, 64);
    char(*keys)[16] = calloc(N + 1, sizeof *keys);
    upulsar_future_t **futs = calloc(N + 1, sizeof *futs);
    cr_assert(msgs && opts && bufs && keys && futs);
    many_prepare(run, 1, N + 1, msgs, opts, bufs, keys);
    size_t accepted = 0;
    upulsar_err_t e = upulsar_send_many(p, msgs + 1, N, futs + 1, &accepted);
    cr_assert_eq(e, UPULSAR_ERR__QUEUE_FULL, "%s", upulsar_err_name(e));
    cr_assert(accepted > 0 && accepted < (size_t)N, "accepted %zu", accepted);
    for (int i = 1; i <= N; i++) {
        ft_msg_t *m = ft_msg(run, 0, i);
        if ((size_t)i <= accepted) {
            cr_assert_not_null(futs[i], "message %d has no future", i);
            m->f = futs[i];
            m->send_err = UPULSAR_OK;
        } else {
            m->send_err = e;
        }
    }
    cr_assert_eq(upulsar_tb_release_receipts(tb, "many-prefix"), UPULSAR_OK);
    cr_assert_eq(ft_collect(run), 0);
    cr_assert(ft_wait_for(ft_cbs_done, run));
    ft_check_opts_t o = {.topic = "many-prefix"};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, accepted + 1);
    cr_assert_eq(res.stored, accepted + 1);
    free(msgs);
    free(opts);
    free(bufs);
    free(keys);
    free(futs);
    ft_run_free(run);
    ft_stop_client_and_broker(tb, c);
}

/* ---- UPULSAR_SEND_NOCOPY and free_cb ----------------------------------------- */

/* One no-copy message of a run: its own buffer; free_cb counts, checks it
 * got this buffer, then scribbles over it (a library that read the payload
 * after free_cb would store the scribble). */
typedef struct {
    ft_msg_t *m;
    char *buf;
    size_t len;
    _Atomic int frees, wrong_ptr;
    int frees_at_cb;
} nc_t;

static void nc_free(void *payload, void *opaque)
{
    nc_t *n = opaque;
    if (payload != n->buf)
        atomic_store(&n->wrong_ptr, 1);
    memset(n->buf, '#', n->len);
    atomic_fetch_add(&n->frees, 1);
}

static void nc_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    nc_t *n = opaque;
    n->frees_at_cb = atomic_load(&n->frees);
    ft_cb(err, id, n->m);
}

/* Send messages [from, to) of thread 0 of @p run as no-copy sends (each
 * payload a buffer of its own, 48 bytes); each must be accepted. */
static void nc_send_range(ft_run_t *run, nc_t *ncs, int from, int to)
{
    for (int i = from; i < to; i++) {
        nc_t *n = &ncs[i];
        n->m = ft_msg(run, 0, i);
        n->len = run->payload_len;
        n->buf = malloc(n->len);
        cr_assert_not_null(n->buf);
        memset(n->buf, 'x', run->payload_len);
        char head[24];
        int k = snprintf(head, sizeof head, "0:%d:", i);
        memcpy(n->buf, head, (size_t)k);
        upulsar_send_opts_t o = {.flags = UPULSAR_SEND_NOCOPY, .free_cb = nc_free, .cb = nc_cb,
                                 .opaque = n};
        n->m->send_err = upulsar_send(run->p, n->buf, run->payload_len, &o, &n->m->f);
        cr_assert_eq(n->m->send_err, UPULSAR_OK, "message %d: %s", i, upulsar_last_error());
    }
}

/* Every message in [from, to): free_cb ran exactly once with its own
 * buffer, and had run by the time the message's callback ran. */
static void nc_assert_freed_once(nc_t *ncs, int from, int to)
{
    for (int i = from; i < to; i++) {
        cr_assert_eq(atomic_load(&ncs[i].frees), 1, "message %d: free_cb ran %d times", i,
                     atomic_load(&ncs[i].frees));
        cr_assert_eq(atomic_load(&ncs[i].wrong_ptr), 0, "message %d: free_cb got another buffer",
                     i);
        cr_assert_eq(ncs[i].frees_at_cb, 1, "message %d resolved before its free_cb", i);
    }
}

/* Scenario:
 *  1. A topic of 2 partitions; 1,000 no-copy messages (free_cb scribbles
 *     over each payload as soon as it runs).
 *  2. Every future succeeds; free_cb ran exactly once per message, with
 *     its buffer, before the message resolved.
 *  3. The log check: each stored once, in order, with its exact bytes
 *     (not the scribble): the payload was not read after free_cb.
 *  4. The failure paths: on another topic, with receipts withheld and one
 *     batch in flight at most, 1,000 more no-copy messages (some encoded
 *     and in flight, the rest still in the ring), then a stop that waits
 *     for nothing: each fails with CLOSED, its free_cb ran exactly once and
 *     before its callback. A send refused at the call (a stopped producer)
 *     never runs free_cb. */
Test(promises_send, no_copy_free_cb_runs_once_per_message_and_before_its_resolution)
{
    enum { N = 1000 / FT_SCALE };
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "nocopy", 2), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(c, "nc", "nocopy", 0, NULL);
    ft_run_t *run = ft_run_new(p, 1, N, 0);
    nc_t *ncs = calloc(N, sizeof *ncs);
    cr_assert_not_null(ncs);
    nc_send_range(run, ncs, 0, N);
    cr_assert_eq(ft_collect(run), 0);
    cr_assert(ft_wait_for(ft_cbs_done, run));
    nc_assert_freed_once(ncs, 0, N);
    ft_check_opts_t o = {.topic = "nocopy", .partitions = 2};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)N);
    for (int i = 0; i < N; i++)
        free(ncs[i].buf);
    ft_run_free(run);

    const char *kv[] = {"max.inflight.batches", "1", "batch.max.messages", "10",
                        "send.timeout.ms", "0", NULL};
    upulsar_producer_t *q = ft_producer(c, "nf", "nocopy-failed", 0, kv);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "nocopy-failed"), UPULSAR_OK);
    run = ft_run_new(q, 1, N, 0);
    memset(ncs, 0, N * sizeof *ncs);
    nc_send_range(run, ncs, 0, N);
    cr_assert_eq(upulsar_tb_wait_messages(tb, "nocopy-failed", 1, FT_WAIT_MS), UPULSAR_OK);
    for (int i = 0; i < N; i++) {
        ft_msg_t *m = ft_msg(run, 0, i);
        cr_assert_eq(upulsar_future_release(m->f), UPULSAR_OK);
        m->f = NULL;
    }
    cr_assert_eq(upulsar_producer_stop(q, 0), UPULSAR_ERR__TIMED_OUT);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(atomic_load(&ft_msg(run, 0, i)->cb_calls), 1, "message %d", i);
        cr_assert_eq(ft_msg(run, 0, i)->cb_err, UPULSAR_ERR__CLOSED, "message %d: %s", i,
                     upulsar_err_name(ft_msg(run, 0, i)->cb_err));
    }
    nc_assert_freed_once(ncs, 0, N);
    for (int i = 0; i < N; i++)
        free(ncs[i].buf);
    ft_run_free(run);
    free(ncs);
    ft_stop_client_and_broker(tb, c);
}

/* ---- routing.mode -------------------------------------------------------- */

enum { ROUTE_PARTS = 4 };

/* Two threads send keyless messages to a topic of ROUTE_PARTS partitions
 * with @p mode; the log check passes (each stored once, in send order per
 * partition and thread); returns how many messages each partition got. */
static void route_run(const char *mode, const char *topic, int per_thread, int counts[ROUTE_PARTS])
{
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, topic, ROUTE_PARTS), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"routing.mode", mode, NULL};
    upulsar_producer_t *p = ft_producer(c, "rm", topic, 0, kv);
    ft_run_t *run = ft_run_new(p, 2, per_thread, 0);
    ft_run_start(run);
    ft_run_join(run);
    cr_assert_eq(ft_collect(run), 0);
    cr_assert(ft_wait_for(ft_cbs_done, run));
    ft_check_opts_t o = {.topic = topic, .partitions = ROUTE_PARTS};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)(2 * per_thread));
    for (int g = 0; g < ROUTE_PARTS; g++)
        counts[g] = 0;
    for (int k = 0; k < 2 * per_thread; k++)
        counts[run->msgs[k].part]++;
    ft_run_free(run);
    ft_stop_client_and_broker(tb, c);
}

/* routing.mode=single: 2 x 1,000 keyless messages, all on one partition. */
Test(promises_send, routing_single_puts_every_keyless_message_on_one_partition)
{
    enum { PER = 1000 / FT_SCALE };
    int counts[ROUTE_PARTS];
    route_run("single", "route-single", PER, counts);
    int used = 0;
    for (int g = 0; g < ROUTE_PARTS; g++)
        if (counts[g]) {
            used++;
            cr_assert_eq(counts[g], 2 * PER, "partition %d got %d of %d", g, counts[g], 2 * PER);
        }
    cr_assert_eq(used, 1);
}

/* routing.mode=random: 2 x 1,000 keyless messages (2 x 100 under
 * sanitizers) reach every one of the 4 partitions. Each message picks a
 * partition uniformly at random, so the chance that some partition gets
 * none of n messages is at most 4 x (3/4)^n: below 1e-12 for n = 200 and
 * below 1e-249 for n = 2,000 -- a failure means the mode does not spread. */
Test(promises_send, routing_random_spreads_keyless_messages_over_every_partition)
{
    enum { PER = 1000 / FT_SCALE };
    int counts[ROUTE_PARTS];
    route_run("random", "route-random", PER, counts);
    for (int g = 0; g < ROUTE_PARTS; g++)
        cr_assert_gt(counts[g], 0, "partition %d got no message of %d", g, 2 * PER);
}

/* ---- keys stay on their producer across re-creation ---------------------- */

/* Send messages [from, to) of thread 0 of @p run keyed "k<i % 64>". */
static void send_keyed_range(ft_run_t *run, int from, int to)
{
    for (int i = from; i < to; i++) {
        ft_msg_t *m = ft_msg(run, 0, i);
        char payload[64], key[16];
        memset(payload, 'x', run->payload_len);
        int n = snprintf(payload, sizeof payload, "0:%d:", i);
        payload[n] = 'x';
        snprintf(key, sizeof key, "k%d", i % 64);
        upulsar_send_opts_t o = {.partition_key = key, .cb = ft_cb, .opaque = m};
        upulsar_err_t err;
        while ((err = upulsar_send(run->p, payload, run->payload_len, &o, &m->f)) ==
               UPULSAR_ERR__QUEUE_FULL)
            sched_yield();
        m->send_err = err;
        cr_assert_eq(err, UPULSAR_OK, "message %d: %s", i, upulsar_last_error());
    }
}

/* The producer name that stored each key "k<0..63>" on @p topic's
 * partitions (one name per key, else the test fails), into @p names
 * ("" = key not seen); counts stored messages into *@p total. */
static void names_of_keys(upulsar_tb_t *tb, const char *topic, int parts, char names[64][128],
                          size_t *total)
{
    *total = 0;
    for (int g = 0; g < parts; g++) {
        char pt[256];
        snprintf(pt, sizeof pt, "%s-partition-%d", topic, g);
        upulsar_tb_snapshot_t *s = NULL;
        cr_assert_eq(upulsar_tb_snapshot(tb, pt, &s), UPULSAR_OK);
        for (size_t j = 0; j < upulsar_tb_snapshot_count(s); j++) {
            const upulsar_tb_msg_t *sm = upulsar_tb_snapshot_msg(s, j);
            int k = -1;
            cr_assert_not_null(sm->partition_key);
            cr_assert_eq(sscanf(sm->partition_key, "k%d", &k), 1);
            cr_assert(k >= 0 && k < 64);
            if (!names[k][0])
                snprintf(names[k], sizeof names[k], "%s", sm->producer_name);
            cr_assert_str_eq(names[k], sm->producer_name, "key k%d stored by %s and by %s", k,
                             names[k], sm->producer_name);
            (*total)++;
        }
        upulsar_tb_snapshot_free(s);
    }
}

/* Has every producer of @p p been re-created at least once, and is every
 * one READY? (Waiting for READY alone could pass before the client even
 * noticed the dropped connections.) */
static int all_recreated_and_ready(void *a)
{
    upulsar_producer_t *p = a;
    upulsar_producer_info_t pi[64];
    size_t n = 0;
    if (upulsar_producer_list(p, pi, 64, &n) != UPULSAR_OK)
        return 0;
    for (size_t i = 0; i < n && i < 64; i++)
        if (pi[i].reconnects < 1 || pi[i].state != UPULSAR_STATE_READY)
            return 0;
    return 1;
}

/* Scenario:
 *  1. A topic of 2 partitions, producers.per.partition = 3, names chosen by
 *     the broker; 640 messages over 64 keys: each key is stored by one
 *     producer only, and the keys use more than one producer in a group.
 *  2. Every connection is dropped; every producer is re-created (same
 *     names, as upulsar_producer_list() shows before and after).
 *  3. 640 more messages with the same keys: over all 1,280, each key was
 *     stored by the same single producer as before; the log check passes
 *     (each once, in order per producer). */
Test(promises_send, a_key_stays_on_its_producer_across_recreation)
{
    enum { PER = 640, PARTS = 2, K = 3 };
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "sticky", PARTS), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"producers.per.partition", "3", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, "sticky", 0, kv);
    upulsar_producer_info_t before[PARTS * K], after[PARTS * K];
    size_t nb = 0, na = 0;
    cr_assert_eq(upulsar_producer_list(p, before, PARTS * K, &nb), UPULSAR_OK);
    cr_assert_eq(nb, (size_t)(PARTS * K));

    ft_run_t *run = ft_run_new(p, 1, 2 * PER, 0);
    send_keyed_range(run, 0, PER);
    cr_assert_eq(upulsar_producer_flush(p, FT_WAIT_MS), UPULSAR_OK);
    static char first[64][128];
    size_t total = 0;
    names_of_keys(tb, "sticky", PARTS, first, &total);
    cr_assert_eq(total, (size_t)PER);
    int distinct = 0;
    for (int k = 0; k < 64; k++) {
        cr_assert(first[k][0], "key k%d not stored", k);
        int seen = 0;
        for (int j = 0; j < k; j++)
            seen |= !strcmp(first[j], first[k]);
        distinct += !seen;
    }
    cr_assert_gt(distinct, PARTS, "the keys used only %d producers: the test proves little",
                 distinct);

    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    cr_assert(ft_wait_for(all_recreated_and_ready, p), "not every producer was re-created");
    cr_assert_eq(upulsar_producer_list(p, after, PARTS * K, &na), UPULSAR_OK);
    cr_assert_eq(na, nb);
    for (size_t i = 0; i < nb; i++)
        cr_assert_str_eq(after[i].name, before[i].name, "producer %zu renamed", i);

    send_keyed_range(run, PER, 2 * PER);
    cr_assert_eq(ft_collect(run), 0);
    cr_assert(ft_wait_for(ft_cbs_done, run));
    static char all[64][128];
    names_of_keys(tb, "sticky", PARTS, all, &total);
    cr_assert_eq(total, (size_t)(2 * PER));
    for (int k = 0; k < 64; k++)
        cr_assert_str_eq(all[k], first[k], "key k%d moved from %s to another producer", k,
                         first[k]);
    ft_check_opts_t o = {.topic = "sticky", .partitions = PARTS};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)(2 * PER));
    ft_run_free(run);
    ft_stop_client_and_broker(tb, c);
}

/* ---- flags this library does not know ------------------------------------ */

/* A flag bit no UPULSAR_SEND_* names is refused (INVALID_ARG, naming the
 * bits), by upulsar_send() and by upulsar_send_many() (which stops before
 * that message): "no option is ever silently dropped". Nothing refused is
 * stored; the messages around it are. */
Test(promises_send, unknown_send_flags_are_refused)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    upulsar_producer_t *p = ft_producer(c, "uf", "unknown-flags", 0, NULL);
    upulsar_send_opts_t bad = {.flags = 0x100};
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(p, "bad", 3, &bad, &f), UPULSAR_ERR__INVALID_ARG);
    cr_assert_null(f);
    cr_assert(strstr(upulsar_last_error(), "0x100") != NULL, "%s", upulsar_last_error());
    upulsar_msg_t m[3] = {{.payload = "a", .len = 1},
                          {.payload = "bad", .len = 3, .opts = &bad},
                          {.payload = "c", .len = 1}};
    upulsar_future_t *fs[3] = {NULL, NULL, NULL};
    size_t accepted = 9;
    cr_assert_eq(upulsar_send_many(p, m, 3, fs, &accepted), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(accepted, 1);
    cr_assert_eq(upulsar_future_wait(fs[0], 10000, NULL), UPULSAR_OK);
    upulsar_future_release(fs[0]);
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "unknown-flags", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    cr_assert_arr_eq(upulsar_tb_snapshot_msg(s, 0)->payload, "a", 1);
    upulsar_tb_snapshot_free(s);
    ft_stop_client_and_broker(tb, c);
}
