/* rp_state.c -- the lifecycle of one real producer: the table of allowed
 * transitions, the transition function, the public state, and the
 * classification of creation errors (rp_state.h). */
#include "rp_state.h"

#include <stdlib.h>

/* The allowed transitions: allowed[from][to]. What makes each happen:
 *
 *  LAZY        -> BACKOFF_NOW  its first message (send.c): the supervisor
 *                              creates it at once
 *  CONNECTING  -> READY        PRODUCER_SUCCESS, attached on its loop
 *                              (producer.c up_rp_attach)
 *  CONNECTING, READY
 *              -> BACKOFF      the connection was lost, or the PRODUCER
 *                              request failed (producer.c), or the
 *                              creation attempt failed (watchdog.c,
 *                              partition growth)
 *  CONNECTING, READY, BACKOFF*
 *              -> BACKOFF_NOW  CLOSE_PRODUCER naming the new owner,
 *                              TOPIC_MIGRATED (producer.c)
 *              -> BACKOFF_GRACEFUL
 *                              CLOSE_PRODUCER naming no owner (producer.c);
 *                              the later close wins over an earlier one
 *  BACKOFF*    -> CONNECTING   the supervisor's attempt is due (watchdog.c),
 *                              a creation at start retried
 *                              (up_establish_all), or registered on the
 *                              connection of the attempt under way
 *                              (producer.c up_rp_register): what happened
 *                              before the registration no longer matters
 *  any but FAILED, CLOSING, CLOSED
 *              -> FAILED       terminal error: a SEND_ERROR, the group
 *                              failed (producer.c up_rp_fail_why)
 *              -> CLOSING      stop (partitioned_stop.c)
 *  CLOSING     -> CLOSED       stop done (partitioned_stop.c)
 *
 * Not allowed, on purpose: BACKOFF* -> READY (a producer attaches only
 * from an attempt registered on its connection: a close or a lost
 * connection after the registration refuses the attach); BACKOFF_NOW /
 * BACKOFF_GRACEFUL -> BACKOFF (a lost connection does not erase why the
 * broker closed it); anything out of FAILED or CLOSED; FAILED and CLOSING
 * do not go to each other (a stop does not un-fail a producer; a failure
 * during a stop changes nothing, its messages fail with CLOSED). */
enum { C = UP_RP_CONNECTING, R = UP_RP_READY, B = UP_RP_BACKOFF, F = UP_RP_FAILED,
       X = UP_RP_CLOSED, L = UP_RP_LAZY, BN = UP_RP_BACKOFF_NOW, BG = UP_RP_BACKOFF_GRACEFUL,
       CG = UP_RP_CLOSING };

static const bool allowed[UP_RP_NSTATES][UP_RP_NSTATES] = {
    /*              to:  C  R  B  F  X  L  BN BG CG */
    [C]  = {[R] = 1, [B] = 1, [BN] = 1, [BG] = 1, [F] = 1, [CG] = 1},
    [R]  = {[B] = 1, [BN] = 1, [BG] = 1, [F] = 1, [CG] = 1},
    [B]  = {[C] = 1, [BN] = 1, [BG] = 1, [F] = 1, [CG] = 1},
    [BN] = {[C] = 1, [BG] = 1, [F] = 1, [CG] = 1},
    [BG] = {[C] = 1, [BN] = 1, [F] = 1, [CG] = 1},
    [L]  = {[BN] = 1, [F] = 1, [CG] = 1},
    [CG] = {[X] = 1},
    [F]  = {0},
    [X]  = {0},
};

bool up_rp_allowed(up_rp_st_t from, up_rp_st_t to)
{
    return (unsigned)from < UP_RP_NSTATES && (unsigned)to < UP_RP_NSTATES && allowed[from][to];
}

const char *up_rp_st_name(up_rp_st_t st)
{
    switch (st) {
    case UP_RP_CONNECTING: return "CONNECTING";
    case UP_RP_READY: return "READY";
    case UP_RP_BACKOFF: return "BACKOFF";
    case UP_RP_FAILED: return "FAILED";
    case UP_RP_CLOSED: return "CLOSED";
    case UP_RP_LAZY: return "LAZY";
    case UP_RP_BACKOFF_NOW: return "BACKOFF_NOW";
    case UP_RP_BACKOFF_GRACEFUL: return "BACKOFF_GRACEFUL";
    case UP_RP_CLOSING: return "CLOSING";
    case UP_RP_NSTATES: break;
    }
    return "UNKNOWN";
}

