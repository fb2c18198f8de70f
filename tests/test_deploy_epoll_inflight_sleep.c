/* test_deploy_epoll_inflight_sleep.c -- an io loop whose producer has
 * messages waiting at max.inflight.batches sleeps until a receipt makes
 * room; it does not spin.
 *
 * The broker withholds receipts, so a producer (one entry per message,
 * max.inflight.batches = INFLIGHT) sends INFLIGHT entries and keeps the
 * rest in its ring. Nothing can happen for it until a receipt comes, so
 * its loop must sleep. The loop thread is found through a delivery
 * callback (callbacks run on the producer's loop); its CPU time is read
 * with the thread's CPU-time clock over a wait of WAIT_MS and compared
 * with the wall time that passed.
 *
 * This is a ratio, not a latency bound, and it has a wide margin on both
 * sides. A sleeping loop wakes for its 10 ms tick and does microseconds
 * of work there: well under 1 % of the wall time, also under sanitizers
 * and on a loaded machine (load only lowers the CPU a thread gets, it
 * never raises it). A spinning loop runs whenever it is scheduled: close
 * to 100 % on an idle machine, and still a large share on a loaded one
 * (with twice as many busy threads as cores it still gets about half).
 * MAX_CPU_PERCENT sits between, far from both; a sleeping loop cannot
 * reach it however slow or busy the machine is.
 *
 * Then the receipts are released: every message is stored once, in send
 * order, with its exact bytes, and every future succeeds. Both io
 * backends are tested. */
#include "fault_common.h"

#include <errno.h>

enum {
    INFLIGHT = 2,      /* max.inflight.batches */
    WAITING = 8,       /* messages left in the ring at the limit */
    TOTAL = 1 + INFLIGHT + WAITING,
    WAIT_MS = 500,     /* the measured wait */
    MAX_CPU_PERCENT = 25,
};

static const char TOPIC[] = "inflight-sleep";

/* the loop thread's CPU-time clock, taken by the first message's callback */
static clockid_t loop_clock;
static atomic_int loop_clock_set;

static void first_cb(upulsar_err_t err, const upulsar_msg_id_t *id, void *opaque)
{
    (void)id;
    (void)opaque;
    if (err)
        return;
    if (pthread_getcpuclockid(pthread_self(), &loop_clock) == 0)
        atomic_store(&loop_clock_set, 1);
}

static int clock_taken(void *a)
{
    (void)a;
    return atomic_load(&loop_clock_set);
}

static uint64_t clock_ns(clockid_t c)
{
    struct timespec ts;
    cr_assert_eq(clock_gettime(c, &ts), 0, "clock_gettime: %s", strerror(errno));
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int receipts_held(void *a)
{
    return upulsar_tb_queued_receipts(a) == (uint64_t)INFLIGHT;
}

static void payload_of(int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "inflight-sleep message %d", i);
}

