/*
 * ctr-exec: the last exec of a container's process, run from a sealed memfd.
 *
 *   ctr-exec REPORT_FD PATH ARGV0 [ARGS...]
 *
 * ctr's Python child does not execve the command itself: if the command were
 * "#!/proc/self/exe" (or /proc/self/exe), the kernel would run the process's
 * own executable, the host's Python interpreter, inside the container, and a
 * process there could open it through /proc/PID/exe and overwrite it
 * (CVE-2019-5736, against runc). The Python child instead runs this program
 * from a memfd that ctr sealed against writes, so /proc/self/exe is never a
 * host file: at worst the sealed copy, which cannot be changed.
 *
 * On success the report pipe closes with the exec (close-on-exec): the parent
 * reads EOF. On failure it gets ctr/report.py's report, at step "exec":
 *   {"step": "exec", "errno": N, "code": 126|127, "message": "PATH: why"}
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

/* ctr/report.py's EXEC: the step this program is. */
#define STEP "exec"

static void report(int fd, const char *path, int err)
{
    char msg[8192], *o = msg;
    const char *what = err == ENOENT ? "no such file or directory"
                     : err == EACCES ? "permission denied" : NULL;
    int code = err == ENOENT ? 127 : 126;

    o += snprintf(o, 96, "{\"step\": \"" STEP "\", \"errno\": %d, \"code\": %d, "
                  "\"message\": \"", err, code);
    for (const char *p = path; *p && o < msg + sizeof(msg) - 600; p++) {
        if (*p == '"' || *p == '\\')
            *o++ = '\\';
        if ((unsigned char)*p < 0x20)
            o += sprintf(o, "\\u%04x", *p);
        else
            *o++ = *p;
    }
    if (what)
        o += sprintf(o, ": %s\"}", what);
    else
        o += sprintf(o, ": cannot execute: %s\"}", strerror(err));
    if (write(fd, msg, (size_t)(o - msg)) < 0)
        _exit(code);
}

int main(int argc, char **argv)
{
    int fd, err;

    /* Anything but ctr's own call: e.g. the interpreter of a "#!/proc/self/exe"
     * script, or /proc/self/exe run again. Do nothing. */
    if (argc < 4 || strcmp(argv[0], "ctr-exec") != 0) {
        fputs("ctr-exec: ctr's exec stub, not a command (was /proc/self/exe run?)\n",
              stderr);
        return 126;
    }
    fd = atoi(argv[1]);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    execve(argv[2], argv + 3, environ);
    err = errno;
    report(fd, argv[2], err);
    return err == ENOENT ? 127 : 126;
}
