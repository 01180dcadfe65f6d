/* A minimal systemd-notify for tests: sends its arguments, one per line, as one
 * datagram to $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace).
 * Built static, bound into busybox containers. Exit 0 sent, 1 no socket, 2 error. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char msg[4096] = "";
    size_t len = 0;
    int fd;

    if (!path || !*path)
        return 1;
    if (strlen(path) >= sizeof(sa.sun_path))
        return 2;
    strcpy(sa.sun_path, path);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    for (int i = 1; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (len + n + 2 > sizeof(msg))
            return 2;
        memcpy(msg + len, argv[i], n);
        len += n;
        if (i + 1 < argc)
            msg[len++] = '\n';
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || sendto(fd, msg, len, 0, (struct sockaddr *)&sa,
                         offsetof(struct sockaddr_un, sun_path) + strlen(path)) < 0) {
        perror("notify");
        return 2;
    }
    return 0;
}
