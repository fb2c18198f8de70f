/* test_scale_ring.c -- memory follows load, not partitions: a producer on
 * 256 partitions holds, per ring, the pages its few messages were written
 * into (one page of cells and one of commit words), not queue.buffer.bytes,
 * and keeps reusing them wave after wave; every message is stored exactly
 * once. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault_common.h"

enum { PARTS = 256, THREADS = 2, WAVES = 32, PER_WAVE = PARTS * 4 /* each thread */ };

/* The "ring_resident_bytes" of every producer in the stats JSON of @p p,
 * into @p out (at most @p max); returns how many. */
static size_t ring_resident(upulsar_producer_t *p, unsigned long long *out, size_t max)
{
    char *json = NULL;
    cr_assert_eq(upulsar_producer_stats_json(p, &json), UPULSAR_OK, "%s", upulsar_last_error());
    size_t n = 0;
    const char *key = "\"ring_resident_bytes\":";
    for (const char *s = strstr(json, key); s; s = strstr(s + 1, key)) {
        cr_assert_lt(n, max);
        out[n++] = strtoull(s + strlen(key), NULL, 10);
    }
    free(json);
    return n;
}

Test(scale_ring, rings_of_256_partitions_stay_at_their_first_pages, .timeout = 300)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    cr_assert_eq(upulsar_tb_set_partitions(tb, "wide", PARTS), UPULSAR_OK);
    /* batching off: round_robin moves to the next partition with every
     * message, so each wave puts a few messages in every ring */
    const char *kv[] = {"batching.enabled", "false", "queue.buffer.bytes", "1048576", NULL};
    upulsar_producer_t *p = ft_producer(client, "wide-p", "wide", PARTS, kv);

    static unsigned long long res[PARTS + 1];
    const unsigned long long page = (unsigned long long)sysconf(_SC_PAGESIZE);
    /* started, nothing sent: no ring holds a page */
    cr_assert_eq(ring_resident(p, res, PARTS + 1), PARTS);
    for (int i = 0; i < PARTS; i++)
        cr_assert_eq(res[i], 0, "partition %d: %llu bytes before any message", i, res[i]);

    ft_run_t *r = ft_run_new(p, THREADS, WAVES * PER_WAVE, 0);
    ft_run_allow(r, PER_WAVE * THREADS);
    ft_run_start(r);
    for (int w = 1; w <= WAVES; w++) {
        /* a wave stored (so drained from the rings), then the next */
        ft_stored_t st = {tb, NULL, (uint64_t)w * PER_WAVE * THREADS};
        cr_assert(ft_wait_for(ft_stored_at_least, &st), "wave %d not stored", w);
        ft_run_allow(r, (uint64_t)(w + 1) * PER_WAVE * THREADS);
    }
    ft_run_join(r);
    cr_assert_eq(ft_collect(r), 0);

    /* 128 messages went through every ring, in waves of about 8: each
     * ring still holds only its first page of cells and of commit words
     * (without reuse the cells alone would span several pages), against
     * 1 MiB of queue.buffer.bytes */
    cr_assert_eq(ring_resident(p, res, PARTS + 1), PARTS);
    for (int i = 0; i < PARTS; i++) {
        cr_assert_gt(res[i], 0, "partition %d: no page written", i);
        cr_assert_leq(res[i], 2 * page, "partition %d: %llu bytes resident", i, res[i]);
    }

    ft_check_opts_t o = {.topic = "wide", .partitions = PARTS};
    ft_check_res_t c = ft_stop_and_check(tb, r, &o);
    cr_assert_eq(c.stored, (size_t)THREADS * WAVES * PER_WAVE);
    cr_assert_eq(c.ok, (size_t)THREADS * WAVES * PER_WAVE);
    ft_run_free(r);
    ft_stop_client_and_broker(tb, client);
}
