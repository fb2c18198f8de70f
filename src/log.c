/* log.c -- the client's log lines: to the application's callback (plain
 * or structured), or warnings and errors to stderr. Off the hot path
 * (faults, re-creations).
 *
 * Collapsing repeats. An outage on a partitioned topic makes every
 * partition's producer say the same thing (its connection dropped, its
 * re-creation failed, it was re-created). A line that names a partition
 * (partition >= 0, through up_log_at() / up_log_rp()) is keyed by its call
 * site (the format string), level, error and topic without the
 * "-partition-<n>" suffix. The first line of a key is delivered at once
 * and opens a window of UP_LOG_FOLD_US for the key; within it the lines of
 * the key for other partitions are held back and counted (the first of
 * them is kept). When the window ends (the watchdog's next pass, the next
 * line of the key, or the client's destroy), the kept line is delivered
 * once with " (and N more partitions)" appended, N being the other
 * partitions held back (upulsar_log_record_t.collapsed). A line of the key
 * for a partition already seen in the window (a second attempt of the same
 * producer) ends the window first, so each attempt of a producer is still
 * seen, in order; so does a line of another key for a partition held back
 * in a window (the window's summary goes out first: the lines of one
 * producer keep their order). So a round of N lines of one kind gives at most two
 * lines, and the partitions a line stands for add up to the N events.
 * Lines without a partition (connection attempts, dropped connections,
 * lines about the client) and debug lines are never collapsed. At most UP_LOG_FOLD_SLOTS
 * keys are collapsed at once; a line of another key then goes out as is. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "err.h"
#include "fault.h"

#define UP_LOG_FOLD_US 1000000u

_Atomic int up_fault_log_fold_ms;

/* The window: UP_LOG_FOLD_US, or what a test set (fault.h). */
static uint64_t fold_us(void)
{
    int ms = atomic_load_explicit(&up_fault_log_fold_ms, memory_order_relaxed);
    return ms > 0 ? (uint64_t)ms * 1000u : UP_LOG_FOLD_US;
}
#define UP_LOG_FOLD_SLOTS 16
#define UP_LOG_FOLD_PARTS 4096 /* partitions told apart in a window */
#define UP_LOG_LINE 512

typedef struct fold_slot {
    bool used;
    const char *fmt; /* the call site */
    int level;
    upulsar_err_t err;
    char base[256]; /* topic without -partition-<n> */
    uint64_t opened_us;
    uint8_t seen[UP_LOG_FOLD_PARTS / 8];
    unsigned held;  /* lines held back */
    /* the first line held back */
    char line[UP_LOG_LINE];
    char topic[256];
    int partition;
    char broker[280];
} fold_slot_t;

struct up_log_fold {
    fold_slot_t slot[UP_LOG_FOLD_SLOTS];
};

/* one line to deliver, outside log_lock */
typedef struct out_line {
    upulsar_log_level_t level;
    upulsar_err_t err;
    char line[UP_LOG_LINE + 48];
    char topic[256];
    int partition;
    char broker[280];
    unsigned collapsed;
} out_line_t;

upulsar_err_t upulsar_client_set_log_cb(upulsar_client_t *c, upulsar_log_cb_t cb, void *opaque)
{
    if (!c)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "client is NULL");
    pthread_mutex_lock(&c->log_lock);
    c->log_cb = cb;
    c->log_rcb = NULL;
    c->log_opaque = opaque;
    pthread_mutex_unlock(&c->log_lock);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_client_set_log_record_cb(upulsar_client_t *c, upulsar_log_record_cb_t cb,
                                               void *opaque)
{
    if (!c)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "client is NULL");
    pthread_mutex_lock(&c->log_lock);
    c->log_rcb = cb;
    c->log_cb = NULL;
    c->log_opaque = opaque;
    pthread_mutex_unlock(&c->log_lock);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_client_set_log_level(upulsar_client_t *c, upulsar_log_level_t level)
{
    if (!c)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "client is NULL");
    if ((int)level < UPULSAR_LOG_ERR || (int)level > UPULSAR_LOG_DEBUG)
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "log level %d: must be between UPULSAR_LOG_ERR (3) and "
                         "UPULSAR_LOG_DEBUG (7)",
                         (int)level);
    atomic_store_explicit(&c->log_level, (int)level, memory_order_relaxed);
    return UPULSAR_OK;
}

static int max_level(struct upulsar_client *c)
{
    int lv = atomic_load_explicit(&c->log_level, memory_order_relaxed);
    return lv ? lv : UPULSAR_LOG_INFO;
}

bool up_log_on(struct upulsar_client *c, upulsar_log_level_t level)
{
    return c && (int)level <= max_level(c);
}

/* Hand @p o to the callback, or stderr. Called without log_lock: a
 * callback may replace itself, and a slow one holds up only its thread. */
