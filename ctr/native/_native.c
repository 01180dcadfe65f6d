/*
 * ctr._native: the few system calls a Python process cannot make safely or
 * at all on Python 3.11.
 *
 *   clone(flags[, cgroup_fd])
 *                       fork into new namespaces (pid, mount, uts, ipc, net);
 *                       with cgroup_fd, born in that cgroup2 folder (clone3).
 *                       The child continues in Python, like os.fork(): the
 *                       interpreter's fork hooks run around the raw syscall, so
 *                       the child is as consistent as after os.fork().
 *   unshare(flags)      e.g. the child's cgroup namespace, taken after the parent
 *                       has moved it into its cgroup.
 *   setns(fd, nstype)   join a namespace (ctr exec); a pid namespace applies to
 *                       the children forked afterwards.
 *   pivot_root(new, old)
 *   mount(source, target, fstype, flags, data), umount2(target, flags)
 *   userns_fd(uid_map, gid_map), idmap_tree(fd, userns_fd)
 *                       an idmapped copy of a detached mount (--userns=auto's
 *                       image layers, Linux 5.19+ under overlayfs): a user
 *                       namespace with the maps, then mount_setattr(2).
 *   open_pty(ptmx)      a pty from the container's own devpts (open, unlockpt,
 *                       TIOCGPTN: termios has no TIOCGPTN) -> (master, number)
 *   sethostname(name), link_up(ifname)
 *                       one syscall each; in C because importing `socket` for
 *                       them cost ~3 ms on every container start.
 *   capbset_limit(keep), caps_limit(keep, effective_permitted), prctl_set(op, v)
 *                       the capabilities and process flags a container's init
 *                       sets last (python-prctl's import cost ~2 ms a start).
 *   seccomp_compile(default, arches, rules), seccomp_install(program)
 *                       build a seccomp filter with libseccomp (what runc and
 *                       crun use: it knows every arch's syscall numbers and
 *                       emits the BPF), and later load that BPF into the
 *                       calling thread.
 *
 * Every failure raises OSError(errno, strerror, path): the Python side sends
 * it to the parent through the sync pipe as (errno, message). mount and
 * umount2 are called through the seam in __init__.py (Syscalls), which names
 * source, target, fstype and flags in the error (MountError).
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sched.h>
#include <signal.h>
#include <net/if.h>
#include <string.h>
#include <linux/securebits.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <seccomp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#define CTR_CLONE_INTO_CGROUP 0x200000000ULL

/* clone3(2)'s arguments, up to `cgroup` (CLONE_ARGS_SIZE_VER2). */
struct ctr_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    uint64_t set_tid, set_tid_size, cgroup;
};

