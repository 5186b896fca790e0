"""Issue 12, outputs and the cache: no command destroys a file of the user's, and nothing in the cache folder is
trusted. Each test is one attempt of a hostile or unlucky user, run as a user would (cli.main in-process, or the
console script as a subprocess where the real stdout/exit path matters). After each one the inputs are
byte-identical (hashed), the exit code is 0 or 2 with one line naming the file, and nothing is left behind beside
the input or in the cache (NSYS_DOCTOR_CACHE points into tmp_path).

Inputs are real exports: tests/data/demo.sqlite.xz (1.5 MB expanded) and ex_sync_before/after. A .nsys-rep needs
nsys to export it; a stand-in nsys (a shell script that copies the demo export where `nsys export -o` says, and
logs each call) makes those attempts fast and deterministic; tests/read/test_nsys_rep.py uses the real one.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import DATA, expand

DEMO_XZ = DATA / "demo.sqlite.xz"
BEFORE_XZ, AFTER_XZ = DATA / "ex_sync_before.sqlite.xz", DATA / "ex_sync_after.sqlite.xz"
CONSOLE = "from nsys_doctor.cli import console_main; console_main()"
OTHER_UID = 65534       # nobody


def sha(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("NSYS_DOCTOR_CACHE", str(folder))
    return folder


@pytest.fixture
def work(tmp_path, cache):
    """A folder of the user's with a plain copy of the demo export (p.sqlite) and two small .xz exports."""
    d = tmp_path / "work"
    d.mkdir()
    shutil.copyfile(expand(DEMO_XZ), d / "p.sqlite")
    shutil.copyfile(BEFORE_XZ, d / "before.sqlite.xz")
    shutil.copyfile(AFTER_XZ, d / "after.sqlite.xz")
    return d


def main(*argv) -> subprocess.CompletedProcess:
    from nsys_doctor.cli import main as cli_main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main([str(a) for a in argv])
    return subprocess.CompletedProcess(argv, rc, out.getvalue(), err.getvalue())


def console(*argv, cwd=None, stdout=subprocess.PIPE, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CONSOLE, *map(str, argv)], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, cwd=cwd, timeout=120, env={**os.environ, **(env or {})})


