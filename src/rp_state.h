/* rp_state.h -- the lifecycle of one real producer (up_rp_t.state): its
 * states, the one table of allowed transitions (rp_state.c), the one
 * function that changes the state, and the one classification of the
 * errors that end or delay its creation.
 *
 * Every change of up_rp_t.state goes through up_rp_transition(): a
 * compare-and-swap loop that refuses (returns false, changes nothing) a
 * transition the table does not allow. FAILED and CLOSED have no way out,
 * so a thread acting on a state it read earlier (the watchdog moving a
 * producer out of BACKOFF) can never undo a failure decided meanwhile on
 * another thread: its transition is refused and it must act on that.
 *
 * The state word holds the state (UP_RP_ST_MASK) and the flag
 * UP_RP_CREATED, set by the first transition to READY and never cleared:
 * the producer was created on a broker once (its sequence ids and name are
 * known; from then on fewer errors end it, see up_err_class()).
 *
 * Diagnostics: with the environment variable UPULSAR_DEBUG_STATE set (to
 * anything but "" or "0") when the first transition happens, every
 * transition and every refusal is logged with its reason through up_log()
 * at UP_LOG_DEBUG (syslog's debug, 7), which reaches a log callback only
 * (stderr shows warnings and errors). Off, nothing is logged here: the
 * transitions that matter to an application (a lost connection, a refused
 * re-creation, a failed group) are logged where they are decided.
 * @internal
 */
#ifndef UP_RP_STATE_H
#define UP_RP_STATE_H
#include <stdatomic.h>
#include <stdbool.h>

#include "engine.h"

/* The states. The first five have the values of the public
 * upulsar_producer_state_t; the others are finer states the public one is
 * derived from (up_rp_public_state()). */
typedef enum up_rp_st {
    UP_RP_CONNECTING = 0, /* being created: the first creation, or a
                             re-creation handed to an establish worker */
    UP_RP_READY = 1,      /* attached to its connection: entries are written */
    UP_RP_BACKOFF = 2,    /* not attached (connection lost, a creation
                             failed): the supervisor re-creates it after the
                             backoff delay, the attempt counted for
                             restart.intensity */
    UP_RP_FAILED = 3,     /* terminal error (up_rp_t.failed holds it) */
    UP_RP_CLOSED = 4,     /* closed by upulsar_producer_stop() */
    UP_RP_LAZY = 5,       /* lazy.start.partitions: not created until its
                             first message */
    UP_RP_BACKOFF_NOW = 6,      /* BACKOFF after a graceful close naming where
                                   to go (CLOSE_PRODUCER with an assigned
                                   broker, TOPIC_MIGRATED) or a lazy
                                   producer's first message: re-created at
                                   once, not counted */
    UP_RP_BACKOFF_GRACEFUL = 7, /* BACKOFF after a CLOSE_PRODUCER naming no
                                   new owner (an unload, a broker shutting
                                   down): re-created after the backoff
                                   delay, not counted */
    UP_RP_CLOSING = 8,    /* stop under way: what it holds fails with
                             CLOSED, it is never re-created */
    UP_RP_NSTATES
} up_rp_st_t;

#define UP_RP_ST_MASK 0xff
#define UP_RP_CREATED 0x100 /* flag: attached (READY) once */

/* Sets of states, for the @p from of up_rp_transition() */
#define UP_RP_BIT(s) (1u << (s))
#define UP_RP_ANY ((1u << UP_RP_NSTATES) - 1u)
#define UP_RP_IN_BACKOFF \
    (UP_RP_BIT(UP_RP_BACKOFF) | UP_RP_BIT(UP_RP_BACKOFF_NOW) | UP_RP_BIT(UP_RP_BACKOFF_GRACEFUL))

/* A log level below the public ones: syslog's debug. */
#define UP_LOG_DEBUG ((upulsar_log_level_t)7)

/** The state @p rp starts in (LAZY or CONNECTING), before any other thread
 *  sees it. Also used by tests to put a producer in a given state.
 *  @thread the creating thread */
void up_rp_state_init(up_rp_t *rp, up_rp_st_t st);

/** Move @p rp to @p to if its current state is in the set @p from
 *  (UP_RP_BIT()s, UP_RP_ANY) and the table allows the transition; @p why
 *  says what happened (logged with UPULSAR_DEBUG_STATE). Returns false,
 *  changing nothing, when the state is not in @p from (silently) or the
 *  table refuses (logged with UPULSAR_DEBUG_STATE); the caller must not act
 *  as if the transition happened. A transition to READY sets UP_RP_CREATED.
 *  @thread any */
