/* test_prop_send.c -- property test of upulsar_send() over the sizes a user
 * can pass: random payload sizes (0 .. 3 MiB against a broker whose
 * max_message_size is 1 MiB, with and without chunking), partition keys and
 * ordering keys of 0 .. 65535 bytes (now and then one byte more), property
 * counts and sizes (now and then more than the 1 MiB allowed), copied and
 * NOCOPY payloads, from several threads into four producers (default
 * batching with LZ4, unbatched with chunking and LZ4 (compressed whole,
 * then split), key_based batching, unbatched).
 *
 * Every send either
 *  - is accepted, resolves OK, and the broker stored exactly those bytes,
 *    key, ordering key and properties, exactly once, in the sending
 *    thread's order (per key with key_based batching); or
 *  - is refused at upulsar_send() with MSG_TOO_LARGE or INVALID_ARG and a
 *    detail naming the limit;
 * and which of the two happens is what include/upulsar/upulsar.h documents
 * for upulsar_send() (computed here from the message's sizes).
 *
 * The same messages again through upulsar_send_many(): each thread sends
 * its messages in calls of 1 to 8 consecutive messages to one producer; a
 * call queues a prefix of its messages and stops at the first refused one
 * (whose error is the one documented for it), and the thread's next call
 * starts after that message. Every message must then come out as above.
 *
 * The seed is printed; UPULSAR_PROP_SEED=<seed> repeats a run.
 * UPULSAR_TEST_LABEL_CONCURRENCY (also run under ThreadSanitizer) */
#include <inttypes.h>
#include <stdint.h>
#include <unistd.h>

#include "fault_common.h"

TestSuite(prop_send, .timeout = 300);

enum { MAX = 1 << 20, THREADS = 4, PER_THREAD = 24, NPROD = 4 };

/* The documented rule (upulsar.h, upulsar_send()). */
#define KEY_MAX ((size_t)UPULSAR_MAX_KEY_BYTES)
#define PROPS_MAX ((size_t)UPULSAR_MAX_PROPERTIES_BYTES)
#define OVERHEAD ((size_t)UPULSAR_MSG_OVERHEAD)
#define CHUNKED_MAX ((size_t)UPULSAR_MAX_CHUNKED_BYTES)

static const char *const topics[NPROD] = {"prop-lz4", "prop-chunked", "prop-keybased",
                                          "prop-unbatched"};
static const int chunking[NPROD] = {0, 1, 0, 0}; /* chunking needs batching off */
static const int key_based[NPROD] = {0, 0, 1, 0};

/* ---- deterministic generation ------------------------------------------ */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t *s, uint64_t n) { return n ? splitmix(s) % n : 0; }

static void fill(void *dst, size_t n, uint64_t seed, int printable)
{
    uint8_t *p = dst;
    uint64_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = printable ? (uint8_t)('a' + (x >> 24) % 26) : (uint8_t)(x >> 24);
    }
}

enum { MAXPROPS = 6 };

/* What one message is made of (its bytes come from fill() with the seeds). */
typedef struct gen {
    int prod;
    size_t len;
    int has_key;
    size_t klen;
    int has_okey;
    size_t oklen;
    size_t nprops;
    size_t pk[MAXPROPS], pv[MAXPROPS];
    int nocopy;
    uint64_t seed;
} gen_t;

static uint64_t run_seed;

static size_t pick_len(uint64_t *s, size_t lo_max, size_t mid_max, size_t hi_max)
{
    uint64_t c = below(s, 100);
    return c < 50 ? below(s, 65) : c < 80 ? below(s, lo_max + 1)
                   : c < 97 ? below(s, mid_max + 1) : below(s, hi_max + 1);
}

