/* test_broker_handshake.c -- the test broker's handshake and keep-alive:
 * CONNECTED fields, PING/PONG both ways, idle connections closed, bad first
 * frames and garbage closing only their own connection.
 * UPULSAR_TEST_LABEL_CONCURRENCY (connection threads, ticks, stop) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "frame.h"
#include "upulsar/testbroker.h"

#define WAIT_MS 5000

static upulsar_tb_t *start_broker(int ping_ms)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.ping_interval_ms = ping_ms;
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    return tb;
}

static void send_connect(upulsar_tb_client_t *c, int version)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandConnect cn = PULSAR__PROTO__COMMAND_CONNECT__INIT;
    cmd.type = UP_CMD(CONNECT);
    cmd.connect = &cn;
    cn.client_version = "test";
    cn.auth_method_name = "none";
    if (version >= 0) {
        cn.has_protocol_version = 1;
        cn.protocol_version = version;
    }
    cr_assert_eq(upulsar_tb_client_send_cmd(c, &cmd), UPULSAR_OK);
}

static void send_simple(upulsar_tb_client_t *c, int type)
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

/* Read until the connection ends; fails the test if it does not. */
static void assert_closed_by_broker(upulsar_tb_client_t *c)
{
    upulsar_tb_frame_t f;
    upulsar_err_t err;
    while ((err = upulsar_tb_client_read(c, WAIT_MS, &f)) == UPULSAR_OK)
        ;
    cr_assert_eq(err, UPULSAR_ERR__CLOSED, "expected the broker to close, got %s",
                 upulsar_err_name(err));
}

Test(broker_handshake, connected_carries_server_version_protocol_min_and_max_size)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.max_message_size = 1234567;
    upulsar_tb_t *tb;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK);
    cr_assert_gt(upulsar_tb_port(tb), 0);
    char want[64];
    snprintf(want, sizeof want, "pulsar://127.0.0.1:%d", upulsar_tb_port(tb));
    cr_assert_str_eq(upulsar_tb_url(tb), want);

    int versions[] = {21, 30, 10, -1};
    int expect[] = {21, 21, 10, 0};
    for (int i = 0; i < 4; i++) {
        upulsar_tb_client_t *c;
        cr_assert_eq(upulsar_tb_client_open(upulsar_tb_url(tb), WAIT_MS, &c), UPULSAR_OK);
        send_connect(c, versions[i]);
        upulsar_tb_frame_t f;
        cr_assert_eq(upulsar_tb_client_read(c, WAIT_MS, &f), UPULSAR_OK);
        cr_assert_eq(f.type, UP_CMD(CONNECTED));
        const Pulsar__Proto__CommandConnected *cd = f.cmd->connected;
        cr_assert_not_null(cd->server_version);
        cr_assert_gt(strlen(cd->server_version), 0);
        cr_assert(cd->has_protocol_version);
        cr_assert_eq(cd->protocol_version, expect[i], "client %d", versions[i]);
        cr_assert(cd->has_max_message_size);
        cr_assert_eq(cd->max_message_size, 1234567);
        upulsar_tb_client_close(c);
    }
    upulsar_tb_stop(tb);
}

