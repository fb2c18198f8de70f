/* test_future_detail.c -- a failed message says why: its future's
 * upulsar_future_error_detail() names the partition topic, the broker and
 * the reason (with the broker's own error text when the broker refused),
 * and its delivery callback reads the same text from upulsar_last_error();
 * a success has no detail; the texts are shared, so the client's store of
 * them stays bounded however many messages fail.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * Every failure kind the test broker can provoke: send.timeout.ms with the
 * receipts withheld, stop with messages unacknowledged, SEND_ERROR
 * (ChecksumError, which fails one entry; TopicTerminatedError, which fails
 * the group), a PRODUCER refusal that fails the group, the restart
 * intensity, and MSG_TOO_LARGE decided after the message was accepted. */
#include "fault_common.h"

#include "engine.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(future_detail, .init = setup, .fini = teardown, .timeout = 120);

/* ---- messages that record what their callback saw ----------------------- */

typedef struct {
    upulsar_future_t *f;
    char key[16];
    _Atomic int cb_calls;
    upulsar_err_t cb_err;
    char cb_detail[UP_DETAIL_TEXT_MAX + 64]; /* upulsar_last_error() in the callback */
} dmsg_t;

static void record_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)id;
    dmsg_t *m = opaque;
    m->cb_err = err;
    snprintf(m->cb_detail, sizeof m->cb_detail, "%s", err ? upulsar_last_error() : "");
    atomic_fetch_add_explicit(&m->cb_calls, 1, memory_order_release);
}

/* Send @p n messages of @p p (keys "k<i>" when @p keyed), each with a
 * future and record_cb; every send must be accepted. */
static dmsg_t *send_n(upulsar_producer_t *p, int n, int keyed)
{
    dmsg_t *ms = calloc((size_t)n, sizeof *ms);
    cr_assert_not_null(ms);
    for (int i = 0; i < n; i++) {
        char payload[32];
        int len = snprintf(payload, sizeof payload, "m%d", i);
        upulsar_send_opts_t o = {.cb = record_cb, .opaque = &ms[i]};
        if (keyed) {
            snprintf(ms[i].key, sizeof ms[i].key, "k%d", i);
            o.partition_key = ms[i].key;
        }
        cr_assert_eq(upulsar_send(p, payload, (size_t)len, &o, &ms[i].f), UPULSAR_OK,
                     "message %d: %s", i, upulsar_last_error());
    }
    return ms;
}

typedef struct {
    dmsg_t *ms;
    int n;
} batch_t;

static int all_resolved(void *a)
{
    batch_t *b = a;
    for (int i = 0; i < b->n; i++)
        if (upulsar_future_poll(b->ms[i].f, NULL) == UPULSAR_ERR__PENDING ||
            atomic_load_explicit(&b->ms[i].cb_calls, memory_order_acquire) == 0)
            return 0;
    return 1;
}

static void wait_resolved(dmsg_t *ms, int n)
{
    batch_t b = {ms, n};
    cr_assert(ft_wait_for(all_resolved, &b), "messages still unresolved");
}

/* "127.0.0.1:<port>" of the test broker: where its producers live. */
static void broker_addr(upulsar_tb_t *b, char *out, size_t size)
{
    snprintf(out, size, "127.0.0.1:%d", upulsar_tb_port(b));
}

/* Message @p m failed with @p err; its detail starts with "<@p topic> via
 * <broker>: ", contains each of @p needles (NULL-terminated), and is the
 * text its callback read from upulsar_last_error(). */
static void assert_failed_with(const dmsg_t *m, upulsar_err_t err, const char *topic,
                               const char *const *needles)
{
    cr_assert_eq(upulsar_future_poll(m->f, NULL), err, "%s",
                 upulsar_err_name(upulsar_future_poll(m->f, NULL)));
    cr_assert_eq(atomic_load(&m->cb_calls), 1);
    cr_assert_eq(m->cb_err, err);
    const char *d = upulsar_future_error_detail(m->f);
    cr_assert_not_null(d, "a failed future without a detail");
    char addr[64], head[400];
    broker_addr(tb, addr, sizeof addr);
    snprintf(head, sizeof head, "%s via %s: ", topic, addr);
    cr_assert_eq(strncmp(d, head, strlen(head)), 0, "detail \"%s\" does not start with \"%s\"", d,
                 head);
    for (size_t i = 0; needles && needles[i]; i++)
        cr_assert(strstr(d, needles[i]), "detail \"%s\" does not say \"%s\"", d, needles[i]);
    cr_assert_str_eq(m->cb_detail, d, "callback saw \"%s\", the future says \"%s\"", m->cb_detail,
                     d);
}

