/* crc32c.c -- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and
 * final XOR 0xFFFFFFFF). Hardware path: SSE4.2 crc32 instruction, 8 bytes at
 * a time. Portable path: slicing-by-8 tables built once. */
#include "crc32c.h"

#include <pthread.h>
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

int up_crc32c_hw_available(void)
{
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}
#else
uint32_t up_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
    return up_crc32c_sw(crc, buf, len);
}
int up_crc32c_hw_available(void) { return 0; }
#endif

uint32_t up_crc32c(uint32_t crc, const void *buf, size_t len)
{
    if (up_crc32c_hw_available())
        return up_crc32c_hw(crc, buf, len);
    return up_crc32c_sw(crc, buf, len);
}
