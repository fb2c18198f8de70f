/* establish.c -- (re)create one real producer: lookup, connection,
 * PRODUCER, then attach it to its loop and resend what is pending.
 * @thread caller (producer start) or watchdog; never the loop */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "err.h"

typedef struct {
    up_rp_t *rp;
    up_conn_t *conn;
    int64_t last_seq;
    bool ok;
    uint8_t schema_version[sizeof ((up_rp_t *)0)->schema_version.v];
    uint8_t schema_version_len;
    char broker[280]; /* "host:port" it is created on, set when attached */
} attach_t;

static void register_task(void *a)
{
    attach_t *t = a;
    up_rp_register(t->rp, t->conn);
}

/* The PRODUCER request failed (or its answer came too late). On a live
 * connection the producer stays registered for receipts of what it wrote
 * there before (see up_rp_suspend()); else it lets go of the connection. */
static void unregister_task(void *a)
{
    attach_t *t = a;
    if (t->rp->conn != t->conn)
        return;
    if (atomic_load(&t->conn->state) == UP_CONN_OPEN)
        up_rp_suspend(t->rp, false);
    else
        up_rp_detach(t->rp, false);
}

/* The PRODUCER request timed out, or was answered with what this producer
 * cannot use: the broker may have created the producer, or may still
 * create it (a topic slow to load), and would then keep it, holding its
 * name and answering a repeated PRODUCER on this connection with the name
 * only (no last_sequence_id). As the official clients do, CLOSE_PRODUCER
 * for the producer id goes out before any retry (its answer is not waited
 * for; a creation still in progress is cancelled by it), then the request
 * is treated as failed. */
static void close_unused_task(void *a)
{
    attach_t *t = a;
    if (atomic_load(&t->conn->state) == UP_CONN_OPEN) {
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandCloseProducer cp = PULSAR__PROTO__COMMAND_CLOSE_PRODUCER__INIT;
        up_rp_close_cmd(t->rp, &cmd, &cp);
        up_conn_write_cmd(t->conn, &cmd);
        up_conn_flush(t->conn);
    }
    unregister_task(t);
}

static void attach_task(void *a)
{
    attach_t *t = a;
    t->ok = up_rp_attach(t->rp, t->conn, t->last_seq, t->schema_version,
                         t->schema_version_len, t->broker);
    if (!t->ok)
        unregister_task(t);
}

/* The Schema of a PRODUCER request, from the schema.* keys. */
typedef struct {
    Pulsar__Proto__Schema s;
    Pulsar__Proto__KeyValue kv[UP_MAX_PRODUCER_PROPS], *kvp[UP_MAX_PRODUCER_PROPS];
    char props[sizeof ((struct upulsar_conf *)0)->schema_properties];
    uint8_t *kvdata; /* KeyValue's schema_data (malloc'd) */
} schema_msg_t;

static void schema_prop(schema_msg_t *m, const char *k, const char *v)
{
    Pulsar__Proto__KeyValue init = PULSAR__PROTO__KEY_VALUE__INIT;
    size_t i = m->s.n_properties++;
    m->kv[i] = init;
    m->kv[i].key = (char *)k;
    m->kv[i].value = (char *)v;
    m->kvp[i] = &m->kv[i];
}

static const char *schema_type_upper(int type)
{
    switch (type) {
    case UP_SCHEMA_STRING: return "STRING";
    case UP_SCHEMA_JSON: return "JSON";
    case UP_SCHEMA_AVRO: return "AVRO";
    default: return "BYTES";
    }
}

/* A KeyValue schema's part: its definition's length, 4 bytes big-endian,
 * -1 (all ones) when it has none, then the definition. */
static uint8_t *put_kv_part(uint8_t *p, const char *def)
{
    size_t n = strlen(def);
    uint32_t len = n ? (uint32_t)n : UINT32_MAX;
    p[0] = (uint8_t)(len >> 24);
    p[1] = (uint8_t)(len >> 16);
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    memcpy(p + 4, def, n);
    return p + 4 + n;
}

/* Fill @p m from @p cf (checked by up_conf_schema_check()). Returns false
 * when there is no schema to send (bytes), as the official clients send
 * none for raw bytes. KeyValue is encoded as the official clients do:
 * schema_data = key part then value part (put_kv_part()); properties
 * naming each part's name, type and properties (a JSON object, "{}" for
 * none, as the Java client writes it) and the encoding, in the sorted key
 * order the C++ client sends them. */
