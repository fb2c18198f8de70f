/*
 * upulsar-produce -- a command-line Pulsar producer (in the spirit of kcat -P).
 *
 *   echo hello | upulsar-produce -b pulsar://localhost:6650 -t my-topic
 *   upulsar-produce --embedded -t hello <<< "hi"
 *
 * Reads messages, one per line, from stdin or from files (-f, repeatable),
 * sends them through one upulsar producer handle and prints one line per
 * message once its receipt arrived, in input order:
 *
 *   partition:ledger:entry:batch_index
 *
 * (-1 for a non-partitioned topic / an unbatched message / a position the
 * broker did not report). -q prints only the summary, --json prints one JSON
 * object per message (with "firstChunkId" beside "msgId", the last chunk's
 * position, for a message sent in chunks). Every message is resolved (acknowledged or failed)
 * before the program exits.
 *
 * Exit status: 0 every message was acknowledged; 1 a message failed, or
 * connecting / creating the producer failed; 2 bad usage (unknown option,
 * unknown or invalid configuration key, unreadable file); 128+N after
 * signal N (input stops, what was read is still resolved).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

#define PROG "upulsar-produce"
#define EXIT_FAIL 1
#define EXIT_USAGE 2
/* Futures outstanding before the oldest is waited for. */
#define WINDOW 8192

static void usage(FILE *fp)
{
    fputs("usage: " PROG " -t TOPIC [options] [< input]\n"
          "Sends each input line as one message and prints its message id.\n"
          "\n"
          "Where to:\n"
          "  -t, --topic TOPIC       topic: persistent://tenant/ns/name or a short name\n"
          "  -b, --url URL           service URL: pulsar://host:port or pulsar+ssl://host:port\n"
          "                          (default pulsar://localhost:6650)\n"
          "      --embedded          start the embedded test broker in this process\n"
          "                          (its URL is printed to stderr)\n"
          "  -p, --partitions N      the partitions you expect the topic to have, checked\n"
          "                          against the broker's count, which is used (with a\n"
          "                          warning) when they differ; 0 = take the broker's\n"
          "                          (default). With --embedded: the topic gets N partitions\n"
          "  -n, --name NAME         base producer name (default: chosen by the broker)\n"
          "      --token TOKEN       authentication token (auth.token)\n"
          "      --token-file FILE   read the token from FILE (first line)\n"
          "      --tls-ca FILE       CA certificates (PEM) for pulsar+ssl:// URLs\n"
          "      --tls-cert FILE     client certificate (PEM) for mutual TLS\n"
          "      --tls-key FILE      its private key (PEM)\n"
          "      --tls-insecure      accept any broker certificate (tests only)\n"
          "  -X, --conf KEY=VALUE    any configuration key (repeatable; -X list shows them)\n"
          "\n"
          "What:\n"
          "  -f, --file FILE         read messages from FILE, one per line (repeatable;\n"
          "                          '-' = stdin; default: stdin)\n"
          "      --count N           send N generated messages PREFIX0..PREFIX<N-1>\n"
          "      --prefix PREFIX     prefix of generated messages (default \"msg-\")\n"
          "  -k, --key KEY           message key of every message\n"
          "  -K, --key-delimiter D   each line is KEY<D>VALUE (no D in a line: no key)\n"
          "  -H, --prop NAME=VALUE   message property (repeatable)\n"
          "                          In -k and -H values %d is the message index\n"
          "                          (0-based) and %% a literal %.\n"
          "\n"
          "Output:\n"
          "  -q, --quiet             no per-message lines, only the summary (stderr)\n"
          "      --json              one JSON object per message, then a summary object\n"
          "      --timeout-ms MS     give up waiting for receipts after MS (default: wait\n"
          "                          for send.timeout.ms to fail them)\n"
          "  -V, --version           print the library version\n"
          "  -h, --help              this text\n"
          "\n"
          "Exit status: 0 all acknowledged, 1 a failure, 2 bad usage.\n",
          fp);
}

