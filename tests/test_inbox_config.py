"""The daemon's config: inboxes, [defaults], presets, [state], [daemon], [metrics], and `check`.

Real TOML files in a temporary folder; `creatio-attach check` runs as a subprocess against the
emulator over loopback.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from creatio_attach.config import Config, MiB, load_config
from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.errors import ConfigError
from creatio_attach.events import DEFAULT_IGNORE
from creatio_attach.recordings import NAME_FIELDS, RecordingMatcher, Unmatched, parse_call_info
from creatio_attach.settings_models import DEFAULT_DENY_TYPES, DEFAULT_STATE_DIR, parse_listen

REPO = Path(__file__).resolve().parents[1]
ENTRY = shutil.which("creatio-attach", path=str(Path(sys.executable).parent))
HEAD = """
[creatio]
url = "https://acme.creatio.com"
username = "ApiUser"
password = "x"
"""
CASES = """
[[inbox]]
name = "cases"
folder = "/srv/drop/cases"
pattern = '^(?P<number>SR\\d+)[/_ -]'
entity = "CaseFile"
parent = { schema = "Case", where = { Number = "{number}" } }
"""


def load(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> Config:
    cfg = tmp_path / "c.toml"
    cfg.write_text(HEAD + body, encoding="utf-8")
    cfg.chmod(0o600)
    return load_config(cfg, env=env or {})


def problems(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, body, env)
    return list(caught.value.problems)


# --- the example ------------------------------------------------------------------------------


def test_the_example_has_a_document_a_sysfile_and_a_recordings_inbox() -> None:
    config = load_config(REPO / "config" / "example.toml", env={"CREATIO_ATTACH_PASSWORD": "x"})
    by_entity = {i.entity: i for i in config.inboxes}
    cases = by_entity["CaseFile"]
    assert cases.parent is not None and cases.parent.where == {"Number": "{number}"}
    realty = by_entity["SysFile"]
    assert realty.parent is not None
    assert (realty.parent.schema_, realty.parent.id) == ("UsrRealty", "{id}")
    assert realty.max_size == 100 * MiB
    (recordings,) = [i for i in config.inboxes if i.is_recordings]
    assert recordings.preset == "freepbx" and recordings.match is not None
    assert recordings.match.country_code == "1" and recordings.match.time_window == 120.0
    assert recordings.match.call_wait == 180.0
    assert recordings.entity is None and recordings.parent is None
    assert config.metrics is not None and (config.metrics.host, config.metrics.port) == (
        "127.0.0.1",
        9464,
    )


# --- defaults ---------------------------------------------------------------------------------


def test_an_inbox_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, CASES)
    (inbox,) = config.inboxes
    assert inbox.name == "cases" and inbox.folder == Path("/srv/drop/cases")
    assert inbox.pattern is not None and inbox.pattern.search("SR00012/a.pdf")
    assert (inbox.after, inbox.recursive, inbox.watch, inbox.duplicates) == (
        "archive",
        True,
        "auto",
        "skip",
    )
    assert (inbox.settle, inbox.poll_interval, inbox.min_size, inbox.max_size) == (
        2.0,
        2.0,
        1,
        None,
    )
    assert inbox.archive_dir == "{folder}/.archive/{date}"
    assert (inbox.failed_dir, inbox.unmatched_dir) == ("{folder}/.failed", "{folder}/.unmatched")
    assert inbox.ignore == DEFAULT_IGNORE
    assert inbox.types == ()
    assert (inbox.unmatched_retry_every, inbox.unmatched_retry_for) == (300.0, 86400.0)
    assert inbox.name_template is None and inbox.match is None
    issue4 = {
        "application/x-executable",
        "application/x-sharedlib",
        "application/x-pie-executable",
        "application/x-dosexec",
        "application/vnd.microsoft.portable-executable",
        "application/x-mach-binary",
        "text/x-shellscript",
        "application/x-msi",
    }
    assert issue4 <= set(inbox.deny_types) and inbox.deny_types == DEFAULT_DENY_TYPES


def test_defaults_are_merged_under_each_inbox_and_an_inbox_value_wins(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
[defaults]
settle = "5s"
max_size = "8MiB"
after = "keep"
ignore = ["*.bak"]
unmatched_retry = { every = "1m", for = "2h" }
name_template = "{stem} ({inbox}).{ext}"
"""
        + CASES
        + """
[[inbox]]
name = "other"
folder = "/srv/drop/other"
entity = "ContactFile"
parent = { schema = "Contact", id = "{stem}" }
settle = 7
after = "delete"
unmatched_retry = { every = 30 }
""",
    )
    cases, other = config.inboxes
    assert (cases.settle, cases.max_size, cases.after, cases.ignore) == (
        5.0,
        8 * MiB,
        "keep",
        ("*.bak",),
    )
    assert (cases.unmatched_retry_every, cases.unmatched_retry_for) == (60.0, 7200.0)
    assert cases.name_template == "{stem} ({inbox}).{ext}"
    assert (other.settle, other.after, other.max_size) == (7.0, "delete", 8 * MiB)
    # a table given in the inbox replaces the default table whole; its missing keys are built-in
    assert (other.unmatched_retry_every, other.unmatched_retry_for) == (30.0, 86400.0)
    assert config.defaults.settle == 5.0 and config.defaults.min_size == 1


