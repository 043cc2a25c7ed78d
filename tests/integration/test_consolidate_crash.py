#!/usr/bin/env python3
"""backupfs-restore -a consolidate killed (SIGKILL) at every file operation it makes, each of
those operations failing (EIO) instead, and SIGTERM at each rename, creating open, mkdir and
utimensat (held there by strace's delay_enter, then kill(2): stopped before the commit,
completed after it).

A clean run under strace -f lists the file-changing syscalls of the consolidation (creating
opens, writes into files, fsync, rename, unlink, rmdir, mkdir, utimensat, ...). Then, for each
one, a fresh copy of the saveset is consolidated under strace with
`-e inject=SYSCALL:signal=KILL:when=N` (strace counts per syscall and per tracee; every file
operation here is made by the main thread, which the test checks, so N is its N-th call).
After each kill:
- a backupfs mount shows either the old restore points or the new ones, never a mix, each
  byte-identical to its reference (the new ones whenever the journal was committed);
- backupfs-restore -a verify passes;
- a rerun of the same consolidation succeeds, and leaves exactly the files of the clean run
  (same bytes, same data-file mtimes), no staging directory, the same pending checkpoints.

Usage: test_consolidate_crash.py BUILD_DIR"""
import collections
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mountlib  # noqa: E402

MiB = 1 << 20
DISKS = ("vda", "vdb")
POINT = "virtnbdbackup.3"
OLD = [f"virtnbdbackup.{n}" for n in range(6)]
NEW = OLD[3:]
NO_LIBVIRT = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"
# The syscalls that change files, and the ones whose every call is a step of the
# consolidation. openat and write are also made for reading and logging: only the calls
# that create a file, and writes into files (not to stdout/stderr), are injected.
CHANGING = ("openat", "write", "pwrite64", "fsync", "fdatasync", "rename", "renameat",
            "renameat2", "unlink", "unlinkat", "rmdir", "mkdir", "mkdirat", "utimensat",
            "ftruncate", "fallocate", "link", "linkat")


