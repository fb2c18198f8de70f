/* conf.c -- configuration objects driven by the table of keys
 * (conf_keys.c): parsing and validation (upulsar_conf_set), formatting
 * (upulsar_conf_get), the defaults (up_conf_defaults), a producer's
 * configuration over its client's, and the reference
 * (upulsar_conf_dump_doc). */
#include "conf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_keys.h"
#include "err.h"


static const conf_key_t *find_key(const char *name)
{
    for (size_t i = 0; i < up_conf_nkeys; i++)
        if (strcmp(up_conf_keys[i].key, name) == 0)
            return &up_conf_keys[i];
    return NULL;
}

/* ---- errors ------------------------------------------------------------ */

static upulsar_conf_res_t err(upulsar_conf_res_t res, char *errstr, size_t errstr_size,
                              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static upulsar_conf_res_t err(upulsar_conf_res_t res, char *errstr, size_t errstr_size,
                              const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (errstr && errstr_size)
        snprintf(errstr, errstr_size, "%s", msg);
    up_seterr(UPULSAR_ERR__INVALID_ARG, "%s", msg);
    return res;
}

/* ---- parsing ----------------------------------------------------------- */

/* Decimal integer, optional leading '-', nothing else. 0 or -1. */
static int parse_i64(const char *s, int64_t *out)
{
    bool neg = false;
    if (*s == '-') {
        neg = true;
        s++;
    }
    if (!*s)
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return -1;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX)
            return -1;
        *out = (int64_t)v;
    }
    return 0;
}

/* Milliseconds "123", "0.5", "2.125" (locale-independent) into
 * microseconds; decimals beyond the third must be zeros. Values too large
 * for int64 are reported as INT64_MAX (and then rejected by the range). */
static int parse_ms_frac(const char *s, int64_t *us)
{
    int64_t ms = 0;
    bool digits = false, big = false;
    for (; *s >= '0' && *s <= '9'; s++) {
        digits = true;
        if (ms > INT64_MAX / 10000)
            big = true;
        else
            ms = ms * 10 + (*s - '0');
    }
    int64_t frac = 0;
    if (*s == '.') {
        s++;
        int n = 0;
        for (; *s >= '0' && *s <= '9'; s++, n++) {
            digits = true;
            if (n < 3)
                frac = frac * 10 + (*s - '0');
            else if (*s != '0')
                return -1; /* finer than a microsecond */
        }
        for (; n < 3; n++)
            frac *= 10;
    }
    if (!digits || *s)
        return -1;
    *us = big ? INT64_MAX : ms * 1000 + frac;
    return 0;
}

static void fmt_ms_frac(int64_t us, char *buf, size_t size)
{
    uint64_t u = us < 0 ? 0 : (uint64_t)us; /* the table's ranges start at 0 */
    unsigned frac = (unsigned)(u % 1000);
    if (frac == 0) {
        snprintf(buf, size, "%" PRIu64, u / 1000);
        return;
    }
    char f[4] = {(char)('0' + frac / 100), (char)('0' + frac / 10 % 10),
                 (char)('0' + frac % 10), '\0'};
    for (int i = 2; i > 0 && f[i] == '0'; i--)
        f[i] = '\0';
    snprintf(buf, size, "%" PRIu64 ".%s", u / 1000, f);
}

static void enum_list(const enum_name_t *e, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (; e->name; e++) {
        int w = snprintf(buf + n, size - n, "%s%s", n ? ", " : "", e->name);
        if (w < 0 || (size_t)w >= size - n)
            break;
        n += (size_t)w;
    }
}

static bool compiled_in(const conf_key_t *k, int value)
{
    bool comp = k->off == offsetof(struct upulsar_conf, compression);
#ifndef UPULSAR_HAVE_ZSTD
    if (comp && value == 3)
        return false;
#endif
#ifndef UPULSAR_HAVE_ZLIB
    if (comp && value == 2)
        return false;
#endif
    (void)comp;
    (void)value;
    return true;
}

