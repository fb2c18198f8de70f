/* test_fault_intensity.c -- a producer re-created more often than
 * restart.intensity allows within restart.period.ms fails its partition's
 * group, and only that group.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer)
 *
 * Scenario:
 *  1. restart.intensity = 3, restart.period.ms = a day (every attempt of
 *     the test falls in one period, however slow the machine); a producer over 4
 *     partitions; 2 threads send 20,000 keyed messages.
 *  2. When a third of them are stored, every PRODUCER request for
 *     partition 2 starts being refused (ServiceNotReady, retriable) and
 *     partition 2 is unloaded (CLOSE_PRODUCER).
 *  3. The client tries to re-create that producer: the attempt right after
 *     the unload is not counted (an orderly close), three more are allowed
 *     in the period; the next would exceed the intensity, so the group
 *     fails with UPULSAR_ERR__GROUP_FAILED.
 *  4. Every message of partition 2 not acknowledged before fails with
 *     GROUP_FAILED (future and callback); later sends to it are refused
 *     with GROUP_FAILED; group 2 reports FAILED after exactly 4 attempts;
 *     groups 0, 1, 3 stay READY and all their messages succeed.
 *  5. The log check: nothing that failed is stored, no gap, no duplicate;
 *     on partition 2 the acknowledged messages precede the failed ones. */
#include "fault_common.h"

/* restart.period.ms that no test outlives: the restarts are counted, never
 * timed. */
#define A_DAY_MS "86400000"

enum { PARTS = 4, THREADS = 2, TOTAL = 20000 / FT_SCALE, PER_THREAD = TOTAL / THREADS };

typedef struct {
    upulsar_tb_t *tb;
    ft_run_t *run;
    _Atomic int done;
    int fired;
} trigger_t;

static void *trigger(void *a)
{
    trigger_t *tg = a;
    while (!atomic_load(&tg->done)) {
        upulsar_tb_stats_t st;
        upulsar_tb_stats(tg->tb, &st);
        if (st.messages >= TOTAL / 3) {
            upulsar_tb_fail_producers(tg->tb, "intense-partition-2", 1000000, 6);
            upulsar_tb_unload_topic(tg->tb, "intense-partition-2");
            tg->fired = 1;
            ft_run_allow(tg->run, TOTAL);
            return NULL;
        }
        ft_pause_ms(1);
    }
    return NULL;
}

static int group2_failed(void *a)
{
    return ft_group_state(a, 2) == UPULSAR_STATE_FAILED;
}

Test(fault_intensity, exceeding_restart_intensity_fails_only_that_group, .timeout = 60)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    const char *kv[] = {"restart.intensity", "3", "restart.period.ms", A_DAY_MS,
                        "queue.buffer.bytes", "262144", NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "intense", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "fi", "intense", PARTS, kv);
    ft_run_t *run = ft_run_new(p, THREADS, PER_THREAD, 1);
    trigger_t tg = {.tb = tb, .run = run};
    ft_run_allow(run, TOTAL / 2); /* the rest after the fault */
    ft_run_with_fault_thread(run, trigger, &tg, &tg.done);
    cr_assert(tg.fired, "the fault did not happen");
    cr_assert(ft_wait_for(group2_failed, p));
    ft_assert_cbs_done(run);
    upulsar_producer_info_t pi[PARTS];
    size_t n = 0;
    cr_assert_eq(upulsar_producer_list(p, pi, PARTS, &n), UPULSAR_OK);
    for (int g = 0; g < PARTS; g++) {
        cr_assert_eq(ft_group_state(p, g), g == 2 ? UPULSAR_STATE_FAILED : UPULSAR_STATE_READY,
                     "group %d", g);
        cr_assert_eq(pi[g].reconnects, g == 2 ? 4u : 0u, "group %d: %llu attempts", g,
                     (unsigned long long)pi[g].reconnects);
    }
    upulsar_send_opts_t so = {.partition_key = NULL};
    char key[16];
    for (int i = 0; i < 64; i++) {
        snprintf(key, sizeof key, "k%d", i);
        so.partition_key = key;
        upulsar_err_t e = upulsar_send(p, "late:", 5, &so, NULL);
        cr_assert_eq(e, upulsar_producer_partition_for_key(p, key) == 2 ? UPULSAR_ERR__GROUP_FAILED
                                                                        : UPULSAR_OK,
                     "%s: %s", key, upulsar_err_name(e));
    }
    int part_of[64];
    ft_partitions_of_keys(p, part_of);
    upulsar_producer_stop(p, 10000);

    ft_check_opts_t o = {.topic = "intense", .partitions = PARTS, .late_allowed = 1};
    ft_check_res_t res = ft_check(tb, run, &o);
    size_t bad = 0;
    for (int t = 0; t < THREADS; t++) {
        int first_bad = PER_THREAD;
        for (int i = 0; i < PER_THREAD; i++) {
            ft_msg_t *m = ft_msg(run, t, i);
            int part = part_of[i % 64];
            upulsar_err_t e = m->send_err != UPULSAR_OK ? m->send_err : m->err;
            if (part != 2) {
                cr_assert_eq(e, UPULSAR_OK, "%d:%d on partition %d: %s", t, i, part,
                             upulsar_err_name(e));
            } else if (e != UPULSAR_OK) {
                cr_assert_eq(e, UPULSAR_ERR__GROUP_FAILED, "%d:%d: %s", t, i, upulsar_err_name(e));
                bad++;
                if (first_bad == PER_THREAD)
                    first_bad = i;
            } else {
                cr_assert_lt(i, first_bad, "%d:%d succeeded after a failed one", t, i);
            }
        }
    }
    cr_assert_gt(bad, 0);
    cr_log_info("partition 2: %zu messages failed", bad);
    cr_assert_eq(res.ok + res.failed + atomic_load(&run->refused), (size_t)TOTAL);
    ft_run_free(run);
    ft_stop_client_and_broker(tb, client);
}