def traced_env():
    """The environment of a run under strace: LeakSanitizer cannot stop the world in a process
    that is already traced (CI runs this test with ASan builds), so leak checks are off there;
    the untraced reruns keep them."""
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] += ":detect_leaks=0"
    return env


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def make_saveset(build_dir, directory, lz4):
    rng = random.Random(7)
    work = directory + ".work"
    os.makedirs(work)
    vda = mountlib.Disk(work, "vda", 2 * MiB)
    vdb = mountlib.Disk(work, "vdb", 1 * MiB)
    s = mountlib.CaptureSaveset(build_dir, directory, lz4)
    for d in (vda, vdb):
        mountlib.random_writes(d, rng, 6, max_len=100_000)
    s.full([vda, vdb])
    for i in range(1, 6):
        mountlib.random_writes(vda, rng, 2, max_len=80_000)
        mountlib.random_writes(vdb, rng, 1, max_len=50_000)
        vda.zero(512 * rng.randrange(0, (vda.size() - 70_000) // 512), 512 * rng.randint(1, 130))
        if i == 2:
            vdb.grow(3 * MiB // 2)
            vdb.write(MiB + 512, rng.randbytes(37 * 512))
        s.inc([vda, vdb])
    return s


def consolidate_argv(build_dir, directory):
    return [os.path.join(build_dir, "tools", "backupfs-restore"), "-a", "consolidate", "-i",
            directory, "-u", POINT, "-U", NO_LIBVIRT]


def files_state(directory):
    """path -> (sha256, size) of every file; the data files' mtimes too."""
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory)
            if os.path.isdir(path):
                out[rel] = "dir"
                continue
            mtime = os.stat(path).st_mtime_ns if name.endswith(".data") else None
            out[rel] = (mountlib.sha256(path), os.path.getsize(path), mtime)
    return out


def diff_states(a, b):
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


class Step:
    def __init__(self, syscall, n, line):
        self.syscall, self.n, self.line = syscall, n, line

    def __str__(self):
        return f"{self.syscall} #{self.n}: {self.line[:110]}"


def traced_steps(build_dir, directory, log):
    """Runs the consolidation under strace -f; returns the main thread's steps to kill at, the
    trace lines of each other thread's calls by syscall, and the clean run's output."""
    argv = ["strace", "-f", "-qq", "-y", "-o", log, "-e", "trace=" + ",".join(CHANGING),
            *consolidate_argv(build_dir, directory)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=traced_env())
    expect(r.returncode == 0, f"traced clean run exited {r.returncode}:\n{r.stderr}")
    counts = collections.Counter()  # (pid, syscall) -> calls so far
    steps, main = [], None
    others = collections.defaultdict(lambda: collections.defaultdict(list))  # pid, call -> lines
    with open(log) as f:
        for number, line in enumerate(f):
            m = re.match(r"(\d+)\s+([a-z0-9_]+)\((.*)", line)
            if not m:
                continue  # "<... resumed>", exits, signals
            pid, call, args = int(m.group(1)), m.group(2), m.group(3)
            main = pid if main is None else main
            counts[(pid, call)] += 1
            if pid != main:
                others[pid][call].append(number)
                continue
            if call == "openat" and "O_CREAT" not in args:
                continue
            if directory not in args:
                continue  # not on the saveset: stderr, pipes, a sanitizer's log directory
            steps.append(Step(call, counts[(pid, call)], line.strip()))
            steps[-1].line_number = number
    return steps, others, r


def check_after_kill(build_dir, s, directory, step):
    """The state a kill left: old or new points, never a mix, each exact; verify passes."""
    committed = os.path.exists(os.path.join(directory, ".backupfs-consolidate", "journal.json"))
    with mountlib.mounted(build_dir, directory) as (_, mnt):
        shown = sorted(p for p in os.listdir(mnt) if p != "latest")
        expect(shown in (sorted(OLD), sorted(NEW)),
               f"killed at {step}: the mount shows {shown}: a mix of old and new")
        expect(not committed or shown == sorted(NEW),
               f"killed at {step}: a committed journal, yet the mount shows the old points")
        for p in shown:
            for disk in DISKS:
                image = os.path.join(mnt, p, f"{disk}.raw")
                expect(mountlib.same_file(image, s.ref(p, disk)),
                       f"killed at {step}: {image} differs from its reference")
        expect(os.readlink(os.path.join(mnt, "latest")) == OLD[-1],
               f"killed at {step}: latest is not {OLD[-1]}")
    v = subprocess.run([os.path.join(build_dir, "tools", "backupfs-restore"), "-a", "verify",
                        "-i", directory], capture_output=True, text=True, timeout=120)
    expect(v.returncode == 0 and " 0 problems" in v.stdout,
           f"killed at {step}: verify exited {v.returncode}:\n{v.stdout}{v.stderr}")
    return "new" if shown == sorted(NEW) else "old"


def sweep(build_dir, tmp, lz4, steps_filter=None, fault="signal=KILL"):
    name = f"crash-{lz4 or 'plain'}-{fault.split('=')[1]}"
    s = make_saveset(build_dir, os.path.join(tmp, name), lz4)
    pristine = files_state(s.dir)
    traced = os.path.join(tmp, f"{name}-traced")
    shutil.copytree(s.dir, traced)
    steps, others, clean = traced_steps(build_dir, traced, os.path.join(tmp, f"{name}.strace"))
    if steps_filter:
        steps = steps_filter(steps)
    # strace counts per tracee: another thread's N-th call of an injected syscall (libvirt's
    # threads; a sanitizer's probes write to pipes) must not come before the main thread's.
    for st in steps:
        for pid, calls in others.items():
            lines = calls.get(st.syscall, [])
            expect(len(lines) < st.n or lines[st.n - 1] > st.line_number,
                   f"thread {pid} makes its {st.syscall} #{st.n} before the main thread's step "
                   f"{st}: when={st.n} would be ambiguous")
    want = files_state(traced)
    expect(not os.path.exists(os.path.join(traced, ".backupfs-consolidate")), "staging left")
    with mountlib.mounted(build_dir, traced) as (_, mnt):  # the clean result is right
        expect(sorted(p for p in os.listdir(mnt) if p != "latest") == NEW, "clean run: points")
        for p in NEW:
            for disk in DISKS:
                expect(mountlib.same_file(os.path.join(mnt, p, f"{disk}.raw"), s.ref(p, disk)),
                       f"clean run: {p}/{disk}.raw differs")
    kinds = collections.Counter(st.syscall for st in steps)
    print(f"{name}: {len(steps)} steps to kill at: {dict(kinds)}", flush=True)
    seen = collections.Counter()
    start = time.monotonic()
    for step in steps:
        work = os.path.join(tmp, f"{name}-kill")
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(s.dir, work)  # copy2: the mtimes, which the new fulls carry, are kept
        argv = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={step.syscall}",
                "-e", f"inject={step.syscall}:{fault}:when={step.n}",
                *consolidate_argv(build_dir, work)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=traced_env())
        if fault == "signal=KILL":
            expect(r.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL),
                   f"{step}: the consolidation was not killed (exit {r.returncode}):\n{r.stderr}")
        else:  # a failed file operation: exit 1, a message naming the file
            expect(r.returncode == 1 and work in r.stderr,
                   f"{step} failing with {fault}: exit {r.returncode}, want 1 and a message "
                   f"naming the file:\n{r.stdout}{r.stderr}")
        state = check_after_kill(build_dir, s, work, step)
        seen[state] += 1
        if fault != "signal=KILL" and state == "old":
            expect(not os.path.exists(os.path.join(work, ".backupfs-consolidate")),
                   f"{step} failing with {fault}: the staging directory is left")
        # A dry run finishes nothing: whatever the kill left stays as it is.
        before = files_state(work)
        dry = subprocess.run(consolidate_argv(build_dir, work) + ["--dry-run"],
                             capture_output=True, text=True, timeout=120)
        expect(dry.returncode == 0 and files_state(work) == before,
               f"killed at {step}: --dry-run exited {dry.returncode} or changed "
               f"{diff_states(files_state(work), before)}:\n{dry.stderr}")
        rerun = subprocess.run(consolidate_argv(build_dir, work), capture_output=True, text=True,
                               timeout=120)
        expect(rerun.returncode == 0,
               f"killed at {step}: the rerun exited {rerun.returncode}:\n{rerun.stderr}")
        expect(state == "old" or "interrupted before its commit" not in rerun.stderr,
               f"killed at {step} after the commit, yet the rerun says it was before:\n"
               f"{rerun.stderr}")
        got = files_state(work)
        expect(got == want, f"killed at {step}, then rerun: files differ from the clean run's: "
                            f"{diff_states(got, want)}")
        expect(files_state(s.dir) == pristine, "the source saveset changed")
    shutil.rmtree(os.path.join(tmp, f"{name}-kill"), ignore_errors=True)
    print(f"ok: {name}: killed at {len(steps)} steps ({dict(seen)} states seen) in "
          f"{time.monotonic() - start:.0f} s; every rerun ends as the clean run", flush=True)
    return clean


