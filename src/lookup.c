/* lookup.c -- topic discovery: PARTITIONED_METADATA and LOOKUP with
 * redirects. @thread caller, establish worker or partition poller */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "err.h"

static int op_timeout(struct upulsar_client *c) { return c->conf.operation_timeout_ms; }

upulsar_err_t up_partitions(struct upulsar_client *c, const char *topic, int *n)
{
    up_conn_t *conn;
    char sh[256];
    int sp;
    up_service_addr(c, sh, sizeof sh, &sp);
    upulsar_err_t err = up_conn_get(c, &c->loops[0], sh, sp, 0, NULL, false, &conn);
    if (err) {
        if (err != UPULSAR_ERR__CLOSED)
            up_service_failed(c, sh, sp);
        return err;
    }
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandPartitionedTopicMetadata pm =
        PULSAR__PROTO__COMMAND_PARTITIONED_TOPIC_METADATA__INIT;
    cmd.type = UP_CMD(PARTITIONED_METADATA);
    cmd.partitionmetadata = &pm;
    pm.topic = (char *)topic;
    pm.request_id = atomic_fetch_add(&c->next_request_id, 1);
    up_cmd_t *resp;
    err = up_conn_request(conn, &cmd, pm.request_id, op_timeout(c), &resp, NULL, NULL);
    up_conn_unref(conn);
    if (err) {
        if (resp)
            pulsar__proto__base_command__free_unpacked(resp, NULL);
        return err;
    }
    Pulsar__Proto__CommandPartitionedTopicMetadataResponse *r = resp->partitionmetadataresponse;
    if (resp->type != UP_CMD(PARTITIONED_METADATA_RESPONSE) || !r->has_response ||
        r->response != PULSAR__PROTO__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__LOOKUP_TYPE__Success) {
        err = r && r->has_error ? up_err_from_server(r->error) : UPULSAR_ERR__LOOKUP;
        up_seterr(err, "partition metadata for %s failed: %s", topic,
                  r && r->message ? r->message : upulsar_err_str(err));
    } else {
        if (r->has_partitions && r->partitions > INT_MAX) {
            err = up_seterr(UPULSAR_ERR__PROTOCOL, "the broker announces %" PRIu32
                            " partitions for %s, more than a producer can open", r->partitions,
                            topic);
        } else {
            *n = r->has_partitions ? (int)r->partitions : 0;
        }
    }
    pulsar__proto__base_command__free_unpacked(resp, NULL);
    return err;
}

/* The brokers a lookup has asked, to recognise a redirect loop: asking the
 * same broker again with the same authoritative flag can only get the same
 * answer. (A non-authoritative redirect back to a broker already asked is
 * not a loop yet: the authoritative lookup there may answer differently.) */
#define LOOKUP_SEEN_MAX 32
typedef struct {
    struct {
        char host[256];
        int port;
        bool authoritative;
    } hop[LOOKUP_SEEN_MAX];
    int n;
    char path[512]; /* "a:1 -> b:2 -> ..." for errors */
} lookup_path_t;

static void path_add(lookup_path_t *lp, const char *host, int port, bool authoritative)
{
    if (lp->n < LOOKUP_SEEN_MAX) {
        snprintf(lp->hop[lp->n].host, sizeof lp->hop[0].host, "%s", host);
        lp->hop[lp->n].port = port;
        lp->hop[lp->n].authoritative = authoritative;
        lp->n++;
    }
    size_t len = strlen(lp->path);
    if (len + 8 < sizeof lp->path)
        snprintf(lp->path + len, sizeof lp->path - len, "%s%s:%d%s", len ? " -> " : "", host,
                 port, authoritative ? " (authoritative)" : "");
}

static bool path_seen(const lookup_path_t *lp, const char *host, int port, bool authoritative)
{
    for (int i = 0; i < lp->n; i++)
        if (lp->hop[i].port == port && lp->hop[i].authoritative == authoritative &&
            !strcmp(lp->hop[i].host, host))
            return true;
    return false;
}

/* The answer @p resp (freed here) to a LOOKUP of @p topic asked at
 * @p h:@p p. UPULSAR_OK and *@p redirect false: the broker to use is in
 * @p host / @p port / @p proxy_to (and *@p proxy_tls: the scheme of the
 * proxy's link to it); *@p redirect true: ask @p nh:*@p np next,
 * authoritative as *@p auth says. Else the error (set). */