static void release_all(dmsg_t *ms, int n)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(upulsar_future_release(ms[i].f), UPULSAR_OK);
    free(ms);
}

/* The partition topic @p key is routed to on @p p (a topic "<base>" of
 * public/default). */
static void partition_topic(upulsar_producer_t *p, const char *base, const char *key, char *out,
                            size_t size)
{
    snprintf(out, size, "persistent://public/default/%s-partition-%d", base,
             upulsar_producer_partition_for_key(p, key));
}

/* ---- no failure, no detail ---------------------------------------------- */

/* Scenario: a NULL future, a pending one (receipts withheld) and one that
 * succeeded have no detail (NULL); neither has a future once released. */
Test(future_detail, success_and_pending_futures_have_no_detail)
{
    cr_assert_null(upulsar_future_error_detail(NULL));
    upulsar_producer_t *p = ft_producer(client, NULL, "detail-ok", 0, NULL);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "detail-ok"), UPULSAR_OK);
    dmsg_t *ms = send_n(p, 1, 0);
    cr_assert_eq(upulsar_future_poll(ms[0].f, NULL), UPULSAR_ERR__PENDING);
    cr_assert_null(upulsar_future_error_detail(ms[0].f));
    cr_assert_eq(upulsar_tb_release_receipts(tb, "detail-ok"), UPULSAR_OK);
    wait_resolved(ms, 1);
    cr_assert_eq(upulsar_future_poll(ms[0].f, NULL), UPULSAR_OK);
    cr_assert_eq(ms[0].cb_err, UPULSAR_OK);
    cr_assert_null(upulsar_future_error_detail(ms[0].f));
    upulsar_future_t *f = ms[0].f;
    release_all(ms, 1);
    /* a released handle (its slot not handed out again: nothing was sent
     * since) is refused, not read */
    cr_assert_null(upulsar_future_error_detail(f));
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
}

/* ---- send.timeout.ms ---------------------------------------------------- */

/* Scenario:
 *  1. A producer over 4 partitions, send.timeout.ms 300, receipts withheld.
 *  2. 40 keyed messages are sent; all expire (MSG_TIMED_OUT).
 *  3. Each detail names the message's own partition topic and the broker,
 *     says the send timed out after 300 ms without a receipt while the
 *     producer was connected; the callback read the same text.
 *  4. Messages of one partition that expired for the same reason share one
 *     text (one object: nothing was allocated per message). */
Test(future_detail, send_timeout_names_partition_broker_and_reason)
{
    enum { N = 40, PARTS = 4 };
    const char *kv[] = {"send.timeout.ms", "300", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "detail-timeout", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, NULL, "detail-timeout", PARTS, kv);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    dmsg_t *ms = send_n(p, N, 1);
    wait_resolved(ms, N);
    const char *first_of[PARTS] = {NULL};
    for (int i = 0; i < N; i++) {
        char topic[256];
        partition_topic(p, "detail-timeout", ms[i].key, topic, sizeof topic);
        const char *needles[] = {"send timed out after 300 ms", "no receipt from the broker",
                                 "READY", NULL};
        assert_failed_with(&ms[i], UPULSAR_ERR__MSG_TIMED_OUT, topic, needles);
        int part = upulsar_producer_partition_for_key(p, ms[i].key);
        const char *d = upulsar_future_error_detail(ms[i].f);
        if (!first_of[part])
            first_of[part] = d;
        cr_assert_eq(d, first_of[part], "partition %d: the same failure has two texts: %s / %s",
                     part, d, first_of[part]);
    }
    release_all(ms, N);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
    upulsar_producer_stop(p, 10000);
}

/* ---- stop ----------------------------------------------------------------- */

/* Scenario: receipts withheld, 20 keyed messages over 2 partitions, then
 * upulsar_producer_stop() with no time to wait: each fails with CLOSED,
 * its detail naming its partition topic, the broker and the stop. */
