/* store.c -- the test broker's in-memory log: topic names and registry,
 * entries, dedup records, subscription ack state, entry decoding and
 * snapshots. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "entity_name.h"
#include "err.h"
#include "tb.h"

/* ---- arena ------------------------------------------------------------- */

void tb_arena_init(tb_arena_t *a, size_t chunk_size)
{
    a->head = NULL;
    a->chunk_size = chunk_size ? chunk_size : 64 * 1024;
    a->total = 0;
}

void *tb_arena_alloc(tb_arena_t *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (n == 0)
        n = 8;
    tb_chunk_t *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > a->chunk_size / 4 ? n : a->chunk_size;
        if (cap > SIZE_MAX - sizeof *c)
            return NULL;
        tb_chunk_t *nc = malloc(sizeof *nc + cap);
        if (!nc)
            return NULL;
        nc->used = 0;
        nc->cap = cap;
        if (cap == n && c && c->cap - c->used >= 64) {
            /* a big one-off: keep filling the current chunk afterwards */
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->head = nc;
        }
        c = nc;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->total += n;
    return p;
}

void *tb_arena_dup(tb_arena_t *a, const void *p, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    uint8_t *d = tb_arena_alloc(a, n + 1);
    if (!d)
        return NULL;
    if (n)
        /* callers pass n bytes at p (protobuf-c's data is not NULL when len > 0).
         * NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
        memcpy(d, p, n);
    d[n] = 0;
    return d;
}

void tb_arena_free(tb_arena_t *a)
{
    tb_chunk_t *c = a->head;
    while (c) {
        tb_chunk_t *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
    a->total = 0;
}

/* ---- topic names ------------------------------------------------------- */

static bool valid_part(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f)
            return false;
    }
    return true;
}

/* "tenant/ns/topic" (or legacy "tenant/cluster/ns/topic") with non-empty
 * parts, tenant and namespace named as Pulsar allows; the topic part
 * itself may contain further '/'. */
static bool valid_path(const char *p)
{
    const char *s1 = strchr(p, '/');
    if (!s1 || !up_entity_name_ok(p, (size_t)(s1 - p)))
        return false;
    const char *s2 = strchr(s1 + 1, '/');
    if (!s2 || !up_entity_name_ok(s1 + 1, (size_t)(s2 - s1 - 1)))
        return false;
    return valid_part(s2 + 1, strlen(s2 + 1));
}

char *tb_topic_normalize(const char *in, upulsar_err_t *err)
{
    *err = UPULSAR_ERR__INVALID_TOPIC;
    if (!in || !*in || strlen(in) > 4096)
        return NULL;
    const char *pfx = "";
    const char *rest = in;
    const char *sep = strstr(in, "://");
    if (sep) {
        size_t sl = (size_t)(sep - in);
        if (!((sl == 10 && !memcmp(in, "persistent", 10)) ||
              (sl == 14 && !memcmp(in, "non-persistent", 14))))
            return NULL;
        if (!valid_path(sep + 3))
            return NULL;
    } else if (!strchr(in, '/')) {
        if (!valid_part(in, strlen(in)))
            return NULL;
        pfx = "persistent://public/default/";
    } else {
        if (!valid_path(in))
            return NULL;
        /* only the three-part short form is accepted without a scheme */
        const char *s2 = strchr(strchr(in, '/') + 1, '/');
        if (strchr(s2 + 1, '/'))
            return NULL;
        pfx = "persistent://";
    }
    size_t pl = strlen(pfx), rl = strlen(rest);
    char *out = malloc(pl + rl + 1);
    if (!out) {
        *err = UPULSAR_ERR__NOMEM;
        return NULL;
    }
    memcpy(out, pfx, pl);
    memcpy(out + pl, rest, rl + 1);
    *err = UPULSAR_OK;
    return out;
}

size_t tb_partition_base_len(const char *name)
{
    static const char mark[] = "-partition-";
    size_t n = strlen(name), ml = sizeof mark - 1;
    size_t d = 0;
    while (d < n && name[n - 1 - d] >= '0' && name[n - 1 - d] <= '9')
        d++;
    if (d == 0 || d > 9 || n - d < ml + 1)
        return 0;
    if (memcmp(name + n - d - ml, mark, ml))
        return 0;
    return n - d - ml;
}

/* ---- topic registry ---------------------------------------------------- */

uint64_t tb_name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* Put @p t in @p st's index, growing it to keep one topic per bucket on
 * average. -1 when the index cannot grow and has no bucket at all. */
static int index_add(tb_store_t *st, tb_topic_t *t)
{
    if (st->ntopics + 1 > st->index_cap) {
        size_t ncap = st->index_cap ? st->index_cap * 2 : 64;
        tb_topic_t **ni = calloc(ncap, sizeof *ni);
        if (ni) {
            for (size_t i = 0; i < st->index_cap; i++)
                for (tb_topic_t *x = st->index[i], *nx; x; x = nx) {
                    nx = x->hnext;
                    x->hnext = ni[x->hash & (ncap - 1)];
                    ni[x->hash & (ncap - 1)] = x;
                }
            free(st->index);
            st->index = ni;
            st->index_cap = ncap;
        } else if (!st->index_cap) {
            return -1;
        } /* else: longer chains, still correct */
    }
    tb_topic_t **b = &st->index[t->hash & (st->index_cap - 1)];
    t->hnext = *b;
    *b = t;
    st->ntopics++;
    return 0;
}

