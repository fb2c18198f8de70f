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

#include <openssl/err.h>

#include "err.h"
#include "tb.h"

static atomic_uint g_instances;
/* The process's running brokers, to find one by URL (upulsar_tb_move_topic)
 * or to share a store with; also guards the stores' reference counts. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static upulsar_tb_t *g_brokers;

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

int tb_take_delay_producer(upulsar_tb_t *tb)
{
    pthread_mutex_lock(&tb->mu);
    int ms = tb_countdown_take(&tb->delay_prods);
    pthread_mutex_unlock(&tb->mu);
    return ms;
}

int tb_take_fail_producer(upulsar_tb_t *tb)
{
    pthread_mutex_lock(&tb->mu);
    int e = tb_countdown_take(&tb->fail_prods);
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
    c->relay_fd = -1;
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
    atomic_init(&c->challenge_req, false);
    snprintf(c->peer, sizeof c->peer, "?");
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    socklen_t sl = sizeof sa;
    if (!getpeername(fd, (struct sockaddr *)&sa, &sl) && sa.sin_family == AF_INET) {
        char ip[INET_ADDRSTRLEN];
        if (inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip))
            snprintf(c->peer, sizeof c->peer, "%s:%u", ip, (unsigned)ntohs(sa.sin_port));
    }
    atomic_init(&c->tid, 0);
    atomic_init(&c->phase, TB_PH_START);
    atomic_init(&c->phase_cmd, 0);
    atomic_init(&c->phase_ms, tb_now_ms());
    /* Pulsar's frame decoder (LengthFieldBasedFrameDecoder with
     * max_message_size + 10 KiB) counts the 4-byte size word against the
     * limit: the size it announces may be 4 bytes less */
    up_decoder_init(&c->dec, (uint32_t)tb->opts.max_message_size + UP_FRAME_PADDING - 4u);
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

static const char *phase_name(int phase)
{
    switch (phase) {
    case TB_PH_START: return "starting";
    case TB_PH_POLL: return "waiting in poll()";
    case TB_PH_READ: return "reading and handling frames";
    case TB_PH_WORK: return "writing, queued receipts, injected frames or ticks";
    case TB_PH_END_FLUSH: return "ending: writing its last frames";
    case TB_PH_CLEANUP: return "ending: unregistering its producers and consumers";
    case TB_PH_RETIRE: return "ending: leaving the broker's list (waiting for its lock)";
    default: return "?";
    }
}

/* Is connection @p serial still in tb->conns? (tb->mu held) */
static bool serial_alive(upulsar_tb_t *tb, uint64_t serial)
{
    for (tb_conn_t *c = tb->conns; c; c = c->next)
        if (c->serial == serial)
            return true;
    return false;
}

/* An account of the connection threads still running, those of @p serials
 * (@p n of them) or all when @p serials is NULL, into @p out: serial,
 * thread id, peer, what each is doing and since when, and the command it
 * handles. (tb->mu held) */
static void describe_conns_locked(upulsar_tb_t *tb, const uint64_t *serials, size_t n, char *out,
                                  size_t size)
{
    size_t at = 0;
    int64_t now = tb_now_ms();
    out[0] = '\0';
    for (tb_conn_t *c = tb->conns; c && at < size; c = c->next) {
        bool listed = !serials;
        for (size_t i = 0; i < n && !listed; i++)
            listed = serials[i] == c->serial;
        if (!listed)
            continue;
        int phase = atomic_load_explicit(&c->phase, memory_order_relaxed);
        int cmd = atomic_load_explicit(&c->phase_cmd, memory_order_relaxed);
        int64_t since = atomic_load_explicit(&c->phase_ms, memory_order_relaxed);
        int w = snprintf(out + at, size - at,
                         "%sconnection %llu (thread %d, client %s%s): %s%s%s for %lld ms",
                         at ? "; " : "", (unsigned long long)c->serial,
                         atomic_load_explicit(&c->tid, memory_order_relaxed), c->peer,
                         atomic_load(&c->kill) ? ", told to end" : "", phase_name(phase),
                         phase == TB_PH_READ && cmd ? ", last command " : "",
                         phase == TB_PH_READ && cmd ? up_cmd_name(cmd) : "",
                         (long long)(now - since));
        at += w > 0 ? (size_t)w : 0;
    }
}

/* Wait until the connections @p serials (@p n of them; all when NULL) have
 * left tb->conns, TB_CONN_END_WAIT_MS at most. On timeout: TIMED_OUT, with
 * the account of those still running as the last error and on stderr (a
 * broker thread that does not end is a bug of the broker, which its caller
 * must hear of). (tb->mu held) */
