/* UDP echo client in plain BSD sockets:
 *   tapstack run -- ./udp_echo_client HOST PORT MESSAGE
 * sends MESSAGE (again every 200 ms, up to 10 times: UDP may lose it) and
 * prints the first reply. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT MESSAGE\n", argv[0]);
        return 2;
    }
    /* socket(): a UDP endpoint; the stack picks our port at the first send. */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); return 1; }
    struct timeval tv = {0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    for (int i = 0; i < 10; i++) {
        /* sendto(): one datagram to HOST:PORT. */
        if (sendto(fd, argv[3], strlen(argv[3]), 0, (struct sockaddr *)&to, sizeof to) < 0) {
            perror("sendto");
            return 1;
        }
        /* recvfrom(): the echo (or a timeout, then we send again). */
        char buf[65536];
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, NULL, NULL);
        if (n >= 0) {
            fwrite(buf, 1, (size_t)n, stdout);
            /* close(): release the socket. */
            close(fd);
            return 0;
        }
    }
    fprintf(stderr, "no reply\n");
    return 1;
}
