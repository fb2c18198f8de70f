/* upulsar-ceiling -- how fast the wire itself goes: the yardstick for
 * upulsar-perf's max rate.
 *
 * One thread, no library API, no rings, no futures: it connects to a broker
 * (by default the project's test broker forked into a child process in perf
 * mode, exactly as upulsar-perf starts it), sends CONNECT and one PRODUCER
 * per partition on that one connection, pre-builds batch frames of M
 * messages per partition (the batch format the library writes), and writes
 * them as fast as the socket takes them, with at most --inflight frames
 * unacknowledged per producer (the library's max.inflight.batches). What
 * counts is what the broker stored, by its receipts.
 *
 * Each frame is a valid, distinct entry: before a frame goes out again its
 * SEND command and MessageMetadata are packed anew with the producer's next
 * sequence ids (first and highest), and the CRC32C is brought up to date
 * from the metadata bytes that changed (CRC32C is linear: the change of the
 * checksum is the checksum of the changed bytes carried over the unchanged
 * payload after them, a fixed 32x32 bit matrix), so the payload is not
 * read again. --crc full computes the whole checksum per frame instead, as
 * a client building each batch must. The records carry no per-message
 * sequence_id (a message's id is then the entry's sequence_id plus its
 * index, as Pulsar defines it); the library's carry one, a few bytes more
 * per message (wire_bytes_per_msg is printed).
 *
 * Figures: msgs/s = messages stored (receipts) over the measured window
 * (after --warmup); client CPU per message = this process's user + system
 * time (getrusage) over the window / messages stored; broker CPU the same
 * from the broker child's /proc entry. The summary has upulsar-perf's form
 * (and --json its field names where they mean the same).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "buf.h"
#include "crc32c.h"
#include "frame.h"
#include "pb.h"
#include "perf_common.h"
#include "upulsar/testbroker.h"
#include "upulsar/upulsar.h"

/* ---- options -------------------------------------------------------------- */

static struct {
    const char *url;
    const char *topic;
    int partitions;
    int size;
    int batch;        /* messages per frame */
    int inflight;     /* unacknowledged frames per producer */
    int frames;       /* pre-built frames per partition */
    double seconds;
    double warmup;
    int crc_full;
    int json;
    int quiet;
} opt = {NULL, "perf", 4, 100, 512, 32, 4, 10, 1.0, 0, 0, 0};

static void usage(FILE *fp)
{
    fputs("usage: upulsar-ceiling [options]\n"
          "  --url URL              broker service URL, pulsar:// (default: fork the embedded\n"
          "                         test broker in perf mode, as upulsar-perf does); the\n"
          "                         broker must own the topic's partitions (no lookup)\n"
          "  --topic NAME           topic (default perf); partition i is NAME-partition-i\n"
          "  -p, --partitions N     partitions, one producer each (default 4; 0 = the topic\n"
          "                         itself, not partitioned)\n"
          "  -s, --size BYTES       message size (default 100)\n"
          "  -m, --batch-messages N messages per batch frame (default 512, the size upulsar's\n"
          "                         batches reach at max rate with 100-byte messages)\n"
          "  --inflight N           unacknowledged frames per producer (default 32, the\n"
          "                         library's max.inflight.batches)\n"
          "  --frames N             pre-built frames per partition (default 4)\n"
          "  --crc full|patch       full: checksum every frame whole; patch (default): update\n"
          "                         the checksum from the metadata bytes that changed\n"
          "  -d, --seconds S        measured duration (default 10)\n"
          "  --warmup S             seconds excluded from the figures (default 1)\n"
          "  --json                 print the summary as one JSON object\n"
          "  -q, --quiet            no progress lines\n",
          fp);
}

/* ---- clock and CPU ------------------------------------------------------------ */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Give up: the broker child is stopped first (it would wait for SIGTERM). */
static _Noreturn void die(const char *what)
{
    fprintf(stderr, "upulsar-ceiling: %s\n", what);
    broker_stop(NULL);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = calloc(1, n);
    if (!p)
        die("out of memory");
    return p;
}