static bool schema_build(const struct upulsar_conf *cf, schema_msg_t *m, upulsar_err_t *err)
{
    Pulsar__Proto__Schema init = PULSAR__PROTO__SCHEMA__INIT;
    m->s = init;
    m->kvdata = NULL;
    *err = UPULSAR_OK;
    if (cf->schema_type == UP_SCHEMA_BYTES)
        return false;
    m->s.type = (Pulsar__Proto__Schema__Type)cf->schema_type;
    m->s.name = (char *)(cf->schema_name[0] ? cf->schema_name
                                            : up_schema_default_name(cf->schema_type));
    m->s.properties = m->kvp;
    if (cf->schema_type == UP_SCHEMA_KEY_VALUE) {
        size_t kl = strlen(cf->schema_key_definition), vl = strlen(cf->schema_value_definition);
        m->kvdata = malloc(8 + kl + vl);
        if (!m->kvdata) {
            *err = up_seterr(UPULSAR_ERR__NOMEM, "out of memory");
            return false;
        }
        uint8_t *end = put_kv_part(m->kvdata, cf->schema_key_definition);
        end = put_kv_part(end, cf->schema_value_definition);
        m->s.schema_data.data = m->kvdata;
        m->s.schema_data.len = (size_t)(end - m->kvdata);
        schema_prop(m, "key.schema.name", up_schema_default_name(cf->schema_key_type));
        schema_prop(m, "key.schema.properties", "{}");
        schema_prop(m, "key.schema.type", schema_type_upper(cf->schema_key_type));
        schema_prop(m, "kv.encoding.type",
                    cf->schema_kv_encoding == UP_KV_SEPARATED ? "SEPARATED" : "INLINE");
        schema_prop(m, "value.schema.name", up_schema_default_name(cf->schema_value_type));
        schema_prop(m, "value.schema.properties", "{}");
        schema_prop(m, "value.schema.type", schema_type_upper(cf->schema_value_type));
        return true;
    }
    m->s.schema_data.data = (uint8_t *)cf->schema_definition;
    m->s.schema_data.len = strlen(cf->schema_definition);
    /* schema.properties, validated by upulsar_conf_set() */
    snprintf(m->props, sizeof m->props, "%s", cf->schema_properties);
    for (char *q = m->props, *save = NULL, *it;
         m->props[0] && (it = strtok_r(q, ",", &save)); q = NULL) {
        char *eq = strchr(it, '=');
        if (!eq || m->s.n_properties >= UP_MAX_PRODUCER_PROPS)
            continue;
        *eq = '\0';
        schema_prop(m, it, eq + 1);
    }
    return true;
}

/* A PRODUCER request for @p rp (its fields point into @p pm, which must
 * outlive its encoding; the caller frees pm->sm.kvdata). */
typedef struct {
    up_cmd_t cmd;
    Pulsar__Proto__CommandProducer pr;
    char props[sizeof ((struct upulsar_conf *)0)->producer_properties];
    Pulsar__Proto__KeyValue kv[UP_MAX_PRODUCER_PROPS], *kvp[UP_MAX_PRODUCER_PROPS];
    schema_msg_t sm;
} producer_msg_t;

static upulsar_err_t producer_msg(up_rp_t *rp, producer_msg_t *pm)
{
    struct upulsar_client *c = rp->client;
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandProducer pr = PULSAR__PROTO__COMMAND_PRODUCER__INIT;
    pm->cmd = cmd;
    pm->pr = pr;
    pm->cmd.type = UP_CMD(PRODUCER);
    pm->cmd.producer = &pm->pr;
    pm->pr.topic = rp->topic;
    pm->pr.producer_id = rp->producer_id;
    pm->pr.request_id = atomic_fetch_add(&c->next_request_id, 1);
    if (rp->name[0])
        pm->pr.producer_name = rp->name;
    /* always, as the official clients: the field defaults to true, and an
     * unnamed producer's name (none yet, or the one the broker gave) is
     * not the user's */
    pm->pr.has_user_provided_producer_name = 1;
    pm->pr.user_provided_producer_name = rp->user_named;
    pm->pr.has_epoch = 1;
    pm->pr.epoch = rp->est.epoch++;
    /* producer.properties, validated by upulsar_conf_set() */
    snprintf(pm->props, sizeof pm->props, "%s", rp->handle->conf.producer_properties);
    for (char *q = pm->props, *save = NULL, *it; pm->props[0] && (it = strtok_r(q, ",", &save));
         q = NULL) {
        char *eq = strchr(it, '=');
        if (!eq || pm->pr.n_metadata >= UP_MAX_PRODUCER_PROPS)
            continue;
        *eq = '\0';
        Pulsar__Proto__KeyValue init = PULSAR__PROTO__KEY_VALUE__INIT;
        size_t i = pm->pr.n_metadata++;
        pm->kv[i] = init;
        pm->kv[i].key = it;
        pm->kv[i].value = eq + 1;
        pm->kvp[i] = &pm->kv[i];
    }
    pm->pr.metadata = pm->kvp;
    pm->pr.has_producer_access_mode = 1;
    pm->pr.producer_access_mode = (Pulsar__Proto__ProducerAccessMode)rp->handle->conf.access_mode;
    if (rp->est.has_topic_epoch) {
        pm->pr.has_topic_epoch = 1;
        pm->pr.topic_epoch = rp->est.topic_epoch;
    }
    upulsar_err_t err;
    if (schema_build(&rp->handle->conf, &pm->sm, &err))
        pm->pr.schema = &pm->sm.s;
    return err;
}

