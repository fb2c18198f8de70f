/* err.c -- error names, texts and the thread-local last-error detail. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

#include "pb.h"

static const struct {
    upulsar_err_t code;
    const char *name;
    const char *text;
} errs[] = {
#define E(c, t) {c, #c, t}
    E(UPULSAR_OK, "Success"),
    E(UPULSAR_ERR__INVALID_ARG, "Local: invalid argument"),
    E(UPULSAR_ERR__NOMEM, "Local: out of memory"),
    E(UPULSAR_ERR__TIMED_OUT, "Local: timed out"),
    E(UPULSAR_ERR__QUEUE_FULL, "Local: producer queue is full"),
    E(UPULSAR_ERR__CLOSED, "Local: producer or client is closed"),
    E(UPULSAR_ERR__MSG_TOO_LARGE, "Local: message larger than the broker's max_message_size"),
    E(UPULSAR_ERR__INVALID_TOPIC, "Local: invalid topic name"),
    E(UPULSAR_ERR__INVALID_URL, "Local: invalid service URL"),
    E(UPULSAR_ERR__CONNECT, "Local: could not connect to the broker"),
    E(UPULSAR_ERR__PROTOCOL, "Local: protocol violation by the peer"),
    E(UPULSAR_ERR__BAD_CHECKSUM, "Local: CRC32C checksum mismatch"),
    E(UPULSAR_ERR__FRAME_TOO_LARGE, "Local: frame larger than the maximum frame size"),
    E(UPULSAR_ERR__DECODE, "Local: could not decode protobuf or batch data"),
    E(UPULSAR_ERR__MSG_TIMED_OUT, "Local: message timed out (send.timeout.ms)"),
    E(UPULSAR_ERR__GROUP_FAILED, "Local: partition group failed (restart intensity exceeded)"),
    E(UPULSAR_ERR__IO, "Local: I/O error"),
    E(UPULSAR_ERR__NOT_SUPPORTED, "Local: not supported"),
    E(UPULSAR_ERR__PENDING, "Local: not resolved yet"),
    E(UPULSAR_ERR__LOOKUP, "Local: topic lookup failed"),
    E(UPULSAR_ERR__TLS, "Local: TLS failure"),
    E(UPULSAR_ERR__COMPRESSION, "Local: compression or decompression failed"),
    E(UPULSAR_ERR__STATE, "Local: invalid state for this call"),
    E(UPULSAR_ERR_UNKNOWN_ERROR, "Broker: unknown error"),
    E(UPULSAR_ERR_METADATA_ERROR, "Broker: metadata error"),
    E(UPULSAR_ERR_PERSISTENCE_ERROR, "Broker: persistence error"),
    E(UPULSAR_ERR_AUTHENTICATION_ERROR, "Broker: authentication failed"),
    E(UPULSAR_ERR_AUTHORIZATION_ERROR, "Broker: not authorized"),
    E(UPULSAR_ERR_CONSUMER_BUSY, "Broker: consumer busy"),
    E(UPULSAR_ERR_SERVICE_NOT_READY, "Broker: service not ready"),
    E(UPULSAR_ERR_PRODUCER_BLOCKED_QUOTA_EXCEEDED_ERROR, "Broker: producer blocked, backlog quota exceeded"),
    E(UPULSAR_ERR_PRODUCER_BLOCKED_QUOTA_EXCEEDED_EXCEPTION, "Broker: backlog quota exceeded"),
    E(UPULSAR_ERR_CHECKSUM_ERROR, "Broker: checksum error"),
    E(UPULSAR_ERR_UNSUPPORTED_VERSION_ERROR, "Broker: unsupported protocol version"),
    E(UPULSAR_ERR_TOPIC_NOT_FOUND, "Broker: topic not found"),
    E(UPULSAR_ERR_SUBSCRIPTION_NOT_FOUND, "Broker: subscription not found"),
    E(UPULSAR_ERR_CONSUMER_NOT_FOUND, "Broker: consumer not found"),
    E(UPULSAR_ERR_TOO_MANY_REQUESTS, "Broker: too many requests"),
    E(UPULSAR_ERR_TOPIC_TERMINATED, "Broker: topic terminated"),
    E(UPULSAR_ERR_PRODUCER_BUSY, "Broker: producer with this name is already connected"),
    E(UPULSAR_ERR_INVALID_TOPIC_NAME, "Broker: invalid topic name"),
    E(UPULSAR_ERR_INCOMPATIBLE_SCHEMA, "Broker: incompatible schema"),
    E(UPULSAR_ERR_CONSUMER_ASSIGN_ERROR, "Broker: consumer assign error"),
    E(UPULSAR_ERR_TRANSACTION_COORDINATOR_NOT_FOUND, "Broker: transaction coordinator not found"),
    E(UPULSAR_ERR_INVALID_TXN_STATUS, "Broker: invalid transaction status"),
    E(UPULSAR_ERR_NOT_ALLOWED, "Broker: not allowed"),
    E(UPULSAR_ERR_TRANSACTION_CONFLICT, "Broker: transaction conflict"),
    E(UPULSAR_ERR_TRANSACTION_NOT_FOUND, "Broker: transaction not found"),
    E(UPULSAR_ERR_PRODUCER_FENCED, "Broker: producer fenced"),
#undef E
};

static int find(upulsar_err_t e)
{
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
        if (errs[i].code == e)
            return (int)i;
    return -1;
}

const char *upulsar_err_str(upulsar_err_t err)
{
    int i = find(err);
    return i < 0 ? "Unknown error code" : errs[i].text;
}

const char *upulsar_err_name(upulsar_err_t err)
{
    int i = find(err);
    return i < 0 ? "UPULSAR_ERR_UNKNOWN_CODE" : errs[i].name;
}

int upulsar_err_is_retriable(upulsar_err_t err)
{
    switch (err) {
    case UPULSAR_ERR__TIMED_OUT:
    case UPULSAR_ERR__QUEUE_FULL:
    case UPULSAR_ERR__CONNECT:
    case UPULSAR_ERR__PROTOCOL:
    case UPULSAR_ERR__IO:
    case UPULSAR_ERR__LOOKUP:
    case UPULSAR_ERR__MSG_TIMED_OUT:
    case UPULSAR_ERR_UNKNOWN_ERROR:
    case UPULSAR_ERR_METADATA_ERROR:
    case UPULSAR_ERR_PERSISTENCE_ERROR:
    case UPULSAR_ERR_SERVICE_NOT_READY:
    case UPULSAR_ERR_CHECKSUM_ERROR:
    case UPULSAR_ERR_TOO_MANY_REQUESTS:
    case UPULSAR_ERR_PRODUCER_BLOCKED_QUOTA_EXCEEDED_ERROR:
        return 1;
    default:
        return 0;
    }
}

static _Thread_local char last_error[256];
static _Thread_local upulsar_err_t last_error_code;
/* shown instead of last_error (a failed message's detail during its
 * delivery callback), until the next up_seterr() */
