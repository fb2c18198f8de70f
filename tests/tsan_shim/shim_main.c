/* Runner for the TSan build's Criterion stand-in (see
 * tsan_shim/criterion/criterion.h). Runs every test in registration order:
 * suite .init, test .init, the test, test .fini, suite .fini. A failed
 * assertion exits 1 at once; exit 77 when every test was skipped or
 * disabled (ctest's SKIP_RETURN_CODE), else 0. */
#include "criterion/criterion.h"

struct shim_test *shim_tests;
struct shim_suite *shim_suites;
jmp_buf shim_skip_jmp;

int main(void)
{
    /* volatile: kept across the longjmp of cr_skip_test() */
    volatile int passed = 0, skipped = 0;
    for (struct shim_test *volatile t = shim_tests; t; t = t->next) {
        struct shim_suite *volatile s = shim_suites;
        while (s && strcmp(s->name, t->suite))
            s = s->next;
        if (t->opts.disabled) {
            fprintf(stderr, "[SKIP] %s::%s (disabled)\n", t->suite, t->name);
            skipped++;
            continue;
        }
        fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
        volatile int was_skipped = 0;
        if (setjmp(shim_skip_jmp) == 0) {
            if (s && s->init)
                s->init();
            if (t->opts.init)
                t->opts.init();
            t->fn();
        } else {
            was_skipped = 1;
        }
        if (t->opts.fini)
            t->opts.fini();
        if (s && s->fini)
            s->fini();
        fprintf(stderr, "[%s] %s::%s\n", was_skipped ? "SKIP" : " OK ", t->suite, t->name);
        if (was_skipped)
            skipped++;
        else
            passed++;
    }
    fprintf(stderr, "%d tests passed, %d skipped\n", passed, skipped);
    return passed == 0 && skipped > 0 ? 77 : 0;
}
