"""The cache folder: expanded copies of .xz/.gz inputs and SQLite exports of .nsys-rep reports.

Nothing in it is trusted: the folder must be ours and writable by no one else (created 0700), copies are written to
mkstemp files (O_EXCL|O_NOFOLLOW) and renamed into place, and each copy is checked against the size and head/tail
hash recorded when it was made before it is used; a copy that fails the check is dropped and made again. Partial
files of interrupted runs are removed on the next run, and every file in the folder counts toward the size cap
(only files with the names given here are ever removed).
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import stat
import tempfile
import time

from ..errors import BadInput

# Once the folder holds more than this the least recently used copies go. launch_bound x40 expands to 0.9 GB; the
# largest export in ../shared/external to 0.3 GB: 32 GiB keeps dozens of them.
CACHE_MAX_BYTES = 32 << 30
# Bytes hashed at each end of a file for its identity and for the check of a cached copy: SQLite's header page
# (its change counter and page count) and the last pages written. With 1 MiB, identity + check of launch_bound's
# copy took 3-11 ms of each run (2 cores, measured); 64 KiB: 0.2-0.7 ms. The size is checked exactly.
HASHED_BYTES = 64 << 10
# A partial file whose writer is gone (dead pid) or that is older than this is left over from an interrupted run.
# The longest writer is an `nsys export` (system/nsys.py EXPORT_TIMEOUT_S = 1800 s); twice that is surely dead.
STALE_PART_S = 3600
META = ".meta"                          # sidecar of each copy: its size and head/tail hash
# The names this module gives, and no others, are ever removed: the folder may be one the user named that holds
# other files too (they count toward the cap, and stay). A copy: KEY.unxz / KEY.ungz (expanded), NAME-KEY.sqlite
# (an .nsys-rep's export), each with its KEY...meta record; a part: that name, .part<pid>, mkstemp's random tail,
# and the .partial of an export under way (also the older forms KEY.unxz.part<pid> and NAME-KEY.part<pid>.sqlite).
COPY = re.compile(r"^(?:[0-9a-f]{20,24}\.un(?:xz|gz)|.+-[0-9a-f]{16,24}\.sqlite)(?:\.meta)?$")
PART = re.compile(r"^\.?(?P<base>.+?)\.part(?P<pid>\d+)(?P<rest>(?:-\w{8})?(?:\.sqlite)?(?:\.\w{8})?(?:\.partial)?)$")


def _part_pid(name: str) -> int | None:
    """The writer's pid when `name` is a partial file of ours, else None."""
    m = PART.match(name)
    if m and (COPY.match(m["base"]) or COPY.match(m["base"] + ".sqlite")):
        return int(m["pid"])
    return None


def _folder_problem(path: pathlib.Path) -> str | None:
    """Why `path` cannot be our private cache folder, or None when it can."""
    try:
        link = os.lstat(path)
        st = os.stat(path)
    except OSError as err:
        return f"cannot be used ({err.strerror})"
    me = os.geteuid()
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (me, 0):
        return f"is a symlink owned by uid {link.st_uid}, not by you"
    if not stat.S_ISDIR(st.st_mode):
        return "is a file, not a folder"
    if st.st_uid != me:
        return f"is owned by uid {st.st_uid}, not by you"
    if st.st_mode & 0o022:
        return f"is writable by other users (mode {stat.S_IMODE(st.st_mode):o}); chmod 700 it"
    if not os.access(path, os.W_OK | os.X_OK):
        return "is not writable"
    return None


def _make(path: pathlib.Path, tighten: bool = False) -> str | None:
    """Create `path` 0700 if missing; why it cannot be used, or None. `tighten`: a folder of ours that others may
    write to loses those permissions (the default folder, which versions before 0700 made 0775 under umask 002;
    its files are checked one by one anyway)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as err:
        return f"cannot be created ({err.strerror})"
    if tighten:
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
                os.chmod(path, 0o700)
        except OSError:
            pass
    return _folder_problem(path)


def cache_dir() -> pathlib.Path:
    """$NSYS_DOCTOR_CACHE, else $XDG_CACHE_HOME/nsys-doctor or ~/.cache/nsys-doctor, else /tmp/nsys-doctor-UID;
    BadInput naming the folder when the one to use is not private (another user's, or writable by others)."""
    configured = os.environ.get("NSYS_DOCTOR_CACHE")
    if configured:
        path = pathlib.Path(configured)
        problem = _make(path)
        if problem:
            raise BadInput(path, f"cache folder (NSYS_DOCTOR_CACHE) {problem}")
        return path
    default = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                           "nsys-doctor")
    if _make(default, tighten=True) is None:
        return default
    fallback = pathlib.Path(tempfile.gettempdir()) / f"nsys-doctor-{os.getuid()}"
    problem = _make(fallback, tighten=True)
    if problem:     # planted by someone else in a shared /tmp: never use it
        raise BadInput(fallback, f"cache folder {problem}; {default} cannot be used either: set NSYS_DOCTOR_CACHE "
                                 "to a folder of yours")
    return fallback