static void deliver(struct upulsar_client *c, const out_line_t *o)
{
    pthread_mutex_lock(&c->log_lock);
    upulsar_log_cb_t cb = c->log_cb;
    upulsar_log_record_cb_t rcb = c->log_rcb;
    void *opaque = c->log_opaque;
    pthread_mutex_unlock(&c->log_lock);
    /* on an application thread the line comes from inside a library call
     * (or client destroy): the callback rules apply there too */
    int role = up_thread_role();
    if (role == UP_THREAD_APP)
        up_thread_set_role(UP_THREAD_APP_CB);
    if (rcb) {
        upulsar_log_record_t r = {o->level, o->err,       o->topic, o->partition,
                                  o->broker, o->line, o->collapsed};
        rcb(&r, opaque);
    } else if (cb) {
        cb(o->level, o->line, opaque);
    } else if (o->level <= UPULSAR_LOG_WARNING) {
        fprintf(stderr, "upulsar: %s\n", o->line);
    }
    up_thread_set_role(role);
}

/* The length of @p topic without a "-partition-<digits>" suffix. */
static size_t base_len(const char *topic)
{
    size_t n = strlen(topic), d = n;
    while (d > 0 && topic[d - 1] >= '0' && topic[d - 1] <= '9')
        d--;
    static const char suf[] = "-partition-";
    size_t sl = sizeof suf - 1;
    if (d < n && d >= sl && !memcmp(topic + d - sl, suf, sl))
        return d - sl;
    return n;
}

/* The summary of slot @p s into @p o (false: nothing held back); frees
 * the slot. (log_lock) */
static bool fold_take(fold_slot_t *s, out_line_t *o)
{
    bool any = s->held > 0;
    if (any) {
        o->level = (upulsar_log_level_t)s->level;
        o->err = s->err;
        o->collapsed = s->held - 1;
        if (o->collapsed)
            snprintf(o->line, sizeof o->line, "%s (and %u more partition%s)", s->line,
                     o->collapsed, o->collapsed == 1 ? "" : "s");
        else
            snprintf(o->line, sizeof o->line, "%s", s->line);
        snprintf(o->topic, sizeof o->topic, "%s", s->topic);
        o->partition = s->partition;
        snprintf(o->broker, sizeof o->broker, "%s", s->broker);
    }
    s->used = false;
    return any;
}

/* A slot whose window ended by @p now, or NULL. (log_lock) */
static fold_slot_t *fold_expired(struct up_log_fold *f, uint64_t now)
{
    if (!f)
        return NULL;
    for (int i = 0; i < UP_LOG_FOLD_SLOTS; i++)
        if (f->slot[i].used && now - f->slot[i].opened_us >= fold_us())
            return &f->slot[i];
    return NULL;
}

/* Deliver the summaries of every window ended by @p now. */
static void fold_flush(struct upulsar_client *c, uint64_t now)
{
    out_line_t o;
    for (;;) {
        pthread_mutex_lock(&c->log_lock);
        fold_slot_t *s = fold_expired(c->log_fold, now);
        bool any = s && fold_take(s, &o);
        pthread_mutex_unlock(&c->log_lock);
        if (!s)
            break;
        if (any)
            deliver(c, &o);
    }
}

void up_log_tick(struct upulsar_client *c, uint64_t now_us)
{
    pthread_mutex_lock(&c->log_lock);
    bool due = fold_expired(c->log_fold, now_us) != NULL;
    pthread_mutex_unlock(&c->log_lock);
    if (due)
        fold_flush(c, now_us);
}

void up_log_flush_held(struct upulsar_client *c)
{
    fold_flush(c, UINT64_MAX);
}

void up_log_close(struct upulsar_client *c)
{
    fold_flush(c, UINT64_MAX);
    free(c->log_fold);
    c->log_fold = NULL;
    pthread_mutex_destroy(&c->log_lock);
}

/* A slot of another key of @p o's topic that holds back a line of @p o's
 * partition, or NULL: that line came first, so it goes out before @p o.
 * (log_lock) */
static fold_slot_t *fold_holding(struct up_log_fold *f, const char *fmt, const out_line_t *o)
{
    unsigned p = (unsigned)o->partition;
    if (!f || p >= UP_LOG_FOLD_PARTS)
        return NULL;
    size_t bl = base_len(o->topic);
    for (int i = 0; i < UP_LOG_FOLD_SLOTS; i++) {
        fold_slot_t *t = &f->slot[i];
        if (t->used && t->held && (t->seen[p / 8] & (1u << (p % 8))) &&
            !(t->fmt == fmt && t->level == (int)o->level && t->err == o->err) &&
            strlen(t->base) == bl && !memcmp(t->base, o->topic, bl))
            return t;
    }
    return NULL;
}

/* Collapse @p o (a line naming a partition) if its key has a window open:
 * returns true if it was held back. Else it opens a window for its key
 * (when a slot is free) and *@p ended receives the summary of a window the
 * line ended (true if there is one). (log_lock) */
