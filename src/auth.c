/* auth.c -- the token to present: from auth.token.file (read again at every
 * connection, so a rotated token is picked up), else the environment
 * variable named by auth.token.env, else auth.token. Never logged; every
 * buffer it passes through here is wiped (up_wipe). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "err.h"

/* Read the token file into @p buf (NUL-terminated). read(2) straight into
 * the caller's buffer: stdio would leave a copy in a buffer of its own,
 * freed without being wiped. */
static upulsar_err_t read_token_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "auth.token.file %s: %s", path,
                         strerror(errno));
    size_t n = 0;
    int err = 0;
    bool longer = false;
    for (;;) {
        ssize_t r = read(fd, buf + n, size - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err = errno;
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == size - 1) {
            char more;
            ssize_t m;
            while ((m = read(fd, &more, 1)) < 0 && errno == EINTR)
                ;
            longer = m > 0;
            up_wipe(&more, sizeof more);
            break;
        }
    }
    close(fd);
    buf[n] = '\0';
    if (err || longer) {
        up_wipe(buf, n);
        if (err)
            return up_seterr(UPULSAR_ERR__INVALID_ARG, "auth.token.file %s: %s", path,
                             strerror(err));
        return up_seterr(UPULSAR_ERR__INVALID_ARG,
                         "auth.token.file %s: token longer than %zu bytes", path, size - 1);
    }
    return UPULSAR_OK;
}

upulsar_err_t up_auth_token(const struct upulsar_conf *cf, char *buf, size_t size)
{
    buf[0] = '\0';
    if (cf->auth_token_file[0]) {
        upulsar_err_t err = read_token_file(cf->auth_token_file, buf, size);
        if (err)
            return err;
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
    /* surrounding whitespace (a trailing newline in a file) is not part of
     * it; the bytes left behind by the shift are wiped */
    size_t len = strlen(buf), start = 0;
    while (len && isspace((unsigned char)buf[len - 1]))
        buf[--len] = '\0';
    while (start < len && isspace((unsigned char)buf[start]))
        start++;
    if (start) {
        memmove(buf, buf + start, len - start + 1);
        up_wipe(buf + len - start + 1, start);
    }
    /* a file or variable named for the token that holds none is a mistake,
     * not a request to connect without authentication */
    if (!buf[0] && cf->auth_token_file[0])
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "auth.token.file %s: empty (no token in it)",
                         cf->auth_token_file);
    if (!buf[0] && cf->auth_token_env[0])
        return up_seterr(UPULSAR_ERR__INVALID_ARG, "auth.token.env: %s holds no token",
                         cf->auth_token_env);
    return UPULSAR_OK;
}
