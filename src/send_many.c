/* send_many.c -- upulsar_send_many(): the messages of one call in runs.
 *
 * Each message is checked, routed and built exactly as upulsar_send() does
 * it (send_int.h: the same functions), in the order given. Messages that go
 * to the same real producer one after another (a keyless round robin
 * staying on a partition while its batch fills, the same key, the same
 * explicit partition) form a run, at most RUN_MAX messages and RUN_CELLS()
 * ring cells. A run is queued with one of each:
 *   max.pending.messages  the run's messages counted at once (when set);
 *   futures               taken from the pool at once (when asked for);
 *   the ring              one reservation of all the run's cells (one CAS
 *                         on head, memory.limit.bytes charged as a send
 *                         charges, the payloads of NOCOPY messages with it);
 * then each record written and committed in turn (each record's first cell
 * has its commit word, ring.h), and one fence and one wake check for the
 * run. When the run does not fit at once (ring, budget, pending count,
 * future pool), nothing is kept of the attempt and its messages go one by
 * one through upulsar_send()'s own path (up_rp_enqueue_in(), or
 * up_rp_enqueue_plain() for plain records, below), which waits
 * with block.if.queue.full or refuses, as upulsar_send() would. A message
 * too large to share a run (a private copy, or more than a sixteenth of
 * the ring) goes alone through that path too.
 *
 * A message without options, or with nothing but a callback, an opaque,
 * an event time and a partition key as text, is a plain record
 * (up_send_plain_keyed()): it is checked (the size rule, its key's bytes
 * counted), stamped and counted into its run without a up_rec_in_t, and
 * written with up_rec_write_plain(), the same bytes as up_rec_write() of
 * the same message; a plain record that goes one by one takes
 * upulsar_send()'s plain way (up_rp_enqueue_plain()). A run holds plain
 * messages or others, not both; its producer's checks (up_send_prep():
 * failure, lazy start) run when the run starts and for each message that
 * is not plain (a plain message joining a run, keyed or not, is not checked
 * again: a failure during the call is seen by the next run, or by the
 * loop). Only keyless plain messages continue a run by the round robin
 * (plain_more()).
 *
 * The first message refused ends the call: those before it are queued
 * (the run holding them is queued first), *accepted counts them, and
 * nothing after it is. No allocation: the run lives on the caller's
 * stack. */
#include "future.h"
#include "send_int.h"

enum { RUN_MAX = 64 };

/* Cells a run may take: well under the ring (a reservation is refused past
 * half of it) so that a run fits beside the records in flight. */
#define RUN_CELLS(r) ((r)->cap / 8)
/* Cells of a message that goes alone */
#define ALONE_CELLS(r) ((r)->cap / 16)

typedef struct run {
    up_rp_t *rp;
    size_t first; /* index in the call's messages */
    unsigned n;
    bool plain;   /* its messages are in pl[], not in[] */
    uint64_t cells;
    uint64_t ext; /* payload bytes kept out of the ring (NOCOPY) */
    int32_t maxsz; /* the client's max_message_size, read at the run's start */
    uint32_t ncells[RUN_MAX];
    up_rec_plain_t pl[RUN_MAX];
    up_rec_in_t in[RUN_MAX];
} run_t;

/* Plain messages after msgs[@p i] (the last one added to plain run @p u,
 * routed by the round robin @p rr of handle @p p) that join the run
 * without routing each afresh: while the next message makes a plain
 * record (its options, if any, in this library's layout: @p opts_size),
 * passes the checks of up_route_rr() and up_send_build() (payload, handle
 * open, size rule), fits the run and is kept on the run's producer by the
 * round robin (up_rr_stay_lim()). Each is stamped and counted as the loop
 * below would; the first that needs more is left to it. Returns the index
 * of the last message added. */
static size_t plain_more(run_t *u, struct upulsar_producer *p, up_rr_t *rr,
                         const struct upulsar_conf *cf, const upulsar_msg_t *msgs, size_t i,
                         size_t n, size_t opts_size)
{
    up_ring_t *r = &u->rp->ring;
    size_t maxsz = u->maxsz > 0 ? (size_t)u->maxsz : 0;
    /* the thread's count of sends since its last sampled one, and the
     * round robin's limits, in locals for the run (up_send_stamp_us()) */
    unsigned every = cf->latency_sample_every > 0 ? (unsigned)cf->latency_sample_every : 0;
    unsigned tick = up_lat_tick;
    up_rr_limits_t lim = up_rr_limits(&p->conf);
    uint64_t alone = ALONE_CELLS(r), room = RUN_CELLS(r);
    for (; i + 1 < n && u->n < RUN_MAX; i++) {
        const upulsar_msg_t *m = &msgs[i + 1];
        up_rec_plain_t *pl = &u->pl[u->n];
        size_t len = m->len;
        if ((m->opts && opts_size != sizeof(upulsar_send_opts_t)) ||
            !up_send_plain(cf, m->opts, m->payload, len, pl) || (!m->payload && len) ||
            atomic_load_explicit(&p->closed, memory_order_relaxed) ||
            maxsz < UPULSAR_MSG_OVERHEAD || len > maxsz - UPULSAR_MSG_OVERHEAD)
            break;
        /* its cells with the send time it would carry (counted only once
         * it joins), from what is in registers */
        bool stamped = every && tick + 1 >= every;
        uint64_t ncells = up_rec_plain_cells_of(len, m->opts && pl->ext, stamped);
        if (ncells > alone || u->cells + ncells > room || !up_rr_stay_lim(rr, &lim, len))
            break;
        pl->sent_us = 0;
        if (stamped) {
            tick = 0;
            pl->sent_us = up_now_us();
        } else if (every) {
            tick++;
        }
        u->ncells[u->n] = (uint32_t)ncells;
        u->cells += ncells;
        u->n++;
    }
    up_lat_tick = tick;
    return i;
}

