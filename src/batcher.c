/* batcher.c -- on the producer's loop: the batch objects (their buffers,
 * the loop's pool of them), and closing a batch into a framed SEND entry
 * for the pending queue. The drain that fills them is drain.c. */
#include <stdlib.h>
#include <string.h>

#include "batcher.h"
#include "crc32c.h"
#include "fault.h"

const up_batcher_t *up_batcher_for(const struct upulsar_conf *cf)
{
    if (!cf->batching_enabled)
        return &up_batcher_single;
    if (cf->batching_type == UP_BATCH_KEY_BASED)
        return &up_batcher_key;
    return &up_batcher_default;
}

/* ---- batch objects ---- */

/* A new batch has no buffers: the first record sizes them (exactly, so an
 * entry of one small message, e.g. with batching off, holds little more
 * than it), then they grow geometrically (up_batch_grow) up to what the
 * producer's batch limits need, and keep their size in the pool. The done
 * array starts at BATCH_DONE0 entries. */
#define BATCH_DONE0 4u

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
    free(b->early_msg);
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

/* What @p l's pool may hold now: pool_max, but idle buffers are kept only
 * while the memory budget has room for them too (under a full budget what
 * batches free goes back to the heap, for the batches its messages are
 * written into next). */
static size_t pool_room(const up_loop_t *l)
{
    size_t max = l->pool_max;
    int64_t lim = l->client->conf.memory_limit_bytes;
    if (lim > 0) {
        int64_t room = lim - atomic_load_explicit(&l->client->mem_used, memory_order_relaxed);
        if (room < (int64_t)max)
            max = room > 0 ? (size_t)room : 0;
    }
    return max;
}

/* @p b (retired, no queue points at it) into @p l's pool, or freed. */
static void pool_put(up_loop_t *l, up_batch_t *b)
{
    size_t sz = batch_bytes(b), max = pool_room(l);
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
    /* the spare first: idle since the last trim when no close took it */
    if (l->spare && !l->spare_taken && l->pool_bytes > target) {
        l->pool_bytes -= l->spare_cap;
        free(l->spare);
        l->spare = NULL;
        l->spare_cap = 0;
    }
    l->spare_taken = false;
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
    free(l->spare);
    l->spare = NULL;
    l->spare_cap = 0;
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
    if (b->mem_deferred) { /* resolved while queued: counted until now */
        up_client_mem_release(b->mem_client, b->mem_deferred);
        b->mem_deferred = 0;
    }
    if (!b->rp) { /* its producer is gone */
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
        b = calloc(1, sizeof *b); /* no buffers yet: see BATCH_DONE0 */
        if (!b)
            return NULL;
    }
    b->cap_hint = HDR_ROOM + (size_t)cf->batch_max_bytes + 1024;
    b->done_hint = (uint32_t)cf->batch_max_messages;
    b->next = NULL;
    b->rec_len = 0;
    b->n = 0;
    b->mem_bytes = b->payload_bytes = b->mem_deferred = 0;
    b->nrepl = 0;
    b->repl_len = 0;
    b->kkind = 0;
    b->kpk = false;
    b->kpk_len = 0;
    b->chunk = UP_CHUNK_NONE;
    b->dr_flags = 0;
    b->checksum_resends = 0;
    free(b->early_msg);
    b->early_msg = NULL;
    b->early_err = 0;
    b->retired = false;
    b->outq_refs = 0;
    b->rp = rp;
    b->loop = l;
    b->frame = NULL;
    b->frame_len = 0;
    return b;
}

/* Make *@p buf (*@p cap bytes) hold @p total: grow_to() it. */
static bool grow_buf(uint8_t **buf, size_t *cap, size_t total, size_t hint)
{
    if (*cap >= total)
        return true;
    size_t nc = grow_to(*cap, total, hint);
    uint8_t *nb = realloc(*buf, nc);
    if (!nb)
        return false;
    *buf = nb;
    *cap = nc;
    return true;
}

