/* test_broker_auth.c -- token authentication on the test broker: CONNECT
 * with a valid token (of several) is accepted, a wrong, missing or
 * non-token credential gets ERROR AuthenticationError and the connection
 * closed, without the token in the answer or anywhere the broker writes;
 * AUTH_CHALLENGE before CONNECTED and as a refresh after it, answered with
 * a valid token, a wrong one, or not at all; tokens replaced at run time;
 * authentication over TLS. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "broker_common.h"
#include "tls_certs.h"
#define GOOD "eyJhbGciOiJIUzI1NiJ9.good-token-1.sig"
#define GOOD2 "eyJhbGciOiJIUzI1NiJ9.good-token-2.sig"
#define BAD "eyJhbGciOiJIUzI1NiJ9.forged-token.sig"

/* Everything the process writes to stderr and stdout while a test runs goes
 * to a file, searched for tokens at the end. */
static char capture_path[64];
static int saved_fd[2] = {-1, -1};

static void capture_start(void)
{
    snprintf(capture_path, sizeof capture_path, "/tmp/upulsar-auth-out-XXXXXX");
    int fd = mkstemp(capture_path);
    cr_assert_geq(fd, 0);
    fflush(stdout);
    fflush(stderr);
    saved_fd[0] = dup(1);
    saved_fd[1] = dup(2);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
}

/* Restore the output and fail if any token is in what was written. */
static void capture_check(void)
{
    fflush(stdout);
    fflush(stderr);
    dup2(saved_fd[0], 1);
    dup2(saved_fd[1], 2);
    close(saved_fd[0]);
    close(saved_fd[1]);
    FILE *f = fopen(capture_path, "r");
    cr_assert_not_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    unlink(capture_path);
    cr_assert_null(strstr(buf, "good-token"), "a token was written: %s", buf);
    cr_assert_null(strstr(buf, "forged-token"), "a token was written: %s", buf);
}

/* every test starts capturing and ends with capture_check() (an assertion
 * in a .fini would not fail the test) */
static void setup(void) { capture_start(); }
TestSuite(broker_auth, .init = setup, .timeout = 60);

static upulsar_tb_t *start(int challenge_on_connect, int response_timeout_ms)
{
    static const char *const tokens[] = {GOOD, GOOD2};
    upulsar_tb_opts_t o = bc_opts();
    o.auth_tokens = tokens;
    o.auth_tokens_cnt = 2;
    o.auth_challenge_on_connect = challenge_on_connect;
    if (response_timeout_ms)
        o.auth_response_timeout_ms = response_timeout_ms;
    return bc_start(&o);
}

static upulsar_err_t connect_with(upulsar_tb_t *tb, const char *method, const char *token,
                                  upulsar_tb_client_t **c)
{
    upulsar_tb_client_opts_t o;
    upulsar_tb_client_opts_init(&o);
    o.auth_method = method;
    o.token = token;
    return upulsar_tb_client_connect_opts(upulsar_tb_url(tb), &o, WAIT_MS, c);
}

/* CONNECT as this file's client ("auth-test", protocol 21) with @p method
 * and @p token (NULL: no auth data), sent by hand. */
static void send_connect(upulsar_tb_client_t *c, const char *method, const char *token)
{
    bc_send_connect(c, "auth-test", method, token, 21);
}

/* CONNECT with @p method / @p token must be refused: ERROR
 * AuthenticationError (request id -1) without the token, then the end. */
static void refused(upulsar_tb_t *tb, const char *method, const char *token, const char *why)
{
    upulsar_tb_client_t *c = bc_open(tb);
    send_connect(c, method, token);
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_read(c, WAIT_MS, &f), UPULSAR_OK, "%s", upulsar_last_error());
    cr_assert_eq(f.type, UP_CMD(ERROR));
    cr_assert_eq(f.cmd->error->error, UP_SERR(AuthenticationError));
    cr_assert_eq(f.cmd->error->request_id, UINT64_MAX);
    cr_assert_str_eq(f.cmd->error->message, why);
    cr_assert_eq(upulsar_tb_client_read(c, WAIT_MS, &f), UPULSAR_ERR__CLOSED, "%s",
                 upulsar_last_error());
    upulsar_tb_client_close(c);
    /* and through the client helper: mapped, no token in the message */
    cr_assert_eq(connect_with(tb, method, token, &c), UPULSAR_ERR_AUTHENTICATION_ERROR);
    cr_assert(strstr(upulsar_last_error(), why), "%s", upulsar_last_error());
    cr_assert_null(strstr(upulsar_last_error(), "token-"), "%s", upulsar_last_error());
}