tb_topic_t *tb_topic_find_locked(upulsar_tb_t *tb, const char *norm, bool create)
{
    tb_store_t *st = tb->store;
    uint64_t h = tb_name_hash(norm);
    if (st->index_cap)
        for (tb_topic_t *t = st->index[h & (st->index_cap - 1)]; t; t = t->hnext)
            if (t->hash == h && !strcmp(t->name, norm))
                return t;
    if (!create)
        return NULL;
    tb_topic_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->topic_epoch = -1;
    t->name = strdup(norm);
    if (!t->name || pthread_mutex_init(&t->mu, NULL)) {
        free(t->name);
        free(t);
        return NULL;
    }
    if (pthread_cond_init(&t->grew, NULL)) {
        pthread_mutex_destroy(&t->mu);
        free(t->name);
        free(t);
        return NULL;
    }
    t->hash = h;
    if (index_add(st, t)) {
        pthread_cond_destroy(&t->grew);
        pthread_mutex_destroy(&t->mu);
        free(t->name);
        free(t);
        return NULL;
    }
    atomic_init(&t->hold, false);
    t->schema_enforced = -1;
    t->dedup_policy = -1;
    t->ledger_id = st->next_ledger++;
    t->st.ledger_id = t->ledger_id;
    tb_arena_init(&t->arena, tb->opts.perf ? 16u * 1024 * 1024 : 1024u * 1024);
    t->next = st->topics;
    st->topics = t;
    return t;
}

tb_topic_t *tb_topic_get(upulsar_tb_t *tb, const char *norm, bool create)
{
    pthread_mutex_lock(&tb->store->mu);
    tb_topic_t *t = tb_topic_find_locked(tb, norm, create);
    pthread_mutex_unlock(&tb->store->mu);
    return t;
}

void tb_topic_free(tb_topic_t *t)
{
    for (size_t i = 0; i < t->nblocks; i++)
        free(t->blocks[i]);
    free(t->blocks);
    tb_arena_free(&t->arena);
    for (tb_dedup_t *d = t->dedup, *n; d; d = n) {
        n = d->next;
        free(d);
    }
    for (tb_sub_t *s = t->subs, *n; s; s = n) {
        n = s->next;
        free(s->name);
        free(s->acked);
        free(s);
    }
    free(t->prods);
    free(t->cons);
    free(t->answers);
    free(t->reqs);
    for (size_t i = 0; i < t->nschemas; i++) {
        free(t->schemas[i].packed);
        free(t->schemas[i].data);
    }
    free(t->schemas);
    pthread_cond_destroy(&t->grew);
    pthread_mutex_destroy(&t->mu);
    free(t->name);
    free(t);
}

tb_entry_t *tb_topic_append(tb_topic_t *t, const uint8_t *md, size_t md_len,
                            const uint8_t *payload, size_t payload_len, bool retain)
{
    uint64_t idx = t->n_entries;
    size_t b = (size_t)(idx >> TB_BLOCK_SHIFT);
    if (b >= t->nblocks) {
        if (t->nblocks == t->blocks_cap) {
            size_t cap = t->blocks_cap ? t->blocks_cap * 2 : 16;
            tb_entry_t **nb = realloc(t->blocks, cap * sizeof *nb);
            if (!nb)
                return NULL;
            t->blocks = nb;
            t->blocks_cap = cap;
        }
        tb_entry_t *blk = malloc(TB_BLOCK * sizeof *blk);
        if (!blk)
            return NULL;
        t->blocks[t->nblocks++] = blk;
    }
    tb_entry_t *e = tb_topic_entry(t, idx);
    memset(e, 0, sizeof *e);
    e->entry_id = idx;
    e->md_len = (uint32_t)md_len;
    e->payload_len = (uint32_t)payload_len;
    if (retain) {
        uint8_t *d = tb_arena_alloc(&t->arena, md_len + payload_len);
        if (!d)
            return NULL;
        memcpy(d, md, md_len);
        if (payload_len)
            memcpy(d + md_len, payload, payload_len);
        e->data = d;
    }
    t->n_entries++;
    return e;
}

tb_dedup_t *tb_dedup_get(tb_topic_t *t, const char *name)
{
    for (tb_dedup_t *d = t->dedup; d; d = d->next)
        if (!strcmp(d->name, name))
            return d;
    size_t n = strlen(name);
    tb_dedup_t *d = malloc(sizeof *d + n + 1);
    if (!d)
        return NULL;
    d->last_seq = -1;
    memcpy(d->name, name, n + 1);
    d->next = t->dedup;
    t->dedup = d;
    return d;
}

/* ---- subscription acks ------------------------------------------------- */

bool tb_sub_is_acked(const tb_sub_t *s, uint64_t id)
{
    if (id < s->low)
        return true;
    if (id / 8 >= s->acked_bytes)
        return false;
    return (s->acked[id / 8] >> (id % 8)) & 1;
}

int tb_sub_ack(tb_sub_t *s, uint64_t id)
{
    if (id < s->low)
        return 0;
    if (id / 8 >= s->acked_bytes) {
        size_t nb = s->acked_bytes ? s->acked_bytes : 64;
        while (nb <= id / 8)
            nb *= 2;
        uint8_t *p = realloc(s->acked, nb);
        if (!p)
            return UPULSAR_ERR__NOMEM;
        memset(p + s->acked_bytes, 0, nb - s->acked_bytes);
        s->acked = p;
        s->acked_bytes = nb;
    }
    s->acked[id / 8] |= (uint8_t)(1u << (id % 8));
    while (s->low / 8 < s->acked_bytes && tb_sub_is_acked(s, s->low))
        s->low++;
    return 0;
}

