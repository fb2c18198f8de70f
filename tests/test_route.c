/* test_route.c -- key hashing matches the Java/C++ clients' vectors and
 * routing is (masked hash) mod partitions. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

static uint32_t mm(const char *s) { return up_murmur3_32(s, strlen(s), 0); }
static int32_t js(const char *s) { return up_hash_java_string(s, strlen(s)); }

Test(route, murmur3_matches_protocol_vectors)
{
    cr_assert_eq(mm("") & 0x7FFFFFFF, 0u);
    cr_assert_eq(mm("a"), 0x3c2569b2u);
    cr_assert_eq(mm("a") & 0x7FFFFFFF, 1009084850u);
    cr_assert_eq(mm("key1") & 0x7FFFFFFF, 462881061u);
    cr_assert_eq(mm("hello"), 0x248bfa47u);
    cr_assert_eq(mm("my-key") & 0x7FFFFFFF, 1844492593u);
}

/* Published MurmurHash3_x86_32 verification values: every tail length
 * (0..4 bytes), bytes >= 0x80 (must be read unsigned) and non-zero seeds. */
Test(route, murmur3_matches_reference_vectors_for_tails_and_seeds)
{
    cr_assert_eq(up_murmur3_32("", 0, 0), 0u);
    cr_assert_eq(up_murmur3_32("", 0, 1), 0x514E28B7u);
    cr_assert_eq(up_murmur3_32("", 0, 0xffffffffu), 0x81F16F39u);
    cr_assert_eq(up_murmur3_32("\xff\xff\xff\xff", 4, 0), 0x76293B50u);
    cr_assert_eq(up_murmur3_32("\x21\x43\x65\x87", 4, 0), 0xF55B516Bu);
    cr_assert_eq(up_murmur3_32("\x21\x43\x65\x87", 4, 0x5082EDEEu), 0x2362F9DEu);
    cr_assert_eq(up_murmur3_32("\x21\x43\x65", 3, 0), 0x7E4A8634u);
    cr_assert_eq(up_murmur3_32("\x21\x43", 2, 0), 0xA0F7B07Au);
    cr_assert_eq(up_murmur3_32("\x21", 1, 0), 0x72661CF4u);
    cr_assert_eq(up_murmur3_32("\0\0\0\0", 4, 0), 0x2362F9DEu);
    cr_assert_eq(up_murmur3_32("\0\0\0", 3, 0), 0x85F0B427u);
    cr_assert_eq(up_murmur3_32("\0\0", 2, 0), 0x30F4C306u);
    cr_assert_eq(up_murmur3_32("\0", 1, 0), 0x514E28B7u);
    const char *fox = "The quick brown fox jumps over the lazy dog";
    cr_assert_eq(up_murmur3_32(fox, strlen(fox), 0x9747b28cu), 0x2FA826CDu);
    cr_assert_eq(up_murmur3_32("Hello, world!", 13, 0x9747b28cu), 0x24884CBAu);
}

Test(route, murmur3_reads_only_len_bytes_at_any_alignment)
{
    /* the hash of a key must not depend on where it sits in memory nor on
     * the bytes after it */
    char buf[64];
    const char *k = "partition-key-0123456789";
    size_t n = strlen(k);
    uint32_t want = mm(k);
    for (size_t off = 0; off < 8; off++) {
        memset(buf, 'x', sizeof buf);
        memcpy(buf + off, k, n);
        cr_assert_eq(up_murmur3_32(buf + off, n, 0), want, "offset %zu", off);
    }
}

Test(route, java_string_hash_matches_protocol_vectors)
{
    cr_assert_eq(js(""), 0);
    cr_assert_eq(js("a"), 97);
    cr_assert_eq(js("key1"), 3288498);
    cr_assert_eq(js("hello"), 99162322);
    /* "my-key" is negative in Java (-1061197122); the doc lists it masked */
    cr_assert_eq(js("my-key") & 0x7FFFFFFF, 1086286526);
    cr_assert_eq(js("my-key"), -1061197122);
}

Test(route, java_string_hash_overflows_like_java_int)
{
    /* "polygenelubricants".hashCode() == Integer.MIN_VALUE in Java;
     * "Aa" and "BB" collide (2112). */
    cr_assert_eq(js("polygenelubricants"), INT32_MIN);
    cr_assert_eq(js("Aa"), 2112);
    cr_assert_eq(js("BB"), 2112);
    /* wraps modulo 2^32 like Java int arithmetic */
    cr_assert_eq(js("zzzzzzz"), 215481018);
}

