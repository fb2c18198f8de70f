/*
 * produce_opts.c -- the command line of upulsar-produce: usage text,
 * option parsing and its checks, escapes of -D and -K.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "produce.h"

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
          "      --token-file FILE   the token in FILE (auth.token.file: read again at every\n"
          "                          reconnection; a pipe is read once)\n"
          "      --tls-ca FILE       CA certificates (PEM) for pulsar+ssl:// URLs\n"
          "      --tls-cert FILE     client certificate (PEM) for mutual TLS\n"
          "      --tls-key FILE      its private key (PEM)\n"
          "      --tls-insecure      accept any broker certificate (tests only)\n"
          "  -X, --conf KEY=VALUE    any configuration key (repeatable; -X list shows them)\n"
          "\n"
          "What:\n"
          "  -f, --file FILE         read messages from FILE, one per line (repeatable;\n"
          "                          '-' = stdin; default: stdin)\n"
          "  -F, --message-file FILE the whole of FILE is one message (repeatable, in\n"
          "                          order with -f; '-' = all of stdin)\n"
          "  -D, --delimiter D       messages are separated by D instead of a newline\n"
          "                          (any bytes; escapes \\n \\t \\r \\0 \\\\ \\xHH)\n"
          "      --keep-cr           keep the '\\r' of CRLF line ends (by default, with\n"
          "                          the newline delimiter, a '\\r' ending a line is dropped)\n"
          "      --base64            each message's value (after -K) is base64, decoded\n"
          "                          before sending (whitespace skipped, '=' optional); an\n"
          "                          invalid one fails that message\n"
          "      --count N           send N generated messages PREFIX0..PREFIX<N-1>\n"
          "      --prefix PREFIX     prefix of generated messages (default \"msg-\")\n"
          "  -k, --key KEY           message key of every message\n"
          "  -K, --key-delimiter D   each line is KEY<D>VALUE (no D in a line: no key;\n"
          "                          escapes as for -D; not applied to -F files)\n"
          "  -H, --prop NAME=VALUE   message property (repeatable)\n"
          "                          In -k and -H values %d is the message index\n"
          "                          (0-based) and %% a literal %.\n"
          "      --rate N            send at most N messages per second (N > 0, may\n"
          "                          have decimals; sleeps between messages)\n"
          "\n"
          "Output:\n"
          "  -q, --quiet             no per-message lines, only the summary (stderr)\n"
          "      --json              one JSON object per message, then a summary object;\n"
          "                          a key that is not UTF-8 is given in base64 with\n"
          "                          \"keyBase64\":true (else false)\n"
          "      --line-buffered     write each id as its receipt arrives (the default\n"
          "                          when stdout is a terminal)\n"
          "      --progress          a progress line on stderr every second (the default\n"
          "                          when stderr is a terminal, unless -q)\n"
          "      --stats             at the end, a summary on stderr (with --json: an\n"
          "                          object on stdout): messages, bytes, failures,\n"
          "                          elapsed time, rate, send-to-receipt latency\n"
          "      --timeout-ms MS     give up waiting for receipts after MS (default: wait\n"
          "                          for send.timeout.ms to fail them)\n"
          "  -V, --version           print the library version\n"
          "  -h, --help              this text\n"
          "\n"
          "Exit status: 0 all acknowledged, 1 a failure, 2 bad usage, 128+N after\n"
          "signal N: 130 after Ctrl-C (SIGINT), 143 after SIGTERM; the input stops\n"
          "there and every message read before is still resolved and printed.\n",
          fp);
}

static long long parse_num(const char *opt, const char *v, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi)
        die(EXIT_USAGE, "%s: '%s' is not a number between %lld and %lld", opt, v, lo, hi);
    return n;
}

/* Messages per second: a finite number above 0, at most a billion. */
static double parse_rate(const char *v)
{
    char *end;
    errno = 0;
    double r = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(r) || r <= 0 || r > 1e9)
        die(EXIT_USAGE, "--rate: '%s' is not a number of messages per second above 0 "
                        "(at most 1e9)", v);
    return r;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool unescape(const char *s, char **out, size_t *out_len, const char **why)
{
    char *buf = xmalloc(strlen(s) + 1);
    size_t n = 0;
    for (const char *p = s; *p; p++) {
        if (*p != '\\') {
            buf[n++] = *p;
            continue;
        }
        p++;
        switch (*p) {
        case 'n':
            buf[n++] = '\n';
            break;
        case 't':
            buf[n++] = '\t';
            break;
        case 'r':
            buf[n++] = '\r';
            break;
        case '0':
            buf[n++] = '\0';
            break;
        case '\\':
            buf[n++] = '\\';
            break;
        case 'x': {
            int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
            if (hi < 0 || lo < 0) {
                free(buf);
                *why = "\\x wants two hex digits";
                return false;
            }
            buf[n++] = (char)(hi * 16 + lo);
            p += 2;
            break;
        }
        case '\0':
            free(buf);
            *why = "a lone '\\' at the end (write \\\\ for a backslash)";
            return false;
        default:
            free(buf);
            *why = "unknown escape (known: \\n \\t \\r \\0 \\\\ \\xHH)";
            return false;
        }
    }
    *out = buf;
    *out_len = n;
    return true;
}

