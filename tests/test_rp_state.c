/* test_rp_state.c -- the lifecycle of a real producer (src/rp_state.c).
 *
 * the_table_allows_exactly_the_lifecycle_edges: every (from, to) pair of
 *   states is tried; a transition succeeds, and changes the state, exactly
 *   when it is one of the edges listed here (written from the lifecycle,
 *   not copied from the table); a refused one leaves the state as it was.
 *   FAILED and CLOSED have no way out. READY sets the "created once" flag,
 *   which later transitions keep.
 * a_state_outside_the_from_set_is_left_alone: the caller's expected
 *   states are honoured (a CAS from CONNECTING does not move a BACKOFF_NOW).
 * public_states_are_derived_from_the_internal_ones: each internal state
 *   shows as the public state introspection returns.
 * transitions_are_logged_with_their_reason_only_when_asked: with the
 *   transition log on, one debug line per transition and per refusal,
 *   naming both states and the reason; off, none.
 * errors_are_classified_once: transient / refused / terminal, before and
 *   after the first creation, shared and exclusive; transient implies the
 *   public upulsar_err_is_retriable().
 * a_failure_between_the_read_and_the_swap_is_not_overwritten: the
 *   watchdog has read BACKOFF and is about to move the producer to
 *   CONNECTING when the loop fails it (forced with the test hook, every
 *   time): the watchdog's transition is refused, the producer stays FAILED
 *   (a read-then-store would resurrect it).
 * backoff_to_connecting_never_overwrites_failed: the same two transitions
 *   race freely, many times; FAILED always wins.
 * nothing_leaves_failed_under_concurrent_transitions: threads cycling the
 *   producer through CONNECTING, READY and BACKOFF while it fails: after
 *   the failure no transition of any thread succeeds.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "rp_state.h"

TestSuite(rp_state, .timeout = 120);

#define CO UP_RP_CONNECTING
#define RE UP_RP_READY
#define BO UP_RP_BACKOFF
#define FA UP_RP_FAILED
#define CL UP_RP_CLOSED
#define LZ UP_RP_LAZY
#define BN UP_RP_BACKOFF_NOW
#define BG UP_RP_BACKOFF_GRACEFUL
#define CG UP_RP_CLOSING

/* The lifecycle, edge by edge. */
static const struct {
    up_rp_st_t from, to;
} edges[] = {
    /* a lazy producer starts at its first message, or fails with its
     * group, or is stopped */
    {LZ, BN}, {LZ, FA}, {LZ, CG},
    /* a creation attaches, fails, or is closed by the broker meanwhile */
    {CO, RE}, {CO, BO}, {CO, BN}, {CO, BG}, {CO, FA}, {CO, CG},
    /* a working producer loses its connection or is closed by the broker */
    {RE, BO}, {RE, BN}, {RE, BG}, {RE, FA}, {RE, CG},
    /* backing off: the next attempt, or a close by the broker (the later
     * one wins); a plain loss does not erase why the broker closed it */
    {BO, CO}, {BO, BN}, {BO, BG}, {BO, FA}, {BO, CG},
    {BN, CO}, {BN, BG}, {BN, FA}, {BN, CG},
    {BG, CO}, {BG, BN}, {BG, FA}, {BG, CG},
    /* a stop ends closed */
    {CG, CL},
};

static bool is_edge(up_rp_st_t from, up_rp_st_t to)
{
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        if (edges[i].from == from && edges[i].to == to)
            return true;
    return false;
}

/* ---- a producer and a client just big enough for rp_state.c ---- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_lines[16][512];
static int log_levels[16];
static int nlog;

static void on_log(upulsar_log_level_t level, const char *line, void *opaque)
{
    (void)opaque;
    pthread_mutex_lock(&log_mu);
    if (nlog < 16) {
        snprintf(log_lines[nlog], sizeof log_lines[nlog], "%s", line);
        log_levels[nlog] = (int)level;
    }
    nlog++;
    pthread_mutex_unlock(&log_mu);
}

static int log_count(void)
{
    pthread_mutex_lock(&log_mu);
    int n = nlog;
    pthread_mutex_unlock(&log_mu);
    return n;
}

static struct upulsar_client *fake_client(void)
{
    struct upulsar_client *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    pthread_mutex_init(&c->log_lock, NULL);
    cr_assert_eq(upulsar_client_set_log_cb(c, on_log, NULL), UPULSAR_OK);
    return c;
}

static up_rp_t *fake_rp(struct upulsar_client *c, up_rp_st_t st)
{
    up_rp_t *rp = calloc(1, sizeof *rp);
    cr_assert_not_null(rp);
    rp->client = c;
    rp->producer_id = 42;
    snprintf(rp->topic, sizeof rp->topic, "persistent://public/default/st-partition-3");
    up_rp_state_init(rp, st);
    return rp;
}

static void free_client(struct upulsar_client *c)
{
    pthread_mutex_destroy(&c->log_lock);
    free(c);
}

static int word(up_rp_t *rp) { return atomic_load(&rp->state); }

/* ---- the table ---- */