static upulsar_err_t wait_conns_end_locked(upulsar_tb_t *tb, const uint64_t *serials, size_t n,
                                           const char *what)
{
    int64_t deadline = tb_now_ms() + TB_CONN_END_WAIT_MS;
    for (;;) {
        bool any = false;
        if (!serials)
            any = tb->nconns > 0;
        for (size_t i = 0; i < n && serials && !any; i++)
            any = serial_alive(tb, serials[i]);
        if (!any)
            return UPULSAR_OK;
        int64_t now = tb_now_ms();
        if (now >= deadline)
            break;
        int64_t slice = deadline - now < 100 ? deadline - now : 100;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += slice / 1000;
        ts.tv_nsec += (long)(slice % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&tb->conns_changed, &tb->mu, &ts);
    }
    char *desc = malloc(4096);
    if (desc)
        describe_conns_locked(tb, serials, n, desc, 4096);
    upulsar_err_t err =
        up_seterr(UPULSAR_ERR__TIMED_OUT,
                  "test broker %s: %s: connection threads still running %d ms after they were "
                  "told to end: %s",
                  tb->url, what, TB_CONN_END_WAIT_MS, desc ? desc : "(out of memory)");
    fprintf(stderr, "upulsar test broker: %s\n", upulsar_last_error());
    free(desc);
    return err;
}

/* Stop accepting, close every connection and wait for their threads
 * (TB_CONN_END_WAIT_MS at most: TIMED_OUT, with an account of those still
 * running; they stay listed). */
static upulsar_err_t stop_io(upulsar_tb_t *tb, const char *what)
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
    upulsar_err_t err = wait_conns_end_locked(tb, NULL, 0, what);
    pthread_mutex_unlock(&tb->mu);
    reap(tb);
    return err;
}

void upulsar_tb_opts_init(upulsar_tb_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->max_message_size = TB_DEFAULT_MAX_MESSAGE;
    o->protocol_version = TB_PROTOCOL_MAX;
    o->ping_interval_ms = TB_DEFAULT_PING_MS;
    o->auth_response_timeout_ms = TB_DEFAULT_AUTH_RESPONSE_MS;
}

static const char *ossl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown OpenSSL error";
}

/* The listener's TLS context from the certificate options. */
static upulsar_err_t tls_server_ctx(const upulsar_tb_opts_t *o, SSL_CTX **out)
{
    *out = NULL;
    if (!o->tls_cert_file || !o->tls_key_file)
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "tls_cert_file and tls_key_file must be set together");
    if (o->tls_require_client_cert && !o->tls_ca_file)
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "tls_require_client_cert needs tls_ca_file (the clients' CA)");
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return up_seterr(UPULSAR_ERR__TLS, "TLS: cannot create a context: %s", ossl_reason());
    upulsar_err_t err = UPULSAR_OK;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    /* resumed sessions with client certificates need a context id */
    static const unsigned char sid_ctx[] = "upulsar-testbroker";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert_file) != 1)
        err = up_seterr(UPULSAR_ERR__TLS, "TLS: cannot load certificate %s: %s",
                        o->tls_cert_file, ossl_reason());
    else if (SSL_CTX_use_PrivateKey_file(ctx, o->tls_key_file, SSL_FILETYPE_PEM) != 1 ||
             SSL_CTX_check_private_key(ctx) != 1)
        err = up_seterr(UPULSAR_ERR__TLS, "TLS: cannot use private key %s: %s", o->tls_key_file,
                        ossl_reason());
    if (!err && o->tls_ca_file) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->tls_ca_file);
        if (!names || SSL_CTX_load_verify_locations(ctx, o->tls_ca_file, NULL) != 1) {
            err = up_seterr(UPULSAR_ERR__TLS, "TLS: cannot load CA %s: %s", o->tls_ca_file,
                            ossl_reason());
            sk_X509_NAME_pop_free(names, X509_NAME_free);
        } else {
            SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
            SSL_CTX_set_verify(ctx,
                               SSL_VERIFY_PEER | (o->tls_require_client_cert
                                                      ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                                      : 0),
                               NULL);
        }
    }
    if (err) {
        SSL_CTX_free(ctx);
        return err;
    }
    *out = ctx;
    return UPULSAR_OK;
}

