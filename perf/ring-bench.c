/* ring-bench -- cost of getting a message into upulsar.
 *
 *  A. the MPSC ring alone: T producer threads reserve, copy a 100-byte
 *     record (+ 32-byte header) and commit; one consumer drains, and moves
 *     the ring back to its first page whenever it finds it empty (as the
 *     io loop does).
 *  B. upulsar_send() as an application calls it (routing, validation, ring
 *     copy, commit, wake check) with the io loop draining into batches and
 *     an in-process test broker (perf mode) acknowledging. Threads send in
 *     bursts of 1000 and pause between bursts, so the ring never fills and
 *     the figure is the enqueue cost, not back-pressure.
 *  C. upulsar_send_many() on 1 thread, in calls of 16 and of 64 messages,
 *     next to upulsar_send() one by one (the three take turns, burst by
 *     burst, so a change in the machine's load hits them alike); same
 *     setup and pauses as B.
 *  D. upulsar_send() with a future per message, as B, and after each
 *     burst's pause each future waited for (resolved by then) and
 *     released: the sends and the releases are timed, per message.
 *  E. as C, each message with a partition key (one of 1000, picked at
 *     random as upulsar-perf --keyed picks them), so consecutive messages
 *     of a call mostly go to different partitions.
 * Prints the median ns per message per thread over many samples, for
 * 1..N threads, from the sending thread's CPU time per burst
 * (CLOCK_THREAD_CPUTIME_ID): on a 2-core machine senders are regularly
 * preempted by the consumer, the loop and the broker, and that waiting is
 * not a cost of the call. (A producer that finds the ring full spins, and
 * that spinning is counted.)
 *  usage: ring-bench [max_threads (default 4)] [cases (default ABC; D
 *  and E on request)] */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ring.h"
#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

/* CPU time of the calling thread: a burst's cost without the time the
 * thread spent preempted (2 cores shared by senders, loop and broker). */
static uint64_t thread_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define SAMPLES 200
#define BURST 1000

/* ---- A: raw ring ---- */
static up_ring_t ring;
static _Atomic int done_producers;
typedef struct {
    double s[SAMPLES];
} samples_t;

static void *ring_producer(void *a)
{
    samples_t *sm = a;
    uint8_t rec[132];
    memset(rec, 'r', sizeof rec);
    for (int s = 0; s < SAMPLES; s++) {
        uint64_t t = thread_ns();
        for (int i = 0; i < BURST; i++) {
            uint64_t pos, n = up_ring_cells_for(sizeof rec);
            while (!up_ring_reserve(&ring, n, &pos))
                ;
            up_ring_write(&ring, pos, 0, rec, sizeof rec);
            up_ring_commit(&ring, pos);
        }
        sm->s[s] = (double)(thread_ns() - t) / BURST;
        /* let the consumer catch up (not timed): this measures the cost of
         * an enqueue with room in the ring, not the consumer's speed */
        while (atomic_load(&ring.tail) != up_ring_head_pos(&ring))
            sched_yield();
    }
    atomic_fetch_add(&done_producers, 1);
    return NULL;
}

static void *ring_consumer(void *a)
{
    int producers = *(int *)a;
    uint8_t rec[132];
    unsigned n = 0;
    while (atomic_load(&done_producers) < producers || up_ring_peek(&ring)) {
        if (!up_ring_peek(&ring)) {
            up_ring_release(&ring);
            up_ring_idle(&ring, 0, 0); /* back to index 0 when empty, as the io loop */
            continue;
        }
        up_ring_read(&ring, ring.ctail, 0, rec, sizeof rec);
        ring.ctail += up_ring_cells_for(sizeof rec);
        if (++n % 64 == 0) /* release in bulk, as the io loop does */
            up_ring_release(&ring);
    }
    up_ring_release(&ring);
    return NULL;
}

static double median_of(samples_t *sm, int threads)
{
    int n = threads * SAMPLES;
    double *all = malloc((size_t)n * sizeof *all);
    for (int t = 0; t < threads; t++)
        memcpy(all + t * SAMPLES, sm[t].s, sizeof sm[t].s);
    qsort(all, (size_t)n, sizeof *all, cmp_d);
    double m = all[n / 2];
    free(all);
    return m;
}

