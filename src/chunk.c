/* chunk.c -- on the producer's loop: a message sent alone, as a plain
 * entry (not a batch) whose MessageMetadata carries the message, as the
 * official clients send a message they do not batch (batching.enabled
 * false, or a delayed message); and with chunking.enabled a message
 * larger than the broker's max_message_size, as chunks, each an entry of
 * its own with the message's sequence id and a uuid naming the message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "producer_int.h"

/* Upper bound of the MessageMetadata of each chunk of the message @p v
 * (its fields @p m): the fixed fields, its uuid, both keys, its properties
 * and its replication clusters (every chunk repeats them). */
size_t up_chunk_md_bound(const up_smm_t *m, const up_rec_view_t *v)
{
    return UP_MD_SCALARS + UP_NAME_BOUND + UP_UUID_BOUND + (m->key ? m->key_len : 0) +
           (m->okey ? m->okey_len : 0) + m->props_len +
           (size_t)v->meta.repl_len + 2u * v->meta.nrepl;
}

/* Build and queue the SEND of one chunk, its payload already at
 * b->buf + @p room (b->rec_len bytes); @p key is a NUL-terminated copy of
 * m's partition key (NULL: none). */
typedef struct chunk_msg {
    const char *key;     /* NUL-terminated partition key, NULL: none */
    const char *uuid;
    uint64_t publish_time; /* one for every chunk, as the official clients */
    int codec;           /* the whole message's compression, 0: none */
    size_t uncompressed; /* its payload size before compression */
    size_t total;        /* bytes split into chunks (compressed if codec) */
    int32_t n;           /* chunks; 1: sent as one plain entry */
} chunk_msg_t;

static upulsar_err_t close_chunk(up_rp_t *rp, up_batch_t *b, const up_smm_t *m,
                                 const up_rec_view_t *v, const chunk_msg_t *cm, size_t room,
                                 int32_t id)
{
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    /* the message's delayed delivery and replication, on every chunk (the
     * broker and the consumer take them from the chunks' metadata) */
    if (v->meta.deliver_at) {
        md.has_deliver_at_time = 1;
        md.deliver_at_time = (int64_t)v->meta.deliver_at;
    }
    char *repl[UPULSAR_MAX_REPLICATION_CLUSTERS];
    if (v->meta.nrepl) {
        const char *name = v->names;
        for (uint32_t i = 0; i < v->meta.nrepl && i < UPULSAR_MAX_REPLICATION_CLUSTERS; i++) {
            repl[i] = (char *)name;
            name += strlen(name) + 1;
        }
        md.replicate_to = repl;
        md.n_replicate_to = v->meta.nrepl < UPULSAR_MAX_REPLICATION_CLUSTERS
                                ? v->meta.nrepl
                                : UPULSAR_MAX_REPLICATION_CLUSTERS;
    }
    md.producer_name = rp->name;
    md.sequence_id = b->first_seq;
    md.publish_time = cm->publish_time;
    md.has_schema_version = rp->schema_version.len != 0; /* as the official clients */
    md.schema_version = (ProtobufCBinaryData){rp->schema_version.len, rp->schema_version.v};
    if (cm->codec) {
        /* every chunk names the whole message's codec and size: the
         * consumer joins the chunks, then decompresses */
        md.has_compression = md.has_uncompressed_size = 1;
        md.compression = (Pulsar__Proto__CompressionType)cm->codec;
        md.uncompressed_size = (uint32_t)cm->uncompressed;
    }
    if (cm->n > 1) {
        md.uuid = (char *)cm->uuid;
        md.has_chunk_id = md.has_num_chunks_from_msg = md.has_total_chunk_msg_size = 1;
        md.chunk_id = id;
        md.num_chunks_from_msg = cm->n;
        md.total_chunk_msg_size = (int32_t)cm->total;
    }
    md.partition_key = (char *)cm->key;
    if (cm->key && m->key_b64) /* a binary key, as its base64 text */
        md.has_partition_key_b64_encoded = md.partition_key_b64_encoded = 1;
    if (m->okey) {
        md.has_ordering_key = 1;
        md.ordering_key.data = (uint8_t *)m->okey;
        md.ordering_key.len = m->okey_len;
    }
    if (m->event_time) {
        md.has_event_time = 1;
        md.event_time = m->event_time;
    }
    if (m->null_value)
        md.has_null_value = md.null_value = 1;
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSend send = PULSAR__PROTO__COMMAND_SEND__INIT;
    up_send_cmd(rp, b, 1, &cmd, &send);
    if (cm->n > 1) {
        send.has_is_chunk = 1;
        send.is_chunk = 1;
    }
    return up_entry_frame(rp, b, &cmd, &md, m->props, m->props_len, &b->buf, &b->cap, room,
                           b->rec_len);
}

