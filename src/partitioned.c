/* partitioned.c -- the partitioned producer handle: one producer group per
 * partition, routing, send, flush, stop and introspection. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "err.h"
#include "rp_state.h"
#include "fault.h"
#include "route.h"

/* The longest full topic name: with "-partition-" and any int it still
 * fits the topic buffers of groups and real producers. */
#define TOPIC_MAX UPULSAR_TOPIC_NAME_MAX
_Static_assert(TOPIC_MAX + sizeof "-partition-" + 10 <= sizeof(((up_group_t *)0)->topic) &&
                   sizeof(((up_group_t *)0)->topic) <= sizeof(((up_rp_t *)0)->topic) &&
                   TOPIC_MAX < sizeof(((struct upulsar_producer *)0)->topic),
               "topic buffers too small for UPULSAR_TOPIC_NAME_MAX");

/* ---- loop registration ------------------------------------------------------ */

_Atomic int up_fault_loop_list_nomem;

/* Registering a producer on its loop: the loop's list (loop state) is
 * changed on the loop, but a larger list is allocated by the registering
 * thread first, so running out of memory fails the start (or the partition
 * growth) there instead of leaving the producer off its loop. */
typedef struct {
    up_rp_t *rp;
    up_rp_t **spare; /* a larger list allocated by the caller, or NULL */
    size_t spare_cap;
    size_t need;     /* set by the task: the list is full, this many entries wanted */
    bool added;
} reg_t;

static void add_rp_task(void *a)
{
    reg_t *r = a;
    up_loop_t *l = r->rp->loop;
    if (l->nrps == l->crps) {
        size_t n = l->crps ? l->crps * 2 : 16;
        if (r->spare_cap < n) {
            r->need = n;
            return;
        }
        if (l->nrps)
            memcpy(r->spare, l->rps, l->nrps * sizeof *l->rps);
        up_rp_t **old = l->rps;
        l->rps = r->spare;
        l->crps = r->spare_cap;
        r->spare = old; /* the caller frees the old list */
    }
    l->rps[l->nrps++] = r->rp;
    r->added = true;
}

static upulsar_err_t loop_register(up_rp_t *rp)
{
    reg_t r = {.rp = rp};
    upulsar_err_t err = UPULSAR_OK;
    for (;;) {
        if (up_loop_call(rp->loop, add_rp_task, &r)) {
            err = UPULSAR_ERR__NOMEM;
            break;
        }
        if (r.added)
            break;
        /* the list is full: allocate a larger one here and try again (it
         * may have grown in between: then the task asks again) */
        free(r.spare);
        r.spare = up_fault_hit(&up_fault_loop_list_nomem) ? NULL : malloc(r.need * sizeof *r.spare);
        r.spare_cap = r.spare ? r.need : 0;
        if (!r.spare) {
            err = UPULSAR_ERR__NOMEM;
            break;
        }
    }
    free(r.spare);
    if (err)
        up_seterr(err, "%s: out of memory registering its producer on io thread %d", rp->topic,
                  rp->loop->index);
    return err;
}

/* Closing a producer: fail what is left, ask the broker to close it
 * (CLOSE_PRODUCER, answered by SUCCESS once the broker has finished the
 * writes in progress), then forget it. */
typedef struct {
    up_rp_t *rp;
    up_conn_t *conn; /* referenced while the CLOSE_PRODUCER is in flight */
} shut_t;

static void shutdown_begin(void *a)
{
    shut_t *s = a;
    up_rp_t *rp = s->rp;
    up_rp_transition(rp, UP_RP_ANY, UP_RP_CLOSING, "stopping");
    up_rp_fail_all(rp, UPULSAR_ERR__CLOSED);
    /* also when not READY: a PRODUCER abandoned by stop may still have
     * created it on the broker (closing an unknown id is harmless) */
    if (rp->conn && atomic_load(&rp->conn->state) == UP_CONN_OPEN) {
        up_conn_ref(rp->conn);
        s->conn = rp->conn;
    }
}

static void shutdown_end(void *a)
{
    up_rp_t *rp = ((shut_t *)a)->rp;
    up_loop_t *l = rp->loop;
    if (rp->conn)
        up_rp_detach(rp, false);
    up_rp_transition(rp, UP_RP_BIT(UP_RP_CLOSING), UP_RP_CLOSED, "stopped");
    up_loop_forget_active(rp);
    for (size_t i = 0; i < l->nrps; i++)
        if (l->rps[i] == rp) {
            l->rps[i] = l->rps[--l->nrps];
            break;
        }
}

