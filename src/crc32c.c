/* crc32c.c -- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and
 * final XOR 0xFFFFFFFF). Hardware paths: carry-less multiplication folding
 * (512-bit VPCLMULQDQ or 128-bit PCLMULQDQ) for long buffers, the SSE4.2
 * crc32 instruction 8 bytes at a time for the rest. Portable path:
 * slicing-by-8 tables built once. */
#include "crc32c.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (POLY & (0u - (c & 1u)));
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

uint32_t up_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&table_once, table_init);
    const uint8_t *p = buf;
    uint32_t c = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
        len--;
    }
    while (len >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= c;
        c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^
            table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
            table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
            table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
    return ~c;
}

#if defined(__x86_64__)
/* Three independent streams of BLOCK bytes run in parallel (the crc32
 * instruction has a 3-cycle latency and a 1-cycle throughput), then are
 * combined: for raw (non-inverted) CRC registers,
 *   raw(a, A||B||C) = Z2(raw(a, A)) ^ Z1(raw(0, B)) ^ raw(0, C)
 * where Zk appends k*BLOCK zero bytes, a linear map on 32 bits applied here
 * with four 256-entry tables (one per byte of the register). */
#define BLOCK 1024
static uint32_t zshift[2][4][256];
static pthread_once_t zshift_once = PTHREAD_ONCE_INIT;

__attribute__((target("sse4.2"))) static uint64_t raw_hw(uint64_t c, const uint8_t *p,
                                                           size_t len)
{
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    while (len--)
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return c;
}

static void zshift_init(void)
{
    static const uint8_t zeros[2 * BLOCK];
    for (int k = 0; k < 2; k++)
        for (int b = 0; b < 4; b++)
            for (uint32_t v = 0; v < 256; v++)
                zshift[k][b][v] =
                    (uint32_t)raw_hw((uint64_t)(v << (8 * b)), zeros, (size_t)(k + 1) * BLOCK);
}

static inline uint32_t zapply(uint32_t t[4][256], uint32_t c)
{
    return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

__attribute__((target("sse4.2"))) uint32_t up_crc32c_hw(uint32_t crc, const void *buf,
                                                        size_t len)
{
    const uint8_t *p = buf;
    uint64_t c = (uint32_t)~crc;
    while (len && ((uintptr_t)p & 7)) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        len--;
    }
    if (len >= 3 * BLOCK) {
        pthread_once(&zshift_once, zshift_init);
        do {
            uint64_t c1 = 0, c2 = 0;
            const uint8_t *p1 = p + BLOCK, *p2 = p + 2 * BLOCK;
            for (size_t i = 0; i < BLOCK; i += 8) {
                uint64_t w0, w1, w2;
                memcpy(&w0, p + i, 8);
                memcpy(&w1, p1 + i, 8);
                memcpy(&w2, p2 + i, 8);
                c = __builtin_ia32_crc32di(c, w0);
                c1 = __builtin_ia32_crc32di(c1, w1);
                c2 = __builtin_ia32_crc32di(c2, w2);
            }
            c = zapply(zshift[1], (uint32_t)c) ^ zapply(zshift[0], (uint32_t)c1) ^ (uint32_t)c2;
            p += 3 * BLOCK;
            len -= 3 * BLOCK;
        } while (len >= 3 * BLOCK);
    }
    return ~(uint32_t)raw_hw(c, p, len);
}

/* ---- carry-less multiplication (PCLMULQDQ) folding ----------------------
 *
 * Reflected CRC arithmetic: a 16-byte block loaded into an xmm register
 * stands for the polynomial whose x^(127-i) coefficient is register bit i
 * (bit 0 = lowest bit of the first byte, the first bit the CRC consumes).
 * Its low quadword h is then the x^127..x^64 part and its high quadword l
 * the x^63..x^0 part: X = H*x^64 + L.
 *
 * Folding moves a block D bits further down the message: X*x^D mod P is
 * what it contributes at that position. A carry-less product of two
 * reflected quadwords a, b (value A = sum a_i x^(63-i)) is A*B*x in the
 * same 128-bit convention, so multiplying h by the reflected quadword of
 * K1 = x^(64+D-1) mod P and l by that of K2 = x^(D-1) mod P, and XORing
 * both with the block found D bits later, gives a 128-bit value of degree
 * < 128 equivalent to everything so far. Four such accumulators fold 64
 * bytes per step (D = 512), then fold into one (D = 128).
 *
 * What is left, X, counts as the message itself: its CRC register is
 * X*x^32 mod P, which the crc32 instruction computes from a zero register
 * over X's 16 bytes. The initial register is XORed into the first four
 * bytes (for a reflected CRC, raw(c, M) = raw(0, M ^ c) when |M| >= 4).
 *
 * The constants are computed here from P (x^n mod P), not taken from
 * tables, and the tests compare every length and alignment with the
 * portable code. */
