/* test_edges_errors.c -- failures at the edges are reported, with what and
 * why, instead of being dropped or blurred; copies of the token do not
 * outlive their use.
 *
 * failed_loop_registration_fails_the_start: with 16 producers on the
 *   only io thread, the allocation that grows its list for one more fails
 *   (fault hook): the start fails with NOMEM and leaves no producer on the
 *   broker; a start of 40 more (the list grown twice) then works, and every
 *   partition of both handles stores exactly the 2 messages routed to it.
 * producer_handle_keeps_no_copy_of_the_token: one conf (with auth.token)
 *   used for the client and the producer: the producer's copy of it holds
 *   no token byte (the client's copy is the one connections use).
 * conf_wipe_secrets_zeroes_every_token_byte: the wipe zeroes the whole
 *   token field (a shorter token set over a longer one leaves no tail of
 *   it) and leaves the other keys alone.
 * too_many_open_files_names_the_reason_and_the_broker: every descriptor
 *   below a lowered RLIMIT_NOFILE taken: the start fails with an error
 *   reading "Too many open files" and naming the broker host:port.
 * token_file_that_is_a_directory_fails_the_client / empty_token_file_...:
 *   upulsar_client_new() fails with INVALID_ARG naming the file and why
 *   (also for a file of whitespace only).
 * token_file_emptied_later_fails_the_connect_naming_it: a token file that
 *   was fine at client creation and is empty when a connection is opened
 *   fails the start with the file's name, not with the broker's refusal of
 *   a connection without credentials.
 * missing_tls_files_name_the_file_and_the_os_reason: tls.ca.file,
 *   tls.cert.file and tls.key.file that do not exist: the error names the
 *   file and "No such file or directory".
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "fault.h"
#include "fault_common.h"
#include "tls_certs.h"

#define TOKEN "eyJhbGciOiJIUzI1NiJ9.edges-token.sig"

TestSuite(edges_errors, .timeout = 120);

/* A broker that accepts only TOKEN. */
static upulsar_tb_t *token_broker(void)
{
    static const char *const tokens[] = {TOKEN};
    upulsar_tb_opts_t o;
    upulsar_tb_opts_init(&o);
    o.auth_tokens = tokens;
    o.auth_tokens_cnt = 1;
    upulsar_tb_t *tb = NULL;
    cr_assert_eq(upulsar_tb_start(&o, &tb), UPULSAR_OK, "%s", upulsar_last_error());
    return tb;
}