Test(rp_state, the_table_allows_exactly_the_lifecycle_edges)
{
    up_rp_state_debug(0);
    struct upulsar_client *c = fake_client();
    int allowed = 0;
    for (int from = 0; from < UP_RP_NSTATES; from++)
        for (int to = 0; to < UP_RP_NSTATES; to++) {
            up_rp_t *rp = fake_rp(c, (up_rp_st_t)from);
            bool want = is_edge((up_rp_st_t)from, (up_rp_st_t)to);
            bool got = up_rp_transition(rp, UP_RP_ANY, (up_rp_st_t)to, "test");
            cr_assert_eq(got, want, "%s -> %s: %s, expected %s", up_rp_st_name((up_rp_st_t)from),
                         up_rp_st_name((up_rp_st_t)to), got ? "allowed" : "refused",
                         want ? "allowed" : "refused");
            cr_assert_eq(up_rp_allowed((up_rp_st_t)from, (up_rp_st_t)to), want);
            cr_assert_eq(up_rp_st(rp), want ? to : from, "%s -> %s left it in %s",
                         up_rp_st_name((up_rp_st_t)from), up_rp_st_name((up_rp_st_t)to),
                         up_rp_st_name(up_rp_st(rp)));
            cr_assert_eq(up_rp_created(rp), want && to == RE,
                         "the created flag after %s -> %s", up_rp_st_name((up_rp_st_t)from),
                         up_rp_st_name((up_rp_st_t)to));
            allowed += got;
            free(rp);
        }
    cr_assert_eq(allowed, (int)(sizeof edges / sizeof edges[0]));

    /* terminal: nothing leaves FAILED or CLOSED, not even to itself */
    for (int t = FA; t <= CL; t++)
        for (int to = 0; to < UP_RP_NSTATES; to++) {
            up_rp_t *rp = fake_rp(c, (up_rp_st_t)t);
            cr_assert_not(up_rp_transition(rp, UP_RP_ANY, (up_rp_st_t)to, "test"));
            cr_assert_eq(word(rp), t, "%s changed", up_rp_st_name((up_rp_st_t)t));
            free(rp);
        }

    /* a whole life: created once, lost, closed by the broker, re-created,
     * failed; the created flag stays from the first READY on */
    up_rp_t *rp = fake_rp(c, UP_RP_CONNECTING);
    static const up_rp_st_t life[] = {RE, BO, CO, RE, BG, BN, CO, BO, CO, RE, FA};
    for (size_t i = 0; i < sizeof life / sizeof life[0]; i++) {
        cr_assert(up_rp_transition(rp, UP_RP_ANY, life[i], "life"), "step %zu to %s", i,
                  up_rp_st_name(life[i]));
        cr_assert(up_rp_created(rp), "created flag lost at step %zu", i);
    }
    cr_assert_eq(up_rp_st(rp), FA);
    cr_assert_eq(up_rp_public_state(rp), UPULSAR_STATE_FAILED);
    free(rp);
    free_client(c);
    up_rp_state_debug(-1);
}

