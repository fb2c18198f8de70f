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