Test(future_detail, stop_with_pending_messages_says_stopped)
{
    enum { N = 20 };
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "detail-stop", 2), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, NULL, "detail-stop", 2, NULL);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, NULL), UPULSAR_OK);
    dmsg_t *ms = send_n(p, N, 1);
    char topics[N][256];
    for (int i = 0; i < N; i++)
        partition_topic(p, "detail-stop", ms[i].key, topics[i], sizeof topics[i]);
    cr_assert_eq(upulsar_producer_stop(p, 0), UPULSAR_ERR__TIMED_OUT);
    wait_resolved(ms, N);
    const char *needles[] = {"producer stopped before the message was acknowledged", NULL};
    for (int i = 0; i < N; i++)
        assert_failed_with(&ms[i], UPULSAR_ERR__CLOSED, topics[i], needles);
    release_all(ms, N);
    cr_assert_eq(upulsar_tb_release_receipts(tb, NULL), UPULSAR_OK);
}

/* ---- SEND_ERROR ------------------------------------------------------------ */

/* Scenario:
 *  1. The broker answers every SEND with SEND_ERROR ChecksumError (the
 *     producer sends an intact entry again a few times, then gives up):
 *     that message fails with UPULSAR_ERR_CHECKSUM_ERROR, its detail naming
 *     the topic, the broker, the ServerError and the broker's message.
 *  2. The next message succeeds and has no detail.
 *  3. The broker answers the next SEND with TopicTerminatedError (terminal):
 *     that message fails with UPULSAR_ERR_TOPIC_TERMINATED and the broker's
 *     text in its detail. */
Test(future_detail, send_error_carries_the_brokers_text)
{
    const char *topic = "persistent://public/default/detail-send-error";
    const char *kv[] = {"batching.enabled", "false", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, topic, 0, kv);
    cr_assert_eq(upulsar_tb_fail_sends(tb, topic, 100, 9 /* ChecksumError */), UPULSAR_OK);
    dmsg_t *bad = send_n(p, 1, 0);
    wait_resolved(bad, 1);
    const char *checksum[] = {"broker refused the send: ChecksumError: ",
                              "Checksum failed on the broker", NULL};
    assert_failed_with(&bad[0], UPULSAR_ERR_CHECKSUM_ERROR, topic, checksum);
    cr_assert_eq(upulsar_tb_fail_sends(tb, topic, 0, 0), UPULSAR_OK);

    dmsg_t *good = send_n(p, 1, 0);
    wait_resolved(good, 1);
    cr_assert_eq(upulsar_future_poll(good[0].f, NULL), UPULSAR_OK);
    cr_assert_null(upulsar_future_error_detail(good[0].f));

    cr_assert_eq(upulsar_tb_fail_sends(tb, topic, 1, 15 /* TopicTerminatedError */), UPULSAR_OK);
    dmsg_t *term = send_n(p, 1, 0);
    wait_resolved(term, 1);
    const char *terminated[] = {"broker refused the send: TopicTerminatedError: ",
                                "Error injected by the test broker", NULL};
    assert_failed_with(&term[0], UPULSAR_ERR_TOPIC_TERMINATED, topic, terminated);
    release_all(bad, 1);
    release_all(good, 1);
    release_all(term, 1);
    upulsar_producer_stop(p, 10000);
}

/* ---- the group fails -------------------------------------------------------- */

/* Scenario:
 *  1. Receipts withheld, 10 messages pending.
 *  2. The broker will refuse the next PRODUCER with TopicTerminatedError,
 *     then unloads the topic (CLOSE_PRODUCER): the re-creation is refused,
 *     which is terminal, and the partition group fails.
 *  3. Every pending message fails with UPULSAR_ERR_TOPIC_TERMINATED; its
 *     detail names the topic, the broker, the group failure and the
 *     broker's refusal text. */
Test(future_detail, refused_producer_fails_the_group_with_the_refusal)
{
    enum { N = 10 };
    const char *topic = "persistent://public/default/detail-refused";
    upulsar_producer_t *p = ft_producer(client, "dr", topic, 0, NULL);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, topic), UPULSAR_OK);
    dmsg_t *ms = send_n(p, N, 0);
    cr_assert_eq(upulsar_tb_fail_producers(tb, topic, 1, 15 /* TopicTerminatedError */),
                 UPULSAR_OK);
    cr_assert_eq(upulsar_tb_unload_topic(tb, topic), 1);
    wait_resolved(ms, N);
    const char *needles[] = {"partition group failed: ", "refused to re-create producer dr",
                             "topic terminated", "Error injected by the test broker", NULL};
    for (int i = 0; i < N; i++)
        assert_failed_with(&ms[i], UPULSAR_ERR_TOPIC_TERMINATED, topic, needles);
    release_all(ms, N);
    cr_assert_eq(upulsar_tb_release_receipts(tb, topic), UPULSAR_OK);
    upulsar_producer_stop(p, 10000);
}

