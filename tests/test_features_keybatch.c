/* test_features_keybatch.c -- batching.type=key_based: every batch entry
 * holds one key; entries go out in ascending order of first sequence id;
 * per-key order holds; nothing is lost. Every entry carries a key for
 * Key_Shared routing (its ordering key, else its partition key): the one
 * key of a key_based entry, the first message's key of a default one, each
 * message's own key without batching. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fault_common.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void) { ft_start_broker_and_plain_client(&tb, &client, NULL); }
static void teardown(void) { ft_stop_client_and_broker(tb, client); }

TestSuite(features_keybatch, .init = setup, .fini = teardown, .timeout = 60);

enum { N = 3000 };

/* The key a Key_Shared subscription routes @p m's entry by, "-" for none. */
static void sticky(const upulsar_tb_msg_t *m, char *out, size_t sz)
{
    snprintf(out, sz, "%.*s", m->sticky_key ? (int)m->sticky_key_len : 1,
             m->sticky_key ? (const char *)m->sticky_key : "-");
}

/* Send N messages cycling over nkeys partition keys, 2 ordering keys (which
 * win over the partition key) and no key; returns the number of entries
 * holding more than one key. Every entry's Key_Shared key must be its
 * first message's. */
static int run_keys(const char *topic, const char *type, int nkeys, const char *inflight,
                    const char *batching)
{
    const char *kv[] = {"max.inflight.batches", inflight, "batching.type", type,
                        "batch.max.messages", "100", "batch.max.delay.ms", "5",
                        "batching.enabled", batching, NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, topic, 0, kv);
    static upulsar_future_t *f[N];
    for (int i = 0; i < N; i++) {
        char key[8], pl[16];
        snprintf(key, sizeof key, "k%d", i % nkeys);
        int len = snprintf(pl, sizeof pl, "%d", i);
        upulsar_send_opts_t o = {0};
        switch (i % 8) {
        case 5: break; /* keyless */
        case 6: o.partition_key = key; o.ordering_key = "oa"; o.ordering_key_len = 2; break;
        case 7: o.ordering_key = "ob"; o.ordering_key_len = 2; break;
        default: o.partition_key = key; break;
        }
        cr_assert_eq(upulsar_send(p, pl, (size_t)len, &o, &f[i]), UPULSAR_OK);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(upulsar_future_wait(f[i], 10000, NULL), UPULSAR_OK);
        upulsar_future_release(f[i]);
    }
    cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);

    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
    size_t n = upulsar_tb_snapshot_count(s);
    cr_assert_eq(n, N);
    static unsigned char seen[N];
    memset(seen, 0, sizeof seen);
    int mixed = 0;
    int last_of_key[64];
    for (int k = 0; k < 64; k++)
        last_of_key[k] = -1;
    uint64_t prev_first_seq = 0;
    bool have_prev = false;
    for (size_t j = 0; j < n;) {
        const upulsar_tb_msg_t *m0 = upulsar_tb_snapshot_msg(s, j);
        /* entry first sequence ids ascend */
        if (have_prev)
            cr_assert_gt(m0->sequence_id, prev_first_seq, "entries out of order");
        prev_first_seq = m0->sequence_id;
        have_prev = true;
        char k0[16];
        snprintf(k0, sizeof k0, "%.*s", m0->ordering_key ? (int)m0->ordering_key_len : 8,
                 m0->ordering_key ? (const char *)m0->ordering_key
                                  : m0->partition_key ? m0->partition_key : "-");
        bool mix = false;
        size_t e = j;
        for (; e < n && upulsar_tb_snapshot_msg(s, e)->entry_id == m0->entry_id; e++) {
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, e);
            char k[16];
            snprintf(k, sizeof k, "%.*s", m->ordering_key ? (int)m->ordering_key_len : 8,
                     m->ordering_key ? (const char *)m->ordering_key
                                     : m->partition_key ? m->partition_key : "-");
            if (strcmp(k, k0) != 0)
                mix = true;
            char sk[16];
            sticky(m, sk, sizeof sk);
            cr_assert_str_eq(sk, k0, "entry %llu: Key_Shared key %s, first message's %s",
                             (unsigned long long)m->entry_id, sk, k0);
            /* every batched message names its own id, as the official
             * clients write it */
            if (m->batch_index >= 0) {
                cr_assert(m->sequence_id_in_batch, "entry %llu message %d: no sequence_id",
                          (unsigned long long)m->entry_id, m->batch_index);
                cr_assert_eq(m->sequence_id, m0->sequence_id + (uint64_t)(e - j));
            }
            /* the entry carries its first message's partition key beside
             * its ordering key */
            if (m0->ordering_key && m0->partition_key)
                cr_assert(m->entry_partition_key &&
                              !strcmp(m->entry_partition_key, m0->partition_key),
                          "entry %llu: partition key %s, first message's %s",
                          (unsigned long long)m->entry_id,
                          m->entry_partition_key ? m->entry_partition_key : "(none)",
                          m0->partition_key);
            char pl[16] = {0};
            memcpy(pl, m->payload, m->payload_len < 15 ? m->payload_len : 15);
            int i = atoi(pl);
            cr_assert(i >= 0 && i < N);
            cr_assert_eq(seen[i], 0, "message %d twice", i);
            seen[i] = 1;
            /* per-key order: k0..k4 -> 0..4, oa -> 5, ob -> 6, none -> 7 */
            int slot = k[0] == 'k' ? 3 + atoi(k + 1) : strcmp(k, "oa") == 0 ? 0 : strcmp(k, "ob") == 0 ? 1 : 2;
            cr_assert_gt(i, last_of_key[slot], "order broken for key %s", k);
            last_of_key[slot] = i;
        }
        mixed += mix;
        j = e;
    }
    upulsar_tb_snapshot_free(s);
    return mixed;
}

Test(features_keybatch, key_based_batches_hold_one_key_each)
{
    cr_assert_eq(run_keys("kb", "key_based", 5, "32", "true"), 0, "an entry holds several keys");
}

Test(features_keybatch, more_keys_than_inflight_batches)
{
    /* 50 keys, at most 4 batches open at once: still one key per entry,
     * nothing lost, per-key order */
    cr_assert_eq(run_keys("kb50", "key_based", 50, "4", "true"), 0,
                 "an entry holds several keys");
}

Test(features_keybatch, default_batches_mix_keys)
{
    /* the control: the same stream with the default batcher mixes keys
     * (each entry still carries its first message's key) */
    cr_assert_gt(run_keys("def", "default", 5, "32", "true"), 0);
}

Test(features_keybatch, unbatched_messages_carry_their_own_key)
{
    /* one message per entry: each entry's Key_Shared key is its message's */
    cr_assert_eq(run_keys("unb", "default", 5, "32", "false"), 0);
}