static upulsar_err_t lookup_answer(struct upulsar_client *c, const char *topic, const char *h,
                                   int p, up_cmd_t *resp, bool *redirect_out, bool *auth,
                                   char *nh, size_t nhsz, int *np_out, char *host, size_t hostsz,
                                   int *port, char *proxy_to, size_t proxy_to_sz,
                                   bool *proxy_tls)
{
    upulsar_err_t err;
    *redirect_out = false;
    Pulsar__Proto__CommandLookupTopicResponse *r = resp->lookuptopicresponse;
    if (resp->type != UP_CMD(LOOKUP_RESPONSE) || !r->has_response ||
        r->response == PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed) {
        err = r && r->has_error ? up_err_from_server(r->error) : UPULSAR_ERR__LOOKUP;
        up_seterr(err, "lookup of %s failed: %s", topic,
                  r && r->message ? r->message : upulsar_err_str(err));
        pulsar__proto__base_command__free_unpacked(resp, NULL);
        return err;
    }
    bool tls = false;
    int np = 0;
    bool redirect =
        r->response == PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Redirect;
    *auth = r->has_authoritative && r->authoritative;
    bool proxied = r->proxy_through_service_url;
    /* a TLS client follows the broker's TLS address (a broker fills
     * the field of each port it opens; either may be absent) */
    const char *ut = r->brokerserviceurltls && r->brokerserviceurltls[0]
                         ? r->brokerserviceurltls
                         : NULL;
    const char *up = r->brokerserviceurl && r->brokerserviceurl[0] ? r->brokerserviceurl
                                                                    : NULL;
    const char *burl = c->tls && ut ? ut : up ? up : ut;
    err = burl ? up_parse_url(burl, nh, nhsz, &np, &tls)
               : up_seterr(UPULSAR_ERR__LOOKUP, "lookup of %s: no broker URL", topic);
    /* Through a proxy only the service URL's scheme matters: a Pulsar
     * proxy puts the URL of ITS link to the broker in both fields, in
     * whatever scheme that link uses, and the client only names the
     * broker's host:port in CONNECT to the proxy. */
    if (!err && tls != c->tls && !(proxied && !redirect))
        err = up_seterr(UPULSAR_ERR__LOOKUP, "lookup of %s: broker answered %s, but the "
                        "client %s TLS", topic, burl, c->tls ? "requires" : "is not using");
    pulsar__proto__base_command__free_unpacked(resp, NULL);
    if (err)
        return err;
    if (!redirect && proxied) {
        /* a Pulsar proxy: connect to the service URL and name the
         * broker in CONNECT, which the proxy then forwards to */
        snprintf(host, hostsz, "%s", h); /* the proxy we asked */
        *port = p;
        snprintf(proxy_to, proxy_to_sz, "%s:%d", nh, np);
        *proxy_tls = tls;
        return UPULSAR_OK;
    }
    if (!redirect) {
        snprintf(host, hostsz, "%s", nh);
        *port = np;
        return UPULSAR_OK;
    }
    *redirect_out = true;
    *np_out = np;
    return UPULSAR_OK;
}