/* Scenario:
 *  1. restart.intensity 1: a second restart within restart.period.ms fails
 *     the group. Receipts withheld, 10 messages pending.
 *  2. The broker refuses new connections and drops the open ones: the
 *     producer's re-creations fail until the restart intensity is
 *     exceeded.
 *  3. Every pending message fails with UPULSAR_ERR__GROUP_FAILED; its
 *     detail names the topic, the broker, the group failure, the limit and
 *     the last attempt's error. */
Test(future_detail, restart_intensity_names_the_limit)
{
    enum { N = 10 };
    const char *topic = "persistent://public/default/detail-intensity";
    const char *kv[] = {"restart.intensity", "1", "restart.period.ms", "600000", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, topic, 0, kv);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, topic), UPULSAR_OK);
    dmsg_t *ms = send_n(p, N, 0);
    cr_assert_eq(upulsar_tb_refuse_connections(tb, FT_WAIT_MS), UPULSAR_OK);
    cr_assert_geq(upulsar_tb_drop_connections(tb, NULL), 1);
    wait_resolved(ms, N);
    cr_assert_eq(upulsar_tb_refuse_connections(tb, 0), UPULSAR_OK);
    const char *needles[] = {"partition group failed: more than 1 restarts in 600000 ms",
                             "(last failure: ", NULL};
    for (int i = 0; i < N; i++)
        assert_failed_with(&ms[i], UPULSAR_ERR__GROUP_FAILED, topic, needles);
    release_all(ms, N);
    upulsar_producer_stop(p, 10000);
}

/* ---- MSG_TOO_LARGE after acceptance --------------------------------------- */

/* Scenario:
 *  1. A broker whose max_message_size is 64 KiB owns the topic; a client
 *     whose service broker (Pulsar's default, 5 MiB) answers the start's
 *     PARTITIONED_METADATA and redirects lookups there, so the client has
 *     not met the small limit yet, and a producer with
 *     lazy.start.partitions over 1 partition (created at its first
 *     message). The small broker refuses connections for now.
 *  2. A 128 KiB message is accepted (within 5 MiB); connections are let
 *     in; the producer is created and learns 64 KiB.
 *  3. The message fails alone with MSG_TOO_LARGE, its detail naming the
 *     partition topic, the broker, its size and the broker's limit. */
Test(future_detail, too_large_after_acceptance_names_the_limit)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.max_message_size = 64 * 1024;
    upulsar_tb_t *small = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &small), UPULSAR_OK, "%s", upulsar_last_error());
    /* start asks the service broker for the partition count (it checks
     * the count it is given), which is why that broker is not the small
     * one: the client would learn its limit there */
    upulsar_client_t *c = ft_client(tb, NULL);
    cr_assert_eq(upulsar_tb_set_partitions(tb, "detail-large", 1), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_owner(tb, "detail-large", upulsar_tb_url(small)), UPULSAR_OK);
    const char *kv[] = {"lazy.start.partitions", "true", NULL};
    upulsar_producer_t *p = ft_producer(c, NULL, "detail-large", 1, kv);
    cr_assert_eq(upulsar_tb_refuse_connections(small, FT_WAIT_MS), UPULSAR_OK);
    size_t len = 128 * 1024;
    char *payload = malloc(len);
    cr_assert_not_null(payload);
    memset(payload, 'l', len);
    dmsg_t *ms = calloc(1, sizeof *ms);
    cr_assert_not_null(ms);
    upulsar_send_opts_t so = {.cb = record_cb, .opaque = &ms[0]};
    cr_assert_eq(upulsar_send(p, payload, len, &so, &ms[0].f), UPULSAR_OK, "%s",
                 upulsar_last_error());
    free(payload);
    cr_assert_eq(upulsar_tb_refuse_connections(small, 0), UPULSAR_OK);
    wait_resolved(ms, 1);
    cr_assert_eq(upulsar_future_poll(ms[0].f, NULL), UPULSAR_ERR__MSG_TOO_LARGE);
    const char *d = upulsar_future_error_detail(ms[0].f);
    cr_assert_not_null(d);
    char head[300], size[64];
    snprintf(head, sizeof head, "persistent://public/default/detail-large-partition-0 via "
                                "127.0.0.1:%d: ",
             upulsar_tb_port(small));
    cr_assert_eq(strncmp(d, head, strlen(head)), 0, "%s", d);
    snprintf(size, sizeof size, "message of %zu bytes", len);
    cr_assert(strstr(d, size), "%s", d);
    cr_assert(strstr(d, "max_message_size 65536"), "%s", d);
    cr_assert_str_eq(ms[0].cb_detail, d);
    release_all(ms, 1);
    upulsar_producer_stop(p, 10000);
    upulsar_client_destroy(c);
    upulsar_tb_stop(small);
}

