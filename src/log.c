/* log.c -- the client's log lines: to the application's callback, or
 * warnings and errors to stderr. Off the hot path (faults, re-creations). */
#include <stdarg.h>
#include <stdio.h>

#include "engine.h"
#include "err.h"

upulsar_err_t upulsar_client_set_log_cb(upulsar_client_t *c, upulsar_log_cb_t cb, void *opaque)
{
    if (!c)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "client is NULL");
    pthread_mutex_lock(&c->log_lock);
    c->log_cb = cb;
    c->log_opaque = opaque;
    pthread_mutex_unlock(&c->log_lock);
    return UPULSAR_OK;
}

void up_log(struct upulsar_client *c, upulsar_log_level_t level, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* called outside the lock: a callback may replace itself, and a slow
     * one holds up only its own thread */
    pthread_mutex_lock(&c->log_lock);
    upulsar_log_cb_t cb = c->log_cb;
    void *opaque = c->log_opaque;
    pthread_mutex_unlock(&c->log_lock);
    if (cb)
        cb(level, line, opaque);
    else if (level <= UPULSAR_LOG_WARNING)
        fprintf(stderr, "upulsar: %s\n", line);
}