upulsar_producer_state_t up_rp_public_of(up_rp_st_t st)
{
    switch (st) {
    case UP_RP_READY: return UPULSAR_STATE_READY;
    case UP_RP_BACKOFF:
    case UP_RP_BACKOFF_NOW:
    case UP_RP_BACKOFF_GRACEFUL: return UPULSAR_STATE_BACKOFF;
    case UP_RP_FAILED: return UPULSAR_STATE_FAILED;
    case UP_RP_CLOSING:
    case UP_RP_CLOSED: return UPULSAR_STATE_CLOSED;
    case UP_RP_CONNECTING:
    case UP_RP_LAZY:
    case UP_RP_NSTATES: break;
    }
    return UPULSAR_STATE_CONNECTING;
}

/* ---- the transition log (UPULSAR_DEBUG_STATE) ---- */

static _Atomic int debug_on = -1; /* -1: not read from the environment yet */

void up_rp_state_debug(int on) { atomic_store(&debug_on, on < 0 ? -1 : on != 0); }

static bool debug_enabled(void)
{
    int on = atomic_load_explicit(&debug_on, memory_order_relaxed);
    if (on < 0) {
        const char *v = getenv("UPULSAR_DEBUG_STATE");
        on = v && v[0] && !(v[0] == '0' && !v[1]);
        int unset = -1;
        atomic_compare_exchange_strong(&debug_on, &unset, on);
    }
    return on != 0;
}

void (*_Atomic up_rp_state_test_hook)(up_rp_t *rp);

void up_rp_state_init(up_rp_t *rp, up_rp_st_t st) { atomic_init(&rp->state, (int)st); }

bool up_rp_transition(up_rp_t *rp, unsigned from, up_rp_st_t to, const char *why)
{
    int cur = atomic_load_explicit(&rp->state, memory_order_acquire);
    for (;;) {
        up_rp_st_t st = (up_rp_st_t)(cur & UP_RP_ST_MASK);
        if (!(from & UP_RP_BIT(st)))
            return false;
        if (!up_rp_allowed(st, to)) {
            if (debug_enabled() || up_log_on(rp->client, UP_LOG_DEBUG))
                up_log_rp(rp, UP_LOG_DEBUG, UPULSAR_OK, "%s: producer %llu: %s -> %s refused: %s",
                       rp->topic, (unsigned long long)rp->producer_id, up_rp_st_name(st),
                       up_rp_st_name(to), why);
            return false;
        }
        int next = (cur & ~UP_RP_ST_MASK) | (int)to | (to == UP_RP_READY ? UP_RP_CREATED : 0);
        void (*hook)(up_rp_t *) = atomic_load_explicit(&up_rp_state_test_hook, memory_order_relaxed);
        if (hook)
            hook(rp);
        /* seq_cst, as the stores it replaces: a failure's error code
         * (up_rp_t.failed) is stored before the state says FAILED */
        if (atomic_compare_exchange_weak(&rp->state, &cur, next)) {
            /* what the supervisor acts on: it walks the handle's producers
             * at its next pass (watchdog.c, supervise) */
            if (rp->handle && ((UP_RP_IN_BACKOFF | UP_RP_BIT(UP_RP_FAILED)) & UP_RP_BIT(to)))
                atomic_store_explicit(&rp->handle->wd_dirty, 1, memory_order_release);
            if (debug_enabled() || up_log_on(rp->client, UP_LOG_DEBUG))
                up_log_rp(rp, UP_LOG_DEBUG, UPULSAR_OK, "%s: producer %llu: %s -> %s: %s", rp->topic,
                       (unsigned long long)rp->producer_id, up_rp_st_name(st),
                       up_rp_st_name(to), why);
            return true;
        }
    }
}

/* ---- error classification ---- */

