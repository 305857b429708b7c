"""``confine``: below a root (an inbox folder) no symlink is followed, neither the file nor a
folder on the way; the root itself and paths below no root are the administrator's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from creatio_attach.confine import Roots, SymlinkRefused

READ = os.O_RDONLY | os.O_CLOEXEC


def read(roots: Roots, path: Path) -> bytes:
    fd = roots.open_file(path, READ)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    inbox = tmp_path / "inbox"
    (inbox / "SR1").mkdir(parents=True)
    (inbox / "SR1" / "doc.txt").write_text("inbox file")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "doc.txt").write_text("secret")
    return inbox, outside


def test_a_regular_file_below_the_inbox_is_read(tree: tuple[Path, Path]) -> None:
    inbox, _ = tree
    assert read(Roots([inbox]), inbox / "SR1" / "doc.txt") == b"inbox file"


def test_a_file_swapped_for_a_symlink_is_refused(tree: tuple[Path, Path]) -> None:
    inbox, outside = tree
    (inbox / "SR1" / "doc.txt").unlink()
    (inbox / "SR1" / "doc.txt").symlink_to(outside / "doc.txt")
    with pytest.raises(SymlinkRefused) as info:
        read(Roots([inbox]), inbox / "SR1" / "doc.txt")
    assert info.value.filename == str(inbox / "SR1" / "doc.txt")


def test_a_folder_on_the_way_swapped_for_a_symlink_is_refused(tree: tuple[Path, Path]) -> None:
    inbox, outside = tree
    (inbox / "SR1").rename(inbox / "SR1.moved")
    (inbox / "SR1").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SymlinkRefused) as info:
        read(Roots([inbox]), inbox / "SR1" / "doc.txt")
    assert info.value.filename == str(inbox / "SR1")


def test_the_inbox_folder_itself_may_be_a_symlink(tree: tuple[Path, Path], tmp_path: Path) -> None:
    inbox, _ = tree
    link = tmp_path / "drop"
    link.symlink_to(inbox, target_is_directory=True)  # e.g. /srv/drop -> /mnt/data/drop
    assert read(Roots([link]), link / "SR1" / "doc.txt") == b"inbox file"


def test_a_path_below_no_root_is_used_as_given(tree: tuple[Path, Path], tmp_path: Path) -> None:
    inbox, outside = tree
    link = tmp_path / "link.txt"
    link.symlink_to(outside / "doc.txt")
    assert read(Roots([inbox]), link) == b"secret"  # the one-shot commands' rule


def test_folders_are_made_on_the_way_and_a_planted_symlink_is_refused(
    tree: tuple[Path, Path],
) -> None:
    inbox, outside = tree
    roots = Roots([inbox])
    fd = roots.open_folder(inbox / ".archive" / "2026-11-28", create=True)
    os.close(fd)
    assert (inbox / ".archive" / "2026-11-28").is_dir()
    (inbox / ".failed").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SymlinkRefused):
        roots.open_folder(inbox / ".failed" / "x", create=True)
    assert sorted(p.name for p in outside.iterdir()) == ["doc.txt"]  # nothing made there


def test_the_outermost_inbox_and_the_innermost_other_root(tmp_path: Path) -> None:
    outer, inner, archive = tmp_path / "a", tmp_path / "a" / "b", tmp_path / "arch"
    roots = Roots([outer, inner], [archive, archive / "2026", outer / ".archive"])
    # a nested inbox is walked from the outer one: its folder may not be swapped either
    assert roots.root_of(inner / "x") == str(outer)
    assert roots.root_of(outer / ".archive" / "d" / "x") == str(outer)  # walked from the inbox
    assert roots.root_of(archive / "2026-11-28" / "x") == str(archive)
    assert roots.root_of(archive / "2026" / "x") == str(archive / "2026")
    assert roots.root_of(tmp_path / "elsewhere") is None
    roots.replace([inner])
    assert roots.root_of(outer / "x") is None
    assert roots.root_of(inner / "x") == str(inner)


def test_a_nested_inbox_swapped_for_a_symlink_is_refused(tree: tuple[Path, Path]) -> None:
    inbox, outside = tree
    (inbox / "SR1").rename(inbox / "SR1.moved")
    (inbox / "SR1").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SymlinkRefused):  # SR1 is an inbox of its own, nested in the other
        read(Roots([inbox, inbox / "SR1"]), inbox / "SR1" / "doc.txt")
