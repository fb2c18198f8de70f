/*
 * service_check.h -- the oracle of `service --check` (service.c).
 *
 * After the service shut down, every event it generated (worker w, number
 * seq) must be found exactly once: on the main topic (the test broker's
 * log of each partition), or on the dead-letter topic or in the dead-letter
 * file after MAX_ATTEMPTS attempts; each with its own key. The counts the
 * service kept must agree with what is there, retries and both kinds of
 * dead letter must have happened, and a scrape of its endpoint must show
 * the final figures.
 * Included by service.c after its types and helpers.
 */
#ifndef SERVICE_CHECK_H
#define SERVICE_CHECK_H

#define NOT_ALLOWED 22 /* Pulsar's ServerError NotAllowedError: one entry refused */

/* Break the broker on purpose: the first 3 sends to partitions 0-2 are
 * refused (retried, then stored); the last partition refuses every send
 * until check_heal() (its events are dead-lettered meanwhile); the
 * dead-letter topic refuses its first send (that dead letter goes to the
 * file, the next ones to the topic). */
static void check_break(upulsar_tb_t *tb)
{
    for (int p = 0; p < PARTITIONS; p++) {
        char topic[64];
        snprintf(topic, sizeof topic, "%s-partition-%d", TOPIC, p);
        upulsar_tb_fail_sends(tb, topic, p < PARTITIONS - 1 ? 3 : 1 << 30, NOT_ALLOWED);
    }
    upulsar_tb_fail_sends(tb, DLQ_TOPIC, 1, NOT_ALLOWED);
}

/* The last partition takes sends again. 1 when done. */
static int check_heal(upulsar_tb_t *tb)
{
    char topic[64];
    snprintf(topic, sizeof topic, "%s-partition-%d", TOPIC, PARTITIONS - 1);
    return upulsar_tb_fail_sends(tb, topic, 0, NOT_ALLOWED) == UPULSAR_OK;
}

/* --check: count the event @p payload is (by worker and seq) in @p seen,
 * if @p key is still its key. */
static void seen_event(int *seen, int per_worker, int total, const void *payload, size_t len,
                       const char *key)
{
    char text[PAYLOAD_MAX + 1], want[32];
    int w, seq, customer;
    len = len < PAYLOAD_MAX ? len : PAYLOAD_MAX;
    memcpy(text, payload, len);
    text[len] = '\0';
    if (sscanf(text, "{\"worker\":%d,\"seq\":%d,\"customer\":%d", &w, &seq, &customer) != 3 ||
        w < 0 || seq < 0 || seq >= per_worker || w * per_worker + seq >= total)
        return;
    snprintf(want, sizeof want, "customer-%d", customer);
    if (key && !strcmp(key, want))
        seen[w * per_worker + seq]++;
}

/* --check: the messages on @p topic, each counted in @p seen; with
 * @p dead, only those that are dead letters after MAX_ATTEMPTS attempts. */
static long long on_topic(upulsar_tb_t *tb, const char *topic, int dead, int *seen,
                          int per_worker, int total)
{
    upulsar_tb_snapshot_t *snap;
    if (upulsar_tb_snapshot(tb, topic, &snap) != UPULSAR_OK)
        return -1;
    size_t n = upulsar_tb_snapshot_count(snap);
    for (size_t i = 0; i < n; i++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(snap, i);
        int attempts = 0;
        for (size_t k = 0; k < m->properties_cnt; k++)
            if (!strcmp(m->properties[k].key, "dlq.attempts"))
                attempts = atoi(m->properties[k].value);
        if (!dead || attempts == MAX_ATTEMPTS)
            seen_event(seen, per_worker, total, m->payload, m->payload_len, m->partition_key);
    }
    upulsar_tb_snapshot_free(snap);
    return (long long)n;
}

/* --check: the records of the dead-letter file, each counted in @p seen. */
static long long in_file(const char *path, int *seen, int per_worker, int total)
{
    FILE *f = fopen(path, "r");
    long long n = 0;
    char head[256], key[KEY_MAX + 1], payload[PAYLOAD_MAX + 1];
    size_t len;
    int attempts;
    while (f && fgets(head, sizeof head, f) &&
           sscanf(head, "dead-letter key=%64s error=%*s attempts=%d len=%zu", key, &attempts,
                  &len) == 3 &&
           len <= PAYLOAD_MAX && fread(payload, 1, len + 1, f) == len + 1 && ++n)
        if (attempts == MAX_ATTEMPTS)
            seen_event(seen, per_worker, total, payload, len, key);
    if (f)
        fclose(f);
    return n;
}

/* --check, the oracle: every event once, on the main topic or among the
 * dead letters; nothing else there; the counts the service kept agree. */
static int check_outcome(service_t *s, upulsar_tb_t *tb, const char *dead_path, int total)
{
    int *main_seen = calloc((size_t)total, sizeof(int));
    int *dead_seen = calloc((size_t)total, sizeof(int));
    if (!main_seen || !dead_seen)
        return free(main_seen), free(dead_seen), 0;
    long long on_main = 0, bad = 0;
    for (int p = 0; p < PARTITIONS; p++) {
        char topic[64];
        snprintf(topic, sizeof topic, "%s-partition-%d", TOPIC, p);
        on_main += on_topic(tb, topic, 0, main_seen, s->events, total);
    }
    long long on_dlq = on_topic(tb, DLQ_TOPIC, 1, dead_seen, s->events, total);
    long long filed = in_file(dead_path, dead_seen, s->events, total);
    for (int i = 0; i < total; i++)
        if (main_seen[i] + dead_seen[i] != 1 && bad++ < 5)
            fprintf(stderr, "check: event %d: %d on the main topic, %d dead letters\n", i,
                    main_seen[i], dead_seen[i]);
    printf("check: %lld on the main topic, %lld on %s, %lld in the file; %lld of %d events "
           "not there exactly once\n", on_main, on_dlq, DLQ_TOPIC, filed, bad, total);
    free(main_seen);
    free(dead_seen);
    return bad == 0 && on_main + on_dlq + filed == total && s->sent == total &&
           on_main == s->acked && on_dlq == s->dead_topic && filed == s->dead_file &&
           s->retried > 0 && on_dlq > 0 && filed > 0;
}

/* --check: one scrape of our own endpoint shows the final figures. */
static int check_scrape(service_t *s, upulsar_client_t *client, int lfd, int port)
{
    char extra[2048], *answer = NULL;
    int self = http_request_metrics(port), cfd = self < 0 ? -1 : accept(lfd, NULL, NULL);
    service_metrics(s, extra, sizeof extra);
    if (cfd >= 0)
        http_serve_metrics(cfd, client, extra), close(cfd), answer = http_read_answer(self);
    int ok = answer && http_metric_sum(answer, "service_events_acked_total") == s->acked &&
             http_metric_sum(answer, "upulsar_producer_messages_acked_total") ==
                 s->acked + s->dead_topic;
    if (!ok)
        fprintf(stderr, "check: the scrape does not show the final figures\n");
    free(answer);
    if (self >= 0)
        close(self);
    return ok;
}

#endif