void tb_sub_ack_upto(tb_sub_t *s, uint64_t id)
{
    if (id + 1 > s->low)
        s->low = id + 1;
    while (s->low / 8 < s->acked_bytes && tb_sub_is_acked(s, s->low))
        s->low++;
}

/* ---- decoding entries -------------------------------------------------- */

int tb_decode_entry(const uint8_t *mdb, size_t md_len, const uint8_t *payload,
                    size_t payload_len, tb_decode_cb cb, void *ctx, uint32_t *count)
{
    *count = 0;
    up_md_t *md = pulsar__proto__message_metadata__unpack(NULL, md_len, mdb);
    if (!md)
        return UPULSAR_ERR__DECODE;
    int rc = 0;
    uint8_t *plain = NULL;
    const uint8_t *body = payload;
    size_t body_len = payload_len;
    if (md->has_num_chunks_from_msg && md->num_chunks_from_msg > 1) {
        /* a piece of a chunked message: its payload is a slice of the
         * (compressed) whole, read back once all chunks are there
         * (upulsar_tb_snapshot()) */
        *count = 1;
        goto out;
    }
    if (md->has_compression && md->compression != PULSAR__PROTO__COMPRESSION_TYPE__NONE) {
        if (!md->has_uncompressed_size || md->uncompressed_size > TB_MAX_UNCOMPRESSED) {
            rc = UPULSAR_ERR__DECODE;
            goto out;
        }
        plain = malloc(md->uncompressed_size ? md->uncompressed_size : 1);
        if (!plain) {
            rc = UPULSAR_ERR__NOMEM;
            goto out;
        }
        rc = up_decompress((int)md->compression, payload, payload_len, plain,
                           md->uncompressed_size);
        if (rc)
            goto out;
        body = plain;
        body_len = md->uncompressed_size;
    }
    tb_decoded_t m;
    memset(&m, 0, sizeof m);
    m.md = md;
    if (!md->has_num_messages_in_batch) {
        m.payload = body;
        m.payload_len = body_len;
        m.sequence_id = md->sequence_id;
        m.batch_index = -1;
        m.batch_size = 0;
        rc = cb ? cb(ctx, &m) : 0;
        if (!rc)
            *count = 1;
        goto out;
    }
    if (md->num_messages_in_batch < 0) {
        rc = UPULSAR_ERR__DECODE;
        goto out;
    }
    size_t off = 0;
    int32_t i = 0;
    for (;;) {
        up_batch_msg_t bm;
        int r = up_batch_next(body, body_len, &off, &bm);
        if (r == 0)
            break;
        if (r < 0) {
            rc = r;
            goto out;
        }
        if (i >= md->num_messages_in_batch) {
            pulsar__proto__single_message_metadata__free_unpacked(bm.smm, NULL);
            rc = UPULSAR_ERR__DECODE; /* more records than announced */
            goto out;
        }
        m.smm = bm.smm;
        m.payload = bm.payload;
        m.payload_len = bm.payload_len;
        m.sequence_id = bm.smm->has_sequence_id ? bm.smm->sequence_id
                                                : md->sequence_id + (uint64_t)i;
        m.batch_index = i;
        m.batch_size = md->num_messages_in_batch;
        int r2 = cb ? cb(ctx, &m) : 0;
        pulsar__proto__single_message_metadata__free_unpacked(bm.smm, NULL);
        if (r2) {
            rc = r2;
            goto out;
        }
        i++;
        *count = (uint32_t)i;
    }
    if (i != md->num_messages_in_batch)
        rc = UPULSAR_ERR__DECODE; /* fewer records than announced */
out:
    free(plain);
    pulsar__proto__message_metadata__free_unpacked(md, NULL);
    return rc;
}

int tb_chunk_role(const uint8_t *mdb, size_t md_len)
{
    up_md_t *md = pulsar__proto__message_metadata__unpack(NULL, md_len, mdb);
    if (!md)
        return TB_CHUNK_NONE;
    int role = TB_CHUNK_NONE;
    if (md->has_chunk_id && md->has_num_chunks_from_msg && md->num_chunks_from_msg > 0) {
        if (md->chunk_id >= md->num_chunks_from_msg - 1)
            role = TB_CHUNK_LAST;
        else
            role = md->chunk_id == 0 ? TB_CHUNK_FIRST : TB_CHUNK_MIDDLE;
    }
    pulsar__proto__message_metadata__free_unpacked(md, NULL);
    return role;
}

/* ---- snapshots --------------------------------------------------------- */

struct upulsar_tb_snapshot {
    upulsar_tb_msg_t *msgs;
    size_t n, cap;
    size_t skipped;
    tb_arena_t arena;
};

typedef struct snap_ctx {
    upulsar_tb_snapshot_t *s;
    const tb_entry_t *e;
    uint64_t ledger;
    const char *producer; /* interned per entry */
    uint32_t chunks;      /* a chunked message: chunks, first chunk's entry */
    uint64_t first_chunk_entry;
} snap_ctx_t;

/* A chunked message being put back together while a snapshot reads the
 * log, as a consumer does: by producer name and uuid; chunk 0 starts it
 * (again, after a resend), the next chunk in order extends it, anything
 * else abandons it (a consumer would drop it too). */
typedef struct snap_chunks {
    char *producer, *uuid;
    uint8_t *buf;
    size_t len, total;
    int32_t next, n;
    uint64_t first_entry;
} snap_chunks_t;

