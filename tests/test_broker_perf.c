/* test_broker_perf.c -- perf mode (entries stored as units, counted from
 * CommandSend, checksums still verified), the retained-bytes cap, and many
 * producer connections publishing at once.
 * UPULSAR_TEST_LABEL_CONCURRENCY (parallel connections into one topic) */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "batch.h"

#define WAIT_MS 10000
#include "broker_common.h"

static upulsar_tb_t *start_broker(int perf, size_t retain)
{
    upulsar_tb_opts_t o = bc_opts();
    o.perf = perf;
    o.max_retained_bytes = retain;
    return bc_start(&o);
}

Test(broker_perf, perf_mode_counts_entries_verifies_crc_and_still_reads_back)
{
    upulsar_tb_t *tb = start_broker(1, 0);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    upulsar_tb_out_msg_t m[100];
    char buf[100][16];
    for (int i = 0; i < 100; i++) {
        snprintf(buf[i], sizeof buf[i], "v%d", i);
        m[i] = (upulsar_tb_out_msg_t){.payload = buf[i], .len = strlen(buf[i])};
    }
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 0, m, 100, UP_COMP_LZ4, 0), UPULSAR_OK);
    bc_receipt(c, &f);
    cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", 100, m, 100, 0,
                                                 UPULSAR_TB_SEND_BAD_CRC),
                 UPULSAR_OK);
    cr_assert_eq(bc_send_error(c, &f)->error, UP_SERR(ChecksumError));
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.entries, 1);
    cr_assert_eq(st.messages, 100); /* from CommandSend.num_messages */
    cr_assert_eq(st.checksum_errors, 1);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "t", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 100);
    cr_assert_str_eq((const char *)upulsar_tb_snapshot_msg(s, 42)->payload, "v42");
    upulsar_tb_snapshot_free(s);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_perf, perf_mode_trusts_num_messages_without_parsing)
{
    /* a batch whose payload is not a batch at all: a real broker stores it
     * as given and counts what CommandSend says */
    upulsar_tb_t *tb = start_broker(1, 0);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    md.producer_name = "p";
    md.has_num_messages_in_batch = 1;
    md.num_messages_in_batch = 7;
    bc_send_entry(c, 1, 0, 7, &md, "garbage", 7);
    upulsar_tb_frame_t f;
    bc_receipt(c, &f);
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.messages, 7);
    cr_assert_eq(st.decode_errors, 0);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_perf, retained_bytes_cap_keeps_counting_but_not_bytes)
{
    upulsar_tb_t *tb = start_broker(1, 1000);
    upulsar_tb_client_t *c = bc_producer_on(tb, "t", 1, "p");
    static char payload[400];
    memset(payload, 'a', sizeof payload);
    upulsar_tb_out_msg_t m = {.payload = payload, .len = sizeof payload};
    upulsar_tb_frame_t f;
    for (uint64_t s = 0; s < 5; s++) {
        cr_assert_eq(upulsar_tb_client_send_messages(c, 1, "p", s, &m, 1, 0, 0), UPULSAR_OK);
        cr_assert_eq(bc_receipt(c, &f)->message_id->entryid, s);
    }
    upulsar_tb_topic_stats_t st = bc_topic_stats(tb, "t");
    cr_assert_eq(st.entries, 5);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "t", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 2); /* 2 x ~420 bytes fit in 1000 */
    cr_assert_eq(upulsar_tb_snapshot_skipped(s), 3);
    upulsar_tb_snapshot_free(s);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

enum { THREADS = 4, BATCHES = 150, PER_BATCH = 40 };

typedef struct worker {
    upulsar_tb_t *tb;
    int id;
    int receipts;
    int in_order;
} worker_t;