Test(route, java_string_hash_uses_utf16_units_for_non_ascii)
{
    /* U+00E9 is one UTF-16 unit 0xE9 though two UTF-8 bytes */
    cr_assert_eq(js("\xc3\xa9"), 233);
    /* U+20AC (3 UTF-8 bytes) is one unit 0x20AC */
    cr_assert_eq(js("\xe2\x82\xac"), 0x20AC);
    /* "héllo": 104, 233, 108, 108, 111 */
    cr_assert_eq(js("h\xc3\xa9llo"), 103094734);
    /* U+1F600 (4 UTF-8 bytes) is the surrogate pair D83D DE00:
     * 31 * 0xD83D + 0xDE00 = 1772899 */
    cr_assert_eq(js("\xf0\x9f\x98\x80"), 1772899);
    /* U+10000 = D800 DC00 ; U+10FFFF = DBFF DFFF */
    cr_assert_eq(js("\xf0\x90\x80\x80"), 31 * 0xD800 + 0xDC00);
    cr_assert_eq(js("\xf4\x8f\xbf\xbf"), 31 * 0xDBFF + 0xDFFF);
    /* a byte-wise hash (what the C++ client does) would differ */
    cr_assert_neq(js("\xc3\xa9"), 31 * (int8_t)0xc3 + (int8_t)0xa9);
}

Test(route, java_string_hash_replaces_invalid_utf8_deterministically)
{
    const int32_t R = 0xFFFD;
    cr_assert_eq(js("\xff"), R);                     /* never valid */
    cr_assert_eq(js("\x80"), R);                     /* stray continuation */
    cr_assert_eq(js("\xc0\xaf"), 31 * R + R);        /* overlong: 2 bad bytes */
    cr_assert_eq(js("a\xe2\x82"), 31 * 97 + R);      /* truncated at the end */
    cr_assert_eq(js("\xe2\x82" "a"), 31 * R + 97);   /* truncated, resumes */
    cr_assert_eq(js("\xf0\x9f\x98"), R);             /* 3 of 4 bytes: one U+FFFD */
    cr_assert_eq(js("\xed\xa0\x80"), (31 * R + R) * 31 + R); /* encoded surrogate */
    cr_assert_eq(js("\xf4\x90\x80\x80"), ((31 * R + R) * 31 + R) * 31 + R); /* > U+10FFFF */
    cr_assert_eq(js("\xe0\x80\x80"), (31 * R + R) * 31 + R); /* overlong 3-byte */
    /* an embedded NUL is a character like any other, not an end */
    cr_assert_eq(up_hash_java_string("a\0b", 3), (31 * 97 + 0) * 31 + 98);
}

Test(route, java_string_hash_never_reads_past_len)
{
    /* a lead byte at the very end must not look at the byte after it */
    char buf[2] = {(char)0xf0, (char)0x9f};
    cr_assert_eq(up_hash_java_string(buf, 1), 0xFFFD);
    cr_assert_eq(up_hash_java_string(buf, 0), 0);
    /* for every 3-byte input: the hash of an exact-size heap copy (ASan
     * traps an over-read) equals the hash of the same bytes followed by
     * continuation bytes that would complete a truncated sequence */
    uint8_t *exact = malloc(3);
    uint8_t padded[6];
    cr_assert_not_null(exact);
    for (unsigned v = 0; v < (1u << 24); v += 251) {
        exact[0] = (uint8_t)v;
        exact[1] = (uint8_t)(v >> 8);
        exact[2] = (uint8_t)(v >> 16);
        memcpy(padded, exact, 3);
        memset(padded + 3, 0x80, 3);
        cr_assert_eq(up_hash_java_string((const char *)exact, 3),
                     up_hash_java_string((const char *)padded, 3), "input %06x", v);
    }
    free(exact);
}

Test(route, route_key_is_masked_hash_mod_partitions)
{
    const char *keys[] = {"", "a", "key1", "hello", "my-key", "h\xc3\xa9llo",
                          "polygenelubricants", "zzzzzzz"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        size_t n = strlen(keys[i]);
        for (uint32_t parts = 2; parts < 40; parts += 3) {
            uint32_t m = (mm(keys[i]) & 0x7FFFFFFFu) % parts;
            uint32_t j = ((uint32_t)js(keys[i]) & 0x7FFFFFFFu) % parts;
            cr_assert_eq(up_route_key(UP_HASH_MURMUR3_32, keys[i], n, parts), m);
            cr_assert_eq(up_route_key(UP_HASH_JAVA_STRING, keys[i], n, parts), j);
        }
    }
    /* concrete values: "a" -> 1009084850 % 7 == 2 ; 97 % 7 == 6 */
    cr_assert_eq(up_route_key(UP_HASH_MURMUR3_32, "a", 1, 7), 1009084850u % 7);
    cr_assert_eq(up_route_key(UP_HASH_JAVA_STRING, "a", 1, 7), 6u);
    /* Integer.MIN_VALUE masks to 0 */
    cr_assert_eq(up_route_key(UP_HASH_JAVA_STRING, "polygenelubricants", 18, 5), 0u);
}