/* ---- the store stays bounded ------------------------------------------------ */

enum { MAX_TEXTS = 8 };

typedef struct {
    pthread_mutex_t mu;
    char texts[MAX_TEXTS][UP_DETAIL_TEXT_MAX];
    int ntexts, overflow;
    _Atomic uint64_t failed, other;
} seen_t;

static seen_t seen = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Fire-and-forget callback: count the failure and keep each distinct text
 * it read from upulsar_last_error(). */
static void count_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)id;
    (void)opaque;
    if (err != UPULSAR_ERR__MSG_TIMED_OUT) {
        atomic_fetch_add(&seen.other, 1);
        return;
    }
    const char *d = upulsar_last_error();
    pthread_mutex_lock(&seen.mu);
    int i = 0;
    while (i < seen.ntexts && strcmp(seen.texts[i], d))
        i++;
    if (i == seen.ntexts) {
        if (seen.ntexts < MAX_TEXTS)
            snprintf(seen.texts[seen.ntexts++], UP_DETAIL_TEXT_MAX, "%s", d);
        else
            seen.overflow++;
    }
    pthread_mutex_unlock(&seen.mu);
    atomic_fetch_add(&seen.failed, 1);
}

typedef struct {
    uint64_t n;
} count_t;

static int failed_at_least(void *a)
{
    return atomic_load(&seen.failed) + atomic_load(&seen.other) >= ((count_t *)a)->n;
}

/* Scenario:
 *  1. send.timeout.ms 100, receipts withheld; 100,000 messages (10,000
 *     under sanitizers) are sent without futures, each with a callback;
 *     they expire in many runs (queue.buffer.bytes holds only part of
 *     them at a time, so sending goes on while earlier ones expire).
 *  2. Every one fails with MSG_TIMED_OUT; the callbacks saw only a few
 *     distinct texts (one per reason: sent without a receipt, or never
 *     sent), each naming the topic and the timeout.
 *  3. The client's detail store holds exactly those texts: 100,000
 *     failures with the same reasons took no more. */
Test(future_detail, store_stays_bounded_after_many_failures)
{
    const uint64_t total = 100000 / FT_SCALE;
    const char *topic = "persistent://public/default/detail-many";
    const char *kv[] = {"send.timeout.ms", "100", "queue.buffer.bytes", "262144", NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, topic, 0, kv);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, topic), UPULSAR_OK);
    for (uint64_t i = 0; i < total; i++) {
        char payload[32];
        int len = snprintf(payload, sizeof payload, "m%llu", (unsigned long long)i);
        upulsar_send_opts_t o = {.cb = count_cb};
        upulsar_err_t err;
        uint64_t end = ft_now_ms() + FT_WAIT_MS;
        while ((err = upulsar_send(p, payload, (size_t)len, &o, NULL)) == UPULSAR_ERR__QUEUE_FULL &&
               ft_now_ms() < end)
            ft_pause_ms(1);
        cr_assert_eq(err, UPULSAR_OK, "message %llu: %s", (unsigned long long)i,
                     upulsar_last_error());
    }
    count_t want = {total};
    cr_assert(ft_wait_for(failed_at_least, &want), "only %llu of %llu resolved",
              (unsigned long long)atomic_load(&seen.failed), (unsigned long long)total);
    cr_assert_eq(atomic_load(&seen.other), 0, "messages resolved otherwise than MSG_TIMED_OUT");
    cr_assert_eq(atomic_load(&seen.failed), total);
    pthread_mutex_lock(&seen.mu);
    int ntexts = seen.ntexts, overflow = seen.overflow;
    for (int i = 0; i < ntexts; i++) {
        cr_assert_eq(strncmp(seen.texts[i], topic, strlen(topic)), 0, "%s", seen.texts[i]);
        cr_assert(strstr(seen.texts[i], "send timed out after 100 ms"), "%s", seen.texts[i]);
    }
    pthread_mutex_unlock(&seen.mu);
    cr_assert_eq(overflow, 0, "more than %d different texts for one failure kind", MAX_TEXTS);
    cr_assert_geq(ntexts, 1);
    cr_assert_eq(up_detail_count(&client->futures), (uint32_t)ntexts,
                 "the store holds %u texts, the failures had %d",
                 up_detail_count(&client->futures), ntexts);
    cr_assert_eq(upulsar_tb_release_receipts(tb, topic), UPULSAR_OK);
    upulsar_producer_stop(p, 10000);
}