void up_rp_shutdown(up_rp_t *rp, uint64_t deadline_us)
{
    shut_t s = {rp, NULL};
    up_loop_call(rp->loop, shutdown_begin, &s);
    if (s.conn) {
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandCloseProducer cp = PULSAR__PROTO__COMMAND_CLOSE_PRODUCER__INIT;
        up_rp_close_cmd(rp, &cmd, &cp);
        uint64_t now = up_now_us();
        /* the frame is sent even with no time left; only the wait is skipped */
        int wait_ms = deadline_us > now ? (int)((deadline_us - now) / 1000u) : 0;
        up_cmd_t *resp = NULL;
        up_conn_request(s.conn, &cmd, cp.request_id, wait_ms, &resp, NULL, NULL);
        if (resp)
            pulsar__proto__base_command__free_unpacked(resp, NULL);
        up_conn_unref(s.conn);
    }
    up_loop_call(rp->loop, shutdown_end, &s);
}

/* ---- start -------------------------------------------------------------------- */

static void fail_left_task(void *a)
{
    up_rp_t *rp = a;
    up_rp_transition(rp, UP_RP_ANY, UP_RP_CLOSING, "stopping");
    up_rp_fail_all(rp, UPULSAR_ERR__CLOSED);
}

/* @p close_by: bound of the waits for the brokers' answers to
 * CLOSE_PRODUCER, shared by all producers (a hung broker costs it once, not
 * once per partition) */
static void handle_free(struct upulsar_producer *h, uint64_t close_by)
{
    /* first every producer fails what it still holds, so every future and
     * callback has resolved before any wait for a broker */
    for (int i = 0; i < h->nall; i++)
        up_loop_call(h->all[i]->loop, fail_left_task, h->all[i]);
    for (int i = 0; i < h->nall; i++) {
        up_rp_shutdown(h->all[i], close_by);
        up_rp_free(h->all[i]);
    }
    if (h->groups)
        for (int g = 0; g < h->ngroups; g++)
            free(h->groups[g].rps);
    free(h->groups);
    free(h->all);
    for (int i = 0; i < h->nretired; i++)
        free(h->retired[i]);
    free(h->retired);
    free(h);
}

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
        up_rp_t *rp = up_rp_new(h, grp->partition, i, grp->topic, &err);
        if (!rp)
            return err;
        const char *name = h->base_name[0] ? h->base_name : NULL;
        if (name) {
            /* as the official clients: the given name on every partition
             * topic (the broker keys de-duplication history on it, per
             * topic); several producers of one topic need distinct names,
             * so then each gets its index in the group, the same at every
             * start */
            rp->user_named = true;
            if (k > 1)
                snprintf(rp->name, sizeof rp->name, "%s-%d", name, i);
            else
                snprintf(rp->name, sizeof rp->name, "%s", name);
        }
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
    struct upulsar_producer *h = calloc(1, sizeof *h);
    if (!h)
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    h->client = c;
    atomic_init(&h->wd_dirty, 1);
    if (conf)
        h->conf = *conf;
    else
        up_conf_defaults(&h->conf);
    /* producer keys only: connections take the token from the client's
     * conf, so a conf shared by both leaves no copy of it here */
    up_conf_wipe_secrets(&h->conf);
    upulsar_err_t err = up_topic_normalize(topic, h->topic, TOPIC_MAX + 1);
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
    h->single_slot = rand() % (h->ngroups * k);
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
    handle_free(h, up_now_us() + 1000000u);
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

/* ---- routing -------------------------------------------------------------------- */

/* Routing state of the calling thread: the handle it last sent keyless
 * messages through, that handle's round robin, and the thread's random
 * generator. A thread that alternates between handles starts each one's
 * round robin again (on a random slot) when it comes back to it. */
typedef struct {
    const void *owner;
    up_rr_t rr;
    uint64_t rnd;
} route_tls_t;

static _Thread_local route_tls_t rt;

static uint64_t next_rand(void)
{
    if (!rt.rnd)
        rt.rnd = (uint64_t)(uintptr_t)&rt ^ up_now_us() ^ 0x9e3779b97f4a7c15ull;
    rt.rnd ^= rt.rnd << 13;
    rt.rnd ^= rt.rnd >> 7;
    rt.rnd ^= rt.rnd << 17;
    return rt.rnd;
}

/* Seed for choosing a producer within a group, independent of the
 * partition hash so keys spread over both. */
