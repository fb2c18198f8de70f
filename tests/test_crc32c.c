/* test_crc32c.c -- CRC-32C: published vectors, a bit-at-a-time reference
 * at every length and alignment, hardware == portable, chaining. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"

/* Straight from the definition: reflected 0x82F63B78, init/final ~0. */
static uint32_t crc_ref(uint32_t crc, const uint8_t *p, size_t n)
{
    uint32_t c = ~crc;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
}

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void check_vectors(crc_fn f, const char *name)
{
    uint8_t buf[43];
    cr_assert_eq(f(0, "123456789", 9), 0xE3069283u, "%s", name);
    cr_assert_eq(f(0, "", 0), 0u, "%s", name);
    cr_assert_eq(f(0, "a", 1), 0xC1D04330u, "%s", name);
    cr_assert_eq(f(0, "abc", 3), 0x364B3FB7u, "%s", name);
    cr_assert_eq(f(0, "The quick brown fox jumps over the lazy dog", 43), 0x22620404u, "%s",
                 name);
    /* RFC 3720 (iSCSI) B.4 */
    memset(buf, 0, 32);
    cr_assert_eq(f(0, buf, 32), 0x8A9136AAu, "%s zeros", name);
    memset(buf, 0xff, 32);
    cr_assert_eq(f(0, buf, 32), 0x62A8AB43u, "%s ones", name);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    cr_assert_eq(f(0, buf, 32), 0x46DD794Eu, "%s incrementing", name);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    cr_assert_eq(f(0, buf, 32), 0x113FDB5Cu, "%s decrementing", name);
}

Test(crc32c, portable_matches_published_vectors)
{
    check_vectors(up_crc32c_sw, "sw");
}

/* Without SSE4.2 the dispatcher must fall back to the portable code, so
 * the dispatch check below covers the machine either way. */
Test(crc32c, hardware_and_dispatch_match_published_vectors)
{
    if (up_crc32c_hw_available())
        check_vectors(up_crc32c_hw, "hw");
    check_vectors(up_crc32c, "dispatch");
}

/* Lengths 0..64 at start offsets 0..15, from exact-size heap copies so an
 * over-read is caught by ASan. */
Test(crc32c, every_length_and_alignment_matches_reference)
{
    uint8_t src[64 + 16];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)rnd();
    uint8_t *heap = malloc(64 + 16);
    cr_assert_not_null(heap);
    for (size_t off = 0; off < 16; off++) {
        for (size_t len = 0; len <= 64; len++) {
            /* place the bytes so they end exactly at the allocation end */
            uint8_t *p = heap + (64 + 16) - len;
            memcpy(p, src + off, len);
            uint32_t want = crc_ref(0, src + off, len);
            cr_assert_eq(up_crc32c_sw(0, p, len), want, "sw len %zu", len);
            cr_assert_eq(up_crc32c_sw(0, src + off, len), want, "sw len %zu off %zu", len, off);
            cr_assert_eq(up_crc32c(0, src + off, len), want, "len %zu off %zu", len, off);
            if (up_crc32c_hw_available()) {
                cr_assert_eq(up_crc32c_hw(0, p, len), want, "hw len %zu", len);
                cr_assert_eq(up_crc32c_hw(0, src + off, len), want, "hw len %zu off %zu", len,
                             off);
            }
        }
    }
    free(heap);
}

Test(crc32c, hardware_equals_portable_on_random_buffers)
{
    /* up_crc32c is the hardware path where there is one */
    crc_fn hw = up_crc32c_hw_available() ? up_crc32c_hw : up_crc32c;
    enum { MAX = 8192 };
    uint8_t *buf = malloc(MAX + 8);
    cr_assert_not_null(buf);
    for (size_t i = 0; i < MAX + 8; i++)
        buf[i] = (uint8_t)rnd();
    for (int iter = 0; iter < 2000; iter++) {
        size_t off = rnd() % 8;
        size_t len = iter < 1000 ? rnd() % 300 : rnd() % MAX;
        uint32_t seed = iter % 3 == 0 ? 0 : rnd();
        cr_assert_eq(hw(seed, buf + off, len), up_crc32c_sw(seed, buf + off, len),
                     "off %zu len %zu seed %08x", off, len, seed);
    }
    /* and against the reference on a few long ones */
    cr_assert_eq(hw(0, buf + 3, MAX), crc_ref(0, buf + 3, MAX));
    cr_assert_eq(up_crc32c_sw(0, buf + 5, MAX), crc_ref(0, buf + 5, MAX));
    free(buf);
}

