/* test_features_access.c -- producer.access.mode on the client side: an
 * exclusive producer refused (ProducerBusy) or fenced (ProducerFenced) fails
 * at once and is not retried; a shared one refused with ProducerBusy is
 * retried. The refusals are injected with upulsar_tb_fail_producers(). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK);
    upulsar_conf_t *conf = upulsar_conf_new();
    cr_assert_eq(upulsar_conf_set(conf, "service.url", upulsar_tb_url(tb), NULL, 0),
                 UPULSAR_CONF_OK);
    cr_assert_eq(upulsar_conf_set(conf, "backoff.initial.ms", "10", NULL, 0), UPULSAR_CONF_OK);
    cr_assert_eq(upulsar_conf_set(conf, "backoff.max.ms", "20", NULL, 0), UPULSAR_CONF_OK);
    cr_assert_eq(upulsar_client_new(conf, &client), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_conf_destroy(conf);
}

static void teardown(void)
{
    upulsar_client_destroy(client);
    upulsar_tb_stop(tb);
}

TestSuite(features_access, .init = setup, .fini = teardown, .timeout = 60);

/* PRODUCER_BUSY (16) and PRODUCER_FENCED (25) as ServerError values */
enum { SE_BUSY = UPULSAR_ERR_PRODUCER_BUSY - UPULSAR_ERR_BROKER_BASE,
       SE_FENCED = UPULSAR_ERR_PRODUCER_FENCED - UPULSAR_ERR_BROKER_BASE };

static upulsar_conf_t *mode_conf(const char *mode)
{
    upulsar_conf_t *conf = upulsar_conf_new();
    cr_assert_eq(upulsar_conf_set(conf, "producer.access.mode", mode, NULL, 0), UPULSAR_CONF_OK);
    return conf;
}

Test(features_access, modes_are_accepted_when_the_topic_is_free)
{
    const char *modes[] = {"shared", "exclusive", "wait_for_exclusive", "exclusive_with_fencing"};
    for (int i = 0; i < 4; i++) {
        upulsar_conf_t *conf = mode_conf(modes[i]);
        char topic[64];
        snprintf(topic, sizeof topic, "free-%d", i);
        upulsar_producer_t *p;
        cr_assert_eq(upulsar_producer_start(client, NULL, topic, 0, conf, &p), UPULSAR_OK,
                     "%s: %s", modes[i], upulsar_last_error());
        upulsar_conf_destroy(conf);
        upulsar_future_t *f;
        cr_assert_eq(upulsar_send(p, "x", 1, NULL, &f), UPULSAR_OK);
        cr_assert_eq(upulsar_future_wait(f, 10000, NULL), UPULSAR_OK);
        upulsar_future_release(f);
        cr_assert_eq(upulsar_producer_stop(p, 5000), UPULSAR_OK);
    }
    upulsar_conf_t *conf = upulsar_conf_new();
    cr_assert_eq(upulsar_conf_set(conf, "producer.access.mode", "exclusive_fenced", NULL, 0),
                 UPULSAR_CONF_INVALID);
    upulsar_conf_destroy(conf);
}

Test(features_access, exclusive_refused_at_start_gets_producer_busy)
{
    upulsar_conf_t *conf = mode_conf("exclusive");
    cr_assert_eq(upulsar_tb_fail_producers(tb, "busy", 1, SE_BUSY), UPULSAR_OK);
    upulsar_producer_t *p;
    cr_assert_eq(upulsar_producer_start(client, NULL, "busy", 0, conf, &p),
                 UPULSAR_ERR_PRODUCER_BUSY);
    upulsar_conf_destroy(conf);
}

/* Unload the topic so the producer is re-created, with @p n refusals
 * queued; returns the group state once the supervisor settled and the
 * refusals left unused. */
static void recreate_refused(const char *mode, const char *topic, int err, int n,
                             upulsar_err_t *send_err, int *left)
{
    upulsar_conf_t *conf = mode_conf(mode);
    upulsar_producer_t *p;
    cr_assert_eq(upulsar_producer_start(client, NULL, topic, 0, conf, &p), UPULSAR_OK);
    upulsar_conf_destroy(conf);
    cr_assert_eq(upulsar_tb_fail_producers(tb, topic, n, err), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_unload_topic(tb, topic), 1);
    /* a message sent now resolves once the producer is back, or fails
     * with the group */
    upulsar_future_t *f;
    upulsar_err_t e = upulsar_send(p, "x", 1, NULL, &f);
    if (e == UPULSAR_OK) {
        e = upulsar_future_wait(f, 20000, NULL);
        upulsar_future_release(f);
    }
    *send_err = e;
    /* what is left of the injected refusals: probe with a fresh producer */
    *left = 0;
    for (int i = 0; i < n + 1; i++) {
        upulsar_producer_t *q;
        upulsar_conf_t *sc = mode_conf("shared");
        upulsar_err_t qe = upulsar_producer_start(client, NULL, topic, 0, sc, &q);
        upulsar_conf_destroy(sc);
        if (qe == UPULSAR_OK) {
            upulsar_producer_stop(q, 5000);
            break;
        }
        (*left)++;
    }
    upulsar_producer_stop(p, 5000);
}

Test(features_access, exclusive_busy_on_recreation_is_terminal)
{
    upulsar_err_t e;
    int left;
    recreate_refused("exclusive", "ex-busy", SE_BUSY, 3, &e, &left);
    cr_assert_eq(e, UPULSAR_ERR_PRODUCER_BUSY, "got %s", upulsar_err_name(e));
    cr_assert_eq(left, 2, "retried: %d refusals left of 3", left);
}

Test(features_access, fenced_on_recreation_is_terminal)
{
    upulsar_err_t e;
    int left;
    recreate_refused("exclusive_with_fencing", "fenced", SE_FENCED, 3, &e, &left);
    cr_assert_eq(e, UPULSAR_ERR_PRODUCER_FENCED, "got %s", upulsar_err_name(e));
    cr_assert_eq(left, 2, "retried: %d refusals left of 3", left);
}

Test(features_access, shared_busy_on_recreation_is_retried)
{
    upulsar_err_t e;
    int left;
    recreate_refused("shared", "sh-busy", SE_BUSY, 3, &e, &left);
    cr_assert_eq(e, UPULSAR_OK, "got %s", upulsar_err_name(e));
    cr_assert_eq(left, 0);
}
