/* crc32c.h -- CRC-32C (Castagnoli), as Pulsar frames use it. @internal */
#ifndef UP_CRC32C_H
#define UP_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/**
 * Extend @p crc (0 to start) over @p len bytes. Chaining equals one pass:
 * up_crc32c(up_crc32c(0, a, n), b, m) == CRC of a||b. Uses VPCLMULQDQ or
 * PCLMULQDQ folding with the SSE4.2 crc32 instruction, or that instruction
 * alone, when the CPU has them (checked once), else slicing-by-8 tables.
 * Thread safety: any. Allocates: no.
 */
uint32_t up_crc32c(uint32_t crc, const void *buf, size_t len);

/** The portable implementation, always (for tests and benchmarks). */
uint32_t up_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/** The SSE4.2 crc32-instruction implementation; only call when
 *  up_crc32c_hw_available(). */
uint32_t up_crc32c_hw(uint32_t crc, const void *buf, size_t len);
int up_crc32c_hw_available(void);

/** Carry-less multiplication folding (PCLMULQDQ, 64 bytes a step) for
 *  buffers of 256 bytes and more, the crc32 instruction for the rest; only
 *  call when up_crc32c_clmul_available() (which the environment variable
 *  UPULSAR_CRC32C_NO_CLMUL turns off, for comparisons). */
uint32_t up_crc32c_clmul(uint32_t crc, const void *buf, size_t len);
int up_crc32c_clmul_available(void);

/** The same folding 256 bytes a step on 512-bit registers (VPCLMULQDQ,
 *  AVX-512 F and VL) for buffers of 1 KiB and more, up_crc32c_clmul() for
 *  the rest; only call when up_crc32c_vpclmul_available() (which the
 *  environment variable UPULSAR_CRC32C_NO_VPCLMUL, or
 *  UPULSAR_CRC32C_NO_CLMUL, turns off, for comparisons). */
uint32_t up_crc32c_vpclmul(uint32_t crc, const void *buf, size_t len);
int up_crc32c_vpclmul_available(void);
#endif