static void gen(int t, int i, gen_t *g)
{
    uint64_t s = run_seed ^ ((uint64_t)t << 40) ^ ((uint64_t)i << 8);
    splitmix(&s);
    memset(g, 0, sizeof *g);
    g->seed = splitmix(&s);
    g->prod = (int)below(&s, NPROD);
    uint64_t c = below(&s, 100);
    g->len = c < 55 ? below(&s, 2049)
             : c < 82 ? below(&s, 128 * 1024 + 1)
             : c < 97 ? below(&s, MAX + MAX / 2 + 1) : below(&s, 3 * MAX + 1);
    if ((g->has_key = below(&s, 2) == 0))
        g->klen = below(&s, 100) == 0 ? KEY_MAX + 1 : pick_len(&s, 4096, 40000, KEY_MAX);
    if ((g->has_okey = below(&s, 5) < 2))
        g->oklen = below(&s, 100) == 0 ? KEY_MAX + 1 : 1 + pick_len(&s, 4096, 40000, KEY_MAX - 1);
    if (below(&s, 2)) {
        g->nprops = 1 + below(&s, MAXPROPS);
        for (size_t k = 0; k < g->nprops; k++) {
            g->pk[k] = below(&s, 33);
            g->pv[k] = below(&s, 5) ? below(&s, 257) : below(&s, 300 * 1024 + 1);
        }
    }
    g->nocopy = below(&s, 5) == 0;
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Encoded size of the properties (repeated KeyValue), as upulsar.h counts. */
static size_t props_size(const gen_t *g)
{
    size_t total = 0;
    for (size_t k = 0; k < g->nprops; k++) {
        size_t body = 1 + varint_size(g->pk[k]) + g->pk[k] + 1 + varint_size(g->pv[k]) + g->pv[k];
        total += 1 + varint_size(body) + body;
    }
    return total;
}

/* What upulsar_send() must answer for @p g. */
static upulsar_err_t expected(const gen_t *g)
{
    if (g->klen > KEY_MAX || g->oklen > KEY_MAX)
        return UPULSAR_ERR__INVALID_ARG;
    size_t props = props_size(g);
    if (props > PROPS_MAX)
        return UPULSAR_ERR__INVALID_ARG;
    size_t keys = g->klen + g->oklen;
    if (g->len + props + 2 * keys + OVERHEAD <= MAX)
        return UPULSAR_OK;
    if (chunking[g->prod] && g->len <= CHUNKED_MAX && props + keys + OVERHEAD <= MAX / 2)
        return UPULSAR_OK;
    return UPULSAR_ERR__MSG_TOO_LARGE;
}

/* The message's parts, allocated (free with parts_free()). */
typedef struct parts {
    uint8_t *payload;
    char *key;
    uint8_t *okey;
    upulsar_property_t props[MAXPROPS];
} parts_t;

static int parts_make(const gen_t *g, parts_t *p)
{
    memset(p, 0, sizeof *p);
    p->payload = malloc(g->len ? g->len : 1);
    if (!p->payload)
        return -1;
    fill(p->payload, g->len, g->seed, 0);
    if (g->has_key) {
        if (!(p->key = malloc(g->klen + 1)))
            return -1;
        fill(p->key, g->klen, g->seed + 1, 1);
        p->key[g->klen] = '\0';
    }
    if (g->has_okey) {
        if (!(p->okey = malloc(g->oklen)))
            return -1;
        fill(p->okey, g->oklen, g->seed + 2, 0);
    }
    for (size_t k = 0; k < g->nprops; k++) {
        char *pk = malloc(g->pk[k] + 1), *pv = malloc(g->pv[k] + 1);
        p->props[k].key = pk;
        p->props[k].value = pv;
        if (!pk || !pv)
            return -1;
        fill(pk, g->pk[k], g->seed + 10 + k, 1);
        pk[g->pk[k]] = '\0';
        fill(pv, g->pv[k], g->seed + 20 + k, 1);
        pv[g->pv[k]] = '\0';
    }
    return 0;
}

static void parts_free(parts_t *p, int keep_payload)
{
    if (!keep_payload)
        free(p->payload);
    free(p->key);
    free(p->okey);
    for (size_t k = 0; k < MAXPROPS; k++) {
        free((void *)p->props[k].key);
        free((void *)p->props[k].value);
    }
}

/* ---- senders ------------------------------------------------------------- */

typedef struct msg {
    upulsar_err_t want;     /* what the documented rule says */
    upulsar_err_t send_err; /* what upulsar_send() said */
    int names_limit;        /* the refusal's detail names a limit */
    char detail[512];
    upulsar_future_t *f;
    upulsar_err_t err; /* the future's result */
    int seen;          /* times found in the log */
} msg_t;

static msg_t msgs[THREADS][PER_THREAD];
static upulsar_producer_t *prods[NPROD];
static _Atomic int setup_failures;

static void free_payload(void *payload, void *opaque)
{
    (void)opaque;
    free(payload);
}

static int names_a_limit(const char *d)
{
    return strstr(d, "max_message_size") || strstr(d, "65535") || strstr(d, "1 MiB") ||
           strstr(d, "2147483647") || strstr(d, "queue.buffer.bytes");
}

static void *sender(void *a)
{
    int t = (int)(intptr_t)a;
    for (int i = 0; i < PER_THREAD; i++) {
        gen_t g;
        gen(t, i, &g);
        msg_t *m = &msgs[t][i];
        m->want = expected(&g);
        parts_t p;
        if (parts_make(&g, &p)) {
            atomic_fetch_add(&setup_failures, 1);
            parts_free(&p, 0);
            m->send_err = UPULSAR_ERR__NOMEM;
            continue;
        }
        upulsar_send_opts_t o = {.partition_key = p.key,
                                 .ordering_key = p.okey,
                                 .ordering_key_len = g.oklen,
                                 .properties = g.nprops ? p.props : NULL,
                                 .properties_cnt = g.nprops,
                                 .event_time_ms = 1 + ((uint64_t)t << 20 | (uint64_t)i)};
        if (g.nocopy) {
            o.flags = UPULSAR_SEND_NOCOPY;
            o.free_cb = free_payload;
        }
        m->send_err = upulsar_send(prods[g.prod], p.payload, g.len, &o, &m->f);
        if (m->send_err) {
            snprintf(m->detail, sizeof m->detail, "%s", upulsar_last_error());
            m->names_limit = names_a_limit(m->detail);
        }
        /* an accepted NOCOPY payload is the library's until free_cb */
        parts_free(&p, g.nocopy && m->send_err == UPULSAR_OK);
    }
    return NULL;
}

/* The sender through upulsar_send_many(): calls of 1 to 8 consecutive
 * messages of the thread that go to one producer. */
enum { CALL_MAX = 8 };

static void *sender_many(void *a)
{
    int t = (int)(intptr_t)a;
    uint64_t rs = run_seed ^ ((uint64_t)t << 32) ^ 0x5eedu;
    for (int i = 0; i < PER_THREAD;) {
        gen_t g[CALL_MAX];
        parts_t p[CALL_MAX];
        upulsar_send_opts_t o[CALL_MAX];
        upulsar_msg_t mm[CALL_MAX];
        upulsar_future_t *f[CALL_MAX];
        int want = 1 + (int)below(&rs, CALL_MAX), n = 0;
        for (; n < want && i + n < PER_THREAD; n++) {
            gen(t, i + n, &g[n]);
            if (n && g[n].prod != g[0].prod)
                break;
            msgs[t][i + n].want = expected(&g[n]);
            if (parts_make(&g[n], &p[n])) {
                atomic_fetch_add(&setup_failures, 1);
                parts_free(&p[n], 0);
                break;
            }
            o[n] = (upulsar_send_opts_t){.partition_key = p[n].key,
                                         .ordering_key = p[n].okey,
                                         .ordering_key_len = g[n].oklen,
                                         .properties = g[n].nprops ? p[n].props : NULL,
                                         .properties_cnt = g[n].nprops,
                                         .event_time_ms = 1 + ((uint64_t)t << 20 | (uint64_t)(i + n))};
            if (g[n].nocopy) {
                o[n].flags = UPULSAR_SEND_NOCOPY;
                o[n].free_cb = free_payload;
            }
            mm[n] = (upulsar_msg_t){p[n].payload, g[n].len, &o[n]};
        }
        if (n == 0) { /* out of memory building the first: counted above */
            msgs[t][i].send_err = UPULSAR_ERR__NOMEM;
            i++;
            continue;
        }
        size_t acc = 99;
        upulsar_err_t e = upulsar_send_many(prods[g[0].prod], mm, (size_t)n, f, &acc);
        if (acc > (size_t)n || (e == UPULSAR_OK) != (acc == (size_t)n))
            atomic_fetch_add(&setup_failures, 1); /* reported as a broken contract below */
        for (int k = 0; k < n; k++) {
            msg_t *m = &msgs[t][i + k];
            if ((size_t)k < acc) {
                m->send_err = UPULSAR_OK;
                m->f = f[k];
            } else if ((size_t)k == acc) {
                m->send_err = e;
                snprintf(m->detail, sizeof m->detail, "%s", upulsar_last_error());
                m->names_limit = names_a_limit(m->detail);
            }
            /* an accepted NOCOPY payload is the library's until free_cb */
            parts_free(&p[k], g[k].nocopy && (size_t)k < acc);
        }
        /* the next call starts after the refused message (if any) */
        i += (int)acc + ((size_t)n > acc);
    }
    return NULL;
}

/* ---- the check ------------------------------------------------------------- */

static int same_props(const upulsar_tb_msg_t *m, const parts_t *p, const gen_t *g)
{
    if (m->properties_cnt != g->nprops)
        return 0;
    for (size_t k = 0; k < g->nprops; k++)
        if (strcmp(m->properties[k].key, p->props[k].key) ||
            strcmp(m->properties[k].value, p->props[k].value))
            return 0;
    return 1;
}

/* The key key_based batching groups by: ordering key, else partition key. */
static int same_group(const upulsar_tb_msg_t *a, const upulsar_tb_msg_t *b)
{
    if (!!a->ordering_key != !!b->ordering_key)
        return 0;
    if (a->ordering_key)
        return a->ordering_key_len == b->ordering_key_len &&
               !memcmp(a->ordering_key, b->ordering_key, a->ordering_key_len);
    if (!!a->partition_key != !!b->partition_key)
        return 0;
    return !a->partition_key || !strcmp(a->partition_key, b->partition_key);
}

static void check_topic(upulsar_tb_t *tb, int prod)
{
    upulsar_tb_snapshot_t *s;
    cr_assert_eq(upulsar_tb_snapshot(tb, topics[prod], &s), UPULSAR_OK, "%s",
                 upulsar_last_error());
    cr_assert_eq(upulsar_tb_snapshot_skipped(s), 0, "%s: entries that do not decode",
                 topics[prod]);
    size_t n = upulsar_tb_snapshot_count(s);
    for (size_t j = 0; j < n; j++) {
        const upulsar_tb_msg_t *m = upulsar_tb_snapshot_msg(s, j);
        uint64_t id = m->event_time - 1;
        int t = (int)(id >> 20), i = (int)(id & 0xfffff);
        cr_assert(m->event_time && t < THREADS && i < PER_THREAD, "%s #%zu: not a sent message",
                  topics[prod], j);
        gen_t g;
        gen(t, i, &g);
        cr_assert_eq(g.prod, prod, "%s #%zu: message %d:%d belongs to %s", topics[prod], j, t, i,
                     topics[g.prod]);
        msg_t *mm = &msgs[t][i];
        cr_assert_eq(mm->send_err, UPULSAR_OK, "%s: message %d:%d stored but refused at send",
                     topics[prod], t, i);
        mm->seen++;
        cr_assert_eq(mm->seen, 1, "%s: message %d:%d stored twice", topics[prod], t, i);
        parts_t p;
        cr_assert_eq(parts_make(&g, &p), 0, "out of memory");
        cr_assert_eq(m->payload_len, g.len, "%s: message %d:%d: %zu bytes stored, %zu sent",
                     topics[prod], t, i, m->payload_len, g.len);
        cr_assert(g.len == 0 || !memcmp(m->payload, p.payload, g.len),
                  "%s: message %d:%d: payload differs", topics[prod], t, i);
        if (g.has_key)
            cr_assert(m->partition_key && !strcmp(m->partition_key, p.key),
                      "%s: message %d:%d: key differs", topics[prod], t, i);
        else
            cr_assert_null(m->partition_key, "%s: message %d:%d", topics[prod], t, i);
        if (g.has_okey)
            cr_assert(m->ordering_key && m->ordering_key_len == g.oklen &&
                          !memcmp(m->ordering_key, p.okey, g.oklen),
                      "%s: message %d:%d: ordering key differs", topics[prod], t, i);
        else
            cr_assert_null(m->ordering_key, "%s: message %d:%d", topics[prod], t, i);
        cr_assert(same_props(m, &p, &g), "%s: message %d:%d: properties differ", topics[prod], t,
                  i);
        parts_free(&p, 0);
        /* the sending thread's order (per key with key_based batching) */
        for (size_t k = 0; k < j; k++) {
            const upulsar_tb_msg_t *e = upulsar_tb_snapshot_msg(s, k);
            uint64_t eid = e->event_time - 1;
            if ((int)(eid >> 20) != t || (key_based[prod] && !same_group(e, m)))
                continue;
            cr_assert_lt((int)(eid & 0xfffff), i, "%s: message %d:%d stored after %d:%d",
                         topics[prod], t, (int)(eid & 0xfffff), t, i);
        }
    }
    upulsar_tb_snapshot_free(s);
}

static void prop_run(void *(*send_fn)(void *), const char *what)
{
    memset(msgs, 0, sizeof msgs);
    atomic_store(&setup_failures, 0);
    const char *env = getenv("UPULSAR_PROP_SEED");
    run_seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    fprintf(stderr, "prop_send: seed %" PRIu64 " (UPULSAR_PROP_SEED=%" PRIu64 " repeats it)\n",
            run_seed, run_seed);

    upulsar_tb_t *tb = ft_broker_max(MAX);
    upulsar_client_t *c = ft_client(tb, NULL);
    for (int k = 0; k < NPROD; k++) {
        const char *kv[] = {"queue.buffer.bytes", "4194304",
                            "block.if.queue.full", "true",
                            "send.timeout.ms", "0",
                            "chunking.enabled", chunking[k] ? "true" : "false",
                            "batching.type", key_based[k] ? "key_based" : "default",
                            "batching.enabled", k == 1 || k == 3 ? "false" : "true",
                            "compression", k <= 1 ? "lz4" : "none",
                            NULL};
        prods[k] = ft_producer(c, NULL, topics[k], 0, kv);
    }
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        cr_assert_eq(pthread_create(&th[t], NULL, send_fn, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    cr_assert_eq(atomic_load(&setup_failures), 0,
                 "out of memory building messages, or a call's result and *accepted disagree");

    size_t accepted = 0, refused = 0;
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PER_THREAD; i++) {
            msg_t *m = &msgs[t][i];
            gen_t g;
            gen(t, i, &g);
            cr_assert_eq(m->send_err, m->want,
                         "message %d:%d (%zu bytes, key %zu, ordering key %zu, properties %zu "
                         "bytes, to %s): %s said %s (%s), the documented limits say %s",
                         t, i, g.len, g.klen, g.oklen, props_size(&g), topics[g.prod], what,
                         upulsar_err_name(m->send_err), m->detail, upulsar_err_name(m->want));
            if (m->send_err) {
                cr_assert(m->names_limit, "message %d:%d refused without naming a limit: %s", t,
                          i, m->detail);
                refused++;
                continue;
            }
            accepted++;
            m->err = upulsar_future_wait(m->f, FT_WAIT_MS, NULL);
            upulsar_future_release(m->f);
            cr_assert_eq(m->err, UPULSAR_OK, "message %d:%d accepted, then failed: %s", t, i,
                         upulsar_err_name(m->err));
        }
    for (int k = 0; k < NPROD; k++)
        cr_assert_eq(upulsar_producer_stop(prods[k], 10000), UPULSAR_OK);
    for (int k = 0; k < NPROD; k++)
        check_topic(tb, k);
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PER_THREAD; i++)
            cr_assert_eq(msgs[t][i].seen, msgs[t][i].send_err == UPULSAR_OK,
                         "message %d:%d stored %d times", t, i, msgs[t][i].seen);
    fprintf(stderr, "prop_send: %s: %zu accepted and stored, %zu refused at send\n", what,
            accepted, refused);
    upulsar_tb_stats_t st;
    cr_assert_eq(upulsar_tb_stats(tb, &st), UPULSAR_OK);
    cr_assert_eq(st.protocol_errors, 0);
    upulsar_client_destroy(c);
    upulsar_tb_stop(tb);
}

Test(prop_send, every_send_is_stored_exactly_or_refused_naming_the_limit)
{
    prop_run(sender, "upulsar_send()");
}

Test(prop_send, every_send_many_call_stores_its_prefix_exactly_or_refuses_naming_the_limit)
{
    prop_run(sender_many, "upulsar_send_many()");
}