static int snap_add(void *vctx, const tb_decoded_t *m)
{
    snap_ctx_t *x = vctx;
    upulsar_tb_snapshot_t *s = x->s;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        upulsar_tb_msg_t *nm = realloc(s->msgs, cap * sizeof *nm);
        if (!nm)
            return UPULSAR_ERR__NOMEM;
        s->msgs = nm;
        s->cap = cap;
    }
    upulsar_tb_msg_t *o = &s->msgs[s->n];
    memset(o, 0, sizeof *o);
    tb_arena_t *a = &s->arena;
    if (!x->producer) {
        const char *pn = m->md->producer_name ? m->md->producer_name : "";
        x->producer = tb_arena_dup(a, pn, strlen(pn));
        if (!x->producer)
            return UPULSAR_ERR__NOMEM;
    }
    o->producer_name = x->producer;
    o->publish_time = m->md->publish_time;
    o->ledger_id = x->ledger;
    o->entry_id = x->e->entry_id;
    o->batch_index = m->batch_index;
    o->batch_size = m->batch_size;
    o->sequence_id = m->sequence_id;
    o->sequence_id_in_batch = m->smm && m->smm->has_sequence_id;
    if (m->md->partition_key &&
        !(o->entry_partition_key =
              tb_arena_dup(a, m->md->partition_key, strlen(m->md->partition_key))))
        return UPULSAR_ERR__NOMEM;
    o->entry_partition_key_b64_encoded =
        m->md->has_partition_key_b64_encoded && m->md->partition_key_b64_encoded;
    o->num_chunks = x->chunks;
    if (x->chunks) {
        o->first_chunk_ledger_id = x->ledger;
        o->first_chunk_entry_id = x->first_chunk_entry;
    }
    o->compression = m->md->has_compression ? (int)m->md->compression : 0;
    o->deliver_at_time = m->md->has_deliver_at_time ? (uint64_t)m->md->deliver_at_time : 0;
    if (m->md->n_replicate_to) {
        const char **ra = tb_arena_alloc(a, m->md->n_replicate_to * sizeof *ra);
        if (!ra)
            return UPULSAR_ERR__NOMEM;
        for (size_t i = 0; i < m->md->n_replicate_to; i++) {
            const char *r = m->md->replicate_to[i] ? m->md->replicate_to[i] : "";
            if (!(ra[i] = tb_arena_dup(a, r, strlen(r))))
                return UPULSAR_ERR__NOMEM;
        }
        o->replicate_to = ra;
        o->replicate_to_cnt = m->md->n_replicate_to;
    }
    if (m->md->has_schema_version) {
        o->schema_version = tb_arena_dup(a, m->md->schema_version.data, m->md->schema_version.len);
        if (!o->schema_version)
            return UPULSAR_ERR__NOMEM;
        o->schema_version_len = m->md->schema_version.len;
    }
    o->payload = tb_arena_dup(a, m->payload, m->payload_len);
    if (!o->payload)
        return UPULSAR_ERR__NOMEM;
    o->payload_len = m->payload_len;

    const char *key;
    const ProtobufCBinaryData *okey = NULL;
    size_t np;
    Pulsar__Proto__KeyValue **props;
    if (m->smm) {
        key = m->smm->partition_key;
        if (m->smm->has_ordering_key)
            okey = &m->smm->ordering_key;
        np = m->smm->n_properties;
        props = m->smm->properties;
        o->event_time = m->smm->has_event_time ? m->smm->event_time : 0;
        o->null_value = m->smm->has_null_value && m->smm->null_value;
        o->partition_key_b64_encoded =
            m->smm->has_partition_key_b64_encoded && m->smm->partition_key_b64_encoded;
    } else {
        key = m->md->partition_key;
        if (m->md->has_ordering_key)
            okey = &m->md->ordering_key;
        np = m->md->n_properties;
        props = m->md->properties;
        o->event_time = m->md->has_event_time ? m->md->event_time : 0;
        o->null_value = m->md->has_null_value && m->md->null_value;
        o->partition_key_b64_encoded =
            m->md->has_partition_key_b64_encoded && m->md->partition_key_b64_encoded;
    }
    if (key && !(o->partition_key = tb_arena_dup(a, key, strlen(key))))
        return UPULSAR_ERR__NOMEM;
    /* the entry's own keys, whatever its messages carry */
    const void *sk = NULL;
    size_t sklen = 0;
    if (m->md->has_ordering_key) {
        sk = m->md->ordering_key.data;
        sklen = m->md->ordering_key.len;
    } else if (m->md->partition_key) {
        sk = m->md->partition_key;
        sklen = strlen(m->md->partition_key);
    }
    if (sk && !(o->sticky_key = tb_arena_dup(a, sk, sklen)))
        return UPULSAR_ERR__NOMEM;
    o->sticky_key_len = sklen;
    if (okey) {
        o->ordering_key = tb_arena_dup(a, okey->data, okey->len);
        if (!o->ordering_key)
            return UPULSAR_ERR__NOMEM;
        o->ordering_key_len = okey->len;
    }
    if (np) {
        upulsar_property_t *pa = tb_arena_alloc(a, np * sizeof *pa);
        if (!pa)
            return UPULSAR_ERR__NOMEM;
        for (size_t i = 0; i < np; i++) {
            const char *k = props[i]->key ? props[i]->key : "";
            const char *v = props[i]->value ? props[i]->value : "";
            pa[i].key = tb_arena_dup(a, k, strlen(k));
            pa[i].value = tb_arena_dup(a, v, strlen(v));
            if (!pa[i].key || !pa[i].value)
                return UPULSAR_ERR__NOMEM;
        }
        o->properties = pa;
        o->properties_cnt = np;
    }
    s->n++;
    return 0;
}