/* A fresh directory under /tmp for the test's files (removed by rm_tmp). */
static void mk_tmp(char *dir, size_t n)
{
    snprintf(dir, n, "/tmp/upulsar-edges-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* ---- item: a failed loop registration ------------------------------------ */

/* Send 2 messages to every partition of @p p (@p n of them; round robin
 * moves on after every message with batch.max.messages=1), wait until all
 * are stored, and check each partition of @p topic stored exactly 2. */
static void two_per_partition(upulsar_tb_t *tb, upulsar_producer_t *p, const char *topic, int n)
{
    upulsar_future_t **f = calloc((size_t)(2 * n), sizeof *f);
    cr_assert_not_null(f);
    for (int i = 0; i < 2 * n; i++) {
        char m[32];
        int len = snprintf(m, sizeof m, "m-%d", i);
        cr_assert_eq(upulsar_send(p, m, (size_t)len, NULL, &f[i]), UPULSAR_OK);
    }
    for (int i = 0; i < 2 * n; i++) {
        upulsar_msg_id_t id;
        cr_assert_eq(upulsar_future_wait(f[i], FT_WAIT_MS, &id), UPULSAR_OK, "%s message %d",
                     topic, i);
        upulsar_future_release(f[i]);
    }
    free(f);
    for (int g = 0; g < n; g++) {
        char name[128];
        snprintf(name, sizeof name, "%s-partition-%d", topic, g);
        upulsar_tb_topic_stats_t ts;
        cr_assert_eq(upulsar_tb_topic_stats(tb, name, &ts), UPULSAR_OK);
        cr_assert_eq(ts.messages, 2, "%s stored %llu", name, (unsigned long long)ts.messages);
    }
}

/* Stopping a producer when memory for closing all its producers at once
 * runs out: each producer is still closed on the broker (one CLOSE_PRODUCER
 * at a time), so its name is free for a restart. */
Test(edges_errors, stop_out_of_memory_still_closes_every_producer_on_the_broker)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    enum { PARTS = 4 };
    cr_assert_eq(upulsar_tb_set_partitions(tb, "oom-stop", PARTS), UPULSAR_OK);
    upulsar_producer_t *p = ft_producer(c, "oom-stop", "oom-stop", PARTS, NULL);
    atomic_store(&up_fault_close_nomem, 1000000);
    upulsar_err_t err = upulsar_producer_stop(p, 5000);
    int left = atomic_exchange(&up_fault_close_nomem, 0);
    cr_assert_lt(left, 1000000, "the stop never allocated its arrays");
    cr_assert_eq(err, UPULSAR_OK, "%s", upulsar_last_error());
    for (int i = 0; i < PARTS; i++) {
        char name[64];
        snprintf(name, sizeof name, "oom-stop-partition-%d", i);
        upulsar_tb_topic_stats_t ts;
        cr_assert_eq(upulsar_tb_topic_stats(tb, name, &ts), UPULSAR_OK);
        cr_assert_eq(ts.producers, 0, "%s: the stop left its producer on the broker", name);
    }
    ft_stop_client_and_broker(tb, c);
}

Test(edges_errors, failed_loop_registration_fails_the_start)
{
    upulsar_tb_t *tb = ft_broker();
    const char *kv[] = {"io.threads", "1", NULL};
    upulsar_client_t *c = ft_client(tb, kv);
    const char *pkv[] = {"batch.max.messages", "1", NULL};
    /* 16 producers fill the loop's first list exactly (16 entries) */
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "reg-a", 16), UPULSAR_OK);
    upulsar_producer_t *a = ft_producer(c, "reg-a", "reg-a", 16, pkv);
    upulsar_producer_t *p = NULL;
    atomic_store(&up_fault_loop_list_nomem, 1);
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "reg-b", 1), UPULSAR_OK);
    upulsar_err_t err = upulsar_producer_start(c, "reg-b", "reg-b", 1, NULL, &p);
    char why[512];
    snprintf(why, sizeof why, "%s", upulsar_last_error());
    int left = atomic_exchange(&up_fault_loop_list_nomem, 0);
    cr_assert_eq(left, 0, "the registration never needed a larger list");
    cr_assert_eq(err, UPULSAR_ERR__NOMEM, "start returned %s (%s)", upulsar_err_str(err), why);
    cr_assert_null(p);
    cr_assert(strstr(why, "out of memory"), "%s", why);
    upulsar_tb_topic_stats_t ts;
    cr_assert_eq(upulsar_tb_topic_stats(tb, "reg-b-partition-0", &ts), UPULSAR_OK);
    cr_assert_eq(ts.producers, 0, "the failed start left a producer on the broker");

    /* the loop's list is intact: a start that grows it twice (16 -> 32 ->
     * 64) works, and every producer on the loop, old and new, delivers */
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "reg-b", 40), UPULSAR_OK);
    p = ft_producer(c, "reg-b", "reg-b", 40, pkv);
    two_per_partition(tb, a, "reg-a", 16);
    two_per_partition(tb, p, "reg-b", 40);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    cr_assert_eq(upulsar_producer_stop(a, 10000), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}

/* Every reply a start needs (partition metadata, lookup, PRODUCER_SUCCESS)
 * copied out of the connection's buffer, one at a time, with no memory
 * for the copy: the request it answers fails with NOMEM (it used to
 * complete with no reply, which the requester read through a NULL), and
 * the next start works. */
Test(edges_errors, a_reply_that_cannot_be_copied_fails_its_request_with_nomem)
{
    upulsar_tb_t *tb = ft_broker();
    const char *kv[] = {"operation.timeout.ms", "10000", NULL};
    upulsar_client_t *c = ft_client(tb, kv);
    cr_assert_eq(upulsar_tb_set_partitions(tb, "copy", 2), UPULSAR_OK);
    int nomem = 0;
    for (int i = 0; i < 8; i++) {
        atomic_store(&up_fault_reply_copy_nomem, 1);
        upulsar_producer_t *p = NULL;
        upulsar_err_t err = upulsar_producer_start(c, "copy", "copy", 2, NULL, &p);
        int left = atomic_exchange(&up_fault_reply_copy_nomem, 0);
        if (err == UPULSAR_OK) {
            /* the failed copy was a request the start retried */
            cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
            continue;
        }
        cr_assert_eq(left, 0, "failed with %s without reaching the fault point",
                     upulsar_err_name(err));
        cr_assert_eq(err, UPULSAR_ERR__NOMEM, "%s (%s)", upulsar_err_name(err),
                     upulsar_last_error());
        cr_assert_null(p);
        nomem++;
    }
    cr_assert_gt(nomem, 0, "no start saw the failed copy");
    const char *pkv[] = {"batch.max.messages", "1", NULL}; /* two_per_partition()'s routing */
    upulsar_producer_t *p = ft_producer(c, "copy", "copy", 2, pkv);
    two_per_partition(tb, p, "copy", 2);
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}