Test(broker_auth, valid_tokens_accepted_others_refused)
{
    upulsar_tb_t *tb = start(0, 0);
    upulsar_tb_client_t *c;
    cr_assert_eq(connect_with(tb, NULL, GOOD, &c), UPULSAR_OK, "%s", upulsar_last_error());
    bc_create_producer(c, "t", 1, NULL);
    upulsar_tb_client_close(c);
    cr_assert_eq(connect_with(tb, "token", GOOD2, &c), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_tb_client_close(c);
    cr_assert_eq(bc_stats(tb).auth_ok, 2);

    refused(tb, "token", BAD, "Failed to authenticate: invalid token");
    refused(tb, "token", GOOD "x", "Failed to authenticate: invalid token");
    refused(tb, "token", "eyJhbGciOiJIUzI1NiJ9.good-token-1.si", /* a prefix */
            "Failed to authenticate: invalid token");
    refused(tb, "none", NULL, "Authentication required");
    refused(tb, "token", NULL, "Authentication required");
    refused(tb, "basic", GOOD, "Unsupported authentication method");
    upulsar_tb_stats_t st = bc_stats(tb);
    cr_assert_eq(st.auth_ok, 2);
    cr_assert_eq(st.auth_failed, 12);
    cr_assert_eq(st.protocol_errors, 0);
    upulsar_tb_stop(tb);
    capture_check();
}

Test(broker_auth, no_tokens_means_no_authentication)
{
    upulsar_tb_t *tb = bc_broker();
    upulsar_tb_client_t *c;
    cr_assert_eq(connect_with(tb, NULL, BAD, &c), UPULSAR_OK);
    upulsar_tb_client_close(c);
    cr_assert_eq(connect_with(tb, NULL, NULL, &c), UPULSAR_OK);
    upulsar_tb_client_close(c);
    /* turned on at run time: the next CONNECT is checked */
    static const char *const one[] = {GOOD};
    cr_assert_eq(upulsar_tb_set_tokens(tb, one, 1), UPULSAR_OK);
    cr_assert_eq(connect_with(tb, NULL, NULL, &c), UPULSAR_ERR_AUTHENTICATION_ERROR);
    cr_assert_eq(connect_with(tb, NULL, GOOD, &c), UPULSAR_OK);
    upulsar_tb_client_close(c);
    static const char *const empty[] = {""};
    cr_assert_eq(upulsar_tb_set_tokens(tb, empty, 1), UPULSAR_ERR__INVALID_ARG);
    cr_assert_eq(upulsar_tb_set_tokens(tb, NULL, 0), UPULSAR_OK);
    cr_assert_eq(connect_with(tb, NULL, NULL, &c), UPULSAR_OK);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
    capture_check();
}

Test(broker_auth, challenge_before_connected)
{
    upulsar_tb_t *tb = start(1, 0);
    /* the client helper answers it with its token */
    upulsar_tb_client_t *c;
    cr_assert_eq(connect_with(tb, NULL, GOOD, &c), UPULSAR_OK, "%s", upulsar_last_error());
    upulsar_tb_client_close(c);
    upulsar_tb_stats_t st = bc_stats(tb);
    cr_assert_eq(st.auth_challenges, 1);
    cr_assert_eq(st.auth_ok, 2); /* CONNECT, then AUTH_RESPONSE */

    /* step by step: nothing but AUTH_RESPONSE is accepted meanwhile, and a
     * wrong answer is refused */
    upulsar_tb_client_opts_t o;
    upulsar_tb_client_opts_init(&o);
    o.token = GOOD;
    o.answer_challenge = 0;
    cr_assert_eq(upulsar_tb_client_connect_opts(upulsar_tb_url(tb), &o, WAIT_MS, &c),
                 UPULSAR_ERR__STATE, "the challenge is returned to the caller");
    c = bc_open(tb);
    send_connect(c, "token", GOOD2);
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_read(c, WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.type, UP_CMD(AUTH_CHALLENGE));
    const Pulsar__Proto__CommandAuthChallenge *ch = f.cmd->authchallenge;
    cr_assert_not_null(ch->challenge);
    cr_assert_str_eq(ch->challenge->auth_method_name, "token");
    cr_assert_eq(ch->challenge->auth_data.len, strlen("PulsarAuthRefresh"));
    cr_assert_arr_eq(ch->challenge->auth_data.data, "PulsarAuthRefresh",
                     ch->challenge->auth_data.len);
    cr_assert_str_neq(ch->server_version, "");
    cr_assert_eq(upulsar_tb_client_auth_response(c, "token", BAD), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_read(c, WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.type, UP_CMD(ERROR));
    cr_assert_eq(f.cmd->error->error, UP_SERR(AuthenticationError));
    cr_assert_null(strstr(f.cmd->error->message, "token-"));
    cr_assert_eq(upulsar_tb_client_read(c, WAIT_MS, &f), UPULSAR_ERR__CLOSED);
    upulsar_tb_client_close(c);
    /* the other valid token answers it */
    c = bc_open(tb);
    send_connect(c, "token", GOOD2);
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(AUTH_CHALLENGE), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_auth_response(c, "token", GOOD), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(CONNECTED), WAIT_MS, &f), UPULSAR_OK);
    upulsar_tb_client_close(c);
    upulsar_tb_stop(tb);
    capture_check();
}

