/* test_edges_log_callback.c -- the log callback where it runs on an
 * application thread, or late:
 *  - during upulsar_producer_start(), a failed connection attempt is
 *    logged on the calling (application) thread, inside the start; there a
 *    start, a stop, a flush or a client destroy from the callback is
 *    refused at once (UPULSAR_ERR__STATE), as from a library thread: a
 *    nested start waited for the very connection attempt the thread was
 *    in (forever), and a destroy freed the client under the start;
 *  - lines the log folding held back are delivered by
 *    upulsar_client_destroy(); a callback may then call what callbacks may
 *    call (upulsar_client_metrics_prometheus()) while the client is still
 *    whole.
 * A call that never returns is caught by a hang guard (HANG_GUARD_MS): it
 * decides only "hung", never a pass.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault.h"
#include "fault_common.h"

TestSuite(edges_log_callback, .timeout = 120);

#define HANG_GUARD_MS 20000

typedef struct {
    upulsar_client_t *client;
    _Atomic int calls;          /* nested calls made */
    upulsar_err_t start_err, stop_err, flush_err;
    char start_why[256];
    upulsar_producer_t *p;      /* a producer to stop and flush from the callback */
    _Atomic int done;           /* the outer start returned */
    upulsar_err_t outer;
} nest_t;

static void nest_log(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)level;
    nest_t *n = opaque;
    if (!strstr(line, "connecting to") || atomic_fetch_add(&n->calls, 1) != 0)
        return;
    upulsar_producer_t *p2 = NULL;
    n->start_err = upulsar_producer_start(n->client, NULL, "nested", 0, NULL, &p2);
    snprintf(n->start_why, sizeof n->start_why, "%s", upulsar_last_error());
    if (p2) /* not expected: keep it from leaking */
        upulsar_producer_stop(p2, 1000);
    n->stop_err = upulsar_producer_stop(n->p, 1000);
    n->flush_err = upulsar_producer_flush(n->p, 1000);
    upulsar_client_destroy(n->client); /* refused: nothing happens */
}

static void *outer_start(void *a)
{
    nest_t *n = a;
    upulsar_producer_t *p = NULL;
    n->outer = upulsar_producer_start(n->client, NULL, "unreachable", 0, NULL, &p);
    atomic_store_explicit(&n->done, 1, memory_order_release);
    return NULL;
}

static int outer_done(void *a)
{
    return atomic_load_explicit(&((nest_t *)a)->done, memory_order_acquire);
}

/* Scenario: a client of a working broker with a producer, and a second
 * client whose service URL refuses connections; the second client's log
 * callback, on the first "connecting to ... failed" line (on the thread of
 * its upulsar_producer_start()), starts a producer on it, stops and
 * flushes the working producer and destroys its own client. Each is
 * refused with UPULSAR_ERR__STATE; the outer start fails as it would have
 * (CONNECT), within the hang guard; the working producer still sends. */
Test(edges_log_callback, calls_that_wait_are_refused_from_a_log_callback_on_the_application_thread)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *good = ft_client(tb, NULL);
    static nest_t n;
    memset(&n, 0, sizeof n);
    n.p = ft_producer(good, NULL, "works", 0, NULL);
    const char *kv[] = {"service.url", "pulsar://127.0.0.1:1", "operation.timeout.ms", "1000",
                        "backoff.initial.ms", "50", NULL};
    upulsar_conf_t *conf = ft_conf(kv);
    cr_assert_eq(upulsar_client_new(conf, &n.client), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_conf_destroy(conf);
    cr_assert_eq(upulsar_client_set_log_cb(n.client, nest_log, &n), UPULSAR_OK);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, outer_start, &n), 0);
    uint64_t end = ft_now_ms() + HANG_GUARD_MS;
    while (!outer_done(&n) && ft_now_ms() < end)
        ft_pause_ms(5);
    cr_assert(outer_done(&n), "upulsar_producer_start() hung (a call from its log callback)");
    pthread_join(t, NULL);
    cr_assert_geq(atomic_load(&n.calls), 1, "no connection attempt was logged");
    cr_assert_eq(n.start_err, UPULSAR_ERR__STATE, "nested start: %s (%s)",
                 upulsar_err_name(n.start_err), n.start_why);
    cr_assert(strstr(n.start_why, "upulsar_producer_start") != NULL, "%s", n.start_why);
    cr_assert_eq(n.stop_err, UPULSAR_ERR__STATE, "%s", upulsar_err_name(n.stop_err));
    cr_assert_eq(n.flush_err, UPULSAR_ERR__STATE, "%s", upulsar_err_name(n.flush_err));
    cr_assert_neq(n.outer, UPULSAR_OK);
    upulsar_client_destroy(n.client); /* the client was left whole */
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(n.p, "ok", 2, NULL, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_future_wait(f, 10000, NULL), UPULSAR_OK);
    upulsar_future_release(f);
    cr_assert_eq(upulsar_producer_stop(n.p, 5000), UPULSAR_OK);
    ft_stop_client_and_broker(tb, good);
}

