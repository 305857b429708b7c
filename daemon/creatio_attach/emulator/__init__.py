"""The Creatio emulator: a local server behaving like Creatio for everything creatio-attach uses.

Exports `EmulatorOptions` and `EmbeddedEmulator`. The server machinery (uvicorn, starlette, the
store) is imported only when `EmbeddedEmulator` is first used, so that importing this package
(for example by `creatio-attach --help`) stays cheap.

Must not import anything from the rest of `creatio_attach`: it is an independent implementation
of the other side of the contract, so that each side can catch the other's mistakes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from creatio_attach.emulator.options import EmulatorOptions

if TYPE_CHECKING:
    from creatio_attach.emulator.server import EmbeddedEmulator

__all__ = ["EmbeddedEmulator", "EmulatorOptions"]


def __getattr__(name: str) -> Any:
    if name == "EmbeddedEmulator":
        from creatio_attach.emulator.server import EmbeddedEmulator

        return EmbeddedEmulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
