/*
 * ctr-monitor: what stays of a detached container's monitor while it runs
 * (podman's conmon does the same job). ctr's Python monitor starts the
 * instance, reports to the CLI, then execs this program, so the instance's
 * init stays its child:
 *
 *   ctr-monitor NAME DIR PID [OPTIONS] -- RESUME_ARGV...
 *
 *   --out FD --err FD    the read ends of the instance's stdout and stderr pipes
 *   --pty FD             with -t: the pty master (its output is "stdout")
 *   --stdin FD           with -i: where attached clients' bytes go (the stdin
 *                        pipe's write end, or the pty master)
 *   --attach FD          with -i: the listening socket instances/NAME/attach
 *   --log PATH --max-size N --max-files N
 *                        the CRI-format log, as ctr/logs.py's LogWriter writes it
 *   --health-ms N --health ARG (repeated)
 *                        a healthcheck: every N ms from the end of the last
 *                        check, run ARGV (ctr healthcheck run NAME) and wait
 *
 * It copies the output into the log until the instance exits, reaps it, lets
 * the output drain (5 s at most), writes DIR/exit.json atomically
 * ({"pid": PID, "exit_code": N, "finished": T}: what ctr's reconciling reads if
 * nothing else records this run's end) and execs RESUME_ARGV with two more
 * arguments, the exit code and the run's length in ms: the Python monitor,
 * which records the end in the state (oom, events, network, cgroup, --rm) and
 * applies the restart policy. The rare and complex stays in Python; what
 * costs memory for as long as an instance runs is this program.
 *
 * Nothing is printed: stdio is /dev/null. A failure of its own ends in the
 * exec of RESUME_ARGV all the same (exit code -1: unknown), never in a lost
 * instance left unreaped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RECORD_BODY 8192 /* ctr/logs.py's: the longest piece of a line in one record */
#define READ_SIZE 65536
#define MAX_CLIENTS 32
#define MAX_HEALTH_ARGS 32
#define DRAIN_MS 5000

struct log {
    const char *path;
    long long max_size, size;
    int max_files, fd;
    size_t body;
};

static int log_open(struct log *l)
{
    l->fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    return l->fd;
}

static void log_rotate(struct log *l)
{
    char older[4096], newer[4096];

    close(l->fd);
    if (l->max_files > 1) {
        for (int n = l->max_files - 1; n > 1; n--) {
            snprintf(older, sizeof older, "%s.%d", l->path, n - 1);
            snprintf(newer, sizeof newer, "%s.%d", l->path, n);
            if (access(older, F_OK) == 0)
                rename(older, newer);
        }
        snprintf(newer, sizeof newer, "%s.1", l->path);
        rename(l->path, newer);
    } else {
        unlink(l->path);
    }
    log_open(l);
    l->size = 0;
}

static void log_append(struct log *l, const char *rec, size_t len)
{
    if (l->max_size >= 0 && l->size && l->size + (long long)len > l->max_size)
        log_rotate(l);
    while (len && l->fd >= 0) {
        ssize_t n = write(l->fd, rec, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* a full disk loses output, never the instance */
        }
        rec += n;
        len -= n;
        l->size += n;
    }
}

/* One line (whole: it ended with a newline) as records of at most `body` bytes. */
static void log_line(struct log *l, const char *ts, const char *stream, const char *line,
                     size_t len, int whole)
{
    static char rec[64 + RECORD_BODY + 2];
    size_t off = 0;

    do {
        size_t piece = len - off < l->body ? len - off : l->body;
        int last = off + piece == len;
        int head = snprintf(rec, 64, "%s %s %c ", ts, stream, whole && last ? 'F' : 'P');
        memcpy(rec + head, line + off, piece);
        rec[head + piece] = '\n';
        log_append(l, rec, head + piece + 1);
        off += piece;
    } while (off < len);
}

static void timestamp(char *out, size_t size)
{
    struct timespec now;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, size - n, ".%09ldZ", now.tv_nsec);
}

/* What one read of `stream` brought: LogWriter.write. */
static void log_write(struct log *l, const char *stream, const char *data, size_t len)
{
    char ts[64];
    size_t start = 0;

    timestamp(ts, sizeof ts);
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            log_line(l, ts, stream, data + start, i - start, 1);
            start = i + 1;
        }
    }
    if (start < len)
        log_line(l, ts, stream, data + start, len - start, 0);
}

static long long now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= n;
    }
    return 0;
}

/* DIR/exit.json, atomically (temp file, fsync, rename), as ctr/store.py writes. */
static void record_exit(const char *dir, long pid, int code)
{
    char path[4096], tmp[4096], body[256], when[64];
    struct timespec now;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", now.tv_nsec / 1000000);
    int len = snprintf(body, sizeof body,
                       "{\n  \"exit_code\": %d,\n  \"finished\": \"%s\",\n  \"pid\": %ld\n}\n",
                       code, when, pid);
    snprintf(path, sizeof path, "%s/exit.json", dir);
    snprintf(tmp, sizeof tmp, "%s/exit.json.tmp.%ld", dir, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    int ok = write_all(fd, body, len) == 0 && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) < 0)
        unlink(tmp);
}