static PyObject *
native_clone(PyObject *self, PyObject *args)
{
    unsigned long flags;
    long pid;
    int saved_errno, cgroup_fd = -1;

    if (!PyArg_ParseTuple(args, "k|i", &flags, &cgroup_fd))
        return NULL;
    /* Only namespace flags: anything sharing memory or files with the parent
     * would break the interpreter's assumptions. */
    if (flags & ~(unsigned long)(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
                                 CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUSER |
                                 CLONE_NEWCGROUP)) {
        PyErr_SetString(PyExc_ValueError, "clone: only namespace flags are allowed");
        return NULL;
    }
    PyOS_BeforeFork();
    if (cgroup_fd >= 0) {
        /* Born in the cgroup2 folder `cgroup_fd` (CLONE_INTO_CGROUP, Linux 5.7):
         * no move afterwards, which waits for an RCU grace period. */
        struct ctr_clone_args ca;
        memset(&ca, 0, sizeof(ca));
        ca.flags = flags | CTR_CLONE_INTO_CGROUP;
        ca.exit_signal = SIGCHLD;
        ca.cgroup = (uint64_t)cgroup_fd;
        pid = syscall(SYS_clone3, &ca, sizeof(ca));
    } else {
        /* x86_64 argument order: flags, stack, parent_tid, child_tid, tls.
         * A NULL stack makes this a fork with namespace flags. */
        pid = syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
    }
    saved_errno = errno;
    if (pid == 0) {
        PyOS_AfterFork_Child();
    } else {
        PyOS_AfterFork_Parent();
    }
    if (pid < 0) {
        errno = saved_errno;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(pid);
}

static PyObject *
native_unshare(PyObject *self, PyObject *args)
{
    int flags;
    if (!PyArg_ParseTuple(args, "i", &flags))
        return NULL;
    if (unshare(flags) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *
native_setns(PyObject *self, PyObject *args)
{
    int fd, nstype;
    if (!PyArg_ParseTuple(args, "ii", &fd, &nstype))
        return NULL;
    if (setns(fd, nstype) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *
native_pivot_root(PyObject *self, PyObject *args)
{
    const char *new_root, *put_old;
    if (!PyArg_ParseTuple(args, "ss", &new_root, &put_old))
        return NULL;
    if (syscall(SYS_pivot_root, new_root, put_old) < 0)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, new_root);
    Py_RETURN_NONE;
}

static PyObject *
native_mount(PyObject *self, PyObject *args)
{
    const char *source, *target, *fstype, *data;
    unsigned long flags;
    if (!PyArg_ParseTuple(args, "zszkz", &source, &target, &fstype, &flags, &data))
        return NULL;
    if (mount(source, target, fstype, flags, data) < 0)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, target);
    Py_RETURN_NONE;
}

static PyObject *
native_umount2(PyObject *self, PyObject *args)
{
    const char *target;
    int flags;
    if (!PyArg_ParseTuple(args, "si", &target, &flags))
        return NULL;
    if (umount2(target, flags) < 0)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, target);
    Py_RETURN_NONE;
}

static PyObject *
native_open_pty(PyObject *self, PyObject *args)
{
    const char *ptmx;
    unsigned int n;
    int fd;

    if (!PyArg_ParseTuple(args, "s", &ptmx))
        return NULL;
    fd = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, ptmx);
    if (unlockpt(fd) < 0 || ioctl(fd, TIOCGPTN, &n) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, ptmx);
    }
    return Py_BuildValue("(iI)", fd, n);
}