def refused(res, path, *words):
    """Exit 2, one line on stderr naming `path`, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nsys-doctor: {path}"), res.stderr
    for w in words:
        assert w in lines[0], lines[0]


def snapshot(folder: pathlib.Path) -> dict[str, str]:
    return {p.name: sha(p) if p.is_file() and not p.is_symlink() else "link/dir"
            for p in sorted(folder.iterdir())}


def only_copies(cache: pathlib.Path) -> list[str]:
    """What the cache holds besides finished copies and their records: must be nothing."""
    return [p.name for p in cache.iterdir() if not p.name.endswith((".unxz", ".ungz", ".sqlite", ".meta"))] \
        if cache.exists() else []


# --------------------------------------------------------------------------------- an output that is an input
@pytest.mark.parametrize("argv", [
    ("analyze", "{p}", "-o", "{p}"),
    ("analyze", "{p}", "--format", "json", "-o", "{p}"),
    ("analyze", "{p}", "--html", "{p}"),
    ("export", "{p}", "--perfetto", "{p}"),
    ("export", "{p}", "--html", "{p}"),
    ("check", "{p}", "--max-p99-ms", "100", "--junit", "{p}"),
    ("check", "{before}", "--baseline", "{p}", "--junit", "{p}"),
    ("diff", "{before}", "{p}", "-o", "{p}"),
    ("diff", "{p}", "{before}", "--format", "json", "-o", "{p}"),
    ("analyze", "{p}", "{before}", "-o", "{p}"),                 # fleet mode
    ("analyze", "{p}", "{before}", "--format", "json", "-o", "{before}"),
])
def test_output_that_is_an_input_is_refused(work, cache, argv):
    """Before: exit 0 and the profile was replaced by a 5 KB report."""
    names = {"p": work / "p.sqlite", "before": work / "before.sqlite.xz"}
    target = pathlib.Path(argv[argv.index(next(a for a in argv if a in ("-o", "--html", "--perfetto", "--junit")))
                               + 1].format(**names))
    before = snapshot(work)
    res = main(*(a.format(**names) for a in argv))
    refused(res, target, "is an input")
    assert snapshot(work) == before
    assert only_copies(cache) == []


def test_output_symlink_or_hard_link_to_the_input_is_refused(work):
    p = work / "p.sqlite"
    (work / "link.json").symlink_to(p.name)
    os.link(p, work / "hard.json")
    before = snapshot(work)
    refused(main("analyze", p, "--format", "json", "-o", work / "link.json"), work / "link.json", "is an input")
    refused(main("analyze", p, "--html", work / "hard.json"), work / "hard.json", "is an input")
    refused(main("analyze", work / "link.json", "-o", work / "hard.json"), work / "hard.json", "is an input")
    assert snapshot(work) == before and sha(p) == sha(expand(DEMO_XZ))


def test_two_outputs_with_one_name_are_refused(work):
    before = snapshot(work)
    refused(main("analyze", work / "p.sqlite", "-o", work / "r.out", "--html", work / "r.out"), work / "r.out",
            "two outputs")
    refused(main("export", work / "p.sqlite", "--perfetto", work / "t", "--html", work / "t"), work / "t",
            "two outputs")
    assert snapshot(work) == before


# ------------------------------------------------------------------------- an existing file that is not ours
@pytest.mark.parametrize("argv,kind", [
    (("analyze", "{p}", "-o", "{t}"), "report"),
    (("analyze", "{p}", "--html", "{t}"), "HTML report"),
    (("export", "{p}", "--perfetto", "{t}"), "Perfetto trace"),
    (("check", "{p}", "--max-p99-ms", "100", "--junit", "{t}"), "JUnit XML"),
    (("diff", "{p}", "{p}", "-o", "{t}"), "diff"),
    (("analyze", "{p}", "{p}", "-o", "{t}"), "fleet summary"),
])
def test_existing_file_that_is_not_a_previous_output_is_kept(work, argv, kind):
    """A user's notes, and the tool's own output of another kind, are never overwritten."""
    notes = work / "notes.txt"
    notes.write_text("my notes, not a report\n")
    res = main(*(a.format(p=work / "p.sqlite", t=notes) for a in argv))
    refused(res, notes, f"not a {kind}" if kind[0] not in "aeiouH" else f"not an {kind}", "refusing")
    assert notes.read_text() == "my notes, not a report\n"
    other = work / "other.out"      # a previous output of another kind: not this kind's to replace
    main("export", work / "p.sqlite", "--perfetto" if kind != "Perfetto trace" else "--html", other)
    kept = sha(other)
    refused(main(*(a.format(p=work / "p.sqlite", t=other) for a in argv)), other, "refusing")
    assert sha(other) == kept


def test_previous_outputs_of_the_same_kind_are_replaced_whole(work):
    """What may be replaced, is, in one rename: same kind, a symlink to a previous report stays a symlink, and the
    mode of the file it replaces is kept. Nothing else is left in the folder."""
    p = work / "p.sqlite"
    outs = {"r.json": ("analyze", p, "--format", "json", "-o"), "r.txt": ("analyze", p, "-o"),
            "r.html": ("analyze", p, "--html"), "t.json": ("export", p, "--perfetto"),
            "j.xml": ("check", p, "--max-p99-ms", "100", "--junit"), "d.json": ("diff", p, p, "-o")}
    for name, argv in outs.items():
        assert main(*argv, work / name).returncode == 0
    (work / "r.json").chmod(0o640)
    (work / "latest.json").symlink_to("r.json")
    first = {n: (work / n).stat().st_ino for n in outs}
    for name, argv in outs.items():
        assert main(*argv, work / name).returncode == 0, name
    assert main("analyze", p, "--format", "json", "-o", work / "latest.json").returncode == 0
    for n in outs:
        assert (work / n).stat().st_ino != first[n]         # a new file renamed into place
    assert (work / "latest.json").is_symlink() and stat.S_IMODE((work / "r.json").stat().st_mode) == 0o640
    assert json.loads((work / "r.json").read_text())["tool"]["name"] == "nsys-doctor"
    ET.parse(work / "j.xml")
    assert sorted(x.name for x in work.iterdir()) == sorted([*outs, "latest.json", "p.sqlite",
                                                             "before.sqlite.xz", "after.sqlite.xz"])


def test_an_interrupted_write_leaves_the_old_report_and_no_partial_file(work, monkeypatch):
    p, out = work / "p.sqlite", work / "r.json"
    assert main("analyze", p, "--format", "json", "-o", out).returncode == 0
    old = sha(out)
    from nsys_doctor.render import json_report

    def half(report):
        raise KeyboardInterrupt     # Ctrl-C while the report is being written
    monkeypatch.setattr(json_report, "render", half)
    assert main("analyze", p, "--format", "json", "-o", out).returncode == 130
    assert sha(out) == old and sorted(x.name for x in work.iterdir()) == ["after.sqlite.xz", "before.sqlite.xz",
                                                                          "p.sqlite", "r.json"]


def test_output_that_is_a_folder_or_in_a_missing_folder_or_a_dangling_link(work, tmp_path):
    refused(main("analyze", work / "p.sqlite", "-o", work), work, "is a folder")
    dangling = work / "out.json"        # planted: writing through it would create a file elsewhere
    dangling.symlink_to(tmp_path / "elsewhere" / ".profile")
    (tmp_path / "elsewhere").mkdir()
    refused(main("analyze", work / "p.sqlite", "-o", dangling), dangling, "symlink to a missing file")
    assert list((tmp_path / "elsewhere").iterdir()) == []
    refused(main("export", work / "p.sqlite", "--perfetto", work / "no" / "t.json"), work / "no" / "t.json",
            "cannot write", "No such file")


# -------------------------------------------------------------------------------------------- write errors
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("argv,target", [
    (("analyze", "{p}", "-o", "/dev/full"), "/dev/full"),
    (("analyze", "{p}", "--html", "/dev/full"), "/dev/full"),
    (("diff", "{p}", "{p}", "-o", "/dev/full"), "/dev/full"),
    (("export", "{p}", "--perfetto", "/dev/full"), "/dev/full"),
    (("check", "{p}", "--max-p99-ms", "100", "--junit", "/dev/full"), "/dev/full"),
    (("analyze", "{p}", "-o", "/proc/version"), "/proc/version"),
    (("profile", "-o", "/dev/full/x", "--", "true"), "/dev/full"),
])
def test_write_errors_are_one_line(work, argv, target):
    """Before: -o /dev/full gave a traceback and /proc/version was written to; profile -o /dev/full/x a
    FileExistsError traceback."""
    if argv[0] == "profile":
        from nsys_doctor.system.nsys import find_nsys
        if find_nsys() is None:
            pytest.skip("profile needs nsys before it looks at -o")
    before = snapshot(work)
    res = main(*(a.format(p=work / "p.sqlite") for a in argv))
    refused(res, target)
    assert "No space left" in res.stderr or "refusing" in res.stderr or "not a folder" in res.stderr
    assert snapshot(work) == before


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
@pytest.mark.parametrize("argv", [("analyze", "{p}"), ("analyze", "{p}", "--format", "json"),
                                  ("diff", "{p}", "{p}"), ("check", "{p}", "--max-p99-ms", "100", "--github")])
def test_stdout_to_a_full_disk_is_one_line(work, argv):
    """`nsys-doctor analyze p.sqlite > /dev/full`, as a shell runs it: the console script's real stdout."""
    with open("/dev/full", "w") as full:
        res = console(*(a.format(p=work / "p.sqlite") for a in argv), stdout=full)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == ["nsys-doctor: cannot write to standard output (No space left on "
                                               "device)"] or "standard output" in res.stderr.strip(), res.stderr


