"""TOML config -> validated, frozen settings; every problem reported at once; secrets resolved.

Imports only ``errors`` from the project (adapters import the settings types from here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr

MiB = 1024 * 1024


class CreatioSettings(BaseModel):
    """How to reach and talk to one Creatio site (the ``[creatio]`` table)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str  # site root, no trailing slash, e.g. https://acme.creatio.com
    runtime: Literal["auto", "netframework", "netcore"] = "auto"
    auth: Literal["forms", "oauth2"] = "forms"
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    token_url: str | None = None  # default: cloud rule <name>-is.creatio.com/connect/token
    verify_tls: bool = True
    ca_bundle: Path | None = None
    timeout: float = 60.0  # read timeout, seconds
    connect_timeout: float = 10.0
    concurrency: int = 4
    chunk_threshold: int = 8 * MiB
    chunk_size: int = 4 * MiB
    verify: Literal["size", "download"] = "size"
