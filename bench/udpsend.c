/*
 * udpsend: the receive benchmark's load generator. Python cannot send fast enough to find a receiver's limit.
 *
 *   udpsend PAYLOADS HOST PORT RATE SECONDS [SOCKETS [BURST]]
 *
 * PAYLOADS holds datagrams as <u16 big-endian length><bytes> records; they are sent in a loop at RATE
 * datagrams/s for SECONDS, in sendmmsg() batches, round-robin over SOCKETS connected sockets (default 8) so
 * that SO_REUSEPORT spreads them over several receivers the way several exporters would be spread. BURST
 * (default 32, at most 32) is how many datagrams leave together; 1 paces every datagram on its own.
 * Prints one line: "sent N errors E seconds S rate R".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
#define MAX_SOCKETS 64

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct iovec *load_payloads(const char *path, size_t *count) {
    FILE *file = fopen(path, "rb");
    if (!file) {
        perror(path);
        exit(2);
    }
    size_t capacity = 1024, used = 0;
    struct iovec *payloads = malloc(capacity * sizeof(*payloads));
    unsigned char prefix[2];
    while (fread(prefix, 1, 2, file) == 2) {
        size_t length = ((size_t)prefix[0] << 8) | prefix[1];
        void *bytes = malloc(length ? length : 1);
        if (length && fread(bytes, 1, length, file) != length) {
            fprintf(stderr, "%s: truncated record\n", path);
            exit(2);
        }
        if (used == capacity) {
            capacity *= 2;
            payloads = realloc(payloads, capacity * sizeof(*payloads));
        }
        payloads[used].iov_base = bytes;
        payloads[used].iov_len = length;
        used++;
    }
    fclose(file);
    if (used == 0) {
        fprintf(stderr, "%s: no payloads\n", path);
        exit(2);
    }
    *count = used;
    return payloads;
}

static int open_sockets(const char *host, const char *port, int wanted, int *sockets) {
    struct addrinfo hints = {0}, *target;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    int rc = getaddrinfo(host, port, &hints, &target);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", host, gai_strerror(rc));
        exit(2);
    }
    for (int i = 0; i < wanted; i++) {
        sockets[i] = socket(target->ai_family, SOCK_DGRAM, 0);
        int sndbuf = 4 << 20;
        setsockopt(sockets[i], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        if (sockets[i] < 0 || connect(sockets[i], target->ai_addr, target->ai_addrlen) != 0) {
            perror("socket/connect");
            exit(2);
        }
    }
    freeaddrinfo(target);
    return wanted;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s PAYLOADS HOST PORT RATE SECONDS [SOCKETS [BURST]]\n", argv[0]);
        return 2;
    }
    size_t count;
    struct iovec *payloads = load_payloads(argv[1], &count);
    double rate = atof(argv[4]), seconds = atof(argv[5]);
    int nsockets = argc > 6 ? atoi(argv[6]) : 8;
    int burst = argc > 7 ? atoi(argv[7]) : BATCH;
    if (nsockets < 1 || nsockets > MAX_SOCKETS || rate <= 0 || seconds <= 0 || burst < 1 || burst > BATCH) {
        fprintf(stderr, "bad RATE, SECONDS, SOCKETS or BURST\n");
        return 2;
    }
    int sockets[MAX_SOCKETS];
    open_sockets(argv[2], argv[3], nsockets, sockets);

    struct mmsghdr messages[BATCH];
    memset(messages, 0, sizeof(messages));
    uint64_t total = (uint64_t)(rate * seconds), sent = 0, errors = 0, next_payload = 0;
    int turn = 0;
    double start = now_s();
    while (sent + errors < total) {
        double elapsed = now_s() - start;
        uint64_t due = (uint64_t)(elapsed * rate);
        if (due > total) due = total;
        uint64_t done = sent + errors;
        if (due <= done) {
            /* ahead of schedule: sleep until one batch is due */
            double wake = (double)(done + (uint64_t)burst) / rate - elapsed;
            struct timespec pause = {(time_t)wake, (long)((wake - (time_t)wake) * 1e9)};
            nanosleep(&pause, NULL);
            continue;
        }
        unsigned int batch = (unsigned int)(due - done < (uint64_t)burst ? due - done : (uint64_t)burst);
        for (unsigned int i = 0; i < batch; i++) {
            messages[i].msg_hdr.msg_iov = &payloads[next_payload];
            messages[i].msg_hdr.msg_iovlen = 1;
            next_payload = (next_payload + 1) % count;
        }
        int result = sendmmsg(sockets[turn], messages, batch, 0);
        turn = (turn + 1) % nsockets;
        if (result < 0) {
            if (errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED && errno != EINTR) {
                perror("sendmmsg");
                return 1;
            }
            errors += batch;
        } else {
            sent += (uint64_t)result;
            errors += batch - (unsigned int)result;
        }
    }
    double took = now_s() - start;
    printf("sent %llu errors %llu seconds %.3f rate %.0f\n", (unsigned long long)sent,
           (unsigned long long)errors, took, (double)sent / took);
    return 0;
}
