/* topic.c -- service URL and topic name parsing. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "entity_name.h"
#include "err.h"
#include "utf8.h"

upulsar_err_t up_parse_url(const char *url, char *host, size_t hostsz, int *port, bool *tls)
{
    const char *p;
    if (!url)
        return up_seterr(UPULSAR_ERR__INVALID_URL, "service URL is NULL");
    if (!strncmp(url, "pulsar://", 9)) {
        p = url + 9;
        *tls = false;
        *port = 6650;
    } else if (!strncmp(url, "pulsar+ssl://", 13)) {
        p = url + 13;
        *tls = true;
        *port = 6651;
    } else {
        return up_seterr(UPULSAR_ERR__INVALID_URL,
                         "service URL \"%.200s\" must start with pulsar:// or pulsar+ssl://", url);
    }
    return up_parse_host(url, p, host, hostsz, port);
}

upulsar_err_t up_parse_host(const char *url, const char *p, char *host, size_t hostsz, int *port)
{
    /* one host of a comma-separated list; strip a trailing path */
    size_t n = strcspn(p, ",/");
    const char *hs = p, *he = p + n;
    const char *colon = NULL;
    if (*hs == '[') { /* [ipv6]:port */
        const char *rb = memchr(hs, ']', n);
        if (!rb)
            return up_seterr(UPULSAR_ERR__INVALID_URL, "service URL \"%.200s\": bad IPv6 host", url);
        hs++;
        colon = rb + 1 < he && rb[1] == ':' ? rb + 1 : NULL;
        he = rb;
    } else {
        colon = memchr(hs, ':', n);
        if (colon)
            he = colon;
    }
    if (he == hs || (size_t)(he - hs) >= hostsz)
        return up_seterr(UPULSAR_ERR__INVALID_URL, "service URL \"%.200s\": missing or long host", url);
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || v <= 0 || v > 65535 || (end != p + n && *end != ','))
            return up_seterr(UPULSAR_ERR__INVALID_URL, "service URL \"%.200s\": bad port", url);
        *port = (int)v;
    }
    return UPULSAR_OK;
}

upulsar_err_t up_parse_service_url(const char *url, char (*hosts)[256], int *ports, int max,
                                   int *n, bool *tls)
{
    upulsar_err_t err = up_parse_url(url, hosts[0], sizeof hosts[0], &ports[0], tls);
    if (err)
        return err;
    *n = 1;
    const char *p = url + (*tls ? 13 : 9);
    for (const char *comma = strchr(p, ','); comma && *n < max; comma = strchr(comma + 1, ',')) {
        ports[*n] = *tls ? 6651 : 6650;
        err = up_parse_host(url, comma + 1, hosts[*n], sizeof hosts[0], &ports[*n]);
        if (err)
            return err;
        (*n)++;
    }
    return UPULSAR_OK;
}

/* A topic's local name: not empty, no '/', and none of the characters
 * that break its use in a lookup or the admin API's paths. */
static bool name_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x21 || ch == 0x7f || ch == '/' || ch == '\\' || ch == '"' || ch == '\'' ||
            ch == '*' || ch == '?' || ch == '%' || ch == '&')
            return false;
    }
    return true;
}



upulsar_err_t up_topic_normalize(const char *in, char *out, size_t outsz)
{
    if (!in || !*in)
        return up_seterr(UPULSAR_ERR__INVALID_TOPIC, "topic name is empty");
    if (!up_utf8_valid(in, strlen(in)))
        return up_seterr(UPULSAR_ERR__INVALID_TOPIC,
                         "topic name is not valid UTF-8 (a broker reads names as UTF-8 text)");
    const char *rest;
    const char *domain;
    if (!strncmp(in, "persistent://", 13)) {
        domain = "persistent";
        rest = in + 13;
    } else if (!strncmp(in, "non-persistent://", 17)) {
        domain = "non-persistent";
        rest = in + 17;
    } else if (strstr(in, "://")) {
        return up_seterr(UPULSAR_ERR__INVALID_TOPIC,
                         "topic \"%.200s\": domain must be persistent:// or non-persistent://", in);
    } else {
        domain = "persistent";
        rest = in;
    }
    /* short forms: "t" -> public/default/t; "tenant/ns/t" as is */
    const char *parts[3];
    size_t lens[3];
    int np = 0;
    const char *s = rest;
    while (np < 3) {
        const char *slash = np < 2 ? strchr(s, '/') : NULL;
        size_t l = slash ? (size_t)(slash - s) : strlen(s);
        parts[np] = s;
        lens[np] = l;
        np++;
        if (!slash)
            break;
        s = slash + 1;
    }
    int n;
    if (np == 1 && rest == in) {
        if (!name_ok(parts[0], lens[0]))
            goto bad;
        n = snprintf(out, outsz, "%s://public/default/%.*s", domain, (int)lens[0], parts[0]);
    } else if (np == 3) {
        if (!up_entity_name_ok(parts[0], lens[0]) || !up_entity_name_ok(parts[1], lens[1]))
            return up_seterr(UPULSAR_ERR__INVALID_TOPIC,
                             "invalid topic name \"%.200s\": a tenant or namespace name has "
                             "letters, digits and \"_-=:.\" only, as Pulsar allows",
                             in);
        if (!name_ok(parts[2], lens[2]))
            goto bad;
        n = snprintf(out, outsz, "%s://%.*s/%.*s/%.*s", domain, (int)lens[0], parts[0],
                     (int)lens[1], parts[1], (int)lens[2], parts[2]);
    } else {
        goto bad;
    }
    if (n < 0 || (size_t)n >= outsz)
        return up_seterr(UPULSAR_ERR__INVALID_TOPIC,
                         "topic name too long: %d bytes, at most %zu (\"%.120s...\")", n,
                         outsz - 1, in);
    return UPULSAR_OK;
bad:
    return up_seterr(UPULSAR_ERR__INVALID_TOPIC,
                     "invalid topic name \"%.200s\" (expected name, tenant/namespace/name or "
                     "persistent://tenant/namespace/name)",
                     in);
}

void up_service_addr(struct upulsar_client *c, char *host, size_t hostsz, int *port)
{
    int i = atomic_load_explicit(&c->svc_cur, memory_order_relaxed) % c->nsvc;
    snprintf(host, hostsz, "%s", c->svc_hosts[i]);
    *port = c->svc_ports[i];
}

void up_service_failed(struct upulsar_client *c, const char *host, int port)
{
    if (c->nsvc < 2)
        return;
    int i = atomic_load_explicit(&c->svc_cur, memory_order_relaxed);
    int k = i % c->nsvc;
    /* only if it is still the current one (another thread may have moved on) */
    if (c->svc_ports[k] == port && !strcmp(c->svc_hosts[k], host) &&
        atomic_compare_exchange_strong(&c->svc_cur, &i, (k + 1) % c->nsvc))
        up_log(c, UPULSAR_LOG_WARNING, "service host %s:%d unreachable; trying %s:%d", host, port,
               c->svc_hosts[(k + 1) % c->nsvc], c->svc_ports[(k + 1) % c->nsvc]);
}