#include <immintrin.h>

#define POLY_NORMAL 0x1EDC6F41u /* P = x^32 + this, bit j = coefficient of x^j */

/* x^n mod P, bit j = coefficient of x^j. */
static uint32_t xpow_mod(unsigned n)
{
    uint32_t r = 1; /* x^0 */
    while (n--)
        r = (r << 1) ^ ((r & 0x80000000u) ? POLY_NORMAL : 0);
    return r;
}

/* The reflected quadword of a polynomial of degree < 32: coefficient of x^j
 * at bit 63 - j. */
static uint64_t reflect_q(uint32_t r)
{
    uint64_t q = 0;
    for (int j = 0; j < 32; j++)
        if (r & (1u << j))
            q |= 1ull << (63 - j);
    return q;
}

static uint64_t fold_k[6]; /* K1, K2 for D = 512; for D = 128; for D = 2048 */
static pthread_once_t fold_once = PTHREAD_ONCE_INIT;

static void fold_init(void)
{
    fold_k[0] = reflect_q(xpow_mod(64 + 512 - 1));
    fold_k[1] = reflect_q(xpow_mod(512 - 1));
    fold_k[2] = reflect_q(xpow_mod(64 + 128 - 1));
    fold_k[3] = reflect_q(xpow_mod(128 - 1));
    fold_k[4] = reflect_q(xpow_mod(64 + 2048 - 1));
    fold_k[5] = reflect_q(xpow_mod(2048 - 1));
}

__attribute__((target("sse4.2,pclmul"))) static inline __m128i fold(__m128i x, __m128i k,
                                                                  __m128i next)
{
    __m128i hi = _mm_clmulepi64_si128(x, k, 0x00); /* h * K1 */
    __m128i lo = _mm_clmulepi64_si128(x, k, 0x11); /* l * K2 */
    return _mm_xor_si128(_mm_xor_si128(hi, lo), next);
}

/* Below this the crc32 instruction alone is as fast. */
#define CLMUL_MIN 256

/* Fold the rest of the message (@p len bytes at @p p) into @p x 16 bytes a
 * step, then take the CRC: the register of X is X*x^32 mod P, the crc32
 * instruction's from a zero register over X's 16 bytes, and the last
 * 0..15 bytes go on from it. */
__attribute__((target("sse4.2,pclmul"))) static inline uint32_t clmul_finish(__m128i x,
                                                                           const uint8_t *p,
                                                                           size_t len)
{
    const __m128i k128 = _mm_set_epi64x((long long)fold_k[3], (long long)fold_k[2]);
    while (len >= 16) {
        x = fold(x, k128, _mm_loadu_si128((const __m128i *)p));
        p += 16;
        len -= 16;
    }
    uint64_t c = __builtin_ia32_crc32di(0, (uint64_t)_mm_cvtsi128_si64(x));
    c = __builtin_ia32_crc32di(c, (uint64_t)_mm_extract_epi64(x, 1));
    /* the tail goes on from that register (up_crc32c_hw takes and returns
     * the inverted form) */
    return up_crc32c_hw(~(uint32_t)c, p, len);
}

