"""Run a student's worker process confined as far as this machine allows, and kill all of it after.

Two modes, chosen once per run by `containment()`, which tries the strong one for real:

* **namespaces** (root, util-linux `unshare` and `setpriv`): exercises/_launcher.py builds a PID
  and mount namespace whose only files are read-only system and Python folders and a private
  tmpfs scratch folder with the student's file; the worker runs there under an unused uid with
  resource limits. Killing the namespace's PID 1 kills every process the student started.
* **limits only** (anything else): the worker runs as the grader's user in a new session, with
  the same resource limits, in a scratch folder; the grader's files stay readable and writable
  to it, and a process that leaves its session can outlive the file. A warning says so.

In both, stdout and stderr go to a pipe the grader drains and caps (`Output`), and requests and
replies travel on two private pipes.
"""
from __future__ import annotations

import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from exercises import _wire

HERE = Path(__file__).resolve().parent
RUNTIME_FILES = ("_worker.py", "_wire.py")     # all the grader code the student's process gets
SCRATCH = "/sandbox"
MEMORY_MB = 2048          # address space: numpy + pandas + torch need about 1.2 GB of it
NPROC = 64                # processes and threads of the sandbox's uid
FSIZE_MB = 16
SCRATCH_MB = 64
NOFILE = 256
OUTPUT_CAP = 16 * 1024    # bytes of student output kept (the end of it)
TEMP_PREFIX = "relcourse-grade-"
UID_BASE = 200_000        # sandboxes run as UID_BASE + n: uids nobody on the host uses
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/sbin")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf",
                "/etc/passwd", "/etc/group", "/etc/hosts")
DEV_NODES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


@dataclass(frozen=True)
class Containment:
    namespaces: bool
    reason: str = ""           # why the namespace mode is off

    def summary(self) -> str:
        yes = lambda b: "yes" if b else "no"  # noqa: E731
        ns = self.namespaces
        line = (f"containment: memory limit: yes ({MEMORY_MB} MB), process limit: {yes(ns)}, file-size limit: yes, "
                f"CPU limit: yes, PID namespace: {yes(ns)}, hidden files: {yes(ns)}, uid drop: {yes(ns)}, "
                f"no network: {yes(ns)}, output captured: yes")
        if not ns:
            line += (f"\nWARNING: student code can read and write this machine's files as you, and processes it "
                     f"detaches can outlive the grader ({self.reason}). For a graded class, run as root on "
                     "Linux with util-linux (unshare, setpriv), or in a throw-away container or VM.")
        return line


def limits(cpu_seconds: int, nproc: bool) -> dict[str, int]:
    out = {"AS": MEMORY_MB * 2**20, "FSIZE": FSIZE_MB * 2**20, "CPU": int(cpu_seconds),
           "CORE": 0, "NOFILE": NOFILE}
    if nproc:
        out["NPROC"] = NPROC
    return out


class Output:
    """Drains a pipe of student output in a thread, keeping only its last OUTPUT_CAP bytes."""

    def __init__(self, fd: int):
        self.fd, self.data, self.total = fd, bytearray(), 0
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        try:
            while chunk := os.read(self.fd, 65536):
                self.total += len(chunk)
                self.data += chunk
                del self.data[:-OUTPUT_CAP]
        except OSError:
            pass
        finally:
            os.close(self.fd)

    def text(self) -> str:
        """The kept output, decoded and cleaned of control and escape characters."""
        self.thread.join(timeout=0.5)
        lines = bytes(self.data).decode("utf-8", errors="replace").splitlines()
        cut = f"[... {self.total - len(self.data)} bytes cut ...] " if self.total > len(self.data) else ""
        return cut + " | ".join(_wire.clean(line, 300) for line in lines[-20:] if line.strip())


class _Uids:
    """Distinct uids for the sandboxes running at the same time (RLIMIT_NPROC counts per uid)."""

    def __init__(self):
        self.lock, self.free = threading.Lock(), []
        self.next = UID_BASE + (os.getpid() % 5000) * 64

    def take(self) -> int:
        with self.lock:
            if self.free:
                return self.free.pop()
            self.next += 1
            return self.next

    def give(self, uid: int) -> None:
        with self.lock:
            self.free.append(uid)


