/* main.c -- upulsar-testbroker: run the test broker as a process.
 *
 *   upulsar-testbroker [--port N] [--partitions TOPIC=N]... [--perf]
 *                      [--max-message-size BYTES] [--ping-interval-ms MS]
 *                      [--retain-max-mb MB] [--owner TOPIC=URL]...
 *                      [--tls-cert FILE --tls-key FILE [--tls-ca FILE]
 *                       [--tls-require-client-cert]]
 *                      [--token TOKEN]... [--token-file FILE]...
 *                      [--auth-challenge-on-connect] [--auth-response-timeout-ms MS]
 *                      [--proxy-mode]
 *
 * Prints its URL ("pulsar://127.0.0.1:PORT", or "pulsar+ssl://localhost:PORT"
 * with TLS) on the first line of stdout once it listens, then serves until
 * SIGINT or SIGTERM and prints per-broker totals on exit. Tokens are never
 * printed; prefer --token-file (one token per line) to --token, which other
 * users of the machine can see in the process list.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upulsar/testbroker.h"

/* Growable list of accepted tokens. */
typedef struct {
    char **v;
    size_t n, cap;
} tokens_t;

static int tokens_add(tokens_t *t, const char *s, size_t len)
{
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 8;
        char **nv = realloc(t->v, nc * sizeof *nv);
        if (!nv)
            return -1;
        t->v = nv;
        t->cap = nc;
    }
    char *c = malloc(len + 1);
    if (!c)
        return -1;
    memcpy(c, s, len);
    c[len] = 0;
    t->v[t->n++] = c;
    return 0;
}

static void tokens_free(tokens_t *t)
{
    for (size_t i = 0; i < t->n; i++) {
        memset(t->v[i], 0, strlen(t->v[i]));
        free(t->v[i]);
    }
    free(t->v);
    t->v = NULL;
    t->n = t->cap = 0;
}

/* Add every non-empty line of @p path (surrounding blanks trimmed). Errors
 * name the file, never its content. */
