"""The emulator's settings: one frozen dataclass shared by the CLI, the embedded server and the app.

Must not import anything from the rest of `creatio_attach` (the emulator is an independent
implementation of Creatio's side of the contract).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Runtime = Literal["netframework", "netcore"]
RUNTIMES: tuple[Runtime, ...] = ("netframework", "netcore")

DEFAULT_USERS: Mapping[str, str] = {"Supervisor": "Supervisor"}
DEFAULT_OAUTH_CLIENTS: Mapping[str, str] = {"attach": "attach-secret"}
#: contract section 8.6: "a configurable max size (default 2 GB - 1)"
DEFAULT_MAX_FILE_BYTES = 2**31 - 1


def _default_users() -> Mapping[str, str]:
    return dict(DEFAULT_USERS)


def _default_clients() -> Mapping[str, str]:
    return dict(DEFAULT_OAUTH_CLIENTS)


@dataclass(frozen=True)
class EmulatorOptions:
    """Everything the emulator can be told at start.

    ``repr`` hides the passwords and client secrets (only names are shown). With `tls_cert` and
    `tls_key` (PEM files; both or neither) the emulator serves HTTPS instead of HTTP.
    """

    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port (embedded); the CLI defaults to 8080
    runtime: Runtime = "netframework"
    data_dir: Path | None = None  # None: a temporary directory, removed on stop
    users: Mapping[str, str] = field(default_factory=_default_users, repr=False)
    oauth_clients: Mapping[str, str] = field(default_factory=_default_clients, repr=False)
    custom_schemas: tuple[str, ...] = ()
    session_idle: float = 1200.0
    token_lifetime: float = 3600.0
    max_request_bytes: int = 30_000_000
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    faults: str | None = None
    #: OData creates get an Id of the server's choosing, whatever Id the client sent: a
    #: Creatio that ignores the client's Id (contract section 10, open question 7; by default
    #: the emulator honours it, decision 8.5)
    ignore_client_ids: bool = False
    tls_cert: Path | None = None  # PEM certificate (chain), server certificate first
    tls_key: Path | None = None  # PEM private key of that certificate, unencrypted

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {self.runtime!r}")
        if self.session_idle <= 0 or self.token_lifetime <= 0:
            raise ValueError("session_idle and token_lifetime must be positive")
        if self.max_request_bytes <= 0 or self.max_file_bytes <= 0:
            raise ValueError("max_request_bytes and max_file_bytes must be positive")
        if not self.users:
            raise ValueError("at least one user is needed")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")

    @property
    def scheme(self) -> str:
        """The URL scheme: https with a TLS certificate, else http."""
        return "https" if self.tls_cert is not None else "http"

    @property
    def workspace_prefix(self) -> str:
        """Path of the workspace base relative to the site root: "/0" or ""."""
        return "/0" if self.runtime == "netframework" else ""