/* Lengths on both sides of the sizes where block-wise implementations
 * switch strategy (1 KiB blocks, 3 interleaved streams), all alignments. */
Test(crc32c, lengths_around_block_boundaries_match_reference)
{
    static const size_t lens[] = {1023, 1024, 1025, 2047, 2048, 3071, 3072, 3073, 3080,
                                  4096, 6143, 6144, 6145, 9215, 9216, 9217, 65543};
    enum { MAX = 65543 + 8 };
    uint8_t *buf = malloc(MAX);
    cr_assert_not_null(buf);
    for (size_t i = 0; i < MAX; i++)
        buf[i] = (uint8_t)rnd();
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        for (size_t off = 0; off < 8; off++) {
            uint32_t seed = (uint32_t)(k * 8 + off) * 0x9E3779B9u;
            uint32_t want = crc_ref(seed, buf + off, lens[k]);
            cr_assert_eq(up_crc32c_sw(seed, buf + off, lens[k]), want, "sw len %zu off %zu",
                         lens[k], off);
            cr_assert_eq(up_crc32c(seed, buf + off, lens[k]), want, "len %zu off %zu", lens[k],
                         off);
            if (up_crc32c_hw_available())
                cr_assert_eq(up_crc32c_hw(seed, buf + off, lens[k]), want,
                             "hw len %zu off %zu", lens[k], off);
        }
    }
    free(buf);
}