SYSCALL_NR = {"rename": 82, "fsync": 74, "unlink": 87, "openat": 257, "mkdir": 83,
              "utimensat": 280, "rmdir": 84, "write": 1}


def tracee_of(strace, program):
    """The pid of PROGRAM that strace started, once it runs it (strace forks a probe first)."""
    children = f"/proc/{strace.pid}/task/{strace.pid}/children"
    pid = []

    def started():
        try:
            for child in open(children).read().split():
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[0] == program.encode():
                        pid[:] = [int(child)]
                        return True
        except OSError:
            pass  # not started yet, or a probe that just ended
        return strace.poll() is not None

    mountlib.wait_for(started, "strace to start the consolidation")
    return pid[0] if pid else None


def held_at(pid, nr):
    """True once the main thread has sat in syscall NR for 100 ms (strace delays it there)."""
    def current():
        try:
            with open(f"/proc/{pid}/syscall") as f:
                return f.read().split()[0]
        except (OSError, IndexError):
            return "gone"
    deadline = time.monotonic() + 20
    since = None
    while time.monotonic() < deadline:
        now = current()
        if now == "gone":
            return False
        if now == str(nr):
            since = since or time.monotonic()
            if time.monotonic() - since >= 0.1:
                return True
        else:
            since = None
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} never stopped in syscall {nr}")