/* The answer to @p rp's PRODUCER request on t->conn (@p err and @p resp
 * as up_conn_request() gives them, the error set; @p resp freed here):
 * attach it on its loop, or let go of the connection. @p host:@p port
 * (or @p proxy_to) is the broker it was created on. */
static upulsar_err_t producer_done(up_rp_t *rp, attach_t *t, upulsar_err_t err, up_cmd_t *resp,
                                   const char *host, int port, const char *proxy_to)
{
    if (err) {
        up_loop_call(rp->loop, err == UPULSAR_ERR__TIMED_OUT ? close_unused_task : unregister_task,
                     t);
        if (resp)
            pulsar__proto__base_command__free_unpacked(resp, NULL);
        return err;
    }
    if (resp->type != UP_CMD(PRODUCER_SUCCESS)) {
        up_loop_call(rp->loop, close_unused_task, t);
        pulsar__proto__base_command__free_unpacked(resp, NULL);
        return up_seterr(UPULSAR_ERR__PROTOCOL, "unexpected answer to PRODUCER");
    }
    Pulsar__Proto__CommandProducerSuccess *ps = resp->producer_success;
    up_rp_named_by_broker(rp, ps->producer_name);
    t->last_seq = ps->has_last_sequence_id ? ps->last_sequence_id : -1;
    /* an empty version (a producer without a schema) is none, as the
     * official clients take it */
    if (ps->has_schema_version && ps->schema_version.len > sizeof t->schema_version) {
        size_t len = ps->schema_version.len; /* ps goes with resp */
        up_loop_call(rp->loop, close_unused_task, t); /* the broker created it */
        pulsar__proto__base_command__free_unpacked(resp, NULL);
        return up_seterr(UPULSAR_ERR__PROTOCOL, "%s: schema version of %zu bytes (at most %zu)",
                         rp->topic, len, sizeof t->schema_version);
    }
    if (ps->has_schema_version && ps->schema_version.len) {
        memcpy(t->schema_version, ps->schema_version.data, ps->schema_version.len);
        t->schema_version_len = (uint8_t)ps->schema_version.len;
    }
    if (ps->has_topic_epoch) {
        rp->est.has_topic_epoch = true;
        rp->est.topic_epoch = ps->topic_epoch;
    }
    pulsar__proto__base_command__free_unpacked(resp, NULL);
    if (proxy_to[0])
        snprintf(t->broker, sizeof t->broker, "%s", proxy_to);
    else
        snprintf(t->broker, sizeof t->broker, "%s:%d", host, port);
    up_loop_call(rp->loop, attach_task, t);
    if (!t->ok)
        return up_seterr(UPULSAR_ERR__CONNECT, "%s: connection lost or producer closed while "
                         "creating it", rp->topic);
    return UPULSAR_OK;
}

upulsar_err_t up_rp_establish(up_rp_t *rp, int timeout_ms)
{
    struct upulsar_client *c = rp->client;
    upulsar_err_t err = up_conf_schema_check(&rp->handle->conf);
    if (err)
        return err;
    char host[256], assigned[sizeof rp->assigned], cluster[sizeof rp->cluster];
    int port;
    up_rp_take_route(rp, assigned, sizeof assigned, cluster, sizeof cluster);
    bool tls = c->tls, proxy_tls = false;
    char proxy_to[280] = "";
    err = UPULSAR_ERR__LOOKUP;
    if (assigned[0])
        err = up_parse_url(assigned, host, sizeof host, &port, &tls);
    if (!err && rp->est.via_proxy) {
        /* behind a proxy the assigned broker is reached through it, over
         * the proxy's own link to it (the URL of the link's scheme, as the
         * connection picked it from the CLOSE_PRODUCER) */
        snprintf(proxy_to, sizeof proxy_to, "%s:%d", host, port);
        proxy_tls = tls;
        up_service_addr(c, host, sizeof host, &port);
    }
    if (err || (tls != c->tls && !rp->est.via_proxy))
        err = up_lookup(c, rp->loop, rp->topic, cluster, host, sizeof host, &port, proxy_to,
                        sizeof proxy_to, &proxy_tls);
    if (err)
        return err;
    rp->est.via_proxy = proxy_to[0] != '\0';
    up_conn_t *conn;
    err = up_conn_get(c, rp->loop, host, port, rp->conn_slot, proxy_to, proxy_tls, &conn);
    if (err)
        return err;

    producer_msg_t pm;
    err = producer_msg(rp, &pm);
    if (err) {
        free(pm.sm.kvdata);
        up_conn_unref(conn);
        return err;
    }
    attach_t t = {.rp = rp, .conn = conn, .last_seq = -1};
    up_cmd_t *resp;
    err = up_conn_request(conn, &pm.cmd, pm.pr.request_id, timeout_ms, &resp, register_task, &t);
    free(pm.sm.kvdata);
    err = producer_done(rp, &t, err, resp, host, port, proxy_to);
    up_conn_unref(conn);
    return err;
}