#define GROUP_SEED 0x2f0e1c3bu

static up_rp_t *route(struct upulsar_producer *h, const char *key, size_t plen,
                      up_group_t **gout)
{
    int k = h->conf.producers_per_partition;
    /* count first, then the array (see struct upulsar_producer) */
    uint32_t ngroups = (uint32_t)atomic_load_explicit(&h->ngroups, memory_order_acquire);
    up_group_t *groups = atomic_load_explicit(&h->groups, memory_order_acquire);
    uint32_t slots = ngroups * (uint32_t)k;
    uint32_t s;
    if (key) {
        size_t len = strlen(key);
        uint32_t g = up_route_key(h->conf.hashing, key, len, ngroups);
        uint32_t i = k > 1 ? (up_murmur3_32(key, len, GROUP_SEED) & 0x7fffffffu) % (uint32_t)k : 0;
        s = g * (uint32_t)k + i;
    } else if (h->conf.routing == UP_ROUTE_SINGLE) {
        s = (uint32_t)h->single_slot;
    } else if (h->conf.routing == UP_ROUTE_RANDOM) {
        s = (uint32_t)(next_rand() % slots);
    } else {
        /* round robin that stays on one producer while its batch fills
         * (see up_rr_route) */
        if (rt.owner != h) {
            rt.owner = h;
            /* the first message moves the cursor on from a random slot */
            rt.rr.cursor = (uint32_t)(next_rand() % slots);
            rt.rr.count = 0;
            rt.rr.bytes = 0;
            rt.rr.moved_us = 0;
        }
        s = up_rr_route(&rt.rr, &h->conf, plen, slots);
    }
    *gout = &groups[s / (uint32_t)k];
    return (*gout)->rps[s % (uint32_t)k];
}

int upulsar_producer_partition_for_key(const upulsar_producer_t *h, const char *key)
{
    if (!h || !key)
        return -1;
    if (h->npart == 0)
        return -1;
    int n = atomic_load_explicit(&((struct upulsar_producer *)h)->ngroups, memory_order_acquire);
    return (int)up_route_key(h->conf.hashing, key, strlen(key), (uint32_t)n);
}

int upulsar_producer_partitions(const upulsar_producer_t *h) { return h ? h->npart : 0; }

/* ---- send ------------------------------------------------------------------------ */

upulsar_err_t upulsar_send(upulsar_producer_t *h, const void *payload, size_t len,
                           const upulsar_send_opts_t *opts, upulsar_future_t **future)
{
    if (future)
        *future = NULL;
    if (!h)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "producer is NULL");
    if (!payload && len)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "payload is NULL with length %zu", len);
    if (atomic_load_explicit(&h->closed, memory_order_relaxed))
        return up_seterr(UPULSAR_ERR__CLOSED, "producer for %s is stopped", h->topic);
    if (opts && (opts->flags & UPULSAR_SEND_NOCOPY) && !opts->free_cb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "UPULSAR_SEND_NOCOPY needs free_cb");
    up_group_t *g;
    up_rp_t *rp = route(h, opts ? opts->partition_key : NULL, len, &g);
    int gf = atomic_load_explicit(&g->failed, memory_order_relaxed);
    if (gf)
        return up_seterr((upulsar_err_t)gf, "%s: partition group failed: %s", g->topic,
                         upulsar_err_str((upulsar_err_t)gf));
    upulsar_err_t err = up_rp_enqueue(rp, payload, len, opts, future);
    if (err == UPULSAR_ERR__QUEUE_FULL && h->conf.block_if_queue_full &&
        up_thread_role() != UP_THREAD_APP) {
        /* in a callback block.if.queue.full does not wait (see upulsar.h,
         * "Callbacks"): say so */
        char why[200];
        snprintf(why, sizeof why, "%s", upulsar_last_error());
        return up_seterr(err, "%s; not waiting for room in a callback (the %s thread running "
                              "it is the one that frees room)",
                         why, up_thread_role_name(up_thread_role()));
    }
    return err;
}

upulsar_err_t upulsar_send_many(upulsar_producer_t *h, const upulsar_msg_t *msgs, size_t n,
                                upulsar_future_t **futures, size_t *accepted)
{
    if (accepted)
        *accepted = 0;
    if (!msgs && n)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "msgs is NULL");
    for (size_t i = 0; i < n; i++) {
        upulsar_err_t err = upulsar_send(h, msgs[i].payload, msgs[i].len, msgs[i].opts,
                                         futures ? &futures[i] : NULL);
        if (err)
            return err;
        if (accepted)
            *accepted = i + 1;
    }
    return UPULSAR_OK;
}

