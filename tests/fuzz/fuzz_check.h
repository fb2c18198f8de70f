/* fuzz_check.h -- CHECK(c): a property of a fuzz target; a violation prints
 * where and traps, so libFuzzer keeps the input as a crash. */
#ifndef UPULSAR_FUZZ_CHECK_H
#define UPULSAR_FUZZ_CHECK_H
#include <stdio.h>

#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            __builtin_trap();                                                      \
        }                                                                          \
    } while (0)

#endif