/* ---- item: copies of the token -------------------------------------------- */

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

Test(edges_errors, producer_handle_keeps_no_copy_of_the_token)
{
    upulsar_tb_t *tb = token_broker();
    const char *kv[] = {"service.url", upulsar_tb_url(tb), "auth.token", TOKEN, NULL};
    upulsar_conf_t *conf = ft_conf(kv);
    upulsar_client_t *c = NULL;
    cr_assert_eq(upulsar_client_new(conf, &c), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_producer_t *p = NULL;
    cr_assert_eq(upulsar_producer_start(c, NULL, "no-copy", 0, conf, &p), UPULSAR_OK, "%s",
                 upulsar_last_error());
    upulsar_conf_destroy(conf);
    ft_send_ok(p, NULL); /* the client's copy still authenticates */
    cr_assert(all_zero(p->conf.auth_token, sizeof p->conf.auth_token),
              "the producer handle holds a copy of the token");
    cr_assert_eq(upulsar_producer_stop(p, 10000), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}

Test(edges_errors, conf_wipe_secrets_zeroes_every_token_byte)
{
    const char *kv[] = {"service.url", "pulsar://wipe-host:6650", "auth.token", TOKEN, NULL};
    upulsar_conf_t *conf = ft_conf(kv);
    /* a shorter token replacing a longer one leaves no tail of the old one */
    cr_assert_eq(upulsar_conf_set(conf, "auth.token", "short", NULL, 0), UPULSAR_CONF_OK);
    cr_assert_str_eq(conf->auth_token, "short");
    cr_assert(all_zero(conf->auth_token + 6, sizeof conf->auth_token - 6),
              "the longer token's tail is still there");
    cr_assert_eq(upulsar_conf_set(conf, "auth.token", TOKEN, NULL, 0), UPULSAR_CONF_OK);
    up_conf_wipe_secrets(conf);
    cr_assert(all_zero(conf->auth_token, sizeof conf->auth_token));
    char buf[64];
    cr_assert_eq(upulsar_conf_get(conf, "service.url", buf, sizeof buf), UPULSAR_CONF_OK);
    cr_assert_str_eq(buf, "pulsar://wipe-host:6650", "another key was touched");
    upulsar_conf_destroy(conf);
}

/* ---- item: too many open files -------------------------------------------- */

/* Every descriptor number below a lowered RLIMIT_NOFILE is taken, so the
 * next socket() fails with EMFILE; fd_release() gives them back. */
typedef struct {
    struct rlimit old;
    int *fds;
    int n;
} fd_squeeze_t;

static void fd_squeeze(fd_squeeze_t *s)
{
    int hi = -1;
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.' && atoi(e->d_name) > hi)
            hi = atoi(e->d_name);
    closedir(d);
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &s->old), 0);
    rlim_t lim = (rlim_t)hi + 1;
    cr_assert(lim <= s->old.rlim_cur, "descriptor %d over the limit", hi);
    s->fds = calloc((size_t)lim, sizeof *s->fds);
    cr_assert_not_null(s->fds);
    s->n = 0;
    struct rlimit low = {lim, s->old.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0, "%s", strerror(errno));
    int fd;
    while (s->n < (int)lim && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        s->fds[s->n++] = fd;
}

/* Close every descriptor fd_squeeze() took and restore the limit. */
static void fd_release(fd_squeeze_t *s)
{
    for (int i = 0; i < s->n; i++)
        close(s->fds[i]);
    free(s->fds);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &s->old), 0, "%s", strerror(errno));
}

