/* test_frame.c -- frame encoding is byte-exact and the decoder survives any
 * split of its input. */
#include <criterion/criterion.h>

#include "crc32c.h"
#include "frame.h"

Test(crc32c, check_value_sw_and_hw)
{
    cr_assert_eq(up_crc32c_sw(0, "123456789", 9), 0xE3069283u);
    if (up_crc32c_hw_available())
        cr_assert_eq(up_crc32c_hw(0, "123456789", 9), 0xE3069283u);
    cr_assert_eq(up_crc32c(up_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

Test(frame, ping_frame_is_byte_exact)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandPing ping = PULSAR__PROTO__COMMAND_PING__INIT;
    cmd.type = UP_CMD(PING);
    cmd.ping = &ping;
    up_buf_t b = UP_BUF_INIT;
    cr_assert_eq(up_frame_put_cmd(&b, &cmd), 0);
    const uint8_t want[] = {0, 0, 0, 9, 0, 0, 0, 5, 0x08, 0x12, 0x92, 0x01, 0x00};
    cr_assert_eq(b.len, sizeof want);
    cr_assert_arr_eq(b.data, want, sizeof want);
    up_buf_free(&b);
}

Test(frame, send_frame_matches_protocol_example)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSend send = PULSAR__PROTO__COMMAND_SEND__INIT;
    cmd.type = UP_CMD(SEND);
    cmd.send = &send;
    send.producer_id = 1;
    send.sequence_id = 0;
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    md.producer_name = "p";
    md.sequence_id = 0;
    md.publish_time = 1700000000000ull;
    struct iovec iov = {.iov_base = "hi", .iov_len = 2};
    up_buf_t b = UP_BUF_INIT;
    cr_assert_eq(up_frame_put_payload(&b, &cmd, &md, &iov, 1, true), 0);
    const uint8_t want[] = {0x00, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00, 0x08, 0x08, 0x06,
                            0x32, 0x04, 0x08, 0x01, 0x10, 0x00, 0x0e, 0x01, 0x5b, 0x4c,
                            0x69, 0xac, 0x00, 0x00, 0x00, 0x0c, 0x0a, 0x01, 0x70, 0x10,
                            0x00, 0x18, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31, 0x68, 0x69};
    cr_assert_eq(b.len, sizeof want);
    cr_assert_arr_eq(b.data, want, sizeof want);

    /* decode it back, fed one byte at a time */
    up_decoder_t d;
    up_decoder_init(&d, 0);
    up_frame_t f;
    for (size_t i = 0; i < b.len; i++) {
        cr_assert_eq(up_decoder_next(&d, &f), 0);
        cr_assert_eq(up_decoder_feed(&d, b.data + i, 1), 0);
    }
    cr_assert_eq(up_decoder_next(&d, &f), 1);
    cr_assert_eq(f.cmd->type, UP_CMD(SEND));
    cr_assert(f.has_crc);
    cr_assert_eq(f.payload_len, 2);
    cr_assert_eq(memcmp(f.payload, "hi", 2), 0);
    cr_assert_eq(up_decoder_next(&d, &f), 0);
    up_decoder_free(&d);
    up_buf_free(&b);
}