typedef struct {
    upulsar_tb_t *tb;
    ft_run_t *run;
    _Atomic int done;
    int unloads;
} unloader_t;

/* Unload partition 1 each time another sixth of the messages is stored. */
static void *unloader(void *a)
{
    unloader_t *u = a;
    uint64_t next = TOTAL / 6;
    while (!atomic_load(&u->done) && u->unloads < 5) {
        upulsar_tb_stats_t st;
        upulsar_tb_stats(u->tb, &st);
        if (st.messages >= next && upulsar_tb_unload_topic(u->tb, "orderly-partition-1") > 0) {
            u->unloads++;
            next += TOTAL / 6;
            ft_run_allow(u->run, u->unloads == 5 ? TOTAL : next + TOTAL / 6);
        } else {
            ft_pause_ms(1);
        }
    }
    ft_run_allow(u->run, TOTAL);
    return NULL;
}

static int five_recreations(void *a)
{
    upulsar_producer_info_t pi[PARTS];
    size_t n = 0;
    return upulsar_producer_list(a, pi, PARTS, &n) == UPULSAR_OK && pi[1].reconnects >= 5 &&
           pi[1].state == UPULSAR_STATE_READY;
}

/* A rolling restart closes producers in order again and again: with
 * restart.intensity = 2, five unloads of one partition in the period do not
 * fail its group, and nothing is lost. */
Test(fault_intensity, orderly_closes_by_the_broker_are_not_restarts, .timeout = 60)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *client = ft_client(tb, NULL);
    const char *kv[] = {"restart.intensity", "2", "restart.period.ms", A_DAY_MS, NULL};
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "orderly", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(client, "fo", "orderly", PARTS, kv);
    ft_run_t *run = ft_run_new(p, THREADS, PER_THREAD, 1);
    unloader_t u = {.tb = tb, .run = run};
    ft_run_allow(run, TOTAL / 3);
    ft_run_with_fault_thread(run, unloader, &u, &u.done);
    cr_assert_eq(u.unloads, 5, "the faults did not happen");
    cr_assert(ft_wait_for(five_recreations, p));
    for (int g = 0; g < PARTS; g++)
        cr_assert_eq(ft_group_state(p, g), UPULSAR_STATE_READY, "group %d", g);
    ft_check_opts_t o = {.topic = "orderly", .partitions = PARTS};
    ft_check_res_t res = ft_stop_and_check(tb, run, &o);
    cr_assert_eq(res.ok, (size_t)TOTAL, "failed: %zu", res.failed);
    ft_run_free(run);
    ft_stop_client_and_broker(tb, client);
}

static uint64_t lookups_of(upulsar_tb_t *tb)
{
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    return st.lookups;
}

/* After an orderly close naming the new owner the first re-creation comes
 * at once, but when it fails (here the topic is moved to a broker that
 * does not answer, named in the CLOSE_PRODUCER) the next attempt backs
 * off. With a backoff no test outlives (see fault_common.h): exactly one
 * attempt -- straight to the dead broker, no lookup -- follows the move,
 * and none in the watchdog passes after it. A client that took the failed
 * attempt for another orderly close would retry in the first of them (it
 * once made ~4400 lookups in 600 ms). */
Test(fault_intensity, failing_recreation_after_an_orderly_close_backs_off, .timeout = 60)
{
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"backoff.initial.ms", FT_NEVER_MS, "backoff.max.ms", FT_NEVER_MS,
                         "stats.interval.ms", "1", NULL};
    upulsar_client_t *client = ft_client(tb, ckv);
    ft_passes_t passes;
    ft_passes_watch(client, &passes);
    const char *kv[] = {"send.timeout.ms", "0", NULL}; /* no mandatory stop */
    upulsar_producer_t *p = ft_producer(client, NULL, "away", 0, kv);
    ft_send_ok(p, NULL);
    /* a port nothing listens on: connections are refused at once */
    char dead[80], where[64];
    int dead_fd = ft_dead_address(where, sizeof where); /* refuses connections */
    snprintf(dead, sizeof dead, "pulsar://%s", where);
    uint64_t before = lookups_of(tb);
    cr_assert_eq(upulsar_tb_move_topic_ex(tb, "away", dead, UPULSAR_TB_MOVE_ASSIGNED), 1);
    ft_reconnects_wait_t one = {p, 1};
    cr_assert(ft_wait_for(ft_backing_off_after, &one), "no failed attempt after the move");
    cr_assert(ft_passes_wait(&passes, FT_PASSES), "the watchdog stopped");
    cr_assert_eq(ft_reconnects(p), 1, "%llu attempts: the failed one did not back off",
                 (unsigned long long)ft_reconnects(p));
    cr_assert_eq(lookups_of(tb) - before, 0, "%llu lookups after the move",
                 (unsigned long long)(lookups_of(tb) - before));
    cr_assert(ft_backing_off_after(&one), "no longer backing off");
    upulsar_producer_stop(p, 1000);
    ft_stop_client_and_broker(tb, client);
    close(dead_fd);
}

