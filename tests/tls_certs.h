/* tls_certs.h -- test certificates made at test time with the openssl CLI
 * (no private key is ever committed): a CA, a server certificate for
 * localhost/127.0.0.1, an expired one, a second unrelated CA, and a client
 * certificate for mutual TLS. */
#ifndef UPULSAR_TESTS_TLS_CERTS_H
#define UPULSAR_TESTS_TLS_CERTS_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char dir[256];
    char ca[300], ca2[300], srv_cert[300], srv_key[300], exp_cert[300], cli_cert[300],
        cli_key[300];
} tls_certs_t;

/* Returns 0, or -1 if the openssl CLI is missing or failed. */
static inline int tls_certs_make(tls_certs_t *c)
{
    snprintf(c->dir, sizeof c->dir, "/tmp/upulsar-tls-XXXXXX");
    if (!mkdtemp(c->dir))
        return -1;
#define P(f, n) snprintf(c->f, sizeof c->f, "%s/%s", c->dir, n)
    P(ca, "ca.pem");
    P(ca2, "ca2.pem");
    P(srv_cert, "srv.pem");
    P(srv_key, "srv.key");
    P(exp_cert, "exp.pem");
    P(cli_cert, "cli.pem");
    P(cli_key, "cli.key");
#undef P
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "(cd %s && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 "
             "-subj /CN=upulsar-test-ca && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca2.key -out ca2.pem -days 2 "
             "-subj /CN=upulsar-other-ca && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost && "
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem "
             "-days 2 -extfile ext && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out exp.pem "
             "-days -1 -extfile ext && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout cli.key -out cli.csr -subj /CN=upulsar-client && "
             "openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cli.pem -days 2"
             ") >/dev/null 2>&1",
             c->dir);
    return system(cmd) == 0 ? 0 : -1;
}

static inline void tls_certs_remove(tls_certs_t *c)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", c->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", c->dir);
}
#endif
