/* TCP echo server in plain BSD sockets. Run it on the stack with
 *   tapstack run -- ./tcp_echo_server PORT [COUNT]
 * It serves COUNT connections (default: forever), one at a time. */
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

    /* socket(): ask for a TCP endpoint (an IPv4 stream socket). */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) { perror("socket"); return 1; }
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);

    /* bind(): give it a local address: any address, this port. */
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("bind"); return 1; }

    /* listen(): become passive; the stack completes handshakes for us
     * and queues up to 16 connections until we accept them. */
    if (listen(lfd, 16) < 0) { perror("listen"); return 1; }
    printf("listening on port %s\n", argv[1]);
    fflush(stdout);

    while (count != 0) {
        /* accept(): take the next established connection: a new socket
         * for it, and the peer's address. */
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int cfd = accept(lfd, (struct sockaddr *)&peer, &plen);
        if (cfd < 0) { perror("accept"); return 1; }
        printf("connection from %s:%d\n", inet_ntoa(peer.sin_addr), ntohs(peer.sin_port));
        fflush(stdout);

        /* recv()/send(): echo every byte until the peer half-closes
         * (recv returns 0: its FIN arrived). */
        char buf[4096];
        ssize_t n;
        while ((n = recv(cfd, buf, sizeof buf, 0)) > 0) {
            ssize_t off = 0;
            while (off < n) {
                ssize_t w = send(cfd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
                if (w < 0) { perror("send"); break; }
                off += w;
            }
        }
        if (n < 0) perror("recv");

        /* close(): our FIN; the connection is over. */
        close(cfd);
        if (count > 0) count--;
    }
    close(lfd);
    return 0;
}
