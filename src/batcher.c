/* batcher.c -- on the producer's loop: draining the ring into entries.
 * The batch window (up_rp_pump), each record read (record.c) and checked
 * (explicit sequence id, a failed producer, the broker's size, chunking)
 * and handed to the producer's batcher (batcher.h); the batch objects, and
 * closing a batch into a framed SEND entry for the pending queue. */
#include <stdlib.h>
#include <string.h>

#include "batcher.h"
#include "crc32c.h"

const up_batcher_t *up_batcher_for(const struct upulsar_conf *cf)
{
    if (!cf->batching_enabled)
        return &up_batcher_single;
    if (cf->batching_type == UP_BATCH_KEY_BASED)
        return &up_batcher_key;
    return &up_batcher_default;
}

/* ---- batch objects ---- */

/* A new batch's buffers: room for the head and a few KiB of records, and
 * for a few messages; they grow geometrically (up_batch_grow) up to what
 * the producer's batch limits need, and keep their size in the pool. */
#define BATCH_BUF0 (HDR_ROOM + 4096u)
#define BATCH_DONE0 16u

/* Bytes @p b holds (what the pool counts). */
static size_t batch_bytes(const up_batch_t *b)
{
    return sizeof *b + b->cap + b->zcap + (size_t)b->done_cap * sizeof *b->done + b->repl_cap +
           b->kkey_cap;
}

/* The next capacity of a buffer of @p cur that must hold @p need: double,
 * but not past @p hint unless @p need is larger. */
static size_t grow_to(size_t cur, size_t need, size_t hint)
{
    size_t n = cur > SIZE_MAX / 2 ? SIZE_MAX : cur * 2;
    if (n > hint)
        n = hint;
    return n < need ? need : n;
}

static void batch_free(up_batch_t *b)
{
    free(b->buf);
    free(b->zbuf);
    free(b->done);
    free(b->repl);
    free(b->kkey);
    free(b);
}

static void pool_publish(up_loop_t *l)
{
    atomic_store_explicit(&l->pool_bytes_pub, l->pool_bytes, memory_order_relaxed);
}

/* @p b (retired, no queue points at it) into @p l's pool, or freed. */
static void pool_put(up_loop_t *l, up_batch_t *b)
{
    size_t sz = batch_bytes(b), max = l->pool_max;
    /* idle buffers are kept only while the memory budget has room for them
     * too: under a full budget what batches free goes back to the heap,
     * for the batches its messages are written into next */
    int64_t lim = l->client->conf.memory_limit_bytes;
    if (lim > 0) {
        int64_t room = lim - atomic_load_explicit(&l->client->mem_used, memory_order_relaxed);
        if (room < (int64_t)max)
            max = room > 0 ? (size_t)room : 0;
    }
    if (l->pool_bytes + sz > max) {
        batch_free(b);
        return;
    }
    b->next = l->pool;
    b->rp = NULL;
    l->pool = b;
    l->pool_bytes += sz;
    pool_publish(l);
}

void up_batch_pool_trim(up_loop_t *l)
{
    /* pool_low bytes stayed in the pool since the last trim: not needed */
    size_t floor = l->pool_max / 4 < UP_POOL_FLOOR ? l->pool_max / 4 : UP_POOL_FLOOR;
    size_t unused = l->pool_low < l->pool_bytes ? l->pool_low : l->pool_bytes;
    size_t target = l->pool_bytes - (unused > floor ? unused - floor : 0);
    while (l->pool && l->pool_bytes > target) {
        up_batch_t *b = l->pool;
        l->pool = b->next;
        l->pool_bytes -= batch_bytes(b);
        batch_free(b);
    }
    l->pool_low = l->pool_bytes;
    pool_publish(l);
}

void up_batch_pool_free(up_loop_t *l)
{
    while (l->pool) {
        up_batch_t *b = l->pool;
        l->pool = b->next;
        batch_free(b);
    }
    l->pool_bytes = l->pool_low = 0;
    /* connections of the client's pool outlive the loop: a batch their
     * queues give back from now on is freed, not pooled */
    l->pool_max = 0;
    pool_publish(l);
}