static int tokens_from_file(tokens_t *t, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "--token-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    int too_big = buf && n == (1 << 20) - 1 && fgetc(f) != EOF;
    fclose(f);
    if (!buf || too_big) {
        fprintf(stderr, "--token-file %s: %s\n", path, buf ? "larger than 1 MiB" : "out of memory");
        free(buf);
        return -1;
    }
    int rc = 0;
    size_t added = 0;
    for (size_t i = 0; i < n && !rc;) {
        size_t e = i;
        while (e < n && buf[e] != '\n')
            e++;
        size_t a = i, b = e;
        while (a < b && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r'))
            a++;
        while (b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\t' || buf[b - 1] == '\r'))
            b--;
        if (b > a) {
            if (memchr(buf + a, '\0', b - a)) {
                fprintf(stderr, "--token-file %s: binary content\n", path);
                rc = -1;
            } else if (tokens_add(t, buf + a, b - a)) {
                fprintf(stderr, "out of memory\n");
                rc = -1;
            }
            added++;
        }
        i = e + 1;
    }
    memset(buf, 0, n);
    free(buf);
    if (!rc && !added) {
        fprintf(stderr, "--token-file %s: no token in it\n", path);
        rc = -1;
    }
    return rc;
}

static void usage(FILE *fp)
{
    fputs("usage: upulsar-testbroker [options]\n"
          "  --port N               listen on 127.0.0.1:N (default 6650; 0 = any free port)\n"
          "  --partitions TOPIC=N   TOPIC has N partitions (repeatable)\n"
          "  --owner TOPIC=URL      redirect lookups of TOPIC to URL (repeatable)\n"
          "  --perf                 store entries without parsing batches\n"
          "  --max-message-size B   advertised max_message_size (default 5242880)\n"
          "  --proxy-mode           answer as a Pulsar proxy in front of this broker\n"
          "                         (lookups say: connect through the service URL;\n"
          "                         a CONNECT naming another broker on this machine\n"
          "                         is relayed to it)\n"
          "  --ping-interval-ms MS  keep-alive interval (default 30000, 0 = off)\n"
          "  --retain-max-mb MB     stop keeping entry bytes beyond MB (default unlimited)\n"
          "  --tls-cert FILE        serve TLS with this PEM certificate (chain)...\n"
          "  --tls-key FILE         ...and this PEM private key\n"
          "  --tls-ca FILE          verify client certificates against these CAs\n"
          "  --tls-require-client-cert  refuse clients without one (mutual TLS)\n"
          "  --token TOKEN          require token authentication; TOKEN is accepted\n"
          "                         (repeatable)\n"
          "  --token-file FILE      accept the tokens in FILE, one per line (repeatable)\n"
          "  --auth-challenge-on-connect  send AUTH_CHALLENGE before CONNECTED\n"
          "  --auth-response-timeout-ms MS  time to answer AUTH_CHALLENGE (default 10000)\n"
          "  --deduplication        brokerDeduplicationEnabled: drop SENDs whose sequence\n"
          "                         id was stored already (Pulsar's default is off)\n"
          "  --schema-validation-enforced  refuse producers without a schema on topics\n"
          "                         that have one (IncompatibleSchema)\n"
          "  -h, --help             this text\n",
          fp);
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Split "a=b" at the last '=' (topics may not contain one, URLs might). */
static char *split_eq(char *s)
{
    char *eq = strchr(s, '=');
    if (!eq || eq == s || !eq[1])
        return NULL;
    *eq = 0;
    return eq + 1;
}

int main(int argc, char **argv)
{
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.port = 6650;
    /* topic settings are applied once the broker runs */
    char **parts = calloc((size_t)argc, sizeof *parts);
    char **owners = calloc((size_t)argc, sizeof *owners);
    int nparts = 0, nowners = 0;
    tokens_t tokens = {NULL, 0, 0};
    if (!parts || !owners) {
        fputs("out of memory\n", stderr);
        free(parts);
        free(owners);
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(parts);
            free(owners);
            tokens_free(&tokens);
            return 0;
        } else if (!strcmp(a, "--perf")) {
            o.perf = 1;
        } else if (!strcmp(a, "--tls-require-client-cert")) {
            o.tls_require_client_cert = 1;
        } else if (!strcmp(a, "--auth-challenge-on-connect")) {
            o.auth_challenge_on_connect = 1;
        } else if (!strcmp(a, "--proxy-mode")) {
            o.proxy_mode = 1;
        } else if (!strcmp(a, "--deduplication")) {
            o.deduplication = 1;
        } else if (!strcmp(a, "--schema-validation-enforced")) {
            o.schema_validation_enforced = 1;
        } else if (!v) {
            fprintf(stderr, "%s: missing value or unknown option\n", a);
            usage(stderr);
            free(parts);
            free(owners);
            tokens_free(&tokens);
            return 2;
        } else if (!strcmp(a, "--port") && !parse_int(v, 0, 65535, &n)) {
            o.port = (int)n;
            i++;
        } else if (!strcmp(a, "--max-message-size") && !parse_int(v, 1, 512L << 20, &n)) {
            o.max_message_size = (int)n;
            i++;
        } else if (!strcmp(a, "--ping-interval-ms") && !parse_int(v, 0, 86400000L, &n)) {
            o.ping_interval_ms = (int)n;
            i++;
        } else if (!strcmp(a, "--retain-max-mb") && !parse_int(v, 0, 1L << 30, &n)) {
            o.max_retained_bytes = (size_t)n << 20;
            i++;
        } else if (!strcmp(a, "--partitions")) {
            parts[nparts++] = argv[++i];
        } else if (!strcmp(a, "--owner")) {
            owners[nowners++] = argv[++i];
        } else if (!strcmp(a, "--tls-cert")) {
            o.tls_cert_file = argv[++i];
        } else if (!strcmp(a, "--tls-key")) {
            o.tls_key_file = argv[++i];
        } else if (!strcmp(a, "--tls-ca")) {
            o.tls_ca_file = argv[++i];
        } else if (!strcmp(a, "--auth-response-timeout-ms") && !parse_int(v, 1, 86400000L, &n)) {
            o.auth_response_timeout_ms = (int)n;
            i++;
        } else if ((!strcmp(a, "--token") && (!*v || tokens_add(&tokens, v, strlen(v)))) ||
                   (!strcmp(a, "--token-file") && tokens_from_file(&tokens, v))) {
            if (!strcmp(a, "--token"))
                fprintf(stderr, "--token: empty, or out of memory\n");
            free(parts);
            free(owners);
            tokens_free(&tokens);
            return 2;
        } else if (!strcmp(a, "--token") || !strcmp(a, "--token-file")) {
            i++;
        } else {
            /* the value is not echoed: it may be a secret */
            fprintf(stderr, "bad option or value for %s\n", a);
            usage(stderr);
            free(parts);
            free(owners);
            tokens_free(&tokens);
            return 2;
        }
    }
    o.auth_tokens = (const char *const *)tokens.v;
    o.auth_tokens_cnt = tokens.n;

    /* block the signals before any broker thread exists: they inherit the
     * mask and only sigwait() below sees them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    upulsar_tb_t *tb;
    upulsar_err_t serr = upulsar_tb_start(&o, &tb);
    tokens_free(&tokens); /* the broker keeps its own copy */
    if (serr) {
        fprintf(stderr, "cannot start: %s\n", upulsar_last_error());
        free(parts);
        free(owners);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < nparts && !rc; i++) {
        char *val = split_eq(parts[i]);
        long n;
        if (!val || parse_int(val, 0, 1000000, &n) || upulsar_tb_set_partitions(tb, parts[i], (int)n)) {
            fprintf(stderr, "bad --partitions %s\n", parts[i]);
            rc = 2;
        }
    }
    for (int i = 0; i < nowners && !rc; i++) {
        char *val = split_eq(owners[i]);
        if (!val || upulsar_tb_set_owner(tb, owners[i], val)) {
            fprintf(stderr, "bad --owner %s\n", owners[i]);
            rc = 2;
        }
    }
    free(parts);
    free(owners);
    if (rc) {
        upulsar_tb_stop(tb);
        return rc;
    }
    printf("%s\n", upulsar_tb_url(tb));
    fflush(stdout);

    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    upulsar_tb_stats_t st;
    upulsar_tb_stats(tb, &st);
    fprintf(stderr,
            "upulsar-testbroker: signal %d; connections %llu, entries %llu, messages %llu, "
            "protocol errors %llu, TLS handshakes %llu (failed %llu), authentications %llu "
            "(refused %llu)\n",
            sig, (unsigned long long)st.connections_accepted, (unsigned long long)st.entries,
            (unsigned long long)st.messages, (unsigned long long)st.protocol_errors,
            (unsigned long long)st.tls_handshakes, (unsigned long long)st.tls_failures,
            (unsigned long long)st.auth_ok, (unsigned long long)st.auth_failed);
    upulsar_tb_stop(tb);
    return 0;
}
