/* broker.c -- test broker lifecycle, accept thread, topic configuration,
 * fault injection and counters. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "tb.h"

static atomic_uint g_instances;

int64_t tb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void efd_signal(int fd)
{
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof one);
    (void)n; /* EAGAIN: the counter is already non-zero, a wake is pending */
}

void tb_conn_wake(tb_conn_t *c)
{
    if (!atomic_exchange(&c->wake_pending, 1))
        efd_signal(c->efd);
}

int tb_conn_inject(tb_conn_t *c, const void *frame, size_t len)
{
    pthread_mutex_lock(&c->mu);
    int rc = up_buf_append(&c->inject, frame, len);
    pthread_mutex_unlock(&c->mu);
    tb_conn_wake(c);
    return rc;
}

void tb_gen_name(upulsar_tb_t *tb, char *out)
{
    /* lock-free: called with a topic's mutex held */
    unsigned long long n = atomic_fetch_add(&tb->next_name, 1);
    snprintf(out, 64, "testbroker-%u-%llu", tb->instance, n);
}

int tb_take_fail_send(upulsar_tb_t *tb, bool *fence)
{
    int e = -1;
    pthread_mutex_lock(&tb->mu);
    if (tb->fail_sends_n > 0) {
        tb->fail_sends_n--;
        e = tb->fail_sends_err;
        *fence = tb->fail_sends_fence;
        atomic_store(&tb->fail_sends_any, tb->fail_sends_n);
    }
    pthread_mutex_unlock(&tb->mu);
    return e;
}

int tb_take_fail_producer(upulsar_tb_t *tb)
{
    int e = -1;
    pthread_mutex_lock(&tb->mu);
    if (tb->fail_prods_n > 0) {
        tb->fail_prods_n--;
        e = tb->fail_prods_err;
    }
    pthread_mutex_unlock(&tb->mu);
    return e;
}

/* ---- connections ------------------------------------------------------- */

static void conn_free(tb_conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    if (c->efd >= 0)
        close(c->efd);
    up_buf_free(&c->inject);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void tb_conn_retire(tb_conn_t *c)
{
    upulsar_tb_t *tb = c->tb;
    pthread_mutex_lock(&tb->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        tb->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    tb->nconns--;
    /* nobody reaches the socket once unlinked: close it now so the peer
     * sees the end at once, not when the thread is joined */
    close(c->fd);
    c->fd = -1;
    c->prev = NULL;
    c->next = tb->zombies;
    tb->zombies = c;
    pthread_cond_broadcast(&tb->conns_changed);
    efd_signal(tb->efd);
    pthread_mutex_unlock(&tb->mu);
}

static void reap(upulsar_tb_t *tb)
{
    pthread_mutex_lock(&tb->mu);
    tb_conn_t *z = tb->zombies;
    tb->zombies = NULL;
    pthread_mutex_unlock(&tb->mu);
    while (z) {
        tb_conn_t *n = z->next;
        pthread_join(z->thr, NULL);
        conn_free(z);
        z = n;
    }
}

static void spawn_conn(upulsar_tb_t *tb, int fd)
{
    tb_conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->tb = tb;
    c->fd = fd;
    c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->efd < 0 || pthread_mutex_init(&c->mu, NULL)) {
        if (c->efd >= 0)
            close(c->efd);
        close(fd);
        free(c);
        return;
    }
    atomic_init(&c->wake_pending, 0);
    atomic_init(&c->kill, false);
    up_decoder_init(&c->dec, (uint32_t)tb->opts.max_message_size + UP_FRAME_PADDING);
    pthread_mutex_lock(&tb->mu);
    c->serial = ++tb->conn_serial;
    c->next = tb->conns;
    if (tb->conns)
        tb->conns->prev = c;
    tb->conns = c;
    tb->nconns++;
    if (pthread_create(&c->thr, NULL, tb_conn_main, c)) {
        tb->conns = c->next;
        if (c->next)
            c->next->prev = NULL;
        tb->nconns--;
        pthread_mutex_unlock(&tb->mu);
        up_decoder_free(&c->dec);
        conn_free(c);
        return;
    }
    pthread_mutex_unlock(&tb->mu);
}

static void *acceptor_main(void *arg)
{
    upulsar_tb_t *tb = arg;
    while (!atomic_load(&tb->acceptor_stop)) {
        reap(tb);
        struct pollfd pfd[2] = {{tb->lfd, POLLIN, 0}, {tb->efd, POLLIN, 0}};
        int pr = poll(pfd, 2, -1);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents & POLLIN) {
            uint64_t v;
            ssize_t n = read(tb->efd, &v, sizeof v);
            (void)n;
        }
        if (atomic_load(&tb->acceptor_stop))
            break;
        if (!(pfd[0].revents & POLLIN))
            continue;
        int fd = accept4(tb->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
                poll(NULL, 0, 10); /* let connections go away */
            continue;
        }
        if (tb_now_ms() < atomic_load(&tb->refuse_until_ms)) {
            struct linger lg = {1, 0}; /* close with RST */
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            atomic_fetch_add(&tb->refused, 1); /* counted before the peer can see it */
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        atomic_fetch_add(&tb->accepted, 1);
        spawn_conn(tb, fd);
    }
    return NULL;
}

static upulsar_err_t listen_on(upulsar_tb_t *tb, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return up_seterr(UPULSAR_ERR__IO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 512)) {
        int e = errno;
        close(fd);
        return up_seterr(UPULSAR_ERR__IO, "bind/listen 127.0.0.1:%d: %s", port, strerror(e));
    }
    socklen_t sl = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &sl)) {
        int e = errno;
        close(fd);
        return up_seterr(UPULSAR_ERR__IO, "getsockname: %s", strerror(e));
    }
    tb->lfd = fd;
    tb->port = ntohs(sa.sin_port);
    return UPULSAR_OK;
}