static _Noreturn void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(PROG ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die(EXIT_FAIL, "out of memory");
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ---- signals ------------------------------------------------------------ */

static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    g_signal = sig;
}

static void set_signals_blocked(bool blocked)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &s, NULL);
}

/* ---- text helpers ------------------------------------------------------- */

/* Replace "%d" by @p index and "%%" by "%" in @p tmpl. Caller frees. */
static char *expand(const char *tmpl, uint64_t index)
{
    char num[24];
    int nl = snprintf(num, sizeof num, "%" PRIu64, index);
    size_t n = 0;
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '%' && p[1] == 'd') {
            n += (size_t)nl;
            p++;
        } else {
            if (p[0] == '%' && p[1] == '%')
                p++;
            n++;
        }
    }
    char *out = xmalloc(n + 1), *o = out;
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '%' && p[1] == 'd') {
            memcpy(o, num, (size_t)nl);
            o += nl;
            p++;
        } else {
            if (p[0] == '%' && p[1] == '%')
                p++;
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* A JSON string of @p n bytes (null when NULL or not valid UTF-8). */
static void json_str(FILE *f, const char *s, size_t n)
{
    if (!s || !utf8_valid((const unsigned char *)s, n)) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_cstr(FILE *f, const char *s)
{
    json_str(f, s, s ? strlen(s) : 0);
}

static void json_base64(FILE *f, const unsigned char *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', f);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        fputc(tab[(v >> 18) & 63], f);
        fputc(tab[(v >> 12) & 63], f);
        fputc(i + 1 < n ? tab[(v >> 6) & 63] : '=', f);
        fputc(i + 2 < n ? tab[v & 63] : '=', f);
    }
    fputc('"', f);
}

/* ledger / entry as printed: -1 when the broker did not report them. */
static long long id_num(uint64_t v)
{
    return v == UPULSAR_ID_UNKNOWN ? -1LL : (long long)v;
}

/* ---- options ------------------------------------------------------------ */

typedef struct conf_op {
    const char *key;
    const char *value;
    const char *what; /* option that set it, for messages */
} conf_op_t;

typedef struct opts {
    const char *topic;
    const char *url;
    const char *name;
    long partitions;
    bool embedded;
    const char *key;
    const char *key_delim;
    size_t key_delim_len;
    char **prop_names;
    const char **prop_values;
    size_t nprops;
    const char **files;
    size_t nfiles;
    long long count; /* -1: read input */
    const char *prefix;
    bool quiet, json;
    long timeout_ms; /* -1: none */
    conf_op_t *conf;
    size_t nconf;
    char *token; /* from --token-file, owned */
} opts_t;

static long long parse_num(const char *opt, const char *v, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi)
        die(EXIT_USAGE, "%s: '%s' is not a number between %lld and %lld", opt, v, lo, hi);
    return n;
}

static void add_conf(opts_t *o, const char *key, const char *value, const char *what)
{
    o->conf[o->nconf++] = (conf_op_t){key, value, what};
}

/* Free a token this program read, wiped first (explicit_bzero: a memset
 * before free may be optimised away). */
static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static char *read_token_file(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        die(EXIT_USAGE, "--token-file %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, fp);
    fclose(fp);
    if (n < 0) {
        free(line);
        die(EXIT_USAGE, "--token-file %s: empty file", path);
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                     line[n - 1] == '\t'))
        line[--n] = '\0';
    if (n == 0) {
        free(line);
        die(EXIT_USAGE, "--token-file %s: empty first line", path);
    }
    return line;
}

enum {
    O_EMBEDDED = 256,
    O_TOKEN,
    O_TOKEN_FILE,
    O_JSON,
    O_COUNT,
    O_PREFIX,
    O_TIMEOUT,
    O_TLS_CA,
    O_TLS_CERT,
    O_TLS_KEY,
    O_TLS_INSECURE
};