/* Give back the futures taken for a run that is not queued this way. */
static void futures_undo(struct upulsar_future **f, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        upulsar_future_release(f[i]);
        up_future_resolve(f[i], UPULSAR_ERR__QUEUE_FULL, NULL);
    }
}

/* Queue run @p u (not empty); its futures into @p futures[u->first ..]
 * when not NULL. *@p acc counts the messages queued; on an error those
 * after it are not. Leaves the run empty. */
static upulsar_err_t run_flush(run_t *u, upulsar_future_t **futures, size_t *acc)
{
    up_rp_t *rp = u->rp;
    unsigned n = u->n;
    u->n = 0;
    if (n == 1)
        goto one_by_one;
    int64_t maxp = rp->handle->conf.max_pending_messages;
    if (maxp > 0 && !up_send_pending_take(rp, maxp, n))
        goto one_by_one;
    struct upulsar_future *f[RUN_MAX];
    if (futures) {
        unsigned got = up_future_alloc_many(&rp->client->futures, f, n);
        if (got < n) {
            futures_undo(f, got);
            goto undo_pending;
        }
    }
    uint64_t pos;
    if (!up_rp_reserve_now(rp, u->cells, u->ext, &pos)) {
        if (futures)
            futures_undo(f, n);
        goto undo_pending;
    }
    up_ring_t *r = &rp->ring;
    if (u->plain) {
        /* the cells UP_SEND_PF_AHEAD past each record asked for as
         * up_send_write() does, each line once (records of a run are
         * contiguous) */
        uint64_t pf = (pos + UP_SEND_PF_AHEAD) & ~(uint64_t)(64 / UP_RING_CELL - 1);
        /* and the commit words (a line holds 8), also last read by the loop */
        uint64_t pfc = pos & ~(uint64_t)7;
        for (unsigned i = 0; i < n; i++) {
            const up_rec_plain_t *m = &u->pl[i];
            for (; pf < pos + UP_SEND_PF_AHEAD + u->ncells[i]; pf += 64 / UP_RING_CELL)
                up_send_prefetch_w(up_ring_cell(r, pf));
            for (; pfc < pos + 4 * UP_SEND_PF_AHEAD; pfc += 8)
                up_send_prefetch_w(&r->commit[pfc & r->mask]);
            up_rec_write_plain(r, pos, u->ncells[i], m, futures ? f[i] : NULL);
            up_ring_commit(r, pos); /* R1 */
            pos += u->ncells[i];
        }
    } else {
        for (unsigned i = 0; i < n; i++) {
            u->in[i].future = futures ? f[i] : NULL;
            up_send_write(r, pos, u->ncells[i], &u->in[i]);
            pos += u->ncells[i];
        }
    }
    up_send_publish(rp);
    if (futures)
        for (unsigned i = 0; i < n; i++)
            futures[u->first + i] = f[i];
    *acc += n;
    return UPULSAR_OK;
undo_pending:
    if (maxp > 0)
        atomic_fetch_sub_explicit(&rp->lim_msgs, n, memory_order_relaxed);
one_by_one:
    for (unsigned i = 0; i < n; i++) {
        upulsar_future_t **fut = futures ? &futures[u->first + i] : NULL;
        upulsar_err_t e = u->plain ? up_rp_enqueue_plain(rp, u->maxsz, &u->pl[i], fut)
                                   : up_rp_enqueue_in(rp, &u->in[i], fut);
        if (e)
            return e;
        ++*acc;
    }
    return UPULSAR_OK;
}

