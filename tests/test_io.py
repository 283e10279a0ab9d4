"""Atomic writers: modes follow the umask, failures leave the old output and no staging debris."""

import os
import stat
import threading
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demoscope import io
from demoscope.io import atomic_dir, atomic_write, atomic_write_text, current_umask


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def debris(folder, name: str) -> list[str]:
    """Hidden staging leftovers of ``name`` (``.NAME.*``) in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


@pytest.mark.parametrize("mask, file_mode, dir_mode",
                         [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)])
def test_outputs_get_the_modes_the_umask_allows(tmp_path, mask, file_mode, dir_mode):
    with umask(mask):
        assert current_umask() == mask
        atomic_write_text(tmp_path / "a.json", "{}")
        atomic_write(tmp_path / "b.bin", lambda tmp: tmp.write_bytes(b"x"))
        with atomic_dir(tmp_path / "adapter") as staging:
            (staging / "weights").write_bytes(b"w")
            (staging / "sub").mkdir()
            private = staging / "private"
            private.mkdir()
            os.chmod(private, 0o700)  # what another library chose inside the folder stays as it chose
    assert mode(tmp_path / "a.json") == file_mode
    assert mode(tmp_path / "b.bin") == file_mode
    assert mode(tmp_path / "adapter") == dir_mode
    assert mode(tmp_path / "adapter" / "weights") == file_mode
    assert mode(tmp_path / "adapter" / "sub") == dir_mode
    assert mode(tmp_path / "adapter" / "private") == 0o700


def test_replacing_a_folder_gives_the_new_contents_and_leaves_no_old_copy(tmp_path):
    target = tmp_path / "student"
    for version in ("one", "two"):
        with atomic_dir(target) as staging:
            (staging / "version").write_text(version)
    assert (target / "version").read_text() == "two"
    assert sorted(p.name for p in target.iterdir()) == ["version"]
    assert debris(tmp_path, "student") == []


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failed_file_writer_leaves_the_old_file_and_no_debris(tmp_path, error):
    target = tmp_path / "out.csv"
    target.write_text("old")

    def explode(tmp):
        tmp.write_text("half")
        raise error

    with pytest.raises(type(error)):
        atomic_write(target, explode)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failed_folder_writer_leaves_the_old_folder_and_no_debris(tmp_path, error):
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(type(error)):
        with atomic_dir(target) as staging:
            (staging / "weights").write_text("half")
            (staging / "nested").mkdir()
            raise error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    assert sorted(p.name for p in target.iterdir()) == ["weights"]
    assert (target / "weights").read_text() == "old"


def test_an_interrupted_swap_puts_the_old_folder_back(tmp_path, monkeypatch):
    """Ctrl-C between moving the old folder aside and renaming the new one in must not lose the old one."""
    target = tmp_path / "adapter"
    target.mkdir()
    (target / "weights").write_text("old")
    real_replace, calls = os.replace, []

    def interrupted_second_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", interrupted_second_rename)
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as staging:
            (staging / "weights").write_text("new")
    monkeypatch.undo()
    assert len(calls) >= 2
    assert (target / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    """The staging file's contents reach the disk before it takes the final name."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(io.os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                    real_fsync(fd))[1])
    monkeypatch.setattr(io.os, "replace", lambda src, dst: (events.append(("replace", str(src))),
                                                            real_replace(src, dst))[1])
    atomic_write_text(tmp_path / "metrics.json", "{}")
    replaced = [i for i, (kind, _) in enumerate(events) if kind == "replace"]
    assert len(replaced) == 1
    staged = events[replaced[0]][1]
    assert ("fsync", staged) in events[: replaced[0]]  # the data, under its staging name
    assert ("fsync", str(tmp_path)) in events[replaced[0]:]  # then the folder that now names it


def test_umask_reads_agree_across_threads(tmp_path):
    """Reading the umask must never leave another value behind, even with writers in other threads."""
    with umask(0o027):
        errors = []

        def write(index: int) -> None:
            try:
                for n in range(20):
                    atomic_write_text(tmp_path / f"t{index}-{n}", "x")
            except Exception as exc:  # noqa: BLE001 - reported through the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert current_umask() == 0o027
    assert not errors
    files = list(tmp_path.iterdir())
    assert len(files) == 80 and {mode(f) for f in files} == {0o640}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.text(), second=st.text())
def test_text_round_trips_and_replaces_the_previous_contents(tmp_path, first, second):
    target = tmp_path / "round.txt"
    atomic_write_text(target, first)
    assert target.read_bytes() == first.encode("utf-8")
    atomic_write_text(target, second)
    assert target.read_bytes() == second.encode("utf-8")
    assert debris(tmp_path, "round.txt") == []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.dictionaries(st.text("abcdefgh", min_size=1, max_size=8), st.binary(max_size=256), max_size=5))
def test_folder_contents_round_trip(tmp_path, files):
    target = tmp_path / "folder"
    with atomic_dir(target) as staging:
        for name, data in files.items():
            (staging / name).write_bytes(data)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == files
    assert debris(tmp_path, "folder") == []


def test_atomic_write_all_replaces_every_file_or_none(tmp_path):
    a, b, c = tmp_path / "a.txt", tmp_path / "sub" / "b.txt", tmp_path / "c.txt"
    a.write_text("old a")
    c.write_text("old c")

    def explode(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.atomic_write_all({a: lambda tmp: tmp.write_text("new a"), b: lambda tmp: tmp.write_text("new b"),
                             c: explode})
    assert (a.read_text(), c.read_text(), b.exists()) == ("old a", "old c", False)
    assert debris(tmp_path, "a.txt") == debris(tmp_path, "c.txt") == debris(tmp_path / "sub", "b.txt") == []
    written = io.atomic_write_all({a: lambda tmp: tmp.write_text("new a"), b: lambda tmp: tmp.write_text("new b")})
    assert written == [a, b] and (a.read_text(), b.read_text(), c.read_text()) == ("new a", "new b", "old c")