static PyObject *
native_sethostname(PyObject *self, PyObject *args)
{
    const char *name;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "s#", &name, &len))
        return NULL;
    if (sethostname(name, (size_t)len) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* ctr cp into a running --userns=auto instance: its overlay belongs to the
 * instance's user namespace, where only ids mapped there may create files.
 * SECBIT_NO_SETUID_FIXUP first: the file capabilities (CAP_CHOWN, ...) stay. */
static PyObject *
native_setfsids(PyObject *self, PyObject *args)
{
    unsigned int uid, gid;
    int bits;
    if (!PyArg_ParseTuple(args, "II", &uid, &gid))
        return NULL;
    bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
    if (bits < 0 || prctl(PR_SET_SECUREBITS, bits | SECBIT_NO_SETUID_FIXUP, 0, 0, 0) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    setfsgid(gid);
    setfsuid(uid);
    if ((unsigned int)setfsuid((uid_t)-1) != uid || (unsigned int)setfsgid((gid_t)-1) != gid) {
        errno = EPERM;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* An OCI process's ambient set (python-prctl has no PR_CAP_AMBIENT): cleared,
 * then each capability raised; the caller names the one the kernel refuses. */
static PyObject *
native_cap_ambient_clear(PyObject *self, PyObject *args)
{
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *
native_cap_ambient_raise(PyObject *self, PyObject *args)
{
    unsigned int cap;
    if (!PyArg_ParseTuple(args, "I", &cap))
        return NULL;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, (unsigned long)cap, 0, 0) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyObject *
native_link_up(PyObject *self, PyObject *args)
{
    const char *name;
    struct ifreq ifr;
    int fd, rc = -1;

    if (!PyArg_ParseTuple(args, "s", &name))
        return NULL;
    if (strlen(name) >= IFNAMSIZ) {
        PyErr_SetString(PyExc_ValueError, "interface name too long");
        return NULL;
    }
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    if (rc < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, name);
    }
    close(fd);
    Py_RETURN_NONE;
}

/* "SCMP_ACT_ERRNO" and an errno -> libseccomp's action value; 0 with
 * *ok = 0 for an unknown name. */
static uint32_t
seccomp_action(const char *name, int err, int *ok)
{
    *ok = 1;
    if (!strcmp(name, "SCMP_ACT_ALLOW")) return SCMP_ACT_ALLOW;
    if (!strcmp(name, "SCMP_ACT_ERRNO")) return SCMP_ACT_ERRNO(err);
    if (!strcmp(name, "SCMP_ACT_KILL") || !strcmp(name, "SCMP_ACT_KILL_THREAD"))
        return SCMP_ACT_KILL_THREAD;
    if (!strcmp(name, "SCMP_ACT_KILL_PROCESS")) return SCMP_ACT_KILL_PROCESS;
    if (!strcmp(name, "SCMP_ACT_TRAP")) return SCMP_ACT_TRAP;
    if (!strcmp(name, "SCMP_ACT_TRACE")) return SCMP_ACT_TRACE(err);
    if (!strcmp(name, "SCMP_ACT_LOG")) return SCMP_ACT_LOG;
    *ok = 0;
    return 0;
}

static int
seccomp_op(const char *name, enum scmp_compare *op)
{
    static const struct { const char *name; enum scmp_compare op; } ops[] = {
        {"SCMP_CMP_NE", SCMP_CMP_NE}, {"SCMP_CMP_LT", SCMP_CMP_LT},
        {"SCMP_CMP_LE", SCMP_CMP_LE}, {"SCMP_CMP_EQ", SCMP_CMP_EQ},
        {"SCMP_CMP_GE", SCMP_CMP_GE}, {"SCMP_CMP_GT", SCMP_CMP_GT},
        {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (!strcmp(name, ops[i].name)) {
            *op = ops[i].op;
            return 1;
        }
    return 0;
}

static PyObject *
seccomp_fail(scmp_filter_ctx ctx, int rc, const char *what)
{
    if (ctx)
        seccomp_release(ctx);
    if (rc < 0) {
        errno = -rc;
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, what);
    }
    PyErr_Format(PyExc_ValueError, "seccomp: %s", what);
    return NULL;
}

static scmp_filter_ctx
seccomp_fail_ctx(scmp_filter_ctx ctx, int rc, const char *what)
{
    seccomp_fail(ctx, rc, what);
    return NULL;
}

/* The filter of (action, errno), [arch names], [(syscall, action, errno,
 * [(index, op, value, value_two)])], built with libseccomp; NULL with an
 * exception set on failure. A syscall unknown on this kernel's arches is
 * skipped, as docker does; its name is not an error. */
static scmp_filter_ctx
seccomp_build(PyObject *args)
{
    const char *def_name;
    int def_errno, ok, rc;
    PyObject *arches, *rules;
    scmp_filter_ctx ctx;
    uint32_t def_action;

    if (!PyArg_ParseTuple(args, "(si)O!O!", &def_name, &def_errno, &PyList_Type, &arches,
                          &PyList_Type, &rules))
        return NULL;
    def_action = seccomp_action(def_name, def_errno, &ok);
    if (!ok)
        return seccomp_fail_ctx(NULL, 0, "unknown default action");
    ctx = seccomp_init(def_action);
    if (ctx == NULL)
        return seccomp_fail_ctx(NULL, -ENOMEM, "seccomp_init");
    /* The filter must not stop a syscall the default lets through only
     * because ctr set no_new_privs itself. */
    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(arches); i++) {
        const char *name = PyUnicode_AsUTF8(PyList_GET_ITEM(arches, i));
        uint32_t arch;
        if (name == NULL)
            return seccomp_fail_ctx(ctx, 0, "arch names are strings");
        arch = seccomp_arch_resolve_name(name);
        if (arch == 0)
            continue;  /* an arch libseccomp does not know: nothing to filter */
        rc = seccomp_arch_add(ctx, arch);
        if (rc < 0 && rc != -EEXIST)
            return seccomp_fail_ctx(ctx, rc, name);
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rules); i++) {
        const char *name, *act_name;
        int err, nr;
        PyObject *conds;
        struct scmp_arg_cmp cmp[6];
        Py_ssize_t n;

        if (!PyArg_ParseTuple(PyList_GET_ITEM(rules, i), "ssiO!", &name, &act_name, &err,
                              &PyList_Type, &conds)) {
            seccomp_release(ctx);
            return NULL;
        }
        nr = seccomp_syscall_resolve_name(name);
        if (nr == __NR_SCMP_ERROR)
            continue;
        n = PyList_GET_SIZE(conds);
        if (n > 6)
            return seccomp_fail_ctx(ctx, 0, "a rule has more than 6 argument conditions");
        for (Py_ssize_t j = 0; j < n; j++) {
            const char *op_name;
            unsigned int index;
            unsigned long long value, value2;
            if (!PyArg_ParseTuple(PyList_GET_ITEM(conds, j), "IsKK", &index, &op_name,
                                  &value, &value2)) {
                seccomp_release(ctx);
                return NULL;
            }
            if (index > 5 || !seccomp_op(op_name, &cmp[j].op))
                return seccomp_fail_ctx(ctx, 0, "bad argument condition");
            cmp[j].arg = index;
            cmp[j].datum_a = value;
            cmp[j].datum_b = value2;
        }
        {
            uint32_t action = seccomp_action(act_name, err, &ok);
            if (!ok)
                return seccomp_fail_ctx(ctx, 0, "unknown action");
            if (action == def_action)
                continue;  /* libseccomp refuses a rule that repeats the default */
            rc = seccomp_rule_add_array(ctx, action, nr, (unsigned int)n, cmp);
        }
        if (rc == -EDOM)  /* multiplexed (socketcall) on a 32-bit arch: exact match only */
            rc = 0;
        if (rc < 0)
            return seccomp_fail_ctx(ctx, rc, name);
    }
    return ctx;
}

/* seccomp_compile(filter) -> bytes: the BPF program (struct sock_filter[]) of
 * the filter, what seccomp_load() of libseccomp would load. Compiling is the
 * dear part (~1.5 ms): a container's init does it while it waits for its go,
 * and loads the program as its last step (seccomp_install). */
static PyObject *
native_seccomp_compile(PyObject *self, PyObject *args)
{
    scmp_filter_ctx ctx = seccomp_build(args);
    PyObject *out;
    off_t size;
    int fd, rc;

    if (ctx == NULL)
        return NULL;
    fd = memfd_create("ctr-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        seccomp_release(ctx);
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "memfd_create");
    }
    rc = seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    if (rc < 0) {
        close(fd);
        errno = -rc;
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "seccomp_export_bpf");
    }
    size = lseek(fd, 0, SEEK_END);
    if (size < 0 || size % sizeof(struct sock_filter) != 0 || lseek(fd, 0, SEEK_SET) < 0) {
        close(fd);
        errno = size < 0 ? errno : EINVAL;
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "seccomp_export_bpf");
    }
    out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL) {
        close(fd);
        return NULL;
    }
    for (off_t done = 0; done < size;) {
        ssize_t n = read(fd, PyBytes_AS_STRING(out) + done, (size_t)(size - done));
        if (n <= 0) {
            close(fd);
            Py_DECREF(out);
            errno = n < 0 ? errno : EIO;
            return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "seccomp_export_bpf");
        }
        done += n;
    }
    close(fd);
    return out;
}

