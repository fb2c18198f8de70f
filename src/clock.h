/* clock.h -- timed condition-variable waits on the monotonic clock.
 *
 * Every deadline inside the library is a point of up_now_us() (below:
 * CLOCK_MONOTONIC, microseconds). A condition variable whose waits have a
 * timeout is created with up_cond_init_monotonic(), and a wait until such a
 * deadline passes up_deadline_ts(deadline_us) to pthread_cond_timedwait():
 * a change of the wall clock neither shortens nor stretches the wait.
 * Thread safety: any thread. @internal */
#ifndef UP_CLOCK_H
#define UP_CLOCK_H
#include <pthread.h>
#include <stdint.h>
#include <time.h>

/** Now on the monotonic clock, microseconds. @thread any */
static inline uint64_t up_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/** Now on the wall clock (CLOCK_REALTIME), milliseconds since the epoch:
 *  only for times the broker sees (publish time, deliver_at). @thread any */
static inline uint64_t up_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/** Initialise @p cv so that its timed waits measure CLOCK_MONOTONIC.
 *  Returns pthread_cond_init()'s result (0 or an errno value). */
static inline int up_cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    int rc = pthread_condattr_init(&a);
    if (rc)
        return rc;
    rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (!rc)
        rc = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return rc;
}

/** The absolute time for pthread_cond_timedwait() on a condition variable
 *  of up_cond_init_monotonic() that ends the wait at @p deadline_us (a
 *  point of up_now_us(); one already passed ends it at once). */
static inline struct timespec up_deadline_ts(uint64_t deadline_us)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline_us / 1000000u);
    ts.tv_nsec = (long)(deadline_us % 1000000u) * 1000L;
    return ts;
}

#endif