Test(rp_state, a_state_outside_the_from_set_is_left_alone)
{
    up_rp_state_debug(0);
    struct upulsar_client *c = fake_client();
    /* the attempt at growth failed, but a close meanwhile said why: the
     * CAS from CONNECTING does not touch it */
    up_rp_t *rp = fake_rp(c, UP_RP_BACKOFF_NOW);
    cr_assert_not(up_rp_transition(rp, UP_RP_BIT(UP_RP_CONNECTING), UP_RP_BACKOFF, "test"));
    cr_assert_eq(word(rp), BN);
    /* only a lazy producer is started by a message */
    up_rp_state_init(rp, UP_RP_READY);
    cr_assert_not(up_rp_transition(rp, UP_RP_BIT(UP_RP_LAZY), UP_RP_BACKOFF_NOW, "test"));
    cr_assert_eq(word(rp), RE);
    up_rp_state_init(rp, UP_RP_LAZY);
    cr_assert(up_rp_transition(rp, UP_RP_BIT(UP_RP_LAZY), UP_RP_BACKOFF_NOW, "test"));
    cr_assert_not(up_rp_transition(rp, UP_RP_BIT(UP_RP_LAZY), UP_RP_BACKOFF_NOW, "test"),
                  "a lazy producer started twice");
    /* every BACKOFF state is left for an attempt */
    for (int b = 0; b < UP_RP_NSTATES; b++) {
        up_rp_state_init(rp, (up_rp_st_t)b);
        bool in = (UP_RP_IN_BACKOFF & UP_RP_BIT(b)) != 0;
        cr_assert_eq(up_rp_transition(rp, UP_RP_IN_BACKOFF, UP_RP_CONNECTING, "test"), in,
                     "%s", up_rp_st_name((up_rp_st_t)b));
        cr_assert_eq(word(rp), in ? CO : b);
    }
    free(rp);
    free_client(c);
    up_rp_state_debug(-1);
}

Test(rp_state, public_states_are_derived_from_the_internal_ones)
{
    static const upulsar_producer_state_t want[UP_RP_NSTATES] = {
        [CO] = UPULSAR_STATE_CONNECTING, [RE] = UPULSAR_STATE_READY,
        [BO] = UPULSAR_STATE_BACKOFF,    [FA] = UPULSAR_STATE_FAILED,
        [CL] = UPULSAR_STATE_CLOSED,     [LZ] = UPULSAR_STATE_CONNECTING,
        [BN] = UPULSAR_STATE_BACKOFF,    [BG] = UPULSAR_STATE_BACKOFF,
        [CG] = UPULSAR_STATE_CLOSED,
    };
    for (int s = 0; s < UP_RP_NSTATES; s++) {
        cr_assert_eq(up_rp_public_of((up_rp_st_t)s), want[s], "%s shows as %s",
                     up_rp_st_name((up_rp_st_t)s),
                     upulsar_state_name(up_rp_public_of((up_rp_st_t)s)));
        cr_assert_str_neq(up_rp_st_name((up_rp_st_t)s), "UNKNOWN");
    }
    /* the public values are the first internal ones */
    cr_assert_eq((int)UP_RP_CONNECTING, (int)UPULSAR_STATE_CONNECTING);
    cr_assert_eq((int)UP_RP_READY, (int)UPULSAR_STATE_READY);
    cr_assert_eq((int)UP_RP_BACKOFF, (int)UPULSAR_STATE_BACKOFF);
    cr_assert_eq((int)UP_RP_FAILED, (int)UPULSAR_STATE_FAILED);
    cr_assert_eq((int)UP_RP_CLOSED, (int)UPULSAR_STATE_CLOSED);
}

Test(rp_state, transitions_are_logged_with_their_reason_only_when_asked)
{
    struct upulsar_client *c = fake_client();
    up_rp_t *rp = fake_rp(c, UP_RP_CONNECTING);
    pthread_mutex_lock(&log_mu);
    nlog = 0;
    pthread_mutex_unlock(&log_mu);

    up_rp_state_debug(0);
    cr_assert(up_rp_transition(rp, UP_RP_ANY, UP_RP_READY, "attached"));
    cr_assert_not(up_rp_transition(rp, UP_RP_ANY, UP_RP_LAZY, "nonsense"));
    cr_assert_eq(log_count(), 0, "logged with the transition log off");

    up_rp_state_debug(1);
    cr_assert(up_rp_transition(rp, UP_RP_ANY, UP_RP_BACKOFF_GRACEFUL, "closed by the broker"));
    cr_assert_eq(log_count(), 1);
    cr_assert_eq(log_levels[0], 7, "not at the debug level");
    cr_assert(strstr(log_lines[0], "READY -> BACKOFF_GRACEFUL"), "%s", log_lines[0]);
    cr_assert(strstr(log_lines[0], "closed by the broker"), "%s", log_lines[0]);
    cr_assert(strstr(log_lines[0], "st-partition-3"), "%s", log_lines[0]);
    cr_assert_null(strstr(log_lines[0], "refused"), "%s", log_lines[0]);

    cr_assert_not(up_rp_transition(rp, UP_RP_ANY, UP_RP_BACKOFF, "connection lost"));
    cr_assert_eq(log_count(), 2);
    cr_assert(strstr(log_lines[1], "BACKOFF_GRACEFUL -> BACKOFF refused"), "%s", log_lines[1]);
    cr_assert(strstr(log_lines[1], "connection lost"), "%s", log_lines[1]);

    /* not in the expected states: nothing to log, nothing changed */
    cr_assert_not(up_rp_transition(rp, UP_RP_BIT(UP_RP_CONNECTING), UP_RP_BACKOFF, "late"));
    cr_assert_eq(log_count(), 2);
    cr_assert_eq(up_rp_st(rp), BG);
    up_rp_state_debug(-1);
    free(rp);
    free_client(c);
}