static void free_tokens(char **tokens, size_t n)
{
    for (size_t i = 0; tokens && i < n; i++) {
        memset(tokens[i], 0, strlen(tokens[i])); /* secrets do not outlive their use */
        free(tokens[i]);
    }
    free(tokens);
}

/* Copy @p n tokens (each non-empty) into *@p out. */
static upulsar_err_t copy_tokens(const char *const *tokens, size_t n, char ***out)
{
    *out = NULL;
    if (n == 0)
        return UPULSAR_OK;
    if (!tokens)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "tokens: NULL list with a count");
    char **v = calloc(n, sizeof *v);
    if (!v)
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!tokens[i] || !tokens[i][0]) {
            free_tokens(v, i);
            return up_seterr(UPULSAR_ERR__INVALID_ARG, "token %zu is empty", i);
        }
        if (!(v[i] = strdup(tokens[i]))) {
            free_tokens(v, i);
            return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
        }
    }
    *out = v;
    return UPULSAR_OK;
}

static tb_store_t *store_new(uint64_t first_ledger)
{
    tb_store_t *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    if (pthread_mutex_init(&st->mu, NULL)) {
        free(st);
        return NULL;
    }
    st->refs = 1;
    st->next_ledger = first_ledger;
    return st;
}

/* Drop one reference (caller holds g_mu); frees the store with the last. */
static void store_release_locked(tb_store_t *st)
{
    if (--st->refs > 0)
        return;
    for (tb_topic_t *t = st->topics, *n; t; t = n) {
        n = t->next;
        tb_topic_free(t);
    }
    free(st->index);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

static bool broker_alive_locked(const upulsar_tb_t *tb)
{
    for (upulsar_tb_t *b = g_brokers; b; b = b->g_next)
        if (b == tb)
            return true;
    return false;
}

/* Free what upulsar_tb_start() set up before the listener. */
static void free_parts(upulsar_tb_t *tb)
{
    if (tb->store) {
        pthread_mutex_lock(&g_mu);
        store_release_locked(tb->store);
        pthread_mutex_unlock(&g_mu);
    }
    for (tb_owner_t *o = tb->migrations, *n; o; o = n) {
        n = o->next;
        free(o->url);
        free(o);
    }
    for (tb_owner_t *o = tb->owners, *n; o; o = n) {
        n = o->next;
        free(o->url);
        free(o);
    }
    free_tokens(tb->tokens, tb->ntokens);
    free_tokens(tb->listener_names, tb->nlisteners);
    free_tokens(tb->listener_urls, tb->nlisteners);
    SSL_CTX_free(tb->ssl_ctx);
    free(tb->server_version);
    free(tb);
}

static bool valid_url(const char *url);

/* Copy the advertised listeners of @p o into @p tb. */
static upulsar_err_t copy_listeners(upulsar_tb_t *tb, const upulsar_tb_opts_t *o)
{
    size_t n = o->listeners_cnt;
    if (n && (!o->listener_names || !o->listener_urls))
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "listeners: NULL list with a count");
    for (size_t i = 0; i < n; i++) {
        const char *name = o->listener_names[i], *url = o->listener_urls[i];
        if (!name || !name[0])
            return up_seterr(UPULSAR_ERR__INVALID_ARG, "listener %zu has no name", i);
        if (!url || !valid_url(url))
            return up_seterr(UPULSAR_ERR__INVALID_URL, "listener %s: URL \"%s\" is not "
                             "pulsar:// or pulsar+ssl://", name, url ? url : "(null)");
        for (size_t j = 0; j < i; j++)
            if (!strcmp(o->listener_names[j], name))
                return up_seterr(UPULSAR_ERR__INVALID_ARG, "listener %s given twice", name);
    }
    upulsar_err_t err = copy_tokens(o->listener_names, n, &tb->listener_names);
    if (err)
        return err;
    if ((err = copy_tokens(o->listener_urls, n, &tb->listener_urls))) {
        free_tokens(tb->listener_names, n);
        tb->listener_names = NULL;
        return err;
    }
    tb->nlisteners = n;
    return UPULSAR_OK;
}