UIDS = _Uids()


class Confined:
    """One running worker: `send` a request, `receive` a reply line by a deadline, `kill` it all."""

    def __init__(self, student_source: bytes, cpu_seconds: int, mode: Containment, hide: tuple[str, ...] = ()):
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
        files = self.tmp / "files"
        files.mkdir()
        for name in RUNTIME_FILES:
            shutil.copyfile(HERE / name, files / name)
        (files / "starter.py").write_bytes(student_source)
        req_r, self.req_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        out_r, out_w = os.pipe()
        self.uid = UIDS.take() if mode.namespaces else None
        self.buffer, self.proc = b"", None
        try:
            if mode.namespaces:
                self.student_path = f"{SCRATCH}/starter.py"
                cmd = self._namespace_command(files, req_r, rep_w, out_w, cpu_seconds, hide)
                preexec = None
            else:
                self.student_path = str(files / "starter.py")
                cmd = [sys.executable, "-E", "-s", "-B", str(files / "_worker.py"), str(req_r), str(rep_w)]
                rl = limits(cpu_seconds, nproc=False)
                preexec = lambda: [resource.setrlimit(getattr(resource, "RLIMIT_" + k), (v, v))  # noqa: E731
                                   for k, v in rl.items()]
            # In the namespace mode the launcher puts out_w on the worker's stdout and stderr; what
            # setpriv and unshare themselves say goes to tools.log (read when the probe fails).
            tools = open(self.tmp / "tools.log", "wb") if mode.namespaces else out_w
            try:
                self.proc = subprocess.Popen(cmd, cwd=files, env=_worker_env(str(files)), stdin=subprocess.DEVNULL,
                                             stdout=tools, stderr=tools, pass_fds=(req_r, rep_w, out_w),
                                             start_new_session=True, preexec_fn=preexec)
            finally:
                if mode.namespaces:
                    tools.close()
        finally:
            for fd in (req_r, rep_w, out_w):
                os.close(fd)
        self.output = Output(out_r)

    def _namespace_command(self, files: Path, req_r: int, rep_w: int, out_w: int, cpu_seconds: int,
                           hide: tuple[str, ...]) -> list[str]:
        import json
        python_dirs = {sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent.parent)}
        spec = {"root": str(self.tmp / "root"), "scratch": SCRATCH, "scratch_mb": SCRATCH_MB,
                "ro_binds": [*SYSTEM_DIRS, *SYSTEM_FILES, *sorted(python_dirs)], "dev": list(DEV_NODES),
                "hide": list(hide),
                "files": {n: str(files / n) for n in (*RUNTIME_FILES, "starter.py")},
                "uid": self.uid, "gid": self.uid, "rlimits": limits(cpu_seconds, nproc=True),
                "argv": [sys.executable, "-E", "-s", "-B", f"{SCRATCH}/_worker.py", str(req_r), str(rep_w)],
                "env": _worker_env(SCRATCH), "output_fd": out_w}
        (self.tmp / "root").mkdir()
        (self.tmp / "spec.json").write_text(json.dumps(spec))
        return ["setpriv", "--pdeathsig", "KILL", "unshare", "--mount", "--pid", "--net", "--ipc", "--uts",
                "--fork", "--kill-child",
                sys.executable, "-I", str(HERE / "_launcher.py"), str(self.tmp / "spec.json")]

    def send(self, message: dict) -> bool:
        """Write a request; False if the worker is gone."""
        data = memoryview(_wire.dumps(message))   # a view: each partial write skips ahead, no copy
        try:
            while data:
                data = data[os.write(self.req_w, data):]
            return True
        except (BrokenPipeError, OSError):
            return False

    def receive(self, deadline: float) -> bytes | str:
        """The next reply line, or why there is none: "deadline", "closed" (the worker's end of the
        pipe closed: it died) or "too long"."""
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return "deadline"
            if len(self.buffer) > _wire.MAX_LINE_BYTES:
                return "too long"
            ready, _, _ = select.select([self.rep_r], [], [], left)
            if not ready:
                return "deadline"
            chunk = os.read(self.rep_r, 1 << 20)
            if not chunk:
                return "closed"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def wait(self, seconds: float) -> int | None:
        """The exit status once the worker has ended by itself (None if it is still running)."""
        try:
            return self.proc.wait(timeout=seconds) if self.proc is not None else None
        except subprocess.TimeoutExpired:
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int | None:
        """Kill the worker and everything it started; returns the exit code. Idempotent."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        children = _children(proc.pid)
        for pid in children:        # the namespace's PID 1: its exit ends every process in the namespace
            _signal(pid, signal.SIGKILL)
        try:                        # unshare then reaps it and exits: no zombie is left to the system
            code = proc.wait(timeout=5) if children and self.uid is not None else None
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            _signal(-proc.pid, signal.SIGKILL)
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                code = None
        for fd in (self.req_w, self.rep_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.uid is not None:
            UIDS.give(self.uid)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return code


_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {}


def answer_key_paths(forbidden: tuple[str, ...]) -> tuple[str, ...]:
    """The files or folders of the installed modules an exercise forbids (e.g. sklearn/metrics/),
    for the sandbox to cover: a name built at run time then finds nothing."""
    import importlib.util
    with _MODE_LOCK:
        if forbidden not in _KEYS:
            paths = []
            for name in forbidden:
                try:
                    spec = importlib.util.find_spec(name)
                except (ImportError, ValueError):
                    spec = None
                if spec is not None and spec.submodule_search_locations:   # str: a test may have put a Path
                    paths += [str(p) for p in spec.submodule_search_locations]  # into a package's __path__
                elif spec is not None and spec.origin and os.path.isfile(spec.origin):
                    paths.append(str(spec.origin))
            _KEYS[forbidden] = tuple(sorted(set(paths)))
        return _KEYS[forbidden]


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _worker_env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "", "PYTHONHASHSEED": "0"}


_MODE: Containment | None = None
_MODE_LOCK = threading.Lock()


def containment() -> Containment:
    """Which mode this machine allows, found once by starting a real sandbox and asking it."""
    global _MODE
    with _MODE_LOCK:
        if _MODE is None:
            sweep_stale_temp()
            _MODE = _probe()
        return _MODE


def sweep_stale_temp() -> None:
    """Remove the temp folders of graders that were killed before they could (their pid is gone)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*-*"):
        try:
            pid = int(folder.name[len(TEMP_PREFIX):].split("-")[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass


def _probe() -> Containment:
    if os.environ.get("RELCOURSE_GRADE_NO_SANDBOX"):
        return Containment(False, "RELCOURSE_GRADE_NO_SANDBOX is set")
    if not sys.platform.startswith("linux"):
        return Containment(False, "not Linux")
    if os.geteuid() != 0:
        return Containment(False, "the grader does not run as root")
    missing = [t for t in ("unshare", "setpriv") if shutil.which(t) is None]
    if missing:
        return Containment(False, f"{' and '.join(missing)} not found")
    probe = (b"import os, sys\nREPO = %r\n"
             b"def report(): return {'uid': os.getuid(), 'pid1': os.getpid() == 1 or os.getppid() == 1,"
             b" 'repo_hidden': not os.path.exists(REPO)}\n" % str(HERE).encode())
    box = Confined(probe, 30, Containment(True))
    try:
        ok = box.send({"op": "load", "id": "probe", "path": box.student_path, "module": "probe", "timeout": 30})
        ok = ok and box.send({"op": "call", "id": "probe2", "func": "report", "args": [], "kwargs": {},
                              "how": "plain", "budget": 10})
        replies = [box.receive(time.monotonic() + 60) for _ in range(2)] if ok else []
        seen = (_wire.decode(_wire.loads(replies[1])["value"])
                if len(replies) == 2 and isinstance(replies[1], bytes) else None)
    except (_wire.WireError, KeyError, TypeError):
        seen = None
    finally:
        tools = (box.tmp / "tools.log").read_bytes()[-400:].decode(errors="replace") \
            if (box.tmp / "tools.log").exists() else ""
        box.kill()
        output = _wire.clean((box.output.text() + " " + tools).strip(), 400)
    if not isinstance(seen, dict) or not (seen.get("uid") == box.uid and seen.get("pid1") and seen.get("repo_hidden")):
        return Containment(False, f"the namespace sandbox did not start: {output or seen or 'no reply'}")
    return Containment(True)