/* ---- B: upulsar_send ---- */
static upulsar_producer_t *prod;
static _Atomic uint64_t errors;

static void *send_thread(void *a)
{
    samples_t *sm = a;
    char payload[100];
    memset(payload, 'p', sizeof payload);
    for (int s = 0; s < SAMPLES; s++) {
        uint64_t t = thread_ns();
        for (int i = 0; i < BURST; i++)
            if (upulsar_send(prod, payload, sizeof payload, NULL, NULL))
                errors++;
        sm->s[s] = (double)(thread_ns() - t) / BURST;
        struct timespec pause = {0, 2000000}; /* let the loop drain */
        nanosleep(&pause, NULL);
    }
    return NULL;
}

/* ---- C: upulsar_send_many ---- */
#define C_KINDS 3
static const int c_batch[C_KINDS] = {1, 16, 64}; /* 1: upulsar_send() */

static bool e_keyed; /* case E: each message with a key */
static char e_keys[1000][16];

static void *send_many_thread(void *a)
{
    samples_t *sm = a; /* C_KINDS of them */
    char payload[100];
    memset(payload, 'p', sizeof payload);
    upulsar_msg_t msgs[64];
    upulsar_send_opts_t o[64];
    uint32_t rnd = 1;
    for (int i = 0; i < 64; i++)
        msgs[i] = (upulsar_msg_t){payload, sizeof payload, e_keyed ? &o[i] : NULL};
    for (int s = 0; s < SAMPLES; s++)
        for (int k = 0; k < C_KINDS; k++) {
            int b = c_batch[k], calls = BURST / b; /* about BURST messages */
            uint64_t t = thread_ns();
            for (int i = 0; i < calls; i++) {
                /* the keys of the call's messages (also timed, as an
                 * application setting them would be) */
                for (int j = 0; e_keyed && j < b; j++) {
                    rnd = rnd * 1664525u + 1013904223u;
                    o[j] = (upulsar_send_opts_t){.partition_key = e_keys[(rnd >> 8) % 1000]};
                }
                if (b == 1) {
                    if (upulsar_send(prod, payload, sizeof payload, msgs[0].opts, NULL))
                        errors++;
                } else {
                    size_t acc;
                    if (upulsar_send_many(prod, msgs, (size_t)b, NULL, &acc))
                        errors++;
                }
            }
            sm[k].s[s] = (double)(thread_ns() - t) / (calls * b);
            struct timespec pause = {0, 2000000}; /* let the loop drain */
            nanosleep(&pause, NULL);
        }
    return NULL;
}

/* ---- D: upulsar_send() with futures ---- */
static void *future_thread(void *a)
{
    samples_t *sm = a;
    char payload[100];
    memset(payload, 'p', sizeof payload);
    upulsar_future_t **f = calloc(BURST, sizeof *f);
    for (int s = 0; s < SAMPLES; s++) {
        uint64_t t = thread_ns();
        for (int i = 0; i < BURST; i++)
            if (upulsar_send(prod, payload, sizeof payload, NULL, &f[i])) {
                errors++;
                f[i] = NULL;
            }
        uint64_t sent = thread_ns() - t;
        struct timespec pause = {0, 2000000}; /* the loop drains, the broker acks */
        nanosleep(&pause, NULL);
        t = thread_ns();
        for (int i = 0; i < BURST; i++)
            if (f[i]) {
                if (upulsar_future_wait(f[i], 10000, NULL))
                    errors++;
                upulsar_future_release(f[i]);
            }
        sm->s[s] = (double)(sent + thread_ns() - t) / BURST;
    }
    free(f);
    return NULL;
}

/* Cases B and D: @p t threads of @p fn, then the median per message. */
static void run_senders(void *(*fn)(void *), int t, samples_t *sm)
{
    pthread_t th[64];
    for (int i = 0; i < t; i++)
        pthread_create(&th[i], NULL, fn, &sm[i]);
    for (int i = 0; i < t; i++)
        pthread_join(th[i], NULL);
    upulsar_producer_flush(prod, 10000);
    printf("   %d sender thread(s): median %.1f ns per message per thread\n", t,
           median_of(sm, t));
}