upulsar_err_t up_lookup(struct upulsar_client *c, up_loop_t *l, const char *topic,
                        const char *from_url, char *host, size_t hostsz, int *port,
                        char *proxy_to, size_t proxy_to_sz, bool *proxy_tls)
{
    proxy_to[0] = '\0';
    *proxy_tls = false;
    char h[256];
    int p;
    up_service_addr(c, h, sizeof h, &p);
    bool ftls, from_service = true;
    if (from_url && from_url[0]) {
        if (up_parse_url(from_url, h, sizeof h, &p, &ftls) || ftls != c->tls)
            up_service_addr(c, h, sizeof h, &p); /* unusable: the service URL */
        else
            from_service = false;
    }
    bool authoritative = false;
    lookup_path_t lp;
    lp.n = 0;
    lp.path[0] = 0;
    for (int hop = 0; hop <= c->conf.lookup_max_redirects; hop++) {
        if (path_seen(&lp, h, p, authoritative)) {
            path_add(&lp, h, p, authoritative);
            return up_seterr(UPULSAR_ERR__LOOKUP, "lookup of %s: redirect loop: %s", topic,
                             lp.path);
        }
        path_add(&lp, h, p, authoritative);
        up_conn_t *conn;
        upulsar_err_t err = up_conn_get(c, l, h, p, 0, NULL, false, &conn);
        if (err) {
            if (hop == 0 && from_service && err != UPULSAR_ERR__CLOSED)
                up_service_failed(c, h, p); /* the next attempt asks another */
            return err;
        }
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandLookupTopic lt = PULSAR__PROTO__COMMAND_LOOKUP_TOPIC__INIT;
        cmd.type = UP_CMD(LOOKUP);
        cmd.lookuptopic = &lt;
        lt.topic = (char *)topic;
        lt.request_id = atomic_fetch_add(&c->next_request_id, 1);
        lt.has_authoritative = 1;
        lt.authoritative = authoritative;
        /* on every hop: the broker that answers Connect picks the address */
        if (c->conf.listener_name[0])
            lt.advertised_listener_name = c->conf.listener_name;
        up_cmd_t *resp;
        err = up_conn_request(conn, &cmd, lt.request_id, op_timeout(c), &resp, NULL, NULL);
        up_conn_unref(conn);
        if (err) {
            if (resp)
                pulsar__proto__base_command__free_unpacked(resp, NULL);
            return err;
        }
        bool redirect;
        char nh[256] = "";
        int np = 0;
        err = lookup_answer(c, topic, h, p, resp, &redirect, &authoritative, nh, sizeof nh, &np,
                            host, hostsz, port, proxy_to, proxy_to_sz, proxy_tls);
        if (err || !redirect)
            return err;
        snprintf(h, sizeof h, "%s", nh);
        p = np;
    }
    return up_seterr(UPULSAR_ERR__LOOKUP, "lookup of %s: more than %d redirects "
                     "(lookup.max.redirects): %s", topic, c->conf.lookup_max_redirects, lp.path);
}

/* ---- many topics at once ------------------------------------------------------ */

typedef struct {
    char h[256];
    int p;
    bool auth;
    bool active;
    lookup_path_t *lp; /* from the first redirect on */
} many_st_t;

typedef struct {
    up_loop_t *loop;
    const char *h;
    int p;
    up_conn_t *conn;
    upulsar_err_t err;
    char why[512];
} many_grp_t;

static void item_fail(up_lookup_item_t *it, many_st_t *st, upulsar_err_t err, const char *why)
{
    it->err = err;
    snprintf(it->why, sizeof it->why, "%s", why);
    st->active = false;
}