/* ---- flush / stop ------------------------------------------------------------------ */

static upulsar_err_t wait_resolved(struct upulsar_producer *h, int nall, const uint64_t *marks,
                                   uint64_t deadline)
{
    for (int i = 0; i < nall; i++) {
        up_rp_t *rp = h->all[i];
        unsigned spins = 0;
        while (atomic_load_explicit(&rp->resolved_ring_pos, memory_order_acquire) < marks[i]) {
            if (atomic_load(&h->freeing))
                return up_seterr(UPULSAR_ERR__CLOSED, "%s: the producer was stopped during the "
                                 "flush", rp->topic);
            if (up_now_us() > deadline)
                return up_seterr(UPULSAR_ERR__TIMED_OUT, "%s: not all messages resolved in time",
                                 rp->topic);
            atomic_store(&rp->flush_req, 1);
            up_rp_mark_active(rp);
            up_loop_wake(rp->loop);
            if (++spins < 16) {
                sched_yield();
            } else {
                struct timespec ts = {0, 200000};
                nanosleep(&ts, NULL);
            }
        }
    }
    return UPULSAR_OK;
}

static uint64_t deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? UINT64_MAX : up_now_us() + (uint64_t)timeout_ms * 1000u;
}

/* flush without the checks of the public call (stop flushes a handle it
 * has already closed) */
static upulsar_err_t flush_wait(struct upulsar_producer *h, int timeout_ms)
{
    /* producers started by a partition growth after this point hold only
     * messages sent after the call: they are not waited for */
    int nall = atomic_load_explicit(&h->nall, memory_order_acquire);
    uint64_t *marks = malloc((size_t)(nall ? nall : 1) * sizeof *marks);
    if (!marks)
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    for (int i = 0; i < nall; i++) {
        marks[i] = up_ring_head_pos(&h->all[i]->ring);
        atomic_store(&h->all[i]->flush_req, 1);
        up_rp_activate(h->all[i]);
        up_loop_wake(h->all[i]->loop);
    }
    upulsar_err_t err = wait_resolved(h, nall, marks, deadline_of(timeout_ms));
    free(marks);
    return err;
}

/* Stops, flushes and client destroy meet under the client lock:
 *  - a stop claims the handle (closed = 1) and counts itself in
 *    c->stopping, both under the lock, so exactly one thread stops a handle
 *    and client destroy knows which stops are still freeing theirs;
 *  - a flush enters (h->flushing++) under the lock only while the handle is
 *    not claimed; the stop, once its own flush is over, sets freeing (a
 *    flush still waiting gives up with CLOSED) and frees the handle only
 *    after every flush has left (h->flushing == 0);
 *  - every change is followed by a broadcast on c->wd_cv. */
static upulsar_err_t flush_enter(struct upulsar_producer *h)
{
    struct upulsar_client *c = h->client;
    pthread_mutex_lock(&c->lock);
    bool closed = atomic_load(&h->closed) != 0;
    if (!closed)
        h->flushing++;
    pthread_mutex_unlock(&c->lock);
    return closed ? up_seterr(UPULSAR_ERR__CLOSED, "%s: producer is being stopped", h->topic)
                  : UPULSAR_OK;
}

static void flush_leave(struct upulsar_producer *h)
{
    struct upulsar_client *c = h->client;
    pthread_mutex_lock(&c->lock);
    h->flushing--;
    pthread_cond_broadcast(&c->wd_cv);
    pthread_mutex_unlock(&c->lock);
}

upulsar_err_t upulsar_producer_flush(upulsar_producer_t *h, int timeout_ms)
{
    if (!h)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "producer is NULL");
    /* on a library thread the wait would be for the thread itself (the io
     * loop resolves the messages) or hold up re-creations (watchdog) */
    if (up_thread_role() != UP_THREAD_APP)
        return up_refuse_in_callback("upulsar_producer_flush");
    upulsar_err_t err = flush_enter(h);
    if (err)
        return err;
    err = flush_wait(h, timeout_ms);
    flush_leave(h);
    return err;
}