def test_durations_and_sizes_are_parsed(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        CASES
        + 'settle = "1.5s"\npoll_interval = "500ms"\nmin_size = "1KiB"\nmax_size = "2GiB"\n'
        + 'unmatched_retry = { every = "5m", for = "1h30m" }\n',
    )
    (inbox,) = config.inboxes
    assert (inbox.settle, inbox.poll_interval) == (1.5, 0.5)
    assert (inbox.min_size, inbox.max_size) == (1024, 2 * 1024**3)
    assert (inbox.unmatched_retry_every, inbox.unmatched_retry_for) == (300.0, 5400.0)


def test_a_relative_folder_is_taken_from_the_config_files_folder(tmp_path: Path) -> None:
    config = load(tmp_path, CASES.replace('"/srv/drop/cases"', '"drop/../cases"'))
    assert config.inboxes[0].folder == tmp_path / "cases"


# --- presets and call recordings --------------------------------------------------------------


def test_a_preset_fills_the_pattern_and_settles_for_10_seconds(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[defaults]\nsettle = "1s"\nname_template = "{number}"\n'
        + CASES
        + '\n[[inbox]]\nname = "rec"\nfolder = "/var/spool/rec"\npreset = "freepbx"\n',
    )
    cases, rec = config.inboxes
    assert cases.settle == 1.0
    # [defaults] neither shortens a recording's quiet period nor gives it a document Name
    assert rec.settle == 10.0 and rec.name_template is None
    assert rec.is_recordings and rec.rule() is None and rec.entity is None
    assert rec.match is not None and rec.match.steps == (
        "call_by_id",
        "call_by_number",
        "contact_by_number",
    )
    assert rec.pattern is not None
    found = rec.pattern.search("2024/11/28/in-200-5550102030-20241128-101530-1732790400.1234.wav")
    assert found is not None
    assert (found["caller"], found["callee"], found["uniqueid"]) == (
        "5550102030",
        "200",
        "1732790400.1234",
    )


def test_a_recording_inboxs_own_settle_and_match_table_are_used(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """
[[inbox]]
name = "rec"
folder = "/var/spool/rec"
preset = "3cx"
settle = "20s"
[inbox.match]
steps = ["contact_by_number"]
time_window = "3m"
timezone = "Europe/Berlin"
country_code = "+49"
last_digits = 10
contact_target = "activity"
name = "{caller} {date}.{ext}"
""",
    )
    (rec,) = config.inboxes
    assert rec.settle == 20.0 and rec.name_template == "{caller} {date}.{ext}"
    assert rec.match is not None
    assert rec.match.steps == ("contact_by_number",)
    assert (rec.match.time_window, rec.match.timezone, rec.match.country_code) == (
        180.0,
        "Europe/Berlin",
        "49",
    )
    assert (rec.match.last_digits, rec.match.contact_target) == (10, "activity")


