/*
 * ctr-agent: PID 1 of a ctr VM (the initramfs's /init).
 *
 * At boot it mounts /proc, /sys, /dev, loads the modules listed in
 * /ctr/modules (and /ctr/modules.net when /ctr/net configures a network),
 * mounts the instance's root (virtio-9p, tag "root") on /newroot with /proc,
 * /sys (ro), /dev, /dev/pts, /dev/shm and the /etc files in /ctr, sets the
 * hostname and the network. Each step is one syscall: no shell, no forks.
 * Then it runs the instance's command (config in /ctr/config) with its stdio on
 * the console (/dev/hvc0), reports "ready" and then "exit N" on the virtio
 * serial port named ctr.status, and powers the guest off when the command
 * ends. Meanwhile it serves the host on two more ports:
 *
 *   ctr.ctl    "K <signal>\n": a signal for the command (stop, kill)
 *   ctr.agent  framed exec sessions, one host client at a time (QEMU's socket
 *              chardev queues the others):
 *                frame = type (1 byte), length (4 bytes, big endian), payload
 *              host -> guest  E exec (a config, as /ctr/config), I stdin data,
 *                             C stdin closed, K signal (decimal)
 *              guest -> host  O stdout data, R stderr data, X exit status
 *                             (decimal; 126/127 with a message after a space
 *                             when the command could not be run)
 *
 * A config is NUL-terminated strings: uid, gid, workdir, argc, argv..., env...
 * Commands run chrooted in /newroot. While no host client is connected a
 * port polls as POLLHUP; the agent then leaves it alone until the kernel
 * signals (SIGIO) that the host side opened it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define ROOT "/newroot"
#define MAXFRAME 65536

extern char **environ;

struct command {
    uid_t uid;
    gid_t gid;
    char *cwd;
    char **argv;
    char **envp;
};

struct session {
    pid_t pid;
    int in, out, err;     /* our ends of the pipes, -1 once closed */
    int status, exited;
};

static volatile sig_atomic_t got_sigio;

static void on_sigio(int sig) { (void)sig; got_sigio = 1; }

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ctr-agent: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= n;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= n;
    }
    return 0;
}

/* /dev/vportNpM of the virtio serial port called `name`, opened, or -1. */
static int open_port(const char *name)
{
    DIR *d = opendir("/sys/class/virtio-ports");
    struct dirent *e;
    int fd = -1;
    if (!d)
        return -1;
    while (fd < 0 && (e = readdir(d))) {
        char path[512], buf[64];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
        int nf = open(path, O_RDONLY | O_CLOEXEC);
        if (nf < 0)
            continue;
        ssize_t n = read(nf, buf, sizeof(buf) - 1);
        close(nf);
        if (n <= 0)
            continue;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        if (strcmp(buf, name) == 0) {
            snprintf(path, sizeof(path), "/dev/%s", e->d_name);
            fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
        }
    }
    closedir(d);
    return fd;
}

static void watch_port(int fd)
{
    if (fd < 0)
        return;
    fcntl(fd, F_SETOWN, getpid());
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC);
}

/* Parse a config (see the top); the strings point into buf. */
static int parse_command(char *buf, size_t len, struct command *c)
{
    char *fields[4096];
    size_t n = 0;
    for (size_t i = 0; i < len && n < 4095;) {
        fields[n++] = buf + i;
        i += strnlen(buf + i, len - i) + 1;
    }
    if (n < 5 || buf[len - 1] != 0)
        return -1;
    long argc = strtol(fields[3], NULL, 10);
    if (argc < 1 || (size_t)argc > n - 4)
        return -1;
    c->uid = strtoul(fields[0], NULL, 10);
    c->gid = strtoul(fields[1], NULL, 10);
    c->cwd = fields[2];
    c->argv = calloc(argc + 1, sizeof(char *));
    c->envp = calloc(n - 4 - argc + 1, sizeof(char *));
    if (!c->argv || !c->envp)
        return -1;
    for (long i = 0; i < argc; i++)
        c->argv[i] = fields[4 + i];
    for (size_t i = 4 + argc; i < n; i++)
        c->envp[i - 4 - argc] = fields[i];
    return 0;
}

/*
 * Fork and exec `c` with the given stdio. A failure before exec is written to
 * the returned fd (cloexec pipe) as "code message"; nothing there means exec'd.
 */