/* The message's payload compressed with the producer's codec, as the
 * official clients compress a message before they split it: straight into
 * the entry buffer of batch @p b, at @p room (where a whole message's
 * payload goes; reused from the pool: no allocation per message once it is
 * large enough, and no second buffer kept). NULL (send it as it is, copied
 * over what the try left) when there is no codec, the codec does not make
 * it smaller, or memory is short. */
static const uint8_t *compress_whole(up_rp_t *rp, up_batch_t *b, size_t room,
                                     const void *payload, size_t len, size_t *zlen)
{
    const struct upulsar_conf *cf = rp_conf(rp);
    if (cf->compression == UP_COMP_NONE || len == 0)
        return NULL;
    size_t bound = up_compress_bound(cf->compression, len);
    if (bound == 0 || bound > SIZE_MAX - room || !up_batch_reserve(b, room + bound))
        return NULL;
    long cl = up_compress(cf->compression, payload, len, b->buf + room, bound);
    if (cl <= 0 || (size_t)cl >= len)
        return NULL;
    *zlen = (size_t)cl;
    return b->buf + room;
}

/* Send one message alone: compressed first (the producer's codec), then,
 * if its metadata and payload do not fit in the broker's max_message_size
 * (only with chunking.enabled), split: uuid "<producer>-<sequence id>",
 * every chunk with the message's sequence id and publish time; only the
 * last chunk carries the message's result (future, callback, limits).
 * Each chunk's metadata and payload together fit in the broker's
 * max_message_size; a message that fits in one entry once compressed
 * goes as one plain entry. All batches are taken first, so that nothing
 * is sent when memory runs out. */
