/* test_fault_tls_backlog.c -- over TLS, what is encrypted ahead of the
 * socket stays bounded when a backlog drains.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * A connection encrypts its queued frames into one send buffer, and only
 * while no send is in flight. When a broker that stopped reading resumes,
 * everything queued behind the stuck send is waiting: encrypted at once,
 * it would take a second copy of the whole backlog (the batches are still
 * held until written), outside memory.limit.bytes, and the buffer kept its
 * size for the connection's life. Plain connections hand the kernel at
 * most UP_CONN_SEND_BYTES per send; TLS must keep to about the same.
 *
 * Observed through the internal probe up_probe_tls_tx_peak (src/fault.h):
 * the largest the buffer ever was. Every message is checked stored. */
#include "fault.h"
#include "fault_common.h"
#include "tls_certs.h"

enum { MSG = 1024, N = 24576 }; /* a 24 MiB backlog, within the half of the
                                   budget one producer may hold */

/* UP_CONN_SEND_BYTES (4 MiB, conn.h) plus one batch, rounded up to the
 * buffer's doubling: anything over this is more than one send's worth */
#define BOUND ((size_t)16 << 20)

static tls_certs_t certs;

Test(fault_tls_backlog, a_drained_backlog_is_encrypted_a_send_at_a_time, .timeout = 180)
{
    cr_assert_eq(tls_certs_make(&certs), 0, "openssl CLI failed");
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.tls_cert_file = certs.srv_cert;
    o.tls_key_file = certs.srv_key;
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    const char *kv[] = {"tls.ca.file", certs.ca, "keepalive.interval.ms", "0", NULL};
    upulsar_client_t *client = ft_client(tb, kv);
    const char *pkv[] = {"max.inflight.batches", "1000", "block.if.queue.full", "true",
                         "send.timeout.ms", "0", NULL};
    upulsar_producer_t *p = ft_producer(client, "tb", "tls-backlog", 0, pkv);
    cr_assert_eq(upulsar_tb_freeze(tb, 1), UPULSAR_OK);
    static char body[MSG];
    for (int i = 0; i < N; i++) {
        memset(body, 'a' + i % 26, sizeof body);
        memcpy(body, &i, sizeof i);
        cr_assert_eq(upulsar_send(p, body, sizeof body, NULL, NULL), UPULSAR_OK, "%d: %s", i,
                     upulsar_last_error());
    }
    cr_assert_eq(upulsar_tb_freeze(tb, 0), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_flush(p, 120000), UPULSAR_OK, "%s", upulsar_last_error());
    size_t peak = atomic_load(&up_probe_tls_tx_peak);
    cr_assert_leq(peak, BOUND, "the TLS send buffer grew to %zu bytes for a %d-byte backlog",
                  peak, N * MSG);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "tls-backlog", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)N);
    for (int i = 0; i < N; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        int got;
        cr_assert_eq(m->payload_len, (size_t)MSG);
        memcpy(&got, m->payload, sizeof got);
        cr_assert_eq(got, i, "message %d stored as %d", i, got);
    }
    upulsar_tb_snapshot_free(s);
    ft_stop_client_and_broker(tb, client);
    tls_certs_remove(&certs);
}
