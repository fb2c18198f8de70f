/* test_deploy_async_start.c -- upulsar_producer_start_async(): the call
 * returns before the broker has answered anything, and its callback runs
 * exactly once, on a library thread, with a working handle or with the
 * start's error and no handle; bad arguments fail at once, as with
 * upulsar_producer_start(), and never call back; a client destroyed while a
 * start is under way cancels it (the callback gets CLOSED) and returns.
 *
 * Nothing here measures time: "before the broker answered" is made certain
 * by freezing the test broker (it reads nothing until thawed, and the
 * start's timeouts are far longer than the test), and every wait is a
 * condition with a generous bound that only guards against a hang. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

static void setup(void) { signal(SIGPIPE, SIG_IGN); }
TestSuite(deploy_async_start, .init = setup, .timeout = 180);

/* ---- what the start callback saw ----------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    upulsar_err_t err;
    upulsar_producer_t *producer;
    char detail[512];
    upulsar_err_t stop_in_cb;    /* upulsar_producer_stop() from the callback */
    upulsar_err_t destroy_state; /* upulsar_client_destroy() there: refused */
    int on_caller_thread;
    pthread_t caller;
    upulsar_client_t *client;
} seen_t;

static void seen_init(seen_t *s, upulsar_client_t *c)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->caller = pthread_self();
    s->client = c;
    s->stop_in_cb = UPULSAR_OK;
}

static void seen_fini(seen_t *s)
{
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
}

static void on_started(upulsar_err_t err, upulsar_producer_t *p, void *opaque)
{
    seen_t *s = opaque;
    char detail[512];
    snprintf(detail, sizeof detail, "%s", upulsar_last_error());
    /* a library thread: a stop would wait for it, so it is refused and
     * the producer keeps running */
    upulsar_err_t stop = p ? upulsar_producer_stop(p, 0) : UPULSAR_OK;
    pthread_mutex_lock(&s->mu);
    s->calls++;
    s->err = err;
    s->producer = p;
    snprintf(s->detail, sizeof s->detail, "%s", detail);
    s->stop_in_cb = stop;
    s->on_caller_thread = pthread_equal(pthread_self(), s->caller);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Wait (bounded, against a hang only) until the callback ran once. */
static void wait_called(seen_t *s)
{
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < 1200 && !s->calls; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    int calls = s->calls;
    pthread_mutex_unlock(&s->mu);
    cr_assert_eq(calls, 1, "the start callback never ran");
}

static int calls_of(seen_t *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->calls;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---- clients and brokers ------------------------------------------------- */

static upulsar_tb_t *broker(void)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.ping_interval_ms = 0;
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    return tb;
}

static void set(upulsar_conf_t *c, const char *k, const char *v)
{
    char e[256];
    cr_assert_eq(upulsar_conf_set(c, k, v, e, sizeof e), UPULSAR_CONF_OK, "%s=%s: %s", k, v, e);
}

/* A client of @p url whose start timeouts are @p timeout_ms. */
static upulsar_client_t *client_of(const char *url, const char *timeout_ms)
{
    upulsar_conf_t *cf = upulsar_conf_new();
    set(cf, "service.url", url);
    set(cf, "operation.timeout.ms", timeout_ms);
    set(cf, "connection.timeout.ms", timeout_ms);
    upulsar_client_t *c = NULL;
    cr_assert_eq(upulsar_client_new(cf, &c), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_conf_destroy(cf);
    return c;
}

/* The start timeouts of the cancellation tests: the largest allowed, far
 * beyond the suite's timeout, so a destroy that waited for the start to
 * time out instead of cancelling it fails its test instead of passing. */
#define CANCEL_TIMEOUT_MS "3600000"

/* ---- the tests ------------------------------------------------------------ */

Test(deploy_async_start, returns_before_the_broker_answers_then_calls_back_once_with_a_working_handle)
{
    upulsar_tb_t *tb = broker();
    upulsar_client_t *c = client_of(upulsar_tb_url(tb), "120000");
    const char *topic = "persistent://public/default/async-ok";
    /* the broker reads nothing while frozen: the start cannot get any
     * answer (and its timeouts are far away) until it is thawed; once
     * thawed, the PRODUCER is answered late as well */
    cr_assert_eq(upulsar_tb_freeze(tb, 1), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_delay_producers(tb, topic, 1, 200), UPULSAR_OK);
    seen_t s;
    seen_init(&s, c);
    cr_assert_eq(upulsar_producer_start_async(c, "async-ok", topic, 0, NULL, on_started, &s),
                 UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(calls_of(&s), 0, "the callback ran before the broker answered");
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, topic, &st), UPULSAR_OK);
    cr_assert_eq(st.producers, 0);
    cr_assert_eq(upulsar_tb_freeze(tb, 0), UPULSAR_OK);

    wait_called(&s);
    cr_assert_eq(s.err, UPULSAR_OK, "%s", s.detail);
    cr_assert_not_null(s.producer);
    cr_assert_not(s.on_caller_thread, "the callback ran on the caller's thread");
    cr_assert_eq(s.stop_in_cb, UPULSAR_ERR__STATE, "stop from the callback was not refused");
    cr_assert_eq(upulsar_tb_topic_stats(tb, topic, &st), UPULSAR_OK);
    cr_assert_eq(st.producers, 1, "the producer is not registered with the broker");
    cr_assert_eq(upulsar_producer_partitions(s.producer), 0);

    /* the handle works: a message is stored with its exact bytes */
    const char payload[] = "sent through an asynchronously started producer";
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(s.producer, payload, sizeof payload, NULL, &f), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(f, 60000, NULL), UPULSAR_OK);
    upulsar_future_release(f);
    cr_assert_eq(upulsar_producer_stop(s.producer, 60000), UPULSAR_OK);
    upulsar_tb_snapshot_t *snap = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, topic, &snap), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(snap), 1);
    const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(snap, 0);
    cr_assert_eq(m->payload_len, sizeof payload);
    cr_assert_arr_eq(m->payload, payload, sizeof payload);
    upulsar_tb_snapshot_free(snap);

    upulsar_client_destroy(c);
    cr_assert_eq(calls_of(&s), 1, "the callback ran more than once");
    seen_fini(&s);
    upulsar_tb_stop(tb);
}