/* See up_err_class_t. A creation's error: before the first creation, a refusal that says the
 * topic, the credentials or the schema are wrong is terminal (start fails
 * with it; a lazy or grown partition's group fails).
 *
 * Once a producer has been created, waiting can change every answer but
 * two, and the official clients retry all others with backoff
 * (pulsar-client-cpp: ProducerImpl::handleCreateProducer retries any
 * PRODUCER error of a producer created before except ProducerFenced and
 * TopicTerminated; HandlerBase::grabCnx schedules a reconnection after
 * every failure to get a connection, lookup and CONNECT refusals
 * included). So for such a producer only these are terminal:
 *  - ProducerFenced (another producer took the topic), TopicTerminated;
 *  - ProducerBusy in an exclusive access mode: another exclusive producer
 *    holds the topic (the C++ client retries this one; upulsar fails the
 *    group so the application learns it lost the topic; in Shared mode it
 *    is a name clash while the broker still holds the previous
 *    incarnation, retried).
 * AuthenticationError (a token refused at a refresh), AuthorizationError
 * (permissions taken away for a while), TopicNotFound and the others are
 * retried: each refusal is logged, restart.intensity (when set) still
 * bounds the attempts, and pending messages keep their send.timeout.ms.
 *
 * The backlog quota's producer_request_hold (ProducerBlockedQuotaExceeded
 * Error) is retriable for an application, but not retried at start, as the
 * official clients do: the quota clears only once consumers catch up. */
static up_err_class_t class_at_send(upulsar_err_t err)
{
    switch (err) {
    case UPULSAR_OK:
        return UP_ERR_CLASS_NONE;
    /* this entry is refused (a checksum the broker computed otherwise,
     * sent again by the producer first, up to UP_CHECKSUM_RESENDS times; a
     * size or an option it does not allow); the ones behind it are
     * unaffected */
    case UPULSAR_ERR_CHECKSUM_ERROR:
    case UPULSAR_ERR_NOT_ALLOWED:
        return UP_ERR_CLASS_ENTRY;
    /* the broker will take nothing more from this producer */
    case UPULSAR_ERR_TOPIC_TERMINATED:
    case UPULSAR_ERR_PRODUCER_FENCED:
    case UPULSAR_ERR_AUTHORIZATION_ERROR:
        return UP_ERR_CLASS_TERMINAL;
    /* anything else closes the connection, as the official clients do; the
     * producer is re-created on a new one (that creation classified in
     * turn) and resends from its head. (A CLOSE_PRODUCER and a new
     * PRODUCER on the same connection could be answered for the producer
     * still closing, whose SENDs then fail again.) */
    default:
        return upulsar_err_is_retriable(err) ? UP_ERR_CLASS_TRANSIENT : UP_ERR_CLASS_REFUSED;
    }
}

up_err_class_t up_err_classify(upulsar_err_t err, up_err_when_t when, bool exclusive)
{
    if (when == UP_ERR_AT_SEND)
        return class_at_send(err);
    bool created_once = when == UP_ERR_AT_RECREATE;
    switch (err) {
    case UPULSAR_OK:
        return UP_ERR_CLASS_NONE;
    case UPULSAR_ERR_PRODUCER_FENCED:
    case UPULSAR_ERR_TOPIC_TERMINATED:
        return UP_ERR_CLASS_TERMINAL;
    case UPULSAR_ERR_PRODUCER_BUSY:
        return exclusive ? UP_ERR_CLASS_TERMINAL : UP_ERR_CLASS_REFUSED;
    case UPULSAR_ERR_AUTHORIZATION_ERROR:
    case UPULSAR_ERR_AUTHENTICATION_ERROR:
    case UPULSAR_ERR_TOPIC_NOT_FOUND:
    case UPULSAR_ERR_INVALID_TOPIC_NAME:
    case UPULSAR_ERR_INCOMPATIBLE_SCHEMA:
        return created_once ? UP_ERR_CLASS_REFUSED : UP_ERR_CLASS_TERMINAL;
    case UPULSAR_ERR_PRODUCER_BLOCKED_QUOTA_EXCEEDED_ERROR:
        return UP_ERR_CLASS_REFUSED;
    default:
        return upulsar_err_is_retriable(err) ? UP_ERR_CLASS_TRANSIENT : UP_ERR_CLASS_REFUSED;
    }
}
