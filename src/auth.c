/* auth.c -- the token to present: from auth.token.file (read again at every
 * connection, so a rotated token is picked up), else the environment
 * variable named by auth.token.env, else auth.token. Never logged. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "err.h"

upulsar_err_t up_auth_token(const struct upulsar_conf *cf, char *buf, size_t size)
{
    buf[0] = '\0';
    if (cf->auth_token_file[0]) {
        FILE *f = fopen(cf->auth_token_file, "r");
        if (!f)
            return up_seterr(UPULSAR_ERR__INVALID_ARG, "auth.token.file %s: %s",
                             cf->auth_token_file, strerror(errno));
        size_t n = fread(buf, 1, size - 1, f);
        int full = n == size - 1 && fgetc(f) != EOF;
        fclose(f);
        if (full)
            return up_seterr(UPULSAR_ERR__INVALID_ARG, "auth.token.file %s: token longer than "
                             "%zu bytes", cf->auth_token_file, size - 1);
        buf[n] = '\0';
    } else if (cf->auth_token_env[0]) {
        const char *v = getenv(cf->auth_token_env);
        if (!v || !*v)
            return up_seterr(UPULSAR_ERR__INVALID_ARG, "auth.token.env: %s is not set",
                             cf->auth_token_env);
        if (strlen(v) >= size)
            return up_seterr(UPULSAR_ERR__INVALID_ARG, "auth.token.env: token too long");
        memcpy(buf, v, strlen(v) + 1);
    } else {
        snprintf(buf, size, "%s", cf->auth_token);
    }
    /* surrounding whitespace (a trailing newline in a file) is not part of it */
    size_t len = strlen(buf), start = 0;
    while (len && isspace((unsigned char)buf[len - 1]))
        buf[--len] = '\0';
    while (start < len && isspace((unsigned char)buf[start]))
        start++;
    memmove(buf, buf + start, len - start + 1);
    return UPULSAR_OK;
}
