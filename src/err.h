/* err.h -- internal error helpers. @internal */
#ifndef UP_ERR_H
#define UP_ERR_H
#include "upulsar/upulsar.h"

/** Record @p err with a printf-style detail as the calling thread's last
 *  error (upulsar_last_error()); returns @p err so callers can
 *  `return up_seterr(UPULSAR_ERR__INVALID_ARG, "topic: ...");`. */
upulsar_err_t up_seterr(upulsar_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** The calling thread's last error text if it was recorded for @p err,
 *  else @p err's generic description: the detail of a failure to log. */
const char *up_last_error_for(upulsar_err_t err);

/* ---- the library's own threads, where callbacks run ---- */

/** What the calling thread is: UP_THREAD_APP (0) for any thread the
 *  application made, else one of the library's threads, which run the
 *  application's callbacks (delivery, free_cb, statistics, log), or
 *  UP_THREAD_APP_CB: an application thread while a log callback runs on it
 *  from inside a library call (a failed connection attempt of
 *  upulsar_producer_start(), a misuse reported), where the callback rules
 *  apply as on a library thread (log.c). */
enum {
    UP_THREAD_APP = 0,
    UP_THREAD_LOOP,
    UP_THREAD_WATCHDOG,
    UP_THREAD_WORKER,
    UP_THREAD_POLLER,
    UP_THREAD_APP_CB
};

/** Set by each library thread once, when it starts. */
void up_thread_set_role(int role);
/** The calling thread's UP_THREAD_*. Thread-local, no atomics. */
int up_thread_role(void);
/** "io loop", "watchdog", "establish worker", "partition poller",
 *  "application (in a log callback)" or "application". */
const char *up_thread_role_name(int role);

/** UPULSAR_ERR__STATE with the detail that @p fn (a public function name)
 *  cannot be called from a upulsar callback: on a library thread it would
 *  wait for that thread, or free what it is using. See "Callbacks" in
 *  upulsar.h. */
upulsar_err_t up_refuse_in_callback(const char *fn);
/** Make upulsar_last_error() on the calling thread return @p text (which
 *  must stay valid meanwhile) until the next up_seterr() on this thread or
 *  up_show_error(NULL): the detail of a failed message during its delivery
 *  callback. One thread-local store, no copy. */
void up_show_error(const char *text);

/** Pulsar's name of a ServerError wire value ("TopicTerminatedError"), or
 *  "ServerError(<n>)" for one this build does not know (in a static
 *  thread-local buffer). */
const char *up_server_error_name(int server_error);

/** Map a Pulsar ServerError wire value to upulsar_err_t. */
static inline upulsar_err_t up_err_from_server(int server_error)
{
    if (server_error < 0 || server_error > UPULSAR_ERR_BROKER_MAX - UPULSAR_ERR_BROKER_BASE)
        return UPULSAR_ERR_UNKNOWN_ERROR;
    return (upulsar_err_t)(UPULSAR_ERR_BROKER_BASE + server_error);
}
#endif
