/* test_fault_hostile.c -- a hostile or broken broker: garbage, malformed
 * frames, answers naming nothing the client sent, commands a producer does
 * not expect, frames cut short. Whatever the broker sends, the client must
 * not crash, hang or abort; it drops the connection when the stream cannot
 * be trusted (then re-creates its producers and resends, as after any
 * connection loss) and may ignore a well-formed command that concerns
 * nothing it has; either way no message is lost or stored twice.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * Every test runs one message stream (2 sender threads, futures and
 * callbacks recorded) with a fault thread that goes through a list of
 * cases. For each case it withholds the broker's receipts (so batches are
 * in flight, unanswered, when the bytes arrive), injects the case's bytes
 * with upulsar_tb_inject_raw() -- followed by a PING, the probe, unless the
 * case is a frame cut short -- and watches what the client does:
 *  - DROPS: the client closes that connection without reading past the bad
 *    bytes (the probe PING is never answered), opens a new one (the broker
 *    accepts another connection) and re-creates every producer it had
 *    there;
 *  - IGNORED: the client reads past the bytes (it answers the probe with a
 *    PONG) on the same connection and re-creates nothing;
 *  - RECREATES: the client re-creates the producer on the same connection
 *    (the control: a well-formed CLOSE_PRODUCER for the producer's real id);
 *  - EITHER: DROPS or IGNORED (random bytes that may, by chance, decode).
 * Then the receipts are released and the stream goes on. At the end every
 * future succeeded, the log check passes (each message stored once, in send
 * order, with the id its future reported), and the client still sends and
 * creates producers.
 *
 * The broker's own PINGs are off, so the only PONGs it receives answer the
 * probes. A fresh client numbers its producers from 1: the receipts and
 * CLOSE_PRODUCERs aimed at "the producer" name id 1 (the control and the
 * DROPS expectations fail if that ever stops being so). */
#include "fault_common.h"
#include "frame.h"

/* bound on the client's reaction to one case (it takes milliseconds; the
 * keep-alive cases take about two keep-alive intervals) */
#define HT_REACT_MS 20000

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.deduplication = 1; /* exactly once across the reconnections */
    o.ping_interval_ms = 0; /* PONGs received = answered probes */
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    client = NULL; /* each test makes its own (keep-alive settings differ) */
}

static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(fault_hostile, .init = setup, .fini = teardown, .timeout = 180);

/* ---- bytes a hostile broker sends ---------------------------------------- */

enum { PID = 1 };                               /* the producer's id, see above */
static const uint64_t NOBODY = 1ull << 40;      /* an id nothing has */

static void put_be32(up_buf_t *b, uint32_t v)
{
    uint8_t x[4];
    up_put_be32(x, v);
    cr_assert_eq(up_buf_append(b, x, 4), 0);
}

static void put_bytes(up_buf_t *b, const void *p, size_t n)
{
    cr_assert_eq(up_buf_append(b, p, n), 0);
}

/* [total][command size][command bytes] with the sizes as given */
static void put_frame_raw(up_buf_t *b, uint32_t total, uint32_t cs, const void *cmd, size_t len)
{
    put_be32(b, total);
    put_be32(b, cs);
    put_bytes(b, cmd, len);
}

/* a consistent simple frame around @p cmd (len bytes, taken as they are) */
static void put_frame_of(up_buf_t *b, const void *cmd, size_t len)
{
    put_frame_raw(b, (uint32_t)(4 + len), (uint32_t)len, cmd, len);
}

static void put_cmd(up_buf_t *b, const up_cmd_t *cmd)
{
    cr_assert_eq(up_frame_put_cmd(b, cmd), 0);
}

static void put_ping(up_buf_t *b)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandPing ping = PULSAR__PROTO__COMMAND_PING__INIT;
    cmd.type = UP_CMD(PING);
    cmd.ping = &ping;
    put_cmd(b, &cmd);
}

static void put_receipt(up_buf_t *b, uint64_t pid, uint64_t seq, int with_id)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSendReceipt r = PULSAR__PROTO__COMMAND_SEND_RECEIPT__INIT;
    Pulsar__Proto__MessageIdData id = PULSAR__PROTO__MESSAGE_ID_DATA__INIT;
    cmd.type = UP_CMD(SEND_RECEIPT);
    cmd.send_receipt = &r;
    r.producer_id = pid;
    r.sequence_id = seq;
    if (with_id) {
        id.ledgerid = 7;
        id.entryid = 7;
        r.message_id = &id;
    }
    put_cmd(b, &cmd);
}