const char *tb_listener_url(const upulsar_tb_t *tb, const char *name)
{
    for (size_t i = 0; i < tb->nlisteners; i++)
        if (!strcmp(tb->listener_names[i], name))
            return tb->listener_urls[i];
    return NULL;
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
    if (o.auth_response_timeout_ms <= 0)
        o.auth_response_timeout_ms = TB_DEFAULT_AUTH_RESPONSE_MS;
    if ((o.tls_key_file || o.tls_ca_file || o.tls_require_client_cert) && !o.tls_cert_file)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "TLS options need tls_cert_file");
    if (o.proxy_broker_link < UPULSAR_TB_PROXY_LINK_SAME ||
        o.proxy_broker_link > UPULSAR_TB_PROXY_LINK_TLS)
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "proxy_broker_link %d: not a UPULSAR_TB_PROXY_LINK_* value",
                         o.proxy_broker_link);

    upulsar_tb_t *tb = calloc(1, sizeof *tb);
    if (!tb)
        return up_seterr(UPULSAR_ERR__NOMEM, "upulsar_tb_start");
    tb->lfd = tb->efd = -1;
    tb->opts = o;
    /* the pointers belong to the caller: what is kept is copied */
    tb->opts.server_version = NULL;
    tb->opts.tls_cert_file = tb->opts.tls_key_file = tb->opts.tls_ca_file = NULL;
    tb->opts.auth_tokens = NULL;
    tb->opts.auth_tokens_cnt = 0;
    tb->opts.shared_store_with = NULL;
    tb->opts.listener_names = tb->opts.listener_urls = NULL;
    tb->opts.listeners_cnt = 0;
    tb->instance = atomic_fetch_add(&g_instances, 1) + 1;
    char vbuf[64];
    snprintf(vbuf, sizeof vbuf, "upulsar-testbroker %s", upulsar_version());
    tb->server_version = strdup(o.server_version ? o.server_version : vbuf);
    atomic_init(&tb->next_request_id, 1);
    atomic_init(&tb->next_name, 1);
    if (!tb->server_version) {
        free(tb);
        return up_seterr(UPULSAR_ERR__NOMEM, "upulsar_tb_start");
    }
    upulsar_err_t err = copy_tokens(o.auth_tokens, o.auth_tokens_cnt, &tb->tokens);
    if (!err)
        tb->ntokens = o.auth_tokens_cnt;
    if (!err)
        err = copy_listeners(tb, &o);
    if (!err && o.tls_cert_file)
        err = tls_server_ctx(&o, &tb->ssl_ctx);
    if (!err) {
        pthread_mutex_lock(&g_mu);
        if (o.shared_store_with) {
            if (broker_alive_locked(o.shared_store_with)) {
                tb->store = o.shared_store_with->store;
                tb->store->refs++;
            } else {
                err = up_seterr(UPULSAR_ERR__INVALID_ARG,
                                "shared_store_with is not a running broker");
            }
        } else if (!(tb->store = store_new(1000u * tb->instance + 1))) {
            err = up_seterr(UPULSAR_ERR__NOMEM, "upulsar_tb_start");
        }
        pthread_mutex_unlock(&g_mu);
    }
    if (err) {
        free_parts(tb);
        return err;
    }
    if (pthread_mutex_init(&tb->mu, NULL)) {
        free_parts(tb);
        return up_seterr(UPULSAR_ERR__NOMEM, "upulsar_tb_start");
    }
    pthread_condattr_t ca; /* waits on it are bounded on the monotonic clock */
    bool cond_ok = !pthread_condattr_init(&ca);
    if (cond_ok) {
        cond_ok = !pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) &&
                  !pthread_cond_init(&tb->conns_changed, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (!cond_ok) {
        pthread_mutex_destroy(&tb->mu);
        free_parts(tb);
        return up_seterr(UPULSAR_ERR__NOMEM, "upulsar_tb_start");
    }
    tb->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    err = tb->efd < 0 ? up_seterr(UPULSAR_ERR__IO, "eventfd: %s", strerror(errno))
                      : listen_on(tb, o.port);
    if (!err) {
        /* a TLS URL names the host the certificates are made for */
        if (tb->ssl_ctx)
            snprintf(tb->url, sizeof tb->url, "pulsar+ssl://localhost:%d", tb->port);
        else
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
        free_parts(tb);
        return err;
    }
    pthread_mutex_lock(&g_mu);
    tb->g_next = g_brokers;
    g_brokers = tb;
    pthread_mutex_unlock(&g_mu);
    *out = tb;
    return UPULSAR_OK;
}

