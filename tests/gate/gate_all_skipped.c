/* Every test skipped and none failed: the binary exits 77, which ctest
 * reports as "Skipped" (SKIP_RETURN_CODE); gate_all_skipped_exits_77 checks
 * the code itself. */
#include <criterion/criterion.h>

Test(gate, skipped_one) { cr_skip_test("skipped on purpose"); }

Test(gate, skipped_two) { cr_skip_test("skipped on purpose"); }
