/* test_fault_hung_budget.c -- batches that a hung broker's connection has
 * not taken stay counted against memory.limit.bytes until they are freed,
 * also after their messages timed out.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * A broker that stops reading with its connection open fills the socket's
 * buffers; the batches written after that wait in the connection's queue.
 * When their messages time out (send.timeout.ms) they resolve, but the
 * queue still holds the batches' memory until the bytes are written or the
 * connection closes. Were that memory given back to the budget at the
 * timeout, new sends would fill the budget again, time out, and queue more
 * behind the same stuck socket: memory without bound while the broker
 * hangs (keep-alive off here, as it may be in production).
 *
 * Outcomes are asserted by the client's own accounting ("memory"
 * "in_use" in the statistics) and the futures, never by timing. */
#include "fault_common.h"

enum { MSG = 1024, N = 32768 }; /* 32 MiB: far more than the sockets hold */

typedef struct {
    upulsar_future_t **f;
} futs_t;

static int all_resolved(void *a)
{
    futs_t *fs = a;
    for (int i = 0; i < N; i++)
        if (upulsar_future_poll(fs->f[i], NULL) == UPULSAR_ERR__PENDING)
            return 0;
    return 1;
}

static int nothing_in_use(void *a)
{
    return ft_mem_figure(a, "in_use") == 0;
}

/* Scenario:
 *  1. One producer; the broker freezes (stops reading, connection open).
 *  2. 32 MiB of 1 KiB messages are sent (budget 64 MiB, up to 1000
 *     batches in flight): the sockets take a few MiB, the rest waits in the
 *     connection's queue.
 *  3. Every message times out (send.timeout.ms=300).
 *  4. The client still counts what its connection's queue holds: "in_use"
 *     is at least 16 MiB (32 MiB less what loopback sockets can take).
 *  5. The broker resumes: the queue empties, and "in_use" comes back to 0
 *     (nothing counted twice or left over). */
Test(fault_hung_budget, batches_a_hung_connection_still_holds_stay_counted, .timeout = 120)
{
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"keepalive.interval.ms", "0", "memory.limit.bytes", "67108864", NULL};
    upulsar_client_t *client = ft_client(tb, ckv);
    const char *kv[] = {"send.timeout.ms", "300", "max.inflight.batches", "1000",
                        "block.if.queue.full", "true", NULL};
    upulsar_producer_t *p = ft_producer(client, "hb", "hung-budget", 0, kv);
    cr_assert_eq(upulsar_tb_freeze(tb, 1), UPULSAR_OK);
    static char body[MSG];
    memset(body, 'b', sizeof body);
    static upulsar_future_t *f[N];
    ft_send_n(p, body, sizeof body, f, N);
    futs_t fs = {f};
    cr_assert(ft_wait_for(all_resolved, &fs), "messages still pending");
    for (int i = 0; i < N; i++)
        cr_assert_eq(upulsar_future_poll(f[i], NULL), UPULSAR_ERR__MSG_TIMED_OUT, "message %d",
                     i);
    long long in_use = ft_mem_figure(p, "in_use");
    cr_assert_geq(in_use, 16ll << 20,
                  "in_use %lld after the timeouts: the batches the connection still holds "
                  "are no longer counted", in_use);
    cr_assert_eq(upulsar_tb_freeze(tb, 0), UPULSAR_OK);
    cr_assert(ft_wait_for(nothing_in_use, p), "in_use stays %lld once the broker resumed",
              ft_mem_figure(p, "in_use"));
    for (int i = 0; i < N; i++)
        upulsar_future_release(f[i]);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK, "%s", upulsar_last_error());
    ft_stop_client_and_broker(tb, client);
}