static void snap_chunks_free(snap_chunks_t *c)
{
    free(c->producer);
    free(c->uuid);
    free(c->buf);
    memset(c, 0, sizeof *c);
}

/* Entry @p e of a snapshot, if it is a chunk of a message sent in several:
 * take it into *@p cs (chunked messages under way, *@p ncs of them) and, at
 * the last chunk of a complete message, add the whole message to @p s (its
 * ledger and entry ids the last chunk's, @p x tells snap_add() the first
 * one's). Returns 0 for an entry that is not such a chunk (decode it as
 * usual), 1 for a chunk taken, or an error (NOMEM, DECODE). */
static int snap_chunk(upulsar_tb_snapshot_t *s, snap_chunks_t **cs, size_t *ncs,
                      const tb_entry_t *e, snap_ctx_t *x)
{
    up_md_t *md = pulsar__proto__message_metadata__unpack(NULL, e->md_len, e->data);
    if (!md)
        return 0; /* tb_decode_entry() counts it as undecodable */
    if (!md->has_num_chunks_from_msg || md->num_chunks_from_msg <= 1) {
        pulsar__proto__message_metadata__free_unpacked(md, NULL);
        return 0;
    }
    int rc = 1;
    const char *pn = md->producer_name ? md->producer_name : "";
    const char *uuid = md->uuid ? md->uuid : "";
    int32_t id = md->has_chunk_id ? md->chunk_id : -1;
    size_t total = md->has_total_chunk_msg_size && md->total_chunk_msg_size > 0
                       ? (size_t)md->total_chunk_msg_size : 0;
    snap_chunks_t *c = NULL;
    for (size_t i = 0; i < *ncs && !c; i++)
        if (!strcmp((*cs)[i].producer, pn) && !strcmp((*cs)[i].uuid, uuid))
            c = &(*cs)[i];
    if (id == 0 && total && total <= TB_MAX_UNCOMPRESSED) {
        if (!c) {
            snap_chunks_t *nc = realloc(*cs, (*ncs + 1) * sizeof *nc);
            if (!nc) {
                rc = UPULSAR_ERR__NOMEM;
                goto out;
            }
            *cs = nc;
            c = &nc[(*ncs)++];
            memset(c, 0, sizeof *c);
            c->producer = strdup(pn);
            c->uuid = strdup(uuid);
            if (!c->producer || !c->uuid) {
                rc = UPULSAR_ERR__NOMEM;
                goto out;
            }
        }
        uint8_t *b = realloc(c->buf, total);
        if (!b) {
            rc = UPULSAR_ERR__NOMEM;
            goto out;
        }
        c->buf = b;
        c->total = total;
        c->len = 0;
        c->next = 0;
        c->n = md->num_chunks_from_msg;
        c->first_entry = e->entry_id;
    }
    if (!c || !c->buf)
        goto out; /* a chunk of a message whose start is not in the log */
    if (id >= 0 && id < c->next && total == c->total && md->num_chunks_from_msg == c->n)
        goto out; /* a chunk taken already, sent again: skipped, as Pulsar's consumers do */
    if (id != c->next || total != c->total || md->num_chunks_from_msg != c->n ||
        e->payload_len > c->total - c->len) {
        free(c->buf); /* abandoned, as a consumer would */
        c->buf = NULL;
        goto out;
    }
    memcpy(c->buf + c->len, e->data + e->md_len, e->payload_len);
    c->len += e->payload_len;
    c->next++;
    if (c->next < c->n)
        goto out;
    uint8_t *whole = c->buf;
    size_t whole_len = c->len;
    c->buf = NULL;
    if (whole_len != c->total) {
        free(whole);
        goto out;
    }
    /* the message as if it had been sent whole */
    char *u = md->uuid;
    md->uuid = NULL;
    md->has_chunk_id = md->has_num_chunks_from_msg = md->has_total_chunk_msg_size = 0;
    size_t ml = protobuf_c_message_get_packed_size(&md->base);
    uint8_t *mb = malloc(ml ? ml : 1);
    if (mb)
        protobuf_c_message_pack(&md->base, mb);
    md->uuid = u; /* freed with md */
    if (!mb) {
        free(whole);
        rc = UPULSAR_ERR__NOMEM;
        goto out;
    }
    x->chunks = (uint32_t)c->n;
    x->first_chunk_entry = c->first_entry;
    uint32_t cnt;
    size_t before = s->n;
    int r = tb_decode_entry(mb, ml, whole, whole_len, snap_add, x, &cnt);
    free(mb);
    free(whole);
    if (r == UPULSAR_ERR__NOMEM) {
        rc = r;
    } else if (r) {
        s->n = before;
        s->skipped++;
    }
out:
    pulsar__proto__message_metadata__free_unpacked(md, NULL);
    return rc;
}