def test_closed_stdout_is_one_line_and_files_still_written(work):
    """`nsys-doctor analyze p.sqlite >&-`: Python starts without a stdout. Before: an AttributeError traceback."""
    def run(*argv):
        return subprocess.run([sys.executable, "-c", CONSOLE, *map(str, argv)], stderr=subprocess.PIPE, text=True,
                              timeout=120, preexec_fn=lambda: os.close(1))
    res = run("analyze", work / "p.sqlite")
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "nsys-doctor: cannot write the report to standard output (it is closed)"], res.stderr
    assert run("analyze", work / "p.sqlite", "-o", work / "r.txt").returncode == 0
    assert (work / "r.txt").read_text().startswith("nsys-doctor  ")


# ------------------------------------------------------------------------------------- .nsys-rep exports
@pytest.fixture
def fake_nsys(tmp_path, monkeypatch):
    """A stand-in nsys: `export ... -o OUT REPORT` copies the demo export to OUT; each call is logged."""
    log = tmp_path / "nsys.log"
    script = tmp_path / "bin" / "nsys"
    script.parent.mkdir()
    script.write_text(f"""#!/bin/sh
echo "$@" >> {log}
while [ $# -gt 1 ]; do [ "$1" = "-o" ] && out="$2"; shift; done
cp {expand(DEMO_XZ)} "$out"
""")
    script.chmod(0o755)
    monkeypatch.setenv("NSYS", str(script))
    return log