static void put_send_error(up_buf_t *b, uint64_t pid, uint64_t seq, int error)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSendError e = PULSAR__PROTO__COMMAND_SEND_ERROR__INIT;
    cmd.type = UP_CMD(SEND_ERROR);
    cmd.send_error = &e;
    e.producer_id = pid;
    e.sequence_id = seq;
    e.error = (Pulsar__Proto__ServerError)error;
    e.message = "hostile";
    put_cmd(b, &cmd);
}

static void put_close_producer(up_buf_t *b, uint64_t pid)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandCloseProducer cp = PULSAR__PROTO__COMMAND_CLOSE_PRODUCER__INIT;
    cmd.type = UP_CMD(CLOSE_PRODUCER);
    cmd.close_producer = &cp;
    cp.producer_id = pid;
    cp.request_id = NOBODY;
    put_cmd(b, &cmd);
}

/* MESSAGE{consumer 1, (3:4)} with a one-byte metadata and payload "hi";
 * @p crc: 1 right checksum, -1 wrong one; @p no_payload: the frame ends
 * after the command */
static void put_message(up_buf_t *b, int crc, int no_payload)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandMessage m = PULSAR__PROTO__COMMAND_MESSAGE__INIT;
    Pulsar__Proto__MessageIdData id = PULSAR__PROTO__MESSAGE_ID_DATA__INIT;
    cmd.type = UP_CMD(MESSAGE);
    cmd.message = &m;
    m.consumer_id = 1;
    id.ledgerid = 3;
    id.entryid = 4;
    m.message_id = &id;
    if (no_payload) {
        put_cmd(b, &cmd);
        return;
    }
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    md.producer_name = "ghost";
    md.sequence_id = 0;
    md.publish_time = 1;
    struct iovec iov = {(void *)"hi", 2};
    size_t at = b->len;
    cr_assert_eq(up_frame_put_payload(b, &cmd, &md, &iov, 1, true), 0);
    if (crc < 0) {
        /* the checksum sits right after the command: flip a bit of it */
        size_t cs = up_get_be32(b->data + at + 4);
        b->data[at + 8 + cs + 2] ^= 0x10;
    }
}

/* ---- the scenario ---------------------------------------------------------- */

typedef enum { DROPS, IGNORED, RECREATES, EITHER } ht_expect_t;

typedef struct {
    char what[96];
    up_buf_t bytes;
    ht_expect_t expect;
    int cut;   /* a frame cut short: no probe after it (it would complete it) */
    int quiet; /* the broker answers no PING during the case */
} ht_case_t;

#define HT_MAX_CASES 32

typedef struct {
    ht_case_t c[HT_MAX_CASES];
    int n;
} ht_cases_t;

static up_buf_t *ht_add(ht_cases_t *cs, ht_expect_t expect, const char *what)
{
    cr_assert_lt(cs->n, HT_MAX_CASES);
    ht_case_t *c = &cs->c[cs->n++];
    memset(c, 0, sizeof *c);
    snprintf(c->what, sizeof c->what, "%s", what);
    c->expect = expect;
    return &c->bytes;
}

typedef struct {
    upulsar_tb_t *tb;
    upulsar_producer_t *p;
    ft_run_t *run;
    ht_cases_t *cases;
    const char *inject_topic;
    uint64_t nprod;  /* producers sharing the connection */
    uint64_t every;  /* messages allowed per case */
    /* results, read by the test once the thread is joined */
    int injected, drops, ignored;
    char failure[512];
} ht_fault_t;

typedef struct {
    uint64_t reconnects, accepted, pongs;
} ht_marks_t;

static ht_marks_t marks(ht_fault_t *h)
{
    upulsar_tb_stats_t st;
    upulsar_tb_stats(h->tb, &st);
    upulsar_producer_info_t pi[8];
    size_t n = 0;
    ht_marks_t m = {0, st.connections_accepted, st.pongs_received};
    if (upulsar_producer_list(h->p, pi, 8, &n) == UPULSAR_OK)
        for (size_t i = 0; i < n && i < 8; i++)
            m.reconnects += pi[i].reconnects;
    return m;
}