/* ---- the classification ---- */

Test(rp_state, errors_are_classified_once)
{
    enum { T = UP_ERR_CLASS_TRANSIENT, R = UP_ERR_CLASS_REFUSED, X = UP_ERR_CLASS_TERMINAL };
    static const struct {
        upulsar_err_t err;
        int never, created, never_excl, created_excl; /* expected classes */
    } cases[] = {
        {UPULSAR_ERR__TIMED_OUT, T, T, T, T},
        {UPULSAR_ERR__CONNECT, T, T, T, T},
        {UPULSAR_ERR__LOOKUP, T, T, T, T},
        {UPULSAR_ERR__PROTOCOL, T, T, T, T},
        {UPULSAR_ERR_SERVICE_NOT_READY, T, T, T, T},
        {UPULSAR_ERR_TOO_MANY_REQUESTS, T, T, T, T},
        {UPULSAR_ERR_METADATA_ERROR, T, T, T, T},
        /* the backlog quota: hold is waited out by the supervisor only,
         * exception likewise (its messages fail at once elsewhere) */
        {UPULSAR_ERR_PRODUCER_BLOCKED_QUOTA_EXCEEDED_ERROR, R, R, R, R},
        {UPULSAR_ERR_PRODUCER_BLOCKED_QUOTA_EXCEEDED_EXCEPTION, R, R, R, R},
        /* ends a producer whatever its past */
        {UPULSAR_ERR_PRODUCER_FENCED, X, X, X, X},
        {UPULSAR_ERR_TOPIC_TERMINATED, X, X, X, X},
        /* another producer holds the topic: a name clash in Shared mode */
        {UPULSAR_ERR_PRODUCER_BUSY, R, R, X, X},
        /* wrong from the start, or a passing refusal once it worked */
        {UPULSAR_ERR_AUTHENTICATION_ERROR, X, R, X, R},
        {UPULSAR_ERR_AUTHORIZATION_ERROR, X, R, X, R},
        {UPULSAR_ERR_TOPIC_NOT_FOUND, X, R, X, R},
        {UPULSAR_ERR_INVALID_TOPIC_NAME, X, R, X, R},
        {UPULSAR_ERR_INCOMPATIBLE_SCHEMA, X, R, X, R},
        /* neither transient nor terminal */
        {UPULSAR_ERR_NOT_ALLOWED, R, R, R, R},
        {UPULSAR_ERR__CLOSED, R, R, R, R},
        {UPULSAR_ERR__NOMEM, R, R, R, R},
    };
    cr_assert_eq(up_err_class(UPULSAR_OK, false, false), UP_ERR_CLASS_NONE);
    cr_assert_eq(up_err_class(UPULSAR_OK, true, true), UP_ERR_CLASS_NONE);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        upulsar_err_t e = cases[i].err;
        cr_assert_eq(up_err_class(e, false, false), cases[i].never, "%s never created",
                     upulsar_err_name(e));
        cr_assert_eq(up_err_class(e, true, false), cases[i].created, "%s created",
                     upulsar_err_name(e));
        cr_assert_eq(up_err_class(e, false, true), cases[i].never_excl,
                     "%s never created, exclusive", upulsar_err_name(e));
        cr_assert_eq(up_err_class(e, true, true), cases[i].created_excl, "%s created, exclusive",
                     upulsar_err_name(e));
    }
    /* over every code: transient is retriable for the application too, and
     * nothing retriable is terminal */
    for (int e = -200; e <= 200; e++)
        for (int k = 0; k < 4; k++) {
            up_err_class_t cl = up_err_class((upulsar_err_t)e, k & 1, k & 2);
            if (cl == UP_ERR_CLASS_TRANSIENT)
                cr_assert(upulsar_err_is_retriable((upulsar_err_t)e), "%d", e);
            if (upulsar_err_is_retriable((upulsar_err_t)e))
                cr_assert_neq(cl, UP_ERR_CLASS_TERMINAL, "%d", e);
            if (e != 0)
                cr_assert_neq(cl, UP_ERR_CLASS_NONE, "%d", e);
        }
}