/* seccomp_install(program): load a program of seccomp_compile into the
 * calling thread, as libseccomp's seccomp_load does (no flags). The caller
 * has set no_new_privs or holds CAP_SYS_ADMIN. */
static PyObject *
native_seccomp_install(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    struct sock_fprog prog;
    int rc;

    if (!PyArg_ParseTuple(args, "y*", &buf))
        return NULL;
    prog.len = (unsigned short)(buf.len / sizeof(struct sock_filter));
    prog.filter = buf.buf;
    if (buf.len % sizeof(struct sock_filter) != 0 || prog.len == 0
            || buf.len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "seccomp: not a BPF program");
        return NULL;
    }
    rc = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
    if (rc < 0 && errno == ENOSYS)
        rc = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
    PyBuffer_Release(&buf);
    if (rc < 0)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "seccomp_load");
    Py_RETURN_NONE;
}

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

/* The new mount API's two calls (Linux 5.2) for a mount of another mount
 * namespace, which mount(2)'s bind refuses: copy it as a detached mount while
 * in that namespace (clone_tree), attach the copy in one's own (attach_tree).
 * --ipc container:NAME takes NAME's /dev/shm this way. */
static PyObject *
native_clone_tree(PyObject *self, PyObject *args)
{
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path))
        return NULL;
    long fd = syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | O_CLOEXEC);
    if (fd < 0)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    return PyLong_FromLong(fd);
}

