/* resolve.h -- a broker's host name to its addresses, within a deadline and
 * cancellable.
 *
 * getaddrinfo() has no timeout and cannot be interrupted: a DNS server that
 * does not answer holds it for as long as the system's resolver settings
 * say (resolv.conf: timeout x attempts x servers, tens of seconds or more).
 * A numeric address is converted on the calling thread; a name is resolved
 * on a detached thread of its own while the caller waits, in slices of
 * UP_CANCEL_SLICE_MS, for the answer, its deadline or the cancellation of
 * its waits (up_cancel_on()). A resolution the caller gave up on finishes
 * in the background and frees what it holds when the resolver answers; at
 * most UP_RESOLVE_MAX_ABANDONED of them run at once, after which new names
 * fail at once until one finishes (bounded threads and memory however long
 * DNS stays down). */
#ifndef UPULSAR_RESOLVE_H
#define UPULSAR_RESOLVE_H
#include <netdb.h>
#include <stdint.h>

#include "upulsar/upulsar.h"

#define UP_RESOLVE_MAX_ABANDONED 16

/** Resolve @p host (a name or a numeric IPv4/IPv6 address) and @p port for
 *  a TCP connection, by @p deadline_us (a point of up_now_us()).
 *  On UPULSAR_OK *@p out is getaddrinfo()'s list, which the caller frees
 *  with freeaddrinfo(). Errors, with upulsar_last_error() naming the host:
 *  UPULSAR_ERR__CONNECT (the name does not resolve, the resolver did not
 *  answer by the deadline (@p timeout_ms is the setting named in the text;
 *  0: none), too many resolutions already hung, no thread),
 *  UPULSAR_ERR__CLOSED (the calling thread's waits were cancelled).
 *  Blocking: at most until the deadline, or a slice after cancellation.
 *  @thread any */
upulsar_err_t up_resolve(const char *host, int port, uint64_t deadline_us, int timeout_ms,
                         struct addrinfo **out);

#endif