def _ends(path: os.PathLike | str, size: int) -> str:
    import hashlib      # here: 5 ms of import that only a compressed or .nsys-rep input needs
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(HASHED_BYTES))
        if size > HASHED_BYTES:
            f.seek(max(HASHED_BYTES, size - HASHED_BYTES))
            h.update(f.read(HASHED_BYTES))
    return h.hexdigest()


def identity(path: pathlib.Path) -> str:
    """A key for the file as it is now: device, inode, size, mtime and a hash of its head and tail (a file
    rewritten in place with its size and mtime kept still gets a new key)."""
    import hashlib
    st = os.stat(path)
    return hashlib.sha256(f"{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|"
                          f"{_ends(path, st.st_size)}".encode()).hexdigest()[:24]


def drop(path: pathlib.Path) -> None:
    """Remove a cached copy and its record, whatever they are (a planted folder included)."""
    import shutil
    for p in (path, path.with_name(path.name + META)):
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        except OSError:
            pass


def lookup(path: pathlib.Path) -> pathlib.Path | None:
    """`path` when it is a copy we made that is still whole (its size and head/tail hash as recorded), else None
    after dropping whatever is there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        drop(path)      # a record without its copy
        return None
    except OSError:
        st = None
    try:
        ok = st is not None and stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
        if ok:
            with open(path.with_name(path.name + META), encoding="utf-8") as f:
                meta = json.load(f)
            ok = meta.get("size") == st.st_size and meta.get("ends_sha256") == _ends(path, st.st_size)
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:
        drop(path)
        return None
    os.utime(path)      # recently used: the last to be evicted
    return path


def new_part(final: pathlib.Path) -> tuple[int, pathlib.Path]:
    """An open, new, private file (mkstemp: O_EXCL|O_NOFOLLOW, 0600) beside `final`, named with our pid so that a
    later run can tell a dead writer's leftover."""
    try:
        fd, name = tempfile.mkstemp(dir=final.parent, prefix=f"{final.name}.part{os.getpid()}-")
    except OSError as err:      # the folder's fault, not the input's
        raise BadInput(final.parent, f"cannot write in the cache folder ({err.strerror or err})") from None
    return fd, pathlib.Path(name)


def commit(part: pathlib.Path, final: pathlib.Path) -> pathlib.Path:
    """Record the size and head/tail hash of a finished copy, then rename it into place."""
    size = os.stat(part).st_size
    fd, meta = tempfile.mkstemp(dir=final.parent, prefix=f"{final.name}{META}.part{os.getpid()}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"size": size, "ends_sha256": _ends(part, size)}, f)
        os.replace(meta, final.with_name(final.name + META))
    except BaseException:
        pathlib.Path(meta).unlink(missing_ok=True)
        raise
    os.replace(part, final)
    return final


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True     # exists, not ours to signal
    return True


def tidy(cache: pathlib.Path, keep: pathlib.Path | None = None) -> None:
    """Remove our partial files of interrupted runs (dead writer, or older than STALE_PART_S), then our least
    recently used copies until everything in the folder holds CACHE_MAX_BYTES or less (never `keep`, never a live
    part, never a file of another name)."""
    now = time.time()
    try:
        names = os.listdir(cache)
    except OSError:
        return
    total, copies = 0, []
    for name in names:
        p = cache / name
        try:
            st = os.lstat(p)
        except OSError:
            continue
        pid = _part_pid(name)
        if pid is not None and ((pid != os.getpid() and not _alive(pid)) or now - st.st_mtime > STALE_PART_S):
            drop(p)
            continue
        total += st.st_size             # everything counts: copies, records, live parts, the user's own files
        if pid is None and COPY.match(name) and not name.endswith(META):
            copies.append((st.st_mtime, p))
    for _, p in sorted(copies, key=lambda x: x[0]):
        if total <= CACHE_MAX_BYTES:
            break
        if p == keep:
            continue
        freed = 0
        for x in (p, p.with_name(p.name + META)):
            try:
                freed += os.lstat(x).st_size
            except OSError:
                pass
        drop(p)
        total -= freed