void upulsar_tb_stop(upulsar_tb_t *tb)
{
    if (!tb)
        return;
    pthread_mutex_lock(&g_mu);
    for (upulsar_tb_t **pp = &g_brokers; *pp; pp = &(*pp)->g_next)
        if (*pp == tb) {
            *pp = tb->g_next;
            break;
        }
    pthread_mutex_unlock(&g_mu);
    if (stop_io(tb, "stop")) {
        /* their threads still use the broker: it cannot be freed, and a
         * stop that never returns would hide why (the account is on
         * stderr) */
        abort();
    }
    close(tb->efd);
    pthread_cond_destroy(&tb->conns_changed);
    pthread_mutex_destroy(&tb->mu);
    free_parts(tb); /* the store goes with its last broker */
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
    upulsar_err_t err = stop_io(tb, "restart");
    if (err)
        return err;
    err = UPULSAR_ERR__IO;
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
    pthread_mutex_lock(&tb->store->mu);
    t->partitions = partitions;
    pthread_mutex_unlock(&tb->store->mu);
    return UPULSAR_OK;
}

static bool valid_url(const char *url)
{
    return !strncmp(url, "pulsar://", 9) || !strncmp(url, "pulsar+ssl://", 13);
}

/* Set (url != NULL) or remove @p norm's owner entry; caller holds tb->mu.
 * @p copy is consumed. */
static void owner_set_locked(upulsar_tb_t *tb, tb_owner_t *fresh, const char *norm, char *copy)
{
    for (tb_owner_t **pp = &tb->owners; *pp; pp = &(*pp)->next) {
        tb_owner_t *o = *pp;
        if (strcmp(o->topic, norm))
            continue;
        if (copy) {
            free(o->url);
            o->url = copy;
        } else {
            *pp = o->next;
            free(o->url);
            free(o);
        }
        free(fresh);
        return;
    }
    if (!copy) {
        free(fresh);
        return;
    }
    fresh->url = copy;
    fresh->next = tb->owners;
    tb->owners = fresh;
}

