/* test_broker_unsupported.c -- commands outside what the broker models:
 * requests the project's proto subset does not define still get an ERROR
 * carrying their request id; broker-to-client commands from a client close
 * its connection. */
#include <string.h>

#include "broker_common.h"
#include "buf.h"

/* BaseCommand{type = @p type, field @p type = {1: a, 2: b}} framed. */
static size_t raw_command(uint8_t *out, unsigned type, uint64_t a, uint64_t b)
{
    uint8_t body[32], cmd[64];
    size_t bl = 0, cl = 0;
    body[bl++] = 0x08;
    bl += up_put_varint(body + bl, a);
    body[bl++] = 0x10;
    bl += up_put_varint(body + bl, b);
    cmd[cl++] = 0x08;
    cl += up_put_varint(cmd + cl, type);
    cl += up_put_varint(cmd + cl, ((uint64_t)type << 3) | 2);
    cl += up_put_varint(cmd + cl, bl);
    memcpy(cmd + cl, body, bl);
    cl += bl;
    up_put_be32(out, (uint32_t)(cl + 4));
    up_put_be32(out + 4, (uint32_t)cl);
    memcpy(out + 8, cmd, cl);
    return cl + 8;
}

Test(broker_unsupported, unmodelled_requests_get_error_with_their_request_id)
{
    upulsar_tb_t *tb = bc_start(NULL);
    upulsar_tb_client_t *c = bc_connect(tb);
    const struct {
        unsigned type;
        uint64_t a, b, rid;
    } cases[] = {
        {29, 5, 901, 901}, /* GET_LAST_MESSAGE_ID{consumer_id, request_id} */
        {28, 5, 902, 902}, /* SEEK{consumer_id, request_id} */
        {34, 903, 0, 903}, /* GET_SCHEMA{request_id, ...} */
        {32, 904, 0, 904}, /* GET_TOPICS_OF_NAMESPACE{request_id, ...} */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t frame[128];
        size_t n = raw_command(frame, cases[i].type, cases[i].a, cases[i].b);
        cr_assert_eq(upulsar_tb_client_send_raw(c, frame, n), UPULSAR_OK);
        upulsar_tb_frame_t f;
        cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(ERROR), WAIT_MS, &f), UPULSAR_OK,
                     "type %u: %s", cases[i].type, upulsar_last_error());
        cr_assert_eq(f.cmd->error->request_id, cases[i].rid);
        cr_assert_not_null(f.cmd->error->message);
    }
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_unsupported, broker_to_client_command_from_a_client_closes_it)
{
    upulsar_tb_t *tb = bc_start(NULL);
    upulsar_tb_client_t *c = bc_connect(tb);
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSuccess s = PULSAR__PROTO__COMMAND_SUCCESS__INIT;
    cmd.type = UP_CMD(SUCCESS);
    cmd.success = &s;
    cr_assert_eq(upulsar_tb_client_send_cmd(c, &cmd), UPULSAR_OK);
    bc_assert_closed(c);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}