static void put_int(void *field, int v) { memcpy(field, &v, sizeof v); }
static int get_int(const void *field)
{
    int v;
    memcpy(&v, field, sizeof v);
    return v;
}

/* F_FILE_AT: @p field = the content of file @p path (only when it is
 * readable, fits and holds no NUL byte). */
static upulsar_conf_res_t set_from_file(char *field, const conf_key_t *k, const char *path,
                                        char *errstr, size_t errstr_size)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return err(UPULSAR_CONF_INVALID, errstr, errstr_size, "%s: cannot read \"%.200s\"",
                   k->key, path);
    char *buf = malloc(k->size);
    if (!buf) {
        fclose(fp);
        return err(UPULSAR_CONF_INVALID, errstr, errstr_size, "%s: out of memory", k->key);
    }
    size_t n = fread(buf, 1, k->size, fp);
    bool bad = ferror(fp) != 0;
    fclose(fp);
    upulsar_conf_res_t res = UPULSAR_CONF_OK;
    if (bad)
        res = err(UPULSAR_CONF_INVALID, errstr, errstr_size, "%s: cannot read \"%.200s\"",
                  k->key, path);
    else if (n >= k->size)
        res = err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                  "%s: \"%.200s\" is longer than %zu bytes", k->key, path, k->size - 1);
    else if (memchr(buf, '\0', n))
        res = err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                  "%s: \"%.200s\" holds a NUL byte", k->key, path);
    if (res == UPULSAR_CONF_OK) {
        memcpy(field, buf, n);
        field[n] = '\0';
    }
    free(buf);
    return res;
}

/* Parse @p value for @p k into @p conf (only when valid). */
static upulsar_conf_res_t set_key(struct upulsar_conf *conf, const conf_key_t *k,
                                  const char *value, char *errstr, size_t errstr_size)
{
    char *field = (char *)conf + k->off;
    switch (k->kind) {
    case K_STR: {
        if ((k->flags & F_FILE_AT) && value[0] == '@')
            return set_from_file(field, k, value + 1, errstr, errstr_size);
        size_t len = strlen(value);
        if (len >= k->size) {
            if (k->flags & F_SECRET)
                return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                           "%s: value is longer than %zu bytes", k->key, k->size - 1);
            return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                       "%s: value is longer than %zu bytes (got %zu)", k->key, k->size - 1,
                       len);
        }
        if (k->flags & F_URL) {
            const char *rest = NULL;
            if (strncmp(value, "pulsar://", 9) == 0)
                rest = value + 9;
            else if (strncmp(value, "pulsar+ssl://", 13) == 0)
                rest = value + 13;
            if (!rest)
                return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                           "%s: must start with pulsar:// or pulsar+ssl:// (got \"%.64s\")",
                           k->key, value);
            if (!*rest || strpbrk(rest, " \t\r\n/?#"))
                return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                           "%s: expected pulsar[+ssl]://host[:port][,host[:port]...] "
                           "(got \"%.64s\")",
                           k->key, value);
        }
        if ((k->flags & F_KV) && *value) {
            int pairs = 0;
            for (const char *q = value; ; pairs++) {
                const char *end = strchr(q, ',');
                size_t il = end ? (size_t)(end - q) : strlen(q);
                const char *eq = memchr(q, '=', il);
                if (!eq || eq == q)
                    return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                               "%s: expected key=value[,key=value...] with non-empty keys "
                               "(got \"%.64s\")",
                               k->key, value);
                if (!end)
                    break;
                q = end + 1;
            }
            if (pairs + 1 > UP_MAX_PRODUCER_PROPS)
                return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                           "%s: more than %d pairs", k->key, UP_MAX_PRODUCER_PROPS);
        }
        memcpy(field, value, len + 1);
        if (k->flags & F_SECRET) /* what a longer value left after the new one */
            up_wipe(field + len + 1, k->size - len - 1);
        return UPULSAR_CONF_OK;
    }
    case K_INT:
    case K_INT64: {
        int64_t v;
        if (parse_i64(value, &v) || v < k->min || v > k->max)
            return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                       "%s: must be an integer between %" PRId64 " and %" PRId64
                       " (got \"%.64s\")",
                       k->key, k->min, k->max, value);
        if (k->kind == K_INT)
            put_int(field, (int)v);
        else
            memcpy(field, &v, sizeof v);
        return UPULSAR_CONF_OK;
    }
    case K_BOOL: {
        bool b;
        if (strcasecmp(value, "true") == 0 || strcmp(value, "1") == 0)
            b = true;
        else if (strcasecmp(value, "false") == 0 || strcmp(value, "0") == 0)
            b = false;
        else
            return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                       "%s: must be true, false, 1 or 0 (got \"%.64s\")", k->key, value);
        *(bool *)field = b;
        return UPULSAR_CONF_OK;
    }
    case K_ENUM: {
        for (const enum_name_t *e = k->enums; e->name; e++) {
            if (strcasecmp(value, e->name) != 0)
                continue;
            if (!compiled_in(k, e->value))
                return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                           "%s: %s is not supported by this build", k->key, e->name);
            put_int(field, e->value);
            return UPULSAR_CONF_OK;
        }
        char names[128];
        enum_list(k->enums, names, sizeof names);
        return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                   "%s: must be one of %s (got \"%.64s\")", k->key, names, value);
    }
    case K_MSFRAC: {
        int64_t us;
        if (parse_ms_frac(value, &us) || us < k->min || us > k->max) {
            char lo[32], hi[32];
            fmt_ms_frac(k->min, lo, sizeof lo);
            fmt_ms_frac(k->max, hi, sizeof hi);
            return err(UPULSAR_CONF_INVALID, errstr, errstr_size,
                       "%s: must be a number of milliseconds between %s and %s, "
                       "at most 3 decimals (got \"%.64s\")",
                       k->key, lo, hi, value);
        }
        put_int(field, (int)us);
        return UPULSAR_CONF_OK;
    }
    }
    return err(UPULSAR_CONF_INVALID, errstr, errstr_size, "%s: bad table entry", k->key);
}