upulsar_err_t up_chunk_send(up_rp_t *rp, const up_smm_t *m, const up_rec_view_t *v,
                           uint64_t accepted_us)
{
    const void *payload = v->payload;
    uint64_t ncells = v->ncells;
    size_t len = v->m.payload_size, max = broker_max(rp), mdb = up_chunk_md_bound(m, v);
    if (mdb >= max)
        return UPULSAR_ERR__MSG_TOO_LARGE; /* no room at all */
    chunk_msg_t cm = {.publish_time = up_wall_ms(), .uncompressed = len};
    up_batch_t *head = up_batch_get(rp), **tail = &head;
    if (!head)
        return UPULSAR_ERR__NOMEM;
    /* room for the largest header of its entries (a chunk's metadata is at
     * most mdb, a whole message's at most mdb - UP_UUID_BOUND): the header
     * never has to move the payload */
    size_t room = UP_HDR_FIXED + mdb;
    size_t zlen = 0;
    const uint8_t *z = compress_whole(rp, head, room, payload, len, &zlen);
    if (z) {
        payload = z;
        cm.codec = rp_conf(rp)->compression;
        len = zlen;
    }
    /* whole when its metadata (no uuid: a whole message has none) and its
     * payload fit in an entry; else in chunks of what each chunk's
     * metadata leaves */
    size_t cs = max - mdb, n = 1;
    if (len > max - (mdb - UP_UUID_BOUND))
        n = (len + cs - 1) / cs;
    else
        cs = len; /* one piece, the whole payload */
    /* upulsar_send() checked both against the limit it knew; the broker's
     * may have shrunk since */
    if (n > 1 && (!rp_conf(rp)->chunking_enabled || mdb > max / 2 ||
                  cm.uncompressed > UPULSAR_MAX_CHUNKED_BYTES)) {
        up_batch_retire(rp, head);
        return UPULSAR_ERR__MSG_TOO_LARGE;
    }
    cm.n = (int32_t)n;
    cm.total = len;
    upulsar_err_t err = UPULSAR_OK;
    for (size_t i = 0; i < n; i++) {
        up_batch_t *b = i ? up_batch_get(rp) : head;
        if (!b) {
            err = UPULSAR_ERR__NOMEM;
            break;
        }
        *tail = b;
        tail = &b->next;
        size_t off = i * cs, sl = len - off < cs ? len - off : cs;
        if (!up_batch_reserve(b, room + sl)) {
            err = UPULSAR_ERR__NOMEM;
            break;
        }
        /* the first piece of a compressed message is in place already (the
         * head's buffer, large enough: not moved by the reserve above) */
        if (sl && !(z && i == 0))
            /* up_batch_reserve() succeeded: b->buf holds room + sl bytes; and a
             * payload of len > 0 bytes is not NULL (the record view's).
             * NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
            memcpy(b->buf + room, (const uint8_t *)payload + off, sl);
        b->rec_len = sl;
    }
    if (n > 1 && !err && head->cap > room + cs) {
        /* the other pieces are in their chunks now: the head's buffer (the
         * codec's try made it the whole message's size) need not keep that
         * until the first receipt */
        uint8_t *nb = realloc(head->buf, room + cs);
        if (nb) {
            head->buf = nb;
            head->cap = room + cs;
        }
    }
    /* one NUL-terminated copy of the key, in the first chunk's batch (it is
     * used while the chunks are framed, below) */
    const char *key = NULL;
    if (!err && m->key && head) { /* head: at least one chunk was taken */
        if (head->kkey_cap < (size_t)m->key_len + 1) {
            char *k = realloc(head->kkey, (size_t)m->key_len + 1);
            if (!k) {
                err = UPULSAR_ERR__NOMEM;
            } else {
                head->kkey = k;
                head->kkey_cap = (size_t)m->key_len + 1;
            }
        }
        if (!err) {
            memcpy(head->kkey, m->key, m->key_len);
            head->kkey[m->key_len] = '\0';
            head->kkey_len = m->key_len;
            key = head->kkey;
        }
    }
    /* a message that goes whole keeps what its delivery report gives back:
     * its payload (the entry's own bytes; with a codec, a copy in the
     * compression buffer, which the compressed payload was copied out of)
     * and its key (the copy above) */
    if (!err && n == 1 && rp_conf(rp)->dr_cb) {
        head->dr_len = cm.uncompressed;
        head->dr_payload = head->buf + room;
        if (z) {
            head->dr_payload = up_batch_zreserve(head, cm.uncompressed, cm.uncompressed)
                                   ? memcpy(head->zbuf, v->payload, cm.uncompressed)
                                   : NULL;
        }
        if (head->dr_payload || !cm.uncompressed)
            head->dr_flags = UP_DR_KEPT | (key ? UP_DR_KEY : 0) |
                             (key && m->key_b64 ? UP_DR_B64 : 0) | (m->null_value ? UP_DR_NULL : 0);
    }
    char uuid[UP_UUID_BOUND + 8] = "";
    if (n > 1)
        snprintf(uuid, sizeof uuid, "%s-%llu", rp->name, (unsigned long long)m->sequence_id);
    cm.key = key;
    cm.uuid = uuid;
    uint64_t ring_start = rp->ring.ctail;
    for (size_t i = 0; !err && i < n; i++) {
        up_batch_t *b = head;
        head = b->next;
        b->next = NULL;
        bool last = i == n - 1;
        b->created_us = accepted_us;
        b->first_seq = b->last_seq = m->sequence_id;
        b->chunk = n == 1 ? UP_CHUNK_ONLY
                   : last ? UP_CHUNK_LAST
                   : i == 0 ? UP_CHUNK_FIRST
                            : UP_CHUNK_MIDDLE;
        b->ring_end = last ? ring_start + ncells : ring_start;
        if (last) {
            b->done[0] = (up_done_t){v->future, v->ext.cb, v->ext.opaque, v->sent_us};
            b->n = 1;
            b->mem_bytes = up_rec_mem(ncells, v->flags, cm.uncompressed);
            b->payload_bytes = v->m.payload_size;
        }
        upulsar_err_t e = close_chunk(rp, b, m, v, &cm, room, (int32_t)i);
        if (e) {
            /* only when out of memory, before the first chunk is queued
             * (the others need no more room than it) */
            b->n = 0;
            up_batch_retire(rp, b);
            err = e;
        }
    }
    while (head) {
        up_batch_t *b = head;
        head = b->next;
        b->next = NULL;
        up_batch_retire(rp, b);
    }
    return err;
}
