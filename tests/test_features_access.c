/* test_features_access.c -- producer.access.mode on the client side: an
 * exclusive producer refused (ProducerBusy injected, or ProducerFenced as
 * Pulsar answers Exclusive against other producers) or fenced fails
 * at once and is not retried; a shared one refused with ProducerBusy is
 * retried (refusals injected with upulsar_tb_fail_producers()); and the
 * test broker's Exclusive, ExclusiveWithFencing and WaitForExclusive. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fault_common.h"

static upulsar_tb_t *tb;
static upulsar_client_t *client;

static void setup(void)
{
    const char *kv[] = {"backoff.initial.ms", "10", "backoff.max.ms", "20", NULL};
    ft_start_broker_and_plain_client(&tb, &client, kv);
}

static void teardown(void) { ft_stop_client_and_broker(tb, client); }

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
    /* the detail names the request, its topic and the broker, and says the
     * refusal once */
    const char *why = upulsar_last_error();
    cr_assert(strstr(why, "PRODUCER for persistent://public/default/busy to 127.0.0.1:"), "%s",
              why);
    cr_assert(strstr(why, "refused: Broker: "), "%s", why);
    const char *es = upulsar_err_str(UPULSAR_ERR_PRODUCER_BUSY) + strlen("Broker: ");
    const char *first = strcasestr(why, es);
    cr_assert(first && !strcasestr(first + 1, es), "%s", why);
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

/* recreate_refused() with 3 refusals: the message sent meanwhile ends
 * with @p want, and @p want_left of the refusals are left unused. */
static void expect_recreation(const char *mode, const char *topic, int err, upulsar_err_t want,
                              int want_left)
{
    upulsar_err_t e;
    int left;
    recreate_refused(mode, topic, err, 3, &e, &left);
    cr_assert_eq(e, want, "got %s", upulsar_err_name(e));
    cr_assert_eq(left, want_left, "retried: %d refusals left of 3", left);
}

Test(features_access, exclusive_busy_on_recreation_is_terminal)
{
    expect_recreation("exclusive", "ex-busy", SE_BUSY, UPULSAR_ERR_PRODUCER_BUSY, 2);
}

Test(features_access, fenced_on_recreation_is_terminal)
{
    expect_recreation("exclusive_with_fencing", "fenced", SE_FENCED, UPULSAR_ERR_PRODUCER_FENCED,
                      2);
}

Test(features_access, shared_busy_on_recreation_is_retried)
{
    expect_recreation("shared", "sh-busy", SE_BUSY, UPULSAR_OK, 0);
}

/* ---- against the test broker's access-mode semantics ---- */

static upulsar_producer_t *start_mode(const char *topic, const char *mode, const char *props,
                                      upulsar_err_t want)
{
    upulsar_conf_t *conf = mode_conf(mode);
    if (props)
        cr_assert_eq(upulsar_conf_set(conf, "producer.properties", props, NULL, 0),
                     UPULSAR_CONF_OK);
    upulsar_producer_t *p = NULL;
    upulsar_err_t e = upulsar_producer_start(client, NULL, topic, 0, conf, &p);
    upulsar_conf_destroy(conf);
    cr_assert_eq(e, want, "%s on %s: got %s", mode, topic, upulsar_err_name(e));
    return p;
}

static upulsar_err_t send_one(upulsar_producer_t *p)
{
    upulsar_future_t *f;
    upulsar_err_t e = upulsar_send(p, "x", 1, NULL, &f);
    if (e)
        return e;
    e = upulsar_future_wait(f, 20000, NULL);
    upulsar_future_release(f);
    return e;
}

