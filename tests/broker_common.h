/* broker_common.h -- shared helpers of the raw-protocol tests of the test
 * broker (tests/test_broker_*.c): brokers started, raw clients
 * (upulsar_tb_client_*) connected and producers registered with the checks
 * done, the commands several tests send by hand, and the checks they repeat
 * (a connection closed by the broker, nothing arriving, a receipt).
 *
 * WAIT_MS bounds every wait for something that must come (default 5000);
 * QUIET_MS is how long "nothing arrives" is watched for (default 200). A
 * test file may define either before including this header.
 *
 * Failures are reported with cr_assert*, so the helpers run on the test's
 * main thread (or where the test already asserts); they work with
 * Criterion and with tests/tsan_shim. */
#ifndef UPULSAR_BROKER_COMMON_H
#define UPULSAR_BROKER_COMMON_H
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "frame.h"
#include "upulsar/testbroker.h"

#ifndef WAIT_MS
#define WAIT_MS 5000
#endif
#ifndef QUIET_MS
#define QUIET_MS 200
#endif

/* ---- brokers ------------------------------------------------------------ */

/* Broker options: the defaults, with the broker's own PINGs off (reads then
 * see only what answers the test). */
static inline upulsar_tb_opts_t bc_opts(void)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.ping_interval_ms = 0;
    return o;
}

/* Start a broker with @p o (NULL: the broker's defaults, PINGs on). */
static inline upulsar_tb_t *bc_start(const upulsar_tb_opts_t *o)
{
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    return tb;
}

/* Start a broker with bc_opts(). */
static inline upulsar_tb_t *bc_broker(void)
{
    upulsar_tb_opts_t o = bc_opts();
    return bc_start(&o);
}

/* Start a broker with bc_opts() and de-duplication on (Pulsar's
 * brokerDeduplicationEnabled; off by default, as in Pulsar). */
static inline upulsar_tb_t *bc_broker_dedup(void)
{
    upulsar_tb_opts_t o = bc_opts();
    o.deduplication = 1;
    return bc_start(&o);
}

/* The broker's counters. */
static inline upulsar_tb_stats_t bc_stats(upulsar_tb_t *tb)
{
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    return st;
}

/* The counters of @p topic. */
static inline upulsar_tb_topic_stats_t bc_topic_stats(upulsar_tb_t *tb, const char *topic)
{
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, topic, &st), UPULSAR_OK, "%s", topic);
    return st;
}

/* Wait until @p topic has no producer left: the broker notices a client's
 * close asynchronously (bounded, generous). */