/* Wait up to HT_REACT_MS for @p pred; returns its last value. */
static int react(ht_fault_t *h, int (*pred)(ht_fault_t *, const ht_marks_t *),
                 const ht_marks_t *m0)
{
    uint64_t end = ft_now_ms() + HT_REACT_MS;
    int r;
    while (!(r = pred(h, m0)) && ft_now_ms() < end)
        ft_pause_ms(2);
    return r;
}

static int probe_answered(ht_fault_t *h, const ht_marks_t *m0)
{
    return marks(h).pongs > m0->pongs;
}

static int recreated(ht_fault_t *h, const ht_marks_t *m0)
{
    return marks(h).reconnects >= m0->reconnects + h->nprod && ft_all_ready(h->p);
}

static int recreated_one(ht_fault_t *h, const ht_marks_t *m0)
{
    return marks(h).reconnects >= m0->reconnects + 1 && ft_all_ready(h->p);
}

static int recreated_or_answered(ht_fault_t *h, const ht_marks_t *m0)
{
    return recreated(h, m0) || probe_answered(h, m0);
}

static int fail_case(ht_fault_t *h, const ht_case_t *c, const char *why)
{
    if (!h->failure[0])
        snprintf(h->failure, sizeof h->failure, "case \"%s\": %s", c->what, why);
    return -1;
}

static int receipts_queued(upulsar_tb_t *b)
{
    return upulsar_tb_queued_receipts(b) > 0;
}

/* One case: withhold receipts until some are queued (batches in flight),
 * inject, watch the client's reaction, release. */
static int run_case(ht_fault_t *h, int i)
{
    const ht_case_t *c = &h->cases->c[i];
    upulsar_tb_hold_receipts(h->tb, NULL);
    ft_run_allow(h->run, (uint64_t)(i + 1) * h->every);
    uint64_t end = ft_now_ms() + FT_WAIT_MS;
    while (!receipts_queued(h->tb)) {
        if (ft_now_ms() > end)
            return fail_case(h, c, "no batch in flight to inject among");
        ft_pause_ms(1);
    }
    if (c->quiet)
        upulsar_tb_ignore_pings(h->tb, 1);
    up_buf_t b = UP_BUF_INIT;
    up_buf_append(&b, c->bytes.data, c->bytes.len);
    if (!c->cut)
        put_ping(&b);
    ht_marks_t m0 = marks(h);
    int n = upulsar_tb_inject_raw(h->tb, h->inject_topic, b.data, b.len);
    up_buf_free(&b);
    if (n != 1)
        return fail_case(h, c, "not injected into exactly one connection");
    h->injected++;
    int rc = 0;
    switch (c->expect) {
    case DROPS:
        if (!react(h, recreated, &m0))
            rc = fail_case(h, c, "the client kept the connection (no producer re-created)");
        break;
    case IGNORED:
        if (!react(h, probe_answered, &m0))
            rc = fail_case(h, c, "the client stopped reading (no answer to the probe PING)");
        break;
    case RECREATES:
        if (!react(h, probe_answered, &m0) || !react(h, recreated_one, &m0))
            rc = fail_case(h, c, "the producer was not re-created on its connection");
        break;
    case EITHER:
        if (!react(h, recreated_or_answered, &m0))
            rc = fail_case(h, c, "the client neither dropped the connection nor read on");
        break;
    }
    if (c->quiet)
        upulsar_tb_ignore_pings(h->tb, 0);
    /* A producer the client reacts to is out of READY before the probe
     * after the bytes is answered, and counts a re-creation before it is
     * READY again: read the state first, then the counters. */
    int ready = ft_all_ready(h->p);
    ht_marks_t m1 = marks(h);
    int dropped = m1.accepted > m0.accepted;
    int answered = m1.pongs > m0.pongs;
    if (!rc) {
        if (c->expect == DROPS || (c->expect == EITHER && !answered)) {
            if (answered)
                rc = fail_case(h, c, "the client read past the bad bytes");
            else if (!dropped)
                rc = fail_case(h, c, "producers re-created without a new connection");
            h->drops++;
        } else if (c->expect == IGNORED || c->expect == EITHER) {
            if (!ready || m1.reconnects != m0.reconnects)
                rc = fail_case(h, c, "a producer was suspended or re-created");
            else if (dropped)
                rc = fail_case(h, c, "the connection was replaced");
            h->ignored++;
        } else if (dropped) { /* RECREATES */
            rc = fail_case(h, c, "the connection was replaced");
        }
    }
    upulsar_tb_release_receipts(h->tb, NULL);
    return rc;
}