upulsar_err_t upulsar_producer_stop(upulsar_producer_t *h, int timeout_ms)
{
    if (!h)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "producer is NULL");
    /* on the io loop it would wait for itself and free the producer whose
     * messages it is resolving; on the watchdog wait for its own pass */
    if (up_thread_role() != UP_THREAD_APP)
        return up_refuse_in_callback("upulsar_producer_stop");
    struct upulsar_client *c = h->client;
    /* a second stop while this one runs (the handle still exists) is
     * refused; one after this returns uses a freed handle (upulsar.h) */
    pthread_mutex_lock(&c->lock);
    bool claimed = atomic_exchange(&h->closed, 1) != 0;
    if (!claimed)
        c->stopping++;
    pthread_mutex_unlock(&c->lock);
    if (claimed)
        return up_seterr(UPULSAR_ERR__STATE,
                         "%s: upulsar_producer_stop() is already under way for this producer",
                         h->topic);
    return up_producer_stop_claimed(h, timeout_ms);
}

struct upulsar_producer *up_producer_claim_next(struct upulsar_client *c)
{
    pthread_mutex_lock(&c->lock);
    struct upulsar_producer *h;
    for (;;) {
        for (h = c->producers; h && atomic_load(&h->closed); h = h->next)
            ;
        if (h || (!c->producers && !c->stopping))
            break;
        pthread_cond_wait(&c->wd_cv, &c->lock); /* other threads' stops */
    }
    if (h) {
        atomic_store(&h->closed, 1);
        c->stopping++;
    }
    pthread_mutex_unlock(&c->lock);
    return h;
}

upulsar_err_t up_producer_stop_claimed(struct upulsar_producer *h, int timeout_ms)
{
    struct upulsar_client *c = h->client;
    uint64_t stop_by = deadline_of(timeout_ms);
    upulsar_err_t err = flush_wait(h, timeout_ms);
    pthread_mutex_lock(&c->lock);
    /* no watchdog pass over h, no re-creation of its producers, no flush
     * still waiting, from now */
    up_watchdog_forget(h);
    atomic_store(&h->freeing, 1);
    while (c->wd_busy == h || h->establishing || h->flushing)
        pthread_cond_wait(&c->wd_cv, &c->lock);
    for (struct upulsar_producer **pp = &c->producers; *pp; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    pthread_mutex_unlock(&c->lock);
    /* the waits for CLOSE_PRODUCER answers get at most 1 s, and no more
     * than what is left of timeout_ms */
    uint64_t close_by = up_now_us() + 1000000u;
    if (stop_by < close_by)
        close_by = stop_by;
    handle_free(h, close_by); /* fails what is left with CLOSED, closes every producer */
    pthread_mutex_lock(&c->lock);
    c->stopping--;
    pthread_cond_broadcast(&c->wd_cv);
    pthread_mutex_unlock(&c->lock);
    return err;
}

/* ---- introspection ------------------------------------------------------------------ */

static upulsar_producer_state_t worst(upulsar_producer_state_t a, upulsar_producer_state_t b)
{
    static const int rank[] = {[UPULSAR_STATE_READY] = 0, [UPULSAR_STATE_CONNECTING] = 1,
                               [UPULSAR_STATE_BACKOFF] = 2, [UPULSAR_STATE_CLOSED] = 3,
                               [UPULSAR_STATE_FAILED] = 4};
    return rank[a] >= rank[b] ? a : b;
}

upulsar_err_t upulsar_producer_groups(upulsar_producer_t *h, upulsar_group_info_t *out,
                                      size_t max, size_t *count)
{
    if (!h || (!out && max))
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "producer is NULL");
    for (int g = 0; g < h->ngroups && (size_t)g < max; g++) {
        up_group_t *grp = &h->groups[g];
        upulsar_group_info_t *gi = &out[g];
        memset(gi, 0, sizeof *gi);
        snprintf(gi->partition_topic, sizeof gi->partition_topic, "%s", grp->topic);
        gi->partition = grp->partition;
        gi->producers = grp->nrps;
        gi->state = UPULSAR_STATE_READY;
        for (int i = 0; i < grp->nrps; i++)
            gi->state = worst(gi->state, up_rp_public_state(grp->rps[i]));
        if (atomic_load(&grp->failed))
            gi->state = UPULSAR_STATE_FAILED;
    }
    if (count)
        *count = (size_t)h->ngroups;
    return UPULSAR_OK;
}

