/* UDP echo server in plain BSD sockets:
 *   tapstack run -- ./udp_echo_server PORT [COUNT]
 * answers COUNT datagrams (default: forever). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [COUNT]\n", argv[0]);
        return 2;
    }
    int count = argc > 2 ? atoi(argv[2]) : -1;

    /* socket(): a UDP endpoint (an IPv4 datagram socket). */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); return 1; }

    /* bind(): the port datagrams are addressed to. */
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("bind"); return 1; }
    printf("listening on port %s\n", argv[1]);
    fflush(stdout);

    while (count != 0) {
        /* recvfrom(): one whole datagram and who sent it. */
        char buf[65536];
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen);
        if (n < 0) { perror("recvfrom"); return 1; }

        /* sendto(): the same bytes back to the sender. */
        if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, plen) < 0) perror("sendto");
        if (count > 0) count--;
    }
    /* close(): release the port. */
    close(fd);
    return 0;
}