def calls(log: pathlib.Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_nsys_rep_never_overwrites_the_sqlite_beside_it(work, cache, fake_nsys):
    """Before: `analyze mine.nsys-rep` replaced an older mine.sqlite beside it with the export."""
    rep, mine = work / "mine.nsys-rep", work / "mine.sqlite"
    rep.write_bytes(b"a report\n" * 100)
    shutil.copyfile(work / "before.sqlite.xz", mine)     # the user's own file of that name, older than the report
    os.utime(mine, (1, 1))
    before = snapshot(work)
    res = main("analyze", rep, "--format", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["requests"]["count"] == 12      # the demo's, exported by the stand-in nsys
    assert snapshot(work) == before and calls(fake_nsys) == 1
    assert [p.suffix for p in cache.iterdir()].count(".sqlite") == 1 and only_copies(cache) == []
    assert main("analyze", rep, "--format", "json").returncode == 0 and calls(fake_nsys) == 1   # reused
    rep.write_bytes(b"a changed report\n" * 100)                  # a new report: a new export
    assert main("analyze", rep, "--format", "json").returncode == 0 and calls(fake_nsys) == 2


def test_export_beside_refuses_an_existing_file(work, cache, fake_nsys):
    rep, mine = work / "mine.nsys-rep", work / "mine.sqlite"
    rep.write_bytes(b"a report\n" * 100)
    mine.write_text("not an export\n")
    refused(main("analyze", rep, "--export-beside"), mine, "refusing to overwrite")
    assert mine.read_text() == "not an export\n" and calls(fake_nsys) == 0
    mine.unlink()
    mine.mkdir()            # a folder named like the export: before, "disk I/O error" blamed on the report
    refused(main("analyze", rep, "--export-beside"), mine, "not a file")
    mine.rmdir()
    assert main("analyze", rep, "--export-beside").returncode == 0 and mine.is_file() and calls(fake_nsys) == 1
    inode = mine.stat().st_ino
    assert main("analyze", rep, "--export-beside").returncode == 0 and calls(fake_nsys) == 1   # its export, read
    assert mine.stat().st_ino == inode
    assert sorted(p.name for p in work.iterdir() if p.name.startswith("mine")) == ["mine.nsys-rep", "mine.sqlite"]


def test_export_that_fails_leaves_nothing(work, cache, tmp_path, monkeypatch):
    failing = tmp_path / "bin2" / "nsys"
    failing.parent.mkdir()
    failing.write_text("#!/bin/sh\necho 'ERROR: not a report' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("NSYS", str(failing))
    rep = work / "bad.nsys-rep"
    rep.write_bytes(b"\0garbage" * 100)
    before = snapshot(work)
    for extra in ((), ("--export-beside",)):
        refused(main("analyze", rep, *extra), rep, "nsys export")
        assert snapshot(work) == before and only_copies(cache) == []


# ------------------------------------------------------------------------------------------- the cache folder
def test_cache_folder_is_private_and_its_copies_too(work, cache):
    assert main("analyze", work / "before.sqlite.xz").returncode == 0
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in cache.iterdir())
    assert only_copies(cache) == []


@pytest.mark.parametrize("how", ["other-owner", "world-writable", "group-writable", "a-file", "symlink-of-other"])
def test_a_cache_folder_that_is_not_private_is_refused(work, cache, tmp_path, how):
    """Before: used whatever was there (a planted copy made one profile's report describe another)."""
    if how in ("other-owner", "symlink-of-other") and os.geteuid() != 0:
        pytest.skip("only root can give a folder to another user here")
    src = work / "before.sqlite.xz"
    if how == "a-file":
        cache.write_text("I am a file\n")
    elif how == "symlink-of-other":
        real = tmp_path / "real"
        real.mkdir(mode=0o700)
        cache.symlink_to(real)
        os.lchown(cache, OTHER_UID, OTHER_UID)
    else:
        cache.mkdir(mode=0o700)
        if how == "other-owner":
            os.chown(cache, OTHER_UID, OTHER_UID)
        else:
            cache.chmod(0o777 if how == "world-writable" else 0o770)
    before = sha(src)
    res = main("analyze", src)
    refused(res, cache, "cache folder")         # named: the folder, not the valid input
    assert sha(src) == before
    assert not cache.is_dir() or list(cache.iterdir()) == []


def test_default_folder_of_ours_made_group_writable_is_tightened(work, tmp_path, monkeypatch):
    """Versions before this made ~/.cache/nsys-doctor 0775 under umask 002: it is ours, so it is made 0700 and
    used; a copy in it that is not ours (another owner) would still be dropped by the per-copy check."""
    monkeypatch.delenv("NSYS_DOCTOR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = tmp_path / "xdg" / "nsys-doctor"
    folder.mkdir(parents=True)
    folder.chmod(0o775)
    assert main("analyze", work / "before.sqlite.xz").returncode == 0
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and only_copies(folder) == []


def test_planted_fallback_folder_in_tmp_is_refused(work, tmp_path):
    """No configured cache, the default cannot be made, and /tmp/nsys-doctor-UID was planted by someone else."""
    if os.geteuid() != 0:
        pytest.skip("only root can plant a folder owned by another user here")
    tmp = tmp_path / "tmp"
    (tmp / f"nsys-doctor-{os.getuid()}").mkdir(parents=True)
    os.chown(tmp / f"nsys-doctor-{os.getuid()}", OTHER_UID, OTHER_UID)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("x")
    env = {k: v for k, v in os.environ.items() if k != "NSYS_DOCTOR_CACHE"}
    res = subprocess.run([sys.executable, "-c", CONSOLE, "analyze", str(work / "before.sqlite.xz")],
                         capture_output=True, text=True, timeout=120,
                         env={**env, "XDG_CACHE_HOME": str(blocked), "TMPDIR": str(tmp)})
    refused(res, tmp / f"nsys-doctor-{os.getuid()}", "owned by uid")
    assert list((tmp / f"nsys-doctor-{os.getuid()}").iterdir()) == []


def _the_copy(cache: pathlib.Path) -> pathlib.Path:
    (copy,) = [p for p in cache.iterdir() if p.suffix == ".unxz"]
    return copy


def _counts(res) -> int:
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["requests"]["count"]


@pytest.mark.parametrize("damage", ["planted-other-profile", "truncated", "a-folder", "no-record", "symlink"])
def test_damaged_or_planted_copy_is_dropped_and_made_again(work, cache, damage):
    """Before: a damaged copy was blamed on the valid .xz on every later run; a planted one was analysed."""
    src = work / "before.sqlite.xz"
    want = _counts(main("analyze", src, "--format", "json"))
    copy = _the_copy(cache)
    other = expand(DEMO_XZ)         # another profile: 12 requests, not before's
    if damage == "planted-other-profile":
        copy.unlink()
        shutil.copyfile(other, copy)
    elif damage == "truncated":
        with open(copy, "r+b") as f:
            f.truncate(copy.stat().st_size // 2)
    elif damage == "a-folder":
        copy.unlink()
        copy.mkdir()
        (copy / "x").write_text("x")
    elif damage == "no-record":
        pathlib.Path(str(copy) + ".meta").unlink(missing_ok=True)
        copy.unlink()
        shutil.copyfile(other, copy)
    else:
        copy.unlink()
        copy.symlink_to(other)
    before = sha(src)
    assert _counts(main("analyze", src, "--format", "json")) == want != 12
    assert sha(src) == before and _the_copy(cache).is_file() and not _the_copy(cache).is_symlink()
    assert only_copies(cache) == []


def test_planted_part_symlinks_never_write_through(work, cache):
    """Before: KEY.unxz.part<pid> symlinks made a run overwrite an unrelated file. The key is predictable (it is
    shown by a first run), so the next pids' names are planted, pointing at a victim file."""
    src = work / "before.sqlite.xz"
    assert main("analyze", src).returncode == 0
    copy = _the_copy(cache)
    name = copy.name
    shutil.rmtree(cache)
    cache.mkdir(mode=0o700)
    victim = work / "victim.txt"
    victim.write_text("precious\n")
    with open("/proc/sys/kernel/ns_last_pid") as f:
        last = int(f.read())
    for pid in [os.getpid(), *range(last + 1, last + 200)]:
        (cache / f"{name}.part{pid}").symlink_to(victim)
    res = console("analyze", src)
    assert res.returncode == 0, res.stderr
    assert victim.read_text() == "precious\n"
    assert _the_copy(cache).is_file()


def test_leftovers_of_interrupted_runs_are_removed_and_everything_counts(work, cache, monkeypatch):
    """Before: *.part<pid> files of killed runs stayed forever and escaped the size cap. Files of other names (the
    folder may be one the user named) count toward the cap but are never removed."""
    import nsys_doctor.read.cache as read_cache
    cache.mkdir(mode=0o700)
    key = "0123456789abcdef01234567"
    dead = cache / f"{key}.unxz.part999999999-x1y2z3w4"             # no such pid
    dead.write_bytes(b"\0" * 1000)
    legacy = cache / f"{key[:20]}.unxz.part999999998"               # an older version's name for it
    legacy.write_bytes(b"\0" * 1000)
    old = cache / f"{key}.unxz.part{os.getppid()}-oldoldol"         # a live pid, but a day old
    old.write_bytes(b"\0" * 1000)
    os.utime(old, (1, 1))
    older_copy = cache / f"{'f' * 24}.unxz"                         # a copy no longer used
    older_copy.write_bytes(b"\0" * (1 << 20))
    os.utime(older_copy, (3, 3))
    users = cache / "notes.part1.txt"                                # not a name of ours
    users.write_bytes(b"\0" * (1 << 20))
    os.utime(users, (2, 2))
    new_size = len(lzma.decompress((work / "before.sqlite.xz").read_bytes()))
    # room for the new copy and one more MiB: only when the user's file counts must the older copy go
    monkeypatch.setattr(read_cache, "CACHE_MAX_BYTES", new_size + (3 << 19))
    assert main("analyze", work / "before.sqlite.xz").returncode == 0
    left = sorted(p.name for p in cache.iterdir())
    assert not {dead.name, legacy.name, old.name, older_copy.name} & set(left)
    assert users.name in left and only_copies(cache) == [users.name]


def test_interrupted_expansion_leaves_nothing(work, cache, monkeypatch):
    def stop(path):
        raise KeyboardInterrupt
    monkeypatch.setattr(shutil, "disk_usage", stop)     # Ctrl-C in the middle of expanding
    assert main("analyze", work / "before.sqlite.xz").returncode == 130
    assert list(cache.iterdir()) == []


def test_sigterm_during_expansion_leaves_nothing(work, cache):
    """A CI timeout sends SIGTERM: the console script ends through its cleanup. The signal is sent from inside the
    expansion (the first look at the free space), so the moment is exact."""
    code = ("import os, shutil, signal; shutil.disk_usage = lambda p: os.kill(os.getpid(), signal.SIGTERM); "
            + CONSOLE)
    res = subprocess.run([sys.executable, "-c", code, "analyze", str(work / "before.sqlite.xz")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 128 + 15 and "Traceback" not in res.stderr, res.stderr
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("opener,suffix", [(gzip.open, ".gz"), (lzma.open, ".xz")])
def test_a_bomb_stops_at_the_first_bytes(work, cache, opener, suffix):
    """Before: 256 MB of zeros (254 KB compressed) filled the cache before its format was looked at."""
    bomb = work / f"bomb.sqlite{suffix}"
    with opener(bomb, "wb") as f:
        block = b"\0" * (1 << 20)
        for _ in range(256):
            f.write(block)
    before = sha(bomb)
    refused(main("analyze", bomb), bomb, "not a profile")
    assert sha(bomb) == before and list(cache.iterdir()) == []


@pytest.mark.parametrize("how", ["stream-padding", "concatenated", "block-size"])
def test_valid_xz_variants_are_read(work, cache, tmp_path, how):
    """Before: a valid .xz with stream padding was rejected as 'truncated or corrupt'."""
    raw = expand(DEMO_XZ).read_bytes()
    x = work / f"{how}.sqlite.xz"
    if how == "stream-padding":
        x.write_bytes(lzma.compress(raw) + b"\0" * 8)
    elif how == "concatenated":
        x.write_bytes(lzma.compress(raw[:700_000]) + b"\0" * 4 + lzma.compress(raw[700_000:]))
    else:
        if not shutil.which("xz"):
            pytest.skip("no xz command here")
        with open(x, "wb") as f:
            subprocess.run(["xz", "-c", "--block-size=100000", str(expand(DEMO_XZ))], stdout=f, check=True)
    assert _counts(main("analyze", x, "--format", "json")) == 12
    assert sha(_the_copy(cache)) == hashlib.sha256(raw).hexdigest()


def test_truncated_xz_is_still_blamed(work, cache):
    x = work / "cut.sqlite.xz"
    x.write_bytes(DEMO_XZ.read_bytes()[:100_000])
    refused(main("analyze", x), x, "truncated or corrupt")
    assert only_copies(cache) == [] and not [p for p in cache.iterdir() if p.suffix == ".unxz"]


def test_profile_leaves_its_two_files_and_nothing_else(tmp_path):
    """`profile` records under a private name and renames into place: afterwards the folder holds NAME.nsys-rep and
    NAME.sqlite only; a second run without --force leaves both as they were."""
    from nsys_doctor.system.nsys import find_nsys
    if find_nsys() is None:
        pytest.skip("no nsys found (scripts/install-nsys-debian.sh installs one)")
    d = tmp_path / "runs"
    argv = ("profile", "-o", d / "run", "--trace=osrt", "--no-sample", "--no-cpuctxsw", "--no-analyze", "--",
            sys.executable, "-c", "pass")
    res = console(*argv, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in d.iterdir()) == ["run.nsys-rep", "run.sqlite"]
    before = snapshot(d)
    refused(console(*argv, cwd=tmp_path), d / "run.nsys-rep", "already exists")
    assert snapshot(d) == before