void up_batch_unref(up_batch_t *b)
{
    if (--b->outq_refs > 0 || !b->retired)
        return;
    if (!b->rp) {
        batch_free(b);
        return;
    }
    pool_put(b->loop, b);
}

void up_batch_retire(up_rp_t *rp, up_batch_t *b)
{
    b->retired = true;
    if (b->outq_refs == 0)
        pool_put(rp->loop, b);
}

void up_batch_free_chain(up_batch_t *b)
{
    while (b) {
        up_batch_t *n = b->next;
        if (b->outq_refs > 0) {
            b->rp = NULL; /* the connection queue frees it */
            b->retired = true;
        } else {
            batch_free(b);
        }
        b = n;
    }
}

up_batch_t *up_batch_get(up_rp_t *rp)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    up_loop_t *l = rp->loop;
    up_batch_t *b = l->pool;
    if (b) {
        l->pool = b->next;
        l->pool_bytes -= batch_bytes(b);
        if (l->pool_bytes < l->pool_low)
            l->pool_low = l->pool_bytes;
        pool_publish(l);
    } else {
        b = calloc(1, sizeof *b);
        if (!b)
            return NULL;
        b->cap = BATCH_BUF0;
        b->done_cap = BATCH_DONE0;
        b->buf = malloc(b->cap);
        b->done = malloc((size_t)b->done_cap * sizeof *b->done);
        if (!b->buf || !b->done) {
            batch_free(b);
            return NULL;
        }
    }
    b->cap_hint = HDR_ROOM + (size_t)cf->batch_max_bytes + 1024;
    b->done_hint = (uint32_t)cf->batch_max_messages;
    b->next = NULL;
    b->rec_len = 0;
    b->n = 0;
    b->mem_bytes = b->payload_bytes = 0;
    b->deliver_at = 0;
    b->nrepl = 0;
    b->repl_len = 0;
    b->kkind = 0;
    b->kpk = false;
    b->chunk = UP_CHUNK_NONE;
    b->checksum_resends = 0;
    b->retired = false;
    b->outq_refs = 0;
    b->rp = rp;
    b->loop = l;
    b->frame = NULL;
    b->frame_len = 0;
    return b;
}

bool up_batch_grow(up_batch_t *b, size_t total)
{
    if (b->n >= b->done_cap) {
        size_t nd = grow_to(b->done_cap, (size_t)b->n + 1, b->done_hint);
        up_done_t *d = realloc(b->done, nd * sizeof *d);
        if (!d)
            return false;
        b->done = d;
        b->done_cap = (uint32_t)nd;
    }
    if (b->cap < total) {
        size_t cap = grow_to(b->cap, total, b->cap_hint);
        uint8_t *nb = realloc(b->buf, cap);
        if (!nb)
            return false;
        b->buf = nb;
        b->cap = cap;
    }
    return true;
}

/* The key @p b's entry carries (MessageMetadata ordering_key if @p m has
 * one, else partition_key), which Key_Shared subscriptions route entries
 * by: every message's in key_based batches, the first message's in default
 * ones (as the official clients do). Returns false when out of memory. */
