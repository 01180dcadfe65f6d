/* Escape attempts busybox cannot make, built static by the tests and bound
 * into the container. Each prints "ok" when the kernel let it through, or the
 * error, and exits 0 either way: the test reads the verdict.
 *
 *   shocker DIR          open_by_handle_at with the handle of inode 2 (the
 *                        root of an ext4 filesystem) relative to DIR's mount
 *   keyctl               add a key to the session keyring
 *   ptrace PID           PTRACE_ATTACH
 *   userns               unshare(CLONE_NEWUSER)
 *   exe-write PATH       open PATH (e.g. /proc/PID/exe) for writing and write
 *                        its first byte back to where it was: a change of
 *                        nothing, but only possible if the file is writable
 *   exe-watch SECONDS    scan /proc for SECONDS, opening every other process's
 *                        exe: print "opened LINK" for each that opens and is
 *                        not one of the container's files (/bin/...), then
 *                        "denied N" (the opens refused)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <time.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

static int verdict(int rc)
{
    if (rc < 0)
        printf("%s\n", strerror(errno));
    else
        printf("ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    if (!strcmp(argv[1], "shocker") && argc == 3) {
        struct { struct file_handle h; unsigned char bytes[8]; } fh = {0};
        int mfd = open(argv[2], O_RDONLY | O_DIRECTORY);
        if (mfd < 0)
            return verdict(-1);
        fh.h.handle_bytes = 8;
        fh.h.handle_type = 1;  /* FILEID_INO32_GEN: inode 2, generation 0 */
        fh.bytes[0] = 2;
        return verdict(open_by_handle_at(mfd, &fh.h, O_RDONLY | O_DIRECTORY));
    }
    if (!strcmp(argv[1], "keyctl"))
        return verdict(syscall(SYS_add_key, "user", "ctr-probe", "x", 1, -3 /* session */));
    if (!strcmp(argv[1], "ptrace") && argc == 3)
        return verdict(ptrace(PTRACE_ATTACH, atoi(argv[2]), 0, 0));
    if (!strcmp(argv[1], "userns"))
        return verdict(unshare(CLONE_NEWUSER));
    if (!strcmp(argv[1], "exe-write") && argc == 3) {
        char c;
        int fd = open(argv[2], O_RDWR);
        if (fd < 0 || pread(fd, &c, 1, 0) != 1)
            return verdict(-1);
        return verdict(pwrite(fd, &c, 1, 0) == 1 ? 0 : -1);
    }
    if (!strcmp(argv[1], "exe-watch") && argc == 3) {
        time_t end = time(NULL) + atoi(argv[2]);
        long denied = 0;
        while (time(NULL) < end) {
            DIR *d = opendir("/proc");
            struct dirent *e;
            while (d && (e = readdir(d))) {
                char path[64], link[4096];
                int pid = atoi(e->d_name), fd;
                ssize_t n;
                if (pid <= 0 || pid == getpid())
                    continue;
                snprintf(path, sizeof(path), "/proc/%d/exe", pid);
                fd = open(path, O_RDONLY);
                if (fd < 0) {
                    denied += errno == EACCES || errno == EPERM;
                    continue;
                }
                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);  /* what was opened */
                n = readlink(path, link, sizeof(link) - 1);
                link[n > 0 ? n : 0] = 0;
                if (strncmp(link, "/bin/", 5) != 0)
                    printf("opened %s\n", link);
                close(fd);
            }
            if (d)
                closedir(d);
        }
        printf("denied %ld\n", denied);
        return 0;
    }
    return 2;
}
