"""The command line: commands, and expected errors turned into one readable line and an exit code."""

from __future__ import annotations

import click

from creatio_attach import __version__
from creatio_attach.emulator.cli import emulator_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="creatio-attach")
def main() -> None:
    """Move files from folders into Creatio CRM as attachments of the right records."""


main.add_command(emulator_command)