Test(route, route_key_handles_zero_and_one_partition)
{
    cr_assert_eq(up_route_key(UP_HASH_JAVA_STRING, "hello", 5, 0), 0u);
    cr_assert_eq(up_route_key(UP_HASH_MURMUR3_32, "hello", 5, 0), 0u);
    cr_assert_eq(up_route_key(UP_HASH_JAVA_STRING, "hello", 5, 1), 0u);
    cr_assert_eq(up_route_key(UP_HASH_MURMUR3_32, "hello", 5, 1), 0u);
}

/* Round robin with a ring smaller than a batch: one thread's keyless
 * messages stay on a slot only while the run's records (payload plus
 * UP_RR_REC_BYTES each) fit in half of the ring. Batch limits and the
 * delay are far off, so the ring alone moves the cursor: every run but the
 * last fits in half of the ring, and would not with the message that
 * started the next one. */
Test(route, round_robin_moves_on_before_a_run_passes_half_the_ring)
{
    static struct upulsar_conf cf; /* large: not on the stack */
    memset(&cf, 0, sizeof cf);
    cf.batching_enabled = true;
    cf.batch_max_messages = 100000;
    cf.batch_max_bytes = 5 << 20;
    cf.batch_max_delay_us = 60 * 1000 * 1000;
    cf.ring_bytes = 16 * 1024;
    const uint64_t half = (uint64_t)cf.ring_bytes / 2;
    enum { N = 2000, SLOTS = 7 };
    up_rr_t st = {0};
    st.moved_us = up_coarse_us();
    uint32_t prev = UINT32_MAX;
    uint64_t run = 0, runs = 0, longest = 0;
    for (int i = 0; i < N; i++) {
        size_t len = 20 + (size_t)(i * 37) % 300; /* sizes vary */
        uint64_t rec = len + UP_RR_REC_BYTES;
        uint32_t s = up_rr_route(&st, &cf, len, SLOTS);
        cr_assert_lt(s, SLOTS);
        if (s != prev) {
            if (prev != UINT32_MAX) {
                cr_assert_eq(s, (prev + 1) % SLOTS, "message %d: the cursor skipped a slot", i);
                cr_assert_gt(run + rec, half,
                             "message %d: moved with %llu bytes on the slot, room for %llu more",
                             i, (unsigned long long)run, (unsigned long long)rec);
            }
            runs++;
            run = 0;
        }
        run += rec;
        cr_assert_leq(run, half, "message %d: a run of %llu bytes, over half of a %lld byte ring",
                      i, (unsigned long long)run, (long long)cf.ring_bytes);
        if (run > longest)
            longest = run;
        prev = s;
    }
    cr_assert_gt(runs, 1, "the cursor never moved: the test proves nothing");
    cr_assert_gt(longest, half / 2, "runs of at most %llu bytes", (unsigned long long)longest);

    /* payloads over a quarter of the ring are kept out of it: a run of
     * them counts their records only, so the cursor stays for many */
    up_rr_t st3 = {0};
    st3.moved_us = up_coarse_us();
    uint32_t at = up_rr_route(&st3, &cf, 6000, SLOTS);
    uint32_t stay = 1;
    while (up_rr_route(&st3, &cf, 6000, SLOTS) == at)
        stay++;
    cr_assert_eq(stay, half / UP_RR_REC_BYTES,
                 "a run of %u 6000-byte messages (kept out of a %lld byte ring)", stay,
                 (long long)cf.ring_bytes);

    /* without a ring size (0), the batch limits alone: one run */
    cf.ring_bytes = 0;
    up_rr_t st2 = {0};
    st2.moved_us = up_coarse_us();
    uint32_t first = up_rr_route(&st2, &cf, 100, SLOTS);
    for (int i = 1; i < N; i++)
        cr_assert_eq(up_rr_route(&st2, &cf, 100, SLOTS), first, "message %d moved", i);
}