Test(edges_errors, too_many_open_files_names_the_reason_and_the_broker)
{
    upulsar_tb_t *tb = ft_broker();
    /* a connection refused for EMFILE is retried until operation.timeout.ms */
    const char *kv[] = {"operation.timeout.ms", "1000", NULL};
    upulsar_client_t *c = ft_client(tb, kv);
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "emfile", 1), UPULSAR_OK);
    fd_squeeze_t s;
    fd_squeeze(&s);
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    int probe_errno = errno;
    upulsar_producer_t *p = NULL;
    upulsar_err_t err = probe >= 0 ? UPULSAR_OK
                                   : upulsar_producer_start(c, NULL, "emfile", 1, NULL, &p);
    char why[512];
    snprintf(why, sizeof why, "%s", upulsar_last_error());
    if (probe >= 0)
        close(probe);
    fd_release(&s);
    cr_assert_lt(probe, 0, "a socket could still be opened");
    cr_assert_eq(probe_errno, EMFILE);
    cr_assert_neq(err, UPULSAR_OK);
    cr_assert_null(p);
    cr_assert(strstr(why, strerror(EMFILE)), "no reason in: %s", why);
    char hostport[300];
    const char *url = upulsar_tb_url(tb);
    snprintf(hostport, sizeof hostport, "%s", strstr(url, "://") + 3);
    cr_assert(strstr(why, hostport), "%s not named in: %s", hostport, why);
    ft_stop_client_and_broker(tb, c);
}

/* ---- item: token files that hold no token ---------------------------------- */

static void assert_client_refused(const char *url, const char *file, const char *reason)
{
    const char *kv[] = {"service.url", url, "auth.token.file", file, NULL};
    upulsar_conf_t *conf = ft_conf(kv);
    upulsar_client_t *c = NULL;
    upulsar_err_t err = upulsar_client_new(conf, &c);
    upulsar_conf_destroy(conf);
    if (c)
        upulsar_client_destroy(c);
    cr_assert_eq(err, UPULSAR_ERR__INVALID_ARG, "client_new returned %s",
                 upulsar_err_str(err));
    cr_assert_null(c);
    const char *why = upulsar_last_error();
    cr_assert(strstr(why, file), "%s not named in: %s", file, why);
    cr_assert(strstr(why, reason), "\"%s\" not in: %s", reason, why);
}

Test(edges_errors, token_file_that_is_a_directory_fails_the_client)
{
    upulsar_tb_t *tb = token_broker();
    char dir[64];
    mk_tmp(dir, sizeof dir);
    assert_client_refused(upulsar_tb_url(tb), dir, strerror(EISDIR));
    rm_tmp(dir);
    upulsar_tb_stats_t st;
    upulsar_tb_stats(tb, &st);
    cr_assert_eq(st.connections_accepted, 0);
    upulsar_tb_stop(tb);
}

Test(edges_errors, empty_token_file_fails_the_client)
{
    upulsar_tb_t *tb = token_broker();
    char dir[64], path[128];
    mk_tmp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/token", dir);
    write_file(path, "");
    assert_client_refused(upulsar_tb_url(tb), path, "empty");
    write_file(path, " \n\t\n");
    assert_client_refused(upulsar_tb_url(tb), path, "empty");
    rm_tmp(dir);
    upulsar_tb_stats_t st;
    upulsar_tb_stats(tb, &st);
    cr_assert_eq(st.connections_accepted, 0);
    upulsar_tb_stop(tb);
}

Test(edges_errors, token_file_emptied_later_fails_the_connect_naming_it)
{
    upulsar_tb_t *tb = token_broker();
    char dir[64], path[128];
    mk_tmp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/token", dir);
    write_file(path, TOKEN "\n");
    const char *kv[] = {"auth.token.file", path, "operation.timeout.ms", "2000", NULL};
    upulsar_client_t *c = ft_client(tb, kv);
    write_file(path, "");
    upulsar_producer_t *p = NULL;
    /* the broker declares the partitions start uses (it checks its count) */
    cr_assert_eq(upulsar_tb_set_partitions(tb, "emptied", 1), UPULSAR_OK);
    upulsar_err_t err = upulsar_producer_start(c, NULL, "emptied", 1, NULL, &p);
    char why[512];
    snprintf(why, sizeof why, "%s", upulsar_last_error());
    cr_assert_neq(err, UPULSAR_OK);
    cr_assert_null(p);
    cr_assert(strstr(why, path), "%s not named in: %s", path, why);
    cr_assert(strstr(why, "empty"), "no reason in: %s", why);
    upulsar_client_destroy(c);
    rm_tmp(dir);
    upulsar_tb_stop(tb);
}

/* ---- item: TLS files that do not exist ------------------------------------- */

