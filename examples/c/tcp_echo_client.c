/* TCP echo client in plain BSD sockets:
 *   tapstack run -- ./tcp_echo_client HOST PORT MESSAGE
 * sends MESSAGE, half-closes, prints what comes back. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT MESSAGE\n", argv[0]);
        return 2;
    }
    /* socket(): a TCP endpoint. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) { perror("socket"); return 1; }

    /* connect(): the three-way handshake with HOST:PORT; returns once
     * the connection is established (or refused, or timed out). */
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("connect"); return 1; }

    /* send(): the message; shutdown(SHUT_WR): our FIN, "no more data". */
    size_t len = strlen(argv[3]);
    if (send(fd, argv[3], len, MSG_NOSIGNAL) != (ssize_t)len) { perror("send"); return 1; }
    shutdown(fd, SHUT_WR);

    /* recv(): the echo, until the server's FIN (recv returns 0). */
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        fwrite(buf, 1, (size_t)n, stdout);
    if (n < 0) { perror("recv"); return 1; }

    /* close(): release the socket. */
    close(fd);
    return 0;
}
