/*
 * ctr-agent: PID 1 of a ctr VM, once the init script has mounted the root.
 *
 * It runs the instance's command (config in /ctr/config) with its stdio on
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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
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
static pid_t spawn(struct command *c, int in, int out, int err, int ctty, int *report)
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
        if (ctty)
            ioctl(0, TIOCSCTTY, 0);
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
    s->pid = spawn(&c, pin[0], pout[1], perr[1], 0, &report);
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
    char *buf = malloc(st.st_size + 1);
    if (!buf || read_all(fd, buf, st.st_size) < 0)
        return NULL;
    close(fd);
    *len = st.st_size;
    return buf;
}

static int console(int tty)
{
    int fd = open("/dev/hvc0", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (!tty) {
        struct termios t;
        if (tcgetattr(fd, &t) == 0) {
            cfmakeraw(&t);
            tcsetattr(fd, TCSANOW, &t);
        }
    }
    return fd;
}

/* `ctr-agent insmod FILE...`: load modules in one process (busybox insmod
 * would fork and exec once per module, which TCG makes dear). */
static int insmod(int n, char **files)
{
    for (int i = 0; i < n; i++) {
        int fd = open(files[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)) {
            say("loading %s: %s", files[i], strerror(errno));
            return 1;
        }
        close(fd);
    }
    return 0;
}

int main(int argc, char **argv)
{
    size_t len;
    if (argc > 1 && strcmp(argv[1], "insmod") == 0)
        return insmod(argc - 2, argv + 2);
    struct command main_cmd;
    int tty = argc > 1 && strcmp(argv[1], "--tty") == 0;
    char *config = slurp("/ctr/config", &len);

    status_fd = open_port("ctr.status");
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

    int con = console(tty);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int report;
    pid_t main_pid = spawn(&main_cmd, tty ? con : null, con, con, tty, &report);
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

    int ctl = open_port("ctr.ctl"), port = open_port("ctr.agent");
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
        if (fds[0].revents & POLLIN) {
            char line[64];
            ssize_t n = read(ctl, line, sizeof(line) - 1);
            if (n > 0) {
                line[n] = 0;
                if (line[0] == 'K')
                    kill(main_pid, atoi(line + 1));
            }
        } else if (fds[0].revents & (POLLHUP | POLLERR)) {
            ctl_up = 0;
        }
        if (fds[1].revents & POLLIN) {
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
