/* main.c -- upulsar-testbroker: run the test broker as a process.
 *
 *   upulsar-testbroker [--port N] [--partitions TOPIC=N]... [--perf]
 *                      [--max-message-size BYTES] [--ping-interval-ms MS]
 *                      [--retain-max-mb MB] [--owner TOPIC=URL]...
 *
 * Prints "pulsar://127.0.0.1:PORT" on the first line of stdout once it
 * listens, then serves until SIGINT or SIGTERM and prints per-broker
 * totals on exit.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upulsar/testbroker.h"

static void usage(FILE *fp)
{
    fputs("usage: upulsar-testbroker [options]\n"
          "  --port N               listen on 127.0.0.1:N (default 6650; 0 = any free port)\n"
          "  --partitions TOPIC=N   TOPIC has N partitions (repeatable)\n"
          "  --owner TOPIC=URL      redirect lookups of TOPIC to URL (repeatable)\n"
          "  --perf                 store entries without parsing batches\n"
          "  --max-message-size B   advertised max_message_size (default 5242880)\n"
          "  --ping-interval-ms MS  keep-alive interval (default 30000, 0 = off)\n"
          "  --retain-max-mb MB     stop keeping entry bytes beyond MB (default unlimited)\n"
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
            return 0;
        } else if (!strcmp(a, "--perf")) {
            o.perf = 1;
        } else if (!v) {
            fprintf(stderr, "%s: missing value or unknown option\n", a);
            usage(stderr);
            free(parts);
            free(owners);
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
        } else {
            fprintf(stderr, "bad option or value: %s %s\n", a, v);
            usage(stderr);
            free(parts);
            free(owners);
            return 2;
        }
    }

    /* block the signals before any broker thread exists: they inherit the
     * mask and only sigwait() below sees them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    upulsar_tb_t *tb;
    if (upulsar_tb_start(&o, &tb)) {
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
            "protocol errors %llu\n",
            sig, (unsigned long long)st.connections_accepted, (unsigned long long)st.entries,
            (unsigned long long)st.messages, (unsigned long long)st.protocol_errors);
    upulsar_tb_stop(tb);
    return 0;
}