Test(deploy_async_start, a_partitioned_topic_gets_every_partition_before_the_callback)
{
    upulsar_tb_t *tb = broker();
    const char *topic = "persistent://public/default/async-parts";
    cr_assert_eq(upulsar_tb_set_partitions(tb, topic, 3), UPULSAR_OK);
    upulsar_client_t *c = client_of(upulsar_tb_url(tb), "120000");
    seen_t s;
    seen_init(&s, c);
    cr_assert_eq(upulsar_producer_start_async(c, NULL, topic, 0, NULL, on_started, &s),
                 UPULSAR_OK, "%s", upulsar_last_error());
    wait_called(&s);
    cr_assert_eq(s.err, UPULSAR_OK, "%s", s.detail);
    cr_assert_eq(upulsar_producer_partitions(s.producer), 3);
    for (int i = 0; i < 3; i++) {
        char pt[128];
        snprintf(pt, sizeof pt, "%s-partition-%d", topic, i);
        upulsar_tb_topic_stats_t st;
        cr_assert_eq(upulsar_tb_topic_stats(tb, pt, &st), UPULSAR_OK);
        cr_assert_eq(st.producers, 1, "%s has no producer when the callback runs", pt);
    }
    /* the client's destroy stops the handle the callback delivered */
    upulsar_client_destroy(c);
    cr_assert_eq(calls_of(&s), 1);
    seen_fini(&s);
    upulsar_tb_stop(tb);
}

Test(deploy_async_start, a_refused_producer_calls_back_once_with_the_brokers_error_and_no_handle)
{
    upulsar_tb_t *tb = broker();
    const char *topic = "persistent://public/default/async-terminated";
    cr_assert_eq(upulsar_tb_fail_producers(tb, topic, 1, 15 /* TopicTerminatedError */),
                 UPULSAR_OK);
    upulsar_client_t *c = client_of(upulsar_tb_url(tb), "120000");
    seen_t s;
    seen_init(&s, c);
    cr_assert_eq(upulsar_producer_start_async(c, NULL, topic, 0, NULL, on_started, &s),
                 UPULSAR_OK, "%s", upulsar_last_error());
    wait_called(&s);
    cr_assert_eq(s.err, UPULSAR_ERR_TOPIC_TERMINATED, "%s: %s", upulsar_err_name(s.err), s.detail);
    cr_assert_null(s.producer);
    cr_assert(strstr(s.detail, "topic terminated"), "detail does not give the refusal: %s",
              s.detail);
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, topic, &st), UPULSAR_OK);
    cr_assert_eq(st.producers, 0);
    upulsar_client_destroy(c);
    cr_assert_eq(calls_of(&s), 1);
    seen_fini(&s);
    upulsar_tb_stop(tb);
}

static void quiet(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)level, (void)line, (void)opaque;
}

/* A port with nothing listening: bound, then closed. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

Test(deploy_async_start, an_unreachable_broker_calls_back_once_with_the_connect_error)
{
    char url[64];
    snprintf(url, sizeof url, "pulsar://127.0.0.1:%d", dead_port());
    upulsar_client_t *c = client_of(url, "300");
    upulsar_client_set_log_cb(c, quiet, NULL); /* each refused attempt is logged */
    seen_t s;
    seen_init(&s, c);
    cr_assert_eq(upulsar_producer_start_async(c, NULL, "async-dead", 0, NULL, on_started, &s),
                 UPULSAR_OK, "%s", upulsar_last_error());
    wait_called(&s);
    cr_assert_eq(s.err, UPULSAR_ERR__CONNECT, "%s: %s", upulsar_err_name(s.err), s.detail);
    cr_assert_null(s.producer);
    cr_assert(strstr(s.detail, "Connection refused"), "%s", s.detail);
    upulsar_client_destroy(c);
    cr_assert_eq(calls_of(&s), 1);
    seen_fini(&s);
}

