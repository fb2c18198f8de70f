/* partitioned_start.c -- starting a partitioned producer handle: its
 * partition count, groups and real producers (registered on their loops,
 * then created on the brokers), blocking or on a thread of its own
 * (upulsar_producer_start_async), and starting the groups of partitions
 * added later (partitions.update.interval.ms). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "err.h"
#include "rp_state.h"
#include "utf8.h"

/* The longest full topic name: with "-partition-" and any int it still
 * fits the topic buffers of groups and real producers. */
#define TOPIC_MAX UPULSAR_TOPIC_NAME_MAX
_Static_assert(TOPIC_MAX + sizeof "-partition-" + 10 <= sizeof(((up_group_t *)0)->topic) &&
                   sizeof(((up_group_t *)0)->topic) <= sizeof(((up_rp_t *)0)->topic) &&
                   TOPIC_MAX < sizeof(((struct upulsar_producer *)0)->topic),
               "topic buffers too small for UPULSAR_TOPIC_NAME_MAX");

/* ---- loop registration ------------------------------------------------------ */

/* Registering a producer on its loop: the loop's list (loop state) is
 * changed on the loop, and running out of memory there fails the start (or
 * the partition growth) that asked, instead of leaving the producer off its
 * loop. */
typedef struct {
    up_rp_t *rp;
    bool added;
} reg_t;

static void add_rp_task(void *a)
{
    reg_t *r = a;
    r->added = up_loop_add_rp(r->rp->loop, r->rp);
}

static upulsar_err_t loop_register(up_rp_t *rp)
{
    reg_t r = {.rp = rp};
    if (up_loop_call(rp->loop, add_rp_task, &r) == 0 && r.added)
        return UPULSAR_OK;
    return up_seterr(UPULSAR_ERR__NOMEM,
                     "%s: out of memory registering its producer on io thread %d", rp->topic,
                     rp->loop->index);
}

/* ---- start -------------------------------------------------------------------- */

/* Set up group @p g (its real producers, registered with their loops, not
 * yet established), appending them to @p all at *@p nall. On failure the
 * producers created so far are in @p all and the group, for the caller to
 * free. */
static upulsar_err_t group_init(struct upulsar_producer *h, up_group_t *grp, int g,
                                bool partitioned, up_rp_t **all, int *nall)
{
    int k = h->conf.producers_per_partition;
    upulsar_err_t err = UPULSAR_OK;
    grp->partition = partitioned ? g : -1;
    /* h->topic leaves room for "-partition-<any int>" (see TOPIC_MAX) */
    int n = partitioned ? snprintf(grp->topic, sizeof grp->topic, "%s-partition-%d", h->topic, g)
                        : snprintf(grp->topic, sizeof grp->topic, "%s", h->topic);
    if (n < 0 || (size_t)n >= sizeof grp->topic)
        return up_seterr(UPULSAR_ERR__INVALID_TOPIC, "topic name %s-partition-%d is too long",
                         h->topic, g);
    grp->rps = calloc((size_t)k, sizeof *grp->rps);
    if (!grp->rps)
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    for (int i = 0; i < k; i++) {
        /* as the official clients: the given name on every partition
         * topic (the broker keys de-duplication history on it, per topic);
         * several producers of one topic need distinct names, so then each
         * gets its index in the group, the same at every start */
        char name[sizeof ((up_rp_t *)0)->name];
        if (h->base_name[0] && k > 1)
            snprintf(name, sizeof name, "%s-%d", h->base_name, i);
        else
            snprintf(name, sizeof name, "%s", h->base_name);
        up_rp_t *rp = up_rp_new(h, grp->partition, i, grp->topic, name[0] ? name : NULL, &err);
        if (!rp)
            return err;
        grp->rps[grp->nrps++] = rp;
        all[(*nall)++] = rp;
        if ((err = loop_register(rp)))
            return err;
    }
    return UPULSAR_OK;
}