static void *fault_main(void *a)
{
    ht_fault_t *h = a;
    for (int i = 0; i < h->cases->n && !h->failure[0]; i++)
        run_case(h, i);
    upulsar_tb_release_receipts(h->tb, NULL);
    upulsar_tb_ignore_pings(h->tb, 0);
    ft_run_allow(h->run, UINT64_MAX);
    return NULL;
}

/* Run @p cases against a producer on "hostile" (@p parts partitions, 0: not
 * partitioned) of a client with @p kv, then check everything (see the top of
 * this file). Frees the cases' bytes. */
static void run_hostile(ht_cases_t *cases, int parts, const char *const *kv)
{
    enum { THREADS = 2 };
    const uint64_t every = 300 / FT_SCALE;
    client = ft_client(tb, kv);
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "hostile", parts), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "hostile-producer", "hostile", parts, NULL);
    uint64_t total = every * (uint64_t)(cases->n + 1);
    ft_run_t *run = ft_run_new(p, THREADS, (int)(total / THREADS), 0);
    ht_fault_t h = {.tb = tb, .p = p, .run = run, .cases = cases,
                    .inject_topic = parts ? "hostile-partition-0" : "hostile",
                    .nprod = parts ? (uint64_t)parts : 1, .every = every};
    ft_run_allow(run, 1);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fault_main, &h), 0);
    ft_run_start(run);
    ft_run_join(run);
    size_t pending = ft_collect(run);
    pthread_join(th, NULL);
    for (int i = 0; i < cases->n; i++)
        up_buf_free(&cases->c[i].bytes);
    cr_assert(!h.failure[0], "%s", h.failure);
    cr_assert_eq(h.injected, cases->n);
    cr_assert_eq(pending, 0, "futures left pending");
    cr_assert_eq(atomic_load(&run->refused), 0, "%s", upulsar_last_error());
    ft_assert_cbs_done(run);
    cr_assert(ft_wait_for(ft_all_ready, p));
    ft_check_opts_t o = {.topic = "hostile", .partitions = parts};
    ft_check_res_t res = ft_check(tb, run, &o);
    cr_log_info("%d cases: %d dropped the connection, %d ignored; %zu unknown ids, "
                "%llu re-creations", cases->n, h.drops, h.ignored, res.unknown_ids,
                (unsigned long long)ft_reconnects(p));
    cr_assert_eq(res.ok, (size_t)(run->threads * run->per_thread), "%zu failed", res.failed);
    cr_assert_geq(ft_reconnects(p), (uint64_t)h.drops * h.nprod);
    /* the client still works: the same producer, and a new one */
    ft_send_ok(p, NULL);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_producer_t *q = ft_producer(client, NULL, "after-hostile", 0, NULL);
    ft_send_ok(q, NULL);
    cr_assert_eq(upulsar_producer_stop(q, 10000), UPULSAR_OK);
    ft_run_free(run);
}

/* ---- the tests ----------------------------------------------------------------- */

/* xorshift64*: the same garbage on every run */
static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return rnd_state * 0x2545f4914f6cdd1dull;
}

/* Scenario: 16 blobs of random bytes (fixed seed) over a connection shared
 * by the producers of 2 partitions:
 *  - 8 blobs of 1..600 random bytes whose first byte is >= 1, so the first
 *    4 bytes announce a frame of at least 16 MiB, more than any frame the
 *    broker may send: the client must drop the connection at once;
 *  - 8 blobs whose sizes add up ([total = blob length - 4][random command
 *    size][random command and payload bytes]): the garbage reaches the
 *    protobuf decoder and the payload checks; the client drops the
 *    connection or, should the bytes decode by chance, reads on.
 * Every producer on the connection is re-created after each drop; nothing
 * is lost or duplicated. */