static void get_key(const struct upulsar_conf *conf, const conf_key_t *k, char *buf,
                    size_t size)
{
    const char *field = (const char *)conf + k->off;
    switch (k->kind) {
    case K_STR:
        if ((k->flags & F_SECRET) && field[0])
            snprintf(buf, size, "***");
        else
            snprintf(buf, size, "%s", field);
        return;
    case K_INT:
        snprintf(buf, size, "%d", get_int(field));
        return;
    case K_INT64: {
        int64_t v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, size, "%" PRId64, v);
        return;
    }
    case K_BOOL:
        snprintf(buf, size, "%s", *(const bool *)field ? "true" : "false");
        return;
    case K_ENUM: {
        int v = get_int(field);
        for (const enum_name_t *e = k->enums; e->name; e++) {
            if (e->value == v) {
                snprintf(buf, size, "%s", e->name);
                return;
            }
        }
        snprintf(buf, size, "%d", v);
        return;
    }
    case K_MSFRAC:
        fmt_ms_frac(get_int(field), buf, size);
        return;
    }
    snprintf(buf, size, "%s", "");
}

/* ---- public API ---------------------------------------------------------- */

void up_conf_defaults(struct upulsar_conf *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < up_conf_nkeys; i++)
        (void)set_key(c, &up_conf_keys[i], up_conf_keys[i].def, NULL, 0); /* tested to succeed */
}

upulsar_conf_t *upulsar_conf_new(void)
{
    upulsar_conf_t *c = malloc(sizeof *c);
    if (c)
        up_conf_defaults(c);
    return c;
}

upulsar_conf_t *upulsar_conf_dup(const upulsar_conf_t *conf)
{
    if (!conf)
        return NULL;
    upulsar_conf_t *c = malloc(sizeof *c);
    if (c)
        memcpy(c, conf, sizeof *c);
    return c;
}