int main(int argc, char **argv)
{
    int maxt = argc > 1 ? atoi(argv[1]) : 4;
    const char *cases = argc > 2 ? argv[2] : "ABC";
    if (maxt < 1 || maxt > 64)
        maxt = 4;
    samples_t *sm = calloc((size_t)maxt, sizeof *sm);
    pthread_t th[64], cons;

    if (strchr(cases, 'A'))
        printf("A. MPSC ring, 132-byte records, one consumer thread (thread CPU time)\n");
    for (int t = 1; t <= maxt && strchr(cases, 'A'); t++) {
        up_ring_init(&ring, 4u << 20);
        atomic_store(&done_producers, 0);
        pthread_create(&cons, NULL, ring_consumer, &t);
        for (int i = 0; i < t; i++)
            pthread_create(&th[i], NULL, ring_producer, &sm[i]);
        for (int i = 0; i < t; i++)
            pthread_join(th[i], NULL);
        pthread_join(cons, NULL);
        printf("   %d producer thread(s): median %.1f ns per message per thread\n", t,
               median_of(sm, t));
        up_ring_destroy(&ring);
    }

    if (!strpbrk(cases, "BCDE"))
        goto out;
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.perf = 1;
    o.max_retained_bytes = 16u << 20;
    upulsar_tb_t *tb;
    if (upulsar_tb_start(&o, &tb)) {
        fprintf(stderr, "broker: %s\n", upulsar_last_error());
        return 1;
    }
    /* the topic has the 4 partitions the producer is given (the broker
     * would otherwise report it non-partitioned, and the producer would
     * produce to it as one) */
    if (upulsar_tb_set_partitions(tb, "ring-bench", 4)) {
        fprintf(stderr, "broker: %s\n", upulsar_last_error());
        return 1;
    }
    upulsar_conf_t *conf = upulsar_conf_new();
    upulsar_conf_set(conf, "service.url", upulsar_tb_url(tb), NULL, 0);
    if (getenv("QUEUE_BYTES"))
        upulsar_conf_set(conf, "queue.buffer.bytes", getenv("QUEUE_BYTES"), NULL, 0);
    upulsar_client_t *client;
    if (upulsar_client_new(conf, &client) ||
        upulsar_producer_start(client, NULL, "ring-bench", 4, conf, &prod)) {
        fprintf(stderr, "client: %s\n", upulsar_last_error());
        return 1;
    }
    if (strchr(cases, 'B'))
        printf("B. upulsar_send(), 100-byte messages, 4 partitions, embedded broker in-process "
               "(thread CPU time)\n");
    for (int t = 1; t <= maxt && strchr(cases, 'B'); t++)
        run_senders(send_thread, t, sm);
    for (int i = 0; i < 1000; i++)
        snprintf(e_keys[i], sizeof e_keys[i], "key-%d", i);
    for (const char *c = "CE"; *c; c++) {
        if (!strchr(cases, *c))
            continue;
        e_keyed = *c == 'E';
        if (e_keyed)
            printf("E. as C, each message with one of 1000 partition keys\n");
        else
            printf("C. upulsar_send_many(), 100-byte messages, 1 sender thread, same setup "
                   "(thread CPU time; the kinds take turns)\n");
        samples_t *cm = calloc(C_KINDS, sizeof *cm);
        pthread_create(&th[0], NULL, send_many_thread, cm);
        pthread_join(th[0], NULL);
        upulsar_producer_flush(prod, 10000);
        for (int k = 0; k < C_KINDS; k++) {
            if (c_batch[k] == 1)
                printf("   upulsar_send():                  median %.1f ns per message\n",
                       median_of(&cm[k], 1));
            else
                printf("   upulsar_send_many() of %2d:       median %.1f ns per message\n",
                       c_batch[k], median_of(&cm[k], 1));
        }
        free(cm);
    }
    if (strchr(cases, 'D'))
        printf("D. upulsar_send() with a future per message, then each future waited for and "
               "released (thread CPU time of both)\n");
    for (int t = 1; t <= maxt && strchr(cases, 'D'); t++)
        run_senders(future_thread, t, sm);
    if (atomic_load(&errors))
        printf("   (%llu sends failed)\n", (unsigned long long)atomic_load(&errors));
    upulsar_producer_stop(prod, 10000);
    upulsar_client_destroy(client);
    upulsar_conf_destroy(conf);
    upulsar_tb_stop(tb);
out:
    free(sm);
    return 0;
}
