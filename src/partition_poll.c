/* partition_poll.c -- the partition poller: one thread per client that asks
 * the broker for the partition count of every partitioned handle each
 * partitions.update.interval.ms (PARTITIONED_METADATA) and hands the answer
 * to the watchdog, which grows the handle (partitioned_start.c,
 * up_producer_apply_partitions()).
 *
 * The request blocks for up to operation.timeout.ms when the broker is slow
 * to answer it; it runs here so that such a wait never holds up the
 * watchdog's supervision of the other producers (re-creations, restart
 * limits, statistics). The poller owns h->next_poll_us; it publishes a count
 * in h->polled_parts (release) and kicks the watchdog, which takes it
 * (acquire). A stop waits until the poller is not working on its handle
 * (c->poll_busy, client lock), and its blocking request is cancelled through
 * the handle's closed flag (up_cancel_on()). */
#include "clock.h"
#include "engine.h"
#include "err.h"

/* The longest the poller sleeps without looking at the handles (a new
 * handle, or one whose interval changed, is seen within it). */
#define POLL_IDLE_MS 100

/* Ask for @p h's partition count if due. (client lock NOT held) */
static void poll_one(struct upulsar_client *c, struct upulsar_producer *h, uint64_t now)
{
    int iv = h->conf.partitions_update_interval_ms;
    if (iv <= 0 || atomic_load_explicit(&h->npart, memory_order_relaxed) == 0 ||
        now < h->next_poll_us)
        return;
    h->next_poll_us = now + (uint64_t)iv * 1000u;
    int n;
    if (up_partitions(c, h->topic, &n))
        return; /* try again at the next interval */
    atomic_store_explicit(&h->polled_parts, n, memory_order_release);
    atomic_store_explicit(&h->wd_dirty, 1, memory_order_release);
    up_watchdog_kick(c);
}

static void *poll_main(void *arg)
{
    struct upulsar_client *c = arg;
    /* log callbacks may run here, as on an establish worker */
    up_thread_set_role(UP_THREAD_WORKER);
    pthread_mutex_lock(&c->lock);
    while (!c->wd_stop) {
        struct timespec ts = up_deadline_ts(up_now_us() + POLL_IDLE_MS * 1000u);
        pthread_cond_timedwait(&c->poll_cv, &c->lock, &ts);
        if (c->wd_stop)
            break;
        /* Handles are unlinked and freed under c->lock only once poll_busy
         * is not them (see up_producer_stop_claimed), so the walk may drop
         * the lock around each handle. */
        for (struct upulsar_producer *h = c->producers; h && !c->wd_stop; h = h->next) {
            if (atomic_load(&h->closed))
                continue;
            c->poll_busy = h;
            pthread_mutex_unlock(&c->lock);
            up_cancel_on(&h->closed); /* stop must not wait behind the request */
            poll_one(c, h, up_now_us());
            up_cancel_on(NULL);
            pthread_mutex_lock(&c->lock);
            c->poll_busy = NULL;
            pthread_cond_broadcast(&c->wd_cv); /* a stop waiting for the handle */
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int up_poller_start(struct upulsar_client *c)
{
    if (up_cond_init_monotonic(&c->poll_cv))
        return -1;
    if (pthread_create(&c->poller, NULL, poll_main, c)) {
        pthread_cond_destroy(&c->poll_cv);
        return -1;
    }
    return 0;
}

void up_poller_stop(struct upulsar_client *c)
{
    pthread_mutex_lock(&c->lock);
    c->wd_stop = true;
    pthread_cond_broadcast(&c->poll_cv);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->poller, NULL);
    pthread_cond_destroy(&c->poll_cv);
}
