/* test_broker_handshake.c -- the test broker's handshake and keep-alive:
 * CONNECTED fields, PING/PONG both ways, idle connections closed, bad first
 * frames and garbage closing only their own connection.
 * UPULSAR_TEST_LABEL_CONCURRENCY (connection threads, ticks, stop) */
#include <stdio.h>
#include <string.h>

#include "broker_common.h"

static upulsar_tb_t *start_broker(int ping_ms)
{
    upulsar_tb_opts_t o = bc_opts();
    o.ping_interval_ms = ping_ms;
    return bc_start(&o);
}

/* CONNECT as this file's client ("test", no authentication) with
 * protocol_version @p version (< 0: not sent). */
static void send_connect(upulsar_tb_client_t *c, int version)
{
    bc_send_connect(c, "test", "none", NULL, version);
}

/* The very next frame (PINGs included) is of @p type. */
static void expect_next(upulsar_tb_client_t *c, int type)
{
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_read(c, WAIT_MS, &f), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(f.type, type, "got %s", up_cmd_name(f.type));
}

/* A PING is answered, by a PONG as the very next frame. */
static void assert_pong(upulsar_tb_client_t *c)
{
    bc_send_ping_pong(c, UP_CMD(PING));
    expect_next(c, UP_CMD(PONG));
}

Test(broker_handshake, connected_carries_server_version_protocol_min_and_max_size)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.max_message_size = 1234567;
    upulsar_tb_t *tb = bc_start(&o);
    cr_assert_gt(upulsar_tb_port(tb), 0);
    char want[64];
    snprintf(want, sizeof want, "pulsar://127.0.0.1:%d", upulsar_tb_port(tb));
    cr_assert_str_eq(upulsar_tb_url(tb), want);

    int versions[] = {21, 30, 10, -1};
    int expect[] = {21, 21, 10, 0};
    for (int i = 0; i < 4; i++) {
        upulsar_tb_client_t *c = bc_open(tb);
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
    upulsar_tb_t *tb = bc_start(NULL);
    upulsar_tb_client_t *c = bc_open(tb);
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
    upulsar_tb_client_t *c = bc_connect(tb);
    for (int i = 0; i < 3; i++)
        assert_pong(c);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_handshake, broker_pings_and_keeps_a_client_that_answers)
{
    upulsar_tb_t *tb = start_broker(30);
    upulsar_tb_client_t *c = bc_connect(tb);
    /* answering each PING keeps the connection through several ticks */
    for (int i = 0; i < 4; i++) {
        expect_next(c, UP_CMD(PING));
        bc_send_ping_pong(c, UP_CMD(PONG));
    }
    upulsar_tb_stats_t st = bc_stats(tb);
    cr_assert_geq(st.pings_sent, 4);
    cr_assert_eq(st.connections_active, 1);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_handshake, broker_closes_a_client_that_stays_silent)
{
    upulsar_tb_t *tb = start_broker(30);
    upulsar_tb_client_t *c = bc_connect(tb);
    expect_next(c, UP_CMD(PING));
    /* no PONG: the next tick closes the connection */
    bc_assert_closed(c);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_handshake, connection_without_handshake_is_closed_at_first_tick)
{
    upulsar_tb_t *tb = start_broker(30);
    upulsar_tb_client_t *c = bc_open(tb);
    bc_assert_closed(c);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_handshake, first_frame_other_than_connect_closes)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c = bc_open(tb);
    bc_send_ping_pong(c, UP_CMD(PING));
    bc_assert_closed(c);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_handshake, garbage_closes_only_that_connection)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *good = bc_connect(tb);
    const uint8_t cases[][12] = {
        {0xff, 0xff, 0xff, 0xff},                         /* totalSize too large */
        {0, 0, 0, 2, 0, 0},                               /* totalSize < 4 */
        {0, 0, 0, 8, 0, 0, 0, 9, 1, 2, 3, 4},             /* commandSize > totalSize */
        {0, 0, 0, 8, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff}, /* not a BaseCommand */
    };
    const size_t lens[] = {4, 6, 12, 12};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        upulsar_tb_client_t *bad = bc_connect(tb);
        cr_assert_eq(upulsar_tb_client_send_raw(bad, cases[i], lens[i]), UPULSAR_OK);
        bc_assert_closed(bad);
        upulsar_tb_client_close(bad);
    }
    /* the well-behaved connection is untouched */
    assert_pong(good);
    cr_assert_geq(bc_stats(tb).protocol_errors, 4);
    upulsar_tb_client_close(good);
    upulsar_tb_stop(tb);
}

Test(broker_handshake, several_brokers_run_in_one_process)
{
    upulsar_tb_t *a = start_broker(0), *b = start_broker(0);
    cr_assert_neq(upulsar_tb_port(a), upulsar_tb_port(b));
    upulsar_tb_client_t *ca = bc_connect(a), *cb = bc_connect(b);
    upulsar_tb_client_close(ca);
    upulsar_tb_stop(a);
    /* b is unaffected by a's stop */
    assert_pong(cb);
    upulsar_tb_client_close(cb);
    upulsar_tb_stop(b);
}

Test(broker_handshake, stop_closes_open_connections)
{
    upulsar_tb_t *tb = start_broker(0);
    upulsar_tb_client_t *c = bc_connect(tb);
    upulsar_tb_stop(tb);
    bc_assert_closed(c);
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
