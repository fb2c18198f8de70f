/* tls.h -- TLS for pulsar+ssl:// connections: OpenSSL reads ciphertext from
 * a memory BIO and writes it to a sink BIO that appends to our buffers, so
 * socket I/O stays with the caller (blocking during the handshake, io_uring
 * afterwards). @internal */
#ifndef UP_TLS_H
#define UP_TLS_H
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "conf.h"

typedef struct up_tls up_tls_t;

/** Build the client context from the tls.* keys: trusted CAs (tls.ca.file,
 *  tls.ca.path, else the system store), client certificate and key (mTLS),
 *  peer verification unless tls.allow.insecure. Errors (unreadable CA file,
 *  key not matching the certificate...) name the file and the reason: the
 *  system's when the file cannot be opened ("No such file or directory"),
 *  else OpenSSL's.
 *  @thread any */
upulsar_err_t up_tls_ctx_new(const struct upulsar_conf *cf, SSL_CTX **out);
void up_tls_ctx_free(SSL_CTX *ctx);

/** New client session for @p host (SNI when it is a name; host name checked
 *  against the certificate when tls.verify.hostname and not insecure). */
up_tls_t *up_tls_new(SSL_CTX *ctx, const char *host, const struct upulsar_conf *cf);
void up_tls_free(up_tls_t *t);

/** Run the handshake over connected socket @p fd (blocking with poll),
 *  until @p deadline_us (monotonic). UPULSAR_ERR__TLS with the reason
 *  ("certificate has expired", "hostname mismatch", "unable to get local
 *  issuer certificate", a handshake alert...) in upulsar_last_error(),
 *  UPULSAR_ERR__TIMED_OUT, UPULSAR_ERR__CONNECT, or UPULSAR_ERR__CLOSED when
 *  the calling thread's wait was cancelled (up_cancel_on()). */
upulsar_err_t up_tls_handshake(up_tls_t *t, int fd, uint64_t deadline_us, const char *peer);

/** Encrypt @p len bytes; the ciphertext is appended to @p out (written
 *  there directly by OpenSSL, after anything the session had produced on
 *  its own). 0 or a negative upulsar_err_t. */
int up_tls_encrypt(up_tls_t *t, const void *p, size_t len, up_buf_t *out);

/** Hand received ciphertext to the session. 0 or NOMEM. */
int up_tls_feed(up_tls_t *t, const void *p, size_t len);

/** Decrypted bytes into @p dst: > 0 bytes, 0 when more ciphertext is
 *  needed, or UPULSAR_ERR__TLS / UPULSAR_ERR__CONNECT (peer closed). */
long up_tls_read(up_tls_t *t, void *dst, size_t cap);

/** Ciphertext the session produced on its own (TLS 1.3 post-handshake
 *  messages, alerts) appended to @p out. 0 or NOMEM. */
int up_tls_drain(up_tls_t *t, up_buf_t *out);
#endif
