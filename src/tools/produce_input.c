/*
 * produce_input.c -- what upulsar-produce reads: records separated by a
 * delimiter (a newline by default, any bytes with -D; in line mode a '\r'
 * ending a line is dropped), whole files as one message (-F), and the
 * base64 decoding of --base64.
 *
 * Reading is done with read(2) on the file descriptors, through one
 * buffer, so that before each read the caller's wait function can serve
 * receipts (print ids as they arrive) while the input is idle.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "produce.h"

#define READ_CHUNK 65536

static const source_t stdin_lines = {"-", false};

void input_open(input_t *in, const opts_t *o)
{
    memset(in, 0, sizeof *in);
    size_t n = o->nsources ? o->nsources : 1;
    in->srcs = o->nsources ? o->sources : &stdin_lines;
    in->fds = xmalloc(n * sizeof *in->fds);
    for (size_t i = 0; i < n; i++) {
        const source_t *s = &in->srcs[i];
        if (!strcmp(s->name, "-")) {
            in->fds[i] = STDIN_FILENO;
            continue;
        }
        in->fds[i] = open(s->name, O_RDONLY | O_CLOEXEC);
        if (in->fds[i] < 0)
            die(EXIT_USAGE, "%s %s: %s", s->whole ? "-F" : "-f", s->name, strerror(errno));
        /* a directory opens, and fails only at its first read: say so now,
         * before anything is connected or sent */
        struct stat st;
        if (fstat(in->fds[i], &st) == 0 && S_ISDIR(st.st_mode))
            die(EXIT_USAGE, "%s %s: %s", s->whole ? "-F" : "-f", s->name, strerror(EISDIR));
    }
    in->n = n;
    in->delim = o->delim;
    in->delim_len = o->delim_len;
    in->strip_cr = !o->keep_cr && o->delim_len == 1 && o->delim[0] == '\n';
}

/* Done with srcs[cur]: close it (not stdin) and go on with the next. The
 * buffer's bytes stay where they are until the next read. */
static void next_source(input_t *in)
{
    int fd = in->fds[in->cur];
    if (fd >= 0 && fd != STDIN_FILENO)
        close(fd);
    in->fds[in->cur] = -1;
    in->cur++;
    in->eof = false;
    in->start = in->end = in->scan = 0;
}

/* Read more of srcs[cur]: 1 read something, 0 at its end, -1 a signal
 * ended the input, -2 a read error (reported). */
static int fill(input_t *in)
{
    if (in->start > 0) {
        memmove(in->buf, in->buf + in->start, in->end - in->start);
        in->end -= in->start;
        in->scan = in->scan > in->start ? in->scan - in->start : 0;
        in->start = 0;
    }
    if (in->cap - in->end < READ_CHUNK / 4) {
        size_t cap = in->cap ? in->cap * 2 : READ_CHUNK;
        while (cap - in->end < READ_CHUNK / 4)
            cap *= 2;
        in->buf = xrealloc(in->buf, cap);
        in->cap = cap;
    }
    int fd = in->fds[in->cur];
    for (;;) {
        if (in->wait && !in->wait(in->ctx, fd))
            return -1;
        ssize_t n = read(fd, in->buf + in->end, in->cap - in->end);
        if (n > 0) {
            in->end += (size_t)n;
            return 1;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR) {
            if (g_signal)
                return -1;
            continue;
        }
        fprintf(stderr, PROG ": reading %s: %s\n", in->srcs[in->cur].name, strerror(errno));
        return -2;
    }
}

static size_t strip(const input_t *in, const char *rec, size_t len)
{
    if (in->strip_cr && len > 0 && rec[len - 1] == '\r')
        len--;
    return len;
}

ssize_t input_next(input_t *in, const char **rec)
{
    while (in->cur < in->n) {
        const source_t *s = &in->srcs[in->cur];
        if (!s->whole && in->end > in->start) {
            size_t from = in->scan > in->start ? in->scan : in->start;
            const char *d = memmem(in->buf + from, in->end - from, in->delim, in->delim_len);
            if (d) {
                size_t len = (size_t)(d - (in->buf + in->start));
                *rec = in->buf + in->start;
                in->start += len + in->delim_len;
                in->scan = in->start;
                in->whole = false;
                return (ssize_t)strip(in, *rec, len);
            }
            /* the next search starts where a delimiter may begin */
            size_t keep = in->delim_len - 1;
            in->scan = in->end - in->start > keep ? in->end - keep : in->start;
        }
        if (!in->eof) {
            int r = fill(in);
            if (r > 0)
                continue;
            if (r < 0)
                return r == -1 ? -1 : -2;
            in->eof = true;
        }
        /* at the end of srcs[cur]: a whole file, or a last record without
         * its delimiter, is what remains */
        size_t len = in->end - in->start;
        const char *p = in->buf ? in->buf + in->start : "";
        bool one = s->whole || len > 0;
        next_source(in);
        if (one) {
            *rec = p;
            in->whole = s->whole;
            return (ssize_t)(s->whole ? len : strip(in, p, len));
        }
    }
    return -1;
}

void input_close(input_t *in)
{
    for (size_t i = 0; i < in->n; i++)
        if (in->fds[i] >= 0 && in->fds[i] != STDIN_FILENO)
            close(in->fds[i]);
    free(in->fds);
    free(in->buf);
    memset(in, 0, sizeof *in);
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

ssize_t base64_decode(const char *s, size_t n, unsigned char *out, size_t *bad)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    bool padding = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')
            continue;
        if (c == '=') {
            padding = true;
            continue;
        }
        int v = b64val(c);
        if (v < 0 || padding) { /* nothing but padding after padding */
            *bad = i;
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits == 6) { /* one character of a last group: not a byte */
        *bad = n;
        return -1;
    }
    return (ssize_t)o;
}