upulsar_err_t upulsar_producer_list(upulsar_producer_t *h, upulsar_producer_info_t *out,
                                    size_t max, size_t *count)
{
    if (!h || (!out && max))
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "producer is NULL");
    size_t n = 0;
    for (int g = 0; g < h->ngroups; g++)
        for (int i = 0; i < h->groups[g].nrps; i++, n++) {
            if (n >= max)
                continue;
            up_rp_t *rp = h->groups[g].rps[i];
            upulsar_producer_info_t *pi = &out[n];
            memset(pi, 0, sizeof *pi);
            snprintf(pi->name, sizeof pi->name, "%s", rp->name);
            snprintf(pi->partition_topic, sizeof pi->partition_topic, "%s", rp->topic);
            pi->partition = rp->partition;
            pi->index = rp->index;
            pi->state = up_rp_public_state(rp);
            pi->pending = up_stats_pending(rp);
            pi->last_sequence_id = atomic_load(&rp->last_acked_seq);
            pi->reconnects = atomic_load(&rp->reconnects);
            pi->resent_batches = atomic_load(&rp->resent_batches);
            pi->unknown_ids = atomic_load(&rp->unknown_ids);
            pi->timed_out = atomic_load(&rp->timed_out);
            pi->connection = rp->conn_slot;
            pthread_mutex_lock(&rp->broker_lock);
            snprintf(pi->broker, sizeof pi->broker, "%s", rp->broker);
            pthread_mutex_unlock(&rp->broker_lock);
        }
    if (count)
        *count = n;
    return UPULSAR_OK;
}

const char *upulsar_state_name(upulsar_producer_state_t s)
{
    switch (s) {
    case UPULSAR_STATE_CONNECTING: return "CONNECTING";
    case UPULSAR_STATE_READY: return "READY";
    case UPULSAR_STATE_BACKOFF: return "BACKOFF";
    case UPULSAR_STATE_FAILED: return "FAILED";
    case UPULSAR_STATE_CLOSED: return "CLOSED";
    }
    return "UNKNOWN";
}

/* ---- partition growth -------------------------------------------------------------- */

/* Start groups for partitions [ngroups, n): build larger copies of groups
 * and all, establish the new producers, then publish (see struct
 * upulsar_producer for the ordering). A new producer that cannot be
 * established yet is left in BACKOFF for the supervisor; messages routed to
 * it wait in its ring. */
static void grow(struct upulsar_producer *h, int n)
{
    int oldn = atomic_load_explicit(&h->ngroups, memory_order_relaxed);
    int oldall = atomic_load_explicit(&h->nall, memory_order_relaxed);
    int k = h->conf.producers_per_partition;
    up_group_t *ng = calloc((size_t)n, sizeof *ng);
    up_rp_t **na = calloc((size_t)n * (size_t)k, sizeof *na);
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
    memcpy(ng, h->groups, (size_t)oldn * sizeof *ng);
    memcpy(na, h->all, (size_t)oldall * sizeof *na);
    int nall = oldall;
    for (int g = oldn; g < n; g++) {
        upulsar_err_t err = group_init(h, &ng[g], g, true, na, &nall);
        if (err) {
            up_log(h->client, UPULSAR_LOG_ERR, "%s: cannot start partition %d: %s", h->topic, g,
                   upulsar_last_error());
            for (int i = oldall; i < nall; i++) {
                up_rp_shutdown(na[i], up_now_us());
                up_rp_free(na[i]);
            }
            for (int j = oldn; j <= g; j++)
                free(ng[j].rps);
            free(ng);
            free(na);
            return;
        }
    }
    if (!h->conf.lazy_start_partitions) { /* else LAZY until their first message */
        /* in parallel, one attempt each (deadline 0: bounded by
         * operation.timeout.ms, no retry); the ones that fail are left to
         * the watchdog's usual re-creation */
        up_establish_all(na + oldall, nall - oldall, 0, false);
        for (int i = oldall; i < nall; i++)
            up_rp_transition(na[i], UP_RP_BIT(UP_RP_CONNECTING), UP_RP_BACKOFF,
                             "its first creation failed: left to the supervisor");
    }
    h->retired[h->nretired++] = h->groups;
    h->retired[h->nretired++] = h->all;
    atomic_store_explicit(&h->groups, ng, memory_order_release);
    atomic_store_explicit(&h->all, na, memory_order_release);
    atomic_store_explicit(&h->nall, nall, memory_order_release);
    atomic_store_explicit(&h->ngroups, n, memory_order_release);
    atomic_store_explicit(&h->npart, n, memory_order_release);
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
                if (j->h) /* its establish attempts on the workers give up too */
                    atomic_store(&j->h->closed, 1);
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
