"""The watcher's pure half: which paths are candidates, the walk, collapse (hand-made events)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from creatio_attach.errors import ConfigError
from creatio_attach.events import (
    DEFAULT_IGNORE,
    FileEvent,
    WatchSpec,
    collapse,
    in_scope,
    is_candidate,
    walk_candidates,
)

# ---------------------------------------------------------------------------------------------
# collapse


def ev(kind: str, at: float, path: str = "/in/a.pdf", inbox: str = "cases") -> FileEvent:
    return FileEvent(inbox, Path(path), kind, at)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kinds", "kept"),
    [
        (["changed", "changed", "closed"], "closed"),  # written, then closed after writing
        (["changed", "closed", "deleted"], "deleted"),  # gone before it was taken
        (["closed", "deleted", "moved_in"], "moved_in"),  # a new file took the name
        (["deleted", "changed"], "changed"),
        (["moved_in", "changed"], "changed"),  # written again after the rename: must settle
        (["closed", "changed"], "changed"),  # reopened for writing
        (["closed", "found"], "closed"),  # a rescan adds no news
        (["moved_in", "found"], "moved_in"),
        (["changed", "found"], "changed"),
        (["deleted", "found"], "found"),  # back again
        (["found", "changed"], "changed"),
        (["found", "closed"], "closed"),
        (["found", "found"], "found"),
        (["moved_in", "closed"], "closed"),
        (["deleted", "deleted"], "deleted"),
    ],
)
def test_collapse_keeps_the_event_that_matters(kinds: list[str], kept: str) -> None:
    events = [ev(kind, float(i)) for i, kind in enumerate(kinds)]
    result = collapse(events)
    assert [e.kind for e in result] == [kept]
    # the kept event is one of the inputs, with its own time
    assert result[0] in events


def test_collapse_keeps_the_earlier_time_when_a_found_is_dropped() -> None:
    assert collapse([ev("closed", 1.0), ev("found", 5.0)]) == [ev("closed", 1.0)]


def test_collapse_orders_by_time_not_by_input_order() -> None:
    late_a = ev("closed", 9.0, "/in/a.pdf")
    b = ev("changed", 3.0, "/in/b.pdf")
    early_a = ev("changed", 1.0, "/in/a.pdf")
    c = ev("moved_in", 5.0, "/in/c.pdf")
    assert collapse([late_a, b, early_a, c]) == [b, c, late_a]


def test_collapse_treats_equal_times_in_input_order() -> None:
    first, second = ev("closed", 2.0), ev("deleted", 2.0)
    assert collapse([first, second]) == [second]
    assert collapse([second, first]) == [first]


def test_collapse_keeps_inboxes_apart() -> None:
    a = ev("closed", 1.0, inbox="cases")
    b = ev("deleted", 2.0, inbox="recordings")
    assert collapse([a, b]) == [a, b]


def test_collapse_of_nothing_is_nothing() -> None:
    assert collapse([]) == []


# ---------------------------------------------------------------------------------------------
# the candidate filter


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """An inbox with everything that must and must not be taken, and a folder outside it."""
    inbox = tmp_path / "inbox"
    outside = tmp_path / "outside"
    for folder in (inbox / "sub" / "deep", inbox / "done" / "2026-11-28", inbox / ".git", outside):
        folder.mkdir(parents=True)
    p = {
        "inbox": inbox,
        "outside": outside,
        "top": inbox / "SR1_scan.pdf",
        "nested": inbox / "sub" / "SR2 report.docx",
        "deep": inbox / "sub" / "deep" / "SR3#%'ü.txt",
        "lock": inbox / "~$report.docx",
        "hidden": inbox / ".hidden",
        "part": inbox / "movie.part",
        "upper_tmp": inbox / "SCAN.TMP",
        "thumbs": inbox / "sub" / "THUMBS.DB",
        "in_dotdir": inbox / ".git" / "config",
        "archived": inbox / "done" / "2026-11-28" / "SR1_scan.pdf",
        "secret": outside / "secret.txt",
        "link_out": inbox / "link-out.txt",
        "link_in": inbox / "link-in.pdf",
        "linkdir": inbox / "linkdir",
        "fifo": inbox / "pipe",
        "empty": inbox / "empty.pdf",
    }
    for name in ("top", "nested", "deep", "lock", "hidden", "part", "upper_tmp", "thumbs",
                 "in_dotdir", "archived", "secret"):  # fmt: skip
        p[name].write_bytes(b"%PDF-1.4 data")
    p["empty"].write_bytes(b"")  # empty files are the engine's business, not the watcher's
    p["link_out"].symlink_to(p["secret"])
    p["link_in"].symlink_to(p["top"])
    p["linkdir"].symlink_to(outside, target_is_directory=True)
    os.mkfifo(p["fifo"])
    return p


def spec_for(tree: dict[str, Path], **kw: object) -> WatchSpec:
    kw.setdefault("excluded", (tree["inbox"] / "done",))
    return WatchSpec("cases", tree["inbox"], **kw)  # type: ignore[arg-type]


TAKEN = {"top", "nested", "deep", "empty"}


def test_only_regular_files_inside_the_inbox_are_candidates(tree: dict[str, Path]) -> None:
    spec = spec_for(tree)
    taken = {name for name, path in tree.items() if is_candidate(spec, path)}
    assert taken == TAKEN


def test_a_symlink_pointing_outside_is_not_a_candidate(tree: dict[str, Path]) -> None:
    spec = spec_for(tree)
    assert not is_candidate(spec, tree["link_out"])
    # nor is a file reached through a symlinked folder that leads out of the inbox
    assert (tree["linkdir"] / "secret.txt").is_file()
    assert not is_candidate(spec, tree["linkdir"] / "secret.txt")


def test_a_symlink_to_a_file_inside_is_refused_and_the_target_taken(tree: dict[str, Path]) -> None:
    spec = spec_for(tree)
    assert not is_candidate(spec, tree["link_in"])
    assert is_candidate(spec, tree["top"])


def test_a_fifo_is_not_a_candidate(tree: dict[str, Path]) -> None:
    assert not is_candidate(spec_for(tree), tree["fifo"])


def test_ignore_globs_match_any_component_case_insensitively(tree: dict[str, Path]) -> None:
    spec = spec_for(tree)
    for name in ("lock", "hidden", "part", "upper_tmp", "thumbs", "in_dotdir"):
        assert not is_candidate(spec, tree[name]), name
    # with no ignore globs they are taken (the FIFO and symlinks still are not)
    bare = spec_for(tree, ignore=())
    assert is_candidate(bare, tree["lock"])
    assert is_candidate(bare, tree["in_dotdir"])
    assert is_candidate(bare, tree["thumbs"])


def test_the_default_ignore_list_covers_office_locks_partial_downloads_and_litter() -> None:
    spec = WatchSpec("x", Path("/srv/in"))
    assert spec.ignore == DEFAULT_IGNORE
    for name in ("~$Budget.xlsx", "a.tmp", "a.part", "a.crdownload", ".DS_Store", ".x",
                 "Thumbs.db", "desktop.ini", "Desktop.INI"):  # fmt: skip
        assert not in_scope(spec, f"/srv/in/{name}"), name
    for name in ("budget.xlsx", "a.tmp.pdf", "part", "x~$.pdf"):
        assert in_scope(spec, f"/srv/in/{name}"), name


def test_excluded_folders_are_never_input(tree: dict[str, Path]) -> None:
    spec = spec_for(tree)
    assert not is_candidate(spec, tree["archived"])
    assert not in_scope(spec, tree["archived"])
    # an excluded folder reached through a symlink is still excluded
    alias = tree["inbox"] / "sub" / "done-alias"
    alias.symlink_to(tree["inbox"] / "done", target_is_directory=True)
    assert not is_candidate(spec, alias / "2026-11-28" / "SR1_scan.pdf")
    # without the exclusion the archived file would be taken
    assert is_candidate(spec_for(tree, excluded=()), tree["archived"])


def test_non_recursive_inboxes_take_only_the_top_folder(tree: dict[str, Path]) -> None:
    spec = spec_for(tree, recursive=False)
    taken = {name for name, path in tree.items() if is_candidate(spec, path)}
    assert taken == {"top", "empty"}


def test_paths_outside_the_inbox_and_the_inbox_itself_are_not_candidates(
    tree: dict[str, Path],
) -> None:
    spec = spec_for(tree)
    assert not is_candidate(spec, tree["secret"])
    assert not is_candidate(spec, tree["inbox"])
    assert not is_candidate(spec, tree["inbox"] / "sub")
    # a sibling folder whose name starts like the inbox's is outside it
    sibling = tree["inbox"].parent / "inbox2"
    sibling.mkdir()
    (sibling / "a.pdf").write_bytes(b"x")
    assert not is_candidate(spec, sibling / "a.pdf")
    # a vanished file is not a candidate, but its path is still in scope (for deletions)
    assert not is_candidate(spec, tree["inbox"] / "gone.pdf")
    assert in_scope(spec, tree["inbox"] / "gone.pdf")


def test_the_walk_finds_exactly_the_candidates(tree: dict[str, Path]) -> None:
    for spec in (spec_for(tree), spec_for(tree, recursive=False), spec_for(tree, ignore=())):
        every = {Path(root) / f for root, _, files in os.walk(tree["inbox"]) for f in files}
        every |= {Path(root) / d for root, dirs, _ in os.walk(tree["inbox"]) for d in dirs}
        expected = {p for p in every if is_candidate(spec, p)}
        found = list(walk_candidates(spec))
        assert len(found) == len(set(found))
        assert set(found) == expected
        assert expected  # the comparison is not vacuous


def test_the_walk_stops_within_one_folder_once_told(tmp_path: Path) -> None:
    for n in range(50):
        (tmp_path / f"{n}.pdf").write_bytes(b"x")
    stop = threading.Event()
    found = []
    for path in walk_candidates(WatchSpec("x", tmp_path), stop):
        found.append(path)
        stop.set()
    assert len(found) == 1


def test_the_walk_of_a_missing_inbox_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(walk_candidates(WatchSpec("x", tmp_path / "missing")))


def test_an_inbox_inside_an_excluded_folder_yields_nothing(tree: dict[str, Path]) -> None:
    spec = WatchSpec("x", tree["inbox"] / "done", excluded=(tree["inbox"] / "done",))
    assert list(walk_candidates(spec)) == []
    assert not is_candidate(spec, tree["archived"])


def test_a_watch_spec_is_made_absolute_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = WatchSpec("x", Path("in"), excluded=(Path("in/done"),))
    assert spec.folder == tmp_path / "in"
    assert spec.excluded == (tmp_path / "in" / "done",)
    with pytest.raises(ConfigError, match="watch"):
        WatchSpec("x", tmp_path, mode="fanotify")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="poll_interval"):
        WatchSpec("x", tmp_path, poll_interval=0)