static PyObject *
native_attach_tree(PyObject *self, PyObject *args)
{
    int fd;
    const char *target;
    if (!PyArg_ParseTuple(args, "is", &fd, &target))
        return NULL;
    if (syscall(SYS_move_mount, fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, target);
    Py_RETURN_NONE;
}

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif

struct ctr_mount_attr {  /* struct mount_attr, MOUNT_ATTR_SIZE_VER0 */
    unsigned long long attr_set, attr_clr, propagation, userns_fd;
};

static int
write_proc(pid_t pid, const char *name, const char *text)
{
    char path[64];
    size_t len = strlen(text);
    int fd, rc;

    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    rc = write(fd, text, len) == (ssize_t)len ? 0 : -1;
    if (rc < 0 && errno == 0)
        errno = EIO;
    {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return rc;
}

/* A user namespace with the given maps, kept by its fd alone: a child that
 * only waits is cloned into it, given the maps, its namespace opened, and it
 * is killed (crun and LXC make the namespace of an idmapped mount the same
 * way). The child never runs Python. Its exit signal is 0, so a SIGCHLD
 * handler's waitpid(-1) cannot reap it before the __WALL wait below. */
static PyObject *
native_userns_fd(PyObject *self, PyObject *args)
{
    const char *uid_map, *gid_map;
    char path[64];
    long pid;
    int fd = -1, saved;

    if (!PyArg_ParseTuple(args, "ss", &uid_map, &gid_map))
        return NULL;
    pid = syscall(SYS_clone, CLONE_NEWUSER, NULL, NULL, NULL, 0);
    if (pid < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;)
            pause();
    }
    if (write_proc(pid, "uid_map", uid_map) == 0 && write_proc(pid, "gid_map", gid_map) == 0) {
        snprintf(path, sizeof(path), "/proc/%ld/ns/user", pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    saved = errno;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
        ;
    if (fd < 0) {
        errno = saved;
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, "uid_map/gid_map");
    }
    return PyLong_FromLong(fd);
}

/* idmap_tree(fd, userns_fd): make the detached mount `fd` (clone_tree's)
 * read-only and idmapped with the namespace's maps: a file owned by id N on
 * disk is seen as the namespace's N. Needs CAP_SYS_ADMIN over the mount's
 * filesystem (the host's root), and a filesystem that allows it
 * (FS_ALLOW_IDMAP): EINVAL, EPERM or ENOSYS otherwise. */
static PyObject *
native_idmap_tree(PyObject *self, PyObject *args)
{
    int fd, userns;
    struct ctr_mount_attr attr;

    if (!PyArg_ParseTuple(args, "ii", &fd, &userns))
        return NULL;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY;
    attr.userns_fd = (unsigned long long)userns;
    if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* The kernel's highest capability number (PR_CAPBSET_READ fails past it). */
static int
last_cap(void)
{
    int last = 0;
    while (last < 63 && prctl(PR_CAPBSET_READ, last + 1, 0, 0, 0) >= 0)
        last++;
    return last;
}

/* A sequence of capability numbers (0-63) -> their bit mask; -1 with an
 * exception set if it is not one. */
static int
cap_mask(PyObject *seq, uint64_t *mask)
{
    PyObject *fast = PySequence_Fast(seq, "capabilities are a sequence of numbers");
    if (fast == NULL)
        return -1;
    *mask = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        long cap = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        if (cap == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        if (cap < 0 || cap > 63) {
            Py_DECREF(fast);
            PyErr_Format(PyExc_ValueError, "no capability number %ld", cap);
            return -1;
        }
        *mask |= (uint64_t)1 << cap;
    }
    Py_DECREF(fast);
    return 0;
}

/* capbset_limit(keep): drop from the bounding set every capability the kernel
 * has but those numbered in `keep` (PR_CAPBSET_DROP; needs CAP_SETPCAP). */
static PyObject *
native_capbset_limit(PyObject *self, PyObject *args)
{
    PyObject *keep;
    uint64_t mask;
    int last;

    if (!PyArg_ParseTuple(args, "O", &keep) || cap_mask(keep, &mask) < 0)
        return NULL;
    last = last_cap();
    if (last < 63 && mask >> (last + 1)) {  /* as python-prctl refused it before */
        int cap = last + 1;
        while (!(mask & ((uint64_t)1 << cap)))
            cap++;
        PyErr_Format(PyExc_ValueError, "Unknown capability: %d", cap);
        return NULL;
    }
    for (int cap = 0; cap <= last; cap++)
        if (!(mask & ((uint64_t)1 << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* caps_limit(keep, effective_permitted): the inheritable set emptied (which
 * empties the ambient set too) and, with effective_permitted, the effective
 * and permitted sets limited to `keep`; one capset(2). */
static PyObject *
native_caps_limit(PyObject *self, PyObject *args)
{
    PyObject *keep;
    int effective_permitted;
    uint64_t mask;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

    if (!PyArg_ParseTuple(args, "Op", &keep, &effective_permitted)
            || cap_mask(keep, &mask) < 0)
        return NULL;
    if (syscall(SYS_capget, &hdr, data) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
        uint32_t kept = (uint32_t)(mask >> (32 * i));
        if (effective_permitted) {
            data[i].effective &= kept;
            data[i].permitted &= kept;
        }
        data[i].inheritable = 0;
    }
    if (syscall(SYS_capset, &hdr, data) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* caps_set(permitted, effective, inheritable): the three capability sets set
 * to exactly the numbers given (an OCI process's; one capset(2)). */
static PyObject *
native_caps_set(PyObject *self, PyObject *args)
{
    PyObject *seqs[3];
    uint64_t masks[3];
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

    if (!PyArg_ParseTuple(args, "OOO", &seqs[0], &seqs[1], &seqs[2]))
        return NULL;
    for (int k = 0; k < 3; k++)
        if (cap_mask(seqs[k], &masks[k]) < 0)
            return NULL;
    memset(data, 0, sizeof data);
    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
        data[i].permitted = (uint32_t)(masks[0] >> (32 * i));
        data[i].effective = (uint32_t)(masks[1] >> (32 * i));
        data[i].inheritable = (uint32_t)(masks[2] >> (32 * i));
    }
    if (syscall(SYS_capset, &hdr, data) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* prctl_set(option, value): prctl(2) with one argument (PR_SET_DUMPABLE,
 * PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS). */
static PyObject *
native_prctl_set(PyObject *self, PyObject *args)
{
    int option;
    unsigned long value;

    if (!PyArg_ParseTuple(args, "ik", &option, &value))
        return NULL;
    if (prctl(option, value, 0, 0, 0) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef native_methods[] = {
    {"capbset_limit", native_capbset_limit, METH_VARARGS,
     "capbset_limit(keep): drop every other capability from the bounding set"},
    {"caps_limit", native_caps_limit, METH_VARARGS,
     "caps_limit(keep, effective_permitted): inheritable emptied, E and P limited to keep"},
    {"prctl_set", native_prctl_set, METH_VARARGS, "prctl_set(option, value)"},
    {"seccomp_compile", native_seccomp_compile, METH_VARARGS,
     "seccomp_compile((default action, errno), arches, rules) -> BPF program (bytes)"},
    {"seccomp_install", native_seccomp_install, METH_VARARGS,
     "seccomp_install(program): load a program of seccomp_compile"},
    {"open_pty", native_open_pty, METH_VARARGS, "open_pty(ptmx) -> (master fd, pty number)"},
    {"sethostname", native_sethostname, METH_VARARGS, "sethostname(name)"},
    {"setfsids", native_setfsids, METH_VARARGS, "setfsids(uid, gid): setfsuid, setfsgid"},
    {"link_up", native_link_up, METH_VARARGS, "link_up(ifname): set IFF_UP"},
    {"cap_ambient_clear", native_cap_ambient_clear, METH_NOARGS,
     "cap_ambient_clear(): empty the ambient capability set"},
    {"cap_ambient_raise", native_cap_ambient_raise, METH_VARARGS,
     "cap_ambient_raise(cap): add capability number cap to the ambient set"},
    {"caps_set", native_caps_set, METH_VARARGS,
     "caps_set(permitted, effective, inheritable): the three sets exactly, one capset"},
    {"clone", native_clone, METH_VARARGS,
     "clone(flags[, cgroup_fd]) -> pid (0 in the child)"},
    {"unshare", native_unshare, METH_VARARGS, "unshare(flags)"},
    {"setns", native_setns, METH_VARARGS, "setns(fd, nstype)"},
    {"pivot_root", native_pivot_root, METH_VARARGS, "pivot_root(new_root, put_old)"},
    {"mount", native_mount, METH_VARARGS, "mount(source, target, fstype, flags, data)"},
    {"umount2", native_umount2, METH_VARARGS, "umount2(target, flags)"},
    {"clone_tree", native_clone_tree, METH_VARARGS,
     "clone_tree(path) -> fd of a detached copy of the mount at path"},
    {"attach_tree", native_attach_tree, METH_VARARGS, "attach_tree(fd, target)"},
    {"userns_fd", native_userns_fd, METH_VARARGS,
     "userns_fd(uid_map, gid_map) -> fd of a new user namespace with those maps"},
    {"idmap_tree", native_idmap_tree, METH_VARARGS,
     "idmap_tree(fd, userns_fd): the detached mount fd made read-only and idmapped"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "ctr.native._native", NULL, -1, native_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
#define CONST(name) PyModule_AddIntConstant(m, #name, name)
    CONST(CLONE_NEWNS); CONST(CLONE_NEWUTS); CONST(CLONE_NEWIPC);
    CONST(CLONE_NEWPID); CONST(CLONE_NEWNET); CONST(CLONE_NEWUSER);
    CONST(CLONE_NEWCGROUP);
    CONST(MS_RDONLY); CONST(MS_NOSUID); CONST(MS_NODEV); CONST(MS_NOEXEC);
    CONST(MS_REMOUNT); CONST(MS_BIND); CONST(MS_REC); CONST(MS_PRIVATE);
    CONST(MS_SLAVE); CONST(MS_STRICTATIME); CONST(MS_RELATIME);
    CONST(MNT_DETACH);
#undef CONST
    return m;
}