static upulsar_err_t start_acceptor(upulsar_tb_t *tb)
{
    atomic_store(&tb->acceptor_stop, false);
    if (pthread_create(&tb->acceptor, NULL, acceptor_main, tb)) {
        close(tb->lfd);
        tb->lfd = -1;
        return up_seterr(UPULSAR_ERR__NOMEM, "cannot start the accept thread");
    }
    tb->acceptor_running = true;
    return UPULSAR_OK;
}

/* Stop accepting, close every connection and wait for their threads. */
static void stop_io(upulsar_tb_t *tb)
{
    if (tb->acceptor_running) {
        atomic_store(&tb->acceptor_stop, true);
        efd_signal(tb->efd);
        pthread_join(tb->acceptor, NULL);
        tb->acceptor_running = false;
    }
    if (tb->lfd >= 0) {
        close(tb->lfd);
        tb->lfd = -1;
    }
    pthread_mutex_lock(&tb->mu);
    for (tb_conn_t *c = tb->conns; c; c = c->next) {
        atomic_store(&c->kill, true);
        shutdown(c->fd, SHUT_RDWR);
        tb_conn_wake(c);
    }
    while (tb->nconns > 0)
        pthread_cond_wait(&tb->conns_changed, &tb->mu);
    pthread_mutex_unlock(&tb->mu);
    reap(tb);
}

void upulsar_tb_opts_init(upulsar_tb_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->max_message_size = TB_DEFAULT_MAX_MESSAGE;
    o->protocol_version = TB_PROTOCOL_MAX;
    o->ping_interval_ms = TB_DEFAULT_PING_MS;
}

upulsar_err_t upulsar_tb_start(const upulsar_tb_opts_t *opts, upulsar_tb_t **out)
{
    if (!out)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_start: out is NULL");
    *out = NULL;
    upulsar_tb_opts_t o;
    if (opts)
        o = *opts;
    else
        upulsar_tb_opts_init(&o);
    if (o.port < 0 || o.port > 65535)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "port %d out of range", o.port);
    if (o.max_message_size <= 0)
        o.max_message_size = TB_DEFAULT_MAX_MESSAGE;
    if (o.max_message_size > 512 * 1024 * 1024)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "max_message_size too large");
    if (o.protocol_version <= 0 || o.protocol_version > TB_PROTOCOL_MAX)
        o.protocol_version = TB_PROTOCOL_MAX;

    upulsar_tb_t *tb = calloc(1, sizeof *tb);
    if (!tb)
        return up_seterr(UPULSAR_ERR__NOMEM, "upulsar_tb_start");
    tb->lfd = tb->efd = -1;
    tb->opts = o;
    tb->instance = atomic_fetch_add(&g_instances, 1) + 1;
    char vbuf[64];
    snprintf(vbuf, sizeof vbuf, "upulsar-testbroker %s", upulsar_version());
    tb->server_version = strdup(o.server_version ? o.server_version : vbuf);
    tb->opts.server_version = NULL;
    tb->next_ledger = 1000u * tb->instance + 1;
    atomic_init(&tb->next_request_id, 1);
    atomic_init(&tb->next_name, 1);
    if (!tb->server_version) {
        free(tb);
        return up_seterr(UPULSAR_ERR__NOMEM, "upulsar_tb_start");
    }
    if (pthread_mutex_init(&tb->mu, NULL)) {
        free(tb->server_version);
        free(tb);
        return up_seterr(UPULSAR_ERR__NOMEM, "upulsar_tb_start");
    }
    if (pthread_cond_init(&tb->conns_changed, NULL)) {
        pthread_mutex_destroy(&tb->mu);
        free(tb->server_version);
        free(tb);
        return up_seterr(UPULSAR_ERR__NOMEM, "upulsar_tb_start");
    }
    tb->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    upulsar_err_t err = tb->efd < 0 ? up_seterr(UPULSAR_ERR__IO, "eventfd: %s", strerror(errno))
                                    : listen_on(tb, o.port);
    if (!err) {
        snprintf(tb->url, sizeof tb->url, "pulsar://127.0.0.1:%d", tb->port);
        err = start_acceptor(tb);
    }
    if (err) {
        if (tb->efd >= 0)
            close(tb->efd);
        if (tb->lfd >= 0)
            close(tb->lfd);
        pthread_cond_destroy(&tb->conns_changed);
        pthread_mutex_destroy(&tb->mu);
        free(tb->server_version);
        free(tb);
        return err;
    }
    *out = tb;
    return UPULSAR_OK;
}