__attribute__((target("sse4.2,pclmul"))) uint32_t up_crc32c_clmul(uint32_t crc,
                                                                   const void *buf,
                                                                   size_t len)
{
    const uint8_t *p = buf;
    if (len < CLMUL_MIN)
        return up_crc32c_hw(crc, buf, len);
    pthread_once(&fold_once, fold_init);
    const __m128i k512 = _mm_set_epi64x((long long)fold_k[1], (long long)fold_k[0]);
    const __m128i k128 = _mm_set_epi64x((long long)fold_k[3], (long long)fold_k[2]);
    __m128i x0 = _mm_loadu_si128((const __m128i *)p);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)~crc));
    p += 64;
    len -= 64;
    while (len >= 64) {
        x0 = fold(x0, k512, _mm_loadu_si128((const __m128i *)p));
        x1 = fold(x1, k512, _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = fold(x2, k512, _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = fold(x3, k512, _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        len -= 64;
    }
    __m128i x = fold(x0, k128, x1);
    x = fold(x, k128, x2);
    x = fold(x, k128, x3);
    return clmul_finish(x, p, len);
}

/* ---- the same folding on 512-bit registers (VPCLMULQDQ) -----------------
 *
 * Each 128-bit lane of a zmm register folds as an xmm register does above.
 * Four registers hold 16 blocks (256 bytes) and fold D = 2048 bits a step;
 * then each folds into the next (D = 512: lane i of one register lands on
 * lane i of the next), and the four lanes of the last into one 128-bit
 * value (D = 128), which the 128-bit path finishes. Used from VCLMUL_MIN
 * bytes on, where the wide registers pay for their set-up. */
#define VCLMUL_MIN 1024

#define VCLMUL_TARGET "sse4.2,pclmul,avx512f,avx512vl,vpclmulqdq"

__attribute__((target(VCLMUL_TARGET))) static inline __m512i fold512(__m512i x, __m512i k,
                                                                     __m512i next)
{
    __m512i hi = _mm512_clmulepi64_epi128(x, k, 0x00);
    __m512i lo = _mm512_clmulepi64_epi128(x, k, 0x11);
    return _mm512_ternarylogic_epi64(hi, lo, next, 0x96); /* hi ^ lo ^ next */
}

__attribute__((target(VCLMUL_TARGET))) uint32_t up_crc32c_vpclmul(uint32_t crc,
                                                                  const void *buf, size_t len)
{
    const uint8_t *p = buf;
    if (len < VCLMUL_MIN)
        return up_crc32c_clmul(crc, buf, len);
    pthread_once(&fold_once, fold_init);
    const __m512i k2048 =
        _mm512_broadcast_i32x4(_mm_set_epi64x((long long)fold_k[5], (long long)fold_k[4]));
    const __m512i k512 =
        _mm512_broadcast_i32x4(_mm_set_epi64x((long long)fold_k[1], (long long)fold_k[0]));
    const __m128i k128 = _mm_set_epi64x((long long)fold_k[3], (long long)fold_k[2]);
    __m512i x0 = _mm512_loadu_si512((const void *)p);
    __m512i x1 = _mm512_loadu_si512((const void *)(p + 64));
    __m512i x2 = _mm512_loadu_si512((const void *)(p + 128));
    __m512i x3 = _mm512_loadu_si512((const void *)(p + 192));
    x0 = _mm512_xor_si512(x0, _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)~crc)));
    p += 256;
    len -= 256;
    while (len >= 256) {
        x0 = fold512(x0, k2048, _mm512_loadu_si512((const void *)p));
        x1 = fold512(x1, k2048, _mm512_loadu_si512((const void *)(p + 64)));
        x2 = fold512(x2, k2048, _mm512_loadu_si512((const void *)(p + 128)));
        x3 = fold512(x3, k2048, _mm512_loadu_si512((const void *)(p + 192)));
        p += 256;
        len -= 256;
    }
    x1 = fold512(x0, k512, x1);
    x2 = fold512(x1, k512, x2);
    x3 = fold512(x2, k512, x3);
    __m128i x = fold(_mm512_extracti32x4_epi32(x3, 0), k128, _mm512_extracti32x4_epi32(x3, 1));
    x = fold(x, k128, _mm512_extracti32x4_epi32(x3, 2));
    x = fold(x, k128, _mm512_extracti32x4_epi32(x3, 3));
    return clmul_finish(x, p, len);
}

static int cpu_level(void)
{
    /* 0: none, 1: SSE4.2, 2: SSE4.2 + PCLMULQDQ, 3: and VPCLMULQDQ on
     * 512-bit registers (AVX-512 F and VL, which the OS must have enabled:
     * libgcc checks XCR0) */
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = !__builtin_cpu_supports("sse4.2") ? 0 : __builtin_cpu_supports("pclmul") ? 2 : 1;
        if (v == 2 && __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512vl"))
            v = 3;
        if (v == 3 && getenv("UPULSAR_CRC32C_NO_VPCLMUL"))
            v = 2;
        if (v >= 2 && getenv("UPULSAR_CRC32C_NO_CLMUL"))
            v = 1;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}

int up_crc32c_hw_available(void) { return cpu_level() >= 1; }
int up_crc32c_clmul_available(void) { return cpu_level() >= 2; }
int up_crc32c_vpclmul_available(void) { return cpu_level() >= 3; }
#else
uint32_t up_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
    return up_crc32c_sw(crc, buf, len);
}
uint32_t up_crc32c_clmul(uint32_t crc, const void *buf, size_t len)
{
    return up_crc32c_sw(crc, buf, len);
}
uint32_t up_crc32c_vpclmul(uint32_t crc, const void *buf, size_t len)
{
    return up_crc32c_sw(crc, buf, len);
}
int up_crc32c_hw_available(void) { return 0; }
int up_crc32c_clmul_available(void) { return 0; }
int up_crc32c_vpclmul_available(void) { return 0; }
#endif

uint32_t up_crc32c(uint32_t crc, const void *buf, size_t len)
{
#if defined(__x86_64__)
    int level = cpu_level();
    if (level == 3)
        return up_crc32c_vpclmul(crc, buf, len);
    if (level == 2)
        return up_crc32c_clmul(crc, buf, len);
    if (level == 1)
        return up_crc32c_hw(crc, buf, len);
#endif
    return up_crc32c_sw(crc, buf, len);
}
