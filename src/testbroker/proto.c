/* proto.c -- frames the test broker sends. SEND_RECEIPT is hand-encoded
 * (it is written once per stored entry); the rest go through protobuf-c. */
#include <string.h>

#include "tb.h"

int tb_put_receipt(up_buf_t *out, uint64_t producer_id, uint64_t seq,
                   uint64_t highest, bool has_highest, uint64_t ledger,
                   uint64_t entry)
{
    size_t mid = 1 + up_varint_size(ledger) + 1 + up_varint_size(entry);
    size_t body = 1 + up_varint_size(producer_id) + 1 + up_varint_size(seq) + 1 +
                  up_varint_size(mid) + mid;
    if (has_highest)
        body += 1 + up_varint_size(highest);
    size_t cmd = 2 + 1 + up_varint_size(body) + body;
    if (up_buf_reserve(out, 8 + cmd))
        return UPULSAR_ERR__NOMEM;
    uint8_t *p = out->data + out->len, *start = p;
    up_put_be32(p, (uint32_t)(4 + cmd));
    up_put_be32(p + 4, (uint32_t)cmd);
    p += 8;
    *p++ = 0x08; /* BaseCommand.type */
    *p++ = UP_CMD(SEND_RECEIPT);
    *p++ = 0x3a; /* field 7, length-delimited */
    p += up_put_varint(p, body);
    *p++ = 0x08;
    p += up_put_varint(p, producer_id);
    *p++ = 0x10;
    p += up_put_varint(p, seq);
    *p++ = 0x1a; /* message_id */
    p += up_put_varint(p, mid);
    *p++ = 0x08;
    p += up_put_varint(p, ledger);
    *p++ = 0x10;
    p += up_put_varint(p, entry);
    if (has_highest) {
        *p++ = 0x20;
        p += up_put_varint(p, highest);
    }
    out->len += (size_t)(p - start);
    return 0;
}

int tb_put_send_error(up_buf_t *out, uint64_t producer_id, uint64_t seq, int error,
                      const char *msg)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSendError se = PULSAR__PROTO__COMMAND_SEND_ERROR__INIT;
    cmd.type = UP_CMD(SEND_ERROR);
    cmd.send_error = &se;
    se.producer_id = producer_id;
    se.sequence_id = seq;
    se.error = (Pulsar__Proto__ServerError)error;
    se.message = (char *)(msg ? msg : "");
    return up_frame_put_cmd(out, &cmd);
}

int tb_put_error(up_buf_t *out, uint64_t request_id, int error, const char *msg)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandError e = PULSAR__PROTO__COMMAND_ERROR__INIT;
    cmd.type = UP_CMD(ERROR);
    cmd.error = &e;
    e.request_id = request_id;
    e.error = (Pulsar__Proto__ServerError)error;
    e.message = (char *)(msg ? msg : "");
    return up_frame_put_cmd(out, &cmd);
}

int tb_put_success(up_buf_t *out, uint64_t request_id)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSuccess s = PULSAR__PROTO__COMMAND_SUCCESS__INIT;
    cmd.type = UP_CMD(SUCCESS);
    cmd.success = &s;
    s.request_id = request_id;
    return up_frame_put_cmd(out, &cmd);
}

int tb_put_simple(up_buf_t *out, int type)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandPing ping = PULSAR__PROTO__COMMAND_PING__INIT;
    Pulsar__Proto__CommandPong pong = PULSAR__PROTO__COMMAND_PONG__INIT;
    cmd.type = (Pulsar__Proto__BaseCommand__Type)type;
    if (type == UP_CMD(PING))
        cmd.ping = &ping;
    else if (type == UP_CMD(PONG))
        cmd.pong = &pong;
    else
        return UPULSAR_ERR__INVALID_ARG;
    return up_frame_put_cmd(out, &cmd);
}

int tb_put_close_producer(up_buf_t *out, uint64_t producer_id, uint64_t request_id,
                          const char *assigned_url)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandCloseProducer cp = PULSAR__PROTO__COMMAND_CLOSE_PRODUCER__INIT;
    cmd.type = UP_CMD(CLOSE_PRODUCER);
    cmd.close_producer = &cp;
    cp.producer_id = producer_id;
    cp.request_id = request_id;
    if (assigned_url && !strncmp(assigned_url, "pulsar+ssl://", 13))
        cp.assignedbrokerserviceurltls = (char *)assigned_url;
    else if (assigned_url)
        cp.assignedbrokerserviceurl = (char *)assigned_url;
    return up_frame_put_cmd(out, &cmd);
}

int tb_put_topic_migrated(up_buf_t *out, uint64_t producer_id, const char *url)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandTopicMigrated tm = PULSAR__PROTO__COMMAND_TOPIC_MIGRATED__INIT;
    cmd.type = UP_CMD(TOPIC_MIGRATED);
    cmd.topicmigrated = &tm;
    tm.resource_id = producer_id;
    tm.resource_type = PULSAR__PROTO__COMMAND_TOPIC_MIGRATED__RESOURCE_TYPE__Producer;
    if (!strncmp(url, "pulsar+ssl://", 13))
        tm.brokerserviceurltls = (char *)url;
    else
        tm.brokerserviceurl = (char *)url;
    return up_frame_put_cmd(out, &cmd);
}

int tb_put_auth_challenge(up_buf_t *out, const char *server_version, int protocol_version)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandAuthChallenge ch = PULSAR__PROTO__COMMAND_AUTH_CHALLENGE__INIT;
    Pulsar__Proto__AuthData ad = PULSAR__PROTO__AUTH_DATA__INIT;
    static const char refresh[] = "PulsarAuthRefresh"; /* Pulsar's refresh marker */
    cmd.type = UP_CMD(AUTH_CHALLENGE);
    cmd.authchallenge = &ch;
    ch.server_version = (char *)server_version;
    ch.has_protocol_version = 1;
    ch.protocol_version = protocol_version;
    ch.challenge = &ad;
    ad.auth_method_name = "token";
    ad.has_auth_data = 1;
    ad.auth_data.data = (uint8_t *)refresh;
    ad.auth_data.len = sizeof refresh - 1;
    return up_frame_put_cmd(out, &cmd);
}
