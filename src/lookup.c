/* lookup.c -- topic discovery: PARTITIONED_METADATA and LOOKUP with
 * redirects. @thread caller/watchdog */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
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
    upulsar_err_t err = up_conn_get(c, &c->loops[0], sh, sp, 0, NULL, &conn);
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

upulsar_err_t up_lookup(struct upulsar_client *c, up_loop_t *l, const char *topic,
                        const char *from_url, char *host, size_t hostsz, int *port,
                        char *proxy_to, size_t proxy_to_sz)
{
    proxy_to[0] = '\0';
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
        upulsar_err_t err = up_conn_get(c, l, h, p, 0, NULL, &conn);
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
        up_cmd_t *resp;
        err = up_conn_request(conn, &cmd, lt.request_id, op_timeout(c), &resp, NULL, NULL);
        up_conn_unref(conn);
        if (err) {
            if (resp)
                pulsar__proto__base_command__free_unpacked(resp, NULL);
            return err;
        }
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
        char nh[256] = "";
        bool redirect =
            r->response == PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Redirect;
        authoritative = r->has_authoritative && r->authoritative;
        bool proxied = r->proxy_through_service_url;
        /* a TLS client follows the broker's TLS address (a broker fills
         * the field of each port it opens; either may be absent) */
        const char *ut = r->brokerserviceurltls && r->brokerserviceurltls[0]
                             ? r->brokerserviceurltls
                             : NULL;
        const char *up = r->brokerserviceurl && r->brokerserviceurl[0] ? r->brokerserviceurl
                                                                        : NULL;
        const char *burl = c->tls && ut ? ut : up ? up : ut;
        err = burl ? up_parse_url(burl, nh, sizeof nh, &np, &tls)
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
            return UPULSAR_OK;
        }
        if (!redirect) {
            snprintf(host, hostsz, "%s", nh);
            *port = np;
            return UPULSAR_OK;
        }
        snprintf(h, sizeof h, "%s", nh);
        p = np;
    }
    return up_seterr(UPULSAR_ERR__LOOKUP, "lookup of %s: more than %d redirects "
                     "(lookup.max.redirects): %s", topic, c->conf.lookup_max_redirects, lp.path);
}