bool up_rp_transition(up_rp_t *rp, unsigned from, up_rp_st_t to, const char *why);

/** Whether the table allows @p from -> @p to. @thread any */
bool up_rp_allowed(up_rp_st_t from, up_rp_st_t to);

/** The state of @p rp. @thread any */
static inline up_rp_st_t up_rp_st(const up_rp_t *rp)
{
    return (up_rp_st_t)(atomic_load_explicit(&((up_rp_t *)rp)->state, memory_order_acquire) &
                        UP_RP_ST_MASK);
}

/** The state of @p rp, relaxed (the send path's check for LAZY). @thread any */
static inline up_rp_st_t up_rp_st_relaxed(const up_rp_t *rp)
{
    return (up_rp_st_t)(atomic_load_explicit(&((up_rp_t *)rp)->state, memory_order_relaxed) &
                        UP_RP_ST_MASK);
}

/** Whether @p rp was attached (READY) once. @thread any */
static inline bool up_rp_created(const up_rp_t *rp)
{
    return (atomic_load_explicit(&((up_rp_t *)rp)->state, memory_order_acquire) &
            UP_RP_CREATED) != 0;
}

/** The public state of internal state @p st (introspection, statistics).
 *  @thread any */
upulsar_producer_state_t up_rp_public_of(up_rp_st_t st);

/** The public state of @p rp. @thread any */
static inline upulsar_producer_state_t up_rp_public_state(const up_rp_t *rp)
{
    return up_rp_public_of(up_rp_st(rp));
}

/** Name of internal state @p st ("BACKOFF_NOW"...). Static string.
 *  @thread any */
const char *up_rp_st_name(up_rp_st_t st);

/** Test hook: when set, up_rp_transition() calls it between reading the
 *  state and its compare-and-swap, so a test can change the state in
 *  between (NULL, the default: one relaxed load per transition). */
extern void (*_Atomic up_rp_state_test_hook)(up_rp_t *rp);

/** Turn the transition log on (1), off (0), or back to what
 *  UPULSAR_DEBUG_STATE says (-1). For tests. @thread any */
void up_rp_state_debug(int on);

/* ---- error classification ---- */

/* What an error means for the producer it ended an operation of (a
 * creation, or an entry it sent: up_err_when_t). */
typedef enum up_err_class {
    UP_ERR_CLASS_NONE = 0,  /* UPULSAR_OK */
    UP_ERR_CLASS_TRANSIENT, /* worth retrying at once: the broker or the
                               network is busy or moving (upulsar_err_is_retriable(),
                               but the backlog quota's hold); retried at
                               upulsar_producer_start() within
                               operation.timeout.ms, and by the supervisor;
                               at send: the connection is closed and the
                               producer re-created on a new one */
    UP_ERR_CLASS_REFUSED,   /* an answer that waiting may change (a name
                               clash, permissions, a quota): start fails
                               with it; the supervisor retries it with
                               backoff (restart.intensity bounds it); at
                               send: as TRANSIENT */
    UP_ERR_CLASS_TERMINAL,  /* ends the producer: start fails with it, the
                               supervisor fails its group, a SEND_ERROR
                               fails the producer (and so its group) */
    UP_ERR_CLASS_ENTRY,     /* (send only) the broker refused this one
                               entry: its messages fail, the producer and
                               the entries behind it carry on */
} up_err_class_t;

/* Where the error ended something. */
typedef enum up_err_when {
    UP_ERR_AT_CREATE = 0, /* a creation of a producer never created before
                             (start, lazy start, partition growth) */
    UP_ERR_AT_RECREATE,   /* a creation of a producer created once before
                             (the supervisor's re-creation) */
    UP_ERR_AT_SEND,       /* a SEND_ERROR for an entry of a READY producer */
} up_err_when_t;

/** Classify @p err, which ended what @p when says, for a producer in an
 *  exclusive access mode (@p exclusive: another producer holding the topic
 *  is terminal) or not. The one classification used by start
 *  (up_establish_all(), the partition count), the supervisor (watchdog.c)
 *  and SEND_ERROR handling (up_rp_on_send_error()). @thread any */
up_err_class_t up_err_classify(upulsar_err_t err, up_err_when_t when, bool exclusive);

/** up_err_classify() of an error that ended a creation of a producer that
 *  was (@p created_once) or was never created on a broker before.
 *  @thread any */
static inline up_err_class_t up_err_class(upulsar_err_t err, bool created_once, bool exclusive)
{
    return up_err_classify(err, created_once ? UP_ERR_AT_RECREATE : UP_ERR_AT_CREATE, exclusive);
}

#endif