static void parse_args(int argc, char **argv, opts_t *o)
{
    static const struct option longopts[] = {
        {"topic", required_argument, NULL, 't'},
        {"url", required_argument, NULL, 'b'},
        {"broker", required_argument, NULL, 'b'},
        {"partitions", required_argument, NULL, 'p'},
        {"name", required_argument, NULL, 'n'},
        {"key", required_argument, NULL, 'k'},
        {"key-delimiter", required_argument, NULL, 'K'},
        {"prop", required_argument, NULL, 'H'},
        {"header", required_argument, NULL, 'H'},
        {"file", required_argument, NULL, 'f'},
        {"conf", required_argument, NULL, 'X'},
        {"quiet", no_argument, NULL, 'q'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"embedded", no_argument, NULL, O_EMBEDDED},
        {"token", required_argument, NULL, O_TOKEN},
        {"token-file", required_argument, NULL, O_TOKEN_FILE},
        {"json", no_argument, NULL, O_JSON},
        {"count", required_argument, NULL, O_COUNT},
        {"prefix", required_argument, NULL, O_PREFIX},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT},
        {"tls-ca", required_argument, NULL, O_TLS_CA},
        {"tls-cert", required_argument, NULL, O_TLS_CERT},
        {"tls-key", required_argument, NULL, O_TLS_KEY},
        {"tls-insecure", no_argument, NULL, O_TLS_INSECURE},
        {NULL, 0, NULL, 0}};

    memset(o, 0, sizeof *o);
    o->count = -1;
    o->prefix = "msg-";
    o->timeout_ms = -1;
    size_t n = (size_t)argc + 4;
    o->conf = xmalloc(n * sizeof *o->conf);
    o->files = xmalloc(n * sizeof *o->files);
    o->prop_names = xmalloc(n * sizeof *o->prop_names);
    o->prop_values = xmalloc(n * sizeof *o->prop_values);
    /* producer defaults of this tool, before anything the user sets: a
     * command-line producer waits for room rather than dropping input */
    add_conf(o, "block.if.queue.full", "true", "default");

    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":t:b:p:n:k:K:H:f:X:qVh", longopts, NULL)) != -1) {
        const char *arg = optarg;
        switch (c) {
        case 't':
            o->topic = arg;
            break;
        case 'b':
            o->url = arg;
            add_conf(o, "service.url", arg, "-b");
            break;
        case 'p':
            o->partitions = (long)parse_num("-p", arg, 0, 100000);
            break;
        case 'n':
            o->name = arg;
            break;
        case 'k':
            o->key = arg;
            break;
        case 'K':
            if (!*arg)
                die(EXIT_USAGE, "-K: the key delimiter must not be empty");
            o->key_delim = arg;
            o->key_delim_len = strlen(arg);
            break;
        case 'H': {
            const char *eq = strchr(arg, '=');
            if (!eq || eq == arg)
                die(EXIT_USAGE, "-H '%s': want NAME=VALUE", arg);
            o->prop_names[o->nprops] = xstrndup(arg, (size_t)(eq - arg));
            o->prop_values[o->nprops++] = eq + 1;
            break;
        }
        case 'f':
            o->files[o->nfiles++] = arg;
            break;
        case 'X': {
            if (!strcmp(arg, "list")) {
                upulsar_conf_dump_doc(stdout);
                exit(0);
            }
            char *eq = strchr(arg, '=');
            if (!eq || eq == arg)
                die(EXIT_USAGE, "-X '%s': want KEY=VALUE (-X list shows every key)", arg);
            *eq = '\0'; /* argv strings are ours to modify */
            add_conf(o, arg, eq + 1, "-X");
            break;
        }
        case 'q':
            o->quiet = true;
            break;
        case 'V':
            printf("%s %s\n", PROG, upulsar_version());
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        case O_EMBEDDED:
            o->embedded = true;
            break;
        case O_TOKEN:
            add_conf(o, "auth.token", arg, "--token");
            break;
        case O_TOKEN_FILE:
            free_secret(o->token);
            o->token = read_token_file(arg);
            add_conf(o, "auth.token", o->token, "--token-file");
            break;
        case O_TLS_CA:
            add_conf(o, "tls.ca.file", arg, "--tls-ca");
            break;
        case O_TLS_CERT:
            add_conf(o, "tls.cert.file", arg, "--tls-cert");
            break;
        case O_TLS_KEY:
            add_conf(o, "tls.key.file", arg, "--tls-key");
            break;
        case O_TLS_INSECURE:
            add_conf(o, "tls.allow.insecure", "true", "--tls-insecure");
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_COUNT:
            o->count = parse_num("--count", arg, 0, INT64_MAX);
            break;
        case O_PREFIX:
            o->prefix = arg;
            break;
        case O_TIMEOUT:
            o->timeout_ms = (long)parse_num("--timeout-ms", arg, 1, INT32_MAX);
            break;
        case ':':
            die(EXIT_USAGE, "option %s needs a value (see --help)", argv[optind - 1]);
            break;
        default:
            if (optopt)
                die(EXIT_USAGE, "unknown option -%c (see --help)", optopt);
            die(EXIT_USAGE, "unknown option %s (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        die(EXIT_USAGE, "unexpected argument '%s' (files are given with -f)", argv[optind]);
    if (!o->topic)
        die(EXIT_USAGE, "no topic: -t TOPIC is required (see --help)");
    if (o->key && o->key_delim)
        die(EXIT_USAGE, "-k and -K exclude each other");
    if (o->embedded && o->url)
        die(EXIT_USAGE, "--embedded and -b exclude each other");
    if (o->count >= 0 && o->nfiles)
        die(EXIT_USAGE, "--count generates messages; it excludes -f");
    if (o->count >= 0 && o->key_delim)
        die(EXIT_USAGE, "-K splits input lines; it does not apply to --count");
}

/* ---- input -------------------------------------------------------------- */

static void opts_free(opts_t *o)
{
    for (size_t k = 0; k < o->nprops; k++)
        free(o->prop_names[k]);
    free(o->prop_names);
    free(o->prop_values);
    free(o->files);
    free(o->conf);
    free_secret(o->token);
}

typedef struct input {
    FILE **fps;
    const char **names;
    size_t n, cur;
    char *line;
    size_t cap;
} input_t;

static void input_open(input_t *in, const opts_t *o)
{
    memset(in, 0, sizeof *in);
    size_t n = o->nfiles ? o->nfiles : 1;
    in->fps = xmalloc(n * sizeof *in->fps);
    in->names = xmalloc(n * sizeof *in->names);
    for (size_t i = 0; i < n; i++) {
        const char *name = o->nfiles ? o->files[i] : "-";
        in->names[i] = name;
        if (!strcmp(name, "-")) {
            in->fps[i] = stdin;
        } else {
            in->fps[i] = fopen(name, "r");
            if (!in->fps[i])
                die(EXIT_USAGE, "-f %s: %s", name, strerror(errno));
        }
    }
    in->n = n;
}

/* Next line without its '\n' (it may contain NUL bytes): length, or -1 at
 * the end of the input, or -2 after a read error (reported). */
static ssize_t input_next(input_t *in, const char **line)
{
    while (in->cur < in->n) {
        FILE *fp = in->fps[in->cur];
        errno = 0;
        ssize_t n = getline(&in->line, &in->cap, fp);
        if (n >= 0) {
            if (n > 0 && in->line[n - 1] == '\n')
                n--;
            *line = in->line;
            return n;
        }
        if (ferror(fp)) {
            if (errno == EINTR && g_signal)
                return -1;
            fprintf(stderr, PROG ": reading %s: %s\n", in->names[in->cur], strerror(errno));
            return -2;
        }
        in->cur++;
    }
    return -1;
}

static void input_close(input_t *in)
{
    for (size_t i = 0; i < in->n; i++)
        if (in->fps[i] && in->fps[i] != stdin)
            fclose(in->fps[i]);
    free(in->fps);
    free(in->names);
    free(in->line);
}

/* ---- messages in flight ------------------------------------------------- */

typedef struct inflight {
    upulsar_future_t *f;
    uint64_t index;
    /* kept for --json only */
    char *payload;
    size_t len;
    char *key;
    char **props; /* expanded values, o->nprops */
} inflight_t;

typedef struct state {
    const opts_t *o;
    upulsar_producer_t *p;
    inflight_t *q; /* FIFO of WINDOW slots */
    size_t head, len;
    uint64_t acked, failed;
    bool gave_up; /* timed out: the producer was stopped */
} state_t;

static void report(state_t *st, inflight_t *m, upulsar_err_t err, const upulsar_msg_id_t *id)
{
    const opts_t *o = st->o;
    if (err == UPULSAR_OK) {
        st->acked++;
        if (o->json && !o->quiet) {
            printf("{\"event\":\"sent\",\"index\":%" PRIu64 ",\"payload\":", m->index);
            json_str(stdout, m->payload, m->len);
            fputs(",\"payloadBase64\":", stdout);
            json_base64(stdout, (const unsigned char *)m->payload, m->len);
            fputs(",\"key\":", stdout);
            json_cstr(stdout, m->key);
            fputs(",\"properties\":{", stdout);
            for (size_t k = 0; k < o->nprops; k++) {
                if (k)
                    fputc(',', stdout);
                json_cstr(stdout, o->prop_names[k]);
                fputc(':', stdout);
                json_cstr(stdout, m->props[k]);
            }
            printf("},\"msgId\":{\"ledgerId\":%lld,\"entryId\":%lld,\"partition\":%d,"
                   "\"batchIndex\":%d},",
                   id_num(id->ledger_id), id_num(id->entry_id), (int)id->partition,
                   (int)id->batch_index);
            /* a message sent in chunks: where its first chunk is, too */
            if (id->first_chunk_ledger_id != id->ledger_id ||
                id->first_chunk_entry_id != id->entry_id)
                printf("\"firstChunkId\":{\"ledgerId\":%lld,\"entryId\":%lld},",
                       id_num(id->first_chunk_ledger_id), id_num(id->first_chunk_entry_id));
            if (id->batch_size > 0)
                printf("\"batch\":{\"pos\":%d,\"size\":%d}}\n", (int)id->batch_index,
                       (int)id->batch_size);
            else
                fputs("\"batch\":null}\n", stdout);
        } else if (!o->quiet) {
            printf("%d:%lld:%lld:%d\n", (int)id->partition, id_num(id->ledger_id),
                   id_num(id->entry_id), (int)id->batch_index);
        }
    } else {
        st->failed++;
        fprintf(stderr, PROG ": message %" PRIu64 " failed: %s (%s)\n", m->index,
                upulsar_err_name(err), upulsar_err_str(err));
        if (o->json && !o->quiet) {
            printf("{\"event\":\"error\",\"index\":%" PRIu64 ",\"error\":", m->index);
            json_cstr(stdout, upulsar_err_name(err));
            fputs(",\"message\":", stdout);
            json_cstr(stdout, upulsar_err_str(err));
            fputs("}\n", stdout);
        }
    }
    free(m->payload);
    free(m->key);
    if (m->props) {
        for (size_t k = 0; k < o->nprops; k++)
            free(m->props[k]);
        free(m->props);
    }
    memset(m, 0, sizeof *m);
}

/* Stop the producer after a receipt wait timed out: every message still
 * unresolved fails (CLOSED), so every future below resolves at once. */
static void give_up(state_t *st)
{
    fprintf(stderr, PROG ": no receipt within %ld ms; failing what is still in flight\n",
            st->o->timeout_ms);
    upulsar_producer_stop(st->p, 0);
    st->p = NULL;
    st->gave_up = true;
}

/* Resolve the oldest message: wait for it if @p block, else only if it is
 * resolved already. Returns true if one was resolved. */
static bool resolve_oldest(state_t *st, bool block)
{
    if (!st->len)
        return false;
    inflight_t *m = &st->q[st->head];
    upulsar_msg_id_t id;
    upulsar_err_t err;
    if (!block) {
        /* q[head] is set: st->len counts the entries send_one() wrote (the analyzer
         * forgets it once &st.p escapes to upulsar_producer_start()), so m->f is too.
         * NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage) */
        err = upulsar_future_poll(m->f, &id);
        if (err == UPULSAR_ERR__PENDING)
            return false;
    } else {
        int t = st->gave_up ? -1 : (int)st->o->timeout_ms;
        /* as above: q[head] is set. NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage) */
        err = upulsar_future_wait(m->f, t, &id);
        if (err == UPULSAR_ERR__PENDING) {
            give_up(st);
            err = upulsar_future_wait(m->f, -1, &id);
        }
    }
    upulsar_future_release(m->f);
    report(st, m, err, &id);
    st->head = (st->head + 1) % WINDOW;
    st->len--;
    return true;
}

/* Send one message. Returns false when nothing more can be sent. */
static bool send_one(state_t *st, uint64_t index, const char *payload, size_t len,
                     const char *key)
{
    const opts_t *o = st->o;
    while (resolve_oldest(st, false))
        ;
    if (st->len == WINDOW)
        resolve_oldest(st, true);
    if (st->gave_up)
        return false;

    inflight_t *m = &st->q[(st->head + st->len) % WINDOW];
    memset(m, 0, sizeof *m);
    m->index = index;
    char *key_owned = NULL;
    if (o->key)
        key_owned = expand(o->key, index);
    else if (key)
        key_owned = xstrndup(key, strlen(key));
    upulsar_property_t *props = NULL;
    char **vals = NULL;
    if (o->nprops) {
        props = xmalloc(o->nprops * sizeof *props);
        vals = xmalloc(o->nprops * sizeof *vals);
        for (size_t k = 0; k < o->nprops; k++) {
            vals[k] = expand(o->prop_values[k], index);
            props[k] = (upulsar_property_t){o->prop_names[k], vals[k]};
        }
    }
    upulsar_send_opts_t so = {.partition_key = key_owned,
                              .properties = props,
                              .properties_cnt = o->nprops};
    upulsar_err_t err;
    for (;;) {
        err = upulsar_send(st->p, payload, len, &so, &m->f);
        /* still full after waiting send.timeout.ms: make room if we can */
        if (err != UPULSAR_ERR__QUEUE_FULL || !st->len)
            break;
        resolve_oldest(st, true);
        if (st->gave_up) {
            err = UPULSAR_ERR__CLOSED;
            break;
        }
        m = &st->q[(st->head + st->len) % WINDOW];
        memset(m, 0, sizeof *m);
        m->index = index;
    }
    free(props);
    if (err != UPULSAR_OK) {
        st->failed++;
        fprintf(stderr, PROG ": message %" PRIu64 " not sent: %s: %s\n", index,
                upulsar_err_name(err), upulsar_last_error());
        if (o->json && !o->quiet) {
            printf("{\"event\":\"error\",\"index\":%" PRIu64 ",\"error\":", index);
            json_cstr(stdout, upulsar_err_name(err));
            fputs(",\"message\":", stdout);
            json_cstr(stdout, upulsar_last_error());
            fputs("}\n", stdout);
        }
        free(key_owned);
        if (vals) {
            for (size_t k = 0; k < o->nprops; k++)
                free(vals[k]);
            free(vals);
        }
        /* a closed producer takes nothing more; other errors concern
         * this message (too large) or one partition */
        return err != UPULSAR_ERR__CLOSED;
    }
    if (o->json) {
        m->payload = xstrndup(payload, len);
        m->len = len;
        m->key = key_owned;
        m->props = vals;
    } else {
        free(key_owned);
        if (vals) {
            for (size_t k = 0; k < o->nprops; k++)
                free(vals[k]);
            free(vals);
        }
    }
    st->len++;
    return true;
}

/* ---- main --------------------------------------------------------------- */

/* -X stats.interval.ms=N: each statistics report, one JSON object per
 * line, on stderr */
static void print_stats(const char *json, void *opaque)
{
    (void)opaque;
    fprintf(stderr, "%s\n", json);
}

int main(int argc, char **argv)
{
    opts_t o;
    parse_args(argc, argv, &o);

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: a blocked read returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    upulsar_conf_t *conf = upulsar_conf_new();
    if (!conf)
        die(EXIT_FAIL, "out of memory");
    for (size_t i = 0; i < o.nconf; i++) {
        char err[512] = "";
        upulsar_conf_res_t r = upulsar_conf_set(conf, o.conf[i].key, o.conf[i].value, err,
                                                sizeof err);
        if (r == UPULSAR_CONF_UNKNOWN)
            die(EXIT_USAGE, "%s %s: unknown configuration key (-X list shows every key)",
                o.conf[i].what, o.conf[i].key);
        if (r != UPULSAR_CONF_OK)
            die(EXIT_USAGE, "%s %s: invalid value: %s", o.conf[i].what, o.conf[i].key, err);
    }

    input_t in;
    bool reading = o.count < 0;
    if (reading)
        input_open(&in, &o);

    /* the library's and the broker's threads inherit this mask: signals
     * go to this thread, where they interrupt reading */
    set_signals_blocked(true);
    upulsar_tb_t *tb = NULL;
    if (o.embedded) {
        upulsar_tb_opts_t tbo;
        upulsar_tb_opts_init(&tbo);
        if (upulsar_tb_start(&tbo, &tb) != UPULSAR_OK)
            die(EXIT_FAIL, "cannot start the embedded test broker: %s", upulsar_last_error());
        if (o.partitions > 0 &&
            upulsar_tb_set_partitions(tb, o.topic, (int)o.partitions) != UPULSAR_OK)
            die(EXIT_USAGE, "topic '%s': %s", o.topic, upulsar_last_error());
        char err[256];
        if (upulsar_conf_set(conf, "service.url", upulsar_tb_url(tb), err, sizeof err) !=
            UPULSAR_CONF_OK)
            die(EXIT_FAIL, "service.url: %s", err);
        fprintf(stderr, PROG ": embedded test broker at %s\n", upulsar_tb_url(tb));
    }

    char url[512] = "";
    upulsar_conf_get(conf, "service.url", url, sizeof url);
    upulsar_client_t *client = NULL;
    upulsar_err_t err = upulsar_client_new(conf, &client);
    if (err != UPULSAR_OK)
        die(EXIT_FAIL, "client for %s: %s: %s", url, upulsar_err_name(err),
            upulsar_last_error());
    char stats_iv[32] = "";
    upulsar_conf_get(conf, "stats.interval.ms", stats_iv, sizeof stats_iv);
    if (strcmp(stats_iv, "0") != 0)
        upulsar_client_set_stats_cb(client, print_stats, NULL);
    state_t st;
    memset(&st, 0, sizeof st);
    st.o = &o;
    err = upulsar_producer_start(client, o.name, o.topic, (int)o.partitions, conf, &st.p);
    if (err != UPULSAR_OK) {
        fprintf(stderr, PROG ": cannot produce to '%s' at %s: %s: %s\n", o.topic, url,
                upulsar_err_name(err), upulsar_last_error());
        if (!tb && (err == UPULSAR_ERR__CONNECT || err == UPULSAR_ERR__TIMED_OUT))
            fprintf(stderr, PROG ": is a broker running there? (--embedded starts a test "
                    "broker in this process)\n");
        upulsar_client_destroy(client);
        upulsar_conf_destroy(conf);
        upulsar_tb_stop(tb);
        if (reading)
            input_close(&in);
        opts_free(&o);
        return EXIT_FAIL;
    }
    set_signals_blocked(false);
    int nparts = upulsar_producer_partitions(st.p);

    if (o.json && !o.quiet) {
        fputs("{\"event\":\"created\",\"topic\":", stdout);
        json_cstr(stdout, o.topic);
        printf(",\"partitions\":%d", nparts);
        upulsar_producer_info_t info[2];
        size_t ninfo = 0;
        if (upulsar_producer_list(st.p, info, 2, &ninfo) == UPULSAR_OK && ninfo == 1) {
            fputs(",\"producerName\":", stdout);
            json_cstr(stdout, info[0].name);
        }
        fputs("}\n", stdout);
    }

    st.q = xmalloc(WINDOW * sizeof *st.q);
    uint64_t index = 0;
    bool input_failed = false;
    if (reading) {
        const char *line;
        ssize_t n;
        while (!g_signal && (n = input_next(&in, &line)) != -1) {
            if (n == -2) {
                input_failed = true;
                break;
            }
            const char *payload = line, *key = NULL;
            char *key_buf = NULL;
            size_t len = (size_t)n;
            if (o.key_delim) {
                const char *d = memmem(line, len, o.key_delim, o.key_delim_len);
                if (d) {
                    key_buf = xstrndup(line, (size_t)(d - line));
                    key = key_buf;
                    payload = d + o.key_delim_len;
                    len -= (size_t)(payload - line);
                }
            }
            bool go_on = send_one(&st, index++, payload, len, key);
            free(key_buf);
            if (!go_on)
                break;
        }
        input_close(&in);
    } else {
        size_t plen = strlen(o.prefix);
        char *buf = xmalloc(plen + 24);
        memcpy(buf, o.prefix, plen);
        for (; index < (uint64_t)o.count && !g_signal; index++) {
            int nl = snprintf(buf + plen, 24, "%" PRIu64, index);
            if (!send_one(&st, index, buf, plen + (size_t)nl, NULL)) {
                index++;
                break;
            }
        }
        free(buf);
    }

    /* resolve everything: flush, then wait in order */
    if (st.p && !st.gave_up)
        upulsar_producer_flush(st.p, 0);
    while (st.len)
        resolve_oldest(&st, true);
    if (st.p) {
        err = upulsar_producer_stop(st.p, o.timeout_ms > 0 ? (int)o.timeout_ms : 10000);
        if (err != UPULSAR_OK)
            fprintf(stderr, PROG ": stopping the producer: %s\n", upulsar_err_name(err));
    }
    upulsar_client_destroy(client);
    upulsar_conf_destroy(conf);
    upulsar_tb_stop(tb);

    if (o.json)
        printf("{\"event\":\"done\",\"sent\":%" PRIu64 ",\"failed\":%" PRIu64 "}\n", st.acked,
               st.failed);
    fflush(stdout);
    bool out_failed = ferror(stdout) != 0;
    char where[64] = "not partitioned";
    if (nparts > 0)
        snprintf(where, sizeof where, "%d partition%s", nparts, nparts == 1 ? "" : "s");
    fprintf(stderr, PROG ": %" PRIu64 " message%s acknowledged, %" PRIu64 " failed (%s, %s)\n",
            st.acked, st.acked == 1 ? "" : "s", st.failed, o.topic, where);
    if (out_failed)
        fprintf(stderr, PROG ": writing the output failed\n");

    free(st.q);
    opts_free(&o);
    if (g_signal)
        return 128 + g_signal;
    return (st.failed || input_failed || out_failed) ? EXIT_FAIL : 0;
}