/* Set @p norm's owner on @p tb (NULL url = remove the entry). */
static upulsar_err_t owner_set(upulsar_tb_t *tb, const char *norm, const char *url)
{
    char *copy = NULL;
    size_t tl = strlen(norm);
    tb_owner_t *fresh = NULL;
    if (url && (!(copy = strdup(url)) || !(fresh = malloc(sizeof *fresh + tl + 1)))) {
        free(copy);
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    }
    if (fresh)
        memcpy(fresh->topic, norm, tl + 1);
    pthread_mutex_lock(&tb->mu);
    owner_set_locked(tb, fresh, norm, copy);
    pthread_mutex_unlock(&tb->mu);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_tb_set_owner(upulsar_tb_t *tb, const char *topic, const char *url)
{
    if (!tb || !topic)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_set_owner: NULL");
    if (url && !valid_url(url))
        return up_seterr(UPULSAR_ERR__INVALID_URL, "owner URL \"%s\"", url);
    upulsar_err_t err;
    char *norm = tb_topic_normalize(topic, &err);
    if (!norm)
        return up_seterr(err, "invalid topic name \"%s\"", topic);
    err = owner_set(tb, norm, url);
    free(norm);
    return err;
}

static const char *owner_find_locked(const upulsar_tb_t *tb, const char *norm, size_t len)
{
    for (const tb_owner_t *o = tb->owners; o; o = o->next)
        if (strlen(o->topic) == len && !memcmp(o->topic, norm, len))
            return o->url;
    return NULL;
}

static int close_moved_producers(upulsar_tb_t *from, const char *norm, const char *assigned,
                                 bool migrated);

char *tb_migrated_to(upulsar_tb_t *tb, const char *norm)
{
    char *res = NULL;
    pthread_mutex_lock(&tb->mu);
    const char *url = NULL;
    size_t bl = tb_partition_base_len(norm);
    for (const tb_owner_t *o = tb->migrations; o && !url; o = o->next)
        if (!strcmp(o->topic, norm) || (bl && strlen(o->topic) == bl && !memcmp(o->topic, norm, bl)))
            url = o->url;
    if (url)
        res = strdup(url);
    pthread_mutex_unlock(&tb->mu);
    return res;
}

int upulsar_tb_migrate_topic(upulsar_tb_t *tb, const char *topic, const char *url)
{
    if (!tb || !topic || !url)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_migrate_topic: NULL");
    if (!valid_url(url))
        return up_seterr(UPULSAR_ERR__INVALID_URL, "cluster URL \"%s\"", url);
    upulsar_err_t err;
    char *norm = tb_topic_normalize(topic, &err);
    if (!norm)
        return up_seterr(err, "invalid topic name \"%s\"", topic);
    size_t tl = strlen(norm);
    tb_owner_t *m = malloc(sizeof *m + tl + 1);
    char *copy = strdup(url);
    if (!m || !copy) {
        free(m);
        free(copy);
        free(norm);
        return up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
    }
    memcpy(m->topic, norm, tl + 1);
    m->url = copy;
    pthread_mutex_lock(&tb->mu);
    m->next = tb->migrations;
    tb->migrations = m;
    pthread_mutex_unlock(&tb->mu);
    int n = close_moved_producers(tb, norm, url, true);
    free(norm);
    return n;
}

char *tb_owner_of(upulsar_tb_t *tb, const char *norm)
{
    char *res = NULL;
    pthread_mutex_lock(&tb->mu);
    const char *url = owner_find_locked(tb, norm, strlen(norm));
    if (!url) {
        size_t bl = tb_partition_base_len(norm);
        if (bl)
            url = owner_find_locked(tb, norm, bl); /* the partitioned topic's owner */
    }
    if (url && !tb_url_is_self(tb, url))
        res = strdup(url); /* NULL on ENOMEM: answer as owner, harmless */
    pthread_mutex_unlock(&tb->mu);
    return res;
}

bool tb_url_is_self(const upulsar_tb_t *tb, const char *url)
{
    if (!strcmp(url, tb->url))
        return true;
    bool tls = !strncmp(url, "pulsar+ssl://", 13);
    if (!tls && strncmp(url, "pulsar://", 9))
        return false;
    if (tls != (tb->ssl_ctx != NULL))
        return false;
    const char *h = url + (tls ? 13 : 9);
    const char *colon = strrchr(h, ':');
    if (!colon)
        return false;
    size_t hl = (size_t)(colon - h);
    if (!((hl == 9 && !memcmp(h, "127.0.0.1", 9)) || (hl == 9 && !memcmp(h, "localhost", 9))))
        return false;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    return (*end == '\0' || *end == '/') && port == tb->port;
}

/* Close the producers @p from serves on @p t, and on every partition of @p t
 * that now redirects (when @p t is a partitioned topic's base name). */
static int close_moved_producers(upulsar_tb_t *from, const char *norm, const char *assigned,
                                 bool migrated)
{
    size_t nl = strlen(norm);
    tb_topic_t **hits = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&from->store->mu);
    for (tb_topic_t *t = from->store->topics; t; t = t->next) {
        bool hit = !strcmp(t->name, norm) ||
                   (tb_partition_base_len(t->name) == nl && !memcmp(t->name, norm, nl));
        if (!hit)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            tb_topic_t **nh = realloc(hits, nc * sizeof *nh);
            if (!nh)
                break; /* close what we can track */
            hits = nh;
            cap = nc;
        }
        hits[n++] = t;
    }
    pthread_mutex_unlock(&from->store->mu);
    int closed = 0;
    for (size_t i = 0; i < n; i++) {
        tb_topic_t *t = hits[i];
        if (strcmp(t->name, norm)) { /* a partition: only if it now redirects */
            char *o = migrated ? tb_migrated_to(from, t->name) : tb_owner_of(from, t->name);
            bool moved = o != NULL;
            free(o);
            if (!moved)
                continue;
        }
        pthread_mutex_lock(&t->mu);
        closed += tb_topic_close_producers_locked(from, t, from, assigned, migrated);
        pthread_mutex_unlock(&t->mu);
    }
    free(hits);
    return closed;
}

int upulsar_tb_move_topic_ex(upulsar_tb_t *from, const char *topic, const char *to_url,
                             int flags)
{
    if (!from || !topic || !to_url)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_move_topic: NULL");
    if (!valid_url(to_url))
        return up_seterr(UPULSAR_ERR__INVALID_URL, "target URL \"%s\"", to_url);
    if (tb_url_is_self(from, to_url))
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "cannot move %s to its own broker", topic);
    upulsar_err_t err;
    char *norm = tb_topic_normalize(topic, &err);
    if (!norm)
        return up_seterr(err, "invalid topic name \"%s\"", topic);
    /* the new owner first, so the producers' next lookup finds it ready */
    pthread_mutex_lock(&g_mu);
    for (upulsar_tb_t *b = g_brokers; b && !err; b = b->g_next)
        if (b != from && tb_url_is_self(b, to_url))
            err = owner_set(b, norm, b->url);
    pthread_mutex_unlock(&g_mu);
    if (!err)
        err = owner_set(from, norm, to_url);
    if (err) {
        free(norm);
        return err;
    }
    int n = close_moved_producers(from, norm, (flags & UPULSAR_TB_MOVE_ASSIGNED) ? to_url : NULL,
                                  false);
    free(norm);
    return n;
}

