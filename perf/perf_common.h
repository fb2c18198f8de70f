/* perf_common.h -- what the perf harnesses share (each perf/ source file is a
 * program of its own, hence static functions): the project's test broker
 * forked into a child process in perf mode, so that the harness's CPU
 * time, peak RSS and allocations are its own, and the CPU time figures of
 * this process and of the broker child. */
#ifndef UPULSAR_PERF_COMMON_H
#define UPULSAR_PERF_COMMON_H
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

static pid_t broker_pid;                  /* the embedded broker child, 0 = none */
static volatile sig_atomic_t broker_live; /* ... and not yet told to stop */

/* Fork the embedded broker: perf mode, at most 64 MiB of stored entries
 * kept, @p topic given @p partitions partitions (> 0), TLS with
 * @p tls_cert and @p tls_key (NULL: plaintext). @p in_child (may be NULL)
 * runs first in the child. The child serves until SIGTERM (broker_stop()).
 * Writes the broker's URL to @p url; -1 if the broker did not start. */
static inline int broker_fork(const char *tls_cert, const char *tls_key, const char *topic,
                              int partitions, void (*in_child)(void), char *url, size_t urlsz)
{
    int fds[2];
    if (pipe(fds))
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        if (in_child)
            in_child();
        upulsar_tb_opts_t o;
        upulsar_tb_opts_init(&o);
        o.perf = 1;
        o.max_retained_bytes = 64u << 20; /* keep memory flat on long runs */
        o.tls_cert_file = tls_cert;
        o.tls_key_file = tls_key;
        upulsar_tb_t *tb;
        if (upulsar_tb_start(&o, &tb)) {
            fprintf(stderr, "embedded broker: %s\n", upulsar_last_error());
            _exit(1);
        }
        /* the topic's partition count is the broker's (upulsar_producer_start
         * checks the count it is given against it) */
        if (partitions > 0 && upulsar_tb_set_partitions(tb, topic, partitions)) {
            fprintf(stderr, "embedded broker: %s\n", upulsar_last_error());
            _exit(1);
        }
        char line[256];
        int n = snprintf(line, sizeof line, "%s\n", upulsar_tb_url(tb));
        if (write(fds[1], line, (size_t)n) != n)
            _exit(1);
        close(fds[1]);
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        int sig;
        sigwait(&ss, &sig);
        upulsar_tb_stop(tb);
        _exit(0);
    }
    close(fds[1]);
    broker_pid = pid;
    broker_live = 1;
    ssize_t r = read(fds[0], url, urlsz - 1);
    close(fds[0]);
    if (r <= 0)
        return -1;
    url[r] = 0;
    url[strcspn(url, "\n")] = 0;
    return 0;
}

/* Stop the broker child, if one runs, and reap it; its peak RSS (KiB) to
 * *rss_kb if @p rss_kb is not NULL. broker_pid stays set: it tells that the
 * run had an embedded broker. */
static inline void broker_stop(long *rss_kb)
{
    if (!broker_live)
        return;
    broker_live = 0;
    kill(broker_pid, SIGTERM);
    struct rusage ru;
    int st;
    if (wait4(broker_pid, &st, 0, &ru) > 0 && rss_kb)
        *rss_kb = ru.ru_maxrss;
}

static inline double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* This process's user + system CPU time, in seconds. */
static inline double cpu_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
}

/* Process @p pid's user + system CPU time in seconds (/proc), 0 if
 * unknown. */
static inline double proc_cpu(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    unsigned long ut = 0, st = 0;
    /* fields after ")": state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

#endif