typedef struct {
    upulsar_client_t *client;
    _Atomic int lines, metrics_ok, recreated;
} late_t;

static void late_log(const upulsar_log_record_t *rec, void *opaque)
{
    late_t *l = opaque;
    atomic_fetch_add(&l->lines, 1);
    if (strstr(rec->line, "re-created"))
        atomic_fetch_add(&l->recreated, 1);
    char *text = NULL;
    if (upulsar_client_metrics_prometheus(l->client, &text, NULL) == UPULSAR_OK && text &&
        strstr(text, "upulsar_"))
        atomic_fetch_add(&l->metrics_ok, 1);
    free(text);
}

static int all_ready(void *a)
{
    upulsar_producer_info_t pi[8];
    size_t n = 0;
    upulsar_producer_list(a, pi, 8, &n);
    for (size_t i = 0; i < n; i++)
        if (pi[i].state != UPULSAR_STATE_READY)
            return 0;
    return n == 8;
}

/* Scenario: 8 partitions; their connection drops and each producer is
 * re-created, which logs a line per partition, folded (the first goes
 * out, the others are held back as "and N more" for the fold window,
 * made longer than the test here); the client is destroyed once all are
 * re-created and the watchdog has logged it, while the others are held.
 * The destroy delivers them, and the callback's calls of
 * upulsar_client_metrics_prometheus() read a whole client (they read the
 * connection pool after it was freed, under ASan a use after free, without
 * it a crash). */
Test(edges_log_callback, lines_delivered_by_client_destroy_may_read_the_metrics)
{
    /* a fold window longer than the test's steps take, however loaded
     * the machine: the lines are still held when the destroy comes */
    atomic_store(&up_fault_log_fold_ms, 600000);
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "late-log", 8), UPULSAR_OK);
    static late_t l;
    memset(&l, 0, sizeof l);
    const char *ckv[] = {"stats.interval.ms", "1", NULL}; /* ft_passes_watch() */
    l.client = ft_client(tb, ckv);
    cr_assert_eq(upulsar_client_set_log_record_cb(l.client, late_log, &l), UPULSAR_OK);
    static ft_passes_t passes;
    ft_passes_watch(l.client, &passes);
    upulsar_producer_t *p = ft_producer(l.client, NULL, "late-log", 8, NULL);
    cr_assert_gt(upulsar_tb_drop_connections(tb, NULL), 0);
    uint64_t end = ft_now_ms() + HANG_GUARD_MS;
    while (atomic_load(&l.recreated) == 0 && ft_now_ms() < end)
        ft_pause_ms(1);
    cr_assert_gt(atomic_load(&l.recreated), 0, "no re-creation was logged");
    cr_assert(ft_wait_for(all_ready, p), "the producers were not all re-created");
    /* a producer is READY before the watchdog takes its re-creation's
     * result and logs it: two whole passes later every line is logged */
    cr_assert(ft_passes_wait(&passes, 2), "the watchdog made no pass");
    int before = atomic_load(&l.lines);
    upulsar_client_destroy(l.client); /* stops p, delivers what was held */
    cr_assert_gt(atomic_load(&l.lines), before, "nothing was held back for the destroy");
    cr_assert_eq(atomic_load(&l.metrics_ok), atomic_load(&l.lines));
    upulsar_tb_stop(tb);
}
