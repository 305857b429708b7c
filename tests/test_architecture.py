"""The import boundaries of STYLE.md, checked by walking every module's imports with `ast`.

A rule broken here means a module took on a job that belongs to another one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "daemon" / "creatio_attach"

# Foreign libraries that only one place may import.
OWNED_LIBRARIES = {
    # the transport alone builds the pools; reply.py reads answers, http.py maps failures
    "urllib3": ("creatio/transport.py", "creatio/reply.py", "creatio/http.py"),
    "requests": ("creatio/transport.py",),  # its proxy and CA-bundle helpers only
    "magic": ("detect.py",),
    "watchdog": ("watcher.py",),
    "sqlite3": ("journal.py", "journal/", "emulator/"),  # the emulator is an independent program
    "uvicorn": ("emulator/",),
    "starlette": ("emulator/",),
    "prometheus_client": ("metrics.py",),
}
# Project modules that adapters must never import (the import direction points the other way).
UPPER_LAYERS = ("creatio_attach.engine", "creatio_attach.service", "creatio_attach.cli")
ADAPTERS = (
    "creatio/",
    "detect.py",
    "journal.py",
    "journal/",
    "watcher.py",
    "watch_mode.py",
    "events.py",
    "notify.py",
    "dispose.py",
    "settings_values.py",
    "settings_models.py",
    "inbox_config.py",
    "metrics.py",
    "routing.py",
    "config.py",
    "config_secrets.py",
    "log.py",
)
# What the engine must not touch: it reaches I/O through small Protocols.
IO_LIBRARIES = ("requests", "urllib3", "magic", "sqlite3", "watchdog", "socket", "subprocess")


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def imported_names(path: Path, relpath: str | None = None) -> set[str]:
    """Every absolute module name a file imports, at any depth (lazy imports count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    package_parts = ["creatio_attach", *(relpath or rel(path)).split("/")[:-1]]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import -> absolute
                base = package_parts[: len(package_parts) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{alias.name}" for alias in node.names)
    return names


def top(name: str) -> str:
    return name.split(".", 1)[0]


def owned_by(path: str, owners: tuple[str, ...]) -> bool:
    return any(path == o or (o.endswith("/") and path.startswith(o)) for o in owners)


def test_the_package_has_modules() -> None:
    assert len(modules()) >= 5, "the architecture test found almost nothing to check"


@pytest.mark.parametrize("path", modules(), ids=rel)
def test_foreign_libraries_are_imported_only_by_their_adapter(path: Path) -> None:
    broken = [
        lib
        for lib, owners in OWNED_LIBRARIES.items()
        if lib in {top(n) for n in imported_names(path)} and not owned_by(rel(path), owners)
    ]
    assert not broken, (
        f"{rel(path)} imports {broken}; only {[OWNED_LIBRARIES[b] for b in broken]} may"
    )


@pytest.mark.parametrize("path", modules(), ids=rel)
def test_adapters_do_not_import_upper_layers(path: Path) -> None:
    if not owned_by(rel(path), ADAPTERS):
        return
    bad = sorted(n for n in imported_names(path) if n.startswith(UPPER_LAYERS))
    assert not bad, f"{rel(path)} is an adapter but imports {bad}"


@pytest.mark.parametrize("path", modules(), ids=rel)
def test_the_emulator_is_independent_of_the_rest(path: Path) -> None:
    if not rel(path).startswith("emulator/"):
        return
    bad = sorted(
        n
        for n in imported_names(path)
        if n.startswith("creatio_attach")
        and not n.startswith("creatio_attach.emulator")
        and n != "creatio_attach"
    )
    assert not bad, f"{rel(path)} is part of the emulator but imports {bad}"


def test_errors_and_init_import_nothing_from_the_project() -> None:
    for name in ("errors.py", "__init__.py"):
        bad = [n for n in imported_names(PACKAGE / name) if n.startswith("creatio_attach")]
        assert not bad, f"{name} imports {bad}"


POLICY_MODULES = ("engine.py", "intake.py", "pipeline.py", "outcomes.py", "ports.py", "settle.py")


@pytest.mark.parametrize("name", POLICY_MODULES)
def test_the_engine_does_no_io_itself(name: str) -> None:
    bad = sorted(n for n in imported_names(PACKAGE / name) if top(n) in IO_LIBRARIES)
    assert not bad, f"{name} is engine policy but imports I/O libraries {bad}"


def test_the_boundary_checker_sees_violations(tmp_path: Path) -> None:
    """The checker itself must be able to fail: feed it a module that breaks two rules."""
    bad = tmp_path / "x.py"
    bad.write_text("import requests\ndef f():\n    from ..service import run\n", encoding="utf-8")
    names = imported_names(bad, relpath="creatio/x.py")
    assert "requests" in names
    assert "creatio_attach.service.run" in names  # a lazy, relative import is still seen
    assert not owned_by("detect.py", OWNED_LIBRARIES["requests"])
    assert owned_by("creatio/transport.py", OWNED_LIBRARIES["requests"])
    assert not owned_by("creatio/session.py", OWNED_LIBRARIES["urllib3"])