upulsar_err_t upulsar_tb_snapshot(upulsar_tb_t *tb, const char *topic,
                                  upulsar_tb_snapshot_t **out)
{
    if (!tb || !topic || !out)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_snapshot: NULL argument");
    *out = NULL;
    upulsar_err_t err;
    char *norm = tb_topic_normalize(topic, &err);
    if (!norm)
        return up_seterr(err, "invalid topic name \"%s\"", topic);
    upulsar_tb_snapshot_t *s = calloc(1, sizeof *s);
    if (!s) {
        free(norm);
        return up_seterr(UPULSAR_ERR__NOMEM, "snapshot");
    }
    tb_arena_init(&s->arena, 256 * 1024);
    tb_topic_t *t = tb_topic_get(tb, norm, false);
    free(norm);
    if (!t) {
        *out = s;
        return UPULSAR_OK;
    }
    pthread_mutex_lock(&t->mu);
    uint64_t n = t->n_entries;
    uint64_t ledger = t->ledger_id;
    tb_entry_t **ents = malloc((n ? n : 1) * sizeof *ents);
    if (ents)
        for (uint64_t i = 0; i < n; i++)
            ents[i] = tb_topic_entry(t, i);
    pthread_mutex_unlock(&t->mu);
    if (!ents) {
        upulsar_tb_snapshot_free(s);
        return up_seterr(UPULSAR_ERR__NOMEM, "snapshot");
    }
    /* entries are immutable: decode them without the lock */
    snap_chunks_t *cs = NULL;
    size_t ncs = 0;
    int rc = 0;
    for (uint64_t i = 0; i < n && rc != UPULSAR_ERR__NOMEM; i++) {
        const tb_entry_t *e = ents[i];
        if (!e->data) {
            s->skipped++;
            continue;
        }
        snap_ctx_t x = {s, e, ledger, NULL, 0, 0};
        size_t before = s->n;
        uint32_t cnt;
        rc = snap_chunk(s, &cs, &ncs, e, &x);
        if (rc == 0)
            rc = tb_decode_entry(e->data, e->md_len, e->data + e->md_len, e->payload_len,
                                 snap_add, &x, &cnt);
        else if (rc == 1)
            rc = 0; /* a chunk taken (or dropped) */
        if (rc && rc != UPULSAR_ERR__NOMEM) {
            s->n = before; /* drop a partly decoded entry */
            s->skipped++;
        }
    }
    for (size_t i = 0; i < ncs; i++)
        snap_chunks_free(&cs[i]);
    free(cs);
    free(ents);
    if (rc == UPULSAR_ERR__NOMEM) {
        upulsar_tb_snapshot_free(s);
        return up_seterr(UPULSAR_ERR__NOMEM, "snapshot");
    }
    *out = s;
    return UPULSAR_OK;
}

size_t upulsar_tb_snapshot_count(const upulsar_tb_snapshot_t *s)
{
    return s ? s->n : 0;
}

const upulsar_tb_msg_t *upulsar_tb_snapshot_msg(const upulsar_tb_snapshot_t *s, size_t i)
{
    return s && i < s->n ? &s->msgs[i] : NULL;
}

size_t upulsar_tb_snapshot_skipped(const upulsar_tb_snapshot_t *s)
{
    return s ? s->skipped : 0;
}

void upulsar_tb_snapshot_free(upulsar_tb_snapshot_t *s)
{
    if (!s)
        return;
    free(s->msgs);
    tb_arena_free(&s->arena);
    free(s);
}

/* ---- stats and waiting ------------------------------------------------- */

static tb_topic_t *lookup_topic(upulsar_tb_t *tb, const char *topic, upulsar_err_t *err,
                                bool create)
{
    char *norm = tb_topic_normalize(topic, err);
    if (!norm) {
        up_seterr(*err, "invalid topic name \"%s\"", topic);
        return NULL;
    }
    tb_topic_t *t = tb_topic_get(tb, norm, create);
    free(norm);
    if (!t && create) {
        *err = UPULSAR_ERR__NOMEM;
        up_seterr(*err, "out of memory");
    }
    return t;
}

upulsar_err_t upulsar_tb_topic_stats(upulsar_tb_t *tb, const char *topic,
                                     upulsar_tb_topic_stats_t *out)
{
    if (!tb || !topic || !out)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_topic_stats: NULL argument");
    memset(out, 0, sizeof *out);
    upulsar_err_t err = UPULSAR_OK;
    tb_topic_t *t = lookup_topic(tb, topic, &err, false);
    if (!t)
        return err;
    pthread_mutex_lock(&t->mu);
    *out = t->st;
    out->producers = (int)t->nprods;
    out->consumers = (int)t->ncons;
    pthread_mutex_unlock(&t->mu);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_tb_producer_metadata(upulsar_tb_t *tb, const char *topic, char *buf,
                                          size_t size)
{
    if (!tb || !topic || !buf || !size)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_producer_metadata: bad argument");
    upulsar_err_t err = UPULSAR_OK;
    tb_topic_t *t = lookup_topic(tb, topic, &err, false);
    if (!t)
        return err;
    pthread_mutex_lock(&t->mu);
    snprintf(buf, size, "%s", t->last_producer_metadata);
    pthread_mutex_unlock(&t->mu);
    return UPULSAR_OK;
}

/* Answers kept per topic; later ones are only counted. */
#define TB_MAX_ANSWERS 65536

void tb_topic_note_answer_locked(tb_topic_t *t, int answer)
{
    t->answers_total++;
    if (t->nanswers == t->answers_cap) {
        size_t cap = t->answers_cap ? t->answers_cap * 2 : 64;
        int *na = cap <= TB_MAX_ANSWERS ? realloc(t->answers, cap * sizeof *na) : NULL;
        if (!na)
            return; /* counted, not kept */
        t->answers = na;
        t->answers_cap = cap;
    }
    t->answers[t->nanswers++] = answer;
}

int upulsar_tb_producer_answers(upulsar_tb_t *tb, const char *topic, int *out, size_t max)
{
    if (!tb || !topic || (!out && max))
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_producer_answers: bad argument");
    upulsar_err_t err = UPULSAR_OK;
    tb_topic_t *t = lookup_topic(tb, topic, &err, false);
    if (!t)
        return err ? (int)err : 0;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < max && i < t->nanswers; i++)
        out[i] = t->answers[i];
    uint64_t total = t->answers_total;
    pthread_mutex_unlock(&t->mu);
    return total > (uint64_t)INT32_MAX ? INT32_MAX : (int)total;
}