/* ---- the connection ------------------------------------------------------------ */

static int fd = -1;
static up_decoder_t dec;

static int dial(const char *url)
{
    if (strncmp(url, "pulsar://", 9) != 0) {
        fprintf(stderr, "upulsar-ceiling: only pulsar:// URLs: %s\n", url);
        return -1;
    }
    char host[256];
    snprintf(host, sizeof host, "%s", url + 9);
    host[strcspn(host, "/,")] = 0;
    char *colon = strrchr(host, ':');
    const char *port = "6650";
    if (colon) {
        *colon = 0;
        port = colon + 1;
    }
    struct addrinfo hints = {0}, *res;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
        fprintf(stderr, "upulsar-ceiling: %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "upulsar-ceiling: cannot connect to %s: %s\n", url, strerror(errno));
        return -1;
    }
    /* the library's socket options */
    int one = 1, bufsz = 4 << 20;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof bufsz);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    up_decoder_init(&dec, 0);
    return 0;
}

/* Write all of @p b (set-up and control frames), waiting up to 10 s. */
static int write_all(const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd pf = {fd, POLLOUT, 0};
            if (poll(&pf, 1, 10000) <= 0)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

static int send_cmd(up_cmd_t *cmd)
{
    up_buf_t b = UP_BUF_INIT;
    int rc = up_frame_put_cmd(&b, cmd) || write_all(b.data, b.len) ? -1 : 0;
    up_buf_free(&b);
    return rc;
}

/* Read what the socket has. 1 = bytes read, 0 = none now, -1 = closed or
 * failed. */
static int read_some(void)
{
    size_t avail;
    uint8_t *w = up_decoder_wbuf(&dec, 256 * 1024, &avail);
    if (!w)
        return -1;
    ssize_t r = recv(fd, w, avail, 0);
    if (r > 0) {
        up_decoder_commit(&dec, (size_t)r);
        return 1;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    return -1;
}

/* The next frame during set-up, waiting up to 10 s; PINGs are answered. */
static int next_frame(up_frame_t *f)
{
    uint64_t deadline = now_ns() + 10000000000u;
    for (;;) {
        int rc = up_decoder_next(&dec, f);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            if (f->cmd->type == UP_CMD(PING)) {
                up_cmd_t c = PULSAR__PROTO__BASE_COMMAND__INIT;
                Pulsar__Proto__CommandPong pong = PULSAR__PROTO__COMMAND_PONG__INIT;
                c.type = UP_CMD(PONG);
                c.pong = &pong;
                if (send_cmd(&c))
                    return -1;
                continue;
            }
            return 1;
        }
        int64_t left = (int64_t)(deadline - now_ns());
        if (left <= 0)
            return -1;
        struct pollfd pf = {fd, POLLIN, 0};
        poll(&pf, 1, (int)(left / 1000000) + 1);
        if (read_some() < 0)
            return -1;
    }
}

static int handshake(void)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandConnect co = PULSAR__PROTO__COMMAND_CONNECT__INIT;
    cmd.type = UP_CMD(CONNECT);
    cmd.connect = &co;
    co.client_version = "upulsar-ceiling";
    co.auth_method_name = "none";
    co.has_protocol_version = 1;
    co.protocol_version = 20; /* as the library */
    if (send_cmd(&cmd))
        return -1;
    up_frame_t f;
    if (next_frame(&f) != 1 || f.cmd->type != UP_CMD(CONNECTED)) {
        fprintf(stderr, "upulsar-ceiling: no CONNECTED (got %s)\n",
                dec.cmd ? up_cmd_name(dec.cmd->type) : "nothing");
        return -1;
    }
    return 0;
}

/* PRODUCER for every partition (producer id = partition index), then their
 * answers. */
