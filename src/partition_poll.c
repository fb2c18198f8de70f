/* partition_poll.c -- the partition poller: one thread per client that asks
 * the broker for the partition count of every partitioned handle each
 * partitions.update.interval.ms (PARTITIONED_METADATA) and grows the handle
 * when the topic has more partitions (partitioned_start.c,
 * up_producer_poll_partitions(): new groups, their producers created
 * together, then published).
 *
 * Both may block for up to operation.timeout.ms when a broker is slow to
 * answer; they run here so that such a wait never holds up the watchdog's
 * supervision of the other producers (re-creations, restart limits,
 * statistics, collapsed log lines). The poller owns h->next_poll_us,
 * shrink_seen, cap_seen and retired. A stop waits until the poller is not
 * working on its handle (c->poll_busy, client lock), and its blocking
 * requests are cancelled through the handle's closed flag (up_cancel_on()).
 * It sleeps until the earliest poll due, at most POLL_IDLE_MS. */
#include "clock.h"
#include "engine.h"
#include "err.h"

/* The longest the poller sleeps without looking at the handles (a new
 * handle is seen within it). */
#define POLL_IDLE_MS 100

static void *poll_main(void *arg)
{
    struct upulsar_client *c = arg;
    /* a library thread: log callbacks may run here, under the rules of an
     * establish worker (see "Callbacks" in upulsar.h) */
    up_thread_set_role(UP_THREAD_POLLER);
    pthread_mutex_lock(&c->lock);
    uint64_t wake = up_now_us() + POLL_IDLE_MS * 1000u;
    while (!c->wd_stop) {
        struct timespec ts = up_deadline_ts(wake);
        pthread_cond_timedwait(&c->poll_cv, &c->lock, &ts);
        if (c->wd_stop)
            break;
        wake = up_now_us() + POLL_IDLE_MS * 1000u;
        /* Handles are unlinked and freed under c->lock only once poll_busy
         * is not them (see up_producer_stop_claimed), so the walk may drop
         * the lock around each handle. */
        for (struct upulsar_producer *h = c->producers; h && !c->wd_stop; h = h->next) {
            if (atomic_load(&h->closed))
                continue;
            c->poll_busy = h;
            pthread_mutex_unlock(&c->lock);
            up_cancel_on(&h->closed); /* stop must not wait behind the request */
            up_producer_poll_partitions(h, up_now_us());
            up_cancel_on(NULL);
            pthread_mutex_lock(&c->lock);
            c->poll_busy = NULL;
            if (h->conf.partitions_update_interval_ms > 0 &&
                atomic_load_explicit(&h->npart, memory_order_relaxed) > 0 &&
                h->next_poll_us < wake)
                wake = h->next_poll_us; /* (the poller's own field) */
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