static void loop_sleeps_at_the_limit(const char *backend)
{
    atomic_store(&loop_clock_set, 0);
    upulsar_tb_t *tb = ft_broker();
    const char *kv[] = {"io.backend", backend, NULL};
    upulsar_conf_t *conf = ft_conf(kv);
    char err[256];
    cr_assert_eq(upulsar_conf_set(conf, "service.url", upulsar_tb_url(tb), err, sizeof err),
                 UPULSAR_CONF_OK, "%s", err);
    upulsar_client_t *client = NULL;
    upulsar_err_t e = upulsar_client_new(conf, &client);
    upulsar_conf_destroy(conf);
    if (e == UPULSAR_ERR__IO && !strcmp(backend, "io_uring")) {
        upulsar_tb_stop(tb);
        cr_skip_test("io_uring is not available here: %s", upulsar_last_error());
    }
    cr_assert_eq(e, UPULSAR_OK, "%s", upulsar_last_error());
    char inflight[16];
    snprintf(inflight, sizeof inflight, "%d", INFLIGHT);
    const char *pkv[] = {"batching.enabled", "false", "max.inflight.batches", inflight, NULL};
    upulsar_producer_t *p = ft_producer(client, NULL, TOPIC, 0, pkv);

    upulsar_future_t *f[TOTAL];
    char buf[64];
    /* message 0: its callback names the loop thread */
    payload_of(0, buf, sizeof buf);
    upulsar_send_opts_t o0 = {.cb = first_cb};
    cr_assert_eq(upulsar_send(p, buf, strlen(buf), &o0, &f[0]), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_future_wait(f[0], FT_WAIT_MS, NULL), UPULSAR_OK, "%s",
                 upulsar_future_error_detail(f[0]));
    /* the future may resolve before its callback has run */
    cr_assert(ft_wait_for(clock_taken, NULL), "no CPU clock for the loop thread");

    /* the limit: INFLIGHT entries sent, their receipts held, the rest wait */
    cr_assert_eq(upulsar_tb_hold_receipts(tb, TOPIC), UPULSAR_OK);
    for (int i = 1; i < TOTAL; i++) {
        payload_of(i, buf, sizeof buf);
        cr_assert_eq(upulsar_send(p, buf, strlen(buf), NULL, &f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    cr_assert(ft_wait_for(receipts_held, tb), "receipts held: %llu, want %d",
              (unsigned long long)upulsar_tb_queued_receipts(tb), INFLIGHT);

    uint64_t cpu0 = clock_ns(loop_clock), wall0 = clock_ns(CLOCK_MONOTONIC);
    ft_pause_ms(WAIT_MS);
    uint64_t cpu1 = clock_ns(loop_clock), wall1 = clock_ns(CLOCK_MONOTONIC);

    /* still at the limit through the whole wait: nothing more was sent */
    cr_assert_eq(upulsar_tb_queued_receipts(tb), (uint64_t)INFLIGHT);
    cr_assert_eq(ft_topic_messages(tb, TOPIC), (uint64_t)(1 + INFLIGHT));
    for (int i = 1; i < TOTAL; i++)
        cr_assert_eq(upulsar_future_poll(f[i], NULL), UPULSAR_ERR__PENDING, "message %d", i);
    uint64_t cpu = cpu1 - cpu0, wall = wall1 - wall0;
    cr_assert_lt(cpu * 100, wall * MAX_CPU_PERCENT,
                 "%s: the io loop used %llu us of CPU in %llu us while its producer waited "
                 "at max.inflight.batches=%d (spinning, not sleeping)",
                 backend, (unsigned long long)(cpu / 1000), (unsigned long long)(wall / 1000),
                 INFLIGHT);

    /* a receipt makes room: everything goes, once, in order, unchanged */
    cr_assert_eq(upulsar_tb_release_receipts(tb, TOPIC), UPULSAR_OK);
    for (int i = 1; i < TOTAL; i++)
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, NULL), UPULSAR_OK, "message %d: %s", i,
                     upulsar_future_error_detail(f[i]));
    upulsar_tb_snapshot_t *s = NULL;
    cr_assert_eq(upulsar_tb_snapshot(tb, TOPIC, &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), (size_t)TOTAL);
    for (int i = 0; i < TOTAL; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, (size_t)i);
        payload_of(i, buf, sizeof buf);
        cr_assert(m->payload_len == strlen(buf) && !memcmp(m->payload, buf, m->payload_len),
                  "entry %d: %.*s, want %s", i, (int)m->payload_len, (const char *)m->payload,
                  buf);
    }
    upulsar_tb_snapshot_free(s);
    for (int i = 0; i < TOTAL; i++)
        upulsar_future_release(f[i]);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK, "%s", upulsar_last_error());
    ft_stop_client_and_broker(tb, client);
}

/* the tests choose the backend themselves */
static void no_env(void) { unsetenv("UPULSAR_IO_BACKEND"); }

TestSuite(deploy_epoll_inflight_sleep, .init = no_env);

Test(deploy_epoll_inflight_sleep, epoll_loop_sleeps_while_its_producer_waits_at_max_inflight,
     .timeout = 300)
{
    loop_sleeps_at_the_limit("epoll");
}

Test(deploy_epoll_inflight_sleep, io_uring_loop_sleeps_while_its_producer_waits_at_max_inflight,
     .timeout = 300)
{
    loop_sleeps_at_the_limit("io_uring");
}