Test(broker_auth, refresh_challenge_answered_wrongly_or_not_at_all)
{
    upulsar_tb_t *tb = start(0, 300);
    upulsar_tb_client_t *ok, *wrong, *silent;
    cr_assert_eq(connect_with(tb, NULL, GOOD, &ok), UPULSAR_OK);
    cr_assert_eq(connect_with(tb, NULL, GOOD, &wrong), UPULSAR_OK);
    cr_assert_eq(connect_with(tb, NULL, GOOD2, &silent), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_auth_challenge(tb), 3);
    upulsar_tb_frame_t f;
    upulsar_tb_client_t *all[3] = {ok, wrong, silent};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(upulsar_tb_client_expect(all[i], UP_CMD(AUTH_CHALLENGE), WAIT_MS, &f),
                     UPULSAR_OK);
        cr_assert_arr_eq(f.cmd->authchallenge->challenge->auth_data.data, "PulsarAuthRefresh",
                         17);
    }
    /* a rotated token: the broker now accepts GOOD2 only */
    static const char *const rotated[] = {GOOD2};
    cr_assert_eq(upulsar_tb_set_tokens(tb, rotated, 1), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_auth_response(ok, "token", GOOD2), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_auth_response(wrong, "token", GOOD), UPULSAR_OK);
    /* ok stays usable */
    bc_create_producer(ok, "t", 1, NULL);
    /* wrong is told and closed */
    cr_assert_eq(upulsar_tb_client_read(wrong, WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.type, UP_CMD(ERROR));
    cr_assert_eq(f.cmd->error->error, UP_SERR(AuthenticationError));
    cr_assert_eq(upulsar_tb_client_read(wrong, WAIT_MS, &f), UPULSAR_ERR__CLOSED);
    /* silent is closed once its time to answer is over */
    cr_assert_eq(upulsar_tb_client_read(silent, WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(f.type, UP_CMD(ERROR));
    cr_assert_eq(f.cmd->error->error, UP_SERR(AuthenticationError));
    cr_assert_eq(upulsar_tb_client_read(silent, WAIT_MS, &f), UPULSAR_ERR__CLOSED);
    upulsar_tb_stats_t st = bc_stats(tb);
    cr_assert_eq(st.auth_challenges, 3);
    cr_assert_eq(st.auth_ok, 3 + 1);
    cr_assert_eq(st.auth_failed, 1);
    cr_assert_eq(st.auth_unanswered, 1);
    /* an AUTH_RESPONSE nobody asked for is ignored */
    cr_assert_eq(upulsar_tb_client_auth_response(ok, "token", BAD), UPULSAR_OK);
    bc_create_producer(ok, "t2", 2, NULL);
    cr_assert_eq(bc_stats(tb).auth_failed, 1);
    upulsar_tb_client_close(ok);
    upulsar_tb_client_close(wrong);
    upulsar_tb_client_close(silent);
    upulsar_tb_stop(tb);
    capture_check();
}

Test(broker_auth, tokens_over_tls)
{
    tls_certs_t certs;
    cr_assert_eq(tls_certs_make(&certs), 0, "openssl CLI failed");
    static const char *const tokens[] = {GOOD};
    upulsar_tb_opts_t o = bc_opts();
    o.tls_cert_file = certs.srv_cert;
    o.tls_key_file = certs.srv_key;
    o.auth_tokens = tokens;
    o.auth_tokens_cnt = 1;
    upulsar_tb_t *tb = bc_start(&o);
    upulsar_tb_client_opts_t co;
    upulsar_tb_client_opts_init(&co);
    co.tls_ca_file = certs.ca;
    co.token = GOOD;
    upulsar_tb_client_t *c;
    cr_assert_eq(upulsar_tb_client_connect_opts(upulsar_tb_url(tb), &co, WAIT_MS, &c), UPULSAR_OK,
                 "%s", upulsar_last_error());
    cr_assert_eq(upulsar_tb_auth_challenge(tb), 1);
    upulsar_tb_frame_t f;
    cr_assert_eq(upulsar_tb_client_expect(c, UP_CMD(AUTH_CHALLENGE), WAIT_MS, &f), UPULSAR_OK);
    cr_assert_eq(upulsar_tb_client_auth_response(c, NULL, GOOD), UPULSAR_OK);
    bc_create_producer(c, "t", 1, NULL);
    upulsar_tb_client_close(c);
    co.token = BAD;
    cr_assert_eq(upulsar_tb_client_connect_opts(upulsar_tb_url(tb), &co, WAIT_MS, &c),
                 UPULSAR_ERR_AUTHENTICATION_ERROR);
    cr_assert_null(strstr(upulsar_last_error(), "token-"), "%s", upulsar_last_error());
    cr_assert_eq(bc_stats(tb).auth_ok, 2);
    cr_assert_eq(bc_stats(tb).auth_failed, 1);
    upulsar_tb_stop(tb);
    tls_certs_remove(&certs);
    capture_check();
}
