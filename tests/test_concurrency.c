/* test_concurrency.c -- the lock-free parts under many threads: the MPSC
 * ring, the future pool, waiters woken from their sleep in the kernel (on
 * the pool and through the engine, receipts withheld until they sleep),
 * and 8 sender threads through the whole engine.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "future.h"
#include "ring.h"
#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SCALE 10 /* sanitizers are slow: same shape, fewer messages */
#else
#define SCALE 1
#endif

/* ---- ring: 4 producers, 1 consumer, variable-size records ---- */

enum { RP = 4, PER_PRODUCER = 200000 / SCALE };

typedef struct {
    up_ring_t *r;
    uint32_t id;
} ring_arg_t;

static void *ring_producer(void *a)
{
    ring_arg_t *ra = a;
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        /* record: [u32 producer][u32 seq][u32 len][len bytes of (seq+k)&0xff] */
        uint32_t len = (i * 7 + ra->id) % 150;
        uint32_t hdr[3] = {ra->id, i, len};
        uint64_t n = up_ring_cells_for(sizeof hdr + len), pos;
        while (!up_ring_reserve(ra->r, n, &pos))
            sched_yield();
        uint8_t tmp[256];
        memcpy(tmp, hdr, sizeof hdr);
        for (uint32_t k = 0; k < len; k++)
            tmp[sizeof hdr + k] = (uint8_t)(i + k);
        up_ring_write(ra->r, pos, 0, tmp, sizeof hdr + len);
        up_ring_commit(ra->r, pos);
    }
    return NULL;
}

Test(ring, mpsc_keeps_per_producer_order_and_bytes)
{
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, 64 * 1024), 0);
    pthread_t th[RP];
    ring_arg_t args[RP];
    for (uint32_t i = 0; i < RP; i++) {
        args[i] = (ring_arg_t){&r, i};
        pthread_create(&th[i], NULL, ring_producer, &args[i]);
    }
    uint32_t next[RP] = {0};
    uint64_t total = 0;
    while (total < (uint64_t)RP * PER_PRODUCER) {
        if (!up_ring_peek(&r)) {
            sched_yield();
            continue;
        }
        uint32_t hdr[3];
        up_ring_read(&r, r.ctail, 0, hdr, sizeof hdr);
        cr_assert_lt(hdr[0], RP);
        cr_assert_eq(hdr[1], next[hdr[0]], "producer %u out of order", hdr[0]);
        uint8_t tmp[256];
        up_ring_read(&r, r.ctail, sizeof hdr, tmp, hdr[2]);
        for (uint32_t k = 0; k < hdr[2]; k++)
            cr_assert_eq(tmp[k], (uint8_t)(hdr[1] + k));
        next[hdr[0]]++;
        r.ctail += up_ring_cells_for(sizeof hdr + hdr[2]);
        if (++total % 64 == 0)
            up_ring_release(&r);
        else if (!up_ring_peek(&r))
            up_ring_release(&r);
    }
    for (int i = 0; i < RP; i++)
        pthread_join(th[i], NULL);
    up_ring_destroy(&r);
}

Test(ring, full_ring_refuses_until_released)
{
    up_ring_t r;
    cr_assert_eq(up_ring_init(&r, 64 * UP_RING_CELL), 0);
    uint64_t pos;
    cr_assert(up_ring_reserve(&r, 60, &pos));
    cr_assert_not(up_ring_reserve(&r, 5, &pos));
    cr_assert(up_ring_reserve(&r, 4, &pos));
    up_ring_commit(&r, 0);
    up_ring_commit(&r, 60);
    r.ctail = 64;
    up_ring_release(&r);
    cr_assert(up_ring_reserve(&r, 64, &pos));
    cr_assert_eq(pos, 64);
    up_ring_destroy(&r);
}

/* ---- futures: allocate/resolve/release from many threads ---- */

static up_future_pool_t pool;

static void *fut_worker(void *a)
{
    for (int i = 0; i < 100000 / SCALE; i++) {
        struct upulsar_future *f = up_future_alloc(&pool);
        cr_assert_not_null(f);
        upulsar_msg_id_t id = {(uint64_t)i, 1, 2, 3, 4, 0, (uint64_t)i, 1};
        if (i & 1) {
            upulsar_future_release(f); /* released before resolution */
            up_future_resolve(f, UPULSAR_OK, &id);
        } else {
            up_future_resolve(f, UPULSAR_OK, &id);
            upulsar_msg_id_t got;
            cr_assert_eq(upulsar_future_wait(f, -1, &got), UPULSAR_OK);
            cr_assert_eq(got.ledger_id, (uint64_t)i);
            upulsar_future_release(f);
        }
    }
    return a;
}

