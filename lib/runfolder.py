"""The --out folder of an entry point: one process at a time, one owner, no stale
temporary files.

- Lock: `open_run_folder` takes an exclusive `flock` on OUT/.lock for the life of the
  process (the kernel drops it when the process dies, kill -9 included), so a second
  process on the same folder stops with one line instead of interleaving checkpoints
  and metrics. Processes of the same run (train.processes, torchrun ranks other
  than 0) do not take it again.
- Owner: config.yaml starts with a comment naming the entry point that wrote it; an
  entry point refuses a folder another one owns (e.g. test_pixel_face.py --out on a
  training folder would overwrite the training run's config.yaml).
- Temporaries: files written as temporary + rename (checkpoints, configs, caches)
  leave their temporary behind when the process is killed. Under the lock they are
  stale: those whose name carries a process id are removed when that process is gone,
  the others (no pid) when they lie outside OUT/cache (a cache may be shared by
  several runs).
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import time

from lib.config import Config, save_config
from lib.errors import UserError

CONFIG_NAME = "config.yaml"
LOCK_NAME = ".lock"
HEADER = "# written by {tool}: the resolved config (schema defaults <- --config <- overrides)"
_LOCK_ENV = "DFMVR_RUN_LOCK"  # absolute --out whose lock a parent process holds
_held: dict[str, int] = {}  # absolute --out -> descriptor of the lock this process holds
# `<name>.tmp<pid>`, `<name>.<pid>.tmp`, `<name>.<pid>.<random>.tmp` carry a pid;
# `<name>.tmp`, `<name>.tmp.<ext>`, `<name>.<random>.tmp` do not.
_TEMPORARY = re.compile(r"(\.tmp(?P<a>\d+)|\.(?P<b>\d+)(\.[^.]+)?\.tmp|\.tmp(\.\w+)?|\.[0-9a-z_]+\.tmp)$")


def open_run_folder(out: str, tool: str) -> None:
    """Create `out`, lock it for this process and remove stale temporaries.

    UserError when `out` is a file, cannot be created, is locked by another process
    or belongs to another entry point (see `claim_config`).
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out}: is a file, not a folder; give a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out {out}: cannot create the folder ({err.strerror})") from None
    _lock(out, tool)
    check_owner(out, tool)
    remove_stale_temporaries(out)


def _lock(out: str, tool: str) -> None:
    key = os.path.abspath(out)
    rank = os.environ.get("RANK", "0")
    if key in _held or os.environ.get(_LOCK_ENV) == key or rank != "0":
        return  # held already by this process, by the parent (train.processes), or by rank 0
    path = os.path.join(out, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise UserError(
            f"--out {out}: in use by {holder}; wait for it to finish or give another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{tool} (pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
    _held[key] = fd
    os.environ[_LOCK_ENV] = key  # inherited by the processes this one starts


def owner(out: str) -> str | None:
    """The entry point that owns `out` (config.yaml's first line), 'train.py' for an
    older training folder (checkpoints/ but no header), None for a fresh folder."""
    path = os.path.join(out, CONFIG_NAME)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline()
    except FileNotFoundError:
        return "train.py" if os.path.isdir(os.path.join(out, "checkpoints")) else None
    match = re.match(r"# written by (\S+):", first)
    if match:
        return match.group(1)
    return "train.py" if os.path.isdir(os.path.join(out, "checkpoints")) else None


def check_owner(out: str, tool: str) -> None:
    """UserError when another entry point's results are in `out`."""
    found = owner(out)
    if found is not None and found != tool:
        raise UserError(
            f"--out {out}: holds the results of {found} ({CONFIG_NAME}); give {tool} its own --out "
            f"(e.g. --out {os.path.join(out, tool.removesuffix('.py'))})"
        )


def write_config(out: str, cfg: Config, tool: str) -> None:
    """OUT/config.yaml (atomic), headed by the owner line."""
    save_config(cfg, os.path.join(out, CONFIG_NAME), header=HEADER.format(tool=tool))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(folder: str, shared_below: str | None = "cache") -> list[str]:
    """Remove the temporaries of killed writers under `folder`; returns their paths.

    A temporary whose name carries a pid is stale when that process is gone (and it is
    not this one); one without a pid is stale unless it lies below `folder/shared_below`
    (None: the whole folder may be shared, so only those with a pid are judged).
    """
    removed = []
    shared = os.path.abspath(folder if shared_below is None else os.path.join(folder, shared_below))
    for root, dirs, files in os.walk(folder):
        here = os.path.abspath(root)
        inside_shared = here == shared or here.startswith(shared + os.sep)
        for name in list(dirs) + files:
            match = _TEMPORARY.search(name)
            if not match:
                continue
            pid = match.group("a") or match.group("b")
            if pid is not None:
                stale = int(pid) != os.getpid() and not _pid_alive(int(pid))
            else:
                stale = not inside_shared
            if not stale:
                continue
            path = os.path.join(root, name)
            if name in dirs:
                dirs.remove(name)
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            removed.append(path)
    return removed


def atomic_write_text(path: str, text: str) -> None:
    """Replace `path` by `text` (UTF-8) through a temporary file carrying this pid and
    a rename: readers, kills and full disks see the old file or the new one, never a
    mix. The temporary is removed when the write fails."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