Test(broker_handshake, default_max_message_size_is_5_mib)
{
    upulsar_tb_t *tb;
    cr_assert_eq(upulsar_tb_start(NULL, &tb), UPULSAR_OK);
    upulsar_tb_client_t *c;
    cr_assert_eq(upulsar_tb_client_open(upulsar_tb_url(tb), WAIT_MS, &c), UPULSAR_OK);
    send_connect(c, 21);
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(CONNECTED), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.cmd->connected->max_message_size, 5 * 1024 * 1024);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_handshake, ping_from_client_gets_pong)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c;
    cr_assert_eq(upulsar_tb_client_connect(upulsar_tb_url(tb), WAIT_MS, &c), UPULSAR_OK);
    for (int i = 0; i < 3; i++) {
        send_simple(c, UP_CMD(PING));
        upulsar_tb_frame_t f;
        cr_assert_eq(upulsar_tb_client_read(c, WAIT_MS, &f), UPULSAR_OK);
        cr_assert_eq(f.type, UP_CMD(PONG));
    }
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_handshake, broker_pings_and_keeps_a_client_that_answers)
{
    upulsar_tb_t *tb = start_broker(30);
    upulsar_tb_client_t *c;
    cr_assert_eq(upulsar_tb_client_connect(upulsar_tb_url(tb), WAIT_MS, &c), UPULSAR_OK);
    /* answering each PING keeps the connection through several ticks */
    for (int i = 0; i < 4; i++) {
        upulsar_tb_frame_t f;
        cr_assert_eq(upulsar_tb_client_read(c, WAIT_MS, &f), UPULSAR_OK, "ping %d", i);
        cr_assert_eq(f.type, UP_CMD(PING));
        send_simple(c, UP_CMD(PONG));
    }
    upulsar_tb_stats_t st;
    upulsar_tb_stats(tb, &st);
    cr_assert_geq(st.pings_sent, 4);
    cr_assert_eq(st.connections_active, 1);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_handshake, broker_closes_a_client_that_stays_silent)
{
    upulsar_tb_t *tb = start_broker(30);
    upulsar_tb_client_t *c;
    cr_assert_eq(upulsar_tb_client_connect(upulsar_tb_url(tb), WAIT_MS, &c), UPULSAR_OK);
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_read(c, WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.type, UP_CMD(PING));
    /* no PONG: the next tick closes the connection */
    assert_closed_by_broker(c);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_handshake, connection_without_handshake_is_closed_at_first_tick)
{
    upulsar_tb_t *tb = start_broker(30);
    upulsar_tb_client_t *c;
    cr_assert_eq(upulsar_tb_client_open(upulsar_tb_url(tb), WAIT_MS, &c), UPULSAR_OK);
    assert_closed_by_broker(c);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_handshake, first_frame_other_than_connect_closes)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c;
    cr_assert_eq(upulsar_tb_client_open(upulsar_tb_url(tb), WAIT_MS, &c), UPULSAR_OK);
    send_simple(c, UP_CMD(PING));
    assert_closed_by_broker(c);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_handshake, garbage_closes_only_that_connection)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *good, *bad;
    cr_assert_eq(upulsar_tb_client_connect(upulsar_tb_url(tb), WAIT_MS, &good), UPULSAR_OK);
    const uint8_t cases[][12] = {
        {0xff, 0xff, 0xff, 0xff},                         /* totalSize too large */
        {0, 0, 0, 2, 0, 0},                               /* totalSize < 4 */
        {0, 0, 0, 8, 0, 0, 0, 9, 1, 2, 3, 4},             /* commandSize > totalSize */
        {0, 0, 0, 8, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff}, /* not a BaseCommand */
    };
    const size_t lens[] = {4, 6, 12, 12};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        cr_assert_eq(upulsar_tb_client_connect(upulsar_tb_url(tb), WAIT_MS, &bad), UPULSAR_OK);
        cr_assert_eq(upulsar_tb_client_send_raw(bad, cases[i], lens[i]), UPULSAR_OK);
        assert_closed_by_broker(bad);
        upulsar_tb_client_close(bad);
    }
    /* the well-behaved connection is untouched */
    send_simple(good, UP_CMD(PING));
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_read(good, WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.type, UP_CMD(PONG));
    upulsar_tb_stats_t st;
    upulsar_tb_stats(tb, &st);
    cr_assert_geq(st.protocol_errors, 4);
    upulsar_tb_client_close(good);
    upulsar_tb_stop(tb);
}

Test(broker_handshake, several_brokers_run_in_one_process)
{
    upulsar_tb_t *a = start_broker(0), *b = start_broker(0);
    cr_assert_neq(upulsar_tb_port(a), upulsar_tb_port(b));
    upulsar_tb_client_t *ca, *cb;
    cr_assert_eq(upulsar_tb_client_connect(upulsar_tb_url(a), WAIT_MS, &ca), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_connect(upulsar_tb_url(b), WAIT_MS, &cb), UPULSAR_OK);
    upulsar_tb_client_close(ca);
    upulsar_tb_stop(a);
    /* b is unaffected by a's stop */
    send_simple(cb, UP_CMD(PING));
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_read(cb, WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.type, UP_CMD(PONG));
    upulsar_tb_client_close(cb);
    upulsar_tb_stop(b);
}

Test(broker_handshake, stop_closes_open_connections)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c;
    cr_assert_eq(upulsar_tb_client_connect(upulsar_tb_url(tb), WAIT_MS, &c), UPULSAR_OK);
    upulsar_tb_stop(tb);
    assert_closed_by_broker(c);
    upulsar_tb_client_close(c);
}

Test(broker_handshake, start_on_a_port_in_use_fails_with_io)
{
    upulsar_tb_t *a = start_broker(0), *b = NULL;
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.port = upulsar_tb_port(a);
    cr_assert_eq(upulsar_tb_start(&o, &b), UPULSAR_ERR__IO);
    cr_assert_null(b);
    upulsar_tb_stop(a);
}
