"""The ``[creatio]`` table's credentials: secrets resolved, and what the chosen ``auth`` needs.

Secrets (``password``, ``client_secret``) are resolved in this order:
``$CREDENTIALS_DIRECTORY/creatio-password`` (``creatio-client-secret``), the config's
``password_file`` (``client_secret_file``), the inline value, the environment
(``CREATIO_ATTACH_PASSWORD``, ``CREATIO_ATTACH_CLIENT_SECRET``). A secret in a file that group
or others may read is a warning. No problem or warning ever shows a secret.

Called by ``config`` while loading; returns problems and warnings as text for ``config`` to
report with all the others, and raises nothing. Imports from the project only
``settings_values``; never ``config`` (which imports this), no network, no logging.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from creatio_attach.settings_values import relative_to

__all__ = ["required_problems", "resolve_secrets"]

_SECRETS = {
    # key: (credential name, file key, environment variable)
    "password": ("creatio-password", "password_file", "CREATIO_ATTACH_PASSWORD"),
    "client_secret": (
        "creatio-client-secret",
        "client_secret_file",
        "CREATIO_ATTACH_CLIENT_SECRET",
    ),
}


def _read_secret_file(file: Path) -> str:
    text = file.read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text


def _others_can_read(file: Path) -> int | None:
    """The file's mode when group or others may read it, else None."""
    try:
        mode = file.stat().st_mode
    except OSError:
        return None
    return stat.S_IMODE(mode) if mode & (stat.S_IRGRP | stat.S_IROTH) else None


def resolve_secrets(
    table: Mapping[str, Any], env: Mapping[str, str], source: Path | None, *, read: bool = True
) -> tuple[dict[str, SecretStr], list[str], list[str]]:
    """Secrets by the documented order; problems and warnings never contain their values.

    ``read=False``: only the warning about an inline secret in a readable config; nothing is
    opened, the environment is not looked at, no secret is returned.
    """
    found: dict[str, SecretStr] = {}
    problems: list[str] = []
    warnings: list[str] = []
    creds_dir = env.get("CREDENTIALS_DIRECTORY", "").strip()
    for key, (credential, file_key, env_name) in _SECRETS.items():
        inline = table.get(key)
        mode = _others_can_read(source) if source and isinstance(inline, str) and inline else None
        if mode is not None:
            # even when another source wins, the secret sits in a file others can read
            warnings.append(
                f"{source} holds a secret (creatio.{key}) and is readable by group or "
                f"others (mode {mode:04o}): chmod 600 it, or move the secret to "
                f"{file_key} or the systemd credential {credential}"
            )
        if not read:
            continue
        value: str | None = None
        if creds_dir and (Path(creds_dir) / credential).is_file():
            cred = Path(creds_dir) / credential
            value, problem = _read_secret(cred, key, f"the credential {cred}")
            if problem:
                problems.append(problem)
                continue
        elif isinstance(table.get(file_key), str):
            secret_file = relative_to(source, table[file_key])
            value, problem = _read_secret(secret_file, file_key, str(secret_file))
            if problem:
                problems.append(problem)
                continue
            mode = _others_can_read(secret_file)
            if mode is not None:
                warnings.append(
                    f"{secret_file} (creatio.{file_key}) is readable by group or others "
                    f"(mode {mode:04o}): chmod 600 it"
                )
        elif isinstance(table.get(key), str):
            value = table[key]
            if not value:
                problems.append(f"creatio.{key}: must not be empty")
                continue
        elif env.get(env_name):
            value = env[env_name]
        if value:
            found[key] = SecretStr(value)
    return found, problems, warnings


def _read_secret(file: Path, key: str, shown: str) -> tuple[str | None, str | None]:
    """(the secret, None), or (None, the problem under ``creatio.<key>``) when ``file`` cannot
    be read or is empty; ``shown`` names the file in the problem."""
    try:
        value = _read_secret_file(file)
    except (OSError, UnicodeDecodeError) as e:
        return None, f"creatio.{key}: cannot read {shown}: {_why(e)}"
    if not value:
        return None, f"creatio.{key}: {shown} is empty"
    return value, None


def _why(e: BaseException) -> str:
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return type(e).__name__


def required_problems(
    table: Mapping[str, Any], found: Mapping[str, SecretStr], *, secrets: bool = True
) -> list[str]:
    """What the chosen ``auth`` needs, checked after the secrets are resolved (without
    ``secrets``, the user name and client id only)."""
    auth = table.get("auth", "forms")
    out: list[str] = []
    if auth == "forms":
        if table.get("username") in (None, ""):
            out.append('creatio.username: required for auth = "forms"')
        if secrets and not {"password", "password_file"} & (set(found) | set(table)):
            out.append(
                'creatio.password: required for auth = "forms": set password_file, or the '
                "systemd credential creatio-password, or $CREATIO_ATTACH_PASSWORD"
            )
    elif auth == "oauth2":
        if table.get("client_id") in (None, ""):
            out.append('creatio.client_id: required for auth = "oauth2"')
        if secrets and not {"client_secret", "client_secret_file"} & (set(found) | set(table)):
            out.append(
                'creatio.client_secret: required for auth = "oauth2": set client_secret_file, '
                "or the systemd credential creatio-client-secret, or "
                "$CREATIO_ATTACH_CLIENT_SECRET"
            )
    return out
