/* batch.h -- batch payload records and compression.
 *
 * A batch payload (before compression) is, per message in send order:
 *   [4-byte BE size of SingleMessageMetadata][SingleMessageMetadata][payload]
 * The per-message metadata is hand-encoded here (protobuf-c pack per message
 * would cost several times more); decoding uses protobuf-c (tests, broker).
 * @internal
 */
#ifndef UP_BATCH_H
#define UP_BATCH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "pb.h"
#include "upulsar/upulsar.h"

/* SingleMessageMetadata field tags: (field number << 3) | wire type. The
 * encoder (batch.c) and the drain's fast path (drain.c) write them. */
#define UP_SMM_TAG_PROPS 0x0a  /* 1, length-delimited */
#define UP_SMM_TAG_KEY 0x12    /* 2, length-delimited */
#define UP_SMM_TAG_PSIZE 0x18  /* 3, varint */
#define UP_SMM_TAG_EVTIME 0x28 /* 5, varint */
#define UP_SMM_TAG_KEYB64 0x30 /* 6, varint (bool) */
#define UP_SMM_TAG_OKEY 0x3a   /* 7, length-delimited */
#define UP_SMM_TAG_SEQ 0x40    /* 8, varint */
#define UP_SMM_TAG_NULLV 0x48  /* 9, varint (bool) */

/** What goes into one SingleMessageMetadata. */
typedef struct up_smm {
    const char *key;          /**< partition_key (2), NULL = none */
    uint32_t key_len;
    const uint8_t *okey;      /**< ordering_key (7), NULL = none */
    uint32_t okey_len;
    const uint8_t *props;     /**< properties (1), pre-encoded with
                                   up_props_encode(), NULL = none */
    uint32_t props_len;
    uint64_t event_time;      /**< (5), 0 = unset */
    uint64_t sequence_id;     /**< (8), written unless no_seq */
    bool no_seq;              /**< leave sequence_id out: the message's id is
                                   the entry's sequence_id + its index */
    uint32_t payload_size;    /**< (3) */
    bool key_b64;             /**< partition_key_b64_encoded (6) = true */
    bool null_value;          /**< null_value (9) = true */
} up_smm_t;

/** up_smm_size() and up_record_put_header() for any message (batch.c). */
size_t up_smm_size_any(const up_smm_t *m);
size_t up_record_put_header_any(uint8_t *dst, const up_smm_t *m);

/** Is @p m the common message: no key, ordering key, properties, event
 *  time or flag, only the payload size and perhaps a sequence id? */
static inline bool up_smm_plain(const up_smm_t *m)
{
    return !((uintptr_t)m->key | (uintptr_t)m->okey | m->props_len | m->event_time |
             (unsigned)m->key_b64 | (unsigned)m->null_value);
}

/** Encoded size of the SingleMessageMetadata alone. HOT PATH: inline for
 *  the common message. */
static inline size_t up_smm_size(const up_smm_t *m)
{
    if (__builtin_expect(!up_smm_plain(m), 0))
        return up_smm_size_any(m);
    return 1 + up_varint_size(m->payload_size) +
           (m->no_seq ? 0 : 1 + up_varint_size(m->sequence_id));
}

/** Upper bound of one record: 4 + up_smm_size() + payload_size. */
static inline size_t up_record_size(const up_smm_t *m)
{
    return 4 + up_smm_size(m) + m->payload_size;
}

/** Write only [size][SMM] (payload copied by the caller after it). HOT
 *  PATH: inline for the common message. */
static inline size_t up_record_put_header(uint8_t *dst, const up_smm_t *m)
{
    if (__builtin_expect(!up_smm_plain(m), 0))
        return up_record_put_header_any(dst, m);
    uint8_t *p = dst + 4;
    *p++ = 0x18; /* payload_size (3), varint */
    p += up_put_varint(p, m->payload_size);
    if (!m->no_seq) {
        *p++ = 0x40; /* sequence_id (8), varint */
        p += up_put_varint(p, m->sequence_id);
    }
    up_put_be32(dst, (uint32_t)(p - dst - 4));
    return (size_t)(p - dst);
}

/** Write one record ([size][SMM][payload]) at @p dst, which must have room
 *  for up_record_size(m) bytes; returns the bytes written. HOT PATH: inline,
 *  so that the payload is copied where the record is built. */
static inline size_t up_record_put(uint8_t *dst, const up_smm_t *m, const void *payload)
{
    size_t h = up_record_put_header(dst, m);
    if (m->payload_size)
        memcpy(dst + h, payload, m->payload_size);
    return h + m->payload_size;
}