static pid_t spawn(struct command *c, int in, int out, int err, int *report)
{
    int rp[2];
    if (pipe2(rp, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(rp[0]);
        close(rp[1]);
        return -1;
    }
    if (pid == 0) {
        const char *step = "stdio";
        int code = 125;
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGIO, SIG_DFL);
        setsid();
        if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
            goto fail;
        step = "chroot";
        if (chroot(ROOT) < 0)
            goto fail;
        step = "workdir";
        if (chdir(c->cwd) < 0)
            goto fail;
        step = "user";
        if (setgroups(0, NULL) < 0 || setgid(c->gid) < 0 || setuid(c->uid) < 0)
            goto fail;
        environ = c->envp;
        step = c->argv[0];
        execvp(c->argv[0], c->argv);
        code = (errno == ENOENT || errno == ENOTDIR) ? 127 : 126;
    fail:;
        char msg[512];
        int n;
        if (code == 127 && !strchr(step, '/'))
            n = snprintf(msg, sizeof(msg), "%d %s: executable file not found in $PATH", code, step);
        else
            n = snprintf(msg, sizeof(msg), "%d %s: %s", code, step, strerror(errno));
        write_all(rp[1], msg, n);
        _exit(code);
    }
    close(rp[1]);
    *report = rp[0];
    return pid;
}

/* The failure a spawned child reported ("code message"), or NULL if it exec'd. */
static char *read_report(int fd)
{
    static char buf[512];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += n;
    }
    close(fd);
    buf[got] = 0;
    return got ? buf : NULL;
}

static int status_fd = -1;

static void status(const char *fmt, ...)
{
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (status_fd >= 0)
        write_all(status_fd, buf, n);
}

static void power_off(void)
{
    sync();
    reboot(RB_POWER_OFF);
    for (;;)
        pause();
}

/* -- the exec port ---------------------------------------------------------- */

/* Without blocking for good: a port whose host side left would block a
 * plain write until the next client comes. */
static int send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n > 0) {
            p += n;
            len -= n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN)
            return -1;
        struct pollfd pfd = {fd, POLLOUT, 0};
        if (poll(&pfd, 1, 5000) <= 0 || (pfd.revents & (POLLHUP | POLLERR)))
            return -1;
    }
    return 0;
}

static int send_frame(int fd, char type, const void *data, uint32_t len)
{
    unsigned char head[5] = {type, len >> 24, len >> 16, len >> 8, len};
    if (fd < 0 || send_all(fd, head, 5) < 0 || (len && send_all(fd, data, len) < 0))
        return -1;
    return 0;
}

static void end_session(struct session *s)
{
    if (s->pid > 0 && !s->exited)
        kill(-s->pid, SIGKILL);
    if (s->in >= 0)
        close(s->in);
    if (s->out >= 0)
        close(s->out);
    if (s->err >= 0)
        close(s->err);
    s->in = s->out = s->err = -1;
}

static void start_session(struct session *s, int port, char *payload, uint32_t len)
{
    struct command c;
    int pin[2], pout[2], perr[2], report;
    end_session(s);
    memset(s, 0, sizeof(*s));
    s->in = s->out = s->err = -1;
    if (parse_command(payload, len, &c) < 0) {
        send_frame(port, 'X', "125 bad exec request", 20);
        return;
    }
    if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0) {
        send_frame(port, 'X', "125 pipe failed", 15);
        return;
    }
    s->pid = spawn(&c, pin[0], pout[1], perr[1], &report);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    s->in = pin[1];
    s->out = pout[0];
    s->err = perr[0];
    free(c.argv);
    free(c.envp);
    if (s->pid < 0) {
        end_session(s);
        send_frame(port, 'X', "125 fork failed", 15);
        return;
    }
    char *failure = read_report(report);
    if (failure) {
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
        end_session(s);
        send_frame(port, 'X', failure, strlen(failure));
    }
}

/* One frame from the host, handled. -1 when the host went away. */
static int serve_frame(int port, struct session *s)
{
    unsigned char head[5];
    static char payload[MAXFRAME + 1];
    int flags = fcntl(port, F_GETFL);
    fcntl(port, F_SETFL, flags & ~O_NONBLOCK);
    int r = read_all(port, head, 5);
    uint32_t len = (uint32_t)head[1] << 24 | head[2] << 16 | head[3] << 8 | head[4];
    if (r == 0 && (len > MAXFRAME || (len && read_all(port, payload, len) < 0)))
        r = -1;
    fcntl(port, F_SETFL, flags);
    if (r < 0)
        return -1;
    payload[len] = 0;
    switch (head[0]) {
    case 'E':
        start_session(s, port, payload, len);
        break;
    case 'I':
        if (s->in >= 0 && write_all(s->in, payload, len) < 0) {
            close(s->in);
            s->in = -1;
        }
        break;
    case 'C':
        if (s->in >= 0)
            close(s->in);
        s->in = -1;
        break;
    case 'K':
        if (s->pid > 0 && !s->exited)
            kill(s->pid, atoi(payload));
        break;
    }
    return 0;
}

static int relay(int from, int *fdp, int port, char type)
{
    char buf[16384];
    ssize_t n = read(from, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0) {
        close(from);
        *fdp = -1;
        return 0;
    }
    return send_frame(port, type, buf, n);
}