/* The checks a start makes before asking anything (arguments, topic name,
 * conf): a new handle, not yet linked into the client, in *@p hp, its name,
 * topic and conf copied. */
static upulsar_err_t start_prepare(struct upulsar_client *c, const char *name, const char *topic,
                                   int partitions, const upulsar_conf_t *conf,
                                   struct upulsar_producer **hp)
{
    *hp = NULL;
    if (partitions < 0)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "partitions must be >= 0 (0 = ask the broker)");
    if (name && (!*name || strlen(name) > 80))
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "producer name must be 1 to 80 characters");
    if (name && !up_utf8_valid(name, strlen(name)))
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "producer name is not valid UTF-8 (a broker reads names as UTF-8 text)");
    struct upulsar_producer *h = calloc(1, sizeof *h);
    if (!h)
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    static _Atomic uint64_t serials;
    h->client = c;
    h->serial = atomic_fetch_add_explicit(&serials, 1, memory_order_relaxed) + 1;
    atomic_init(&h->wd_dirty, 1);
    /* the client's conf with the producer keys set on @p conf over it (a
     * client key set there to another value is refused); connections take
     * the token from the client's conf, so no copy of it is kept here */
    upulsar_err_t err = up_conf_for_producer(&h->conf, &c->conf, conf);
    up_conf_wipe_secrets(&h->conf);
    if (!err)
        err = up_topic_normalize(topic, h->topic, TOPIC_MAX + 1);
    if (!err) /* here, not only at each creation: lazy producers start later */
        err = up_conf_producer_check(&h->conf, h->topic);
    if (err) {
        free(h);
        return err;
    }
    if (partitions > h->conf.partitions_max) {
        up_seterr(UPULSAR_ERR__INVALID_ARG,
                  "%s: %d partitions given, more than partitions.max=%d (raise it to open them "
                  "all)",
                  h->topic, partitions, h->conf.partitions_max);
        free(h);
        return UPULSAR_ERR__INVALID_ARG;
    }
    if (name)
        snprintf(h->base_name, sizeof h->base_name, "%s", name);
    *hp = h;
    return UPULSAR_OK;
}

/* The blocking part of a start prepared by start_prepare(): the broker's
 * partition count, then every producer, within @p start_by. On success or
 * failure @p h is still the caller's: start_publish() or start_abort().
 * Network waits give up once the calling thread's up_cancel_on() flag is
 * set. */
