/* Runner for the TSan build's Criterion stand-in (see
 * tsan_shim/criterion/criterion.h). */
#include "criterion/criterion.h"

struct shim_test *shim_tests;
struct shim_suite *shim_suites;

int main(void)
{
    int n = 0;
    for (struct shim_test *t = shim_tests; t; t = t->next) {
        struct shim_suite *s = shim_suites;
        while (s && strcmp(s->name, t->suite))
            s = s->next;
        fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
        if (s && s->init)
            s->init();
        t->fn();
        if (s && s->fini)
            s->fini();
        fprintf(stderr, "[ OK ] %s::%s\n", t->suite, t->name);
        n++;
    }
    fprintf(stderr, "%d tests passed\n", n);
    return 0;
}