Test(edges_errors, missing_tls_files_name_the_file_and_the_os_reason)
{
    tls_certs_t certs;
    cr_assert_eq(tls_certs_make(&certs), 0, "cannot make test certificates (openssl CLI)");
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no-such-file.pem", certs.dir);
    /* each file missing in turn, the others valid (the certificate and the
     * key are set together) */
    const char *const cases[3][7] = {
        {"tls.ca.file", missing, NULL},
        {"tls.ca.file", certs.ca, "tls.cert.file", missing, "tls.key.file", certs.cli_key, NULL},
        {"tls.ca.file", certs.ca, "tls.cert.file", certs.cli_cert, "tls.key.file", missing, NULL},
    };
    for (int k = 0; k < 3; k++) {
        const char *base[] = {"service.url", "pulsar+ssl://127.0.0.1:1", NULL};
        upulsar_conf_t *conf = ft_conf(base);
        ft_conf_set_all(conf, cases[k]);
        upulsar_client_t *c = NULL;
        upulsar_err_t err = upulsar_client_new(conf, &c);
        upulsar_conf_destroy(conf);
        if (c)
            upulsar_client_destroy(c);
        cr_assert_eq(err, UPULSAR_ERR__TLS, "case %d: client_new returned %s", k,
                     upulsar_err_str(err));
        const char *why = upulsar_last_error();
        cr_assert(strstr(why, missing), "case %d: %s not named in: %s", k, missing, why);
        cr_assert(strstr(why, strerror(ENOENT)), "case %d: no OS reason in: %s", k, why);
    }
    tls_certs_remove(&certs);
}

/* ---- item: a record whose batch cannot grow ------------------------------ */

static int stored_one(void *a)
{
    upulsar_tb_snapshot_t *s = NULL;
    if (upulsar_tb_snapshot(a, "grow-nomem", &s) != UPULSAR_OK)
        return 0;
    size_t n = upulsar_tb_snapshot_count(s);
    upulsar_tb_snapshot_free(s);
    return n >= 1;
}

/* Scenario: the buffer of the batch a record opens cannot be grown for it
 * (out of memory, made so by the internal fault point
 * up_fault_batch_grow_nomem): that message fails with NOMEM; the batch,
 * left with nothing in it, is not sent (it has no buffer: framing it wrote
 * near address 0 and killed the io thread), and the next message is
 * stored, alone, byte for byte. For the default and the key_based
 * batcher. */
static void a_batch_that_cannot_grow(const char *batching)
{
    upulsar_tb_t *tb = ft_broker();
    upulsar_client_t *c = ft_client(tb, NULL);
    const char *kv[] = {"batching.type", batching, NULL};
    upulsar_producer_t *p = ft_producer(c, "gn", "grow-nomem", 0, kv);
    upulsar_send_opts_t o = {.partition_key = "k"};
    atomic_store(&up_fault_batch_grow_nomem, 1);
    upulsar_future_t *f = NULL;
    cr_assert_eq(upulsar_send(p, "lost", 4, &o, &f), UPULSAR_OK);
    upulsar_err_t e = upulsar_future_wait(f, FT_WAIT_MS, NULL);
    upulsar_future_release(f);
    cr_assert_eq(atomic_load(&up_fault_batch_grow_nomem), 0, "the fault point was not reached");
    cr_assert_eq(e, UPULSAR_ERR__NOMEM, "%s", upulsar_err_name(e));
    cr_assert_eq(upulsar_producer_flush(p, FT_WAIT_MS), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(upulsar_send(p, "kept", 4, &o, &f), UPULSAR_OK);
    e = upulsar_future_wait(f, FT_WAIT_MS, NULL);
    upulsar_future_release(f);
    cr_assert_eq(e, UPULSAR_OK, "%s", upulsar_err_name(e));
    cr_assert(ft_wait_for(stored_one, tb));
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, "grow-nomem", &s), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_snapshot_count(s), 1);
    cr_assert_arr_eq(upulsar_tb_snapshot_msg(s, 0)->payload, "kept", 4);
    upulsar_tb_snapshot_free(s);
    cr_assert_eq(upulsar_producer_stop(p, FT_WAIT_MS), UPULSAR_OK);
    ft_stop_client_and_broker(tb, c);
}

Test(edges_errors, a_batch_that_cannot_grow_fails_its_record_and_sends_nothing_empty)
{
    a_batch_that_cannot_grow("default");
}

Test(edges_errors, a_key_batch_that_cannot_grow_fails_its_record_and_sends_nothing_empty)
{
    a_batch_that_cannot_grow("key_based");
}