static int number(const char *s, long long *out)
{
    char *end;

    errno = 0;
    *out = strtoll(s, &end, 10);
    return errno || end == s || *end ? -1 : 0;
}

int main(int argc, char **argv)
{
    struct log log = {.max_size = -1, .max_files = 1, .fd = -1};
    int out_fd = -1, err_fd = -1, pty_fd = -1, stdin_fd = -1, listen_fd = -1;
    long long health_ms = -1, pid = 0, v;
    char *health_argv[MAX_HEALTH_ARGS + 1];
    int health_argc = 0;
    char **resume = NULL;
    int resume_argc = 0;

    if (argc < 4)
        return 2;
    const char *dir = argv[2];
    if (number(argv[3], &pid) < 0 || pid <= 0)
        return 2;
    for (int i = 4; i < argc; i++) {
        const char *opt = argv[i];
        if (!strcmp(opt, "--")) {
            resume = argv + i + 1;
            resume_argc = argc - i - 1;
            break;
        }
        if (i + 1 >= argc)
            return 2;
        const char *val = argv[++i];
        if (!strcmp(opt, "--log")) {
            log.path = val;
            continue;
        }
        if (!strcmp(opt, "--health")) {
            if (health_argc < MAX_HEALTH_ARGS)
                health_argv[health_argc++] = (char *)val;
            continue;
        }
        if (number(val, &v) < 0)
            return 2;
        if (!strcmp(opt, "--out"))
            out_fd = v;
        else if (!strcmp(opt, "--err"))
            err_fd = v;
        else if (!strcmp(opt, "--pty"))
            pty_fd = v;
        else if (!strcmp(opt, "--stdin"))
            stdin_fd = v;
        else if (!strcmp(opt, "--attach"))
            listen_fd = v;
        else if (!strcmp(opt, "--max-size"))
            log.max_size = v;
        else if (!strcmp(opt, "--max-files"))
            log.max_files = v;
        else if (!strcmp(opt, "--health-ms"))
            health_ms = v;
        else
            return 2;
    }
    health_argv[health_argc] = NULL;
    if (!resume || resume_argc < 1 || !log.path)
        return 2;
    log.body = log.max_size < 0 ? RECORD_BODY
             : log.max_size / 4 < 64 ? 64
             : log.max_size / 4 > RECORD_BODY ? RECORD_BODY : (size_t)(log.max_size / 4);
    if (log_open(&log) >= 0) {
        struct stat st;
        if (fstat(log.fd, &st) == 0)
            log.size = st.st_size;
    }
    prctl(PR_SET_NAME, "ctr-monitor");

    /* SIGCHLD through a signalfd: the instance's end, and a healthcheck's */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);

    /* the fds kept across the exec of RESUME_ARGV: --attach only */
    int fds[] = {out_fd, err_fd, pty_fd, stdin_fd};
    for (unsigned i = 0; i < sizeof fds / sizeof *fds; i++)
        if (fds[i] >= 0)
            fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    if (listen_fd >= 0)
        fcntl(listen_fd, F_SETFD, 0);

    int clients[MAX_CLIENTS];
    int nclients = 0;
    pid_t check = 0;
    long long began = now_ms();
    long long next_check = health_ms >= 0 && health_argc ? began + health_ms : -1;
    long long drain_until = -1;
    int status = -1, exited = 0, first_pass = 1;
    static char buf[READ_SIZE];
    /* what a client sent that the instance's stdin could not take yet: while
       there is some, no client is read (the relay never blocks the log) */
    static char pending[READ_SIZE];
    size_t pending_len = 0, pending_off = 0;
    if (stdin_fd >= 0)
        fcntl(stdin_fd, F_SETFL, fcntl(stdin_fd, F_GETFL) | O_NONBLOCK);

    for (;;) {
        enum { OUT, ERR, PTY, SIGNALS, LISTEN, STDIN, CLIENT } kind[6 + MAX_CLIENTS];
        struct pollfd p[6 + MAX_CLIENTS];
        int n = 0;
        int *outputs[] = {&out_fd, &err_fd, &pty_fd};

        for (int i = 0; i < 3; i++) {
            if (*outputs[i] >= 0) {
                kind[n] = i;
                p[n++] = (struct pollfd){.fd = *outputs[i], .events = POLLIN};
            }
        }
        if (exited && (!n || now_ms() >= drain_until))
            break; /* drained, or given up on a holder of the pipes that outlived it */
        kind[n] = SIGNALS;
        p[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        if (!exited && listen_fd >= 0) {
            kind[n] = LISTEN;
            p[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        }
        if (!exited && pending_len) {
            kind[n] = STDIN;
            p[n++] = (struct pollfd){.fd = stdin_fd, .events = POLLOUT};
        }
        for (int i = 0; !exited && !pending_len && i < nclients; i++) {
            kind[n] = CLIENT;
            p[n++] = (struct pollfd){.fd = clients[i], .events = POLLIN};
        }

        long long now = now_ms();
        int timeout = -1;
        if (first_pass) /* the instance may have ended before SIGCHLD was blocked */
            timeout = 0;
        else if (exited)
            timeout = drain_until > now ? drain_until - now : 0;
        else if (next_check >= 0 && !check)
            timeout = next_check > now ? next_check - now : 0;
        if (poll(p, n, timeout) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (next_check >= 0 && !check && !exited && now_ms() >= next_check) {
            check = fork();
            if (check == 0) {
                sigprocmask(SIG_UNBLOCK, &mask, NULL);
                signal(SIGPIPE, SIG_DFL);
                if (listen_fd >= 0) /* kept across our own exec only */
                    close(listen_fd);
                int null = open("/dev/null", O_RDWR);
                dup2(null, 0);
                dup2(null, 1);
                dup2(null, 2);
                execv(health_argv[0], health_argv);
                _exit(127);
            }
            if (check < 0) {
                check = 0;
                next_check = now_ms() + health_ms;
            }
        }
        for (int i = 0; i < n; i++) {
            if (!p[i].revents && !(kind[i] == SIGNALS && first_pass))
                continue;
            ssize_t got;
            switch (kind[i]) {
            case OUT:
            case ERR:
            case PTY:
                got = read(p[i].fd, buf, sizeof buf);
                if (got < 0 && (errno == EINTR || errno == EAGAIN))
                    break;
                if (got > 0) {
                    log_write(&log, kind[i] == ERR ? "stderr" : "stdout", buf, got);
                    break;
                }
                /* EOF, or EIO from a pty whose last holder went */
                close(p[i].fd);
                *outputs[kind[i]] = -1;
                break;
            case SIGNALS: {
                struct signalfd_siginfo si;
                int ws;
                pid_t child;

                first_pass = 0;
                while (read(sfd, &si, sizeof si) == sizeof si)
                    ;
                while ((child = waitpid(-1, &ws, WNOHANG)) > 0) {
                    if (child == (pid_t)pid) {
                        status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
                        exited = 1;
                        drain_until = now_ms() + DRAIN_MS;
                    } else if (child == check) {
                        check = 0;
                        next_check = now_ms() + health_ms;
                    }
                }
                break;
            }
            case LISTEN: {
                int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (c >= 0 && nclients < MAX_CLIENTS)
                    clients[nclients++] = c;
                else if (c >= 0)
                    close(c);
                break;
            }
            case STDIN:
            case CLIENT:
                if (kind[i] == CLIENT) {
                    got = read(p[i].fd, pending, sizeof pending);
                    if (got < 0 && errno == EINTR)
                        break;
                    if (got <= 0) { /* a client that goes is dropped; stdin stays open */
                        close(p[i].fd);
                        for (int j = 0; j < nclients; j++) {
                            if (clients[j] == p[i].fd) {
                                clients[j] = clients[--nclients];
                                break;
                            }
                        }
                        break;
                    }
                    pending_len = got;
                    pending_off = 0;
                    if (stdin_fd < 0) {
                        pending_len = 0;
                        break;
                    }
                }
                while (pending_off < pending_len) {
                    got = write(stdin_fd, pending + pending_off, pending_len - pending_off);
                    if (got < 0) {
                        if (errno == EINTR)
                            continue;
                        if (errno != EAGAIN) /* the command closed its stdin: dropped */
                            pending_off = pending_len;
                        break;
                    }
                    pending_off += got;
                }
                if (pending_off >= pending_len)
                    pending_len = pending_off = 0;
                break;
            }
            if (kind[i] == CLIENT && pending_len)
                break; /* the rest of the clients wait until stdin took it */
        }
    }

    if (check > 0) { /* no check outlives the run */
        kill(check, SIGKILL);
        waitpid(check, NULL, 0);
    }
    if (!exited) { /* a failure of ours: wait for the instance all the same */
        int ws;
        if (waitpid((pid_t)pid, &ws, 0) == (pid_t)pid)
            status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    }
    long long ran = now_ms() - began;
    record_exit(dir, pid, status);
    if (log.fd >= 0)
        close(log.fd);

    char code_arg[32], ran_arg[32];
    snprintf(code_arg, sizeof code_arg, "%d", status);
    snprintf(ran_arg, sizeof ran_arg, "%lld", ran);
    char **args = calloc(resume_argc + 3, sizeof *args);
    if (!args)
        return 1;
    memcpy(args, resume, resume_argc * sizeof *args);
    args[resume_argc] = code_arg;
    args[resume_argc + 1] = ran_arg;
    sigprocmask(SIG_UNBLOCK, &mask, NULL);
    execv(args[0], args);
    return 1;
}
