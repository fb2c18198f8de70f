/* batch-bench -- cost of encoding messages into a batch entry: per-message
 * record (hand-encoded SingleMessageMetadata + payload copy), then the whole
 * payload's CRC32C, with and without LZ4 (compressing the batch).
 * Prints the median ns per message over many 1000-message batches.
 * usage: batch-bench [message_size (default 100)] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "crc32c.h"

static uint64_t ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { N = 1000, ROUNDS = 300 };

static double run(int size, int keyed, int codec, double *ratio)
{
    uint8_t *payload = malloc((size_t)size);
    for (int i = 0; i < size; i++)
        payload[i] = (uint8_t)("upulsar batch payload "[i % 22]);
    size_t cap = (size_t)N * ((size_t)size + 64);
    uint8_t *buf = malloc(cap), *z = malloc(up_compress_bound(UP_COMP_LZ4, cap) + 16);
    double samples[ROUNDS];
    volatile uint32_t sink = 0;
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t = ns();
        size_t len = 0;
        for (int i = 0; i < N; i++) {
            up_smm_t m = {0};
            if (keyed) {
                m.key = "customer-123456";
                m.key_len = 15;
            }
            m.sequence_id = (uint64_t)r * N + (uint64_t)i;
            m.payload_size = (uint32_t)size;
            len += up_record_put(buf + len, &m, payload);
        }
        const uint8_t *out = buf;
        size_t outlen = len;
        if (codec) {
            long cl = up_compress(codec, buf, len, z, up_compress_bound(codec, len));
            out = z;
            outlen = (size_t)cl;
        }
        sink ^= up_crc32c(0, out, outlen);
        samples[r] = (double)(ns() - t) / N;
        *ratio = (double)len / (double)outlen;
    }
    (void)sink;
    qsort(samples, ROUNDS, sizeof samples[0], cmp_d);
    free(payload);
    free(buf);
    free(z);
    return samples[ROUNDS / 2];
}

int main(int argc, char **argv)
{
    int size = argc > 1 ? atoi(argv[1]) : 100;
    if (size < 0 || size > 1 << 20)
        size = 100;
    double ratio;
    printf("batch encode, %d-byte messages, 1000 per batch, CRC32C (%s)\n", size,
           up_crc32c_clmul_available() ? "PCLMULQDQ folding + SSE4.2"
           : up_crc32c_hw_available()  ? "SSE4.2"
                                       : "portable");
    for (int keyed = 0; keyed <= 1; keyed++)
        for (int codec = 0; codec <= 1; codec++) {
            double m = run(size, keyed, codec ? UP_COMP_LZ4 : UP_COMP_NONE, &ratio);
            printf("  %-6s %-5s median %6.1f ns/message  (payload ratio %.2f)\n",
                   keyed ? "keyed" : "no key", codec ? "lz4" : "none", m, ratio);
        }
    return 0;
}