def sweep_sigterm(build_dir, tmp):
    """SIGTERM (process-directed, as kill(1) sends it) while strace holds the consolidation at a
    step: before the commit it stops, exit 1, the saveset as it was and no staging directory;
    from the commit on it completes (exit 0). Either way, mounts exact and a rerun ends as the
    clean run."""
    name = "sigterm-plain"
    s = make_saveset(build_dir, os.path.join(tmp, name), None)
    traced = os.path.join(tmp, f"{name}-traced")
    shutil.copytree(s.dir, traced)
    steps, _, _ = traced_steps(build_dir, traced, os.path.join(tmp, f"{name}.strace"))
    want = files_state(traced)
    steps = [st for st in steps if st.syscall in ("rename", "mkdir", "utimensat", "openat")]
    seen = collections.Counter()
    start = time.monotonic()
    for step in steps:
        work = os.path.join(tmp, f"{name}-run")
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(s.dir, work)
        argv = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={step.syscall}",
                "-e", f"inject={step.syscall}:delay_enter=600000:when={step.n}",
                *consolidate_argv(build_dir, work)]
        strace = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=traced_env())
        try:
            pid = tracee_of(strace, consolidate_argv(build_dir, work)[0])
            expect(pid is not None and held_at(pid, SYSCALL_NR[step.syscall]),
                   f"{step}: the consolidation ended before reaching it")
            os.kill(pid, signal.SIGTERM)
            out, err = strace.communicate(timeout=120)
        finally:
            if strace.poll() is None:
                strace.kill()
                strace.wait()
        state = check_after_kill(build_dir, s, work, step)
        seen[(strace.returncode, state)] += 1
        expect((strace.returncode, state) in ((0, "new"), (1, "old")),
               f"SIGTERM at {step}: exit {strace.returncode} with the {state} points:\n{out}{err}")
        if state == "old":
            expect("stopped" in err or "signal" in err, f"SIGTERM at {step}: {err}")
            expect(not os.path.exists(os.path.join(work, ".backupfs-consolidate")),
                   f"SIGTERM at {step}: the staging directory is left")
        rerun = subprocess.run(consolidate_argv(build_dir, work), capture_output=True, text=True,
                               timeout=120)
        expect(rerun.returncode == 0, f"SIGTERM at {step}: the rerun failed:\n{rerun.stderr}")
        got = files_state(work)
        expect(got == want, f"SIGTERM at {step}, then rerun: files differ from the clean run's: "
                            f"{diff_states(got, want)}")
    shutil.rmtree(os.path.join(tmp, f"{name}-run"), ignore_errors=True)
    print(f"ok: {name}: SIGTERM at {len(steps)} steps ((exit, state): {dict(seen)}) in "
          f"{time.monotonic() - start:.0f} s; every rerun ends as the clean run", flush=True)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    mountlib.require_fuse()
    if shutil.which("strace") is None:
        sys.exit("strace missing: scripts/install-deps.sh installs it")
    build_dir = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="bfs-consolidate-crash-", dir="/var/tmp")
    start = time.monotonic()
    try:
        sweep(build_dir, tmp, None)
        # lz4: compressed by worker threads; every step after the fulls' writes (renames,
        # unlinks, fsyncs: the commit and the roll forward) and every creating open.
        sweep(build_dir, tmp, "2",
              lambda steps: [st for st in steps if st.syscall not in ("write", "pwrite64")])
        # Each file operation failing instead (EIO): refused with a message, old or new
        # points, and a rerun ends as the clean run.
        sweep(build_dir, tmp, None, fault="error=EIO")
        sweep_sigterm(build_dir, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"PASS: consolidation killed at every file operation ({time.monotonic() - start:.0f} s)")


if __name__ == "__main__":
    main()