static inline void bc_wait_no_producers(upulsar_tb_t *tb, const char *topic)
{
    for (int i = 0; i < 10000; i++) {
        if (bc_topic_stats(tb, topic).producers == 0)
            return;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    cr_assert(0, "producers of %s never went away", topic);
}

/* ---- raw clients -------------------------------------------------------- */

/* A raw client of the broker at @p url, handshake done (CONNECT,
 * CONNECTED). */
static inline upulsar_tb_client_t *bc_connect_url(const char *url)
{
    upulsar_tb_client_t *c = NULL;
    cr_assert_eq(upulsar_tb_client_connect(url, WAIT_MS, &c), UPULSAR_OK, "%s",
                 upulsar_last_error());
    return c;
}

/* A raw client of @p tb, handshake done. */
static inline upulsar_tb_client_t *bc_connect(upulsar_tb_t *tb)
{
    return bc_connect_url(upulsar_tb_url(tb));
}

/* A raw client of @p tb, connected without a handshake (nothing sent). */
static inline upulsar_tb_client_t *bc_open(upulsar_tb_t *tb)
{
    upulsar_tb_client_t *c = NULL;
    cr_assert_eq(upulsar_tb_client_open(upulsar_tb_url(tb), WAIT_MS, &c), UPULSAR_OK, "%s",
                 upulsar_last_error());
    return c;
}

/* Ask to register producer @p pid named @p name (NULL: chosen by the
 * broker) on @p topic over @p c: the answer must be @p want. */
static inline void bc_create_producer_gets(upulsar_tb_client_t *c, const char *topic,
                                           uint64_t pid, const char *name, upulsar_err_t want)
{
    upulsar_err_t e = upulsar_tb_client_create_producer(c, topic, pid, name, WAIT_MS, NULL, 0, NULL);
    cr_assert_eq(e, want, "producer %llu on %s: %s (%s)", (unsigned long long)pid, topic,
                 upulsar_err_name(e), upulsar_last_error());
}

/* Register producer @p pid named @p name (NULL: chosen by the broker) on
 * @p topic over @p c. */
static inline void bc_create_producer(upulsar_tb_client_t *c, const char *topic, uint64_t pid,
                                      const char *name)
{
    bc_create_producer_gets(c, topic, pid, name, UPULSAR_OK);
}

/* A raw client of @p tb with producer @p pid (@p name) registered on
 * @p topic. */
static inline upulsar_tb_client_t *bc_producer_on(upulsar_tb_t *tb, const char *topic,
                                                  uint64_t pid, const char *name)
{
    upulsar_tb_client_t *c = bc_connect(tb);
    bc_create_producer(c, topic, pid, name);
    return c;
}

/* ---- commands sent by hand ------------------------------------------------ */

/* CONNECT with @p client_version and @p method; @p token as auth data
 * (NULL: none); @p version as protocol_version (< 0: not sent). */
static inline void bc_send_connect(upulsar_tb_client_t *c, const char *client_version,
                                   const char *method, const char *token, int version)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandConnect cn = PULSAR__PROTO__COMMAND_CONNECT__INIT;
    cmd.type = UP_CMD(CONNECT);
    cmd.connect = &cn;
    cn.client_version = (char *)client_version;
    cn.auth_method_name = (char *)method;
    if (token) {
        cn.has_auth_data = 1;
        cn.auth_data.data = (uint8_t *)token;
        cn.auth_data.len = strlen(token);
    }
    if (version >= 0) {
        cn.has_protocol_version = 1;
        cn.protocol_version = version;
    }
    cr_assert_eq(upulsar_tb_client_send_cmd(c, &cmd), UPULSAR_OK);
}

/* PING (@p type UP_CMD(PING)) or PONG (UP_CMD(PONG)). */
static inline void bc_send_ping_pong(upulsar_tb_client_t *c, int type)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandPing ping = PULSAR__PROTO__COMMAND_PING__INIT;
    Pulsar__Proto__CommandPong pong = PULSAR__PROTO__COMMAND_PONG__INIT;
    cmd.type = type;
    if (type == UP_CMD(PING))
        cmd.ping = &ping;
    else
        cmd.pong = &pong;
    cr_assert_eq(upulsar_tb_client_send_cmd(c, &cmd), UPULSAR_OK);
}

/* One message "x" from producer @p pid (@p name) with sequence id @p seq;
 * the answer is not read. */
static inline void bc_send_one(upulsar_tb_client_t *c, uint64_t pid, const char *name,
                               uint64_t seq)
{
    upulsar_tb_out_msg_t m = {.payload = "x", .len = 1};
    cr_assert_eq(upulsar_tb_client_send_messages(c, pid, name, seq, &m, 1, 0, 0), UPULSAR_OK);
}

/* SEND{producer_id @p pid, sequence_id @p seq, num_messages @p num (0: not
 * sent)} with metadata @p md and @p payload as given, framed with a
 * checksum and sent raw; the answer is not read. */
static inline void bc_send_entry(upulsar_tb_client_t *c, uint64_t pid, uint64_t seq, int num,
                                 const up_md_t *md, const void *payload, size_t len)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSend s = PULSAR__PROTO__COMMAND_SEND__INIT;
    cmd.type = UP_CMD(SEND);
    cmd.send = &s;
    s.producer_id = pid;
    s.sequence_id = seq;
    if (num) {
        s.has_num_messages = 1;
        s.num_messages = num;
    }
    up_buf_t fb = UP_BUF_INIT;
    struct iovec iov = {(void *)payload, len};
    cr_assert_eq(up_frame_put_payload(&fb, &cmd, md, &iov, 1, true), 0);
    cr_assert_eq(upulsar_tb_client_send_raw(c, fb.data, fb.len), UPULSAR_OK);
    up_buf_free(&fb);
}