int upulsar_tb_move_topic(upulsar_tb_t *from, const char *topic, const char *to_url)
{
    return upulsar_tb_move_topic_ex(from, topic, to_url, 0);
}

/* ---- fault injection --------------------------------------------------- */

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
    tb_topic_t *t = norm ? tb_topic_get(tb, norm, false) : NULL;
    pthread_mutex_lock(&tb->mu);
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
    upulsar_err_t err = wait_conns_end_locked(tb, serials, n, "drop connections");
    pthread_mutex_unlock(&tb->mu);
    free(serials);
    free(norm);
    return err ? (int)err : (int)n;
}

int upulsar_tb_inject_raw(upulsar_tb_t *tb, const char *topic, const void *bytes, size_t len)
{
    if (!tb || (!bytes && len))
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_inject_raw: NULL");
    int n = 0;
    bool nomem = false;
    if (!topic) {
        pthread_mutex_lock(&tb->mu);
        for (tb_conn_t *c = tb->conns; c && !nomem; c = c->next) {
            nomem = tb_conn_inject(c, bytes, len) != 0;
            n += !nomem;
        }
        pthread_mutex_unlock(&tb->mu);
    } else {
        upulsar_err_t err;
        tb_topic_t *t = topic_arg(tb, topic, false, &err);
        if (err)
            return err;
        if (!t)
            return 0;
        /* a producer's connection outlives its place in t->prods (the
         * connection thread unregisters its producers under t->mu before it
         * retires), so the pointers are safe while t->mu is held */
        pthread_mutex_lock(&t->mu);
        for (size_t i = 0; i < t->nprods && !nomem; i++) {
            tb_conn_t *c = t->prods[i]->conn;
            if (c->tb != tb) /* served by another broker sharing the store */
                continue;
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++)
                seen = t->prods[j]->conn == c;
            if (seen)
                continue;
            nomem = tb_conn_inject(c, bytes, len) != 0;
            n += !nomem;
        }
        pthread_mutex_unlock(&t->mu);
    }
    if (nomem)
        return up_seterr(UPULSAR_ERR__NOMEM, "upulsar_tb_inject_raw: out of memory after %d "
                         "connection(s)", n);
    return n;
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

/* Wake every connection of @p tb and of the brokers sharing its store
 * (a topic's settings are the store's). */