static upulsar_err_t start_build(struct upulsar_producer *h, int partitions, uint64_t start_by)
{
    struct upulsar_client *c = h->client;
    upulsar_err_t err;
    /* The topic's partition count is the broker's (PARTITIONED_METADATA),
     * as the official clients take it; a count given here is what the
     * caller expects, checked against it: when they differ the broker's
     * wins, with a warning. Routing then agrees with every other client of
     * the topic from the first message, nothing is written to partition
     * topics that do not exist, and a producer restarted after the topic
     * was given more partitions starts with all of them, as a running one
     * follows the growth. */
    int given = partitions;
    {
        uint64_t delay_ms = (uint64_t)c->conf.backoff_initial_ms;
        while ((err = up_partitions(c, h->topic, &partitions)) &&
               up_err_class(err, false, false) == UP_ERR_CLASS_TRANSIENT &&
               up_now_us() + delay_ms * 1000u < start_by) {
            /* in slices, so a cancelled start does not sleep on */
            for (uint64_t left = delay_ms; left > 0 && !up_cancelled();) {
                uint64_t ms = left < 20 ? left : 20;
                struct timespec ts = {0, (long)ms * 1000000L};
                nanosleep(&ts, NULL);
                left -= ms;
            }
            delay_ms = delay_ms * 2 < (uint64_t)c->conf.backoff_max_ms
                           ? delay_ms * 2
                           : (uint64_t)c->conf.backoff_max_ms;
        }
        if (err)
            return err;
    }
    if (given > 0 && given != partitions && partitions > 0)
        up_log(c, UPULSAR_LOG_WARNING,
               "%s: %d partitions given, but the broker reports %d: using the broker's %d",
               h->topic, given, partitions, partitions);
    else if (given > 0 && given != partitions)
        up_log(c, UPULSAR_LOG_WARNING,
               "%s: %d partitions given, but the broker reports a non-partitioned topic "
               "(0 partitions): producing to it as one",
               h->topic, given);
    if (partitions > h->conf.partitions_max)
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "%s has %d partitions, more than partitions.max=%d (raise it to open "
                         "them all)",
                         h->topic, partitions, h->conf.partitions_max);
    h->npart = partitions;
    h->ngroups = partitions > 0 ? partitions : 1;
    int k = h->conf.producers_per_partition;
    h->groups = calloc((size_t)h->ngroups, sizeof *h->groups);
    h->all = calloc((size_t)h->ngroups * (size_t)k, sizeof *h->all);
    if (!h->groups || !h->all)
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    h->groups_cap = h->ngroups;
    h->single_slot = rand() % (h->ngroups * k);
    /* every ring of the handle, also of partitions added later, the size
     * decided now (the round robin's runs follow it, up_rr_route) */
    h->conf.ring_bytes = up_rp_ring_bytes(c, &h->conf, (int64_t)h->ngroups * k);
    for (int g = 0; g < h->ngroups; g++) {
        int nall = h->nall;
        err = group_init(h, &h->groups[g], g, h->npart > 0, h->all, &nall);
        h->nall = nall;
        if (err)
            return err;
    }
    if (h->conf.partitions_update_interval_ms > 0)
        h->next_poll_us = up_now_us() + (uint64_t)h->conf.partitions_update_interval_ms * 1000u;
    /* with lazy.start.partitions, a partition's producers start LAZY
     * (up_rp_new) and are created at their first message */
    bool lazy = h->conf.lazy_start_partitions && h->npart > 0;
    if (!lazy) {
        /* all producers at once, on the establish workers; transient
         * failures (a broker restarting, a topic being moved) are retried
         * within operation.timeout.ms */
        err = up_establish_all(h->all, h->nall, start_by, true);
        if (err)
            return err;
    }
    return UPULSAR_OK;
}

/* Free @p h after start_build() failed with @p err, everything started so
 * far closed again, keeping the calling thread's last error. */
static void start_abort(struct upulsar_producer *h, upulsar_err_t err)
{
    char why[256];
    snprintf(why, sizeof why, "%s", upulsar_last_error());
    up_handle_free(h, up_now_us() + 1000000u);
    up_seterr(err, "%s", why);
}

/* Link @p h, built, into its client's producers (the watchdog's and client
 * destroy's list). (client lock held) */
static void start_link(struct upulsar_producer *h)
{
    struct upulsar_client *c = h->client;
    h->next = c->producers;
    c->producers = h;
}

upulsar_err_t upulsar_producer_start(upulsar_client_t *c, const char *name, const char *topic,
                                     int partitions, const upulsar_conf_t *conf,
                                     upulsar_producer_t **out)
{
    if (!c || !out)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "client and out must not be NULL");
    *out = NULL;
    if (up_thread_role() != UP_THREAD_APP) /* it waits for the loops and workers */
        return up_refuse_in_callback("upulsar_producer_start");
    struct upulsar_producer *h;
    upulsar_err_t err = start_prepare(c, name, topic, partitions, conf, &h);
    if (err || !h) /* h is set exactly when err is OK */
        return err ? err : UPULSAR_ERR__NOMEM;
    err = start_build(h, partitions, up_now_us() + (uint64_t)c->conf.operation_timeout_ms * 1000u);
    if (err) {
        start_abort(h, err);
        return err;
    }
    pthread_mutex_lock(&c->lock);
    start_link(h);
    pthread_mutex_unlock(&c->lock);
    *out = h;
    return UPULSAR_OK;
}

/* ---- partition growth -------------------------------------------------------------- */