upulsar_err_t upulsar_send_many_sized(upulsar_producer_t *p, const upulsar_msg_t *msgs, size_t n,
                                      upulsar_future_t **futures, size_t *accepted,
                                      size_t opts_size)
{
    size_t acc = 0;
    upulsar_err_t err = UPULSAR_OK;
    if (!msgs && n) {
        err = up_seterr(UPULSAR_ERR__INVALID_ARG, "msgs is NULL");
        if (futures)
            futures[0] = NULL; /* the refused message's, as below */
        goto out;
    }
    run_t u;
    u.n = 0;
    u.rp = NULL;
    u.plain = false;
    up_rr_t *rr = NULL; /* the thread's round robin over p, once a message used it */
    for (size_t i = 0; i < n; i++) {
        const void *payload = msgs[i].payload;
        size_t len = msgs[i].len;
        upulsar_send_opts_t tmp;
        const upulsar_send_opts_t *o = NULL;
        up_rp_t *rp;
        if ((err = up_send_opts(msgs[i].opts, opts_size, len, &tmp, &o)))
            goto refused;
        if (rr && up_route_plain(o)) {
            rp = up_route_rr(p, rr, payload, len, o, &err);
        } else {
            rp = up_handle_route(p, payload, len, o, &err);
            if (rp && up_route_plain(o))
                rr = up_handle_rr(p); /* the next such message: its step alone */
        }
        if (!rp)
            goto refused;
        up_rec_plain_t m;
        bool plain = up_send_plain_keyed(rp_conf(rp), o, payload, len, &m);
        if (u.n && (rp != u.rp || u.n == RUN_MAX || plain != u.plain)) {
            if ((err = run_flush(&u, futures, &acc)))
                goto failed;
        }
        if ((u.n == 0 || !plain) && (err = up_send_prep(rp)))
            goto refused;
        /* read once per run: its cache line is shared with the budget's
         * counters, which other threads write all the time */
        if (u.n == 0)
            u.maxsz = up_send_maxsz(rp);
        const struct upulsar_conf *cf = rp_conf(rp);
        up_ring_t *r = &rp->ring;
        up_rec_in_t *in = &u.in[u.n];
        uint64_t ncells;
        if (plain) {
            if ((err = up_send_size_check(cf->chunking_enabled,
                                          u.maxsz > 0 ? (size_t)u.maxsz : 0, len, m.key_len,
                                          0, 0)))
                goto refused;
            m.sent_us = up_send_stamp_us(cf);
            ncells = up_rec_plain_cells(&m);
        } else {
            if ((err = up_send_build(cf, u.maxsz, payload, len, o, in)))
                goto refused;
            up_send_stamp(cf, in);
            ncells = up_ring_cells_for(up_rec_size(in));
        }
        if (ncells > ALONE_CELLS(r)) {
            /* alone, through upulsar_send()'s path (a private copy, a
             * record too large to share a run) */
            if (u.n) {
                if ((err = run_flush(&u, futures, &acc)))
                    goto failed;
                /* a plain message joining its producer's run was not
                 * checked: it is, going alone */
                if (plain && (err = up_send_prep(rp)))
                    goto refused;
            }
            upulsar_future_t **fut = futures ? &futures[i] : NULL;
            if (plain) {
                err = up_rp_enqueue_plain(rp, u.maxsz, &m, fut);
            } else {
                if (u.in != in) /* built in the slot after the run's last */
                    u.in[0] = *in;
                err = up_rp_enqueue_in(rp, &u.in[0], fut);
            }
            if (err)
                goto failed;
            acc++;
            continue;
        }
        if (u.n && u.cells + ncells > RUN_CELLS(r)) {
            if ((err = run_flush(&u, futures, &acc)))
                goto failed;
            if (!plain)
                u.in[0] = *in; /* built in the slot after the run's last */
            else if ((err = up_send_prep(rp))) /* the new run's start */
                goto refused;
        }
        if (u.n == 0) {
            u.rp = rp;
            u.first = i;
            u.cells = 0;
            u.ext = 0;
            u.plain = plain;
        }
        if (plain)
            u.pl[u.n] = m;
        else if (u.in[u.n].flags & UP_REC_NOCOPY)
            u.ext += u.in[u.n].payload_len;
        u.ncells[u.n] = (uint32_t)ncells;
        u.cells += ncells;
        u.n++;
        if (plain && rr && !m.key) /* routed by the round robin */
            i = plain_more(&u, p, rr, cf, msgs, i, n, opts_size);
    }
    if (u.n)
        err = run_flush(&u, futures, &acc);
    goto failed;
refused:
    /* the messages before this one are queued first */
    if (u.n) {
        /* a refusal's detail is the thread's last error: a run queued
         * without error leaves it alone */
        upulsar_err_t fe = run_flush(&u, futures, &acc);
        if (fe)
            err = fe;
    }
failed:
    if (err && p)
        err = up_handle_send_err(p, err);
    if (err && futures)
        futures[acc] = NULL; /* the refused message's, as upulsar_send() */
out:
    if (accepted)
        *accepted = acc;
    return err;
}

upulsar_err_t(upulsar_send_many)(upulsar_producer_t *p, const upulsar_msg_t *msgs, size_t n,
                                 upulsar_future_t **futures, size_t *accepted)
{
    return upulsar_send_many_sized(p, msgs, n, futures, accepted, UPULSAR_SEND_OPTS_SIZE_0_2);
}