Test(features_access, exclusive_refused_while_others_are_connected)
{
    /* Pulsar's answers: Exclusive against any other producer is fenced,
     * Shared against an exclusive holder is busy; neither is retried */
    upulsar_producer_t *a = start_mode("ex", "shared", NULL, UPULSAR_OK);
    start_mode("ex", "exclusive", NULL, UPULSAR_ERR_PRODUCER_FENCED);
    cr_assert_eq(upulsar_producer_stop(a, 5000), UPULSAR_OK);
    upulsar_producer_t *b = start_mode("ex", "exclusive", NULL, UPULSAR_OK);
    start_mode("ex", "shared", NULL, UPULSAR_ERR_PRODUCER_BUSY);
    start_mode("ex", "exclusive", NULL, UPULSAR_ERR_PRODUCER_FENCED);
    cr_assert_eq(send_one(b), UPULSAR_OK);
    /* unloaded, the exclusive producer gets the topic back (same epoch) */
    cr_assert_eq(upulsar_tb_unload_topic(tb, "ex"), 1);
    cr_assert_eq(send_one(b), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(b, 5000), UPULSAR_OK);
}

Test(features_access, fencing_takes_the_topic_and_fences_the_others)
{
    upulsar_producer_t *a = start_mode("fence", "exclusive", NULL, UPULSAR_OK);
    cr_assert_eq(send_one(a), UPULSAR_OK);
    upulsar_producer_t *b = start_mode("fence", "exclusive_with_fencing", NULL, UPULSAR_OK);
    cr_assert_eq(send_one(b), UPULSAR_OK);
    /* a was closed by the broker; its re-creation is refused as fenced, which
     * fails its group rather than being retried */
    cr_assert_eq(send_one(a), UPULSAR_ERR_PRODUCER_FENCED);
    upulsar_group_info_t gi;
    size_t n;
    cr_assert_eq(upulsar_producer_groups(a, &gi, 1, &n), UPULSAR_OK);
    cr_assert_eq(gi.state, UPULSAR_STATE_FAILED);
    cr_assert_eq(send_one(b), UPULSAR_OK);
    upulsar_producer_stop(a, 5000);
    cr_assert_eq(upulsar_producer_stop(b, 5000), UPULSAR_OK);
}

typedef struct {
    upulsar_producer_t *p;
    atomic_int done;
    upulsar_err_t err;
} waiter_t;

static void *wait_start(void *arg)
{
    waiter_t *w = arg;
    upulsar_conf_t *conf = mode_conf("wait_for_exclusive");
    cr_assert_eq(upulsar_conf_set(conf, "producer.properties", "who=waiter", NULL, 0),
                 UPULSAR_CONF_OK);
    w->err = upulsar_producer_start(client, NULL, "waitx", 0, conf, &w->p);
    upulsar_conf_destroy(conf);
    atomic_store(&w->done, 1);
    return NULL;
}

Test(features_access, wait_for_exclusive_waits_for_the_holder_to_leave)
{
    upulsar_producer_t *a = start_mode("waitx", "exclusive", "who=holder", UPULSAR_OK);
    static waiter_t w;
    memset(&w, 0, sizeof w);
    pthread_t th;
    pthread_create(&th, NULL, wait_start, &w);
    /* the broker has the waiter's PRODUCER (and answered producer_ready=false) */
    char md[64] = "";
    for (int i = 0; i < 20000 && strcmp(md, "who=waiter") != 0; i++) {
        cr_assert_eq(upulsar_tb_producer_metadata(tb, "waitx", md, sizeof md), UPULSAR_OK);
        if (strcmp(md, "who=waiter") != 0) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    cr_assert_str_eq(md, "who=waiter");
    cr_assert_eq(atomic_load(&w.done), 0, "wait_for_exclusive returned while the topic is held");
    cr_assert_eq(send_one(a), UPULSAR_OK);
    cr_assert_eq(atomic_load(&w.done), 0);
    cr_assert_eq(upulsar_producer_stop(a, 5000), UPULSAR_OK);
    pthread_join(th, NULL);
    cr_assert_eq(w.err, UPULSAR_OK, "%s", upulsar_err_name(w.err));
    cr_assert_eq(send_one(w.p), UPULSAR_OK);
    start_mode("waitx", "shared", NULL, UPULSAR_ERR_PRODUCER_BUSY);
    cr_assert_eq(upulsar_producer_stop(w.p, 5000), UPULSAR_OK);
}