/** Encoded size of @p n properties as repeated KeyValue field 1 entries. */
size_t up_props_size(const upulsar_property_t *props, size_t n);
/** The same, or SIZE_MAX as soon as it exceeds @p cap (at most
 *  SIZE_MAX / 4): reads no more than @p cap + 1 bytes of any key or value
 *  and never overflows, whatever the caller passed. */
size_t up_props_size_capped(const upulsar_property_t *props, size_t n, size_t cap);
/** Encode them at @p dst (room for up_props_size()); returns bytes. */
size_t up_props_encode(uint8_t *dst, const upulsar_property_t *props, size_t n);
/** Encode them as a sequence of pieces handed to @p put (e.g. writes into a
 *  ring that may wrap); no allocation. Returns the bytes produced. */
size_t up_props_encode_to(const upulsar_property_t *props, size_t n,
                          void (*put)(void *ctx, const void *p, size_t len), void *ctx);
/** Rewrite, in place, the field tag of every entry of an encoded property
 *  block to @p tag (MessageMetadata carries properties as field 4,
 *  SingleMessageMetadata as field 1; the entries are otherwise the same). */
void up_props_retag(uint8_t *p, size_t n, uint8_t tag);
/** MessageMetadata.properties (4), length-delimited. */
#define UP_TAG_MD_PROPS 0x22

/** One message taken out of a batch payload. */
/** Bytes up_records_number() adds to @p n records numbered from @p first. */
size_t up_records_number_extra(uint32_t n, uint64_t first);

/** Give each of the @p n batch records in @p buf[0, @p len) (each
 *  [u32 size][SingleMessageMetadata without sequence_id][payload], as
 *  up_record_put_header() writes them) the sequence id @p first + its
 *  index, in place: the records move up, so @p buf must have room for
 *  @p len + up_records_number_extra(n, first) bytes. @p offs is scratch for
 *  @p n offsets. Returns the new length, or 0 (nothing changed) if the
 *  records do not parse as that. */
size_t up_records_number(uint8_t *buf, size_t len, uint32_t n, uint64_t first, size_t *offs);

typedef struct up_batch_msg {
    Pulsar__Proto__SingleMessageMetadata *smm; /**< caller frees with
        pulsar__proto__single_message_metadata__free_unpacked(smm, NULL) */
    const uint8_t *payload;
    uint32_t payload_len;
} up_batch_msg_t;

/** Take the record at *@p off of the (uncompressed) batch @p buf.
 *  Returns 1 (and advances *@p off), 0 at the end, or UPULSAR_ERR__DECODE
 *  for a truncated or malformed record. Never reads past @p len. */
int up_batch_next(const uint8_t *buf, size_t len, size_t *off,
                  up_batch_msg_t *out);

/** What a delivery report shows of one batch record (pointers into the
 *  record). */
typedef struct up_rec_info {
    const char *key; /**< partition_key, NULL = none */
    uint32_t key_len;
    bool key_b64, null_value, has_seq;
    uint64_t seq;
    const uint8_t *payload;
    uint32_t payload_len;
} up_rec_info_t;

/** Read the record at *@p off of the uncompressed batch records
 *  @p buf[0, @p len) (as up_record_put() writes them), without allocating:
 *  1 (and *@p off advanced), 0 at the end, UPULSAR_ERR__DECODE when
 *  malformed. Never reads past @p len. */
int up_record_info(const uint8_t *buf, size_t len, size_t *off, up_rec_info_t *out);

/* Compression types, as Pulsar's CompressionType enum. */
enum { UP_COMP_NONE = 0, UP_COMP_LZ4 = 1, UP_COMP_ZLIB = 2, UP_COMP_ZSTD = 3,
       UP_COMP_SNAPPY = 4 };

/** Worst-case compressed size of @p n bytes with @p codec. */
size_t up_compress_bound(int codec, size_t n);

/** Compress @p n bytes at @p src into @p dst (room for up_compress_bound());
 *  returns the compressed size, or a negative upulsar_err_t
 *  (NOT_SUPPORTED for codecs not compiled in, COMPRESSION). LZ4 writes the
 *  raw LZ4 block format Pulsar uses (no frame header). */
long up_compress(int codec, const uint8_t *src, size_t n, uint8_t *dst,
                 size_t dst_cap);

/** Decompress into @p dst, which must hold exactly @p uncompressed_size
 *  bytes. Returns 0 or a negative upulsar_err_t (COMPRESSION when the input
 *  is corrupt or does not expand to exactly that size). */
int up_decompress(int codec, const uint8_t *src, size_t n, uint8_t *dst,
                  size_t uncompressed_size);
#endif
