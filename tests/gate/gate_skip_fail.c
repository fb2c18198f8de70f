/* A planted failure beside a skip: ctest must report this binary as failed
 * (it is registered with WILL_FAIL), whatever the skipped test printed. */
#include <criterion/criterion.h>

Test(gate, skipped) { cr_skip_test("this test is skipped on purpose"); }

Test(gate, failing) { cr_assert_eq(1, 2, "this test fails on purpose"); }