void up_lookup_many(struct upulsar_client *c, up_lookup_item_t *it, size_t n, int timeout_ms)
{
    if (n == 0)
        return;
    many_st_t *st = calloc(n, sizeof *st);
    up_mreq_t *m = calloc(n, sizeof *m);
    size_t *mi = calloc(n, sizeof *mi);
    size_t *gi = calloc(n, sizeof *gi);
    many_grp_t *g = NULL;
    size_t ng = 0, cg = 0;
    if (!st || !m || !mi || !gi) {
        for (size_t i = 0; i < n; i++) {
            it[i].err = UPULSAR_ERR__NOMEM;
            snprintf(it[i].why, sizeof it[i].why, "out of memory");
        }
        goto out;
    }
    char sh[256];
    int sp;
    up_service_addr(c, sh, sizeof sh, &sp);
    for (size_t i = 0; i < n; i++) {
        it[i].err = UPULSAR_OK;
        it[i].why[0] = it[i].proxy_to[0] = '\0';
        it[i].proxy_tls = false;
        snprintf(st[i].h, sizeof st[i].h, "%s", sh);
        st[i].p = sp;
        st[i].active = true;
    }
    for (int hop = 0; hop <= c->conf.lookup_max_redirects; hop++) {
        /* the brokers to ask, one connection each (per loop) */
        ng = 0;
        for (size_t i = 0; i < n; i++) {
            if (!st[i].active)
                continue;
            size_t k = 0;
            while (k < ng && !(g[k].loop == it[i].loop && g[k].p == st[i].p &&
                               !strcmp(g[k].h, st[i].h)))
                k++;
            if (k == ng) {
                if (ng == cg) {
                    size_t nc = cg ? cg * 2 : 8;
                    many_grp_t *ngp = realloc(g, nc * sizeof *g);
                    if (!ngp) {
                        item_fail(&it[i], &st[i], UPULSAR_ERR__NOMEM, "out of memory");
                        continue;
                    }
                    g = ngp;
                    cg = nc;
                }
                g[ng] = (many_grp_t){.loop = it[i].loop, .h = st[i].h, .p = st[i].p};
                g[ng].err = up_conn_get(c, it[i].loop, st[i].h, st[i].p, 0, NULL, false,
                                         &g[ng].conn);
                if (g[ng].err) {
                    snprintf(g[ng].why, sizeof g[ng].why, "%s", upulsar_last_error());
                    if (hop == 0 && g[ng].err != UPULSAR_ERR__CLOSED)
                        up_service_failed(c, st[i].h, st[i].p); /* the next attempt asks another */
                }
                ng++;
            }
            gi[i] = k;
        }
        size_t nm = 0;
        for (size_t i = 0; i < n; i++) {
            if (!st[i].active)
                continue;
            many_grp_t *gr = &g[gi[i]];
            if (gr->err) {
                item_fail(&it[i], &st[i], gr->err, gr->why);
                continue;
            }
            up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
            Pulsar__Proto__CommandLookupTopic lt = PULSAR__PROTO__COMMAND_LOOKUP_TOPIC__INIT;
            cmd.type = UP_CMD(LOOKUP);
            cmd.lookuptopic = &lt;
            lt.topic = (char *)it[i].topic;
            lt.request_id = atomic_fetch_add(&c->next_request_id, 1);
            lt.has_authoritative = 1;
            lt.authoritative = st[i].auth;
            if (c->conf.listener_name[0])
                lt.advertised_listener_name = c->conf.listener_name;
            upulsar_err_t err = up_mreq_encode(&m[nm], gr->conn, &cmd, lt.request_id);
            if (err) {
                item_fail(&it[i], &st[i], err, upulsar_last_error());
                continue;
            }
            mi[nm++] = i;
        }
        up_conn_request_all(m, nm, timeout_ms);
        for (size_t j = 0; j < nm; j++) {
            size_t i = mi[j];
            if (m[j].err) {
                if (m[j].resp)
                    pulsar__proto__base_command__free_unpacked(m[j].resp, NULL);
                item_fail(&it[i], &st[i], m[j].err, m[j].why);
                continue;
            }
            bool redirect, auth = st[i].auth;
            char nh[256] = "";
            int np = 0;
            upulsar_err_t err = lookup_answer(c, it[i].topic, st[i].h, st[i].p, m[j].resp,
                                              &redirect, &auth, nh, sizeof nh, &np, it[i].host,
                                              sizeof it[i].host, &it[i].port, it[i].proxy_to,
                                              sizeof it[i].proxy_to, &it[i].proxy_tls);
            if (err) {
                item_fail(&it[i], &st[i], err, upulsar_last_error());
                continue;
            }
            if (!redirect) {
                st[i].active = false;
                continue;
            }
            if (!st[i].lp) {
                st[i].lp = calloc(1, sizeof *st[i].lp);
                if (!st[i].lp) {
                    item_fail(&it[i], &st[i], UPULSAR_ERR__NOMEM, "out of memory");
                    continue;
                }
                path_add(st[i].lp, st[i].h, st[i].p, st[i].auth);
            }
            bool loop = path_seen(st[i].lp, nh, np, auth);
            path_add(st[i].lp, nh, np, auth);
            if (loop) {
                up_seterr(UPULSAR_ERR__LOOKUP, "lookup of %s: redirect loop: %s", it[i].topic,
                          st[i].lp->path);
                item_fail(&it[i], &st[i], UPULSAR_ERR__LOOKUP, upulsar_last_error());
                continue;
            }
            snprintf(st[i].h, sizeof st[i].h, "%s", nh);
            st[i].p = np;
            st[i].auth = auth;
        }
        for (size_t k = 0; k < ng; k++)
            if (g[k].conn)
                up_conn_unref(g[k].conn);
    }
    for (size_t i = 0; i < n; i++)
        if (st[i].active) {
            up_seterr(UPULSAR_ERR__LOOKUP, "lookup of %s: more than %d redirects "
                      "(lookup.max.redirects): %s", it[i].topic, c->conf.lookup_max_redirects,
                      st[i].lp ? st[i].lp->path : "");
            item_fail(&it[i], &st[i], UPULSAR_ERR__LOOKUP, upulsar_last_error());
        }
out:
    if (st)
        for (size_t i = 0; i < n; i++)
            free(st[i].lp);
    free(st);
    free(m);
    free(mi);
    free(gi);
    free(g);
}
