/* test_fault_exclusive_wait.c -- producers waiting for a WaitForExclusive
 * grant (a wait without timeout) do not hold up anyone else: with more
 * waiting partitions than establish workers, another handle of the same
 * client still starts and sends, and the waiters get the topic once its
 * holder leaves.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include "fault_common.h"

TestSuite(fault_exclusive_wait, .timeout = 60);

enum { PARTS = 6 }; /* more than the establish workers (4) */

typedef struct {
    upulsar_client_t *c;
    upulsar_producer_t *p;
    _Atomic int done;
    upulsar_err_t err;
} waiter_t;

static upulsar_conf_t *with(const char *k1, const char *v1, const char *k2, const char *v2)
{
    const char *kv[] = {k1, v1, k2, v2, NULL};
    return ft_conf(kv);
}

static void *wait_start(void *arg)
{
    waiter_t *w = arg;
    upulsar_conf_t *conf = with("producer.access.mode", "wait_for_exclusive",
                                "producer.properties", "who=waiter");
    w->err = upulsar_producer_start(w->c, NULL, "held", PARTS, conf, &w->p);
    upulsar_conf_destroy(conf);
    atomic_store(&w->done, 1);
    return NULL;
}

typedef struct {
    upulsar_tb_t *tb;
} tb_arg_t;

/* Every partition's broker has the waiter's PRODUCER (answered with
 * producer_ready=false). */
static int all_waiting(void *a)
{
    upulsar_tb_t *tb = ((tb_arg_t *)a)->tb;
    for (int i = 0; i < PARTS; i++) {
        char t[64], md[64] = "";
        snprintf(t, sizeof t, "held-partition-%d", i);
        if (upulsar_tb_producer_metadata(tb, t, md, sizeof md) != UPULSAR_OK ||
            strcmp(md, "who=waiter") != 0)
            return 0;
    }
    return 1;
}

Test(fault_exclusive_wait, waiting_partitions_do_not_block_other_producers)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    /* the topic is held by an exclusive producer of another client */
    upulsar_client_t *holder_client = ft_client(tb, NULL);
    upulsar_conf_t *hconf =
        with("producer.access.mode", "exclusive", "producer.properties", "who=holder");
    upulsar_producer_t *holder = NULL;
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "held", PARTS), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(holder_client, NULL, "held", PARTS, hconf, &holder),
                 UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_conf_destroy(hconf);

    static waiter_t w;
    memset(&w, 0, sizeof w);
    w.c = c;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, wait_start, &w), 0);
    tb_arg_t ta = {tb};
    cr_assert(ft_wait_for(all_waiting, &ta), "the waiter's PRODUCERs never reached the broker");
    cr_assert_eq(atomic_load(&w.done), 0, "wait_for_exclusive returned while the topic is held");

    /* the same client starts and uses another producer meanwhile */
    upulsar_producer_t *other = NULL;
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "elsewhere", 4), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(c, NULL, "elsewhere", 4, NULL, &other), UPULSAR_OK,
                 "%s", upulsar_last_error());
    ft_send_ok(other, NULL);
    cr_assert_eq(atomic_load(&w.done), 0);

    /* the holder leaves: every waiting partition gets the topic */
    cr_assert_eq(upulsar_producer_stop(holder, 5000), UPULSAR_OK);
    pthread_join(th, NULL);
    cr_assert_eq(w.err, UPULSAR_OK, "%s: %s", upulsar_err_name(w.err), upulsar_last_error());
    ft_send_ok(w.p, NULL);
    cr_assert_eq(upulsar_producer_stop(w.p, 5000), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(other, 5000), UPULSAR_OK);
    upulsar_client_destroy(holder_client);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}