Test(fault_hostile, garbage_bytes_drop_the_connection_and_lose_nothing)
{
    ht_cases_t cs = {.n = 0};
    for (int k = 0; k < 16; k++) {
        char what[64];
        size_t len = 1 + (size_t)(rnd() % 600);
        if (k >= 8 && len < 12)
            len += 12;
        snprintf(what, sizeof what, "random %zu bytes #%d", len, k);
        up_buf_t *b = ht_add(&cs, k < 8 ? DROPS : EITHER, what);
        for (size_t i = 0; i < len; i++) {
            uint8_t x = (uint8_t)rnd();
            put_bytes(b, &x, 1);
        }
        if (k < 8) {
            if (b->data[0] == 0)
                b->data[0] = 0x5a;
        } else {
            up_put_be32(b->data, (uint32_t)(len - 4));
            up_put_be32(b->data + 4, (uint32_t)(rnd() % (len + 8)));
        }
    }
    run_hostile(&cs, 2, NULL);
}

/* Scenario: frames whose sizes do not add up, over a connection shared by
 * the producers of 2 partitions: totalSize 0x7fffffff and 0xffffffff (more
 * than the broker's max message size allows), totalSize 0..3 (shorter than
 * the command size field), a command size larger than the frame, a payload
 * section too short for its metadata size field, a metadata size larger
 * than what is left. Each drops the connection before anything after it is
 * read; both producers are re-created; nothing is lost. */
Test(fault_hostile, frame_sizes_that_do_not_add_up_drop_the_connection)
{
    ht_cases_t cs = {.n = 0};
    static const uint8_t zeros[16];
    put_frame_raw(ht_add(&cs, DROPS, "totalSize 0x7fffffff"), 0x7fffffffu, 10, zeros, 10);
    put_frame_raw(ht_add(&cs, DROPS, "totalSize 0xffffffff"), 0xffffffffu, 10, zeros, 10);
    up_buf_t *b = ht_add(&cs, DROPS, "totalSize 0");
    put_be32(b, 0);
    b = ht_add(&cs, DROPS, "totalSize 3");
    put_be32(b, 3);
    put_bytes(b, zeros, 3);
    put_frame_raw(ht_add(&cs, DROPS, "totalSize 8 < commandSize 100"), 8, 100, zeros, 4);
    put_frame_raw(ht_add(&cs, DROPS, "commandSize 0xffffffff"), 12, 0xffffffffu, zeros, 8);
    /* a well-formed SEND_RECEIPT command followed by 2 bytes: a payload
     * section too short for its metadata size */
    up_buf_t cmd = UP_BUF_INIT;
    put_receipt(&cmd, NOBODY, 0, 1);
    uint32_t cl = (uint32_t)cmd.len - 8;
    b = ht_add(&cs, DROPS, "2 bytes after the command");
    put_frame_raw(b, 4 + cl + 2, cl, cmd.data + 8, cl);
    put_bytes(b, zeros, 2);
    /* ... followed by a metadata size of 1000 and nothing else */
    b = ht_add(&cs, DROPS, "metadata size beyond the frame");
    put_frame_raw(b, 4 + cl + 4, cl, cmd.data + 8, cl);
    put_be32(b, 1000);
    up_buf_free(&cmd);
    run_hostile(&cs, 2, NULL);
}

/* Scenario: frames whose sizes add up but whose command cannot be used: a
 * command that is not protobuf, an empty command, a command cut short, a
 * BaseCommand without its (required) type, a type without the sub-message
 * it names (SEND_RECEIPT, PING), a MESSAGE without the payload section every
 * MESSAGE has, a MESSAGE whose checksum does not match. Each drops the
 * connection; the producer is re-created; nothing is lost. */