/* ---- races ---- */

/* The watchdog thread, paused by the hook between its read and its swap
 * until the loop thread has failed the producer. */
static _Thread_local bool pause_here;
static atomic_int read_done, fail_done;

static void pause_hook(up_rp_t *rp)
{
    (void)rp;
    if (!pause_here)
        return;
    pause_here = false; /* once: the retry after the failed swap goes on */
    atomic_store(&read_done, 1);
    for (long spins = 0; !atomic_load(&fail_done) && spins < 100000000L; spins++)
        sched_yield();
}

typedef struct {
    up_rp_t *rp;
    bool moved;
} paused_t;

static void *paused_watchdog(void *a)
{
    paused_t *p = a;
    pause_here = true;
    p->moved = up_rp_transition(p->rp, UP_RP_IN_BACKOFF, UP_RP_CONNECTING, "attempt due");
    return NULL;
}

Test(rp_state, a_failure_between_the_read_and_the_swap_is_not_overwritten)
{
    up_rp_state_debug(0);
    struct upulsar_client *c = fake_client();
    static const up_rp_st_t from[] = {UP_RP_BACKOFF, UP_RP_BACKOFF_NOW, UP_RP_BACKOFF_GRACEFUL};
    for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
        up_rp_t *rp = fake_rp(c, from[i]);
        atomic_store(&read_done, 0);
        atomic_store(&fail_done, 0);
        atomic_store(&up_rp_state_test_hook, pause_hook);
        paused_t p = {.rp = rp};
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, paused_watchdog, &p), 0);
        for (long spins = 0; !atomic_load(&read_done) && spins < 100000000L; spins++)
            sched_yield();
        cr_assert(atomic_load(&read_done), "the watchdog never reached its swap");
        /* the loop thread (here) fails it meanwhile */
        bool failed = up_rp_transition(rp, UP_RP_ANY, UP_RP_FAILED, "terminal SEND_ERROR");
        atomic_store(&fail_done, 1);
        pthread_join(t, NULL);
        atomic_store(&up_rp_state_test_hook, NULL);
        cr_assert(failed, "the failure was refused");
        cr_assert_not(p.moved, "%s: the watchdog moved a failed producer",
                      up_rp_st_name(from[i]));
        cr_assert_eq(up_rp_st(rp), UP_RP_FAILED, "%s: ended in %s", up_rp_st_name(from[i]),
                     up_rp_st_name(up_rp_st(rp)));
        free(rp);
    }
    free_client(c);
    up_rp_state_debug(-1);
}

enum { RACE_ROUNDS = 10000 };

typedef struct {
    up_rp_t *rp;
    pthread_barrier_t *bar;
    int rounds;
    bool won[RACE_ROUNDS];
} racer_t;

static void *watchdog_racer(void *a)
{
    racer_t *r = a;
    for (int i = 0; i < r->rounds; i++) {
        pthread_barrier_wait(r->bar);
        r->won[i] = up_rp_transition(r->rp, UP_RP_IN_BACKOFF, UP_RP_CONNECTING, "attempt due");
        pthread_barrier_wait(r->bar);
    }
    return NULL;
}

static void *loop_racer(void *a)
{
    racer_t *r = a;
    for (int i = 0; i < r->rounds; i++) {
        pthread_barrier_wait(r->bar);
        r->won[i] = up_rp_transition(r->rp, UP_RP_ANY, UP_RP_FAILED, "terminal SEND_ERROR");
        pthread_barrier_wait(r->bar);
    }
    return NULL;
}