bool up_batch_zreserve(up_batch_t *b, size_t total, size_t hint)
{
    return grow_buf(&b->zbuf, &b->zcap, total, hint);
}

_Atomic int up_fault_batch_grow_nomem;

bool up_batch_grow(up_batch_t *b, size_t total)
{
    if (up_fault_hit(&up_fault_batch_grow_nomem))
        return false;
    if (b->n >= b->done_cap) {
        size_t nd = b->done_cap ? grow_to(b->done_cap, (size_t)b->n + 1, b->done_hint)
                                : (b->n < BATCH_DONE0 ? BATCH_DONE0 : (size_t)b->n + 1);
        up_done_t *d = realloc(b->done, nd * sizeof *d);
        if (!d)
            return false;
        b->done = d;
        b->done_cap = (uint32_t)nd;
    }
    return grow_buf(&b->buf, &b->cap, total, b->cap_hint);
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
    b->kpk_len = pk ? m->key_len : 0;
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
    /* a batch says how many messages it holds; a plain entry (a message
     * sent alone, a chunk) leaves it out, meaning one, as the official
     * clients do */
    if (b->chunk == UP_CHUNK_NONE) {
        send->has_num_messages = 1;
        send->num_messages = n;
    }
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

/* The compression buffer for @p b: the loop's spare one when @p b has
 * none. */
static void zbuf_from_spare(up_loop_t *l, up_batch_t *b)
{
    if (b->zbuf || !l->spare)
        return;
    b->zbuf = l->spare;
    b->zcap = l->spare_cap;
    l->spare_taken = true;
    l->pool_bytes -= l->spare_cap;
    if (l->pool_bytes < l->pool_low)
        l->pool_low = l->pool_bytes;
    l->spare = NULL;
    l->spare_cap = 0;
    pool_publish(l);
}

/* @p b was compressed and framed: it keeps the buffer its entry is in
 * (swapped into b->buf when that is the compression buffer) and gives the
 * other to the loop as its spare (freed if the loop has one, or the pool
 * is full). Not when a delivery report will read the records back from
 * b->buf (batch_records() in future.c). */
static void zbuf_to_spare(up_loop_t *l, up_batch_t *b, bool framed_in_zbuf)
{
    if (framed_in_zbuf) {
        uint8_t *t = b->buf;
        size_t tc = b->cap;
        b->buf = b->zbuf;
        b->cap = b->zcap;
        b->zbuf = t;
        b->zcap = tc;
    }
    if (!b->zbuf)
        return;
    if (!l->spare && l->pool_bytes + b->zcap <= pool_room(l)) {
        l->spare = b->zbuf;
        l->spare_cap = b->zcap;
        l->pool_bytes += b->zcap;
        pool_publish(l);
    } else {
        free(b->zbuf);
    }
    b->zbuf = NULL;
    b->zcap = 0;
}

/* Close batch @p b: MessageMetadata (its key, replicate_to),
 * compression, frame, queue. */
int up_batch_close(up_rp_t *rp, up_batch_t *b)
{
    if (b->n == 0) {
        /* the add that opened it failed (out of memory) and left it empty,
         * perhaps without buffers: there is nothing to send */
        up_batch_retire(rp, b);
        return -1;
    }
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
        /* geometric, like the record buffer: up to what a full batch needs
         * (the bound of the records' buffer) */
        zbuf_from_spare(rp->loop, b);
        if (!up_batch_zreserve(b, HDR_ROOM + bound,
                               HDR_ROOM + up_compress_bound(cf->compression, b->cap_hint))) {
            err = UPULSAR_ERR__NOMEM;
            goto fail;
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

    bool zframed = bufp == &b->zbuf;
    err = up_entry_frame(rp, b, &cmd, &md, NULL, 0, bufp, capp, HDR_ROOM, plen);
    if (err == UPULSAR_OK) {
        if (cf->compression != UP_COMP_NONE && !cf->dr_cb)
            zbuf_to_spare(rp->loop, b, zframed);
        return 0;
    }
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