void upulsar_tb_stop(upulsar_tb_t *tb)
{
    if (!tb)
        return;
    stop_io(tb);
    for (tb_topic_t *t = tb->topics, *n; t; t = n) {
        n = t->next;
        tb_topic_free(t);
    }
    close(tb->efd);
    pthread_cond_destroy(&tb->conns_changed);
    pthread_mutex_destroy(&tb->mu);
    free(tb->server_version);
    free(tb);
}

int upulsar_tb_port(const upulsar_tb_t *tb)
{
    return tb ? tb->port : 0;
}

const char *upulsar_tb_url(const upulsar_tb_t *tb)
{
    return tb ? tb->url : "";
}

upulsar_err_t upulsar_tb_restart(upulsar_tb_t *tb)
{
    if (!tb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_restart: NULL");
    stop_io(tb);
    upulsar_err_t err = UPULSAR_ERR__IO;
    /* the old sockets may linger a moment; SO_REUSEADDR covers TIME_WAIT */
    for (int i = 0; i < 200 && err; i++) {
        err = listen_on(tb, tb->port);
        if (err)
            poll(NULL, 0, 10);
    }
    if (err)
        return err;
    atomic_fetch_add(&tb->restarts, 1);
    return start_acceptor(tb);
}

/* ---- topic configuration ----------------------------------------------- */

/* Normalise @p topic and find (or create) its record; sets the last error. */
static tb_topic_t *topic_arg(upulsar_tb_t *tb, const char *topic, bool create,
                             upulsar_err_t *err)
{
    *err = UPULSAR_OK;
    if (!topic) {
        *err = up_seterr(UPULSAR_ERR__INVALID_ARG, "topic is NULL");
        return NULL;
    }
    char *norm = tb_topic_normalize(topic, err);
    if (!norm) {
        up_seterr(*err, "invalid topic name \"%s\"", topic);
        return NULL;
    }
    tb_topic_t *t = tb_topic_get(tb, norm, create);
    free(norm);
    if (!t && create)
        *err = up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    return t;
}

upulsar_err_t upulsar_tb_set_partitions(upulsar_tb_t *tb, const char *topic, int partitions)
{
    if (!tb || partitions < 0)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_set_partitions: bad argument");
    upulsar_err_t err;
    tb_topic_t *t = topic_arg(tb, topic, true, &err);
    if (!t)
        return err;
    pthread_mutex_lock(&tb->mu);
    t->partitions = partitions;
    pthread_mutex_unlock(&tb->mu);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_tb_set_owner(upulsar_tb_t *tb, const char *topic, const char *url)
{
    if (!tb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_set_owner: NULL");
    if (url && strncmp(url, "pulsar://", 9) && strncmp(url, "pulsar+ssl://", 13))
        return up_seterr(UPULSAR_ERR__INVALID_URL, "owner URL \"%s\"", url);
    upulsar_err_t err;
    tb_topic_t *t = topic_arg(tb, topic, true, &err);
    if (!t)
        return err;
    char *copy = NULL;
    if (url && !(copy = strdup(url)))
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    pthread_mutex_lock(&tb->mu);
    char *old = t->owner_url;
    t->owner_url = copy;
    pthread_mutex_unlock(&tb->mu);
    free(old);
    return UPULSAR_OK;
}

/* ---- fault injection --------------------------------------------------- */

static bool serial_alive(upulsar_tb_t *tb, uint64_t serial)
{
    for (tb_conn_t *c = tb->conns; c; c = c->next)
        if (c->serial == serial)
            return true;
    return false;
}

int upulsar_tb_drop_connections(upulsar_tb_t *tb, const char *topic)
{
    if (!tb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_drop_connections: NULL");
    char *norm = NULL;
    if (topic) {
        upulsar_err_t err;
        norm = tb_topic_normalize(topic, &err);
        if (!norm)
            return up_seterr(err, "invalid topic name \"%s\"", topic);
    }
    size_t cap = 16, n = 0;
    uint64_t *serials = malloc(cap * sizeof *serials);
    if (!serials) {
        free(norm);
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    }
    pthread_mutex_lock(&tb->mu);
    tb_topic_t *t = norm ? tb_topic_find_locked(tb, norm, false) : NULL;
    if (t)
        pthread_mutex_lock(&t->mu);
    for (tb_conn_t *c = tb->conns; c; c = c->next) {
        bool hit = !norm;
        if (t) {
            for (size_t i = 0; i < t->nprods && !hit; i++)
                hit = t->prods[i]->conn == c;
            for (size_t i = 0; i < t->ncons && !hit; i++)
                hit = t->cons[i]->conn == c;
        }
        if (!hit)
            continue;
        if (n == cap) {
            uint64_t *ns = realloc(serials, cap * 2 * sizeof *ns);
            if (!ns)
                break; /* close what we can track */
            serials = ns;
            cap *= 2;
        }
        serials[n++] = c->serial;
        atomic_store(&c->kill, true);
        shutdown(c->fd, SHUT_RDWR);
        tb_conn_wake(c);
    }
    if (t)
        pthread_mutex_unlock(&t->mu);
    /* wait until they are gone: their producers are unregistered by then */
    for (;;) {
        bool any = false;
        for (size_t i = 0; i < n && !any; i++)
            any = serial_alive(tb, serials[i]);
        if (!any)
            break;
        pthread_cond_wait(&tb->conns_changed, &tb->mu);
    }
    pthread_mutex_unlock(&tb->mu);
    free(serials);
    free(norm);
    return (int)n;
}

upulsar_err_t upulsar_tb_refuse_connections(upulsar_tb_t *tb, int ms)
{
    if (!tb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_refuse_connections: NULL");
    atomic_store(&tb->refuse_until_ms, ms > 0 ? tb_now_ms() + ms : 0);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_tb_delay_receipts(upulsar_tb_t *tb, int ms)
{
    if (!tb || ms < 0)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_delay_receipts: bad argument");
    atomic_store(&tb->receipt_delay_ms, ms);
    return UPULSAR_OK;
}

static void wake_all(upulsar_tb_t *tb)
{
    pthread_mutex_lock(&tb->mu);
    for (tb_conn_t *c = tb->conns; c; c = c->next)
        tb_conn_wake(c);
    pthread_mutex_unlock(&tb->mu);
}

upulsar_err_t upulsar_tb_hold_receipts(upulsar_tb_t *tb, const char *topic)
{
    if (!tb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_hold_receipts: NULL");
    if (!topic) {
        atomic_store(&tb->hold_all, true);
        return UPULSAR_OK;
    }
    upulsar_err_t err;
    tb_topic_t *t = topic_arg(tb, topic, true, &err);
    if (!t)
        return err;
    atomic_store(&t->hold, true);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_tb_release_receipts(upulsar_tb_t *tb, const char *topic)
{
    if (!tb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_release_receipts: NULL");
    if (!topic) {
        atomic_store(&tb->hold_all, false);
        pthread_mutex_lock(&tb->mu);
        for (tb_topic_t *t = tb->topics; t; t = t->next)
            atomic_store(&t->hold, false);
        pthread_mutex_unlock(&tb->mu);
    } else {
        upulsar_err_t err;
        tb_topic_t *t = topic_arg(tb, topic, false, &err);
        if (err)
            return err;
        if (t)
            atomic_store(&t->hold, false);
    }
    wake_all(tb);
    return UPULSAR_OK;
}

uint64_t upulsar_tb_queued_receipts(upulsar_tb_t *tb)
{
    return tb ? atomic_load(&tb->receipts_queued) : 0;
}

static upulsar_err_t fail_sends(upulsar_tb_t *tb, const char *topic, int n, int server_error,
                                bool fence)
{
    if (!tb || n < 0 || server_error < 0 || server_error > UPULSAR_ERR_BROKER_MAX - UPULSAR_ERR_BROKER_BASE)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_fail_sends: bad argument");
    if (!topic) {
        pthread_mutex_lock(&tb->mu);
        tb->fail_sends_n = n;
        tb->fail_sends_err = server_error;
        tb->fail_sends_fence = fence;
        atomic_store(&tb->fail_sends_any, n);
        pthread_mutex_unlock(&tb->mu);
        return UPULSAR_OK;
    }
    upulsar_err_t err;
    tb_topic_t *t = topic_arg(tb, topic, true, &err);
    if (!t)
        return err;
    pthread_mutex_lock(&t->mu);
    t->fail_sends_n = n;
    t->fail_sends_err = server_error;
    t->fail_sends_fence = fence;
    pthread_mutex_unlock(&t->mu);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_tb_fail_sends(upulsar_tb_t *tb, const char *topic, int n,
                                    int server_error)
{
    return fail_sends(tb, topic, n, server_error, false);
}

upulsar_err_t upulsar_tb_fail_writes(upulsar_tb_t *tb, const char *topic, int n,
                                     int server_error)
{
    return fail_sends(tb, topic, n, server_error, true);
}

upulsar_err_t upulsar_tb_fail_producers(upulsar_tb_t *tb, const char *topic, int n,
                                        int server_error)
{
    if (!tb || n < 0 || server_error < 0 || server_error > UPULSAR_ERR_BROKER_MAX - UPULSAR_ERR_BROKER_BASE)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_fail_producers: bad argument");
    if (!topic) {
        pthread_mutex_lock(&tb->mu);
        tb->fail_prods_n = n;
        tb->fail_prods_err = server_error;
        pthread_mutex_unlock(&tb->mu);
        return UPULSAR_OK;
    }
    upulsar_err_t err;
    tb_topic_t *t = topic_arg(tb, topic, true, &err);
    if (!t)
        return err;
    pthread_mutex_lock(&t->mu);
    t->fail_prods_n = n;
    t->fail_prods_err = server_error;
    pthread_mutex_unlock(&t->mu);
    return UPULSAR_OK;
}

int upulsar_tb_unload_topic(upulsar_tb_t *tb, const char *topic)
{
    if (!tb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_unload_topic: NULL");
    upulsar_err_t err;
    tb_topic_t *t = topic_arg(tb, topic, false, &err);
    if (err)
        return err;
    if (!t)
        return 0;
    pthread_mutex_lock(&t->mu);
    int n = tb_topic_close_producers_locked(tb, t);
    pthread_mutex_unlock(&t->mu);
    return n;
}

int tb_topic_close_producers_locked(upulsar_tb_t *tb, tb_topic_t *t)
{
    int n = 0;
    for (size_t i = 0; i < t->nprods; i++) {
        tb_producer_t *p = t->prods[i];
        p->active = false;
        p->closed = true;
        up_buf_t b = UP_BUF_INIT;
        if (tb_put_close_producer(&b, p->id, atomic_fetch_add(&tb->next_request_id, 1)) ||
            tb_conn_inject(p->conn, b.data, b.len))
            shutdown(p->conn->fd, SHUT_RDWR); /* cannot tell it: make it reconnect */
        up_buf_free(&b);
        n++;
    }
    t->nprods = 0;
    return n;
}

upulsar_err_t upulsar_tb_ignore_pings(upulsar_tb_t *tb, int on)
{
    if (!tb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_ignore_pings: NULL");
    atomic_store(&tb->ignore_pings, on != 0);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_tb_freeze(upulsar_tb_t *tb, int on)
{
    if (!tb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_freeze: NULL");
    atomic_store(&tb->frozen, on != 0);
    wake_all(tb);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_tb_stats(upulsar_tb_t *tb, upulsar_tb_stats_t *out)
{
    if (!tb || !out)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_stats: NULL");
    memset(out, 0, sizeof *out);
    out->connections_accepted = atomic_load(&tb->accepted);
    out->connections_refused = atomic_load(&tb->refused);
    pthread_mutex_lock(&tb->mu);
    out->connections_active = tb->nconns;
    pthread_mutex_unlock(&tb->mu);
    out->entries = atomic_load(&tb->entries);
    out->messages = atomic_load(&tb->messages);
    out->pings_sent = atomic_load(&tb->pings_sent);
    out->pongs_received = atomic_load(&tb->pongs_received);
    out->protocol_errors = atomic_load(&tb->protocol_errors);
    out->receipts_queued = atomic_load(&tb->receipts_queued);
    out->restarts = atomic_load(&tb->restarts);
    return UPULSAR_OK;
}
