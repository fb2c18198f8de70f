/*
 * upulsar_produce.c -- produce numbered messages with upulsar and print one
 * JSON line per message once its receipt arrived (the format of
 * flex_produce.js, so compare.js can check what pulsar-flex received).
 *
 *   upulsar_produce --url pulsar://127.0.0.1:6650 --topic T --count N
 *                   [--prefix P] [--key 'k-%d'] [--prop 'idx=%d']...
 *                   [--conf key=value]... [--timeout-ms MS]
 *
 * Message i: payload P + i, key = the --key template with %d -> i, each
 * --prop value likewise. The producer runs with compression none and one
 * real producer per partition (so the order of all messages holds), batching
 * at its defaults; --conf overrides any producer/client key.
 *
 * stdout: {"event":"created","producerName":...} (when there is exactly one
 * real producer), then per message
 *   {"event":"sent","index":i,"payload":...,"payloadBase64":...,"key":...,
 *    "properties":{...},"msgId":{"ledgerId":L,"entryId":E,"partition":P,
 *    "batchIndex":B},"batch":{"pos":B,"size":S}|null}
 * then {"event":"done","sent":N}. Exit 0 only if every message was
 * acknowledged; 1 on failure, 3 on timeout, 64 on bad usage.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upulsar/upulsar.h"

#define MAX_PROPS 16

static void usage(void)
{
    fprintf(stderr,
            "usage: upulsar_produce --url pulsar://HOST:PORT --topic TOPIC [options]\n"
            "  --count N         messages (default 10)\n"
            "  --prefix S        payload of message i is S + i (default \"msg-\")\n"
            "  --key T           message key, %%d replaced by i\n"
            "  --prop K=V        property, repeatable, %%d in V replaced by i\n"
            "  --conf K=V        upulsar configuration key, repeatable\n"
            "  --timeout-ms MS   bound on waiting for receipts (default 30000)\n");
}

static void fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("upulsar_produce: FAIL: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stdout);
    exit(code);
}

/* Replace every "%d" in tmpl by i. Caller frees. */
static char *fill(const char *tmpl, int i)
{
    char num[16];
    int nl = snprintf(num, sizeof num, "%d", i);
    size_t n = 0;
    for (const char *p = tmpl; *p; p++)
        n += (p[0] == '%' && p[1] == 'd') ? (p++, (size_t)nl) : 1;
    char *out = malloc(n + 1);
    if (!out)
        fail(1, "out of memory");
    char *o = out;
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '%' && p[1] == 'd') {
            memcpy(o, num, (size_t)nl);
            o += nl;
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

/* JSON string (UTF-8 passed through, control characters escaped). */
static void json_str(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void base64(FILE *f, const unsigned char *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', f);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        fputc(tab[(v >> 18) & 63], f);
        fputc(tab[(v >> 12) & 63], f);
        fputc(i + 1 < n ? tab[(v >> 6) & 63] : '=', f);
        fputc(i + 2 < n ? tab[v & 63] : '=', f);
    }
    fputc('"', f);
}

static void conf_set(upulsar_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (upulsar_conf_set(conf, k, v, err, sizeof err) != UPULSAR_CONF_OK)
        fail(64, "configuration %s=%s: %s", k, v, err);
}

typedef struct msg {
    char *payload;
    char *key;
    upulsar_property_t props[MAX_PROPS];
    upulsar_future_t *future;
} msg_t;

int main(int argc, char **argv)
{
    const char *url = NULL, *topic = NULL, *prefix = "msg-", *key = NULL;
    const char *prop_k[MAX_PROPS], *prop_v[MAX_PROPS], *conf_kv[64];
    size_t nprops = 0, nconf = 0;
    long count = 10, timeout_ms = 30000;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        }
        if (i + 1 >= argc) {
            usage();
            fail(64, "option %s needs a value", a);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--url"))
            url = v;
        else if (!strcmp(a, "--topic"))
            topic = v;
        else if (!strcmp(a, "--prefix"))
            prefix = v;
        else if (!strcmp(a, "--key"))
            key = v;
        else if (!strcmp(a, "--count"))
            count = strtol(v, NULL, 10);
        else if (!strcmp(a, "--timeout-ms"))
            timeout_ms = strtol(v, NULL, 10);
        else if (!strcmp(a, "--prop") || !strcmp(a, "--conf")) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v)
                fail(64, "bad %s '%s' (want key=value)", a, v);
            if (!strcmp(a, "--prop")) {
                if (nprops == MAX_PROPS)
                    fail(64, "too many --prop");
                prop_k[nprops] = strndup(v, (size_t)(eq - v));
                prop_v[nprops++] = eq + 1;
            } else {
                if (nconf == sizeof conf_kv / sizeof conf_kv[0])
                    fail(64, "too many --conf");
                conf_kv[nconf++] = v;
            }
        } else {
            usage();
            fail(64, "unknown option %s", a);
        }
    }
    if (!url || !topic || count < 0 || timeout_ms <= 0) {
        usage();
        fail(64, "--url and --topic are required");
    }

    upulsar_conf_t *conf = upulsar_conf_new();
    if (!conf)
        fail(1, "out of memory");
    conf_set(conf, "service.url", url);
    conf_set(conf, "compression", "none");
    conf_set(conf, "producers.per.partition", "1");
    for (size_t i = 0; i < nconf; i++) {
        char *k = strndup(conf_kv[i], (size_t)(strchr(conf_kv[i], '=') - conf_kv[i]));
        conf_set(conf, k, strchr(conf_kv[i], '=') + 1);
        free(k);
    }

    upulsar_client_t *client;
    if (upulsar_client_new(conf, &client) != UPULSAR_OK)
        fail(1, "client: %s", upulsar_last_error());
    upulsar_producer_t *p;
    upulsar_err_t err = upulsar_producer_start(client, NULL, topic, 0, conf, &p);
    if (err != UPULSAR_OK)
        fail(1, "producer start: %s: %s", upulsar_err_name(err), upulsar_last_error());
    if (upulsar_producer_partitions(p) > 1)
        fail(1, "topic %s is partitioned (%d); pulsar-flex cannot consume it", topic,
             upulsar_producer_partitions(p));
    upulsar_producer_info_t info[2];
    size_t ninfo = 0;
    if (upulsar_producer_list(p, info, 2, &ninfo) == UPULSAR_OK && ninfo == 1) {
        fputs("{\"event\":\"created\",\"producerName\":", stdout);
        json_str(stdout, info[0].name);
        fputs("}\n", stdout);
    }

    msg_t *m = calloc((size_t)count + 1, sizeof *m);
    if (!m)
        fail(1, "out of memory");
    for (long i = 0; i < count; i++) {
        char num[24];
        snprintf(num, sizeof num, "%ld", i);
        m[i].payload = malloc(strlen(prefix) + strlen(num) + 1);
        if (!m[i].payload)
            fail(1, "out of memory");
        strcpy(m[i].payload, prefix);
        strcat(m[i].payload, num);
        m[i].key = key ? fill(key, (int)i) : NULL;
        for (size_t k = 0; k < nprops; k++) {
            m[i].props[k].key = prop_k[k];
            m[i].props[k].value = fill(prop_v[k], (int)i);
        }
        upulsar_send_opts_t o = {.partition_key = m[i].key,
                                 .properties = nprops ? m[i].props : NULL,
                                 .properties_cnt = nprops};
        err = upulsar_send(p, m[i].payload, strlen(m[i].payload), &o, &m[i].future);
        if (err != UPULSAR_OK)
            fail(1, "send %ld: %s: %s", i, upulsar_err_name(err), upulsar_last_error());
    }

    for (long i = 0; i < count; i++) {
        upulsar_msg_id_t id;
        err = upulsar_future_wait(m[i].future, (int)timeout_ms, &id);
        if (err == UPULSAR_ERR__PENDING)
            fail(3, "timed out after %ld ms waiting for the receipt of message %ld", timeout_ms,
                 i);
        if (err != UPULSAR_OK)
            fail(1, "message %ld: %s: %s", i, upulsar_err_name(err), upulsar_err_str(err));
        upulsar_future_release(m[i].future);
        printf("{\"event\":\"sent\",\"index\":%ld,\"payload\":", i);
        json_str(stdout, m[i].payload);
        fputs(",\"payloadBase64\":", stdout);
        base64(stdout, (const unsigned char *)m[i].payload, strlen(m[i].payload));
        fputs(",\"key\":", stdout);
        json_str(stdout, m[i].key);
        fputs(",\"properties\":{", stdout);
        for (size_t k = 0; k < nprops; k++) {
            if (k)
                fputc(',', stdout);
            json_str(stdout, m[i].props[k].key);
            fputc(':', stdout);
            json_str(stdout, m[i].props[k].value);
        }
        printf("},\"msgId\":{\"ledgerId\":%llu,\"entryId\":%llu,\"partition\":%d,"
               "\"batchIndex\":%d},",
               (unsigned long long)id.ledger_id, (unsigned long long)id.entry_id,
               (int)id.partition, (int)id.batch_index);
        if (id.batch_size > 0)
            printf("\"batch\":{\"pos\":%d,\"size\":%d}}\n", (int)id.batch_index,
                   (int)id.batch_size);
        else
            fputs("\"batch\":null}\n", stdout);
    }
    err = upulsar_producer_stop(p, (int)timeout_ms);
    if (err != UPULSAR_OK)
        fail(1, "stop: %s", upulsar_err_name(err));
    upulsar_client_destroy(client);
    upulsar_conf_destroy(conf);
    for (long i = 0; i < count; i++) {
        free(m[i].payload);
        free(m[i].key);
        for (size_t k = 0; k < nprops; k++)
            free((char *)m[i].props[k].value);
    }
    free(m);
    for (size_t k = 0; k < nprops; k++)
        free((char *)prop_k[k]);
    printf("{\"event\":\"done\",\"sent\":%ld}\n", count);
    fflush(stdout);
    return 0;
}
