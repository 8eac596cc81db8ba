/*
 * udpcount: the nginx benchmark's receiver. Counts datagrams with recvmmsg() so that the receiver, not
 * Python, is never what limits the measured rate.
 *
 *   udpcount HOST PORT IDLE_SECONDS
 *
 * Prints "ready" once bound, then, after IDLE_SECONDS without a datagram (following the first one), one line:
 * "received N seconds S sources K" (S: first to last datagram; K: distinct source addresses seen, up to 64).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: udpcount HOST PORT IDLE_SECONDS\n"); return 2; }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int size = 64 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }
    struct timeval tv = {0, 100000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    printf("ready\n");
    fflush(stdout);
    static char bufs[BATCH][2048];
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    struct sockaddr_in from[BATCH];
    uint32_t sources[64];
    int nsources = 0;
    long received = 0;
    double idle = atof(argv[3]), first = 0, last = 0;
    for (;;) {
        memset(msgs, 0, sizeof msgs);
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = sizeof bufs[i];
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &from[i];
            msgs[i].msg_hdr.msg_namelen = sizeof from[i];
        }
        int n = recvmmsg(s, msgs, BATCH, 0, NULL);
        double t = now_s();
        if (n > 0) {
            if (!received) first = t;
            last = t;
            received += n;
            for (int i = 0; i < n; i++) {
                uint32_t addr = from[i].sin_addr.s_addr;
                int known = 0;
                for (int k = 0; k < nsources; k++) known |= sources[k] == addr;
                if (!known && nsources < 64) sources[nsources++] = addr;
            }
        } else if (received && t - last > idle) {
            break;
        }
    }
    printf("received %ld seconds %.3f sources %d\n", received, last - first, nsources);
    return 0;
}
