/*
 * produce_output.c -- what upulsar-produce writes: one id line or JSON
 * object per message, progress lines and the --stats summary.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "produce.h"

bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* A JSON string of @p n bytes (null when NULL or not valid UTF-8). */
void json_str(FILE *f, const char *s, size_t n)
{
    if (!s || !utf8_valid((const unsigned char *)s, n)) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void json_cstr(FILE *f, const char *s)
{
    json_str(f, s, s ? strlen(s) : 0);
}

void json_base64(FILE *f, const unsigned char *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', f);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        fputc(tab[(v >> 18) & 63], f);
        fputc(tab[(v >> 12) & 63], f);
        fputc(i + 1 < n ? tab[(v >> 6) & 63] : '=', f);
        fputc(i + 2 < n ? tab[v & 63] : '=', f);
    }
    fputc('"', f);
}

/* ledger / entry as printed: -1 when the broker did not report them. */
static long long id_num(uint64_t v)
{
    return v == UPULSAR_ID_UNKNOWN ? -1LL : (long long)v;
}

/* "key": the key as a JSON string when it is UTF-8, else in base64;
 * "keyBase64" says which (as Pulsar's partition_key_b64_encoded). */
static void json_key(FILE *f, const char *key)
{
    fputs(",\"key\":", f);
    if (!key) {
        fputs("null,\"keyBase64\":false", f);
        return;
    }
    size_t n = strlen(key);
    if (utf8_valid((const unsigned char *)key, n)) {
        json_str(f, key, n);
        fputs(",\"keyBase64\":false", f);
    } else {
        json_base64(f, (const unsigned char *)key, n);
        fputs(",\"keyBase64\":true", f);
    }
}

void print_id(const opts_t *o, const sent_msg_t *m, const upulsar_msg_id_t *id)
{
    if (o->quiet)
        return;
    if (!o->json) {
        printf("%d:%lld:%lld:%d\n", (int)id->partition, id_num(id->ledger_id),
               id_num(id->entry_id), (int)id->batch_index);
        return;
    }
    printf("{\"event\":\"sent\",\"index\":%" PRIu64 ",\"payload\":", m->index);
    json_str(stdout, m->payload, m->len);
    fputs(",\"payloadBase64\":", stdout);
    json_base64(stdout, (const unsigned char *)m->payload, m->len);
    json_key(stdout, m->key);
    fputs(",\"properties\":{", stdout);
    for (size_t k = 0; k < o->nprops; k++) {
        if (k)
            fputc(',', stdout);
        json_cstr(stdout, o->prop_names[k]);
        fputc(':', stdout);
        json_cstr(stdout, m->props ? m->props[k] : NULL);
    }
    printf("},\"msgId\":{\"ledgerId\":%lld,\"entryId\":%lld,\"partition\":%d,"
           "\"batchIndex\":%d},",
           id_num(id->ledger_id), id_num(id->entry_id), (int)id->partition,
           (int)id->batch_index);
    /* a message sent in chunks: where its first chunk is, too */
    if (id->first_chunk_ledger_id != id->ledger_id || id->first_chunk_entry_id != id->entry_id)
        printf("\"firstChunkId\":{\"ledgerId\":%lld,\"entryId\":%lld},",
               id_num(id->first_chunk_ledger_id), id_num(id->first_chunk_entry_id));
    if (id->batch_size > 0)
        printf("\"batch\":{\"pos\":%d,\"size\":%d}}\n", (int)id->batch_index,
               (int)id->batch_size);
    else
        fputs("\"batch\":null}\n", stdout);
}

void print_error_json(uint64_t index, const char *name, const char *text)
{
    printf("{\"event\":\"error\",\"index\":%" PRIu64 ",\"error\":", index);
    json_cstr(stdout, name);
    fputs(",\"message\":", stdout);
    json_cstr(stdout, text);
    fputs("}\n", stdout);
}

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double per_second(uint64_t n, double secs)
{
    return secs > 0 ? (double)n / secs : 0.0;
}

void print_progress(const tally_t *t)
{
    double secs = (double)(now_ns() - t->t0_ns) / 1e9;
    fprintf(stderr,
            PROG ": progress: %" PRIu64 " sent, %" PRIu64 " acknowledged, %" PRIu64
                 " failed, %.1f s, %.0f msg/s\n",
            t->sent, t->acked, t->failed, secs, per_second(t->acked, secs));
}

/* ---- --stats ------------------------------------------------------------ */

typedef struct bucket {
    uint64_t upper, count;
} bucket_t;

static int bucket_cmp(const void *a, const void *b)
{
    const bucket_t *x = a, *y = b;
    return x->upper < y->upper ? -1 : x->upper > y->upper;
}

