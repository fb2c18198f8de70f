/* test_hot_sleep_wake.c -- the io loop's sleep handshake (ring.h R6). A
 * caller that commits a record while the loop is on its way to sleep
 * either reads that the loop sleeps and wakes it, or the loop sees the
 * record (reserved: committed, or about to be) and does not sleep through
 * it; and the loop's tick, taking an idle producer off its active list,
 * does not miss a record committed meanwhile. No send fences, and the
 * loop sleeps without membarrier: the reservation's locked CAS is the
 * caller's fence.
 *
 * With up_fault_loop_sleep_on set, a sleep of the loop with no batch
 * deadline lasts until something wakes it instead of a tick (10 ms), so a
 * record slept through stays in its ring and its future does not resolve:
 * the sender gives up after FT_WAIT_MS and the test fails saying which.
 * With up_fault_tick_idle_pause the tick lingers between finding a
 * producer idle and taking it off the active list, so that sends land in
 * that window too.
 * Each sender sends one message, polls its future, and sends the next the
 * moment it resolves, or a few microseconds later, which is when the loop,
 * having resolved it, is on its way to sleep; and longer pauses, past a
 * tick now and then, so that producers go idle and are taken off the
 * active list (a tick runs when the loop wakes at least 10 ms after the
 * last one, and finds the other partition's producer idle). Oracle: every
 * message stored exactly once, in order, at the position its future and
 * callback report (ft_check()). */
#include <time.h>

#include "engine.h"
#include "fault.h"
#include "fault_common.h"

TestSuite(hot_sleep_wake, .timeout = 240);

enum { ST_THREADS = 3, ST_PER_THREAD = 6000 / FT_SCALE, ST_PARTS = 2 };

static uint64_t st_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void st_spin_ns(uint64_t ns)
{
    uint64_t end = st_now_ns() + ns;
    while (st_now_ns() < end)
        ;
}

/* The pause after message @p i resolved: on every other message a spin of
 * 0 to 5 us (from @p rng), so that sends land all along the loop's way
 * from the receipt to its sleep; else a yield, tens or hundreds of
 * microseconds, or, now and then, past a tick (the producers go idle and
 * the tick takes them off the loop's active list). */
static void st_pause(int i, uint64_t *rng)
{
    *rng = *rng * 6364136223846793005u + 1442695040888963407u;
    switch (i % 8) {
    case 1:
    case 3:
    case 5:
    case 7:
        st_spin_ns((*rng >> 33) % 5000u);
        break;
    case 2:
        sched_yield();
        break;
    case 4:
        usleep(40);
        break;
    case 6:
        if (i % 128 == 6)
            ft_pause_ms(15);
        else
            usleep(300);
        break;
    default:
        break;
    }
}

static void *st_sender(void *a)
{
    struct ft_sender *s = a;
    ft_run_t *r = s->run;
    char payload[64];
    uint64_t rng = (uint64_t)(uintptr_t)r;
    for (int i = 0; i < r->per_thread; i++) {
        ft_msg_t *m = ft_msg(r, s->t, i);
        memset(payload, 'x', r->payload_len);
        int n = snprintf(payload, sizeof payload, "%d:%d:", s->t, i);
        payload[n] = 'x';
        upulsar_send_opts_t o = {.cb = ft_cb, .opaque = m};
        m->send_err = upulsar_send(r->p, payload, r->payload_len, &o, &m->f);
        if (m->send_err != UPULSAR_OK) {
            ft_run_stuck(r, "sender %d: message %d refused: %s", s->t, i,
                         upulsar_err_name(m->send_err));
            return NULL;
        }
        atomic_fetch_add(&r->sent, 1);
        uint64_t end = ft_now_ms() + FT_WAIT_MS;
        upulsar_msg_id_t id;
        while (upulsar_future_poll(m->f, &id) == UPULSAR_ERR__PENDING) {
            if (ft_now_ms() > end) {
                ft_run_stuck(r, "sender %d: message %d not resolved after %d ms: the loop "
                             "slept through its record",
                             s->t, i, FT_WAIT_MS);
                return NULL;
            }
#if defined(__x86_64__)
            __builtin_ia32_pause();
#endif
        }
        st_pause(i, &rng);
    }
    return NULL;
}

static void st_run(const char *backend)
{
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"io.threads", "1", "io.backend", backend, NULL};
    /* a client (one loop) and a handle per sender: nothing but its own
     * sender wakes a loop, so a record it slept through stays there */
    upulsar_client_t *c[ST_THREADS];
    ft_run_t *r[ST_THREADS];
    up_loop_t *loop[ST_THREADS];
    uint64_t naps0[ST_THREADS], naps = 0;
    char topic[ST_THREADS][32];
    for (int t = 0; t < ST_THREADS; t++) {
        snprintf(topic[t], sizeof topic[t], "sleepwake-%d", t);
        cr_assert_eq(upulsar_tb_set_partitions(tb, topic[t], ST_PARTS), UPULSAR_OK);
        c[t] = ft_client(tb, ckv);
        r[t] = ft_run_new(ft_producer(c[t], NULL, topic[t], 0, NULL), 1, ST_PER_THREAD, 0);
        loop[t] = atomic_load(&r[t]->p->groups)[0].rps[0]->loop;
        naps0[t] = atomic_load(&loop[t]->reserved_naps);
    }
    atomic_store(&up_fault_loop_sleep_on, 1);
    atomic_store(&up_fault_tick_idle_pause, 1);
    for (int t = 0; t < ST_THREADS; t++) {
        r[t]->args[0] = (struct ft_sender){r[t], 0};
        cr_assert_eq(pthread_create(&r[t]->th[0], NULL, st_sender, &r[t]->args[0]), 0);
    }
    for (int t = 0; t < ST_THREADS; t++)
        ft_run_join(r[t]);
    for (int t = 0; t < ST_THREADS; t++)
        cr_assert_eq(ft_collect(r[t]), 0);
    atomic_store(&up_fault_loop_sleep_on, 0);
    atomic_store(&up_fault_tick_idle_pause, 0);

    for (int t = 0; t < ST_THREADS; t++) {
        naps += atomic_load(&loop[t]->reserved_naps) - naps0[t];
        ft_check_res_t res = ft_stop_and_check(
            tb, r[t], &(ft_check_opts_t){.topic = topic[t], .partitions = ST_PARTS});
        cr_assert_eq(res.ok, (size_t)ST_PER_THREAD, "%s: %zu of %d stored and acknowledged",
                     topic[t], res.ok, ST_PER_THREAD);
        ft_run_free(r[t]);
        upulsar_client_destroy(c[t]);
    }
    cr_log_info("%s: %llu sleeps cut short by a record reserved and not committed", backend,
                (unsigned long long)naps);
    upulsar_tb_stop(tb);
}

/* Scenario: 3 senders, each with a client (one io_uring loop) and a
 * handle over 2 partitions of its own, one message at a time. */
Test(hot_sleep_wake, a_commit_racing_the_loop_to_sleep_is_never_slept_through)
{
    st_run("io_uring");
}

/* Scenario: the same with the epoll backend, whose wait ends the same
 * way. */
Test(hot_sleep_wake, the_epoll_loop_never_sleeps_through_a_commit_either)
{
    st_run("epoll");
}