void tb_topic_note_request_locked(tb_topic_t *t, int type, uint64_t conn, uint64_t producer_id,
                                  uint64_t request_id, const Pulsar__Proto__CommandProducer *in)
{
    t->reqs_total++;
    if (t->nreqs == t->reqs_cap) {
        size_t cap = t->reqs_cap ? t->reqs_cap * 2 : 64;
        upulsar_tb_request_t *nr =
            cap <= TB_MAX_ANSWERS ? realloc(t->reqs, cap * sizeof *nr) : NULL;
        if (!nr)
            return; /* counted, not kept */
        t->reqs = nr;
        t->reqs_cap = cap;
    }
    upulsar_tb_request_t *r = &t->reqs[t->nreqs++];
    r->type = type;
    r->connection = conn;
    r->producer_id = producer_id;
    r->request_id = request_id;
    r->user_provided_name = in && in->has_user_provided_producer_name
                                ? (int)in->user_provided_producer_name
                                : -1;
    r->schema_type = in && in->schema ? (int)in->schema->type : -1;
}

int upulsar_tb_producer_requests(upulsar_tb_t *tb, const char *topic, upulsar_tb_request_t *out,
                                 size_t max)
{
    if (!tb || !topic || (!out && max))
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_producer_requests: bad argument");
    upulsar_err_t err = UPULSAR_OK;
    tb_topic_t *t = lookup_topic(tb, topic, &err, false);
    if (!t)
        return err ? (int)err : 0;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < max && i < t->nreqs; i++)
        out[i] = t->reqs[i];
    uint64_t total = t->reqs_total;
    pthread_mutex_unlock(&t->mu);
    return total > (uint64_t)INT32_MAX ? INT32_MAX : (int)total;
}

upulsar_err_t upulsar_tb_wait_messages(upulsar_tb_t *tb, const char *topic,
                                       uint64_t messages, int timeout_ms)
{
    if (!tb || !topic)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_wait_messages: NULL argument");
    upulsar_err_t err = UPULSAR_OK;
    tb_topic_t *t = lookup_topic(tb, topic, &err, true);
    if (!t)
        return err;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    if (timeout_ms >= 0) {
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    upulsar_err_t rc = UPULSAR_OK;
    pthread_mutex_lock(&t->mu);
    while (t->st.messages < messages) {
        int w = timeout_ms < 0 ? pthread_cond_wait(&t->grew, &t->mu)
                               : pthread_cond_timedwait(&t->grew, &t->mu, &dl);
        if (w == ETIMEDOUT && t->st.messages < messages) {
            rc = up_seterr(UPULSAR_ERR__TIMED_OUT, "%llu of %llu messages on %s",
                           (unsigned long long)t->st.messages,
                           (unsigned long long)messages, t->name);
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* ---- schemas ------------------------------------------------------------ */

static const char *schema_type_name(int type)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&pulsar__proto__schema__type__descriptor, type);
    return v && v->name ? v->name : "?";
}

int tb_topic_schema_locked(tb_topic_t *t, const Pulsar__Proto__Schema *s, bool enforced,
                           int64_t *ver, char *why, size_t why_size)
{
    *ver = -1;
    if (t->schema_enforced >= 0)
        enforced = t->schema_enforced != 0;
    if (!s) {
        if (t->nschemas && enforced) {
            snprintf(why, why_size, "Producers cannot connect or send message without a schema "
                                    "to topics with a schema");
            return PULSAR__PROTO__SERVER_ERROR__IncompatibleSchema;
        }
        return 0;
    }
    const uint8_t *data = s->schema_data.data;
    size_t len = s->schema_data.len;
    for (size_t i = 0; i < t->nschemas; i++) {
        const tb_schema_t *h = &t->schemas[i];
        if (h->type == (int)s->type && h->data_len == len && (!len || !memcmp(h->data, data, len))) {
            *ver = (int64_t)i;
            return 0;
        }
    }
    if (t->nschemas && t->schemas[t->nschemas - 1].type != (int)s->type) {
        char old[32];
        snprintf(old, sizeof old, "%s", schema_type_name(t->schemas[t->nschemas - 1].type));
        for (char *q = old; *q; q++)
            *q = (char)toupper((unsigned char)*q);
        char neu[32];
        snprintf(neu, sizeof neu, "%s", schema_type_name((int)s->type));
        for (char *q = neu; *q; q++)
            *q = (char)toupper((unsigned char)*q);
        snprintf(why, why_size, "Incompatible schema: exists schema type %s, new schema type %s",
                 old, neu);
        return PULSAR__PROTO__SERVER_ERROR__IncompatibleSchema;
    }
    if (t->nschemas == t->schemas_cap) {
        size_t cap = t->schemas_cap ? t->schemas_cap * 2 : 4;
        tb_schema_t *ns = realloc(t->schemas, cap * sizeof *ns);
        if (!ns)
            goto nomem;
        t->schemas = ns;
        t->schemas_cap = cap;
    }
    tb_schema_t *n = &t->schemas[t->nschemas];
    n->type = (int)s->type;
    n->packed_len = pulsar__proto__schema__get_packed_size(s);
    n->packed = malloc(n->packed_len ? n->packed_len : 1);
    n->data = malloc(len ? len : 1);
    n->data_len = len;
    if (!n->packed || !n->data) {
        free(n->packed);
        free(n->data);
        goto nomem;
    }
    pulsar__proto__schema__pack(s, n->packed);
    if (len)
        memcpy(n->data, data, len);
    *ver = (int64_t)t->nschemas++;
    return 0;
nomem:
    snprintf(why, why_size, "out of memory storing the schema");
    return PULSAR__PROTO__SERVER_ERROR__ServiceNotReady;
}

int upulsar_tb_schema_versions(upulsar_tb_t *tb, const char *topic)
{
    if (!tb || !topic)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_schema_versions: NULL argument");
    upulsar_err_t err = UPULSAR_OK;
    tb_topic_t *t = lookup_topic(tb, topic, &err, false);
    if (!t)
        return err ? (int)err : 0;
    pthread_mutex_lock(&t->mu);
    size_t n = t->nschemas;
    pthread_mutex_unlock(&t->mu);
    return (int)n;
}

struct tb_schema_out {
    upulsar_tb_schema_t pub;
    Pulsar__Proto__Schema *unpacked;
    upulsar_property_t props[];
};

upulsar_err_t upulsar_tb_schema_get(upulsar_tb_t *tb, const char *topic, uint64_t version,
                                    upulsar_tb_schema_t **out)
{
    if (!tb || !topic || !out)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "upulsar_tb_schema_get: NULL argument");
    *out = NULL;
    upulsar_err_t err = UPULSAR_OK;
    tb_topic_t *t = lookup_topic(tb, topic, &err, false);
    if (!t)
        return err ? err
                   : up_seterr(UPULSAR_ERR__INVALID_ARG, "%s: no schema version %" PRIu64,
                               topic, version);
    pthread_mutex_lock(&t->mu);
    Pulsar__Proto__Schema *u = NULL;
    bool found = version < t->nschemas;
    if (found)
        u = pulsar__proto__schema__unpack(NULL, t->schemas[version].packed_len,
                                          t->schemas[version].packed);
    pthread_mutex_unlock(&t->mu);
    if (!found)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "%s: no schema version %" PRIu64, topic,
                         version);
    if (!u)
        return up_seterr(UPULSAR_ERR__NOMEM, "schema");
    struct tb_schema_out *o = calloc(1, sizeof *o + u->n_properties * sizeof o->props[0]);
    if (!o) {
        pulsar__proto__schema__free_unpacked(u, NULL);
        return up_seterr(UPULSAR_ERR__NOMEM, "schema");
    }
    o->unpacked = u;
    o->pub.version = version;
    o->pub.type = (int)u->type;
    o->pub.name = u->name ? u->name : "";
    o->pub.data = u->schema_data.data;
    o->pub.data_len = u->schema_data.len;
    for (size_t i = 0; i < u->n_properties; i++) {
        o->props[i].key = u->properties[i]->key ? u->properties[i]->key : "";
        o->props[i].value = u->properties[i]->value ? u->properties[i]->value : "";
    }
    o->pub.properties = o->props;
    o->pub.properties_cnt = u->n_properties;
    *out = &o->pub;
    return UPULSAR_OK;
}