/* The number after "name": at or after @p from, before @p limit. */
static bool num_after(const char *from, const char *limit, const char *name, uint64_t *v)
{
    const char *p = strstr(from, name);
    if (!p || p >= limit)
        return false;
    *v = strtoull(p + strlen(name), NULL, 10);
    return true;
}

/* Smallest bucket bound at or above the @p q quantile of @p total. */
static uint64_t quantile(const bucket_t *b, size_t n, uint64_t total, double q)
{
    uint64_t rank = (uint64_t)((double)total * q);
    if ((double)rank < (double)total * q)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        seen += b[i].count;
        if (seen >= rank)
            return b[i].upper;
    }
    return n ? b[n - 1].upper : 0;
}

void latency_from_stats(const char *json, latency_t *lat)
{
    memset(lat, 0, sizeof *lat);
    if (!json)
        return;
    bucket_t *b = NULL;
    size_t nb = 0, cap = 0;
    uint64_t total = 0;
    /* one "latency_us" object per real producer; each ends with its
     * "buckets":[[upper,count]...] array */
    for (const char *p = strstr(json, "\"latency_us\":{"); p;
         p = strstr(p + 1, "\"latency_us\":{")) {
        const char *bk = strstr(p, "\"buckets\":[");
        if (!bk)
            break;
        const char *arr = bk + strlen("\"buckets\":[");
        const char *end = *arr == ']' ? arr : strstr(arr, "]]");
        if (!end)
            break;
        uint64_t count = 0, sum = 0;
        if (num_after(p, bk, "\"count\":", &count))
            lat->count += count;
        if (num_after(p, bk, "\"sum\":", &sum))
            lat->sum_us += sum;
        for (const char *q = arr; (q = strchr(q, '[')) && q < end;) {
            char *next;
            uint64_t upper = strtoull(q + 1, &next, 10);
            if (*next != ',')
                break;
            uint64_t c = strtoull(next + 1, &next, 10);
            if (nb == cap) {
                cap = cap ? cap * 2 : 64;
                b = xrealloc(b, cap * sizeof *b);
            }
            b[nb++] = (bucket_t){upper, c};
            total += c;
            q = next;
        }
        lat->known = true;
    }
    if (nb) {
        qsort(b, nb, sizeof *b, bucket_cmp);
        lat->p50 = quantile(b, nb, total, 0.50);
        lat->p90 = quantile(b, nb, total, 0.90);
        lat->p99 = quantile(b, nb, total, 0.99);
        lat->p999 = quantile(b, nb, total, 0.999);
    }
    free(b);
}

void print_stats(const opts_t *o, const tally_t *t, int64_t end_ns, const latency_t *lat)
{
    double secs = (double)(end_ns - t->t0_ns) / 1e9;
    double mean = lat->count ? (double)lat->sum_us / (double)lat->count : 0.0;
    if (o->json) {
        printf("{\"event\":\"stats\",\"acknowledged\":%" PRIu64 ",\"failed\":%" PRIu64
               ",\"bytes\":%" PRIu64 ",\"elapsedMs\":%.3f,\"msgsPerSec\":%.1f,"
               "\"bytesPerSec\":%.1f,\"latencyUs\":",
               t->acked, t->failed, t->bytes, secs * 1e3, per_second(t->acked, secs),
               per_second(t->bytes, secs));
        if (lat->known)
            printf("{\"count\":%" PRIu64 ",\"mean\":%.1f,\"p50\":%" PRIu64 ",\"p90\":%" PRIu64
                   ",\"p99\":%" PRIu64 ",\"p999\":%" PRIu64 "}}\n",
                   lat->count, mean, lat->p50, lat->p90, lat->p99, lat->p999);
        else
            fputs("null}\n", stdout);
        return;
    }
    fprintf(stderr,
            PROG ": stats: acknowledged=%" PRIu64 " failed=%" PRIu64 " bytes=%" PRIu64
                 " elapsed_s=%.3f msgs_per_s=%.1f bytes_per_s=%.1f\n",
            t->acked, t->failed, t->bytes, secs, per_second(t->acked, secs),
            per_second(t->bytes, secs));
    if (lat->known)
        fprintf(stderr,
                PROG ": stats: latency_us count=%" PRIu64 " mean=%.1f p50=%" PRIu64
                     " p90=%" PRIu64 " p99=%" PRIu64 " p999=%" PRIu64 "\n",
                lat->count, mean, lat->p50, lat->p90, lat->p99, lat->p999);
    else
        fputs(PROG ": stats: latency_us unavailable (the producer was stopped early)\n",
              stderr);
}