void up_wipe(void *p, size_t n)
{
    if (p && n)
        explicit_bzero(p, n);
}

void up_conf_wipe_secrets(struct upulsar_conf *c) { up_wipe(c->auth_token, sizeof c->auth_token); }

void upulsar_conf_destroy(upulsar_conf_t *conf)
{
    if (conf)
        up_conf_wipe_secrets(conf);
    free(conf);
}

upulsar_conf_res_t upulsar_conf_set(upulsar_conf_t *conf, const char *key, const char *value,
                                    char *errstr, size_t errstr_size)
{
    if (!key)
        return err(UPULSAR_CONF_UNKNOWN, errstr, errstr_size, "configuration key is NULL");
    const conf_key_t *k = find_key(key);
    if (!k)
        return err(UPULSAR_CONF_UNKNOWN, errstr, errstr_size,
                   "unknown configuration key \"%.64s\"", key);
    if (!conf)
        return err(UPULSAR_CONF_INVALID, errstr, errstr_size, "%s: conf is NULL", k->key);
    if (!value)
        return err(UPULSAR_CONF_INVALID, errstr, errstr_size, "%s: value is NULL", k->key);
    upulsar_conf_res_t r = set_key(conf, k, value, errstr, errstr_size);
    if (r == UPULSAR_CONF_OK) {
        size_t i = (size_t)(k - up_conf_keys);
        conf->set_keys[i / 64] |= UINT64_C(1) << (i % 64);
    }
    return r;
}

upulsar_conf_scope_t upulsar_conf_scope(const char *key)
{
    const conf_key_t *k = key ? find_key(key) : NULL;
    if (!k)
        return UPULSAR_CONF_SCOPE_UNKNOWN;
    return k->scope == 'C' ? UPULSAR_CONF_SCOPE_CLIENT : UPULSAR_CONF_SCOPE_PRODUCER;
}

static bool key_is_set(const struct upulsar_conf *c, size_t i)
{
    return (c->set_keys[i / 64] >> (i % 64)) & 1u;
}

bool up_conf_was_set(const struct upulsar_conf *c, const char *key)
{
    const conf_key_t *k = find_key(key);
    return k && key_is_set(c, (size_t)(k - up_conf_keys));
}

/* Whether key @p k has the same value in @p a and @p b. */
static bool same_value(const struct upulsar_conf *a, const struct upulsar_conf *b,
                       const conf_key_t *k)
{
    const char *fa = (const char *)a + k->off, *fb = (const char *)b + k->off;
    if (k->kind == K_STR)
        return strncmp(fa, fb, k->size) == 0;
    return memcmp(fa, fb, k->size) == 0;
}

upulsar_err_t up_conf_for_producer(struct upulsar_conf *out,
                                   const struct upulsar_conf *client_conf,
                                   const struct upulsar_conf *producer_conf)
{
    const struct upulsar_conf *pc = producer_conf;
    if (pc) /* refused before anything is written, so @p out is whole either way */
        for (size_t i = 0; i < up_conf_nkeys; i++)
            if (up_conf_keys[i].scope == 'C' && key_is_set(pc, i) &&
                !same_value(pc, client_conf, &up_conf_keys[i]))
                return up_seterr(UPULSAR_ERR__INVALID_ARG,
                                 "%s is a client setting; set it on the client's conf (the "
                                 "one given to upulsar_client_new()): a producer's conf "
                                 "cannot change it",
                                 up_conf_keys[i].key);
    memcpy(out, client_conf, sizeof *out);
    if (!pc)
        return UPULSAR_OK;
    for (size_t i = 0; i < up_conf_nkeys; i++)
        if (up_conf_keys[i].scope == 'P' && key_is_set(pc, i))
            memcpy((char *)out + up_conf_keys[i].off, (const char *)pc + up_conf_keys[i].off, up_conf_keys[i].size);
    for (size_t w = 0; w < UP_CONF_SET_WORDS; w++)
        out->set_keys[w] |= pc->set_keys[w];
    /* producer settings set by function: the producer's conf wins where it
     * has one */
    if (pc->dr_cb) {
        out->dr_cb = pc->dr_cb;
        out->dr_opaque = pc->dr_opaque;
    }
    if (pc->router) {
        out->router = pc->router;
        out->router_opaque = pc->router_opaque;
    }
    return UPULSAR_OK;
}