Test(deploy_async_start, bad_arguments_fail_at_once_and_never_call_back)
{
    upulsar_tb_t *tb = broker();
    upulsar_client_t *c = client_of(upulsar_tb_url(tb), "120000");
    seen_t s;
    seen_init(&s, c);
    cr_assert_eq(upulsar_producer_start_async(NULL, NULL, "t", 0, NULL, on_started, &s),
                 UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_producer_start_async(c, NULL, "t", 0, NULL, NULL, &s),
                 UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_producer_start_async(c, NULL, "t", -1, NULL, on_started, &s),
                 UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_producer_start_async(c, "", "t", 0, NULL, on_started, &s),
                 UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_producer_start_async(c, NULL, "bogus://x/y/z", 0, NULL, on_started, &s),
                 UPULSAR_ERR__INVALID_TOPIC);
    upulsar_conf_t *pc = upulsar_conf_new();
    set(pc, "batching.enabled", "true");
    set(pc, "chunking.enabled", "true");
    cr_assert_eq(upulsar_producer_start_async(c, NULL, "t", 0, pc, on_started, &s),
                 UPULSAR_ERR__INVALID_ARG);
    cr_assert(strstr(upulsar_last_error(), "chunking"), "%s", upulsar_last_error());
    upulsar_conf_destroy(pc);
    /* the same error as the blocking start gives for it */
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(c, NULL, "bogus://x/y/z", 0, NULL, &p),
                 UPULSAR_ERR__INVALID_TOPIC);
    upulsar_client_destroy(c);
    cr_assert_eq(calls_of(&s), 0, "a refused start called back");
    seen_fini(&s);
    upulsar_tb_stop(tb);
}

Test(deploy_async_start, a_client_destroyed_while_a_start_is_pending_cancels_it_cleanly)
{
    upulsar_tb_t *tb = broker();
    upulsar_client_t *c = client_of(upulsar_tb_url(tb), CANCEL_TIMEOUT_MS);
    cr_assert_eq(upulsar_tb_freeze(tb, 1), UPULSAR_OK);
    seen_t s[3];
    for (int i = 0; i < 3; i++) {
        seen_init(&s[i], c);
        char t[64];
        snprintf(t, sizeof t, "async-cancel-%d", i);
        cr_assert_eq(upulsar_producer_start_async(c, NULL, t, 0, NULL, on_started, &s[i]),
                     UPULSAR_OK, "%s", upulsar_last_error());
    }
    /* nothing can have been answered: the broker reads nothing, and the
     * starts' timeouts are far longer than this test */
    for (int i = 0; i < 3; i++)
        cr_assert_eq(calls_of(&s[i]), 0);
    upulsar_client_destroy(c); /* returns only once every callback has */
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(calls_of(&s[i]), 1, "start %d did not call back before destroy returned", i);
        cr_assert_eq(s[i].err, UPULSAR_ERR__CLOSED, "%s: %s", upulsar_err_name(s[i].err),
                     s[i].detail);
        cr_assert_null(s[i].producer);
        seen_fini(&s[i]);
    }
    cr_assert_eq(upulsar_tb_freeze(tb, 0), UPULSAR_OK);
    upulsar_tb_stop(tb);
}

Test(deploy_async_start, a_client_destroyed_while_the_producer_is_being_created_cancels_it)
{
    upulsar_tb_t *tb = broker();
    const char *topic = "persistent://public/default/async-cancel-producer";
    /* the PRODUCER request is held far longer than the test: the start
     * waits for its answer on an establish worker */
    cr_assert_eq(upulsar_tb_delay_producers(tb, topic, 1, 3600000), UPULSAR_OK);
    upulsar_client_t *c = client_of(upulsar_tb_url(tb), CANCEL_TIMEOUT_MS);
    seen_t s;
    seen_init(&s, c);
    cr_assert_eq(upulsar_producer_start_async(c, NULL, topic, 0, NULL, on_started, &s),
                 UPULSAR_OK, "%s", upulsar_last_error());
    int i = 0;
    while (upulsar_tb_producer_requests(tb, topic, NULL, 0) < 1 && i++ < 60000)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    cr_assert_geq(upulsar_tb_producer_requests(tb, topic, NULL, 0), 1, "no PRODUCER arrived");
    cr_assert_eq(calls_of(&s), 0);
    upulsar_client_destroy(c);
    cr_assert_eq(calls_of(&s), 1, "the start did not call back before destroy returned");
    cr_assert_eq(s.err, UPULSAR_ERR__CLOSED, "%s: %s", upulsar_err_name(s.err), s.detail);
    cr_assert_null(s.producer);
    upulsar_tb_topic_stats_t st;
    cr_assert_eq(upulsar_tb_topic_stats(tb, topic, &st), UPULSAR_OK);
    cr_assert_eq(st.producers, 0);
    seen_fini(&s);
    upulsar_tb_stop(tb);
}