/* A lazily started producer that never gets created (every PRODUCER
 * refused) fails its group while a sender waits for room in its full ring
 * (block.if.queue.full): the send that waited is refused or its message
 * fails; none is accepted into the failed producer and left unresolved. */
enum { LAZY_MAX = 4096 };
typedef struct {
    upulsar_producer_t *p;
    upulsar_future_t *f[LAZY_MAX];
    int n;
    upulsar_err_t last;
} lazy_sender_t;

static void *lazy_send(void *a)
{
    lazy_sender_t *s = a;
    static char pl[2000];
    memset(pl, 'x', sizeof pl);
    for (s->n = 0; s->n < LAZY_MAX; s->n++) {
        upulsar_err_t e = upulsar_send(s->p, pl, sizeof pl, NULL, &s->f[s->n]);
        if (e) {
            s->last = e;
            break;
        }
    }
    return NULL;
}

static int group0_failed(void *a) { return ft_group_state(a, 0) == UPULSAR_STATE_FAILED; }

Test(fault_intensity, a_send_waiting_on_a_never_created_producer_is_resolved_when_it_fails,
     .timeout = 60)
{
    upulsar_tb_t *tb = ft_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "nf", 1), UPULSAR_OK);
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"lazy.start.partitions", "true", "restart.intensity", "1",
                        "restart.period.ms", A_DAY_MS, "block.if.queue.full", "true",
                        "queue.buffer.bytes", "65536", "send.timeout.ms", "0", NULL};
    upulsar_producer_t *p = ft_producer(c, "nf", "nf", 0, kv);
    cr_assert_eq(upulsar_tb_fail_producers(tb, "nf-partition-0", 1000000, 6), UPULSAR_OK);
    static lazy_sender_t s;
    s.p = p;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, lazy_send, &s), 0);
    pthread_join(th, NULL); /* the group failed: a send was refused */
    cr_assert(ft_wait_for(group0_failed, p));
    cr_assert_eq(s.last, UPULSAR_ERR__GROUP_FAILED, "%s", upulsar_err_name(s.last));
    /* every accepted message resolves, with the group's failure */
    for (int i = 0; i < s.n; i++) {
        upulsar_err_t e = upulsar_future_wait(s.f[i], 10000, NULL);
        cr_assert_neq(e, UPULSAR_ERR__TIMED_OUT, "message %d of %d accepted is unresolved", i,
                      s.n);
        cr_assert_neq(e, UPULSAR_OK, "message %d stored by a producer never created", i);
        upulsar_future_release(s.f[i]);
    }
    cr_assert_eq(upulsar_producer_flush(p, 10000), UPULSAR_OK);
    upulsar_producer_stop(p, 1000);
    ft_stop_client_and_broker(tb, c);
}

/* An intensity past the 63 counted one by one (70: counted in slices of the
 * period, here all in one) fails the group too, after that many
 * re-creations and not before: it used to never fail (the history held 64
 * restarts). */
Test(fault_intensity, a_large_intensity_still_fails_the_group_after_that_many_restarts,
     .timeout = 120)
{
    upulsar_tb_t *tb = ft_broker();
    const char *ckv[] = {"backoff.initial.ms", "1", "backoff.max.ms", "2", NULL};
    upulsar_client_t *c = ft_client(tb, ckv);
    const char *kv[] = {"restart.intensity", "70", "restart.period.ms", A_DAY_MS, NULL};
    upulsar_producer_t *p = ft_producer(c, "ri", "ri", 0, kv);
    cr_assert_eq(upulsar_tb_fail_producers(tb, "ri", 1000000, 6), UPULSAR_OK);
    int before = upulsar_tb_producer_answers(tb, "ri", NULL, 0);
    cr_assert_geq(upulsar_tb_unload_topic(tb, "ri"), 1);
    cr_assert(ft_wait_for(group0_failed, p), "the group never failed");
    /* the re-creation right after the unload is not counted; then 70 are
     * allowed and the 71st fails the group */
    int attempts = upulsar_tb_producer_answers(tb, "ri", NULL, 0) - before;
    cr_assert_geq(attempts, 71, "failed after %d attempts", attempts);
    cr_assert_leq(attempts, 73, "failed after %d attempts", attempts);
    upulsar_producer_stop(p, 1000);
    ft_stop_client_and_broker(tb, c);
}