static int create_producers(int n)
{
    for (int i = 0; i < n; i++) {
        char topic[512];
        const char *t = opt.topic;
        bool full = strstr(t, "://") != NULL;
        if (opt.partitions > 0)
            snprintf(topic, sizeof topic, "%s%s-partition-%d", full ? "" : "persistent://public/default/",
                     t, i);
        else
            snprintf(topic, sizeof topic, "%s%s", full ? "" : "persistent://public/default/", t);
        up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
        Pulsar__Proto__CommandProducer pr = PULSAR__PROTO__COMMAND_PRODUCER__INIT;
        cmd.type = UP_CMD(PRODUCER);
        cmd.producer = &pr;
        pr.topic = topic;
        pr.producer_id = (uint64_t)i;
        pr.request_id = (uint64_t)i + 1;
        pr.has_user_provided_producer_name = 1;
        pr.user_provided_producer_name = 0;
        if (send_cmd(&cmd))
            return -1;
    }
    return 0;
}

/* ---- frames ----------------------------------------------------------------- */

#define HDR_ROOM 512 /* bytes before the records: frame header up to the metadata */

typedef struct {
    int part;
    uint8_t *buf;    /* [HDR_ROOM][records] */
    uint8_t *start;  /* the frame's first byte (totalSize) */
    size_t len;      /* whole frame */
    size_t cs, ms;   /* packed sizes of the command and the metadata */
    uint32_t crc;
    uint64_t msgs;   /* messages in it */
} frame_t;

typedef struct {
    char name[256];  /* producer name (the broker's) */
    uint64_t next_seq;   /* first id of the next frame */
    uint64_t acked_seq;  /* first id of the next receipt expected */
    uint64_t written_seq; /* first id not yet written */
    int inflight;        /* frames written, not acknowledged */
    int queued;          /* frames in the write being made */
} part_t;

static part_t *parts;
static uint8_t *records; /* M records, the same in every frame */
static size_t rec_len;
static uint32_t shift_col[32]; /* CRC register carried over rec_len zero bytes */
static uint8_t zeros[4096];

/* CRC register (no inversions) after @p n bytes from state @p s. */
static uint32_t raw_crc(uint32_t s, const uint8_t *p, size_t n)
{
    return ~up_crc32c(~s, p, n);
}

static uint32_t raw_zeros(uint32_t s, size_t n)
{
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        s = raw_crc(s, zeros, k);
        n -= k;
    }
    return s;
}

static uint32_t shift(uint32_t v)
{
    uint32_t r = 0;
    while (v) {
        r ^= shift_col[__builtin_ctz(v)];
        v &= v - 1;
    }
    return r;
}

static void build_records(void)
{
    uint8_t *payload = xmalloc((size_t)opt.size + 1);
    for (int i = 0; i < opt.size; i++)
        payload[i] = (uint8_t)('a' + (i * 7) % 26);
    up_smm_t m = {0};
    m.no_seq = true;
    m.payload_size = (uint32_t)opt.size;
    size_t one = up_record_size(&m);
    records = xmalloc(one * (size_t)opt.batch);
    rec_len = 0;
    for (int i = 0; i < opt.batch; i++)
        rec_len += up_record_put(records + rec_len, &m, payload);
    free(payload);
    for (int b = 0; b < 32; b++)
        shift_col[b] = raw_zeros(1u << b, rec_len);
}

/* Pack the SEND command and the metadata of @p f for first id @p seq into
 * @p cb / @p mb (room for HDR_ROOM each); their sizes in *cs, *ms. */