void up_establish_many(up_rp_t **rps, int n, int timeout_ms, upulsar_err_t *errs,
                       char (*whys)[512])
{
    if (n <= 0)
        return;
    struct upulsar_client *c = rps[0]->client;
    up_lookup_item_t *it = calloc((size_t)n, sizeof *it);
    int *idx = calloc((size_t)n, sizeof *idx);
    up_mreq_t *m = calloc((size_t)n, sizeof *m);
    attach_t *t = calloc((size_t)n, sizeof *t);
    int *mi = calloc((size_t)n, sizeof *mi);
    producer_msg_t *pm = malloc(sizeof *pm);
    bool oom = !it || !idx || !m || !t || !mi || !pm;
    upulsar_err_t err = UPULSAR_ERR__NOMEM;
    if (oom)
        up_seterr(err, "out of memory");
    else
        err = up_conf_schema_check(&rps[0]->handle->conf);
    for (int i = 0; i < n; i++) {
        errs[i] = err;
        if (err)
            snprintf(whys[i], sizeof whys[i], "%s", upulsar_last_error());
    }
    if (oom || err)
        goto out;
    /* where to look each up: a producer a broker sent elsewhere, or whose
     * topic migrated, the one way (one at a time: rare); all others from
     * the service URL, together */
    int nl = 0;
    for (int i = 0; i < n; i++) {
        up_rp_t *rp = rps[i];
        pthread_mutex_lock(&rp->broker_lock);
        bool own = rp->assigned[0] || rp->cluster[0];
        pthread_mutex_unlock(&rp->broker_lock);
        if (own) {
            if ((errs[i] = up_rp_establish(rp, timeout_ms)))
                snprintf(whys[i], sizeof whys[i], "%s", upulsar_last_error());
            continue;
        }
        it[nl].topic = rp->topic;
        it[nl].loop = rp->loop;
        idx[nl++] = i;
    }
    up_lookup_many(c, it, (size_t)nl, c->conf.operation_timeout_ms);
    int nm = 0;
    for (int j = 0; j < nl; j++) {
        int i = idx[j];
        up_rp_t *rp = rps[i];
        if (it[j].err) {
            errs[i] = it[j].err;
            snprintf(whys[i], sizeof whys[i], "%s", it[j].why);
            continue;
        }
        rp->est.via_proxy = it[j].proxy_to[0] != '\0';
        up_conn_t *conn;
        err = up_conn_get(c, rp->loop, it[j].host, it[j].port, rp->conn_slot, it[j].proxy_to,
                          it[j].proxy_tls, &conn);
        if (!err) {
            err = producer_msg(rp, pm);
            if (!err)
                err = up_mreq_encode(&m[nm], conn, &pm->cmd, pm->pr.request_id);
            free(pm->sm.kvdata);
            if (err)
                up_conn_unref(conn);
        }
        if (err) {
            errs[i] = err;
            snprintf(whys[i], sizeof whys[i], "%s", upulsar_last_error());
            continue;
        }
        t[nm] = (attach_t){.rp = rp, .conn = conn, .last_seq = -1};
        m[nm].pre = register_task;
        m[nm].pre_arg = &t[nm];
        mi[nm++] = j;
    }
    /* every PRODUCER at once, pipelined on the shared connections */
    up_conn_request_all(m, (size_t)nm, timeout_ms);
    for (int k = 0; k < nm; k++) {
        int j = mi[k], i = idx[j];
        if (m[k].err)
            up_seterr(m[k].err, "%s", m[k].why);
        errs[i] = producer_done(rps[i], &t[k], m[k].err, m[k].resp, it[j].host, it[j].port,
                                it[j].proxy_to);
        if (errs[i])
            snprintf(whys[i], sizeof whys[i], "%s", upulsar_last_error());
        up_conn_unref(t[k].conn);
    }
out:
    free(it);
    free(idx);
    free(m);
    free(t);
    free(mi);
    free(pm);
}