static void delimiter_arg(const char *opt, const char *arg, char **out, size_t *len)
{
    const char *why = NULL;
    free(*out);
    *out = NULL;
    if (!unescape(arg, out, len, &why))
        die(EXIT_USAGE, "%s '%s': %s", opt, arg, why);
    if (*len == 0)
        die(EXIT_USAGE, "%s: the delimiter must not be empty", opt);
}

/* Append a configuration entry (a word of the command line may add two:
 * the token options), growing the list as needed. */
static void add_conf(opts_t *o, const char *key, const char *value, const char *what)
{
    if (o->nconf == o->conf_cap) {
        o->conf_cap = o->conf_cap ? o->conf_cap * 2 : 16;
        o->conf = xrealloc(o->conf, o->conf_cap * sizeof *o->conf);
    }
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

/* --token-file PATH: a regular file becomes auth.token.file (read again
 * at every (re)connection, so a rotated token is picked up, whitespace
 * around it ignored); anything else (a pipe, `<(cmd)`) can be read only
 * once, so it is read here, the same way, into auth.token. NULL for a
 * regular file, else the token (a secret: free_secret()). */
static char *token_from(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        die(EXIT_USAGE, "--token-file %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) == 0 && S_ISREG(sb.st_mode)) {
        fclose(fp);
        return NULL;
    }
    char *tok = xmalloc(8192);
    size_t n = fread(tok, 1, 8191, fp);
    bool more = n == 8191 && fgetc(fp) != EOF;
    fclose(fp);
    tok[n] = '\0';
    if (more) {
        free_secret(tok);
        die(EXIT_USAGE, "--token-file %s: longer than 8191 bytes", path);
    }
    size_t a = 0;
    while (a < n && isspace((unsigned char)tok[a]))
        a++;
    while (n > a && isspace((unsigned char)tok[n - 1]))
        tok[--n] = '\0';
    if (n == a) {
        free_secret(tok);
        die(EXIT_USAGE, "--token-file %s: no token in it", path);
    }
    memmove(tok, tok + a, n - a + 1);
    return tok;
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
    O_TLS_INSECURE,
    O_KEEP_CR,
    O_BASE64,
    O_RATE,
    O_LINE_BUFFERED,
    O_PROGRESS,
    O_STATS
};

static const struct option longopts[] = {
    {"topic", required_argument, NULL, 't'},
    {"url", required_argument, NULL, 'b'},
    {"broker", required_argument, NULL, 'b'},
    {"partitions", required_argument, NULL, 'p'},
    {"name", required_argument, NULL, 'n'},
    {"key", required_argument, NULL, 'k'},
    {"key-delimiter", required_argument, NULL, 'K'},
    {"delimiter", required_argument, NULL, 'D'},
    {"prop", required_argument, NULL, 'H'},
    {"header", required_argument, NULL, 'H'},
    {"file", required_argument, NULL, 'f'},
    {"message-file", required_argument, NULL, 'F'},
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
    {"keep-cr", no_argument, NULL, O_KEEP_CR},
    {"base64", no_argument, NULL, O_BASE64},
    {"rate", required_argument, NULL, O_RATE},
    {"line-buffered", no_argument, NULL, O_LINE_BUFFERED},
    {"progress", no_argument, NULL, O_PROGRESS},
    {"stats", no_argument, NULL, O_STATS},
    {NULL, 0, NULL, 0}};

/* An option of the long table; false if @p c is none of them. */
static bool long_only_option(opts_t *o, int c, const char *arg)
{
    switch (c) {
    case O_EMBEDDED:
        o->embedded = true;
        break;
    /* the last token option wins: each clears what the other set (the
     * library prefers auth.token.file to auth.token when both are set) */
    case O_TOKEN:
        add_conf(o, "auth.token.file", "", "--token");
        add_conf(o, "auth.token", arg, "--token");
        break;
    case O_TOKEN_FILE: {
        char *tok = token_from(arg);
        if (tok) {
            if (o->ntokens == (int)(sizeof o->tokens / sizeof o->tokens[0])) {
                free_secret(tok);
                die(EXIT_USAGE, "--token-file: at most %d pipes",
                    (int)(sizeof o->tokens / sizeof o->tokens[0]));
            }
            o->tokens[o->ntokens++] = tok;
            add_conf(o, "auth.token.file", "", "--token-file");
            add_conf(o, "auth.token", tok, "--token-file");
        } else {
            add_conf(o, "auth.token", "", "--token-file");
            add_conf(o, "auth.token.file", arg, "--token-file");
        }
        break;
    }
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
    case O_KEEP_CR:
        o->keep_cr = true;
        break;
    case O_BASE64:
        o->base64 = true;
        break;
    case O_RATE:
        o->rate = parse_rate(arg);
        break;
    case O_LINE_BUFFERED:
        o->line_buffered = true;
        break;
    case O_PROGRESS:
        o->progress = true;
        break;
    case O_STATS:
        o->stats = true;
        break;
    default:
        return false;
    }
    return true;
}

static void check_args(opts_t *o, bool delim_given)
{
    if (!o->topic)
        die(EXIT_USAGE, "no topic: -t TOPIC is required (see --help)");
    if (o->key && o->key_delim)
        die(EXIT_USAGE, "-k and -K exclude each other");
    if (o->embedded && o->url)
        die(EXIT_USAGE, "--embedded and -b exclude each other");
    if (o->count >= 0 && o->nsources)
        die(EXIT_USAGE, "--count generates messages; it excludes -f and -F");
    if (o->count >= 0 && o->key_delim)
        die(EXIT_USAGE, "-K splits input lines; it does not apply to --count");
    if (o->count >= 0 && (delim_given || o->base64))
        die(EXIT_USAGE, "%s reads input; it does not apply to --count",
            delim_given ? "-D" : "--base64");
    if (isatty(STDOUT_FILENO))
        o->line_buffered = true;
    if (isatty(STDERR_FILENO) && !o->quiet)
        o->progress = true;
}

void parse_args(int argc, char **argv, opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->count = -1;
    o->prefix = "msg-";
    o->timeout_ms = -1;
    size_t n = (size_t)argc + 4;
    o->sources = xmalloc(n * sizeof *o->sources);
    o->prop_names = xmalloc(n * sizeof *o->prop_names);
    o->prop_values = xmalloc(n * sizeof *o->prop_values);
    o->delim = xstrndup("\n", 1);
    o->delim_len = 1;
    bool delim_given = false;
    /* producer defaults of this tool, before anything the user sets: a
     * command-line producer waits for room rather than dropping input */
    add_conf(o, "block.if.queue.full", "true", "default");

    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":t:b:p:n:k:K:D:H:f:F:X:qVh", longopts, NULL)) != -1) {
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
            delimiter_arg("-K", arg, &o->key_delim, &o->key_delim_len);
            break;
        case 'D':
            delimiter_arg("-D", arg, &o->delim, &o->delim_len);
            delim_given = true;
            break;
        case 'H': {
            const char *eq = strchr(arg, '=');
            if (!eq || eq == arg)
                die(EXIT_USAGE, "-H '%s': want NAME=VALUE", arg);
            /* Pulsar's properties are protobuf strings */
            if (!utf8_valid((const unsigned char *)arg, strlen(arg)))
                die(EXIT_USAGE, "-H: a property's name and value must be UTF-8 text");
            o->prop_names[o->nprops] = xstrndup(arg, (size_t)(eq - arg));
            o->prop_values[o->nprops++] = eq + 1;
            break;
        }
        case 'f':
        case 'F':
            o->sources[o->nsources++] = (source_t){arg, c == 'F'};
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
        case ':':
            die(EXIT_USAGE, "option %s needs a value (see --help)", argv[optind - 1]);
            break;
        default:
            if (long_only_option(o, c, arg))
                break;
            if (optopt)
                die(EXIT_USAGE, "unknown option -%c (see --help)", optopt);
            die(EXIT_USAGE, "unknown option %s (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        die(EXIT_USAGE, "unexpected argument '%s' (files are given with -f or -F)",
            argv[optind]);
    check_args(o, delim_given);
}

void opts_free(opts_t *o)
{
    for (size_t k = 0; k < o->nprops; k++)
        free(o->prop_names[k]);
    free(o->prop_names);
    free(o->prop_values);
    free(o->sources);
    free(o->conf);
    free(o->delim);
    free(o->key_delim);
    for (int i = 0; i < o->ntokens; i++)
        free_secret(o->tokens[i]);
}