/* -- main ------------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return NULL;
    char *buf = malloc(st.st_size + 1);  /* room for a NUL */
    if (!buf || read_all(fd, buf, st.st_size) < 0)
        return NULL;
    close(fd);
    *len = st.st_size;
    return buf;
}

/* The command's console, raw: its bytes reach the host as written. */
static int console(void)
{
    int fd = open("/dev/hvc0", O_RDWR | O_NOCTTY | O_CLOEXEC);
    struct termios t;
    if (fd < 0)
        return open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(fd, TCSANOW, &t);
    }
    return fd;
}

/* -- boot: what the init of the guest does before the command ---------------- */

static void die(const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    status("exit 125 the VM's init: %s\n", msg);
    int con = open("/dev/console", O_WRONLY | O_CLOEXEC);
    if (con >= 0) {
        dprintf(con, "ctr init: %s\n", msg);
        close(con);
    }
    power_off();
}

static void must_mount(const char *src, const char *dst, const char *type,
                       unsigned long flags, const char *data)
{
    mkdir(dst, 0755);
    if (mount(src, dst, type, flags, data) < 0)
        die("mount %s on %s: %s", type ? type : src, dst, strerror(errno));
}

/* The modules listed in `list` (names, one a line, in load order), from /lib/ctr. */
static void load_modules(const char *list)
{
    size_t len;
    char *names = slurp(list, &len);
    if (!names)
        return;
    names[len] = 0;
    for (char *name = strtok(names, "\n"); name; name = strtok(NULL, "\n")) {
        char path[300];
        snprintf(path, sizeof(path), "/lib/ctr/%s", name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST))
            die("loading module %s: %s", name, strerror(errno));
        close(fd);
    }
    free(names);
}

static void if_up(int sock, const char *ifname)
{
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
        die("no %s: %s", ifname, strerror(errno));
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
        die("%s up: %s", ifname, strerror(errno));
}

static void set_addr(int sock, const char *ifname, unsigned long req, in_addr_t a)
{
    struct ifreq ifr = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = a;
    if (ioctl(sock, req, &ifr) < 0)
        die("configuring %s: %s", ifname, strerror(errno));
}

/* lo up; with /ctr/net ("IP PREFIXLEN GATEWAY"), eth0 and the default route. */
static void network(void)
{
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    size_t len;
    char ip[64], gw[64];
    int prefix;
    if (sock < 0)
        die("socket: %s", strerror(errno));
    if_up(sock, "lo");
    char *conf = slurp("/ctr/net", &len);
    if (conf) {
        conf[len] = 0;
        if (sscanf(conf, "%63s %d %63s", ip, &prefix, gw) != 3 || prefix < 1 || prefix > 32)
            die("bad /ctr/net");
        set_addr(sock, "eth0", SIOCSIFADDR, inet_addr(ip));
        set_addr(sock, "eth0", SIOCSIFNETMASK, htonl(~0u << (32 - prefix)));
        if_up(sock, "eth0");
        struct rtentry rt = {0};
        struct sockaddr_in *dst = (struct sockaddr_in *)&rt.rt_dst;
        struct sockaddr_in *gwa = (struct sockaddr_in *)&rt.rt_gateway;
        struct sockaddr_in *mask = (struct sockaddr_in *)&rt.rt_genmask;
        dst->sin_family = gwa->sin_family = mask->sin_family = AF_INET;
        gwa->sin_addr.s_addr = inet_addr(gw);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        if (ioctl(sock, SIOCADDRT, &rt) < 0)
            die("default route via %s: %s", gw, strerror(errno));
        free(conf);
    }
    close(sock);
}

/* The ports appear once virtio_console has talked to QEMU: wait a little. */
static int wait_port(const char *name)
{
    for (int i = 0; i < 400; i++) {
        int fd = open_port(name);
        if (fd >= 0)
            return fd;
        usleep(5000);
    }
    return -1;
}