/* Start groups for partitions [ngroups, n) and publish them (see struct
 * upulsar_producer for the ordering). The new groups are written in place,
 * past the published counts, while the arrays have room (groups_cap);
 * else into copies of twice the size (at least n), the old arrays retired
 * until the handle is freed: growing one partition at a time retires
 * arrays of about as many entries as the last ones, not n^2 / 2. A new
 * producer that cannot be established yet is left in BACKOFF for the
 * supervisor; messages routed to it wait in its ring. Runs on the
 * partition poller, while the watchdog may fail a group of the array
 * being copied: the copy reads `failed` atomically, and a failure stored in
 * the old array after it was read is not lost for long, since the group's
 * producers are failed as well (fail_group) and the watchdog's next pass
 * fails the group again in the new array (member_failure). */
static void grow(struct upulsar_producer *h, int n)
{
    int oldn = atomic_load_explicit(&h->ngroups, memory_order_relaxed);
    int oldall = atomic_load_explicit(&h->nall, memory_order_relaxed);
    int k = h->conf.producers_per_partition;
    bool in_place = n <= h->groups_cap;
    int cap = h->groups_cap;
    up_group_t *ng = atomic_load_explicit(&h->groups, memory_order_relaxed);
    up_rp_t **na = atomic_load_explicit(&h->all, memory_order_relaxed);
    if (!in_place) {
        cap = h->groups_cap <= INT_MAX / 2 ? 2 * h->groups_cap : INT_MAX;
        if (cap > h->conf.partitions_max)
            cap = h->conf.partitions_max;
        if (cap < n)
            cap = n;
        ng = calloc((size_t)cap, sizeof *ng);
        na = calloc((size_t)cap * (size_t)k, sizeof *na);
        void **nr = realloc(h->retired, (size_t)(h->nretired + 2) * sizeof *nr);
        if (nr)
            h->retired = nr;
        if (!ng || !na || !nr) {
            free(ng);
            free(na);
            up_log(h->client, UPULSAR_LOG_ERR, "%s: out of memory starting partitions %d..%d",
                   h->topic, oldn, n - 1);
            return;
        }
        const up_group_t *og = atomic_load_explicit(&h->groups, memory_order_relaxed);
        for (int g = 0; g < oldn; g++) { /* field by field: failed is atomic */
            memcpy(ng[g].topic, og[g].topic, sizeof ng[g].topic);
            ng[g].partition = og[g].partition;
            ng[g].rps = og[g].rps;
            ng[g].nrps = og[g].nrps;
            atomic_init(&ng[g].failed, atomic_load(&og[g].failed));
        }
        memcpy(na, atomic_load_explicit(&h->all, memory_order_relaxed),
               (size_t)oldall * sizeof *na);
    }
    int nall = oldall;
    for (int g = oldn; g < n; g++) {
        upulsar_err_t err = group_init(h, &ng[g], g, true, na, &nall);
        if (err) {
            up_log(h->client, UPULSAR_LOG_ERR, "%s: cannot start partition %d: %s", h->topic, g,
                   upulsar_last_error());
            up_rps_close(na + oldall, (size_t)(nall - oldall), up_now_us());
            for (int i = oldall; i < nall; i++) {
                up_rp_free(na[i]);
                na[i] = NULL; /* in place: a slot past the published count again */
            }
            for (int j = oldn; j <= g; j++) {
                free(ng[j].rps);
                memset(&ng[j], 0, sizeof ng[j]);
            }
            if (!in_place) {
                free(ng);
                free(na);
            }
            return;
        }
    }
    if (!h->conf.lazy_start_partitions) { /* else LAZY until their first message */
        /* in parallel, one attempt each (deadline 0: bounded by
         * operation.timeout.ms, no retry; lookups batched per broker,
         * PRODUCER requests pipelined); the ones that fail are left to the
         * watchdog's usual re-creation */
        up_establish_all(na + oldall, nall - oldall, 0, false);
        for (int i = oldall; i < nall; i++)
            up_rp_transition(na[i], UP_RP_BIT(UP_RP_CONNECTING), UP_RP_BACKOFF,
                             "its first creation failed: left to the supervisor");
    }
    if (!in_place) {
        h->retired[h->nretired++] = h->groups;
        h->retired[h->nretired++] = h->all;
        atomic_store_explicit(&h->groups, ng, memory_order_release);
        atomic_store_explicit(&h->all, na, memory_order_release);
        h->groups_cap = cap;
    }
    atomic_store_explicit(&h->nall, nall, memory_order_release);
    atomic_store_explicit(&h->ngroups, n, memory_order_release);
    atomic_store_explicit(&h->npart, n, memory_order_release);
    /* the watchdog walks what it can see: a new producer that went to
     * backoff while the others were being created (the broker closed it)
     * raised its flag before the watchdog could see it, and the watchdog
     * may have taken that flag down since; raise it again now that they
     * are all published */
    atomic_store_explicit(&h->wd_dirty, 1, memory_order_release);
    up_watchdog_kick(h->client);
    up_log(h->client, UPULSAR_LOG_INFO, "%s: partitions %d -> %d", h->topic, oldn, n);
}

