"""The command line: the ``creatio-attach`` group, the options the one-shot commands share,
expected errors turned into one readable line and an exit code, and the list of commands.

The commands live in their own modules: ``emulator`` (``emulator/cli.py``), ``run``, ``status``,
``retry``, ``submit`` (``daemon_cli.py``), ``demo`` (``demo.py``), ``upload``, ``list``,
``download`` (``transfer_cli.py``) and ``check`` (``check_cli.py``). The last two import their
shared options from here, so this module loads them only when asked for (``_LAZY_COMMANDS``):
no import cycle, whichever module is imported first.

The top of this module imports only click and the light project modules (``errors``,
``__init__`` and the command modules, which defer their own heavy imports); config, logging,
the Creatio client, type detection and rich are imported inside the commands, so that
``creatio-attach --help`` starts fast. Expected errors (``CreatioAttachError``) print
``creatio-attach: <message>`` (each config problem on its own line, then ``hint: ...``) on
stderr and exit with the error's ``exit_code``; anything else is a bug and keeps its traceback.
Nothing here prints a secret: passwords are never options. Adapters must not import this module.
"""

from __future__ import annotations

import functools
import importlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from creatio_attach import __version__
from creatio_attach.daemon_cli import retry_command, run_command, status_command, submit_command
from creatio_attach.demo import demo_command
from creatio_attach.emulator.cli import emulator_command
from creatio_attach.errors import CreatioAttachError

if TYPE_CHECKING:
    from creatio_attach.config import Config
    from creatio_attach.creatio import CreatioClient

F = TypeVar("F", bound=Callable[..., Any])

#: command name -> (module, attribute) of the commands that import their options from here
_LAZY_COMMANDS = {
    "upload": ("creatio_attach.transfer_cli", "upload"),
    "list": ("creatio_attach.transfer_cli", "list_command"),
    "download": ("creatio_attach.transfer_cli", "download"),
    "check": ("creatio_attach.check_cli", "check"),
}


class _Main(click.Group):
    """The group that turns expected errors into one line and the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CreatioAttachError as e:
            from creatio_attach.output import print_error

            print_error(e)
            ctx.exit(e.exit_code)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in _LAZY_COMMANDS:
            module, attribute = _LAZY_COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return command


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="creatio-attach")
def main() -> None:
    """Move files from folders into Creatio CRM as attachments of the right records."""


main.add_command(emulator_command)
main.add_command(run_command)
main.add_command(status_command)
main.add_command(retry_command)
main.add_command(submit_command)
main.add_command(demo_command)


# ---------------------------------------------------------------------------------------------
# options the one-shot commands take


@dataclass(frozen=True)
class SiteOptions:
    config_path: Path | None
    url: str | None
    username: str | None
    verbose: bool

    def load(self) -> Config:
        """The validated config (``ConfigError`` lists every problem); warnings to stderr."""
        from creatio_attach.config import load_config
        from creatio_attach.log import setup_logging
        from creatio_attach.output import print_warning

        setup_logging(level="debug" if self.verbose else "warning")
        config = load_config(
            self.config_path,
            overrides={"creatio.url": self.url, "creatio.username": self.username},
        )
        for warning in config.warnings:
            print_warning(warning)
        return config


def site_options(command: F) -> F:
    """Add ``--config``, ``--url``, ``--username`` and ``-v``; pass them as ``site``."""

    @click.option(
        "--config",
        "config_path",
        metavar="PATH",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Config file. Default: $CREATIO_ATTACH_CONFIG, then /etc/creatio-attach/config.toml.",
    )
    @click.option(
        "--url",
        metavar="URL",
        help="Creatio site root (https://acme.creatio.com); overrides [creatio] url. Without a "
        "config file, --url, --username and $CREATIO_ATTACH_PASSWORD are enough.",
    )
    @click.option(
        "--username",
        metavar="NAME",
        help="Creatio user; overrides [creatio] username. The password comes from the config, "
        "the systemd credential creatio-password or $CREATIO_ATTACH_PASSWORD, never an option.",
    )
    @click.option(
        "-v", "--verbose", is_flag=True, help="Log what happens (requests, retries) on stderr."
    )
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        config_path: Path | None,
        url: str | None,
        username: str | None,
        verbose: bool,
        **kwargs: Any,
    ) -> Any:
        site = SiteOptions(config_path, url, username, verbose)
        return command(*args, site=site, **kwargs)

    return wrapper  # type: ignore[return-value]


def parse_guid(value: str, what: str) -> str:
    """``value`` as a canonical GUID (braces and case forgiven); a usage error naming ``what``."""
    try:
        return str(uuid.UUID(value.strip().strip("{}")))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a GUID (like 3fa85f64-5717-4562-b3fc-2c963f66afa6)", param_hint=what
        ) from None


def open_client(config: Config) -> CreatioClient:
    """A Creatio client for ``config`` (not logged in yet); use it as a context manager."""
    from creatio_attach.creatio import CreatioClient

    return CreatioClient(config.creatio)