static void *publish_worker(void *arg)
{
    worker_t *w = arg;
    char name[16];
    snprintf(name, sizeof name, "w%d", w->id);
    upulsar_tb_client_t *c = NULL;
    if (upulsar_tb_client_connect(upulsar_tb_url(w->tb), WAIT_MS, &c))
        return NULL;
    /* two topics per worker so topics are shared across connections */
    const char *topics[2] = {"shared-a", "shared-b"};
    for (uint64_t p = 0; p < 2; p++)
        if (upulsar_tb_client_create_producer(c, topics[p], p, name, WAIT_MS, NULL, 0, NULL))
            goto out;
    upulsar_tb_out_msg_t m[PER_BATCH];
    for (int i = 0; i < PER_BATCH; i++)
        m[i] = (upulsar_tb_out_msg_t){.payload = name, .len = strlen(name), .key = name};
    w->in_order = 1;
    uint64_t next[2] = {0, 0};
    for (int b = 0; b < BATCHES; b++) {
        uint64_t p = (uint64_t)(b % 2);
        if (upulsar_tb_client_send_messages(c, p, name, (uint64_t)b * PER_BATCH, m, PER_BATCH,
                                            b % 3 == 0 ? UP_COMP_LZ4 : 0,
                                            UPULSAR_TB_SEND_HIGHEST))
            goto out;
    }
    for (int b = 0; b < BATCHES; b++) {
        upulsar_tb_frame_t f;
        if (upulsar_tb_client_expect(c, UP_CMD(SEND_RECEIPT), WAIT_MS, &f))
            break;
        const Pulsar__Proto__CommandSendReceipt *r = f.cmd->send_receipt;
        uint64_t p = r->producer_id;
        /* per producer, receipts follow the SEND order: b = 2k + p */
        if (p > 1 || r->sequence_id != (2 * next[p] + p) * PER_BATCH)
            w->in_order = 0;
        next[p < 2 ? p : 0]++;
        w->receipts++;
    }
out:
    upulsar_tb_client_close(c);
    return NULL;
}

Test(broker_perf, parallel_connections_store_everything_in_per_producer_order)
{
    for (int perf = 0; perf < 2; perf++) {
        upulsar_tb_t *tb = start_broker(perf, 0);
        pthread_t th[THREADS];
        worker_t w[THREADS];
        for (int i = 0; i < THREADS; i++) {
            w[i] = (worker_t){.tb = tb, .id = i};
            cr_assert_eq(pthread_create(&th[i], NULL, publish_worker, &w[i]), 0);
        }
        for (int i = 0; i < THREADS; i++) {
            pthread_join(th[i], NULL);
            cr_assert_eq(w[i].receipts, BATCHES, "worker %d (perf %d)", i, perf);
            cr_assert(w[i].in_order, "worker %d (perf %d)", i, perf);
        }
        uint64_t total = 0;
        const char *topics[2] = {"shared-a", "shared-b"};
        for (int t = 0; t < 2; t++) {
            upulsar_tb_topic_stats_t st = bc_topic_stats(tb, topics[t]);
            cr_assert_eq(st.entries, THREADS * BATCHES / 2);
            cr_assert_eq(st.duplicates, 0);
            cr_assert_eq(st.decode_errors, 0);
            total += st.messages;
            /* each producer's messages appear in its own order in the log */
            upulsar_tb_snapshot_t *s;
            cr_assert_eq(upulsar_tb_snapshot(tb, topics[t], &s), UPULSAR_OK);
            cr_assert_eq(upulsar_tb_snapshot_count(s), st.messages);
            uint64_t last[THREADS];
            int seen[THREADS] = {0};
            for (size_t j = 0; j < upulsar_tb_snapshot_count(s); j++) {
                const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, j);
                int id = m->producer_name[1] - '0';
                cr_assert(id >= 0 && id < THREADS);
                cr_assert_str_eq(m->partition_key, m->producer_name);
                if (seen[id])
                    cr_assert_gt(m->sequence_id, last[id]);
                seen[id] = 1;
                last[id] = m->sequence_id;
            }
            upulsar_tb_snapshot_free(s);
        }
        cr_assert_eq(total, (uint64_t)THREADS * BATCHES * PER_BATCH);
        upulsar_tb_stats_t bs = bc_stats(tb);
        cr_assert_eq(bs.messages, total);
        upulsar_tb_stop(tb);
    }
}