bool up_batch_key(up_batch_t *b, const up_smm_t *m)
{
    int kind = m->okey ? 2 : m->key ? 1 : 0;
    const char *k = kind == 2 ? (const char *)m->okey : m->key;
    size_t klen = kind == 2 ? m->okey_len : kind == 1 ? m->key_len : 0;
    /* with an ordering key the entry carries the partition key too (as the
     * official clients copy both from the first message) */
    bool pk = kind == 2 && m->key;
    if (klen > UPULSAR_MAX_KEY_BYTES || (pk && m->key_len > UPULSAR_MAX_KEY_BYTES))
        return false; /* upulsar_send() refused such keys already */
    size_t need = klen + 1 + (pk ? (size_t)m->key_len + 1 : 0);
    if (b->kkey_cap < need) {
        char *nk = realloc(b->kkey, need);
        if (!nk)
            return false;
        b->kkey = nk;
        b->kkey_cap = need;
    }
    if (klen && k) {
        /* kkey is allocated whenever kkey_cap > 0 (need >= 1 here)
         * NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
        memcpy(b->kkey, k, klen);
    }
    b->kkey[klen] = '\0';
    if (pk) {
        /* as above: kkey holds need bytes
         * NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
        memcpy(b->kkey + klen + 1, m->key, m->key_len);
        b->kkey[klen + 1 + m->key_len] = '\0';
    }
    b->kkey_len = klen;
    b->kkind = kind;
    b->kpk = pk;
    b->kb64 = m->key && m->key_b64;
    return true;
}

up_batch_t *up_batcher_take_open(up_rp_t *rp)
{
    up_batch_t *l = rp->open;
    rp->open = NULL;
    rp->kb.n = 0;
    rp->kb.bytes = 0;
    return l;
}

/* ---- closing a batch into an entry ---- */

void up_send_cmd(const up_rp_t *rp, const up_batch_t *b, int32_t n, up_cmd_t *cmd,
                 Pulsar__Proto__CommandSend *send)
{
    cmd->type = UP_CMD(SEND);
    cmd->send = send;
    send->producer_id = rp->producer_id;
    send->sequence_id = b->first_seq;
    send->has_num_messages = 1;
    send->num_messages = n;
}

/* Frame entry @p b and append it to the pending queue (written at once when
 * the producer is ready). Its payload is the @p plen bytes at
 * *@p bufp + @p room; the header (sizes, SEND, magic, CRC32C, metadata,
 * then @p md_props: a property block in SingleMessageMetadata's encoding,
 * sent as MessageMetadata.properties) goes right in front of it. A header
 * larger than @p room moves the payload up, growing the buffer (*@p capp)
 * if it must; the buffer keeps its size when the batch is reused, so this
 * allocates only when long keys first appear. Returns 0 or NOMEM. */
upulsar_err_t up_entry_frame(up_rp_t *rp, up_batch_t *b, const up_cmd_t *cmd, const up_md_t *md,
                             const uint8_t *md_props, size_t md_props_len, uint8_t **bufp,
                             size_t *capp, size_t room, size_t plen)
{
    size_t cs = protobuf_c_message_get_packed_size(&cmd->base);
    size_t mp = protobuf_c_message_get_packed_size(&md->base);
    size_t ms = mp + md_props_len;
    size_t hdr = 4 + 4 + cs + 2 + 4 + 4 + ms;
    if (hdr > room) {
        if (*capp < hdr + plen) {
            size_t cap = hdr + plen + 1024;
            uint8_t *nb = realloc(*bufp, cap);
            if (!nb)
                return UPULSAR_ERR__NOMEM;
            *bufp = nb;
            *capp = cap;
        }
        memmove(*bufp + hdr, *bufp + room, plen);
        room = hdr;
    }
    uint8_t *payload = *bufp + room;
    uint8_t *start = payload - hdr, *p = start;
    up_put_be32(p, (uint32_t)(hdr - 4 + plen));
    up_put_be32(p + 4, (uint32_t)cs);
    protobuf_c_message_pack(&cmd->base, p + 8);
    p += 8 + cs;
    p[0] = 0x0e;
    p[1] = 0x01;
    uint8_t *crc_at = p + 2;
    p += 6;
    up_put_be32(p, (uint32_t)ms);
    protobuf_c_message_pack(&md->base, p + 4);
    if (md_props_len) {
        memcpy(p + 4 + mp, md_props, md_props_len);
        up_props_retag(p + 4 + mp, md_props_len, UP_TAG_MD_PROPS);
    }
    up_put_be32(crc_at, up_crc32c(up_crc32c(0, p, 4 + ms), payload, plen));
    b->frame = start;
    b->frame_len = hdr + plen;
    up_rp_queue_entry(rp, b);
    return UPULSAR_OK;
}

/* Close batch @p b: MessageMetadata (its key, deliver_at, replicate_to),
 * compression, frame, queue. */
int up_batch_close(up_rp_t *rp, up_batch_t *b)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    uint8_t **bufp = &b->buf;
    size_t *capp = &b->cap;
    size_t plen = b->rec_len;
    upulsar_err_t err;
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    if (cf->compression != UP_COMP_NONE) {
        size_t bound = up_compress_bound(cf->compression, plen);
        if (bound > SIZE_MAX - HDR_ROOM) { /* HDR_ROOM + bound would wrap */
            err = UPULSAR_ERR__COMPRESSION;
            goto fail;
        }
        if (b->zcap < HDR_ROOM + bound) {
            /* geometric, like the record buffer: up to what a full batch
             * needs (the bound of the records' buffer) */
            size_t zhint = HDR_ROOM + up_compress_bound(cf->compression, b->cap_hint);
            size_t zcap = grow_to(b->zcap, HDR_ROOM + bound, zhint);
            uint8_t *z = realloc(b->zbuf, zcap);
            if (!z) {
                err = UPULSAR_ERR__NOMEM;
                goto fail;
            }
            b->zbuf = z;
            b->zcap = zcap;
        }
        long cl = up_compress(cf->compression, b->buf + HDR_ROOM, plen, b->zbuf + HDR_ROOM, bound);
        if (cl < 0) {
            err = UPULSAR_ERR__COMPRESSION;
            goto fail;
        }
        /* data the codec makes larger could push the entry past the
         * broker's limit: it goes uncompressed then (the metadata says so) */
        if ((size_t)cl < plen || batch_md_bound(b) + (size_t)cl <= broker_max(rp)) {
            md.compression = (Pulsar__Proto__CompressionType)cf->compression;
            md.has_compression = 1;
            md.uncompressed_size = (uint32_t)plen;
            md.has_uncompressed_size = 1;
            bufp = &b->zbuf;
            capp = &b->zcap;
            plen = (size_t)cl;
        }
    }
    md.producer_name = rp->name;
    md.sequence_id = b->first_seq;
    md.publish_time = up_wall_ms();
    md.has_schema_version = rp->schema_version.len != 0; /* as the official clients */
    md.schema_version = (ProtobufCBinaryData){rp->schema_version.len, rp->schema_version.v};
    md.has_num_messages_in_batch = 1;
    md.num_messages_in_batch = (int32_t)b->n;
    md.has_highest_sequence_id = 1;
    md.highest_sequence_id = b->last_seq;
    char *repl[UPULSAR_MAX_REPLICATION_CLUSTERS];
    if (b->kkind == 1) {
        md.partition_key = b->kkey;
    } else if (b->kkind == 2) {
        if (b->kpk)
            md.partition_key = b->kkey + b->kkey_len + 1;
        md.has_ordering_key = 1;
        md.ordering_key.data = (uint8_t *)b->kkey;
        md.ordering_key.len = b->kkey_len;
    }
    if (md.partition_key && b->kb64) /* the first message's binary key */
        md.has_partition_key_b64_encoded = md.partition_key_b64_encoded = 1;
    if (b->deliver_at) {
        md.has_deliver_at_time = 1;
        md.deliver_at_time = (int64_t)b->deliver_at;
    }
    if (b->nrepl) {
        size_t off = 0;
        for (uint32_t i = 0; i < b->nrepl && i < UPULSAR_MAX_REPLICATION_CLUSTERS; i++) {
            repl[i] = b->repl + off;
            off += strlen(repl[i]) + 1;
        }
        md.replicate_to = repl;
        md.n_replicate_to = b->nrepl;
    }

    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSend send = PULSAR__PROTO__COMMAND_SEND__INIT;
    up_send_cmd(rp, b, (int32_t)b->n, &cmd, &send);
    send.has_highest_sequence_id = 1;
    send.highest_sequence_id = b->last_seq;

    err = up_entry_frame(rp, b, &cmd, &md, NULL, 0, bufp, capp, HDR_ROOM, plen);
    if (err == UPULSAR_OK)
        return 0;
fail:;
    up_detail_t *det =
        err == UPULSAR_ERR__COMPRESSION
            ? up_rp_detail(rp, "the codec failed to compress a batch of %u messages", b->n)
            : up_rp_detail(rp, "out of memory while framing a batch of %u messages", b->n);
    up_rp_resolve_batch(rp, b, err, 0, 0, det);
    up_detail_put(&rp->client->futures, det);
    up_batch_retire(rp, b);
    return -1;
}

/* ---- the drain ---- */

/* Would closing what @p rp has open leave no room under
 * max.inflight.batches for one more entry? (The default batchers have one
 * open batch at most, key_based one per key.) */
static bool no_room_after_close(const up_rp_t *rp, size_t max_inflight)
{
    size_t n = rp->npend + 1;
    if (!rp->batcher->inline_add)
        for (const up_batch_t *b = rp->open->next; b; b = b->next)
            n++;
    return n >= max_inflight;
}

/* Is the message of @p v an entry of its own (not joining, or with
 * entry-level metadata), or chunks (by the size it would take alone; the
 * drain's chunk decision is the exact one)? Out of line: asked only when
 * max.inflight.batches is near. */
static __attribute__((noinline)) bool own_entry(const up_rp_t *rp, const up_rec_view_t *v,
                                                bool joins)
{
    const up_smm_t *m = &v->m;
    return !joins || (v->meta.mflags & UP_META_SOLO) ||
           md_bound(m->okey ? m->okey_len : m->key ? m->key_len : 0,
                    (size_t)v->meta.repl_len + 2u * v->meta.nrepl) +
                   up_record_size(m) >
               broker_max(rp);
}

/* Take one record off the ring into the open batch (or fail it); returns
 * its cells. 0 and *@p stall when the record must wait in the ring: taking
 * it would close what is open (full, or it is an entry of its own, or
 * chunks) and that would leave no room under max.inflight.batches for the
 * batch it would be in. */
static uint64_t drain_one(up_rp_t *rp, uint64_t now, bool *stall)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    up_rec_view_t v;
    upulsar_err_t err = UPULSAR_OK;
    up_detail_t *det = NULL; /* why it failed, when not just NOMEM */
    int rc = up_rec_read(&rp->ring, rp->ring.ctail, &rp->scratch, &rp->scratch_cap, &v);
    if (rc) {
        /* out of memory making a wrapped record contiguous (a record the
         * callers wrote is never malformed) */
        err = (upulsar_err_t)rc;
        det = up_rp_detail(rp, "%s while batching the message", upulsar_err_str(err));
        uint64_t cells = up_rp_fail_ring_head(rp, err, det);
        up_detail_put(&rp->client->futures, det);
        return cells;
    }
    up_smm_t *m = &v.m;
    m->sequence_id = rp->next_seq;
    /* a message the batcher does not batch (key_based: one with its own
     * sequence id or entry-level metadata) is an entry of its own; with ids
     * given at close, after what is open has taken its ids */
    const up_batcher_t *bt = rp->batcher;
    bool joins = !(v.meta.mflags & bt->solo_flags);
    /* closing what is open would reach max.inflight.batches (rare: checked
     * once here, the stalls below only then) */
    bool tight = __builtin_expect(rp->open != NULL &&
                                      no_room_after_close(rp, (size_t)cf->max_inflight_batches),
                                  0);
    if (tight && own_entry(rp, &v, joins)) {
        *stall = true;
        return 0;
    }
    if (!joins && bt->ids_at_close) {
        if (rp->open)
            bt->close(rp);
        v.meta.mflags |= UP_META_SOLO;
        m->sequence_id = rp->next_seq;
    }
    if (joins && bt->ids_at_close)
        m->no_seq = true; /* ids are given per batch when they close */
    if (v.meta.mflags & UP_META_SEQ) {
        /* explicit ids must increase (Pulsar de-duplication drops the rest) */
        if (v.meta.seq < rp->next_seq) {
            err = UPULSAR_ERR__INVALID_ARG;
            det = up_rp_detail(rp, "explicit sequence_id %llu is below %llu, the next one this "
                                "producer may use",
                            (unsigned long long)v.meta.seq, (unsigned long long)rp->next_seq);
            goto out_fail;
        }
        m->sequence_id = v.meta.seq;
    }
    size_t rs = up_record_size(m);
    size_t bmax = broker_max(rp);
    /* the entry this message would make on its own */
    size_t alone = md_bound(m->okey ? m->okey_len : m->key ? m->key_len : 0,
                            (size_t)v.meta.repl_len + 2u * v.meta.nrepl) + rs;

    int failed = atomic_load_explicit(&rp->failed, memory_order_relaxed);
    if (failed) {
        err = (upulsar_err_t)failed;
        det = up_rp_detail(rp, "producer failed (%s) before the message was sent",
                        upulsar_err_name(err));
        goto out_fail;
    }
    if (alone > bmax && !cf->chunking_enabled) {
        /* upulsar_send() checked against the limit it knew; the broker's
         * may have shrunk since: this message fails, alone */
        err = UPULSAR_ERR__MSG_TOO_LARGE;
        det = up_rp_detail(rp, "message of %u bytes makes an entry of up to %zu bytes with its "
                            "metadata, over the broker's max_message_size %zu (learnt after the "
                            "message was accepted; chunking.enabled is off)",
                        v.m.payload_size, alone, bmax);
        goto out_fail;
    }
    if (alone > bmax) {
        if (rp->open) {
            bt->close(rp);
            if (!(v.meta.mflags & UP_META_SEQ))
                m->sequence_id = rp->next_seq; /* key_based: ids given at close */
        }
        err = up_chunk_send(rp, m, &v, now);
        if (err == UPULSAR_ERR__MSG_TOO_LARGE)
            det = up_rp_detail(rp, "message of %u bytes cannot be sent in chunks of the broker's "
                                "max_message_size %zu (learnt after the message was accepted): "
                                "its keys and properties take up to %zu bytes of every chunk",
                            v.m.payload_size, bmax, up_chunk_md_bound(m, &v));
        if (err)
            goto out_fail;
        rp->next_seq = m->sequence_id + 1;
        if (v.ext.free_cb)
            v.ext.free_cb((void *)v.ext.payload, v.ext.opaque);
        return v.ncells;
    }
    bool solo = v.meta.mflags & UP_META_SOLO;
    const up_add_t add = {.v = &v, .rs = rs, .bmax = bmax, .now = now, .solo = solo};
    /* closing what is open would reach max.inflight.batches: it closes (at
     * the end of the pump) and this record waits in the ring, without a
     * sequence id, for a receipt; an open batch never waits at the limit
     * holding ids that could expire unsent */
    if (__builtin_expect(tight, 0) && rp->open &&
        (!joins || bt->inline_add ? up_batcher_default_would_close(rp, &add)
                                  : bt->would_close(rp, &add))) {
        *stall = true; /* read again then (its payload not released) */
        return 0;
    }
    /* the default batcher's add (and any batcher's for a message that is
     * an entry of its own) inline; another batcher's through its table */
    if (!joins || bt->inline_add)
        err = up_default_add(rp, &add);
    else
        err = bt->add(rp, &add);
    if (err)
        goto out_fail;
    if (v.ext.free_cb)
        v.ext.free_cb((void *)v.ext.payload, v.ext.opaque);
    if (solo) {
        rp->open->ring_end = rp->ring.ctail + v.ncells;
        up_batcher_default_close(rp);
    }
    return v.ncells;
out_fail:;
    bool dr = cf->dr_cb != NULL;
    if (v.ext.free_cb && !dr)
        v.ext.free_cb((void *)v.ext.payload, v.ext.opaque);
    up_rp_limits_release(rp, 1, up_rec_mem(v.ncells, v.flags, v.m.payload_size));
    if (!det)
        det = up_rp_detail(rp, "%s while batching the message", upulsar_err_str(err));
    resolve_one(v.future, v.ext.cb, v.ext.opaque, err, NULL, det);
    if (dr) /* its report (payload still in the ring), then its free_cb */
        up_dr_view(rp, &v, err, det);
    up_detail_put(&rp->client->futures, det);
    up_stats_failed(rp, err, 1);
    return v.ncells;
}

