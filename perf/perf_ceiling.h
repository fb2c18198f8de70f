/* perf_ceiling.h -- upulsar-perf --ceiling: run upulsar-ceiling, the
 * hand-rolled batch writer, right after upulsar-perf's own run, with the
 * same broker (the same URL, or its own embedded perf-mode broker started
 * as upulsar-perf starts one), topic, partitions, message size, warm-up
 * and measured seconds, and read its figures back, so that one invocation
 * reports upulsar's rate as a share of the wire's.
 *
 * The program is looked up next to the running one (/proc/self/exe's
 * directory), where the build and `cmake --install` put both.
 */
#ifndef UPULSAR_PERF_CEILING_H
#define UPULSAR_PERF_CEILING_H

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

typedef struct {
    double msgs_per_sec;     /* messages stored per second (receipts) */
    double client_ns;        /* its CPU per stored message */
    double broker_ns;        /* the embedded broker's, 0 with --url */
    double measured_seconds; /* its measured window */
    int batch_messages;      /* messages per frame it wrote */
    int partitions, size;    /* as it ran (checked against the request) */
} ceiling_result_t;

/* The number after "KEY": in the JSON object @p js, or NaN. */
static inline double ceiling_json_num(const char *js, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(js, pat);
    if (!p)
        return 0.0 / 0.0;
    char *end;
    double v = strtod(p + strlen(pat), &end);
    return end == p + strlen(pat) ? 0.0 / 0.0 : v;
}

/* The same as a whole number, -1 when missing or out of an int's range. */
static inline int ceiling_json_int(const char *js, const char *key)
{
    double v = ceiling_json_num(js, key);
    return v >= -2147483648.0 && v <= 2147483647.0 ? (int)v : -1;
}

/* Run upulsar-ceiling as described above and fill @p out. 0 on success;
 * else -1 with the reason in @p err. Blocks for the ceiling's run (its
 * warm-up, @p seconds and its start and stop). */
static inline int ceiling_run(const char *url, const char *topic, int partitions, int size,
                              double seconds, double warmup, ceiling_result_t *out, char *err,
                              size_t errlen)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf(err, errlen, "cannot find this program's directory: %s", strerror(errno));
        return -1;
    }
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash || (size_t)(slash - exe) + sizeof "/upulsar-ceiling" > sizeof exe) {
        snprintf(err, errlen, "cannot find this program's directory");
        return -1;
    }
    strcpy(slash, "/upulsar-ceiling");
    char a_p[16], a_s[16], a_d[32], a_w[32];
    snprintf(a_p, sizeof a_p, "%d", partitions);
    snprintf(a_s, sizeof a_s, "%d", size);
    snprintf(a_d, sizeof a_d, "%.3f", seconds);
    snprintf(a_w, sizeof a_w, "%.3f", warmup);
    const char *argv[16] = {exe,  "-q", "--json", "-p",      a_p, "-s",
                            a_s,  "-d", a_d,      "--warmup", a_w, "--topic",
                            topic};
    int argc = 13;
    if (url) {
        argv[argc++] = "--url";
        argv[argc++] = url;
    }
    argv[argc] = NULL;
    int pfd[2];
    if (pipe(pfd)) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pfd[0]);
    posix_spawn_file_actions_addclose(&fa, pfd[1]);
    pid_t pid;
    int rc = posix_spawn(&pid, exe, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    if (rc) {
        close(pfd[0]);
        snprintf(err, errlen, "%.300s: %s", exe, strerror(rc));
        return -1;
    }
    char buf[8192];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(pfd[0], buf + len, sizeof buf - 1 - len);
        if (r > 0 && (len += (size_t)r) < sizeof buf - 1)
            continue;
        if (r < 0 && errno == EINTR)
            continue;
        break; /* end of output, an error, or more than a summary's worth */
    }
    close(pfd[0]);
    buf[len] = 0;
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(err, errlen, "%.300s failed (%s %d; its messages are above)", exe,
                 WIFEXITED(st) ? "exit status" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return -1;
    }
    const char *js = strchr(buf, '{');
    if (!js) {
        snprintf(err, errlen, "%.300s printed no JSON summary", exe);
        return -1;
    }
    out->msgs_per_sec = ceiling_json_num(js, "msgs_per_sec");
    out->client_ns = ceiling_json_num(js, "client_cpu_ns_per_msg");
    out->broker_ns = ceiling_json_num(js, "broker_cpu_ns_per_msg");
    out->measured_seconds = ceiling_json_num(js, "measured_seconds");
    out->batch_messages = ceiling_json_int(js, "batch_messages");
    out->partitions = ceiling_json_int(js, "partitions");
    out->size = ceiling_json_int(js, "size");
    if (!(out->msgs_per_sec > 0) || !(out->client_ns >= 0) || !(out->broker_ns >= 0) ||
        !(out->measured_seconds > 0) || !(out->batch_messages > 0) ||
        out->partitions != partitions || out->size != size) {
        snprintf(err, errlen, "%.200s: unexpected summary: %.200s", exe, js);
        return -1;
    }
    return 0;
}

#endif
