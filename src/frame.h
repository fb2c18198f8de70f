/* frame.h -- Pulsar frame encoding and an incremental frame decoder.
 *
 * Simple command frame:  [totalSize][commandSize][BaseCommand]
 * Payload frame:         [totalSize][commandSize][BaseCommand]
 *                        [0x0e01][CRC32C][metadataSize][MessageMetadata][payload]
 * All sizes are 4-byte big-endian; the CRC covers metadataSize, metadata and
 * payload. The optional 0x0e02 broker-entry-metadata section (broker to
 * consumer only) is skipped by the decoder. @internal
 */
#ifndef UP_FRAME_H
#define UP_FRAME_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "buf.h"
#include "pb.h"

#define UP_MAGIC_CRC32C 0x0e01
#define UP_MAGIC_BROKER_ENTRY_METADATA 0x0e02
#define UP_DEFAULT_MAX_FRAME (5 * 1024 * 1024)
/** Headroom the decoder allows above the advertised max message size, as the
 *  Java broker and clients do (5 MiB + 10 KiB). */
#define UP_FRAME_PADDING (10 * 1024)
/** Bytes of a payload frame before the command: totalSize + commandSize. */
#define UP_FRAME_PREFIX 8

/* ---- encoding ---------------------------------------------------------- */

/** Append a simple command frame for @p cmd to @p out. Returns 0, or a
 *  negative upulsar_err_t (NOMEM). @thread any @lock none */
int up_frame_put_cmd(up_buf_t *out, const up_cmd_t *cmd);

/** Append a payload frame: @p cmd (SEND or MESSAGE), checksum section if
 *  @p with_crc, metadata @p md (packed here) and the payload given as
 *  @p iov[0..iovcnt). Returns 0 or a negative upulsar_err_t. */
int up_frame_put_payload(up_buf_t *out, const up_cmd_t *cmd, const up_md_t *md,
                         const struct iovec *iov, int iovcnt, bool with_crc);

/** Same with metadata already serialized (@p md_bytes, @p md_len). */
int up_frame_put_payload_raw(up_buf_t *out, const up_cmd_t *cmd,
                             const uint8_t *md_bytes, size_t md_len,
                             const struct iovec *iov, int iovcnt, bool with_crc);

/* ---- decoding ---------------------------------------------------------- */

/** One decoded frame. Pointers stay valid until the next call to
 *  up_decoder_next(), up_decoder_wbuf() or up_decoder_feed() on the same
 *  decoder. */
typedef struct up_frame {
    up_cmd_t *cmd;             /**< unpacked BaseCommand (owned by decoder) */
    bool has_payload;          /**< payload frame (SEND / MESSAGE) */
    bool has_crc;              /**< checksum section present */
    uint32_t crc;              /**< checksum as sent */
    const uint8_t *metadata;   /**< raw MessageMetadata bytes */
    size_t metadata_len;
    const uint8_t *payload;    /**< bytes after the metadata */
    size_t payload_len;
    const uint8_t *raw;        /**< the whole frame, from totalSize on */
    size_t raw_len;
} up_frame_t;

#define UP_DECODER_ARENA 2048

typedef struct up_decoder {
    up_buf_t buf;       /**< unread bytes start at buf.data + off */
    size_t off;
    uint32_t max_frame; /**< largest totalSize accepted */
    int failed;         /**< sticky error once the stream is unusable */
    up_cmd_t *cmd;      /**< last unpacked command, freed on next call */
    /* Commands are unpacked into this bump arena (malloc only when a
     * command does not fit), so steady-state decoding allocates nothing. */
    size_t arena_used;
    _Alignas(16) uint8_t arena[UP_DECODER_ARENA];
} up_decoder_t;

/** Initialise a decoder accepting frames whose totalSize is at most
 *  @p max_frame (0 = UP_DEFAULT_MAX_FRAME + UP_FRAME_PADDING). */
void up_decoder_init(up_decoder_t *d, uint32_t max_frame);
void up_decoder_free(up_decoder_t *d);

/** Copy @p len bytes into the decoder. Returns 0 or UPULSAR_ERR__NOMEM. */
int up_decoder_feed(up_decoder_t *d, const void *data, size_t len);

/** Zero-copy feeding: get a writable area of at least @p want bytes
 *  (*@p avail receives its real size), read into it, then
 *  up_decoder_commit() the count actually written. NULL on out of memory. */
uint8_t *up_decoder_wbuf(up_decoder_t *d, size_t want, size_t *avail);
void up_decoder_commit(up_decoder_t *d, size_t n);

/**
 * Take the next complete frame.
 * Returns 1 and fills @p f; 0 if more bytes are needed; or a negative
 * upulsar_err_t:
 *  - UPULSAR_ERR__BAD_CHECKSUM: the frame is complete and filled into @p f,
 *    its CRC32C does not match; the decoder stays usable (the caller decides:
 *    a broker answers SEND_ERROR ChecksumError).
 *  - UPULSAR_ERR__FRAME_TOO_LARGE, UPULSAR_ERR__PROTOCOL (sizes that do not
 *    add up), UPULSAR_ERR__DECODE (BaseCommand does not unpack, or type and
 *    sub-message disagree): the stream is unusable, every later call returns
 *    the same error.
 * Never reads outside the bytes it was given.
 */
int up_decoder_next(up_decoder_t *d, up_frame_t *f);

/** Take ownership of the last returned command: a heap copy the caller
 *  frees with pulsar__proto__base_command__free_unpacked(cmd, NULL).
 *  NULL if out of memory. */
up_cmd_t *up_decoder_steal(up_decoder_t *d);

/** Bytes buffered but not yet returned as frames. */
static inline size_t up_decoder_pending(const up_decoder_t *d)
{
    return d->buf.len - d->off;
}

/** Name of a BaseCommand type ("SEND_RECEIPT"), "UNKNOWN" otherwise. */
const char *up_cmd_name(int type);
#endif