Test(crc32c, chaining_equals_one_pass_at_every_split)
{
    uint8_t buf[200];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)rnd();
    uint32_t whole = crc_ref(0, buf, sizeof buf);
    for (size_t cut = 0; cut <= sizeof buf; cut++) {
        cr_assert_eq(up_crc32c_sw(up_crc32c_sw(0, buf, cut), buf + cut, sizeof buf - cut),
                     whole, "sw cut %zu", cut);
        cr_assert_eq(up_crc32c(up_crc32c(0, buf, cut), buf + cut, sizeof buf - cut), whole,
                     "cut %zu", cut);
        if (up_crc32c_hw_available())
            cr_assert_eq(up_crc32c_hw(up_crc32c_hw(0, buf, cut), buf + cut, sizeof buf - cut),
                         whole, "hw cut %zu", cut);
    }
    cr_assert_eq(up_crc32c(up_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

/* A folding path @p f against the software CRC at every length from 0 to
 * @p maxlen and start offsets 0..15, from buffers that end at the
 * allocation end (over-reads are caught by ASan), with random seeds; then
 * against the bit-at-a-time reference on the @p nlens long buffers
 * @p lens (each at most 1 MiB). */
static void check_folding(crc_fn f, size_t maxlen, const size_t *lens, size_t nlens)
{
    uint8_t *src = malloc(maxlen + 16), *heap = malloc(maxlen + 16);
    cr_assert(src && heap);
    for (size_t i = 0; i < maxlen + 16; i++)
        src[i] = (uint8_t)rnd();
    for (size_t off = 0; off < 16; off++)
        for (size_t len = 0; len <= maxlen; len++) {
            uint32_t seed = (len & 3) == 0 ? 0 : rnd();
            uint8_t *p = heap + (maxlen + 16) - len;
            memcpy(p, src + off, len);
            uint32_t want = up_crc32c_sw(seed, src + off, len);
            cr_assert_eq(f(seed, p, len), want, "len %zu off %zu seed %08x", len, off, seed);
        }
    free(src);
    free(heap);
    uint8_t *big = malloc((1u << 20) + 8);
    cr_assert_not_null(big);
    for (size_t i = 0; i < (1u << 20) + 8; i++)
        big[i] = (uint8_t)rnd();
    for (size_t k = 0; k < nlens; k++)
        cr_assert_eq(f(0, big + k, lens[k]), crc_ref(0, big + k, lens[k]), "len %zu", lens[k]);
    free(big);
}

/* @p f over a random buffer of @p n bytes (at most 4096), chained at every
 * split, equals the reference over the whole. */
static void check_chaining(crc_fn f, size_t n)
{
    uint8_t buf[4096];
    cr_assert_leq(n, sizeof buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)rnd();
    uint32_t whole = crc_ref(0, buf, n);
    for (size_t cut = 0; cut <= n; cut++)
        cr_assert_eq(f(f(0, buf, cut), buf + cut, n - cut), whole, "cut %zu", cut);
}

/* The PCLMULQDQ folding path at every length from 0 to 1100 (below, at and
 * above its 256-byte threshold, every 64- and 16-byte remainder) and start
 * offsets 0..15, from buffers that end at the allocation end (over-reads
 * are caught by ASan), with random seeds; plus the published vectors and
 * long buffers against the reference. */
Test(crc32c, clmul_folding_matches_reference_at_every_length_and_offset)
{
    if (!up_crc32c_clmul_available())
        cr_skip_test("this CPU has no PCLMULQDQ (or UPULSAR_CRC32C_NO_CLMUL is set)");
    check_vectors(up_crc32c_clmul, "clmul");
    static const size_t lens[] = {4096, 65536, 65543, 131072 + 5, 1u << 20};
    check_folding(up_crc32c_clmul, 1100, lens, sizeof lens / sizeof lens[0]);
}

Test(crc32c, clmul_chaining_equals_one_pass_at_every_split)
{
    if (!up_crc32c_clmul_available())
        cr_skip_test("this CPU has no PCLMULQDQ (or UPULSAR_CRC32C_NO_CLMUL is set)");
    check_chaining(up_crc32c_clmul, 700);
}

/* The 512-bit VPCLMULQDQ folding path at every length from 0 to 2400
 * (below, at and above its 1 KiB threshold: every 256-byte step with every
 * 16-byte and byte remainder) and start offsets 0..15, from buffers that end
 * at the allocation end (over-reads are caught by ASan), with random seeds;
 * plus the published vectors and long buffers against the bit-at-a-time
 * reference. */
Test(crc32c, vpclmul_folding_matches_reference_at_every_length_and_offset)
{
    if (!up_crc32c_vpclmul_available())
        cr_skip_test("this CPU has no VPCLMULQDQ with AVX-512 (or UPULSAR_CRC32C_NO_VPCLMUL "
                     "is set)");
    check_vectors(up_crc32c_vpclmul, "vpclmul");
    static const size_t lens[] = {4096, 57344 + 13, 65536, 131072 + 5, 1u << 20};
    check_folding(up_crc32c_vpclmul, 2400, lens, sizeof lens / sizeof lens[0]);
}

Test(crc32c, vpclmul_chaining_equals_one_pass_at_every_split)
{
    if (!up_crc32c_vpclmul_available())
        cr_skip_test("this CPU has no VPCLMULQDQ with AVX-512 (or UPULSAR_CRC32C_NO_VPCLMUL "
                     "is set)");
    check_chaining(up_crc32c_vpclmul, 2600);
}

/* The dispatcher takes the widest path the CPU has; whatever it is, long
 * buffers (where the folding paths run) give the reference's CRC. */
Test(crc32c, dispatch_matches_reference_on_long_buffers)
{
    static const size_t lens[] = {1023, 1024, 1025, 1279, 1280, 4096 + 7, 57344 + 13};
    uint8_t *b = malloc(57344 + 32);
    cr_assert_not_null(b);
    for (size_t i = 0; i < 57344 + 32; i++)
        b[i] = (uint8_t)rnd();
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        uint32_t seed = rnd();
        cr_assert_eq(up_crc32c(seed, b + k, lens[k]), crc_ref(seed, b + k, lens[k]), "len %zu",
                     lens[k]);
    }
    free(b);
}
