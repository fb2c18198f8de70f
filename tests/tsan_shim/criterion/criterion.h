/* A minimal stand-in for <criterion/criterion.h>, used only for the
 * ThreadSanitizer build: Criterion 2.4's runtime cannot start under TSan
 * (its shared arena mapping collides with TSan's shadow memory). It keeps
 * the subset of the API the tests use and runs every test in one process,
 * in order: suite and per-test .init/.fini, .disabled, cr_skip_test(). The
 * first failed assertion ends the run (exit 1); a run in which every test
 * was skipped exits 77, which ctest reports as "Skipped" (SKIP_RETURN_CODE). */
#ifndef UPULSAR_TSAN_SHIM_CRITERION_H
#define UPULSAR_TSAN_SHIM_CRITERION_H
#pragma GCC system_header
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shim_opts {
    void (*init)(void), (*fini)(void);
    double timeout;
    int disabled;
};
struct shim_test {
    const char *suite, *name;
    void (*fn)(void);
    struct shim_opts opts;
    struct shim_test *next;
};
struct shim_suite {
    const char *name;
    void (*init)(void), (*fini)(void);
    struct shim_suite *next;
};
extern struct shim_test *shim_tests;
extern struct shim_suite *shim_suites;
/* cr_skip_test() jumps back to the runner, which marks the test skipped. */
extern jmp_buf shim_skip_jmp;

static inline void shim_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    fprintf(stderr, "%s:%d: assertion failed: %s", file, line, expr);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
    exit(1);
}

#define SHIM_CHECK(cond, expr, ...)                                           \
    do {                                                                      \
        if (!(cond))                                                          \
            shim_fail(__FILE__, __LINE__, expr, "" __VA_ARGS__);              \
    } while (0)

#define cr_assert(c, ...) SHIM_CHECK((c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...) SHIM_CHECK(!(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) SHIM_CHECK((a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) SHIM_CHECK((a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) SHIM_CHECK((a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) SHIM_CHECK((a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) SHIM_CHECK((a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) SHIM_CHECK((a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(a, ...) SHIM_CHECK((a) == NULL, #a " == NULL", __VA_ARGS__)
#define cr_assert_not_null(a, ...) SHIM_CHECK((a) != NULL, #a " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) SHIM_CHECK(!strcmp((a), (b)), #a " == " #b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) SHIM_CHECK(strcmp((a), (b)), #a " != " #b, __VA_ARGS__)
#define cr_assert_arr_eq(a, b, n, ...) SHIM_CHECK(!memcmp((a), (b), (n)), #a " == " #b, __VA_ARGS__)
#define cr_expect cr_assert
#define cr_expect_eq cr_assert_eq
#define cr_assert_fail(...) shim_fail(__FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)
#define cr_fail(...) shim_fail(__FILE__, __LINE__, "cr_fail", "" __VA_ARGS__)
#define cr_skip_test(...)                                                     \
    do {                                                                      \
        fprintf(stderr, "skipped: " __VA_ARGS__);                             \
        fputc('\n', stderr);                                                  \
        longjmp(shim_skip_jmp, 1);                                            \
    } while (0)
#define cr_log_info(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr))
#define cr_log_warn cr_log_info

#define TestSuite(sname, ...)                                                 \
    static void __attribute__((constructor)) shim_suite_##sname(void)         \
    {                                                                         \
        static struct shim_opts o = {__VA_ARGS__};                            \
        static struct shim_suite s;                                           \
        s.name = #sname;                                                      \
        s.init = o.init;                                                      \
        s.fini = o.fini;                                                      \
        s.next = shim_suites;                                                 \
        shim_suites = &s;                                                     \
    }                                                                         \
    struct shim_unused_##sname

#define Test(sname, tname, ...)                                               \
    static void shim_fn_##sname##_##tname(void);                              \
    static void __attribute__((constructor)) shim_reg_##sname##_##tname(void) \
    {                                                                         \
        static struct shim_test t = {#sname, #tname, shim_fn_##sname##_##tname, \
                                     {__VA_ARGS__}, NULL};                    \
        struct shim_test **pp = &shim_tests;                                  \
        while (*pp)                                                           \
            pp = &(*pp)->next;                                                \
        *pp = &t;                                                             \
    }                                                                         \
    static void shim_fn_##sname##_##tname(void)

#endif
