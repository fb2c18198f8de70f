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

/** Map a Pulsar ServerError wire value to upulsar_err_t. */
static inline upulsar_err_t up_err_from_server(int server_error)
{
    if (server_error < 0 || server_error > UPULSAR_ERR_BROKER_MAX - UPULSAR_ERR_BROKER_BASE)
        return UPULSAR_ERR_UNKNOWN_ERROR;
    return (upulsar_err_t)(UPULSAR_ERR_BROKER_BASE + server_error);
}
#endif