static bool fold_line(struct upulsar_client *c, const char *fmt, const out_line_t *o,
                      uint64_t now, out_line_t *ended, bool *had)
{
    *had = false;
    if (!c->log_fold && !(c->log_fold = calloc(1, sizeof *c->log_fold)))
        return false; /* out of memory: the line goes out as is */
    struct up_log_fold *f = c->log_fold;
    size_t bl = base_len(o->topic);
    if (bl >= sizeof f->slot[0].base)
        return false;
    fold_slot_t *s = NULL, *free_slot = NULL;
    for (int i = 0; i < UP_LOG_FOLD_SLOTS; i++) {
        fold_slot_t *t = &f->slot[i];
        if (!t->used) {
            if (!free_slot)
                free_slot = t;
            continue;
        }
        if (t->fmt == fmt && t->level == (int)o->level && t->err == o->err &&
            strlen(t->base) == bl && !memcmp(t->base, o->topic, bl)) {
            s = t;
            break;
        }
    }
    unsigned p = (unsigned)o->partition;
    bool known = p < UP_LOG_FOLD_PARTS;
    if (s && now - s->opened_us < fold_us() && known && !(s->seen[p / 8] & (1u << (p % 8)))) {
        s->seen[p / 8] |= (uint8_t)(1u << (p % 8));
        if (!s->held++) {
            snprintf(s->line, sizeof s->line, "%.*s", UP_LOG_LINE - 1, o->line);
            snprintf(s->topic, sizeof s->topic, "%s", o->topic);
            s->partition = o->partition;
            snprintf(s->broker, sizeof s->broker, "%s", o->broker);
        }
        return true;
    }
    if (s) { /* its window ended, or this partition comes again */
        *had = fold_take(s, ended);
        free_slot = s;
    }
    if (free_slot && known) {
        s = free_slot;
        memset(s->seen, 0, sizeof s->seen);
        s->seen[p / 8] = (uint8_t)(1u << (p % 8));
        s->used = true;
        s->fmt = fmt;
        s->level = (int)o->level;
        s->err = o->err;
        memcpy(s->base, o->topic, bl);
        s->base[bl] = '\0';
        s->opened_us = now;
        s->held = 0;
    }
    return false;
}

static void log_v(struct upulsar_client *c, upulsar_log_level_t level, const up_log_at_t *at,
                  const char *fmt, va_list ap)
{
    /* debug lines are asked for by their callers (up_log_on()) */
    if (!c || ((int)level > max_level(c) && (int)level != UPULSAR_LOG_DEBUG))
        return;
    out_line_t o[2]; /* the line, and the summary of a window it ends */
    vsnprintf(o->line, UP_LOG_LINE, fmt, ap);
    o->level = level;
    o->err = at ? at->err : UPULSAR_OK;
    o->partition = at ? at->partition : -1;
    o->collapsed = 0;
    snprintf(o->topic, sizeof o->topic, "%s", at && at->topic ? at->topic : "");
    if (at && at->broker)
        snprintf(o->broker, sizeof o->broker, "%s", at->broker);
    else if (at && at->host)
        snprintf(o->broker, sizeof o->broker, "%s:%d", at->host, at->port);
    else
        o->broker[0] = '\0';
    bool held = false, had = false;
    uint64_t now = up_now_us();
    if (o->partition >= 0 && o->topic[0] && level != UPULSAR_LOG_DEBUG) {
        /* what is held back of this partition under other keys goes first:
         * the lines of one producer keep their order */
        for (;;) {
            pthread_mutex_lock(&c->log_lock);
            fold_slot_t *s = fold_holding(c->log_fold, fmt, o);
            bool any = s && fold_take(s, &o[1]);
            pthread_mutex_unlock(&c->log_lock);
            if (!s)
                break;
            if (any)
                deliver(c, &o[1]);
        }
        pthread_mutex_lock(&c->log_lock);
        held = fold_line(c, fmt, o, now, &o[1], &had);
        pthread_mutex_unlock(&c->log_lock);
    }
    if (had)
        deliver(c, &o[1]);
    if (!held)
        deliver(c, o);
}

void up_log(struct upulsar_client *c, upulsar_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_v(c, level, NULL, fmt, ap);
    va_end(ap);
}

void up_log_at(struct upulsar_client *c, upulsar_log_level_t level, const up_log_at_t *at,
               const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_v(c, level, at, fmt, ap);
    va_end(ap);
}

void up_log_rp(up_rp_t *rp, upulsar_log_level_t level, upulsar_err_t err, const char *fmt, ...)
{
    char broker[sizeof rp->broker];
    pthread_mutex_lock(&rp->broker_lock);
    snprintf(broker, sizeof broker, "%s", rp->broker);
    pthread_mutex_unlock(&rp->broker_lock);
    up_log_at_t at = {err, rp->topic, rp->partition, broker, NULL, 0};
    va_list ap;
    va_start(ap, fmt);
    log_v(rp->client, level, &at, fmt, ap);
    va_end(ap);
}
