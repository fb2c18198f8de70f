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
    const char *broker; /* host:port it is attached at, for rp->broker */
    bool ok;
    uint8_t schema_version[sizeof ((up_rp_t *)0)->schema_version.v];
    uint8_t schema_version_len;
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
    /* set on the loop, which writes it into every entry it frames */
    memcpy(t->rp->schema_version.v, t->schema_version, t->schema_version_len);
    t->rp->schema_version.len = t->schema_version_len;
    t->ok = up_rp_attach(t->rp, t->conn, t->last_seq);
    if (!t->ok) {
        unregister_task(t);
        return;
    }
    /* before the resent batches can be acknowledged: whoever sees one of
     * their futures resolved sees where the producer is now */
    pthread_mutex_lock(&t->rp->broker_lock);
    snprintf(t->rp->broker, sizeof t->rp->broker, "%s", t->broker);
    pthread_mutex_unlock(&t->rp->broker_lock);
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

upulsar_err_t up_rp_establish(up_rp_t *rp, int timeout_ms)
{
    struct upulsar_client *c = rp->client;
    upulsar_err_t err = up_conf_schema_check(&rp->handle->conf);
    if (err)
        return err;
    char host[256], assigned[sizeof rp->assigned], cluster[sizeof rp->cluster];
    int port;
    pthread_mutex_lock(&rp->broker_lock);
    snprintf(assigned, sizeof assigned, "%s", rp->assigned);
    snprintf(cluster, sizeof cluster, "%s", rp->cluster);
    rp->assigned[0] = '\0'; /* one try: if it fails, look up */
    pthread_mutex_unlock(&rp->broker_lock);
    bool tls = c->tls;
    char proxy_to[280] = "";
    err = UPULSAR_ERR__LOOKUP;
    if (assigned[0])
        err = up_parse_url(assigned, host, sizeof host, &port, &tls);
    if (!err && rp->via_proxy) {
        /* behind a proxy the assigned broker is reached through it, over
         * the proxy's own link to it (whatever its scheme) */
        snprintf(proxy_to, sizeof proxy_to, "%s:%d", host, port);
        up_service_addr(c, host, sizeof host, &port);
    }
    if (err || (tls != c->tls && !rp->via_proxy))
        err = up_lookup(c, rp->loop, rp->topic, cluster, host, sizeof host, &port, proxy_to,
                        sizeof proxy_to);
    if (err)
        return err;
    rp->via_proxy = proxy_to[0] != '\0';
    up_conn_t *conn;
    err = up_conn_get(c, rp->loop, host, port, rp->conn_slot, proxy_to, &conn);
    if (err)
        return err;

    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandProducer pr = PULSAR__PROTO__COMMAND_PRODUCER__INIT;
    cmd.type = UP_CMD(PRODUCER);
    cmd.producer = &pr;
    pr.topic = rp->topic;
    pr.producer_id = rp->producer_id;
    pr.request_id = atomic_fetch_add(&c->next_request_id, 1);
    if (rp->name[0])
        pr.producer_name = rp->name;
    /* always, as the official clients: the field defaults to true, and an
     * unnamed producer's name (none yet, or the one the broker gave) is
     * not the user's */
    pr.has_user_provided_producer_name = 1;
    pr.user_provided_producer_name = rp->user_named;
    pr.has_epoch = 1;
    pr.epoch = rp->epoch++;
    /* producer.properties, validated by upulsar_conf_set() */
    char props[sizeof rp->handle->conf.producer_properties];
    Pulsar__Proto__KeyValue kv[UP_MAX_PRODUCER_PROPS], *kvp[UP_MAX_PRODUCER_PROPS];
    snprintf(props, sizeof props, "%s", rp->handle->conf.producer_properties);
    for (char *q = props, *save = NULL, *it; props[0] && (it = strtok_r(q, ",", &save)); q = NULL) {
        char *eq = strchr(it, '=');
        if (!eq || pr.n_metadata >= UP_MAX_PRODUCER_PROPS)
            continue;
        *eq = '\0';
        Pulsar__Proto__KeyValue init = PULSAR__PROTO__KEY_VALUE__INIT;
        kv[pr.n_metadata] = init;
        kv[pr.n_metadata].key = it;
        kv[pr.n_metadata].value = eq + 1;
        kvp[pr.n_metadata] = &kv[pr.n_metadata];
        pr.n_metadata++;
    }
    pr.metadata = kvp;
    pr.has_producer_access_mode = 1;
    pr.producer_access_mode = (Pulsar__Proto__ProducerAccessMode)rp->handle->conf.access_mode;
    if (rp->has_topic_epoch) {
        pr.has_topic_epoch = 1;
        pr.topic_epoch = rp->topic_epoch;
    }
    schema_msg_t sm;
    if (schema_build(&rp->handle->conf, &sm, &err))
        pr.schema = &sm.s;
    if (err) {
        up_conn_unref(conn);
        return err;
    }

    char at[sizeof rp->broker];
    if (proxy_to[0])
        snprintf(at, sizeof at, "%s", proxy_to);
    else
        snprintf(at, sizeof at, "%s:%d", host, port);
    attach_t t = {.rp = rp, .conn = conn, .last_seq = -1, .broker = at};
    up_cmd_t *resp;
    err = up_conn_request(conn, &cmd, pr.request_id, timeout_ms, &resp, register_task, &t);
    free(sm.kvdata);
    if (err) {
        up_loop_call(rp->loop, err == UPULSAR_ERR__TIMED_OUT ? close_unused_task : unregister_task,
                     &t);
        if (resp)
            pulsar__proto__base_command__free_unpacked(resp, NULL);
        up_conn_unref(conn);
        return err;
    }
    if (resp->type != UP_CMD(PRODUCER_SUCCESS)) {
        up_loop_call(rp->loop, close_unused_task, &t);
        pulsar__proto__base_command__free_unpacked(resp, NULL);
        up_conn_unref(conn);
        return up_seterr(UPULSAR_ERR__PROTOCOL, "unexpected answer to PRODUCER");
    }
    Pulsar__Proto__CommandProducerSuccess *ps = resp->producer_success;
    if (!rp->user_named && ps->producer_name && !rp->name[0])
        snprintf(rp->name, sizeof rp->name, "%s", ps->producer_name);
    t.last_seq = ps->has_last_sequence_id ? ps->last_sequence_id : -1;
    /* an empty version (a producer without a schema) is none, as the
     * official clients take it */
    if (ps->has_schema_version && ps->schema_version.len > sizeof t.schema_version) {
        up_loop_call(rp->loop, close_unused_task, &t); /* the broker created it */
        pulsar__proto__base_command__free_unpacked(resp, NULL);
        up_conn_unref(conn);
        return up_seterr(UPULSAR_ERR__PROTOCOL, "%s: schema version of %zu bytes (at most %zu)",
                         rp->topic, ps->schema_version.len, sizeof t.schema_version);
    }
    if (ps->has_schema_version && ps->schema_version.len) {
        memcpy(t.schema_version, ps->schema_version.data, ps->schema_version.len);
        t.schema_version_len = (uint8_t)ps->schema_version.len;
    }
    if (ps->has_topic_epoch) {
        rp->has_topic_epoch = true;
        rp->topic_epoch = ps->topic_epoch;
    }
    pulsar__proto__base_command__free_unpacked(resp, NULL);
    up_loop_call(rp->loop, attach_task, &t);
    up_conn_unref(conn);
    if (!t.ok)
        return up_seterr(UPULSAR_ERR__CONNECT, "%s: connection lost or producer closed while "
                         "creating it", rp->topic);
    return UPULSAR_OK;
}
