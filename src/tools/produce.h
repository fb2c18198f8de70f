/*
 * produce.h -- the parts of upulsar-produce and what they share:
 *
 *   upulsar-produce.c   main: the producer, messages in flight, waiting
 *                       (receipts, the rate pacer, progress), signals
 *   produce_opts.c      the command line: usage, options, escapes
 *   produce_input.c     input: delimited records, whole files, base64
 *   produce_output.c    output: ids, JSON, progress and --stats lines
 */
#ifndef UPULSAR_PRODUCE_H
#define UPULSAR_PRODUCE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "upulsar/upulsar.h"

#define PROG "upulsar-produce"
#define EXIT_FAIL 1
#define EXIT_USAGE 2

/* ---- helpers (upulsar-produce.c) ---------------------------------------- */

_Noreturn void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);
char *xstrndup(const char *s, size_t n);

/* The signal that ended the input (0: none). */
extern volatile sig_atomic_t g_signal;

/* ---- options (produce_opts.c) ------------------------------------------- */

typedef struct conf_op {
    const char *key;
    const char *value;
    const char *what; /* option that set it, for messages */
} conf_op_t;

/* One input source, in command-line order. */
typedef struct source {
    const char *name; /* a path, or "-" for stdin */
    bool whole;       /* -F: the whole file is one message; -f: records */
} source_t;

typedef struct opts {
    const char *topic;
    const char *url;
    const char *name;
    long partitions;
    bool embedded;
    const char *key;
    char *key_delim; /* -K, escapes decoded, owned */
    size_t key_delim_len;
    char *delim; /* -D, escapes decoded, owned; default "\n" */
    size_t delim_len;
    bool keep_cr;   /* --keep-cr: line mode keeps a '\r' before '\n' */
    bool base64;    /* --base64: values are base64 */
    char **prop_names;
    const char **prop_values;
    size_t nprops;
    source_t *sources;
    size_t nsources;
    long long count; /* -1: read input */
    const char *prefix;
    bool quiet, json;
    bool line_buffered; /* --line-buffered (or stdout is a terminal) */
    bool progress;      /* --progress (or stderr is a terminal, without -q) */
    bool stats;         /* --stats */
    double rate;        /* --rate, messages per second; 0 = unlimited */
    long timeout_ms;    /* -1: none */
    conf_op_t *conf;
    size_t nconf, conf_cap;
    char *tokens[4]; /* read from --token-file pipes, owned (each stays
                        until the end: the conf entries point at them) */
    int ntokens;
} opts_t;

void parse_args(int argc, char **argv, opts_t *o);
void opts_free(opts_t *o);

/* Decode the escapes \n \t \r \0 \\ \xHH of @p s into a new buffer (owned
 * by the caller); false, with @p why set, for an unknown or short escape. */
bool unescape(const char *s, char **out, size_t *out_len, const char **why);

/* ---- input (produce_input.c) -------------------------------------------- */

/* Wait until @p fd can be read, serving receipts meanwhile; false when a
 * signal ends the input. */
typedef bool (*input_wait_fn)(void *ctx, int fd);

typedef struct input {
    const source_t *srcs;
    int *fds;  /* of srcs[i]; -1 once done */
    size_t n, cur;
    bool eof;  /* srcs[cur] has no more bytes */
    char *buf; /* bytes read and not yet returned: [start, end) */
    size_t cap, start, end, scan;
    const char *delim;
    size_t delim_len;
    bool strip_cr;
    bool whole; /* the record input_next() returned last is a whole file */
    input_wait_fn wait; /* NULL: read without waiting first */
    void *ctx;
} input_t;

/* Open every input of @p o (exits 2 naming a file that cannot be opened),
 * before anything connects. */
void input_open(input_t *in, const opts_t *o);
/* The next message's bytes (valid until the next call): length, or -1 at
 * the end of the input (or when a signal ends it), or -2 after a read
 * error (reported on stderr). */
ssize_t input_next(input_t *in, const char **rec);
void input_close(input_t *in);

/* Decode base64 (RFC 4648 alphabet; ASCII whitespace is skipped, padding
 * optional) of @p s into @p out (room for n * 3 / 4 + 3 bytes). Returns the
 * decoded length, or -1 with *@p bad at the offending byte. */
ssize_t base64_decode(const char *s, size_t n, unsigned char *out, size_t *bad);

/* ---- output (produce_output.c) ------------------------------------------ */

bool utf8_valid(const unsigned char *s, size_t n);
void json_str(FILE *f, const char *s, size_t n);
void json_cstr(FILE *f, const char *s);
void json_base64(FILE *f, const unsigned char *p, size_t n);

/* What --json prints of one acknowledged message. */
typedef struct sent_msg {
    uint64_t index;
    const char *payload;
    size_t len;
    const char *key; /* NULL: none */
    char *const *props; /* expanded values of opts.prop_values */
} sent_msg_t;

void print_id(const opts_t *o, const sent_msg_t *m, const upulsar_msg_id_t *id);
void print_error_json(uint64_t index, const char *name, const char *text);

/* Counters for progress lines and the --stats summary. */
typedef struct tally {
    uint64_t sent;   /* accepted by upulsar_send() */
    uint64_t acked;
    uint64_t failed;
    uint64_t bytes;  /* payload bytes acknowledged */
    int64_t t0_ns;   /* the producer was ready */
} tally_t;

int64_t now_ns(void);
void print_progress(const tally_t *t);

/* The send -> receipt latency of upulsar_producer_stats_json(), merged
 * over the producers of a partitioned topic. */
typedef struct latency {
    uint64_t count, sum_us;
    uint64_t p50, p90, p99, p999; /* bucket upper bounds, us */
    bool known;
} latency_t;

void latency_from_stats(const char *json, latency_t *lat);
void print_stats(const opts_t *o, const tally_t *t, int64_t end_ns, const latency_t *lat);

#endif
