/* partitioned.c -- the partitioned producer handle on a started producer:
 * routing, send, introspection. Starting a handle (and partition growth) is
 * in partitioned_start.c, flush and stop in partitioned_stop.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "err.h"
#include "rp_state.h"
#include "route.h"
#include "send_int.h"

/* ---- routing -------------------------------------------------------------------- */

/* Routing state of the calling thread: the handle it last sent keyless
 * messages through (by its serial: a handle started where a stopped one
 * was is another handle), that handle's round robin, and the thread's
 * random generator. A thread that alternates between handles starts each
 * one's round robin again (on a random slot) when it comes back to it. */
typedef struct {
    uint64_t owner; /* serial, 0 = none */
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

/* The slot of a message with explicit options (UPULSAR_SEND_PARTITION,
 * a router, a binary key): false, with the error set, for a partition out
 * of range. */
static bool route_opts(struct upulsar_producer *h, const upulsar_send_opts_t *o,
                       const void *payload, size_t plen, uint32_t ngroups, uint32_t *slot)
{
    uint32_t k = (uint32_t)h->conf.producers_per_partition;
    const char *key = o ? o->partition_key : NULL;
    size_t klen = key ? strlen(key) : 0;
    bool b64 = o && !key && o->partition_key_bytes;
    int part;
    if (o && (o->flags & UPULSAR_SEND_PARTITION)) {
        part = o->partition;
    } else if (h->conf.router) {
        const upulsar_route_msg_t m = {.key = key, .key_len = klen,
                                       .key_bytes = b64 ? o->partition_key_bytes : NULL,
                                       .key_bytes_len = b64 ? o->partition_key_bytes_len : 0,
                                       .payload = payload, .len = plen, .opts = o,
                                       .producer = h};
        part = h->conf.router(&m, (int)ngroups, h->conf.router_opaque);
    } else {
        /* a binary key, hashed as its base64 text */
        part = (int)up_route_key_b64(h->conf.hashing, o->partition_key_bytes,
                                     o->partition_key_bytes_len, ngroups);
    }
    if (part < 0 || (uint32_t)part >= ngroups) {
        up_seterr(UPULSAR_ERR__INVALID_ARG, "%s: partition %d out of range (%u partitions; %s)",
                  h->topic, part, ngroups,
                  o && (o->flags & UPULSAR_SEND_PARTITION) ? "UPULSAR_SEND_PARTITION"
                                                           : "the router's answer");
        return false;
    }
    uint32_t i = 0;
    if (k > 1 && key)
        i = (up_murmur3_32(key, klen, GROUP_SEED) & 0x7fffffffu) % k;
    else if (k > 1 && b64)
        i = (up_murmur3_32(o->partition_key_bytes, o->partition_key_bytes_len, GROUP_SEED) &
             0x7fffffffu) % k;
    *slot = (uint32_t)part * k + i;
    return true;
}

static inline __attribute__((always_inline)) up_rp_t *route(struct upulsar_producer *h, const upulsar_send_opts_t *o,
                      const void *payload, size_t plen, up_group_t **gout)
{
    int k = h->conf.producers_per_partition;
    /* count first, then the array (see struct upulsar_producer) */
    uint32_t ngroups = (uint32_t)atomic_load_explicit(&h->ngroups, memory_order_acquire);
    up_group_t *groups = atomic_load_explicit(&h->groups, memory_order_acquire);
    uint32_t slots = ngroups * (uint32_t)k;
    uint32_t s;
    const char *key = o ? o->partition_key : NULL;
    if (__builtin_expect(o && ((o->flags & UPULSAR_SEND_PARTITION) || o->partition_key_bytes),
                         0) ||
        h->conf.router) {
        if (!route_opts(h, o, payload, plen, ngroups, &s))
            return NULL;
    } else if (key) {
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
         * (see up_rr_route); the thread's state by one pointer (each
         * access to a thread-local costs an address computation) */
        route_tls_t *t = &rt;
        if (__builtin_expect(t->owner != h->serial, 0)) {
            t->owner = h->serial;
            /* the first message moves the cursor on from a random slot */
            t->rr.cursor = (uint32_t)(next_rand() % slots);
            t->rr.count = 0;
            t->rr.bytes = 0;
            t->rr.rbytes = 0;
            t->rr.moved_us = 0;
        }
        s = up_rr_route(&t->rr, &h->conf, plen, slots);
    }
    return up_route_slot(groups, s, k, gout);
}

up_rr_t *up_handle_rr(struct upulsar_producer *h)
{
    if (h->conf.router || h->conf.routing == UP_ROUTE_SINGLE ||
        h->conf.routing == UP_ROUTE_RANDOM || rt.owner != h->serial)
        return NULL;
    return &rt.rr;
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

/* upulsar_send()'s checks and routing (send_int.h, up_handle_route()) */
static inline __attribute__((always_inline)) up_rp_t *
route_checked(upulsar_producer_t *h, const void *payload, size_t len,
              const upulsar_send_opts_t *opts, upulsar_err_t *err)
{
    if (!h) {
        *err = up_seterr(UPULSAR_ERR__INVALID_ARG, "producer is NULL");
        return NULL;
    }
    if ((*err = up_route_pre(h, payload, len, opts)))
        return NULL;
    up_group_t *g;
    up_rp_t *rp = route(h, opts, payload, len, &g);
    if (!rp) {
        *err = UPULSAR_ERR__INVALID_ARG; /* route_opts() set the detail */
        return NULL;
    }
    if ((*err = up_route_post(g)))
        return NULL;
    return rp;
}

up_rp_t *up_handle_route(upulsar_producer_t *h, const void *payload, size_t len,
                         const upulsar_send_opts_t *opts, upulsar_err_t *err)
{
    return route_checked(h, payload, len, opts, err);
}

upulsar_err_t up_handle_send_err(upulsar_producer_t *h, upulsar_err_t err)
{
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

upulsar_err_t up_handle_send(upulsar_producer_t *h, const void *payload, size_t len,
                             const upulsar_send_opts_t *opts, upulsar_future_t **future)
{
    if (future)
        *future = NULL;
    upulsar_err_t err;
    up_rp_t *rp = route_checked(h, payload, len, opts, &err);
    if (!rp)
        return err;
    err = up_rp_enqueue(rp, payload, len, opts, future);
    if (__builtin_expect(err != UPULSAR_OK, 0))
        return up_handle_send_err(h, err);
    return UPULSAR_OK;
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
            snprintf(pi->name, sizeof pi->name, "%s", up_rp_name(rp));
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
