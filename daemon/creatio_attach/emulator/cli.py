"""The `creatio-attach emulator` command: parse options, run the emulator in the foreground.

Heavy modules (uvicorn, starlette, the store) are imported inside the command, so that
`creatio-attach --help` stays fast. Passwords and client secrets given on the command line are
never printed (not in `--help`, not in errors).

Must not import anything from the rest of `creatio_attach`.
"""

from __future__ import annotations

from pathlib import Path

import click

from creatio_attach.emulator.options import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_OAUTH_CLIENTS,
    DEFAULT_USERS,
    RUNTIMES,
    EmulatorOptions,
)


def _pairs(values: tuple[str, ...], option: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, secret = value.partition(":")
        if not sep or not name or not secret:
            # The value itself may hold a secret: name only the option.
            raise click.BadParameter(f"expected {what}, e.g. name:secret", param_hint=option)
        out[name] = secret
    return out


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: a free port).",
)
@click.option(
    "--runtime",
    type=click.Choice(RUNTIMES),
    default="netframework",
    show_default=True,
    help="netframework: data routes under /0; netcore: at the root, /0 also accepted.",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for records and file content (default: a temporary directory, "
    "removed on exit). Data survives a restart with the same --data.",
)
@click.option(
    "--user",
    "users",
    multiple=True,
    metavar="NAME:PASSWORD",
    help="A user who may log in (repeatable; default: the user Supervisor with "
    "Creatio's well-known demo password).",
)
@click.option(
    "--oauth-client",
    "clients",
    multiple=True,
    metavar="ID:SECRET",
    help="An OAuth client for connect/token (repeatable; default: client 'attach').",
)
@click.option(
    "--schema",
    "schemas",
    multiple=True,
    metavar="UsrXxx",
    help="Add a custom section object UsrXxx with its file object UsrXxxFile (repeatable).",
)
@click.option(
    "--session-idle",
    type=click.FloatRange(min=0, min_open=True),
    default=1200.0,
    show_default=True,
    help="Seconds of inactivity after which a session expires.",
)
@click.option(
    "--token-lifetime",
    type=click.FloatRange(min=0, min_open=True),
    default=3600.0,
    show_default=True,
    help="Lifetime of OAuth access tokens in seconds.",
)
@click.option(
    "--max-request-bytes",
    type=click.IntRange(min=1),
    default=30_000_000,
    show_default=True,
    help="Larger request bodies get 413 (IIS's default limit).",
)
@click.option(
    "--max-file-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_FILE_BYTES,
    show_default=True,
    help="Largest file content accepted: larger gets 413 on PUT .../Data and "
    "FileSizeLimitExceeded from FileApiService.",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Serve HTTPS with this PEM certificate (chain); needs --tls-key.",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="The PEM private key (unencrypted) of --tls-cert.",
)
@click.option(
    "--faults",
    metavar="SPEC",
    help="Fault injection, e.g. 'seed=7; 503@p=0.1; drop@every=7:after=64k; "
    "latency=50ms; expire@after=100' (see the README).",
)
@click.option(
    "--ignore-client-ids",
    is_flag=True,
    help="Give created records an Id of the emulator's choosing, whatever Id the client sent "
    "(a Creatio that ignores it; by default the client's Id is kept).",
)
def emulator_command(
    host: str,
    port: int,
    runtime: str,
    data_dir: Path | None,
    users: tuple[str, ...],
    clients: tuple[str, ...],
    schemas: tuple[str, ...],
    session_idle: float,
    token_lifetime: float,
    max_request_bytes: int,
    max_file_bytes: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    faults: str | None,
    ignore_client_ids: bool,
) -> None:
    """Run the Creatio emulator (a local stand-in for Creatio) until Ctrl-C or SIGTERM."""
    from creatio_attach.emulator.faults import FaultPlan, FaultSpecError
    from creatio_attach.emulator.schemas import CUSTOM_NAME

    for name in schemas:
        if not CUSTOM_NAME.match(name):
            raise click.BadParameter(
                f"{name!r} is not a custom object name like UsrRealty", param_hint="--schema"
            )
    if (tls_cert is None) != (tls_key is None):
        raise click.BadParameter(
            "--tls-cert and --tls-key go together: give both or neither",
            param_hint="--tls-cert" if tls_cert is None else "--tls-key",
        )
    if faults:
        try:
            FaultPlan.parse(faults)
        except FaultSpecError as exc:
            raise click.BadParameter(str(exc), param_hint="--faults") from None
    options = EmulatorOptions(
        host=host,
        port=port,
        runtime="netcore" if runtime == "netcore" else "netframework",
        data_dir=data_dir,
        users=_pairs(users, "--user", "NAME:PASSWORD") if users else dict(DEFAULT_USERS),
        oauth_clients=(
            _pairs(clients, "--oauth-client", "ID:SECRET")
            if clients
            else dict(DEFAULT_OAUTH_CLIENTS)
        ),
        custom_schemas=tuple(dict.fromkeys(schemas)),
        session_idle=session_idle,
        token_lifetime=token_lifetime,
        max_request_bytes=max_request_bytes,
        max_file_bytes=max_file_bytes,
        faults=faults,
        tls_cert=tls_cert,
        tls_key=tls_key,
        ignore_client_ids=ignore_client_ids,
    )
    from creatio_attach.emulator.server import EmulatorStartError, run_foreground

    try:
        code = run_foreground(options)
    except EmulatorStartError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    raise SystemExit(code)
