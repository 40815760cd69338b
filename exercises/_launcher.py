"""Build the student's sandbox and start the worker in it (trusted; runs before any student code).

Started by exercises/_sandbox.py as

    setpriv --pdeathsig KILL unshare --mount --pid --net --ipc --uts --fork --kill-child python -I _launcher.py SPEC.json

so this process is PID 1 of a fresh PID namespace, in fresh mount, network (no interface but a
down loopback), IPC and UTS namespaces, as root. It

1. builds a new root on a tmpfs: read-only bind mounts of the system and Python directories the
   worker needs (nothing else: not the repository, not the class, not the outputs), with the
   exercise's answer-key libraries (e.g. sklearn/metrics) covered by empty mounts, a few /dev
   nodes, a fresh /proc of this PID namespace, and a small tmpfs scratch folder (/sandbox)
   holding a copy of the one student file and the worker's two files;
2. forks the worker: a new session, chroot into that root, no supplementary groups, an unused
   uid/gid (it can write nothing of the host's and signal nothing outside), no_new_privs, the
   resource limits, then exec;
3. reaps every orphan until the worker exits, then exits itself. When PID 1 of a namespace exits
   the kernel kills every process left in it, so nothing the student started survives; and when
   the grader dies, unshare dies (pdeathsig) and takes this process (--kill-child) with it.

Only the standard library: it must not import anything a student could have influenced.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import resource
import shutil
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
PR_SET_NO_NEW_PRIVS = 38

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def bind(root: str, source: str, target: str, writable: bool = False, dev: bool = False) -> None:
    """Bind `source` at root/target, read-only unless `writable`."""
    inside = root + target
    if os.path.isdir(source):
        os.makedirs(inside, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        open(inside, "a").close()
    mount(source, inside, None, MS_BIND | MS_REC)
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | (0 if dev else MS_NODEV) | (0 if writable else MS_RDONLY)
    mount(None, inside, None, flags)


def build_root(spec: dict) -> None:
    root = spec["root"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=8m,mode=0755")
    for source in spec["ro_binds"]:
        if os.path.islink(source) and os.path.dirname(source) == "/":     # /bin -> usr/bin
            os.symlink(os.readlink(source), root + source)
        elif os.path.exists(source):
            bind(root, source, source)
    for path in spec.get("hide", []):                   # answer keys among the installed libraries
        if os.path.isdir(root + path):
            mount("tmpfs", root + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0555")
        elif os.path.isfile(root + path):
            mount("/dev/null", root + path, None, MS_BIND)
    for node in spec["dev"]:
        bind(root, node, node, writable=True, dev=True)
    scratch = root + spec["scratch"]
    os.makedirs(scratch)
    uid, gid = spec["uid"], spec["gid"]
    mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={spec['scratch_mb']}m,mode=0700,uid={uid},gid={gid}")
    for name, source in spec["files"].items():
        shutil.copyfile(source, os.path.join(scratch, name))
        os.chown(os.path.join(scratch, name), uid, gid)
    if not os.path.lexists(root + "/tmp"):   # a course cloned under /tmp (as CI does) already made /tmp by its
        os.symlink(spec["scratch"], root + "/tmp")   # binds; TMPDIR points at the scratch folder either way
    os.makedirs(root + "/dev/shm")           # joblib and torch look for it; small and private
    mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=16m,mode=1777")
    os.makedirs(root + "/proc")
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=8m,mode=0755")


def become_worker(spec: dict) -> None:
    """In the forked child: confine this process for good, then exec the worker."""
    os.setsid()
    os.chroot(spec["root"])
    os.chdir(spec["scratch"])
    os.setgroups([])
    os.setresgid(spec["gid"], spec["gid"], spec["gid"])
    os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    for name, value in spec["rlimits"].items():
        resource.setrlimit(getattr(resource, "RLIMIT_" + name), (value, value))
    os.execve(spec["argv"][0], spec["argv"], spec["env"])


def main(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    for fd in (1, 2):                       # the grader's capped pipe, for this and the worker
        os.dup2(spec["output_fd"], fd)
    os.close(spec["output_fd"])
    try:
        build_root(spec)
    except OSError as e:
        print(f"sandbox: {e}", file=sys.stderr)
        return 70
    child = os.fork()
    if child == 0:
        try:
            become_worker(spec)
        finally:
            os._exit(71)
    while True:                      # PID 1: reap orphans until the worker itself is gone
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 72
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