void up_producer_poll_partitions(struct upulsar_producer *h, uint64_t now)
{
    int iv = h->conf.partitions_update_interval_ms;
    int cur = atomic_load_explicit(&h->npart, memory_order_relaxed);
    if (iv <= 0 || cur == 0 || now < h->next_poll_us)
        return;
    h->next_poll_us = now + (uint64_t)iv * 1000u;
    int n;
    if (up_partitions(h->client, h->topic, &n))
        return; /* try again at the next interval */
    if (n < cur) {
        if (h->shrink_seen != n)
            up_log(h->client, UPULSAR_LOG_WARNING,
                   "%s: the broker reports %d partitions, fewer than %d: "
                   "partitions never shrink, keeping %d",
                   h->topic, n, cur, cur);
        h->shrink_seen = n;
        return;
    }
    if (n > h->conf.partitions_max) {
        if (h->cap_seen != n)
            up_log(h->client, UPULSAR_LOG_WARNING,
                   "%s: the broker reports %d partitions, more than partitions.max=%d: "
                   "keeping %d",
                   h->topic, n, h->conf.partitions_max, cur);
        h->cap_seen = n;
        return;
    }
    if (n > cur)
        grow(h, n);
}

/* ---- start without blocking ------------------------------------------------------ */

/* One upulsar_producer_start_async(): its own thread runs start_build(),
 * then the callback. Listed in c->starts from the call until client
 * destroy, or a later start, joins the thread once it is done. */
struct up_start_job {
    struct up_start_job *next;       /* (client lock) */
    struct upulsar_producer *h;      /* (client lock) the handle being built,
                                        NULL once linked or being freed */
    _Atomic int cancel;              /* set by client destroy: network waits of
                                        the start's thread give up */
    bool done;                       /* (client lock) the callback returned */
    pthread_t thread;                /* (client lock) */
    int partitions;
    uint64_t start_by;
    upulsar_start_cb_t cb;
    void *opaque;
    char topic[sizeof ((struct upulsar_producer *)0)->topic];
};