static void pack_hdr(const frame_t *f, uint64_t seq, uint8_t *cb, size_t *cs, uint8_t *mb,
                     size_t *ms, uint64_t publish_ms)
{
    up_cmd_t cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandSend send = PULSAR__PROTO__COMMAND_SEND__INIT;
    cmd.type = UP_CMD(SEND);
    cmd.send = &send;
    send.producer_id = (uint64_t)f->part;
    send.sequence_id = seq;
    send.has_num_messages = 1;
    send.num_messages = (int32_t)f->msgs;
    send.has_highest_sequence_id = 1;
    send.highest_sequence_id = seq + f->msgs - 1;
    up_md_t md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    md.producer_name = parts[f->part].name;
    md.sequence_id = seq;
    md.publish_time = publish_ms;
    md.has_num_messages_in_batch = 1;
    md.num_messages_in_batch = (int32_t)f->msgs;
    md.has_highest_sequence_id = 1;
    md.highest_sequence_id = seq + f->msgs - 1;
    *cs = protobuf_c_message_get_packed_size(&cmd.base);
    *ms = protobuf_c_message_get_packed_size(&md.base);
    if (*cs + *ms + 32 > HDR_ROOM) /* a producer name the broker made very long */
        die("the frame header does not fit in its room");
    protobuf_c_message_pack(&cmd.base, cb);
    protobuf_c_message_pack(&md.base, mb);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Lay the whole header of @p f out before its records and checksum it. */
static void frame_build(frame_t *f, const uint8_t *cb, size_t cs, const uint8_t *mb, size_t ms)
{
    size_t hdr = 8 + cs + 6 + 4 + ms;
    uint8_t *p = f->buf + HDR_ROOM - hdr;
    f->start = p;
    f->len = hdr + rec_len;
    f->cs = cs;
    f->ms = ms;
    up_put_be32(p, (uint32_t)(f->len - 4));
    up_put_be32(p + 4, (uint32_t)cs);
    memcpy(p + 8, cb, cs);
    p += 8 + cs;
    p[0] = 0x0e;
    p[1] = 0x01;
    up_put_be32(p + 6, (uint32_t)ms);
    memcpy(p + 10, mb, ms);
    f->crc = up_crc32c(0, p + 6, 4 + ms + rec_len);
    up_put_be32(p + 2, f->crc);
}

/* Give @p f the ids from @p seq: the command and the metadata packed anew;
 * the checksum patched from the metadata bytes that changed (or computed
 * whole with --crc full, or when a size changed). */
static void frame_renumber(frame_t *f, uint64_t seq, uint64_t publish_ms)
{
    uint8_t cb[HDR_ROOM], mb[HDR_ROOM];
    size_t cs, ms;
    pack_hdr(f, seq, cb, &cs, mb, &ms, publish_ms);
    if (cs != f->cs || ms != f->ms || opt.crc_full) {
        frame_build(f, cb, cs, mb, ms);
        return;
    }
    uint8_t *p = f->start + 8;
    memcpy(p, cb, cs);
    p += cs;
    uint8_t *md = p + 10;
    uint32_t d = 0; /* register over old ^ new metadata */
    for (size_t i = 0; i < ms; i++) {
        uint8_t x = (uint8_t)(md[i] ^ mb[i]);
        d = raw_crc(d, &x, 1);
    }
    memcpy(md, mb, ms);
    f->crc ^= shift(d);
    up_put_be32(p + 2, f->crc);
}

static size_t iov_total(const struct iovec *v, int n)
{
    size_t t = 0;
    for (int i = 0; i < n; i++)
        t += v[i].iov_len;
    return t;
}

/* ---- main -------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"url", 1, 0, 'u'},      {"topic", 1, 0, 'T'},   {"partitions", 1, 0, 'p'},
        {"size", 1, 0, 's'},     {"batch-messages", 1, 0, 'm'}, {"inflight", 1, 0, 1},
        {"frames", 1, 0, 2},     {"crc", 1, 0, 3},       {"seconds", 1, 0, 'd'},
        {"warmup", 1, 0, 4},     {"json", 0, 0, 5},      {"quiet", 0, 0, 'q'},
        {"help", 0, 0, 'h'},     {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "p:s:m:d:qh", lo, NULL)) != -1) {
        switch (c) {
        case 'u': opt.url = optarg; break;
        case 'T': opt.topic = optarg; break;
        case 'p': opt.partitions = atoi(optarg); break;
        case 's': opt.size = atoi(optarg); break;
        case 'm': opt.batch = atoi(optarg); break;
        case 1: opt.inflight = atoi(optarg); break;
        case 2: opt.frames = atoi(optarg); break;
        case 3:
            if (strcmp(optarg, "full") && strcmp(optarg, "patch")) {
                usage(stderr);
                return 2;
            }
            opt.crc_full = !strcmp(optarg, "full");
            break;
        case 'd': opt.seconds = atof(optarg); break;
        case 4: opt.warmup = atof(optarg); break;
        case 5: opt.json = 1; break;
        case 'q': opt.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (opt.partitions < 0 || opt.partitions > 10000 || opt.size < 0 || opt.size > (1 << 20) ||
        opt.batch < 1 || opt.batch > 100000 || opt.inflight < 1 || opt.frames < 1 ||
        opt.frames > 64 || opt.seconds <= 0 || opt.warmup < 0) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int np = opt.partitions > 0 ? opt.partitions : 1;
    build_records();
    if (rec_len + HDR_ROOM > 5u * 1024 * 1024) {
        fprintf(stderr, "upulsar-ceiling: a frame of %zu bytes is over the 5 MiB limit\n", rec_len);
        return 2;
    }

    char url[256];
    if (opt.url)
        snprintf(url, sizeof url, "%s", opt.url);
    else if (broker_fork(NULL, NULL, opt.topic, opt.partitions, NULL, url, sizeof url)) {
        fprintf(stderr, "cannot start the embedded broker\n");
        broker_stop(NULL);
        return 1;
    }
    int exit_code = 1;
    frame_t *fr = NULL;
    int nf = 0;
    if (dial(url) || handshake() || create_producers(np))
        goto out;

    parts = xmalloc((size_t)np * sizeof *parts);
    for (int got = 0; got < np;) {
        up_frame_t f;
        if (next_frame(&f) != 1) {
            fprintf(stderr, "upulsar-ceiling: no answer to PRODUCER\n");
            goto out;
        }
        if (f.cmd->type == UP_CMD(ERROR)) {
            fprintf(stderr, "upulsar-ceiling: PRODUCER refused: %s\n", f.cmd->error->message);
            goto out;
        }
        if (f.cmd->type != UP_CMD(PRODUCER_SUCCESS))
            continue;
        uint64_t rid = f.cmd->producer_success->request_id;
        if (rid < 1 || rid > (uint64_t)np)
            continue;
        part_t *pt = &parts[rid - 1];
        snprintf(pt->name, sizeof pt->name, "%s", f.cmd->producer_success->producer_name);
        int64_t last = f.cmd->producer_success->has_last_sequence_id
                           ? f.cmd->producer_success->last_sequence_id
                           : -1;
        pt->next_seq = pt->acked_seq = pt->written_seq = (uint64_t)(last + 1);
        got++;
    }

    /* frames in the order they go out: partition 0, 1, ..., N-1, 0, 1, ... */
    nf = np * opt.frames;
    fr = xmalloc((size_t)nf * sizeof *fr);
    uint64_t pub = wall_ms();
    for (int i = 0; i < nf; i++) {
        fr[i].part = i % np;
        fr[i].msgs = (uint64_t)opt.batch;
        fr[i].buf = xmalloc(HDR_ROOM + rec_len);
        memcpy(fr[i].buf + HDR_ROOM, records, rec_len);
        part_t *pt = &parts[fr[i].part];
        uint8_t cb[HDR_ROOM], mb[HDR_ROOM];
        size_t cs, ms;
        pack_hdr(&fr[i], pt->next_seq, cb, &cs, mb, &ms, pub);
        frame_build(&fr[i], cb, cs, mb, ms);
        pt->next_seq += fr[i].msgs;
    }
    /* the patched checksum must be the whole one */
    {
        frame_t t = fr[0];
        t.buf = xmalloc(HDR_ROOM + rec_len);
        memcpy(t.buf, fr[0].buf, HDR_ROOM + rec_len);
        t.start = t.buf + (fr[0].start - fr[0].buf);
        frame_renumber(&t, parts[0].next_seq + 1000003, pub + 1);
        size_t at = 8 + t.cs + 6;
        uint32_t whole = up_crc32c(0, t.start + at, t.len - at);
        free(t.buf);
        if (whole != t.crc) {
            fprintf(stderr, "upulsar-ceiling: patched checksum %08x != %08x\n", t.crc, whole);
            goto out;
        }
    }
    size_t wire_per_msg = fr[0].len / (size_t)opt.batch;

    uint64_t t0 = now_ns();
    uint64_t warm_end = t0 + (uint64_t)(opt.warmup * 1e9);
    uint64_t end = warm_end + (uint64_t)(opt.seconds * 1e9);
    uint64_t stored = 0, failed = 0, written_msgs = 0, writes = 0, reads = 0;
    uint64_t m_start = 0, m_stored0 = 0;
    double m_cpu0 = 0, m_bcpu0 = 0;
    uint64_t last_ns = t0, last_stored = 0;
    int head = 0;       /* next frame to write */
    size_t woff = 0;    /* bytes of it written */
    uint8_t ctrl[64];   /* a PONG waiting for a frame boundary */
    size_t ctrl_len = 0;
    uint64_t m_end = 0, m_stored = 0;
    double m_cpu = 0, m_bcpu = 0;
    bool writing = true;
    enum { MAXIOV = 64 };
    struct iovec iov[MAXIOV + 1];
    int fatal = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (!m_start && t >= warm_end) {
            m_start = t;
            m_stored0 = stored;
            m_cpu0 = cpu_self();
            m_bcpu0 = broker_pid ? proc_cpu(broker_pid) : 0;
        }
        if (writing && t >= end) {
            m_end = t;
            m_stored = stored - m_stored0;
            m_cpu = cpu_self() - m_cpu0;
            m_bcpu = broker_pid ? proc_cpu(broker_pid) - m_bcpu0 : 0;
            writing = false;
            end = t + 10000000000u; /* then wait for the receipts still due */
        }
        bool idle = true;
        if (!opt.quiet && t - last_ns >= 1000000000u) {
            double dt = (double)(t - last_ns) / 1e9;
            double rate = (double)(stored - last_stored) / dt;
            fprintf(stderr, "%6.1fs  rate %9.0f msg/s  %7.2f MB/s  pending %8" PRIu64 "%s\n",
                    (double)(t - t0) / 1e9, rate, rate * opt.size / 1e6,
                    written_msgs - stored - failed, m_start ? "" : "  (warm-up)");
            last_ns = t;
            last_stored = stored;
        }
        /* write: frames in order while their producers have room (a frame
         * counts as in flight once all of it is written; one started is
         * finished even after the end) */
        bool want_out = false;
        if (writing || ctrl_len || woff) {
            int n = 0, nframes = 0;
            bool with_ctrl = ctrl_len && woff == 0;
            if (with_ctrl)
                iov[n++] = (struct iovec){ctrl, ctrl_len};
            for (int k = 0, i = head; k < nf && n < MAXIOV; k++, i = (i + 1) % nf) {
                part_t *pt = &parts[fr[i].part];
                if (k == 0 && woff) {
                    iov[n++] = (struct iovec){fr[i].start + woff, fr[i].len - woff};
                    nframes++;
                    if (!writing)
                        break;
                    continue;
                }
                if (!writing || pt->inflight + pt->queued >= opt.inflight)
                    break;
                pt->queued++;
                iov[n++] = (struct iovec){fr[i].start, fr[i].len};
                nframes++;
            }
            for (int k = 0, i = head; k < nframes; k++, i = (i + 1) % nf)
                parts[fr[i].part].queued = 0;
            if (n) {
                ssize_t w = writev(fd, iov, n);
                writes++;
                if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    fprintf(stderr, "upulsar-ceiling: write: %s\n", strerror(errno));
                    fatal = 1;
                    break;
                }
                size_t left = w > 0 ? (size_t)w : 0;
                if (left)
                    idle = false;
                if (with_ctrl) {
                    size_t k = left < ctrl_len ? left : ctrl_len;
                    memmove(ctrl, ctrl + k, ctrl_len - k);
                    ctrl_len -= k;
                    left -= k;
                }
                for (int j = with_ctrl ? 1 : 0; j < n && left; j++) {
                    if (left < iov[j].iov_len) {
                        woff += left;
                        left = 0;
                        break;
                    }
                    /* this frame is out: in flight, and given its next ids */
                    left -= iov[j].iov_len;
                    frame_t *f = &fr[head];
                    part_t *pt = &parts[f->part];
                    pt->inflight++;
                    pt->written_seq += f->msgs;
                    written_msgs += f->msgs;
                    frame_renumber(f, pt->next_seq, pub);
                    pt->next_seq += f->msgs;
                    woff = 0;
                    head = (head + 1) % nf;
                }
                want_out = w < 0 || (size_t)w < iov_total(iov, n);
            }
        }
        /* read receipts */
        int r = read_some();
        reads++;
        if (r < 0) {
            fprintf(stderr, "upulsar-ceiling: the broker closed the connection\n");
            fatal = 1;
            break;
        }
        if (r > 0)
            idle = false;
        up_frame_t f;
        int rc;
        while ((rc = up_decoder_next(&dec, &f)) == 1) {
            int ty = f.cmd->type;
            if (ty == UP_CMD(SEND_RECEIPT)) {
                const Pulsar__Proto__CommandSendReceipt *sr = f.cmd->send_receipt;
                if (sr->producer_id >= (uint64_t)np) {
                    fatal = 1;
                    break;
                }
                part_t *pt = &parts[sr->producer_id];
                if (sr->sequence_id != pt->acked_seq) {
                    fprintf(stderr, "upulsar-ceiling: receipt for %" PRIu64 ", expected %" PRIu64 "\n",
                            sr->sequence_id, pt->acked_seq);
                    fatal = 1;
                    break;
                }
                pt->acked_seq += (uint64_t)opt.batch;
                pt->inflight--;
                stored += (uint64_t)opt.batch;
            } else if (ty == UP_CMD(SEND_ERROR)) {
                fprintf(stderr, "upulsar-ceiling: SEND_ERROR %d: %s\n", f.cmd->send_error->error,
                        f.cmd->send_error->message);
                failed += (uint64_t)opt.batch;
                fatal = 1;
                break;
            } else if (ty == UP_CMD(PING)) {
                up_cmd_t pc = PULSAR__PROTO__BASE_COMMAND__INIT;
                Pulsar__Proto__CommandPong pong = PULSAR__PROTO__COMMAND_PONG__INIT;
                pc.type = UP_CMD(PONG);
                pc.pong = &pong;
                up_buf_t b = UP_BUF_INIT;
                if (!up_frame_put_cmd(&b, &pc) && b.len <= sizeof ctrl - ctrl_len) {
                    memcpy(ctrl + ctrl_len, b.data, b.len);
                    ctrl_len += b.len;
                }
                up_buf_free(&b);
            } else if (ty == UP_CMD(CLOSE_PRODUCER) || ty == UP_CMD(ERROR)) {
                fprintf(stderr, "upulsar-ceiling: the broker sent %s\n", up_cmd_name(ty));
                fatal = 1;
                break;
            }
        }
        if (rc < 0) {
            fprintf(stderr, "upulsar-ceiling: bad frame from the broker (%d)\n", rc);
            fatal = 1;
        }
        if (fatal)
            break;
        if (!writing) {
            bool all = woff == 0;
            for (int i = 0; i < np; i++)
                all = all && parts[i].acked_seq == parts[i].written_seq;
            if (all || now_ns() >= end)
                break;
        }
        if (idle) {
            struct pollfd pf = {fd, (short)(POLLIN | (want_out ? POLLOUT : 0)), 0};
            poll(&pf, 1, 100);
        }
    }
    if (fatal)
        goto out;

    double secs = (double)(m_end - m_start) / 1e9;
    double rate = secs > 0 ? (double)m_stored / secs : 0;
    double cpu_ns = m_stored ? m_cpu * 1e9 / (double)m_stored : 0;
    double bcpu_ns = m_stored ? m_bcpu * 1e9 / (double)m_stored : 0;
    uint64_t unacked = written_msgs - stored - failed;
    long brss = 0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    broker_stop(&brss);
    if (opt.json) {
        printf("{\"messages_sent\":%" PRIu64 ",\"messages_acked\":%" PRIu64
               ",\"messages_failed\":%" PRIu64 ",\"messages_unacked\":%" PRIu64
               ",\"measured_seconds\":%.3f,\"msgs_per_sec\":%.0f,\"mb_per_sec\":%.2f,"
               "\"client_cpu_ns_per_msg\":%.1f,\"broker_cpu_ns_per_msg\":%.1f,"
               "\"client_msgs_per_cpu_sec\":%.0f,\"client_peak_rss_kb\":%ld,"
               "\"broker_peak_rss_kb\":%ld,\"partitions\":%d,\"size\":%d,\"batch_messages\":%d,"
               "\"inflight\":%d,\"frames_per_partition\":%d,\"wire_bytes_per_msg\":%zu,"
               "\"crc\":\"%s\",\"writes\":%" PRIu64 ",\"reads\":%" PRIu64
               ",\"embedded_broker\":%s,\"transport\":\"plain\"}\n",
               written_msgs, stored, failed, unacked, secs, rate, rate * opt.size / 1e6, cpu_ns,
               bcpu_ns, m_cpu > 0 ? (double)m_stored / m_cpu : 0, ru.ru_maxrss, brss,
               opt.partitions, opt.size, opt.batch, opt.inflight, opt.frames, wire_per_msg,
               opt.crc_full ? "full" : "patch", writes, reads, opt.url ? "false" : "true");
    } else {
        printf("%% ceiling: %" PRIu64 " messages stored (by receipts) in %.3f s measured: %.0f "
               "msgs/s and %.2f MB/s, plain transport\n",
               m_stored, secs, rate, rate * opt.size / 1e6);
        printf("%% frames: %d partitions, %d messages of %d bytes per frame (%zu wire bytes per "
               "message), %d in flight per producer, checksum %s\n",
               opt.partitions, opt.batch, opt.size, wire_per_msg, opt.inflight,
               opt.crc_full ? "whole per frame" : "patched");
        printf("%% cpu per message: client %.0f ns (%.2fM msg/cpu-s), broker %.0f ns%s\n", cpu_ns,
               m_cpu > 0 ? (double)m_stored / m_cpu / 1e6 : 0, bcpu_ns,
               opt.url ? " (external broker: not measured)" : "");
        printf("%% system calls: %" PRIu64 " writes, %" PRIu64 " reads\n", writes, reads);
        printf("%% totals: sent %" PRIu64 ", acked %" PRIu64 ", failed %" PRIu64 ", unacked %" PRIu64
               "\n",
               written_msgs, stored, failed, unacked);
    }
    exit_code = failed || unacked ? 1 : 0;
out:
    if (fd >= 0)
        close(fd);
    broker_stop(NULL);
    for (int i = 0; i < nf; i++)
        free(fr[i].buf);
    free(fr);
    free(parts);
    free(records);
    up_decoder_free(&dec);
    return exit_code;
}