typedef const Pulsar__Proto__CommandLookupTopicResponse bc_lookup_resp_t;

/* LOOKUP @p topic with authoritative = @p authoritative (< 0: not sent) and
 * advertised_listener_name = @p listener (NULL: not sent); returns the
 * answer (valid until the next read into @p f), checked to carry the
 * request's id and a response. */
static inline bc_lookup_resp_t *bc_lookup_ex(upulsar_tb_client_t *c, const char *topic,
                                             int authoritative, const char *listener,
                                             upulsar_tb_frame_t *f)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandLookupTopic lt = PULSAR__PROTO__COMMAND_LOOKUP_TOPIC__INIT;
    cmd.type = UP_CMD(LOOKUP);
    cmd.lookuptopic = &lt;
    lt.topic = (char *)topic;
    lt.request_id = upulsar_tb_client_next_request_id(c);
    if (authoritative >= 0) {
        lt.has_authoritative = 1;
        lt.authoritative = authoritative;
    }
    lt.advertised_listener_name = (char *)listener;
    cr_assert_eq(upulsar_tb_client_send_cmd(c, &cmd), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(LOOKUP_RESPONSE), WAIT_MS, f), UPULSAR_OK,
                 "%s", upulsar_last_error());
    bc_lookup_resp_t *r = f->cmd->lookuptopicresponse;
    cr_assert_eq(r->request_id, lt.request_id);
    cr_assert(r->has_response, "response must always be set");
    return r;
}

/* LOOKUP @p topic with authoritative = @p authoritative (see
 * bc_lookup_ex()). */
static inline bc_lookup_resp_t *bc_lookup(upulsar_tb_client_t *c, const char *topic,
                                          int authoritative, upulsar_tb_frame_t *f)
{
    return bc_lookup_ex(c, topic, authoritative, NULL, f);
}

/* ---- checks --------------------------------------------------------------- */

/* The next SEND_RECEIPT (PINGs answered and skipped), with a message id. */
static inline const Pulsar__Proto__CommandSendReceipt *bc_receipt(upulsar_tb_client_t *c,
                                                                  upulsar_tb_frame_t *f)
{
    upulsar_err_t err = upulsar_tb_client_expect(c, UP_CMD(SEND_RECEIPT), WAIT_MS, f);
    cr_assert_eq(err, UPULSAR_OK, "%s: %s", upulsar_err_name(err), upulsar_last_error());
    cr_assert_not_null(f->cmd->send_receipt->message_id);
    return f->cmd->send_receipt;
}

/* The next SEND_ERROR (PINGs answered and skipped). */
static inline const Pulsar__Proto__CommandSendError *bc_send_error(upulsar_tb_client_t *c,
                                                                   upulsar_tb_frame_t *f)
{
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(SEND_ERROR), WAIT_MS, f), UPULSAR_OK, "%s",
                 upulsar_last_error());
    return f->cmd->send_error;
}

/* Read until the connection ends: the broker must close it (each read
 * bounded by WAIT_MS). */
static inline void bc_assert_closed(upulsar_tb_client_t *c)
{
    upulsar_tb_frame_t f;
    upulsar_err_t err;
    while ((err = upulsar_tb_client_read(c, WAIT_MS, &f)) == UPULSAR_OK)
        ;
    cr_assert_eq(err, UPULSAR_ERR__CLOSED, "expected the broker to close, got %s",
                 upulsar_err_name(err));
}

/* Nothing at all (not even a PING) arrives for QUIET_MS. */
static inline void bc_assert_quiet(upulsar_tb_client_t *c)
{
    upulsar_tb_frame_t f;
    upulsar_err_t err = upulsar_tb_client_read(c, QUIET_MS, &f);
    cr_assert_eq(err, UPULSAR_ERR__TIMED_OUT, "unexpected %s", err ? "" : up_cmd_name(f.type));
}
#endif