static void wake_all(upulsar_tb_t *tb)
{
    pthread_mutex_lock(&g_mu);
    for (upulsar_tb_t *b = g_brokers; b; b = b->g_next) {
        if (b != tb && b->store != tb->store)
            continue;
        pthread_mutex_lock(&b->mu);
        for (tb_conn_t *c = b->conns; c; c = c->next)
            tb_conn_wake(c);
        pthread_mutex_unlock(&b->mu);
    }
    pthread_mutex_unlock(&g_mu);
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
        pthread_mutex_lock(&tb->store->mu);
        for (tb_topic_t *t = tb->store->topics; t; t = t->next)
            atomic_store(&t->hold, false);
        pthread_mutex_unlock(&tb->store->mu);
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

/* Set the countdown of PRODUCER requests @p delay (else fail) of @p topic,
 * or of every topic (NULL), to @p n times @p value. */
static upulsar_err_t set_producer_countdown(upulsar_tb_t *tb, const char *topic, bool delay,
                                            int n, int value)
{
    if (!topic) {
        pthread_mutex_lock(&tb->mu);
        *(delay ? &tb->delay_prods : &tb->fail_prods) = (tb_countdown_t){n, value};
        pthread_mutex_unlock(&tb->mu);
        return UPULSAR_OK;
    }
    upulsar_err_t err;
    tb_topic_t *t = topic_arg(tb, topic, true, &err);
    if (!t)
        return err;
    pthread_mutex_lock(&t->mu);
    *(delay ? &t->delay_prods : &t->fail_prods) = (tb_countdown_t){n, value};
    pthread_mutex_unlock(&t->mu);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_tb_fail_producers(upulsar_tb_t *tb, const char *topic, int n,
                                        int server_error)
{
    if (!tb || n < 0 || server_error < 0 || server_error > UPULSAR_ERR_BROKER_MAX - UPULSAR_ERR_BROKER_BASE)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_fail_producers: bad argument");
    return set_producer_countdown(tb, topic, false, n, server_error);
}

upulsar_err_t upulsar_tb_delay_producers(upulsar_tb_t *tb, const char *topic, int n, int ms)
{
    if (!tb || n < 0 || ms < 0)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_delay_producers: bad argument");
    return set_producer_countdown(tb, topic, true, n, ms);
}

upulsar_err_t upulsar_tb_mangle_producers(upulsar_tb_t *tb, const char *topic, int n, int how)
{
    if (!tb || !topic || n < 0 ||
        (how != UPULSAR_TB_MANGLE_COMMAND && how != UPULSAR_TB_MANGLE_SCHEMA_VERSION &&
         how != UPULSAR_TB_MANGLE_LAST_SEQ))
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_mangle_producers: bad argument");
    upulsar_err_t err;
    tb_topic_t *t = topic_arg(tb, topic, true, &err);
    if (!t)
        return err;
    pthread_mutex_lock(&t->mu);
    t->mangle_prods = (tb_countdown_t){n, how};
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
    int n = tb_topic_close_producers_locked(tb, t, tb, NULL, false);
    pthread_mutex_unlock(&t->mu);
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

upulsar_err_t upulsar_tb_hold_partition_metadata(upulsar_tb_t *tb, int on)
{
    if (!tb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_hold_partition_metadata: NULL");
    atomic_store(&tb->hold_metadata, on != 0);
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
    out->tls_handshakes = atomic_load(&tb->tls_handshakes);
    out->tls_failures = atomic_load(&tb->tls_failures);
    out->auth_ok = atomic_load(&tb->auth_ok);
    out->auth_failed = atomic_load(&tb->auth_failed);
    out->auth_challenges = atomic_load(&tb->auth_challenges);
    out->auth_unanswered = atomic_load(&tb->auth_unanswered);
    out->lookups = atomic_load(&tb->lookups);
    out->partition_lookups = atomic_load(&tb->partition_lookups);
    out->proxied_connections = atomic_load(&tb->proxied_connections);
    out->lookup_only_closed = atomic_load(&tb->lookup_only_closed);
    out->proxy_relayed = atomic_load(&tb->proxy_relayed);
    out->auth_tls_ok = atomic_load(&tb->auth_tls_ok);
    out->listener_lookups = atomic_load(&tb->listener_lookups);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_tb_last_tls_role(upulsar_tb_t *tb, char *buf, size_t size)
{
    if (!tb || !buf || !size)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_last_tls_role: NULL");
    pthread_mutex_lock(&tb->mu);
    snprintf(buf, size, "%s", tb->tls_role);
    pthread_mutex_unlock(&tb->mu);
    return UPULSAR_OK;
}

/* ---- authentication ---------------------------------------------------- */

upulsar_err_t upulsar_tb_set_tokens(upulsar_tb_t *tb, const char *const *tokens, size_t n)
{
    if (!tb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_set_tokens: NULL");
    char **v;
    upulsar_err_t err = copy_tokens(tokens, n, &v);
    if (err)
        return err;
    pthread_mutex_lock(&tb->mu);
    char **old = tb->tokens;
    size_t oldn = tb->ntokens;
    tb->tokens = v;
    tb->ntokens = n;
    pthread_mutex_unlock(&tb->mu);
    free_tokens(old, oldn);
    return UPULSAR_OK;
}

bool tb_token_ok(upulsar_tb_t *tb, const uint8_t *token, size_t len, bool *required)
{
    pthread_mutex_lock(&tb->mu);
    *required = tb->ntokens > 0;
    bool ok = !*required;
    for (size_t i = 0; i < tb->ntokens && !ok; i++) {
        size_t tl = strlen(tb->tokens[i]);
        if (tl != len)
            continue;
        unsigned char diff = 0; /* every byte compared, whatever the first mismatch */
        for (size_t j = 0; j < len; j++)
            diff |= (unsigned char)(token[j] ^ (uint8_t)tb->tokens[i][j]);
        ok = diff == 0;
    }
    pthread_mutex_unlock(&tb->mu);
    return ok;
}

int upulsar_tb_auth_challenge(upulsar_tb_t *tb)
{
    if (!tb)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_auth_challenge: NULL");
    int n = 0;
    pthread_mutex_lock(&tb->mu);
    for (tb_conn_t *c = tb->conns; c; c = c->next) {
        atomic_store(&c->challenge_req, true);
        tb_conn_wake(c);
        n++;
    }
    pthread_mutex_unlock(&tb->mu);
    return n;
}