static _Thread_local const char *shown_error;

const char *upulsar_last_error(void) { return shown_error ? shown_error : last_error; }

void up_show_error(const char *text) { shown_error = text; }

upulsar_err_t up_seterr(upulsar_err_t err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    last_error_code = err;
    shown_error = NULL;
    return err;
}

const char *up_last_error_for(upulsar_err_t err)
{
    return last_error_code == err && last_error[0] ? last_error : upulsar_err_str(err);
}

static _Thread_local int thread_role;

void up_thread_set_role(int role) { thread_role = role; }

int up_thread_role(void) { return thread_role; }

const char *up_thread_role_name(int role)
{
    switch (role) {
    case UP_THREAD_LOOP: return "io loop";
    case UP_THREAD_WATCHDOG: return "watchdog";
    case UP_THREAD_WORKER: return "establish worker";
    case UP_THREAD_POLLER: return "partition poller";
    case UP_THREAD_APP_CB: return "application (in a log callback)";
    default: return "application";
    }
}

upulsar_err_t up_refuse_in_callback(const char *fn)
{
    if (thread_role == UP_THREAD_APP_CB)
        return up_seterr(UPULSAR_ERR__STATE,
                         "%s() called from a upulsar log callback running inside a library "
                         "call on the application's thread: refused, it would wait for that "
                         "call or free what it uses; call it after that call returns",
                         fn);
    return up_seterr(UPULSAR_ERR__STATE,
                     "%s() called from a upulsar callback (on the library's %s thread): "
                     "refused, it would wait for the thread running the callback; call it "
                     "from an application thread",
                     fn, up_thread_role_name(thread_role));
}

const char *up_server_error_name(int server_error)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&pulsar__proto__server_error__descriptor, server_error);
    if (v && v->name)
        return v->name;
    static _Thread_local char buf[32];
    snprintf(buf, sizeof buf, "ServerError(%d)", server_error);
    return buf;
}