Test(future, pool_survives_concurrent_alloc_and_release)
{
    cr_assert_eq(up_future_pool_init(&pool, 1 << 16), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, fut_worker, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(up_future_pool_in_use(&pool), 0);
    up_future_pool_destroy(&pool);
}

/* ---- waiters provably asleep before the resolution ---- */

/* Bound of every wait that must end; running into it fails the test. */
#define WAIT_MS 60000

typedef struct {
    struct upulsar_future *f;
    _Atomic pid_t tid;      /* the waiter's thread id, once running */
    _Atomic int returned;   /* upulsar_future_wait() returned */
    upulsar_err_t err;      /* what it returned */
    upulsar_msg_id_t id;
} waiter_arg_t;

static void *waiter(void *a)
{
    waiter_arg_t *w = a;
    atomic_store(&w->tid, (pid_t)syscall(SYS_gettid));
    w->id.ledger_id = UPULSAR_ID_UNKNOWN - 1; /* must be overwritten */
    /* no timeout: only the wake-up of the resolution can end this wait
     * (a timed-out futex wait would also find the result) */
    w->err = upulsar_future_wait(w->f, -1, &w->id);
    atomic_store(&w->returned, 1);
    return NULL;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Wait (bounded: a guard against hangs) until each of @p n waiters has
 * returned; then join them. Returns whether all returned. */
static int all_woke(pthread_t *th, waiter_arg_t *w, size_t n)
{
    uint64_t end = now_ms() + WAIT_MS;
    for (size_t i = 0; i < n; i++)
        while (!atomic_load(&w[i].returned)) {
            if (now_ms() > end)
                return 0; /* a sleeper never woken: cannot be joined */
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    for (size_t i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    return 1;
}

/* Is thread @p tid of this process blocked in futex(FUTEX_WAIT) on @p addr?
 * /proc/self/task/<tid>/syscall names the system call a blocked thread is
 * in and its arguments ("running" while it runs). */
static int parked_on(pid_t tid, const void *addr)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    long nr;
    unsigned long long a0, a1;
    if (sscanf(buf, "%ld 0x%llx 0x%llx", &nr, &a0, &a1) != 3)
        return 0;
    return nr == SYS_futex && a0 == (unsigned long long)(uintptr_t)addr &&
           (a1 & FUTEX_CMD_MASK) == FUTEX_WAIT;
}

/* Wait until each of @p n waiters is asleep in the kernel on its future,
 * none having returned. */
static int all_parked(waiter_arg_t *w, size_t n)
{
    uint64_t end = now_ms() + WAIT_MS;
    for (;;) {
        size_t parked = 0;
        for (size_t i = 0; i < n; i++) {
            pid_t tid = atomic_load(&w[i].tid);
            if (atomic_load(&w[i].returned))
                return 0;
            parked += tid && parked_on(tid, &up_future_slot(w[i].f)->state);
        }
        if (parked == n)
            return 1;
        if (now_ms() > end)
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* Three threads asleep in upulsar_future_wait() on one future (checked in
 * the kernel, not assumed after a sleep) are each woken by its resolution
 * and get its error; a wait that times out leaves it pending. */
Test(future, waiters_wake_on_resolution_and_timeouts_leave_it_pending)
{
    cr_assert_eq(up_future_pool_init(&pool, 4096), 0);
    struct upulsar_future *f = up_future_alloc(&pool);
    cr_assert_eq(upulsar_future_wait(f, 20, NULL), UPULSAR_ERR__PENDING);
    cr_assert_eq(upulsar_future_poll(f, NULL), UPULSAR_ERR__PENDING);
    pthread_t th[3];
    waiter_arg_t w[3];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 3; i++) {
        w[i].f = f;
        cr_assert_eq(pthread_create(&th[i], NULL, waiter, &w[i]), 0);
    }
    int parked = all_parked(w, 3);
    up_future_resolve(f, UPULSAR_ERR_TOPIC_TERMINATED, NULL);
    cr_assert(all_woke(th, w, 3), "a waiter was never woken by the resolution");
    cr_assert(parked, "the waiters never slept in the kernel on the future");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(w[i].err, UPULSAR_ERR_TOPIC_TERMINATED, "waiter %d: %s", i,
                     upulsar_err_name(w[i].err));
    upulsar_future_release(f);
    up_future_pool_destroy(&pool);
}

/* Scenario (through the whole engine):
 *  1. The broker withholds the receipts of topic "parked"; 8 messages are
 *     sent in entries of 2 and stored, their receipts queued at the broker:
 *     no future can resolve.
 *  2. Two threads per future call upulsar_future_wait(); the test waits
 *     until all 16 sleep in the kernel (futex wait on their future).
 *  3. The receipts are released: every waiter wakes with OK and the id of
 *     its own message as the broker stored it (ledger, entry, batch index),
 *     both waiters of a future alike. */
Test(engine, waiters_asleep_before_the_receipts_wake_with_their_own_ids, .timeout = 240)
{
    enum { NMSG = 8, PER_FUTURE = 2 };
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    upulsar_tb_t *tb;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK);
    upulsar_conf_t *conf = upulsar_conf_new();
    upulsar_conf_set(conf, "service.url", upulsar_tb_url(tb), NULL, 0);
    upulsar_conf_set(conf, "batch.max.messages", "2", NULL, 0);
    upulsar_client_t *client;
    cr_assert_eq(upulsar_client_new(conf, &client), UPULSAR_OK);
    upulsar_producer_t *p;
    cr_assert_eq(upulsar_producer_start(client, "pk", "parked", 0, conf, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_conf_destroy(conf);
    cr_assert_eq(upulsar_tb_hold_receipts(tb, "parked"), UPULSAR_OK);

    upulsar_future_t *f[NMSG];
    for (int i = 0; i < NMSG; i++) {
        char pl[16];
        int len = snprintf(pl, sizeof pl, "m%d", i);
        cr_assert_eq(upulsar_send(p, pl, (size_t)len, NULL, &f[i]), UPULSAR_OK, "%s",
                     upulsar_last_error());
    }
    cr_assert_eq(upulsar_tb_wait_messages(tb, "parked", NMSG, WAIT_MS), UPULSAR_OK);
    /* every stored entry's receipt is queued at the broker (it queues a
     * receipt just after storing its entry) */
    upulsar_tb_topic_stats_t ts;
    uint64_t end = now_ms() + WAIT_MS;
    for (;;) {
        cr_assert_eq(upulsar_tb_topic_stats(tb, "parked", &ts), UPULSAR_OK);
        if (upulsar_tb_queued_receipts(tb) == ts.entries)
            break;
        cr_assert_lt(now_ms(), end, "receipts not all withheld");
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    for (int i = 0; i < NMSG; i++)
        cr_assert_eq(upulsar_future_poll(f[i], NULL), UPULSAR_ERR__PENDING, "message %d", i);

    pthread_t th[NMSG * PER_FUTURE];
    waiter_arg_t w[NMSG * PER_FUTURE];
    memset(w, 0, sizeof w);
    for (int k = 0; k < NMSG * PER_FUTURE; k++) {
        w[k].f = f[k / PER_FUTURE];
        cr_assert_eq(pthread_create(&th[k], NULL, waiter, &w[k]), 0);
    }
    int parked = all_parked(w, NMSG * PER_FUTURE);
    cr_assert_eq(upulsar_tb_release_receipts(tb, "parked"), UPULSAR_OK);
    cr_assert(all_woke(th, w, NMSG * PER_FUTURE), "a waiter was never woken by its receipt");
    cr_assert(parked, "the waiters never all slept in the kernel on their futures");

    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "parked", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), NMSG);
    for (int k = 0; k < NMSG * PER_FUTURE; k++) {
        int i = k / PER_FUTURE;
        char pl[16];
        int len = snprintf(pl, sizeof pl, "m%d", i);
        const upulsar_tb_msg_t *m = NULL;
        for (size_t j = 0; j < NMSG; j++) {
            const upulsar_tb_msg_t *c = upulsar_tb_snapshot_msg(s, j);
            if (c->payload_len == (size_t)len && !memcmp(c->payload, pl, (size_t)len))
                m = c;
        }
        cr_assert_not_null(m, "message %d not stored", i);
        cr_assert_eq(w[k].err, UPULSAR_OK, "waiter %d of message %d: %s", k % PER_FUTURE, i,
                     upulsar_err_name(w[k].err));
        cr_assert_eq(w[k].id.ledger_id, m->ledger_id, "message %d ledger", i);
        cr_assert_eq(w[k].id.entry_id, m->entry_id, "message %d entry", i);
        cr_assert_eq(w[k].id.batch_index, m->batch_index, "message %d batch index", i);
        cr_assert_eq(w[k].id.batch_size, m->batch_size, "message %d batch size", i);
        cr_assert_eq(w[k].id.partition, -1);
    }
    upulsar_tb_snapshot_free(s);
    for (int i = 0; i < NMSG; i++)
        upulsar_future_release(f[i]);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    upulsar_client_destroy(client);
    upulsar_tb_stop(tb);
}

/* ---- the whole engine: 8 threads x 100k messages over 16 partitions ---- */

enum { THREADS = 8, PER_THREAD = 100000 / SCALE, PARTS = 16 };

typedef struct {
    upulsar_producer_t *p;
    int t;
    upulsar_future_t **fut;
} sender_arg_t;

static void *sender(void *a)
{
    sender_arg_t *s = a;
    for (int i = 0; i < PER_THREAD; i++) {
        char payload[100];
        memset(payload, 'p', sizeof payload);
        int len = snprintf(payload, sizeof payload, "%d:%d:", s->t, i);
        payload[len] = 'p';
        upulsar_err_t err;
        while ((err = upulsar_send(s->p, payload, sizeof payload, NULL, &s->fut[i])) ==
               UPULSAR_ERR__QUEUE_FULL)
            sched_yield();
        cr_assert_eq(err, UPULSAR_OK, "%s", upulsar_last_error());
    }
    return NULL;
}

Test(engine, eight_threads_no_loss_no_duplicates_order_kept, .timeout = 240)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    upulsar_tb_t *tb;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK);
    upulsar_conf_t *conf = upulsar_conf_new();
    upulsar_conf_set(conf, "service.url", upulsar_tb_url(tb), NULL, 0);
    upulsar_client_t *client;
    cr_assert_eq(upulsar_client_new(conf, &client), UPULSAR_OK);
    upulsar_producer_t *p;
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "mt", PARTS), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_start(client, "mt", "mt", PARTS, conf, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_conf_destroy(conf);

    static upulsar_future_t *fut[THREADS][PER_THREAD];
    static upulsar_msg_id_t ids[THREADS][PER_THREAD];
    pthread_t th[THREADS];
    sender_arg_t args[THREADS];
    for (int t = 0; t < THREADS; t++) {
        args[t] = (sender_arg_t){p, t, fut[t]};
        pthread_create(&th[t], NULL, sender, &args[t]);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PER_THREAD; i++) {
            cr_assert_eq(upulsar_future_wait(fut[t][i], 60000, &ids[t][i]), UPULSAR_OK);
            upulsar_future_release(fut[t][i]);
        }
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);

    /* every stored message once, with the id its future reported, and each
     * thread's messages in send order within a partition */
    static uint8_t seen[THREADS][PER_THREAD];
    size_t total = 0;
    for (int part = 0; part < PARTS; part++) {
        char topic[64];
        snprintf(topic, sizeof topic, "mt-partition-%d", part);
        upulsar_tb_snapshot_t *s;
        cr_assert_eq(upulsar_tb_snapshot(tb, topic, &s), UPULSAR_OK);
        int last[THREADS];
        for (int t = 0; t < THREADS; t++)
            last[t] = -1;
        for (size_t j = 0; j < upulsar_tb_snapshot_count(s); j++) {
            const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, j);
            int t, i;
            cr_assert_eq(sscanf((const char *)m->payload, "%d:%d:", &t, &i), 2);
            cr_assert(t >= 0 && t < THREADS && i >= 0 && i < PER_THREAD);
            cr_assert_eq(seen[t][i], 0, "duplicate %d:%d", t, i);
            seen[t][i] = 1;
            cr_assert_gt(i, last[t], "thread %d out of order on partition %d", t, part);
            last[t] = i;
            cr_assert_eq(ids[t][i].partition, part);
            cr_assert_eq(ids[t][i].ledger_id, m->ledger_id);
            cr_assert_eq(ids[t][i].entry_id, m->entry_id);
            cr_assert_eq(ids[t][i].batch_index, m->batch_index);
        }
        total += upulsar_tb_snapshot_count(s);
        upulsar_tb_snapshot_free(s);
    }
    cr_assert_eq(total, (size_t)THREADS * PER_THREAD, "lost messages");
    upulsar_client_destroy(client);
    upulsar_tb_stop(tb);
}