def test_a_custom_recording_pattern_with_match_is_a_recording_inbox(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[[inbox]]\nname = "pbx"\nfolder = "/spool"\n'
        "pattern = '(?P<uniqueid>\\d+\\.\\d+)\\.wav$'\n[inbox.match]\n",
    )
    (pbx,) = config.inboxes
    assert pbx.is_recordings and pbx.preset is None and pbx.settle == 10.0


def test_recording_inbox_rules(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
[[inbox]]
name = "a"
folder = "/a"
pattern = '(?P<foo>\\d+)'
[inbox.match]

[[inbox]]
name = "b"
folder = "/b"
preset = "asterisk"
pattern = 'x'
entity = "CaseFile"

[[inbox]]
name = "c"
folder = "/c"
preset = "freepbx"
name_template = "{caller}"
[inbox.match]
name = "{caller} {nope}"
steps = []

[[inbox]]
name = "d"
folder = "/d"
preset = "avaya"
""",
    )
    assert found[0].startswith("inbox[0] (a).pattern: unknown group(s) foo")
    assert any(
        p.startswith("inbox[0] (a).pattern: needs at least one of the groups") for p in found
    )
    assert "inbox[1] (b).pattern: give either a pattern or a preset, not both" in found
    assert (
        "inbox[1] (b).entity: a preset inbox finds its parent by matching calls; drop entity, "
        "or drop the preset"
    ) in found
    assert "inbox[2] (c).match.steps: needs at least one step" in found
    assert (
        'inbox[3] (d).preset: must be one of "asterisk", "freepbx", "freeswitch", "3cx", '
        'got "avaya"'
    ) in found


def test_a_name_template_given_twice_or_with_unknown_fields_is_a_problem(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        '[[inbox]]\nname = "c"\nfolder = "/c"\npreset = "freepbx"\nname_template = "{caller}"\n'
        '[inbox.match]\nname = "{caller} {nope}"\n',
    )
    assert found[0] == (
        "inbox[0] (c).match.name: the record Name template is given twice (name_template and "
        "match.name); keep one"
    )
    assert found[1].startswith("inbox[0] (c).match.name: '{caller} {nope}': unknown field(s) nope")


def test_a_recording_name_may_use_every_recording_field(tmp_path: Path) -> None:
    everything = " ".join(f"{{{f}}}" for f in sorted(NAME_FIELDS))
    assert {"caller_e164", "callee_e164", "matched_by"} <= NAME_FIELDS
    config = load(
        tmp_path,
        f'[[inbox]]\nname = "a"\nfolder = "/a"\npreset = "freepbx"\n[inbox.match]\n'
        f'name = "{everything}"\n\n'
        f'[[inbox]]\nname = "b"\nfolder = "/b"\npreset = "3cx"\n'
        f'name_template = "{{caller_e164}} {{matched_by}} {{callee_e164}}.{{ext}}"\n',
    )
    a, b = config.inboxes
    assert a.name_template == everything
    assert b.name_template == "{caller_e164} {matched_by} {callee_e164}.{ext}"


def test_a_recording_name_may_not_use_a_document_field(tmp_path: Path) -> None:
    # {stem} and {inbox} exist for document inboxes only; a recording's Name has its own fields
    (found,) = problems(
        tmp_path,
        '[[inbox]]\nname = "a"\nfolder = "/a"\npreset = "freepbx"\n'
        'name_template = "{stem} {caller_e164} {inbox}"\n',
    )
    assert found == (
        "inbox[0] (a).name_template: '{stem} {caller_e164} {inbox}': unknown field(s) inbox, "
        "stem; known: " + ", ".join(sorted(NAME_FIELDS))
    )


def test_call_wait_is_a_duration_of_3_minutes_by_default(tmp_path: Path) -> None:
    body = '[[inbox]]\nname = "{n}"\nfolder = "/{n}"\npreset = "freepbx"\n[inbox.match]\n'
    config = load(
        tmp_path,
        body.format(n="a")
        + body.format(n="b")
        + 'call_wait = "90s"\n'
        + body.format(n="c")
        + 'call_wait = "0s"\n',
    )
    waits = [i.match.call_wait if i.match else None for i in config.inboxes]
    assert waits == [180.0, 90.0, 0.0]
    found = problems(
        tmp_path,
        body.format(n="a") + 'call_wait = "soon"\n' + body.format(n="b") + "call_wait = -5\n",
    )
    assert found[0].startswith('inbox[0] (a).match.call_wait: must be a duration like "30s"')
    assert found[1] == "inbox[1] (b).match.call_wait: must not be negative, got -5"


class NoRecords:
    """A Creatio that has no Call and no Contact (the matcher's RecordsClient)."""

    def find_records(self, schema: str, where: Any, **options: Any) -> list[dict[str, Any]]:
        return []

    def create_record(self, schema: str, values: Any, **options: Any) -> dict[str, Any]:
        raise AssertionError(f"nothing to create in {schema}")


@pytest.mark.parametrize(("call_wait", "waits"), [("3m", True), ("0s", False)])
def test_the_matcher_waits_call_wait_for_a_missing_call(
    tmp_path: Path, call_wait: str, waits: bool
) -> None:
    config = load(
        tmp_path,
        '[[inbox]]\nname = "rec"\nfolder = "/rec"\npreset = "freepbx"\n[inbox.match]\n'
        f'steps = ["call_by_number", "contact_by_number"]\ntimezone = "UTC"\n'
        f'call_wait = "{call_wait}"\n',
    )
    (rec,) = config.inboxes
    assert rec.match is not None and rec.pattern is not None
    file_name = "in-200-5550102030-20241128-093000-1732786200.17.wav"
    found = rec.pattern.search(file_name)
    assert found is not None
    info = parse_call_info(found.groupdict(), rec.match)
    one_minute_later = dt.datetime(2024, 11, 28, 9, 31, tzinfo=dt.UTC)
    matcher = RecordingMatcher(NoRecords(), rec.match, clock=lambda: one_minute_later)
    result = matcher.match(info, file_name=file_name)
    assert isinstance(result, Unmatched)
    assert result.waiting_for_call is waits
    if waits:
        assert result.retry_after == 120.0
        assert "waiting until 2024-11-28 09:33:00 UTC for the Call record" in result.reason
    else:
        assert result.tried[-1].startswith("contact_by_number:")


# --- inbox rules ------------------------------------------------------------------------------


def test_required_keys_and_the_entity_parent_or_preset_rule(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
[[inbox]]
folder = "/a"
entity = "CaseFile"

[[inbox]]
name = "b"
parent = { schema = "Case", id = "{stem}" }

[[inbox]]
name = "c"
folder = "/c"
""",
    )
    assert found == [
        "inbox[0].name: required",
        "inbox[0].parent: required with entity",
        "inbox[1] (b).folder: required",
        "inbox[1] (b).entity: required with parent",
        'inbox[2] (c): needs entity + parent (e.g. entity = "CaseFile", parent = { schema = '
        '"Case", where = { Number = "{number}" } }), or a preset (asterisk, freepbx, '
        "freeswitch, 3cx)",
    ]


def test_names_must_be_unique_and_safe(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        CASES
        + CASES.replace("/srv/drop/cases", "/srv/drop/two")
        + CASES.replace('"cases"', '"../etc"').replace("/srv/drop/cases", "/srv/drop/three"),
    )
    assert found == [
        "inbox[1] (cases).name: 'cases' is already the name of inbox[0] (cases)",
        "inbox[2].name: must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter "
        'or digit, got "../etc"',
    ]


def test_parent_needs_exactly_one_of_where_and_id_and_templates_know_their_fields(
    tmp_path: Path,
) -> None:
    body = CASES.replace(
        'parent = { schema = "Case", where = { Number = "{number}" } }',
        'parent = { schema = "Case", id = "{id}", where = { Number = "{numbr}" } }\n'
        'name_template = "{number} {file:>9}"',
    )
    found = problems(tmp_path, body)
    assert found == [
        "inbox[0] (cases).parent: give exactly one of 'where' and 'id'",
        "inbox[0] (cases).parent.id: '{id}': unknown field(s) id; known: date, dir, ext, file, "
        "inbox, number, path, stem, time",
        "inbox[0] (cases).parent.where.Number: '{numbr}': unknown field(s) numbr; known: date, "
        "dir, ext, file, inbox, number, path, stem, time",
        "inbox[0] (cases).name_template: '{number} {file:>9}': field {file} may not have a "
        "conversion or format spec",
    ]


def test_a_bad_regex_is_a_problem_of_its_key(tmp_path: Path) -> None:
    found = problems(tmp_path, CASES + CASES.replace("SR\\d+)", "SR\\d+").replace("cases", "two"))
    assert found == [
        "inbox[1] (two).pattern: not a valid regular expression: missing ), unterminated "
        "subpattern at position 1"
    ]


def test_choices_and_types_are_checked(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        CASES
        + 'watch = "fanotify"\nduplicates = "maybe"\nafter = "move"\nrecursive = "yes"\n'
        + 'types = ["pdf"]\nignore = ["a/b"]\nmax_size = "1KiB"\nmin_size = "2KiB"\n'
        + 'poll_interval = 0\nsttle = "1s"\n',
    )
    assert found == [
        'inbox[0] (cases).watch: must be one of "auto", "inotify", "poll", got "fanotify"',
        'inbox[0] (cases).duplicates: must be one of "skip", "upload", got "maybe"',
        'inbox[0] (cases).after: must be one of "archive", "delete", "keep", got "move"',
        'inbox[0] (cases).recursive: must be true or false, got "yes"',
        'inbox[0] (cases).types: "pdf" is not a MIME type or glob like "audio/*"',
        'inbox[0] (cases).ignore: each glob must be a non-empty file name pattern like "*.tmp"',
        # a rule between keys, found although other keys of the table are in error
        "inbox[0] (cases).max_size: is smaller than min_size (1024 < 2048 bytes)",
        "inbox[0] (cases).poll_interval: must be more than 0 seconds, got 0",
        'inbox[0] (cases).sttle: unknown key in [inbox[0] (cases)] (did you mean "settle"?)',
    ]
    assert problems(tmp_path, CASES + 'max_size = "1KiB"\nmin_size = "2KiB"\n') == [
        "inbox[0] (cases).max_size: is smaller than min_size (1024 < 2048 bytes)"
    ]


def test_folders_may_not_collide(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        CASES
        + CASES.replace('"cases"', '"same"')
        + CASES.replace('"cases"', '"inside"').replace(
            "/srv/drop/cases", "/srv/drop/cases/.failed/x"
        )
        + CASES.replace('"cases"', '"archived"').replace(
            "/srv/drop/cases", "/srv/drop/cases/.archive"
        ),
    )
    assert found == [
        "inbox[1] (same).folder: the same folder as inbox[0] (cases): /srv/drop/cases",
        "inbox[2] (inside).folder: /srv/drop/cases/.failed/x is inside the failed_dir of "
        "inbox[0] (cases) (/srv/drop/cases/.failed); files there are never taken",
        "inbox[2] (inside).folder: /srv/drop/cases/.failed/x is inside the failed_dir of "
        "inbox[1] (same) (/srv/drop/cases/.failed); files there are never taken",
        "inbox[3] (archived).folder: /srv/drop/cases/.archive is inside the archive_dir of "
        "inbox[0] (cases) (/srv/drop/cases/.archive); files there are never taken",
        "inbox[3] (archived).folder: /srv/drop/cases/.archive is inside the archive_dir of "
        "inbox[1] (same) (/srv/drop/cases/.archive); files there are never taken",
    ]


def test_folder_templates_are_checked(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        CASES
        + 'archive_dir = "{folder}/{date}"\nfailed_dir = "failed"\n'
        + 'unmatched_dir = "{folder}/{date}/x"\n',
    )
    assert found == [
        "inbox[0] (cases).archive_dir: '{folder}/{date}' would take in the inbox folder itself; "
        'give it a folder of its own, e.g. "{folder}/.archive/{date}"',
        'inbox[0] (cases).failed_dir: must be an absolute path or start with "{folder}"',
        "inbox[0] (cases).unmatched_dir: {date} may only be in the last folder of the path",
    ]
    assert problems(tmp_path, CASES + 'failed_dir = "{folder}/{day}"\n') == [
        "inbox[0] (cases).failed_dir: '{folder}/{day}': unknown field(s) day; known: date, folder"
    ]


def test_the_settings_give_concrete_folders_and_a_watch_spec(tmp_path: Path) -> None:
    config = load(tmp_path, CASES + 'archive_dir = "/srv/archive/cases/{date}"\n')
    (inbox,) = config.inboxes
    assert inbox.folder_for("archive", "2026-11-28") == Path("/srv/archive/cases/2026-11-28")
    assert inbox.folder_for("failed", "2026-11-28") == Path("/srv/drop/cases/.failed")
    assert inbox.excluded_folders() == (
        Path("/srv/archive/cases"),
        Path("/srv/drop/cases/.failed"),
        Path("/srv/drop/cases/.unmatched"),
    )
    spec = inbox.watch_spec(60.0, [Path("/srv/drop/cases/nested")])
    assert spec.inbox == "cases" and spec.rescan_every == 60.0
    assert spec.excluded[-1] == Path("/srv/drop/cases/nested")
    rule = inbox.rule()
    assert rule is not None and rule.parent_where == {"Number": "{number}"}


def test_defaults_problems_are_reported_under_defaults(tmp_path: Path) -> None:
    found = problems(tmp_path, '[defaults]\nsettle = "soon"\nname = "x"\n' + CASES)
    assert found == [
        'defaults.settle: must be a duration like "30s" or "5m", got "soon"',
        'defaults.name: unknown key in [defaults] (did you mean "name_template"?)',
    ]


# --- [state], [daemon], [metrics] -------------------------------------------------------------


def test_state_dir_defaults_follow_systemd_and_relative_paths(tmp_path: Path) -> None:
    assert load(tmp_path, "").state.dir == DEFAULT_STATE_DIR
    from_systemd = load(tmp_path, "", env={"STATE_DIRECTORY": "/var/lib/ca:/var/lib/other"})
    assert from_systemd.state.dir == Path("/var/lib/ca")
    written = load(tmp_path, '[state]\ndir = "journal"\n', env={"STATE_DIRECTORY": "/x"})
    assert written.state.dir == tmp_path / "journal"
    assert problems(tmp_path, '[state]\ndir = " "\n') == ["state.dir: must not be empty"]


def test_daemon_settings_parse_and_are_cross_checked(tmp_path: Path) -> None:
    daemon = load(tmp_path, "").daemon
    assert (daemon.grace, daemon.rescan_every, daemon.retry_base) == (30.0, 300.0, 2.0)
    assert (daemon.retry_cap, daemon.unreachable_limit) == (600.0, 3600.0)
    daemon = load(
        tmp_path, '[daemon]\ngrace = "1m"\nrescan_every = 0\nunreachable_limit = "2h"\n'
    ).daemon
    assert (daemon.grace, daemon.rescan_every, daemon.unreachable_limit) == (60.0, 0.0, 7200.0)
    assert problems(
        tmp_path, '[daemon]\nretry_base = "1m"\nretry_cap = "30s"\nretry_basis = 1\n'
    ) == [
        "daemon.retry_cap: must not be less than retry_base (30 s < 60 s)",
        'daemon.retry_basis: unknown key in [daemon] (did you mean "retry_base"?)',
    ]


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:9464", "127.0.0.1", 9464),
        ("[::1]:9464", "::1", 9464),
        ("0.0.0.0:0", "0.0.0.0", 0),
        ("localhost:80", "localhost", 80),
    ],
)
def test_metrics_listen_is_host_and_port(tmp_path: Path, listen: str, host: str, port: int) -> None:
    metrics = load(tmp_path, f'[metrics]\nlisten = "{listen}"\n').metrics
    assert metrics is not None and (metrics.host, metrics.port) == (host, port)
    assert parse_listen(metrics.listen) == (host, port)


@pytest.mark.parametrize("bad", ["9464", "::1:9464", "host:99999", "a b:1"])
def test_a_bad_metrics_listen_is_a_problem(tmp_path: Path, bad: str) -> None:
    (problem,) = problems(tmp_path, f'[metrics]\nlisten = "{bad}"\n')
    assert problem.startswith("metrics.listen: ")


def test_no_metrics_table_means_no_metrics(tmp_path: Path) -> None:
    assert load(tmp_path, "").metrics is None
    assert problems(tmp_path, "[metrics]\n") == ["metrics.listen: required"]


# --- every problem at once --------------------------------------------------------------------


def test_every_problem_of_every_table_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        """
[creatio]
url = "acme"
username = "u"
password = "x"

[daemon]
grace = "soon"

[defaults]
settle = "never"

[[inbox]]
name = "one"
folder = "/one"
pattern = '(?P<n>'
entity = "CaseFile"
parent = { schema = "Case", where = { Number = "{n}" } }

[[inbox]]
name = "two"
folder = "/one"
entity = "CaseFile"

[metrics]
listen = "nowhere"
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(cfg, env={})
    assert caught.value.path == str(cfg)
    assert caught.value.problems == [
        'creatio.url: must be a URL like "https://acme.creatio.com", got "acme"',
        'daemon.grace: must be a duration like "30s" or "5m", got "soon"',
        'defaults.settle: must be a duration like "30s" or "5m", got "never"',
        "inbox[0] (one).pattern: not a valid regular expression: missing ), unterminated "
        "subpattern at position 0",
        # found although both inboxes have other problems: every problem at once
        "inbox[1] (two).folder: the same folder as inbox[0] (one): /one",
        "inbox[1] (two).parent: required with entity",
        'metrics.listen: must be HOST:PORT like "127.0.0.1:9464" or "[::1]:9464", got "nowhere"',
    ]


def test_a_key_in_error_does_not_hide_the_other_problems_of_its_inbox(tmp_path: Path) -> None:
    """A wrong type or an unknown key used to stop the checks of its inbox there: the
    templates, the folders and the other inboxes were only checked in a later round."""
    cfg = tmp_path / "mask.toml"
    cfg.write_text(
        """
[creatio]
url = "https://acme.creatio.com"
username = "u"
password = "x"

[[inbox]]
name = "cases"
folder = "/srv/cases"
settle = "never"
sttle = "1s"
pattern = '^(?P<number>SR\\d+)_'
entity = "CaseFile"
parent = { schema = "Case", where = { Number = "{numbr}" } }
archive_dir = "{folder}/{dat}"

[[inbox]]
name = "inner"
folder = "/srv/cases/.failed/x"
entity = "CaseFile"
parent = { schema = "Case", id = "{file}" }
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(cfg, env={})
    found = caught.value.problems
    assert len(found) == 5, found
    assert found[0] == 'inbox[0] (cases).settle: must be a duration like "30s" or "5m", got "never"'
    assert found[1].startswith("inbox[0] (cases).sttle: unknown key")
    assert found[2].startswith("inbox[0] (cases).parent.where.Number: '{numbr}': unknown field")
    assert found[3].startswith("inbox[0] (cases).archive_dir: ")
    assert found[4].startswith(
        "inbox[1] (inner).folder: /srv/cases/.failed/x is inside the failed_dir of inbox[0]"
    )


# --- `creatio-attach check` with inboxes, against the emulator --------------------------------


def _check_env() -> dict[str, str]:
    drop = ("CREATIO_ATTACH", "CREDENTIALS_DIRECTORY", "JOURNAL_STREAM", "STATE_DIRECTORY")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _site(tmp_path: Path, url: str, inboxes: str) -> Path:
    (tmp_path / "password").write_text("Supervisor\n", encoding="utf-8")
    (tmp_path / "password").chmod(0o600)
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[creatio]\nurl = "{url}"\nusername = "Supervisor"\npassword_file = "password"\n'
        f'[state]\ndir = "state"\n' + inboxes,
        encoding="utf-8",
    )
    cfg.chmod(0o600)
    for name in ("cases", "realty", "recordings"):
        (tmp_path / name).mkdir(exist_ok=True)
    return cfg


SITE_INBOXES = """
[[inbox]]
name = "cases"
folder = "cases"
pattern = '^(?P<number>SR\\d+)'
entity = "CaseFile"
parent = { schema = "Case", where = { Number = "{number}" } }

[[inbox]]
name = "realty"
folder = "realty"
pattern = '^(?P<id>[0-9a-f-]{36})/'
entity = "SysFile"
parent = { schema = "UsrRealty", id = "{id}" }

[[inbox]]
name = "recordings"
folder = "recordings"
preset = "asterisk"
[inbox.match]
contact_target = "activity"
"""


def _run_check(cfg: Path) -> Any:
    assert ENTRY, "creatio-attach is not installed next to this Python"
    return subprocess.run(
        [ENTRY, "check", "--config", str(cfg), "--entity", "CaseFile"],
        capture_output=True,
        text=True,
        env=_check_env(),
        timeout=120,
    )


def test_check_passes_for_a_config_with_inboxes(
    emulator_factory: Callable[..., EmbeddedEmulator], tmp_path: Path
) -> None:
    emu = emulator_factory(custom_schemas=("UsrRealty",), users={"Supervisor": "Supervisor"})
    done = _run_check(_site(tmp_path, emu.url, SITE_INBOXES))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert f"✓ inbox cases: {tmp_path / 'cases'} is writable; CaseFile; after upload: archive" in (
        lines
    )
    assert (
        f"✓ inbox recordings: {tmp_path / 'recordings'} is writable; preset asterisk; "
        "after upload: archive" in lines
    )
    assert "✓ inbox cases: CaseFile of Case.Number in $metadata" in lines
    assert "✓ inbox realty: SysFile of UsrRealty.Id in $metadata" in lines
    assert (
        "✓ inbox recordings: Call, CallFile, Contact, ContactCommunication, Activity, "
        "ActivityFile in $metadata"
    ) in lines
    assert "Supervisor\n" not in done.stderr


def test_check_fails_clearly_for_a_missing_file_object_column_or_folder(
    emulator_factory: Callable[..., EmbeddedEmulator], tmp_path: Path
) -> None:
    emu = emulator_factory(users={"Supervisor": "Supervisor"})  # no UsrRealty on this site
    inboxes = (
        SITE_INBOXES.replace('"CaseFile"', '"UsrTicketFile"').replace("{ Number =", "{ Nummer =")
        + '\n[[inbox]]\nname = "gone"\nfolder = "gone"\nentity = "CaseFile"\n'
        + ('parent = { schema = "Case", id = "{stem}" }\n')
    )
    done = _run_check(_site(tmp_path, emu.url, inboxes))
    assert done.returncode != 0
    lines = done.stdout.splitlines()
    assert f"✗ inbox gone: {tmp_path / 'gone'} does not exist" in lines
    assert (
        "✗ inbox cases: file object UsrTicketFile is not in $metadata; Case has no column Nummer"
    ) in lines
    assert "✗ inbox realty: parent schema UsrRealty is not in $metadata" in lines
    assert re.search(
        r"^creatio-attach: 3 of \d+ checks failed: inbox gone, inbox cases, inbox "
        r"realty$",
        done.stderr,
        re.M,
    ), done.stderr