upulsar_conf_res_t upulsar_conf_get(const upulsar_conf_t *conf, const char *key, char *buf,
                                    size_t size)
{
    if (buf && size)
        buf[0] = '\0';
    const conf_key_t *k = key ? find_key(key) : NULL;
    if (!k)
        return UPULSAR_CONF_UNKNOWN;
    if (!conf)
        return UPULSAR_CONF_INVALID;
    if (buf && size)
        get_key(conf, k, buf, size);
    return UPULSAR_CONF_OK;
}

/* Markdown cells must not contain '|' or line breaks; every text in the
 * table is written by us, but defaults could change: escape anyway. */
static void cell(FILE *fp, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", fp);
        else if (*s == '\n')
            fputc(' ', fp);
        else
            fputc(*s, fp);
    }
}

static void doc_row(FILE *fp, const conf_key_t *k)
{
    static const char *const type_names[] = {
        [K_STR] = "string", [K_INT] = "integer", [K_INT64] = "integer",
        [K_BOOL] = "boolean", [K_ENUM] = "enum", [K_MSFRAC] = "decimal"};
    char range[160], def[64];
    switch (k->kind) {
    case K_INT:
    case K_INT64:
        snprintf(range, sizeof range, "%" PRId64 " .. %" PRId64, k->min, k->max);
        break;
    case K_MSFRAC: {
        char lo[32], hi[32];
        fmt_ms_frac(k->min, lo, sizeof lo);
        fmt_ms_frac(k->max, hi, sizeof hi);
        snprintf(range, sizeof range, "%s .. %s (step 0.001)", lo, hi);
        break;
    }
    case K_BOOL:
        snprintf(range, sizeof range, "true, false");
        break;
    case K_ENUM:
        enum_list(k->enums, range, sizeof range);
        break;
    case K_STR:
        if (k->flags & F_URL)
            snprintf(range, sizeof range, "pulsar://... or pulsar+ssl://...");
        else
            snprintf(range, sizeof range, "up to %zu bytes", k->size - 1);
        break;
    }
    snprintf(def, sizeof def, "%s", k->def[0] ? k->def : "(empty)");
    fputs("| `", fp);
    cell(fp, k->key);
    fputs("` | ", fp);
    cell(fp, type_names[k->kind]);
    fputs(" | `", fp);
    cell(fp, def);
    fputs("` | ", fp);
    cell(fp, range);
    fputs(" | ", fp);
    cell(fp, k->unit[0] ? k->unit : "-");
    fputs(" | ", fp);
    cell(fp, k->desc);
    fputs(" | ", fp);
    cell(fp, k->java);
    fputs(" |\n", fp);
}