Test(fault_hostile, commands_that_do_not_decode_drop_the_connection)
{
    ht_cases_t cs = {.n = 0};
    static const uint8_t ff[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    put_frame_of(ht_add(&cs, DROPS, "command bytes 0xff..."), ff, sizeof ff);
    put_frame_of(ht_add(&cs, DROPS, "empty command"), NULL, 0);
    up_buf_t cmd = UP_BUF_INIT;
    put_receipt(&cmd, PID, 0, 1);
    put_frame_of(ht_add(&cs, DROPS, "SEND_RECEIPT cut by 3 bytes"), cmd.data + 8,
                 cmd.len - 8 - 3);
    up_buf_free(&cmd);
    static const uint8_t no_type[] = {0x92, 0x01, 0x00}; /* ping {} alone */
    put_frame_of(ht_add(&cs, DROPS, "BaseCommand without type"), no_type, sizeof no_type);
    static const uint8_t bare_receipt[] = {0x08, 0x07}; /* type SEND_RECEIPT */
    put_frame_of(ht_add(&cs, DROPS, "SEND_RECEIPT without its body"), bare_receipt,
                 sizeof bare_receipt);
    static const uint8_t bare_ping[] = {0x08, 0x12}; /* type PING */
    put_frame_of(ht_add(&cs, DROPS, "PING without its body"), bare_ping, sizeof bare_ping);
    put_message(ht_add(&cs, DROPS, "MESSAGE without payload"), 1, 1);
    put_message(ht_add(&cs, DROPS, "MESSAGE with a wrong checksum"), -1, 0);
    run_hostile(&cs, 0, NULL);
}

/* Scenario: a SEND_RECEIPT for a sequence id the producer never sent (2^40,
 * and 2^64-1 without a message id) arrives while its batches wait for their
 * receipts: the broker is confused, the client drops the connection, the
 * producer is re-created and resends, the broker's de-duplication answers
 * what it had stored. Nothing is acknowledged by the bogus receipt
 * (the log check: every success is stored, with the id its future
 * reported). */
Test(fault_hostile, receipt_for_a_sequence_id_never_sent_drops_the_connection)
{
    ht_cases_t cs = {.n = 0};
    put_receipt(ht_add(&cs, DROPS, "receipt for sequence id 2^40"), PID, NOBODY, 1);
    put_receipt(ht_add(&cs, DROPS, "receipt for sequence id 2^64-1, no message id"), PID,
                UINT64_MAX, 0);
    put_receipt(ht_add(&cs, DROPS, "receipt for sequence id 2^40 again"), PID, NOBODY, 1);
    run_hostile(&cs, 0, NULL);
}

/* Scenario: answers that name nothing the client has in flight -- a
 * SEND_RECEIPT for a producer id the client never created, SEND_ERRORs
 * (ServiceNotReady, ChecksumError, PersistenceError) for a sequence id the
 * producer never sent or for an unknown producer -- while batches wait for
 * their receipts. The client reads on (they may be late answers to
 * something closed): no producer re-created, no message failed by them,
 * nothing lost. */
Test(fault_hostile, receipts_and_send_errors_for_nothing_in_flight_are_ignored)
{
    ht_cases_t cs = {.n = 0};
    put_receipt(ht_add(&cs, IGNORED, "receipt for an unknown producer"), NOBODY, 0, 1);
    put_receipt(ht_add(&cs, IGNORED, "receipt for an unknown producer, no message id"), NOBODY,
                UINT64_MAX, 0);
    put_send_error(ht_add(&cs, IGNORED, "SEND_ERROR ServiceNotReady, unknown sequence id"), PID,
                   NOBODY, UP_SERR(ServiceNotReady));
    put_send_error(ht_add(&cs, IGNORED, "SEND_ERROR ChecksumError, unknown sequence id"), PID,
                   NOBODY, UP_SERR(ChecksumError));
    put_send_error(ht_add(&cs, IGNORED, "SEND_ERROR ProducerFenced, unknown sequence id"), PID,
                   NOBODY, UP_SERR(ProducerFenced));
    put_send_error(ht_add(&cs, IGNORED, "SEND_ERROR PersistenceError, unknown producer"), NOBODY,
                   0, UP_SERR(PersistenceError));
    put_send_error(ht_add(&cs, IGNORED, "SEND_ERROR with an unknown error code"), NOBODY, 0,
                   9999);
    run_hostile(&cs, 0, NULL);
}

/* Scenario: well-formed commands a producer does not expect, while batches
 * wait for their receipts: a MESSAGE, REACHED_END_OF_TOPIC and
 * CLOSE_CONSUMER for a consumer the client does not have, answers
 * (PRODUCER_SUCCESS, also "not ready", SUCCESS, ERROR, LOOKUP_RESPONSE,
 * PARTITIONED_METADATA_RESPONSE) to request ids it never used,
 * CLOSE_PRODUCER and TOPIC_MIGRATED for an unknown producer, TOPIC_MIGRATED
 * naming the producer's id as a consumer, a second CONNECTED, an
 * unsolicited PONG, a type the protocol does not have (200) and one the
 * client does not model (GET_LAST_MESSAGE_ID_RESPONSE). The client reads on
 * without re-creating anything and loses nothing. The control at the end,
 * CLOSE_PRODUCER for the producer's real id, re-creates the producer on the
 * same connection (so the ids aimed at are the right ones). */
Test(fault_hostile, commands_a_producer_does_not_expect_are_ignored)
{
    ht_cases_t cs = {.n = 0};
    put_message(ht_add(&cs, IGNORED, "MESSAGE for consumer 1"), 1, 0);
    {
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandReachedEndOfTopic e = PULSAR__PROTO__COMMAND_REACHED_END_OF_TOPIC__INIT;
        cmd.type = UP_CMD(REACHED_END_OF_TOPIC);
        cmd.reachedendoftopic = &e;
        e.consumer_id = 1;
        put_cmd(ht_add(&cs, IGNORED, "REACHED_END_OF_TOPIC"), &cmd);
    }
    {
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandCloseConsumer cc = PULSAR__PROTO__COMMAND_CLOSE_CONSUMER__INIT;
        cmd.type = UP_CMD(CLOSE_CONSUMER);
        cmd.close_consumer = &cc;
        cc.consumer_id = 1;
        cc.request_id = NOBODY;
        put_cmd(ht_add(&cs, IGNORED, "CLOSE_CONSUMER"), &cmd);
    }
    for (int ready = 1; ready >= 0; ready--) {
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandProducerSuccess ps = PULSAR__PROTO__COMMAND_PRODUCER_SUCCESS__INIT;
        cmd.type = UP_CMD(PRODUCER_SUCCESS);
        cmd.producer_success = &ps;
        ps.request_id = NOBODY;
        ps.producer_name = "ghost";
        ps.has_producer_ready = 1;
        ps.producer_ready = ready;
        put_cmd(ht_add(&cs, IGNORED, ready ? "PRODUCER_SUCCESS, unknown request id"
                                           : "PRODUCER_SUCCESS not ready, unknown request id"),
                &cmd);
    }
    {
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandSuccess s = PULSAR__PROTO__COMMAND_SUCCESS__INIT;
        cmd.type = UP_CMD(SUCCESS);
        cmd.success = &s;
        s.request_id = NOBODY;
        put_cmd(ht_add(&cs, IGNORED, "SUCCESS, unknown request id"), &cmd);
    }
    {
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandError e = PULSAR__PROTO__COMMAND_ERROR__INIT;
        cmd.type = UP_CMD(ERROR);
        cmd.error = &e;
        e.request_id = NOBODY;
        e.error = UP_SERR(ServiceNotReady);
        e.message = "hostile";
        put_cmd(ht_add(&cs, IGNORED, "ERROR, unknown request id"), &cmd);
    }
    {
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandLookupTopicResponse r =
            PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__INIT;
        cmd.type = UP_CMD(LOOKUP_RESPONSE);
        cmd.lookuptopicresponse = &r;
        r.request_id = NOBODY;
        r.has_response = 1;
        r.response = PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Redirect;
        r.brokerserviceurl = "pulsar://127.0.0.1:1";
        put_cmd(ht_add(&cs, IGNORED, "LOOKUP_RESPONSE, unknown request id"), &cmd);
    }
    {
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandPartitionedTopicMetadataResponse r =
            PULSAR__PROTO__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__INIT;
        cmd.type = UP_CMD(PARTITIONED_METADATA_RESPONSE);
        cmd.partitionmetadataresponse = &r;
        r.request_id = NOBODY;
        r.has_partitions = 1;
        r.partitions = 1000;
        put_cmd(ht_add(&cs, IGNORED, "PARTITIONED_METADATA_RESPONSE, unknown request id"),
                &cmd);
    }
    put_close_producer(ht_add(&cs, IGNORED, "CLOSE_PRODUCER, unknown producer"), NOBODY);
    for (int k = 0; k < 2; k++) {
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandTopicMigrated tm = PULSAR__PROTO__COMMAND_TOPIC_MIGRATED__INIT;
        cmd.type = UP_CMD(TOPIC_MIGRATED);
        cmd.topicmigrated = &tm;
        tm.resource_id = k ? PID : NOBODY;
        tm.resource_type = k ? PULSAR__PROTO__COMMAND_TOPIC_MIGRATED__RESOURCE_TYPE__Consumer
                             : PULSAR__PROTO__COMMAND_TOPIC_MIGRATED__RESOURCE_TYPE__Producer;
        put_cmd(ht_add(&cs, IGNORED, k ? "TOPIC_MIGRATED, consumer with the producer's id"
                                       : "TOPIC_MIGRATED, unknown producer"),
                &cmd);
    }
    {
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandConnected cd = PULSAR__PROTO__COMMAND_CONNECTED__INIT;
        cmd.type = UP_CMD(CONNECTED);
        cmd.connected = &cd;
        cd.server_version = "hostile";
        cd.has_max_message_size = 1;
        cd.max_message_size = 16;
        put_cmd(ht_add(&cs, IGNORED, "a second CONNECTED"), &cmd);
    }
    {
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandPong pong = PULSAR__PROTO__COMMAND_PONG__INIT;
        cmd.type = UP_CMD(PONG);
        cmd.pong = &pong;
        put_cmd(ht_add(&cs, IGNORED, "unsolicited PONG"), &cmd);
    }
    static const uint8_t type200[] = {0x08, 0xc8, 0x01};
    put_frame_of(ht_add(&cs, IGNORED, "type 200"), type200, sizeof type200);
    static const uint8_t type30[] = {0x08, 0x1e}; /* GET_LAST_MESSAGE_ID_RESPONSE */
    put_frame_of(ht_add(&cs, IGNORED, "GET_LAST_MESSAGE_ID_RESPONSE"), type30, sizeof type30);
    put_close_producer(ht_add(&cs, RECREATES, "control: CLOSE_PRODUCER for the producer"), PID);
    run_hostile(&cs, 0, NULL);
}

/* Scenario: the broker sends the first 20 bytes of a 200-byte frame (a
 * real SEND_RECEIPT's start) and then nothing at all: no receipts (held),
 * no PONG (pings ignored). The client's keep-alive (100 ms) finds the
 * connection silent, drops it and re-creates the producer; nothing is
 * lost. */
Test(fault_hostile, frame_cut_short_then_silence_is_ended_by_keepalive)
{
    const char *kv[] = {"keepalive.interval.ms", "100", NULL};
    ht_cases_t cs = {.n = 0};
    for (int k = 0; k < 3; k++) {
        up_buf_t cmd = UP_BUF_INIT;
        put_receipt(&cmd, PID, NOBODY, 1);
        up_buf_t *b = ht_add(&cs, DROPS, "20 bytes of a 200-byte frame, then silence");
        put_be32(b, 200);
        put_bytes(b, cmd.data + 4, 16);
        up_buf_free(&cmd);
        cs.c[cs.n - 1].cut = 1;
        cs.c[cs.n - 1].quiet = 1;
    }
    run_hostile(&cs, 0, kv);
}

/* Scenario: the broker sends the first 12 bytes of a frame announcing 1 MiB
 * and then only PONGs answering the client's PINGs (receipts held): bytes
 * keep coming, but no frame ever completes -- they only feed the frame cut
 * short. The keep-alive counts frames, not bytes: the PING is not answered
 * by a PONG the client can read, so the connection is dropped after about
 * two intervals (100 ms) and the producer re-created; nothing is lost. */
Test(fault_hostile, frame_cut_short_then_only_pongs_is_ended_by_keepalive)
{
    const char *kv[] = {"keepalive.interval.ms", "100", NULL};
    ht_cases_t cs = {.n = 0};
    for (int k = 0; k < 3; k++) {
        up_buf_t *b = ht_add(&cs, DROPS, "12 bytes of a 1 MiB frame, then PONGs");
        put_be32(b, 1u << 20);
        put_be32(b, 100);
        static const uint8_t start[] = {0x08, 0x07, 0x3a, 0x10};
        put_bytes(b, start, sizeof start);
        cs.c[cs.n - 1].cut = 1;
    }
    run_hostile(&cs, 0, kv);
}