Test(rp_state, backoff_to_connecting_never_overwrites_failed)
{
    up_rp_state_debug(0);
    struct upulsar_client *c = fake_client();
    up_rp_t *rp = fake_rp(c, UP_RP_BACKOFF);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 3);
    racer_t *wd = calloc(1, sizeof *wd), *lp = calloc(1, sizeof *lp);
    cr_assert(wd && lp);
    *wd = (racer_t){.rp = rp, .bar = &bar, .rounds = RACE_ROUNDS};
    *lp = (racer_t){.rp = rp, .bar = &bar, .rounds = RACE_ROUNDS};
    pthread_t tw, tl;
    cr_assert_eq(pthread_create(&tw, NULL, watchdog_racer, wd), 0);
    cr_assert_eq(pthread_create(&tl, NULL, loop_racer, lp), 0);
    int bad = -1, wd_won = 0;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        /* alternately from plain BACKOFF and from a close by the broker */
        up_rp_state_init(rp, i & 1 ? UP_RP_BACKOFF_GRACEFUL : UP_RP_BACKOFF);
        pthread_barrier_wait(&bar);
        pthread_barrier_wait(&bar);
        if (bad < 0 && (up_rp_st(rp) != UP_RP_FAILED || !lp->won[i]))
            bad = i;
        wd_won += wd->won[i];
    }
    pthread_join(tw, NULL);
    pthread_join(tl, NULL);
    cr_assert_lt(bad, 0, "round %d ended in %s (the failure %s)", bad, up_rp_st_name(up_rp_st(rp)),
                 bad >= 0 && lp->won[bad] ? "was overwritten" : "was refused");
    cr_log_info("the watchdog moved first in %d of %d rounds", wd_won, RACE_ROUNDS);
    pthread_barrier_destroy(&bar);
    free(wd);
    free(lp);
    free(rp);
    free_client(c);
    up_rp_state_debug(-1);
}

typedef struct {
    up_rp_t *rp;
    atomic_int *failed_done; /* set once the failure's transition returned */
    atomic_int *stop;
    atomic_int readies;      /* READY transitions made */
    int after;               /* transitions that succeeded though FAILED was in */
} cycler_t;

static void *cycle_watchdog(void *a)
{
    cycler_t *cy = a;
    while (!atomic_load(cy->stop)) {
        bool was_failed = atomic_load(cy->failed_done);
        if (up_rp_transition(cy->rp, UP_RP_IN_BACKOFF, UP_RP_CONNECTING, "attempt due") &&
            was_failed)
            cy->after++;
        sched_yield();
    }
    return NULL;
}

static void *cycle_loop(void *a)
{
    cycler_t *cy = a;
    for (unsigned i = 0; !atomic_load(cy->stop); i++) {
        bool was_failed = atomic_load(cy->failed_done);
        bool ok;
        if (up_rp_transition(cy->rp, UP_RP_BIT(UP_RP_CONNECTING), UP_RP_READY, "attached")) {
            atomic_fetch_add(&cy->readies, 1);
            ok = true;
        } else {
            ok = up_rp_transition(cy->rp, UP_RP_ANY,
                                  i % 3 ? UP_RP_BACKOFF : UP_RP_BACKOFF_GRACEFUL, "lost");
        }
        if (ok && was_failed)
            cy->after++;
        sched_yield();
    }
    return NULL;
}

Test(rp_state, nothing_leaves_failed_under_concurrent_transitions)
{
    up_rp_state_debug(0);
    struct upulsar_client *c = fake_client();
    for (int round = 0; round < 10; round++) {
        up_rp_t *rp = fake_rp(c, UP_RP_CONNECTING);
        atomic_int failed_done = 0, stop = 0;
        cycler_t wd = {.rp = rp, .failed_done = &failed_done, .stop = &stop};
        cycler_t lp = {.rp = rp, .failed_done = &failed_done, .stop = &stop};
        pthread_t tw, tl;
        cr_assert_eq(pthread_create(&tw, NULL, cycle_watchdog, &wd), 0);
        cr_assert_eq(pthread_create(&tl, NULL, cycle_loop, &lp), 0);
        /* let them cycle the producer a while (bounded: only a hang guard) */
        for (long spins = 0; atomic_load(&lp.readies) < 5 && spins < 100000000L; spins++)
            sched_yield();
        cr_assert_geq(atomic_load(&lp.readies), 5, "the producer never cycled");
        cr_assert(up_rp_transition(rp, UP_RP_ANY, UP_RP_FAILED, "group failed"),
                  "the failure was refused in %s", up_rp_st_name(up_rp_st(rp)));
        atomic_store(&failed_done, 1);
        /* they go on trying after the failure */
        for (int i = 0; i < 500; i++)
            sched_yield();
        atomic_store(&stop, 1);
        pthread_join(tw, NULL);
        pthread_join(tl, NULL);
        cr_assert_eq(wd.after + lp.after, 0, "round %d: %d transitions out of FAILED", round,
                     wd.after + lp.after);
        cr_assert_eq(up_rp_st(rp), UP_RP_FAILED);
        cr_assert(up_rp_created(rp));
        free(rp);
    }
    free_client(c);
    up_rp_state_debug(-1);
}