static void *start_main(void *arg)
{
    struct up_start_job *j = arg;
    struct upulsar_producer *h = j->h; /* only this thread frees it */
    struct upulsar_client *c = h->client;
    /* the callback runs here: what it may call is decided by this role,
     * and a refused call names the thread an establish worker */
    up_thread_set_role(UP_THREAD_WORKER);
    up_cancel_on(&j->cancel);
    upulsar_err_t err = start_build(h, j->partitions, j->start_by);
    pthread_mutex_lock(&c->lock);
    bool cancelled = atomic_load(&j->cancel);
    if (!err && !cancelled)
        start_link(h);
    j->h = NULL;
    pthread_mutex_unlock(&c->lock);
    if (err || cancelled) {
        start_abort(h, err ? err : UPULSAR_ERR__CLOSED);
        if (cancelled)
            err = up_seterr(UPULSAR_ERR__CLOSED,
                            "%s: the client was destroyed while the producer was starting",
                            j->topic);
        h = NULL;
    }
    up_cancel_on(NULL);
    j->cb(err, h, j->opaque);
    pthread_mutex_lock(&c->lock);
    j->done = true;
    pthread_cond_broadcast(&c->wd_cv);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* Join and free the jobs of @p list (whose callbacks have returned). */
static void jobs_join(struct up_start_job *list)
{
    while (list) {
        struct up_start_job *j = list;
        list = j->next;
        pthread_join(j->thread, NULL);
        free(j);
    }
}

/* Take the jobs that are done out of c->starts. (client lock held) */
static struct up_start_job *jobs_take_done(struct upulsar_client *c)
{
    struct up_start_job *done = NULL;
    for (struct up_start_job **pj = &c->starts; *pj;) {
        struct up_start_job *j = *pj;
        if (j->done) {
            *pj = j->next;
            j->next = done;
            done = j;
        } else {
            pj = &j->next;
        }
    }
    return done;
}

upulsar_err_t upulsar_producer_start_async(upulsar_client_t *c, const char *name,
                                           const char *topic, int partitions,
                                           const upulsar_conf_t *conf, upulsar_start_cb_t cb,
                                           void *opaque)
{
    if (!c || !cb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "client and cb must not be NULL");
    if (up_thread_role() != UP_THREAD_APP) /* client destroy would wait for this thread */
        return up_refuse_in_callback("upulsar_producer_start_async");
    struct upulsar_producer *h;
    upulsar_err_t err = start_prepare(c, name, topic, partitions, conf, &h);
    if (err || !h) /* h is set exactly when err is OK */
        return err ? err : UPULSAR_ERR__NOMEM;
    struct up_start_job *j = calloc(1, sizeof *j);
    if (!j) {
        free(h);
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    }
    j->h = h;
    j->partitions = partitions;
    j->start_by = up_now_us() + (uint64_t)c->conf.operation_timeout_ms * 1000u;
    j->cb = cb;
    j->opaque = opaque;
    snprintf(j->topic, sizeof j->topic, "%s", h->topic);
    atomic_init(&j->cancel, 0);
    pthread_mutex_lock(&c->lock);
    struct up_start_job *done = jobs_take_done(c);
    if (c->starts_closed) {
        pthread_mutex_unlock(&c->lock);
        jobs_join(done);
        err = up_seterr(UPULSAR_ERR__CLOSED, "%s: the client is being destroyed", j->topic);
        free(j);
        free(h);
        return err;
    }
    /* created under the lock, so j->thread is written before anyone reads it */
    int e = pthread_create(&j->thread, NULL, start_main, j);
    if (!e) {
        j->next = c->starts;
        c->starts = j;
    }
    pthread_mutex_unlock(&c->lock);
    jobs_join(done);
    if (e) {
        err = up_seterr(UPULSAR_ERR__IO, "%s: cannot create the start's thread: %s", j->topic,
                        strerror(e));
        free(j);
        free(h);
        return err;
    }
    return UPULSAR_OK;
}

void up_starts_cancel_wait(struct upulsar_client *c)
{
    pthread_mutex_lock(&c->lock);
    c->starts_closed = true;
    for (;;) {
        bool pending = false;
        for (struct up_start_job *j = c->starts; j; j = j->next)
            if (!j->done) {
                pending = true;
                atomic_store(&j->cancel, 1);
                if (j->h) { /* its establish attempts on the workers give up too */
                    atomic_store(&j->h->closed, 1);
                    atomic_store(&j->h->freeing, 1);
                }
            }
        if (!pending)
            break;
        pthread_cond_wait(&c->wd_cv, &c->lock);
    }
    struct up_start_job *all = c->starts;
    c->starts = NULL;
    pthread_mutex_unlock(&c->lock);
    jobs_join(all);
}
