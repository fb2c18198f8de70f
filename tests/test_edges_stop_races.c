/* test_edges_stop_races.c -- stop, flush and client destroy on different
 * threads at the same time never use a freed handle.
 *
 * a_flush_waiting_when_stop_begins_is_ended_before_the_free: receipts held,
 *   thread F is inside upulsar_producer_flush(-1) (the handle counts it);
 *   the stop flushes for 1 s, then the waiting flush returns CLOSED, and
 *   only then is the handle freed; every future resolved exactly once.
 * destroy_waits_for_a_stop_under_way_on_another_thread: thread A stops a
 *   producer whose receipts are held (its flush waits out its timeout);
 *   client destroy on the main thread, started while A's stop is under way,
 *   neither stops that handle again nor frees the client under A.
 * A use of the freed handle is what AddressSanitizer reports in these.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

#include "engine.h"
#include "fault_common.h"

TestSuite(edges_stop_races, .timeout = 120);

enum { N = 50 };

static void send_held(upulsar_tb_t *tb, upulsar_producer_t *p, const char *topic,
                      upulsar_future_t **f)
{
    cr_assert_eq(upulsar_tb_hold_receipts(tb, topic), UPULSAR_OK);
    for (int i = 0; i < N; i++)
        cr_assert_eq(upulsar_send(p, "held", 4, NULL, &f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
}

static void check_all_resolved_once(upulsar_future_t **f)
{
    for (int i = 0; i < N; i++) {
        upulsar_err_t e = upulsar_future_poll(f[i], NULL);
        cr_assert_neq(e, UPULSAR_ERR__PENDING, "message %d unresolved", i);
        cr_assert_eq(upulsar_future_release(f[i]), UPULSAR_OK);
    }
}

typedef struct {
    upulsar_producer_t *p;
    int timeout_ms;
    atomic_int started;
    upulsar_err_t result;
} call_t;

static void *do_flush(void *a)
{
    call_t *c = a;
    atomic_store(&c->started, 1);
    c->result = upulsar_producer_flush(c->p, c->timeout_ms);
    return NULL;
}

static void *do_stop(void *a)
{
    call_t *c = a;
    atomic_store(&c->started, 1);
    c->result = upulsar_producer_stop(c->p, c->timeout_ms);
    return NULL;
}

/* the handle counts one flush under way (read under the client lock) */
static int flush_entered(void *a)
{
    upulsar_producer_t *p = a;
    pthread_mutex_lock(&p->client->lock);
    int n = p->flushing;
    pthread_mutex_unlock(&p->client->lock);
    return n == 1;
}

static int stop_claimed(void *a)
{
    upulsar_producer_t *p = a;
    pthread_mutex_lock(&p->client->lock);
    int claimed = atomic_load(&p->closed) && p->client->stopping == 1;
    pthread_mutex_unlock(&p->client->lock);
    return claimed;
}

Test(edges_stop_races, a_flush_waiting_when_stop_begins_is_ended_before_the_free)
{
    upulsar_tb_t *tb;
    upulsar_client_t *client;
    ft_start_broker_and_client(&tb, &client, NULL);
    upulsar_producer_t *p = ft_producer(client, "sr", "stop-race-flush", 0, NULL);
    upulsar_future_t *f[N];
    send_held(tb, p, "stop-race-flush", f);
    call_t fl = {.p = p, .timeout_ms = -1};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, do_flush, &fl), 0);
    cr_assert(ft_wait_for(flush_entered, p), "the flush never began");
    /* the stop's own flush times out (receipts held); then the waiting
     * flush must be ended before the handle is freed */
    upulsar_err_t st = upulsar_producer_stop(p, 1000);
    cr_assert_eq(st, UPULSAR_ERR__TIMED_OUT, "stop: %s", upulsar_err_name(st));
    pthread_join(t, NULL);
    cr_assert_eq(fl.result, UPULSAR_ERR__CLOSED, "flush: %s", upulsar_err_name(fl.result));
    check_all_resolved_once(f);
    ft_stop_client_and_broker(tb, client);
}

static atomic_int resolved;

static void count_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)err, (void)id, (void)opaque;
    atomic_fetch_add(&resolved, 1);
}

Test(edges_stop_races, destroy_waits_for_a_stop_under_way_on_another_thread)
{
    upulsar_tb_t *tb;
    upulsar_client_t *client;
    ft_start_broker_and_client(&tb, &client, NULL);
    upulsar_producer_t *p = ft_producer(client, "sd", "stop-race-destroy", 0, NULL);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "stop-race-destroy"), UPULSAR_OK);
    atomic_store(&resolved, 0);
    upulsar_send_opts_t o = {.cb = count_cb};
    for (int i = 0; i < N; i++)
        cr_assert_eq(upulsar_send(p, "held", 4, &o, NULL), UPULSAR_OK);
    call_t stop = {.p = p, .timeout_ms = 1000};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, do_stop, &stop), 0);
    cr_assert(ft_wait_for(stop_claimed, p), "the stop never began");
    upulsar_client_destroy(client); /* must wait for the stop, not redo it */
    /* every callback ran exactly once, by the time destroy returned */
    cr_assert_eq(atomic_load(&resolved), N);
    pthread_join(t, NULL);
    cr_assert_eq(stop.result, UPULSAR_ERR__TIMED_OUT, "stop: %s",
                 upulsar_err_name(stop.result));
    upulsar_tb_stop(tb);
}

/* Batches a connection's queue still holds when the client is destroyed
 * (sent to a broker that stopped reading, their messages timed out) are
 * freed once the connection goes, although the loops' batch pools are
 * gone by then (a leak under LeakSanitizer otherwise). */
Test(edges_stop_races, batches_queued_on_a_connection_at_destroy_are_freed)
{
    upulsar_tb_t *tb2 = ft_broker();
    const char *ckv[] = {"keepalive.interval.ms", "60000", NULL};
    upulsar_client_t *c2 = ft_client(tb2, ckv);
    const char *kv[] = {"send.timeout.ms", "300", "queue.buffer.bytes", "67108864", NULL};
    upulsar_producer_t *p = ft_producer(c2, "lk", "lk", 0, kv);
    cr_assert_eq(upulsar_tb_freeze(tb2, 1), UPULSAR_OK);
    enum { NQ = 160, SZ = 120000 };
    static char buf[SZ];
    static upulsar_future_t *f[NQ];
    for (int i = 0; i < NQ; i++)
        cr_assert_eq(upulsar_send(p, buf, SZ, NULL, &f[i]), UPULSAR_OK, "%d: %s", i,
                     upulsar_last_error());
    for (int i = 0; i < NQ; i++) {
        cr_assert_neq(upulsar_future_wait(f[i], 30000, NULL), UPULSAR_ERR__PENDING);
        upulsar_future_release(f[i]);
    }
    upulsar_producer_stop(p, 200);
    upulsar_client_destroy(c2);
    cr_assert_eq(upulsar_tb_freeze(tb2, 0), UPULSAR_OK);
    upulsar_tb_stop(tb2);
}
