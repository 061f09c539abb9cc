// floor_server: the least an EGD responder can do, as a yardstick for rngmux.
//
//   cc -O2 -pthread -o floor_server bench/floor_server.c
//   ./floor_server THREADS        # prints "127.0.0.1:PORT" once listening
//
// THREADS event loops (epoll, level-triggered), each on its own SO_REUSEPORT
// listener on one loopback port, so the kernel spreads connections over them.
// Every readiness event is one recv of whatever the client sent and one send of
// the bytes its `02 NN` requests asked for, from a static buffer: no pool, no
// fair share, no health tests, no copies, no allocation per request. What this
// server cannot do on a machine, no EGD daemon that answers with system calls can:
// BENCHMARKS.md uses it to say which share of a miss is the machine's.
//
// Only `02 NN` is understood (what `rngmux bench` sends); other bytes are counted as
// requests of their following byte. Loopback only; a client that leaves no room for
// its replies for about a second is dropped, so no loop waits without bound.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kMaxThreads = 64, kEvents = 128 };

static unsigned char reply_bytes[256 * 1024];
struct client {
  int fd;
  int has_odd_byte;  // a request's first byte arrived without its count
};

static int open_listener(int port) {
  const int one = 1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 4096) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void drop(struct client *c) {
  close(c->fd);
  free(c);
}

// Sends n bytes, waiting for room when the socket is full: at most 100 waits of 10 ms
// per call, then the client counts as gone (the bench's clients always read).
static int send_all(int fd, size_t n) {
  int waits = 0;
  while (n > 0) {
    const size_t chunk = n < sizeof reply_bytes ? n : sizeof reply_bytes;
    const ssize_t sent = send(fd, reply_bytes, chunk, MSG_NOSIGNAL);
    if (sent > 0) {
      n -= (size_t)sent;
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && errno == EAGAIN && waits++ < 100) {
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      poll(&p, 1, 10);
      continue;
    }
    return -1;
  }
  return 0;
}

static void *serve(void *arg) {
  const int listener = (int)(long)arg;
  const int one = 1;
  const int epoll_fd = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  if (epoll_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &ev) != 0) {
    perror("floor_server: epoll");
    exit(1);
  }
  struct epoll_event events[kEvents];
  static __thread unsigned char input[64 * 1024];
  for (;;) {
    const int ready = epoll_wait(epoll_fd, events, kEvents, -1);
    for (int i = 0; i < ready; ++i) {
      struct client *c = events[i].data.ptr;
      if (c == NULL) {
        int fd;
        while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0 || errno == EINTR) {
          if (fd < 0) continue;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct client *added = calloc(1, sizeof *added);
          if (added == NULL) {
            close(fd);
            continue;
          }
          added->fd = fd;
          struct epoll_event cev = {.events = EPOLLIN, .data.ptr = added};
          if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &cev) != 0) drop(added);
        }
        // Out of descriptors: the listener stays readable, so back off rather than spin.
        if (errno == EMFILE || errno == ENFILE) poll(NULL, 0, 10);
        continue;
      }
      const ssize_t got = recv(c->fd, input, sizeof input, 0);
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (got <= 0) {
        drop(c);
        continue;
      }
      // Requests are byte pairs; the count is every second byte of the stream.
      size_t asked = 0;
      ssize_t j = c->has_odd_byte ? 0 : 1;
      for (; j < got; j += 2) asked += input[j];
      c->has_odd_byte = (j == got);
      if (send_all(c->fd, asked) != 0) drop(c);
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 1;
  if (threads < 1 || threads > kMaxThreads) {
    fprintf(stderr, "usage: floor_server [THREADS 1..%d]\n", kMaxThreads);
    return 2;
  }
  for (size_t i = 0; i < sizeof reply_bytes; ++i) reply_bytes[i] = (unsigned char)(i * 151 + 7);
  int listeners[kMaxThreads];
  listeners[0] = open_listener(0);
  struct sockaddr_in bound;
  socklen_t len = sizeof bound;
  if (listeners[0] < 0 || getsockname(listeners[0], (struct sockaddr *)&bound, &len) != 0) {
    perror("floor_server: listen");
    return 1;
  }
  const int listen_port = ntohs(bound.sin_port);
  for (int t = 1; t < threads; ++t) {
    listeners[t] = open_listener(listen_port);
    if (listeners[t] < 0) {
      perror("floor_server: listen");
      return 1;
    }
  }
  pthread_t ids[kMaxThreads];
  for (int t = 0; t < threads; ++t) {
    if (pthread_create(&ids[t], NULL, serve, (void *)(long)listeners[t]) != 0) {
      fprintf(stderr, "floor_server: cannot start a thread\n");
      return 1;
    }
  }
  printf("127.0.0.1:%d\n", listen_port);
  fflush(stdout);
  pthread_join(ids[0], NULL);
  return 0;
}