/* ---- the store itself ----------------------------------------------------- */

/* Scenario (the store of a pool, without a broker):
 *  1. The same text asked for twice is one entry.
 *  2. UP_DETAIL_MAX + 10 different texts held at once: the store holds
 *     UP_DETAIL_MAX of them; the 10 others get the fallback text, which
 *     says why.
 *  3. A future failed with a text keeps it after the site dropped its
 *     reference, and reads it back; released, it lets go of it.
 *  4. Once nothing references them, a new text sweeps the unreferenced
 *     ones away: the store shrinks back. */
Test(future_detail, store_caps_distinct_texts_and_frees_unreferenced_ones)
{
    static up_future_pool_t pool;
    cr_assert_eq(up_future_pool_init(&pool, UP_FUT_SEG_SIZE), 0);
    up_detail_t *a = up_detail_get(&pool, "same %d", 1);
    up_detail_t *b = up_detail_get(&pool, "same %d", 1);
    cr_assert_eq(a, b);
    cr_assert_eq(up_detail_count(&pool), 1);
    enum { EXTRA = 10 };
    up_detail_t **held = calloc(UP_DETAIL_MAX + EXTRA, sizeof *held);
    cr_assert_not_null(held);
    for (int i = 0; i < UP_DETAIL_MAX + EXTRA; i++)
        held[i] = up_detail_get(&pool, "text %d", i);
    cr_assert_eq(up_detail_count(&pool), UP_DETAIL_MAX);
    int fallbacks = 0;
    for (int i = 0; i < UP_DETAIL_MAX + EXTRA; i++) {
        char want[32];
        snprintf(want, sizeof want, "text %d", i);
        if (strcmp(up_detail_text(held[i]), want) != 0) {
            fallbacks++;
            cr_assert(strstr(up_detail_text(held[i]), "no detail kept"), "%s",
                      up_detail_text(held[i]));
        }
    }
    /* "same 1" took one place: the last EXTRA + 1 texts got the fallback */
    cr_assert_eq(fallbacks, EXTRA + 1);

    upulsar_future_t *f = up_future_alloc(&pool);
    cr_assert_not_null(f);
    cr_assert(up_future_fail(f, UPULSAR_ERR__CLOSED, a));
    up_detail_put(&pool, a);
    up_detail_put(&pool, b);
    cr_assert_eq(upulsar_future_poll(f, NULL), UPULSAR_ERR__CLOSED);
    cr_assert_str_eq(upulsar_future_error_detail(f), "same 1");
    for (int i = 0; i < UP_DETAIL_MAX + EXTRA; i++)
        up_detail_put(&pool, held[i]);
    /* the store is full; only "same 1", held by the future, is referenced */
    up_detail_t *n1 = up_detail_get(&pool, "new");
    cr_assert_str_eq(up_detail_text(n1), "new");
    cr_assert_eq(up_detail_count(&pool), 2, "%u", up_detail_count(&pool));
    cr_assert_str_eq(upulsar_future_error_detail(f), "same 1");
    cr_assert_eq(upulsar_future_release(f), UPULSAR_OK);
    up_detail_put(&pool, n1);
    /* both unreferenced now, kept for reuse until the store is full again */
    cr_assert_eq(up_detail_count(&pool), 2);
    for (int i = 0; i < UP_DETAIL_MAX; i++)
        up_detail_put(&pool, up_detail_get(&pool, "again %d", i));
    cr_assert_leq(up_detail_count(&pool), UP_DETAIL_MAX);
    free(held);
    up_future_pool_destroy(&pool);
}
