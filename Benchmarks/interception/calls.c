/* The cost of vpm exec's interception, one system call pattern at a time.
 *
 *   calls bind N PORT      N x (socket, SO_REUSEADDR, bind PORT, listen, close)
 *   calls connect N PORT   N x (socket, connect 127.0.0.1:PORT, close) to a listener this
 *                          program starts on PORT (accepted and closed by a thread)
 *   calls getsockname N PORT  N x getsockname on a socket listening on PORT
 *   calls sendto N PORT    N x sendto of 1 byte from one unconnected UDP socket to
 *                          127.0.0.1:PORT (nothing listens: the datagrams are dropped)
 *
 * Prints "MODE N nanoseconds-per-call". Run once plain and once under vpm exec; with PORT
 * the initial port, bind goes to the engine; with another port, each call only costs the
 * trip to the supervisor and back. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int listening(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s, 4096) != 0) { perror("listen"); exit(1); }
    return s;
}

static void *acceptor(void *argument) {
    int s = *(int *)argument;
    for (;;) { int c = accept(s, NULL, NULL); if (c >= 0) close(c); }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: calls bind|connect|getsockname|sendto N PORT\n"); return 2; }
    const char *mode = argv[1];
    long count = atol(argv[2]);
    int port = atoi(argv[3]);
    double start = 0, end = 0;
    if (strcmp(mode, "bind") == 0) {
        start = now();
        for (long i = 0; i < count; i++) {
            int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
            setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
            if (bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s, 16) != 0) { perror("bind"); return 1; }
            close(s);
        }
        end = now();
    } else if (strcmp(mode, "connect") == 0) {
        static int server;
        server = listening(port);
        pthread_t thread;
        pthread_create(&thread, NULL, acceptor, &server);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        start = now();
        for (long i = 0; i < count; i++) {
            int s = socket(AF_INET, SOCK_STREAM, 0);
            if (connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) { perror("connect"); return 1; }
            close(s);
        }
        end = now();
    } else if (strcmp(mode, "getsockname") == 0) {
        int s = listening(port);
        struct sockaddr_in a;
        start = now();
        for (long i = 0; i < count; i++) {
            socklen_t length = sizeof(a);
            if (getsockname(s, (struct sockaddr *)&a, &length) != 0) { perror("getsockname"); return 1; }
        }
        end = now();
        if (ntohs(a.sin_port) != port) { fprintf(stderr, "getsockname said %d, not %d\n", ntohs(a.sin_port), port); return 1; }
    } else if (strcmp(mode, "sendto") == 0) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        start = now();
        for (long i = 0; i < count; i++) {
            if (sendto(s, "x", 1, 0, (struct sockaddr *)&a, sizeof(a)) != 1) { perror("sendto"); return 1; }
        }
        end = now();
    } else {
        return 2;
    }
    printf("%s %ld %.0f\n", mode, count, (end - start) / count);
    return 0;
}