static void boot(void)
{
    must_mount("proc", "/proc", "proc", 0, NULL);
    must_mount("sysfs", "/sys", "sysfs", 0, NULL);
    must_mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    load_modules("/ctr/modules");
    if (access("/ctr/net", F_OK) == 0)
        load_modules("/ctr/modules.net");
    status_fd = wait_port("ctr.status");
    must_mount("root", ROOT, "9p", 0, "trans=virtio,version=9p2000.L,msize=524288,cache=mmap");
    must_mount("proc", ROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    must_mount("sysfs", ROOT "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
               NULL);
    must_mount("devtmpfs", ROOT "/dev", "devtmpfs", MS_NOSUID, NULL);
    must_mount("devpts", ROOT "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=0620");
    must_mount("shm", ROOT "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, NULL);
    mkdir(ROOT "/tmp", 01777);
    static const char *etc[] = {"hosts", "resolv.conf", "hostname"};
    for (size_t i = 0; i < sizeof(etc) / sizeof(*etc); i++) {
        char src[64], dst[64];
        snprintf(src, sizeof(src), "/ctr/%s", etc[i]);
        snprintf(dst, sizeof(dst), ROOT "/etc/%s", etc[i]);
        struct stat st;
        if (access(src, F_OK) == 0 && lstat(dst, &st) == 0 && S_ISREG(st.st_mode) &&
            mount(src, dst, NULL, MS_BIND, NULL) < 0)
            die("bind %s: %s", dst, strerror(errno));
    }
    size_t len;
    char *name = slurp("/ctr/hostname", &len);
    if (name) {
        name[strcspn(name, "\n")] = 0;
        sethostname(name, strlen(name));
        free(name);
    }
    network();
}

int main(void)
{
    size_t len;
    struct command main_cmd;

    if (getpid() == 1)
        boot();
    else
        status_fd = open_port("ctr.status");
    char *config = slurp("/ctr/config", &len);
    if (!config || parse_command(config, len, &main_cmd) < 0) {
        say("no usable /ctr/config");
        status("exit 125 the VM's init found no usable command\n");
        power_off();
    }
    sigset_t blocked, old;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGIO);
    sigaddset(&blocked, SIGCHLD);
    sigprocmask(SIG_BLOCK, &blocked, &old);
    struct sigaction sa = {.sa_handler = on_sigio};
    sigaction(SIGIO, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);

    int con = console();
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int report;
    pid_t main_pid = spawn(&main_cmd, null, con, con, &report);
    if (main_pid < 0) {
        status("exit 125 fork: %s\n", strerror(errno));
        power_off();
    }
    char *failure = read_report(report);
    if (failure) {
        waitpid(main_pid, NULL, 0);
        status("exit %s\n", failure);
        power_off();
    }
    status("ready %d\n", main_pid);

    int ctl = wait_port("ctr.ctl"), port = wait_port("ctr.agent");
    int ctl_up = 1, port_up = 1;
    watch_port(ctl);
    watch_port(port);
    struct session s = {.pid = 0, .in = -1, .out = -1, .err = -1};
    sigset_t waitmask = old;
    sigdelset(&waitmask, SIGIO);
    sigdelset(&waitmask, SIGCHLD);
    sa.sa_handler = on_sigio;  /* any handler: SIGCHLD only has to interrupt ppoll */
    sigaction(SIGCHLD, &sa, NULL);

    for (;;) {
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
            int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            if (pid == main_pid) {
                end_session(&s);
                tcdrain(con);
                status("exit %d\n", code);
                power_off();
            }
            if (pid == s.pid) {
                s.exited = 1;
                s.status = code;
            }
        }
        if (s.pid > 0 && s.exited && s.out < 0 && s.err < 0) {
            char buf[16];
            int n = snprintf(buf, sizeof(buf), "%d", s.status);
            if (port >= 0)
                send_frame(port, 'X', buf, n);
            end_session(&s);
            s.pid = 0;
        }
        if (got_sigio) {
            got_sigio = 0;
            ctl_up = port_up = 1;
        }
        struct pollfd fds[4] = {
            {ctl_up ? ctl : -1, POLLIN, 0}, {port_up ? port : -1, POLLIN, 0},
            {s.out, POLLIN, 0}, {s.err, POLLIN, 0},
        };
        if (ppoll(fds, 4, NULL, &waitmask) < 0)
            continue;
        /* A port with no host client polls as POLLHUP *and* POLLIN (virtio_console:
         * a read does not block, it returns 0): without reading POLLHUP first, the
         * loop would spin on it, a vCPU at 100% for the VM's whole life. */
        if (fds[0].revents & POLLIN) {
            char line[64];
            ssize_t n = read(ctl, line, sizeof(line) - 1);
            if (n > 0) {
                line[n] = 0;
                if (line[0] == 'K')
                    kill(main_pid, atoi(line + 1));
            } else if (fds[0].revents & (POLLHUP | POLLERR)) {
                ctl_up = 0;
            }
        } else if (fds[0].revents & (POLLHUP | POLLERR)) {
            ctl_up = 0;
        }
        if ((fds[1].revents & POLLIN) && !(fds[1].revents & (POLLHUP | POLLERR))) {
            if (serve_frame(port, &s) < 0) {
                end_session(&s);
                s.pid = 0;
            }
        } else if (fds[1].revents & (POLLHUP | POLLERR)) {
            port_up = 0;
            if (s.pid > 0) {  /* the client left: its session goes too */
                end_session(&s);
                s.pid = 0;
            }
        }
        if (fds[2].revents & (POLLIN | POLLHUP))
            relay(s.out, &s.out, port, 'O');
        if (fds[3].revents & (POLLIN | POLLHUP))
            relay(s.err, &s.err, port, 'R');
    }
}
