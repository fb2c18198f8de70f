/* test_broker_lookup.c -- discovery: PARTITIONED_METADATA counts, topic
 * name normalisation, LOOKUP answered with Connect to self or Redirect to
 * another broker instance. */
#include <string.h>

#include "broker_common.h"

static const Pulsar__Proto__CommandPartitionedTopicMetadataResponse *
ask_partitions(upulsar_tb_client_t *c, const char *topic, upulsar_tb_frame_t *f)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandPartitionedTopicMetadata pm =
        PULSAR__PROTO__COMMAND_PARTITIONED_TOPIC_METADATA__INIT;
    cmd.type = UP_CMD(PARTITIONED_METADATA);
    cmd.partitionmetadata = &pm;
    pm.topic = (char *)topic;
    pm.request_id = upulsar_tb_client_next_request_id(c);
    cr_assert_eq(upulsar_tb_client_send_cmd(c, &cmd), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(PARTITIONED_METADATA_RESPONSE), WAIT_MS, f),
                 UPULSAR_OK);
    const Pulsar__Proto__CommandPartitionedTopicMetadataResponse *r =
        f->cmd->partitionmetadataresponse;
    cr_assert_eq(r->request_id, pm.request_id);
    cr_assert(r->has_response, "response must always be set");
    return r;
}

/* LOOKUP as clients send it here: with an (empty) advertised listener
 * name. */
static bc_lookup_resp_t *lookup(upulsar_tb_client_t *c, const char *topic, int authoritative,
                                upulsar_tb_frame_t *f)
{
    return bc_lookup_ex(c, topic, authoritative, "", f);
}

Test(broker_lookup, partitioned_metadata_reports_configured_counts)
{
    upulsar_tb_t *tb = bc_broker();
    cr_assert_eq(upulsar_tb_set_partitions(tb, "orders", 4), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_set_partitions(tb, "persistent://acme/prod/events", 16), UPULSAR_OK);
    upulsar_tb_client_t *c = bc_connect(tb);
    const struct {
        const char *topic;
        unsigned parts;
    } cases[] = {
        {"orders", 4},
        {"persistent://public/default/orders", 4},
        {"public/default/orders", 4},
        {"acme/prod/events", 16},
        {"persistent://acme/prod/events", 16},
        {"never-configured", 0},
        {"orders-partition-2", 0}, /* a partition is not itself partitioned */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        upulsar_tb_frame_t f;
        const Pulsar__Proto__CommandPartitionedTopicMetadataResponse *r =
            ask_partitions(c, cases[i].topic, &f);
        cr_assert_eq(r->response,
                     PULSAR__PROTO__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__LOOKUP_TYPE__Success,
                     "%s", cases[i].topic);
        cr_assert(r->has_partitions);
        cr_assert_eq(r->partitions, cases[i].parts, "%s", cases[i].topic);
    }
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_lookup, invalid_topic_names_fail_metadata_and_lookup)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_connect(tb);
    const char *bad[] = {"", "a/b", "http://public/default/t", "persistent://public//t",
                         "persistent://public/default/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        upulsar_tb_frame_t f;
        const Pulsar__Proto__CommandPartitionedTopicMetadataResponse *r =
            ask_partitions(c, bad[i], &f);
        cr_assert_eq(r->response,
                     PULSAR__PROTO__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__LOOKUP_TYPE__Failed,
                     "\"%s\"", bad[i]);
        cr_assert_eq(r->error, UP_SERR(InvalidTopicName));
        const Pulsar__Proto__CommandLookupTopicResponse *l = lookup(c, bad[i], 0, &f);
        cr_assert_eq(l->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed);
        cr_assert_eq(l->error, UP_SERR(InvalidTopicName));
    }
    cr_assert_eq(upulsar_tb_set_partitions(tb, "a/b", 3), UPULSAR_ERR__INVALID_TOPIC);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_lookup, lookup_connects_to_self_authoritatively)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c = bc_connect(tb);
    upulsar_tb_frame_t f;
    const Pulsar__Proto__CommandLookupTopicResponse *r = lookup(c, "t", 0, &f);
    cr_assert_eq(r->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect);
    cr_assert_str_eq(r->brokerserviceurl, upulsar_tb_url(tb));
    cr_assert(r->has_authoritative && r->authoritative);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
}

Test(broker_lookup, lookup_redirects_to_the_owning_instance)
{
    upulsar_tb_t *a = bc_broker(), *b = bc_broker();
    cr_assert_eq(upulsar_tb_set_owner(a, "moved", upulsar_tb_url(b)), UPULSAR_OK);
    upulsar_tb_client_t *ca = bc_connect(a);
    upulsar_tb_frame_t f;
    const Pulsar__Proto__CommandLookupTopicResponse *r =
        lookup(ca, "persistent://public/default/moved", 0, &f);
    cr_assert_eq(r->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Redirect);
    cr_assert_str_eq(r->brokerserviceurl, upulsar_tb_url(b));
    cr_assert(r->has_authoritative && r->authoritative);
    /* partitions of the moved topic follow it */
    r = lookup(ca, "moved-partition-3", 0, &f);
    cr_assert_eq(r->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Redirect);
    cr_assert_str_eq(r->brokerserviceurl, upulsar_tb_url(b));
    /* other topics stay on a */
    r = lookup(ca, "stays", 0, &f);
    cr_assert_eq(r->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect);
    cr_assert_str_eq(r->brokerserviceurl, upulsar_tb_url(a));

    /* following the redirect: b owns it and says Connect */
    upulsar_tb_client_t *cb = bc_connect(b);
    r = lookup(cb, "moved", 1, &f);
    cr_assert_eq(r->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect);
    cr_assert_str_eq(r->brokerserviceurl, upulsar_tb_url(b));

    /* a refuses producers for the topic it does not own */
    bc_create_producer_gets(ca, "moved", 1, NULL, UPULSAR_ERR_SERVICE_NOT_READY);
    bc_create_producer(cb, "moved", 1, NULL);

    /* ownership can be taken back */
    cr_assert_eq(upulsar_tb_set_owner(a, "moved", NULL), UPULSAR_OK);
    r = lookup(ca, "moved", 0, &f);
    cr_assert_eq(r->response, PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect);
    cr_assert_str_eq(r->brokerserviceurl, upulsar_tb_url(a));

    cr_assert_eq(upulsar_tb_set_owner(a, "x", "http://nope"), UPULSAR_ERR__INVALID_URL);
    upulsar_tb_client_close(ca);
    upulsar_tb_client_close(cb);
    upulsar_tb_stop(a);
    upulsar_tb_stop(b);
}
