/* establish.c -- (re)create one real producer: lookup, connection,
 * PRODUCER, then attach it to its loop and resend what is pending.
 * @thread caller (producer start) or watchdog; never the loop */
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "err.h"

typedef struct {
    up_rp_t *rp;
    up_conn_t *conn;
    int64_t last_seq;
    bool ok;
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

/* The PRODUCER request timed out: the broker may still create the
 * producer (a topic slow to load) and would then keep it, holding its name
 * and answering a repeated PRODUCER on this connection with the name only
 * (no last_sequence_id). As the official clients do, CLOSE_PRODUCER for
 * the producer id goes out before any retry (its answer is not waited
 * for; a creation still in progress is cancelled by it), then the request
 * is treated as failed. */
static void timed_out_task(void *a)
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
    t->ok = up_rp_attach(t->rp, t->conn, t->last_seq);
    if (!t->ok)
        unregister_task(t);
}

upulsar_err_t up_rp_establish(up_rp_t *rp, int timeout_ms)
{
    struct upulsar_client *c = rp->client;
    char host[256], assigned[sizeof rp->assigned], cluster[sizeof rp->cluster];
    int port;
    pthread_mutex_lock(&rp->broker_lock);
    snprintf(assigned, sizeof assigned, "%s", rp->assigned);
    snprintf(cluster, sizeof cluster, "%s", rp->cluster);
    rp->assigned[0] = '\0'; /* one try: if it fails, look up */
    pthread_mutex_unlock(&rp->broker_lock);
    bool tls = c->tls;
    char proxy_to[280] = "";
    upulsar_err_t err = UPULSAR_ERR__LOOKUP;
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
    if (rp->name[0]) {
        pr.producer_name = rp->name;
        pr.has_user_provided_producer_name = 1;
        pr.user_provided_producer_name = rp->user_named;
    }
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

    attach_t t = {rp, conn, -1, false};
    up_cmd_t *resp;
    err = up_conn_request(conn, &cmd, pr.request_id, timeout_ms, &resp, register_task, &t);
    if (err) {
        up_loop_call(rp->loop, err == UPULSAR_ERR__TIMED_OUT ? timed_out_task : unregister_task,
                     &t);
        if (resp)
            pulsar__proto__base_command__free_unpacked(resp, NULL);
        up_conn_unref(conn);
        return err;
    }
    if (resp->type != UP_CMD(PRODUCER_SUCCESS)) {
        up_loop_call(rp->loop, unregister_task, &t);
        pulsar__proto__base_command__free_unpacked(resp, NULL);
        up_conn_unref(conn);
        return up_seterr(UPULSAR_ERR__PROTOCOL, "unexpected answer to PRODUCER");
    }
    Pulsar__Proto__CommandProducerSuccess *ps = resp->producer_success;
    if (!rp->user_named && ps->producer_name && !rp->name[0])
        snprintf(rp->name, sizeof rp->name, "%s", ps->producer_name);
    t.last_seq = ps->has_last_sequence_id ? ps->last_sequence_id : -1;
    if (ps->has_topic_epoch) {
        rp->has_topic_epoch = true;
        rp->topic_epoch = ps->topic_epoch;
    }
    pulsar__proto__base_command__free_unpacked(resp, NULL);
    up_loop_call(rp->loop, attach_task, &t);
    up_conn_unref(conn);
    if (t.ok) {
        rp->created = true;
        pthread_mutex_lock(&rp->broker_lock);
        if (proxy_to[0])
            snprintf(rp->broker, sizeof rp->broker, "%s", proxy_to);
        else
            snprintf(rp->broker, sizeof rp->broker, "%s:%d", host, port);
        pthread_mutex_unlock(&rp->broker_lock);
    }
    if (!t.ok)
        return up_seterr(UPULSAR_ERR__CONNECT, "%s: connection lost or producer closed while "
                         "creating it", rp->topic);
    return UPULSAR_OK;
}