/* The drain's prefetch: how far ahead of the read position, and the cells
 * of one cache line (three lines per record cover a 100-byte message's
 * record, five cells) */
#define PF_CELLS (512u / UP_RING_CELL)
#define PF_LINE_CELLS (64u / UP_RING_CELL)

static void set_armed(up_rp_t *rp, int v)
{
    if (atomic_load_explicit(&rp->armed, memory_order_relaxed) != v)
        atomic_store_explicit(&rp->armed, v, memory_order_relaxed);
}

bool up_rp_pump(up_rp_t *rp, uint64_t now, uint64_t *deadline)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    up_ring_t *r = &rp->ring;
    bool consumed = false;
    size_t max_inflight = (size_t)cf->max_inflight_batches;
    unsigned budget = 4096; /* records per call, so other producers get a turn */
    /* Nothing is framed before the producer was created once: its first
     * sequence id (initial.sequence.id, or the broker's last_sequence_id + 1)
     * and its name come from PRODUCER_SUCCESS. Until then (lazy start,
     * partition growth, a first creation that failed) records wait in the
     * ring, where send.timeout.ms still applies; the attach runs the pump. */
    rp->holding = !up_rp_created(rp);
    if (rp->holding) {
        set_armed(rp, 1);
        return false;
    }
    const up_batcher_t *bt = rp->batcher;
    uint64_t delay = (uint64_t)cf->batch_max_delay_us;
    /* A deadline is taken as reached `ahead` before it: the loop's learnt
     * wake-up delay (loop.h wake_ahead_us), at most half the delay, so a
     * window ends by its deadline and not a wake-up after it. The loop is
     * given the deadline less `ahead`, the time it is reached, so it never
     * wakes for a deadline not reached yet; windows are set from `now`. */
    uint64_t ahead = up_deadline_ahead(rp->loop->wake_ahead_us, delay);
    uint64_t due = now + ahead;
    /* batch.mode=adaptive: the connection can take a batch now when nothing
     * of this producer is in flight; then what is there goes at once */
    bool go_now = cf->batch_mode == UP_BATCH_ADAPTIVE && rp->npend == 0;
    int armed = 0;
    /* Batch window: records stay in the ring until it ends or a full batch
     * is there, and are then drained in one go; the loop does not chase the
     * callers record by record (that bounces cache lines between cores for
     * every message). linger: the first record seen opens it (the send of
     * that record wakes the loop, see `armed`, so the window starts a wake-up
     * after the send, not when the loop next looks for another reason, up to
     * a whole window later). adaptive: it lasts while batches are
     * in flight (a receipt that empties the pending queue ends it, see
     * producer.c), at most batch.max.delay.ms. */
    if (!rp->open && bt->window && !atomic_load_explicit(&rp->flush_req, memory_order_relaxed) &&
        !go_now) {
        if (up_ring_peek(r)) {
            if (!rp->window_end_us)
                rp->window_end_us = now + delay;
            if (due < rp->window_end_us && up_ring_used(r) < rp->wake_cells) {
                rp->holding = true;
                set_armed(rp, 1);
                if (rp->window_end_us - ahead < *deadline)
                    *deadline = rp->window_end_us - ahead;
                return false;
            }
        } else if (cf->batch_mode == UP_BATCH_ADAPTIVE && delay > 0) {
            /* batches in flight, the ring empty: a record that comes now
             * waits for a receipt, at most until window_end_us (so a
             * send need not wake the loop for it); renewed when it passes
             * (with no delay there is no window: a send wakes the loop).
             * The renewal alone sends nothing: it is not taken early, so
             * an idle wait wakes the loop once a delay, not more often */
            if (!rp->window_end_us || now >= rp->window_end_us)
                rp->window_end_us = now + delay;
            if (rp->window_end_us < *deadline)
                *deadline = rp->window_end_us;
            armed = 1;
        } else {
            rp->window_end_us = 0;
        }
    }
    bool stall = false;
    /* the callers wrote the records on their cores: each record's lines are
     * asked for a few records ahead of the one batched (reading them when
     * their turn comes is the drain's largest stall), up to where head was
     * when the drain began (no line a caller is about to write) */
    uint64_t pf_end = up_ring_head_pos(r);
    while (budget-- && rp->npend < max_inflight && up_ring_peek(r)) {
        uint64_t pf = r->ctail + PF_CELLS;
        if (pf + PF_LINE_CELLS * 3 <= pf_end) {
            __builtin_prefetch(up_ring_cell(r, pf));
            __builtin_prefetch(up_ring_cell(r, pf + PF_LINE_CELLS));
            __builtin_prefetch(up_ring_cell(r, pf + 2 * PF_LINE_CELLS));
            __builtin_prefetch(&r->commit[pf & r->mask]);
        }
        uint64_t cells = drain_one(rp, now, &stall);
        if (stall)
            break;
        up_ring_consume(r, cells);
        if (rp->open)
            rp->open->ring_end = r->ctail;
        consumed = true;
        if (bt->close_each && rp->open)
            bt->close(rp);
    }
    if (consumed)
        up_ring_release(r); /* R2 */
    /* max.inflight.batches bounds what is sent, however the open batch is
     * asked to go (full, a stalled record behind it, its deadline, a
     * flush, adaptive's go_now). The drain leaves nothing open once the
     * limit is reached (it stalls instead, and what is open closes here),
     * and the batchers keep the open batches within the room left
     * (key_based: kb_batch()), so closing them all never passes the limit.
     * Should a batch still be open at the limit, it waits for a receipt
     * (holding, below), a flush asked meanwhile kept. */
    if (rp->open && rp->npend < max_inflight) {
        bool flush = atomic_exchange_explicit(&rp->flush_req, 0, memory_order_acq_rel);
        if (stall || flush || go_now || due >= rp->open_deadline_us ||
            bt->count(rp) >= (uint32_t)cf->batch_max_messages) {
            bt->close(rp);
        } else {
            if (rp->open_deadline_us - ahead < *deadline)
                *deadline = rp->open_deadline_us - ahead;
            armed = 1;
        }
    } else if (rp->open) {
        /* at the limit: waits for a receipt (holding, below) */
    } else if (atomic_load_explicit(&rp->flush_req, memory_order_relaxed) && !up_ring_peek(r)) {
        atomic_store_explicit(&rp->flush_req, 0, memory_order_relaxed);
    }
    if (go_now)
        rp->window_end_us = 0;
    if (rp->npend >= max_inflight && (up_ring_peek(r) || rp->open)) {
        /* max.inflight.batches reached: nothing to do until a receipt
         * (complete_head() clears holding then), so the loop may sleep */
        rp->holding = true;
        armed = 1;
    }
    set_armed(rp, armed);
    if (!up_ring_peek(r)) /* back to the ring's first page; idle pages given back */
        up_rp_mem_rest_back(rp, up_ring_idle(r, now, (uint64_t)cf->queue_idle_release_ms * 1000u));
    if (!rp->open && rp->pend_head == NULL)
        atomic_store_explicit(&rp->resolved_ring_pos, r->ctail, memory_order_release);
    return consumed && up_ring_peek(r);
}