void upulsar_tb_schema_free(upulsar_tb_schema_t *s)
{
    if (!s)
        return;
    struct tb_schema_out *o = (struct tb_schema_out *)s; /* pub is its first member */
    pulsar__proto__schema__free_unpacked(o->unpacked, NULL);
    free(o);
}

/* Set the topic policy at @p off in @p topic's tb_topic_t (an int) to
 * @p v, creating the topic if needed; @p ok says whether the caller's
 * arguments were valid, @p fn names the function in the error. */
static upulsar_err_t set_topic_policy(upulsar_tb_t *tb, const char *topic, bool ok, size_t off,
                                      int v, const char *fn)
{
    if (!tb || !topic || !ok)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "%s: bad argument", fn);
    upulsar_err_t err = UPULSAR_OK;
    tb_topic_t *t = lookup_topic(tb, topic, &err, true);
    if (!t)
        return err;
    pthread_mutex_lock(&t->mu);
    *(int *)(void *)((char *)t + off) = v;
    pthread_mutex_unlock(&t->mu);
    return UPULSAR_OK;
}

upulsar_err_t upulsar_tb_set_schema_validation_enforced(upulsar_tb_t *tb, const char *topic,
                                                        int on)
{
    return set_topic_policy(tb, topic, on >= -1 && on <= 1, offsetof(tb_topic_t, schema_enforced),
                            on, "upulsar_tb_set_schema_validation_enforced");
}

upulsar_err_t upulsar_tb_set_deduplication(upulsar_tb_t *tb, const char *topic, int on)
{
    return set_topic_policy(tb, topic, on >= -1 && on <= 1, offsetof(tb_topic_t, dedup_policy),
                            on, "upulsar_tb_set_deduplication");
}

upulsar_err_t upulsar_tb_set_max_message_size(upulsar_tb_t *tb, const char *topic, int bytes)
{
    return set_topic_policy(tb, topic, bytes >= 0, offsetof(tb_topic_t, max_msg_policy), bytes,
                            "upulsar_tb_set_max_message_size");
}

bool tb_topic_dedup_locked(const upulsar_tb_t *tb, const tb_topic_t *t)
{
    return t->dedup_policy >= 0 ? t->dedup_policy != 0 : tb->opts.deduplication != 0;
}