void upulsar_conf_dump_doc(void *fp_)
{
    FILE *fp = fp_;
    if (!fp)
        return;
    fputs("# upulsar configuration\n\n"
          "Generated from the key table in `src/conf.c` by `upulsar_conf_dump_doc()`; "
          "do not edit by hand.\n\n"
          "Set keys with `upulsar_conf_set(conf, key, value, errstr, size)`. Values are "
          "strings: integers in decimal, booleans `true`/`false`/`1`/`0`, enums by name. "
          "A value outside its range is rejected with `UPULSAR_CONF_INVALID` and the "
          "configuration is left unchanged; an unknown key gives "
          "`UPULSAR_CONF_UNKNOWN`.\n\n"
          "Each key belongs to the client or to its producers (the two tables below; "
          "`upulsar_conf_scope()` tells which), and one conf may serve both: "
          "`upulsar_client_new()` reads the client keys, `upulsar_producer_start()` the "
          "producer keys. Producer keys set on the client's conf are the defaults of every "
          "producer of that client; a producer's own conf replaces them key by key, only "
          "for the keys set on it with `upulsar_conf_set()` (a NULL conf sets none). A client key set "
          "on a producer's conf to another value than the client's has no object to act "
          "on: `upulsar_producer_start()` refuses it with `UPULSAR_ERR__INVALID_ARG`, "
          "naming the key (\"stats.interval.ms is a client setting; set it on the "
          "client's conf ...\").\n",
          fp);
    for (int pass = 0; pass < 2; pass++) {
        char scope = pass == 0 ? 'C' : 'P';
        fputs(pass == 0 ? "\n## Client keys\n\nRead by `upulsar_client_new()`. On a "
                          "producer's conf only the client's own value is accepted.\n\n"
                        : "\n## Producer keys\n\nRead by `upulsar_producer_start()`: from "
                          "its conf where set there, else from the client's conf (defaults "
                          "for all its producers).\n\n",
              fp);
        fputs("| Key | Type | Default | Range | Unit | Description | Java client |\n"
              "|---|---|---|---|---|---|---|\n",
              fp);
        for (size_t i = 0; i < up_conf_nkeys; i++)
            if (up_conf_keys[i].scope == scope)
                doc_row(fp, &up_conf_keys[i]);
    }
}

const char *up_schema_default_name(int type)
{
    switch (type) {
    case UP_SCHEMA_STRING: return "String";
    case UP_SCHEMA_KEY_VALUE: return "KeyValue";
    case UP_SCHEMA_BYTES: return "Bytes";
    default: return "";
    }
}

static upulsar_err_t check_part(const char *what, int type, const char *def)
{
    bool structured = type == UP_SCHEMA_JSON || type == UP_SCHEMA_AVRO;
    if (structured && !def[0])
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "%s is json or avro: its definition is "
                         "missing", what);
    if (!structured && def[0])
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "%s has a definition, which only json and "
                         "avro take", what);
    return UPULSAR_OK;
}

upulsar_err_t up_conf_producer_check(struct upulsar_conf *c, const char *topic)
{
    if (c->chunking_enabled && c->batching_enabled)
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "chunking.enabled=true needs batching.enabled=false (batching and "
                         "chunking cannot both be on, as in the official clients)");
    if (c->chunking_enabled && !strncmp(topic, "non-persistent://", 17))
        c->chunking_enabled = false; /* as the official clients: persistent topics only */
    return up_conf_schema_check(c);
}

upulsar_err_t up_conf_schema_check(const struct upulsar_conf *c)
{
    bool kv = c->schema_type == UP_SCHEMA_KEY_VALUE;
    if (!kv && (c->schema_key_type != UP_SCHEMA_BYTES || c->schema_value_type != UP_SCHEMA_BYTES ||
                c->schema_key_definition[0] || c->schema_value_definition[0] ||
                c->schema_kv_encoding != UP_KV_INLINE))
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "schema.key.*, schema.value.* and schema.kv.encoding are for "
                         "schema.type=key_value");
    if (kv) {
        if (c->schema_definition[0] || c->schema_properties[0])
            return up_seterr(UPULSAR_ERR__INVALID_ARG,
                             "schema.type=key_value takes schema.key.* and schema.value.*, "
                             "not schema.definition or schema.properties");
        upulsar_err_t e = check_part("schema.key.type", c->schema_key_type,
                                     c->schema_key_definition);
        return e ? e : check_part("schema.value.type", c->schema_value_type,
                                  c->schema_value_definition);
    }
    if (c->schema_type == UP_SCHEMA_BYTES && (c->schema_name[0] || c->schema_properties[0]))
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "schema.name and schema.properties need a schema.type other than bytes");
    return check_part("schema.type", c->schema_type, c->schema_definition);
}
