"""Output files cannot be redirected by another user: root resolves the path
itself, follows no symlink another user made (last or middle component),
and writes only to a new file or to a regular file of its own with one link.
fs.protected_symlinks is 0 on this host, so the kernel would follow them."""

import os
import stat

import pytest
from planting import NOBODY, as_user, snapshot

from pybpf.errors import UnsafePath
from pybpf.safe_files import open_output_file


def write(fd, data=b"event\n"):
    with open(fd, "wb") as f:
        f.write(data)


def test_a_new_file_is_created_0600(shared):
    path = os.path.join(shared, "events.json")
    write(open_output_file(path))
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    write(open_output_file(path), b"more\n")          # an existing own file: appended
    assert open(path, "rb").read() == b"event\nmore\n"
    write(open_output_file(path, truncate=True), b"pid\n")
    assert open(path, "rb").read() == b"pid\n"


def test_an_own_file_open_to_others_is_tightened(tmp_path):
    path = tmp_path / "out"
    path.write_bytes(b"")
    os.chmod(path, 0o644)
    os.close(open_output_file(str(path)))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_relative_paths_and_our_own_symlinks_resolve(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    os.symlink("real", tmp_path / "alias")          # root's own link: followed
    os.symlink(str(tmp_path / "real" / "log"), tmp_path / "real" / "current")
    monkeypatch.chdir(tmp_path)
    write(open_output_file("./alias/../alias/current"))
    assert (tmp_path / "real" / "log").read_bytes() == b"event\n"


def test_a_symlink_planted_as_the_last_component_is_refused(shared, victim):
    before = snapshot(victim)
    path = os.path.join(shared, "events.json")
    as_user(lambda: os.symlink(victim, path))
    with pytest.raises(UnsafePath, match="symlink events.json is owned by uid %d" % NOBODY):
        open_output_file(path)
    assert snapshot(victim) == before


def test_a_dangling_planted_symlink_creates_nothing(shared, tmp_path):
    target = tmp_path / "created-by-root"
    path = os.path.join(shared, "events.json")
    as_user(lambda: os.symlink(str(target), path))
    with pytest.raises(UnsafePath):
        open_output_file(path)
    assert not target.exists()


def test_a_symlink_planted_as_a_middle_component_is_refused(shared, tmp_path):
    keys = tmp_path / "ssh"            # /tmp/evil -> /root/.ssh, then evil/authorized_keys
    keys.mkdir()
    as_user(lambda: os.symlink(str(keys), os.path.join(shared, "evil")))
    with pytest.raises(UnsafePath, match="symlink evil is owned by uid %d" % NOBODY):
        open_output_file(os.path.join(shared, "evil", "authorized_keys"))
    assert os.listdir(keys) == []


def test_a_hard_link_to_another_file_is_refused(shared, victim):
    # Planted by another user where fs.protected_hardlinks=0 lets them link
    # to root's files; where it is 1 (as here) root plants it: the check on
    # the opened file is the same either way.
    before = snapshot(victim)
    path = os.path.join(shared, "events.json")
    try:
        as_user(lambda: os.link(victim, path))
    except AssertionError:
        os.link(victim, path)
    with pytest.raises(UnsafePath, match="2 hard links"):
        open_output_file(path)
    assert snapshot(victim) == before


def test_a_file_owned_by_another_user_is_refused(shared):
    path = os.path.join(shared, "events.json")

    def plant():
        with open(path, "w") as f:
            f.write("theirs\n")
    as_user(plant)
    before = snapshot(path)
    with pytest.raises(UnsafePath, match="owned by uid %d" % NOBODY):
        open_output_file(path)
    assert snapshot(path) == before


def test_a_fifo_planted_there_does_not_hang_us(shared):
    path = os.path.join(shared, "events.json")
    as_user(lambda: os.mkfifo(path))
    with pytest.raises(OSError):       # ENXIO (no reader) or "not a regular file"
        open_output_file(path)


def test_a_directory_is_not_a_file(tmp_path):
    with pytest.raises(IsADirectoryError):
        open_output_file(str(tmp_path) + "/")
    with pytest.raises(OSError):
        open_output_file(str(tmp_path))
