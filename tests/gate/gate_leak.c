/* A planted leak: built only in the AddressSanitizer build, where ctest
 * must report this binary as failed (it is registered with WILL_FAIL, so
 * the suite stays green only while a leak really fails a test). Criterion
 * itself reports the test as passing: the leak is found when the worker
 * process exits, after the test has ended. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

Test(gate, a_leaked_buffer_fails_the_test)
{
    char *p = malloc(1000);
    cr_assert_not_null(p);
    memset(p, 1, 1000);
    sink = p;
    sink = NULL; /* the only pointer is gone: LeakSanitizer reports 1000 bytes */
}
