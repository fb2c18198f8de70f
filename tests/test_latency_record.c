/* test_latency_record.c -- a ring record that carries its send time
 * (latency.sample.every): the time sits in the last 8 bytes of the
 * record's last cell, flagged in the header's payload length; written at
 * every position of a small ring (so that records wrap at its end) it reads
 * back with the same time and the exact payload, and a record without it
 * reads back as before. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "ring.h"

#define RING_BYTES 2048 /* 64 cells */

static void round_trip(size_t plen, uint64_t sent_us)
{
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, RING_BYTES), 0);
    uint8_t payload[200];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7 + plen);
    const char key[] = "k";
    up_rec_in_t in = {0};
    in.flags = UP_REC_KEY;
    in.key = key;
    in.key_len = 1;
    in.payload = payload;
    in.payload_len = plen;
    in.event_time = 42;
    in.sent_us = sent_us;
    size_t size = up_rec_size(&in);
    in.sent_us = 0;
    cr_assert_eq(size, up_rec_size(&in) + (sent_us ? 8u : 0u));
    in.sent_us = sent_us;
    uint64_t ncells = up_ring_cells_for(size);
    uint8_t *scratch = NULL;
    size_t scap = 0;
    for (uint64_t pos = 0; pos < r.cap; pos++) {
        memset(r.cells, 0xa5, (size_t)r.cap * UP_RING_CELL);
        up_rec_write(&r, pos, ncells, &in);
        up_rec_view_t v;
        cr_assert_eq(up_rec_read(&r, pos, &scratch, &scap, &v), 0, "pos %llu",
                     (unsigned long long)pos);
        cr_assert_eq(v.ncells, ncells);
        cr_assert_eq(v.sent_us, sent_us, "pos %llu", (unsigned long long)pos);
        cr_assert_eq(v.m.payload_size, plen);
        cr_assert_eq(memcmp(v.payload, payload, plen), 0, "payload at pos %llu",
                     (unsigned long long)pos);
        cr_assert_eq(v.m.key_len, 1);
        cr_assert_eq(v.m.key[0], 'k');
        cr_assert_eq(v.m.event_time, 42);
        up_rec_t h;
        up_rec_ext_t ext;
        up_rec_read_head(&r, pos, &h, &ext);
        cr_assert_eq(up_rec_plen(&h), plen);
    }
    free(scratch);
    up_ring_destroy(&r);
}

Test(latency_record, stamped_records_round_trip_at_every_ring_position)
{
    /* payload lengths that leave 0..31 bytes free in the last cell */
    for (size_t plen = 60; plen < 100; plen++) {
        round_trip(plen, 0x0123456789abcdefull + plen);
        round_trip(plen, 0);
    }
}

Test(latency_record, a_stamped_record_too_short_for_its_time_is_refused)
{
    /* one cell, header only, claiming a time: no room for it */
    uint8_t rec[UP_RING_CELL] = {0};
    up_rec_t h = {0};
    h.ncells_flags = 1u << 4;
    h.payload_len = UP_REC_STAMPED;
    memcpy(rec, &h, sizeof h);
    up_rec_view_t v;
    cr_assert_eq(up_rec_parse(rec, sizeof rec, &v), UPULSAR_ERR__DECODE);
}
