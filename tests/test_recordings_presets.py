"""Presets: real-looking spool file names of each PBX parse into the right CallInfo."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from creatio_attach.errors import ConfigError, FileRefused
from creatio_attach.recordings import (
    CallInfo,
    default_record_name,
    name_template_problems,
    parse_call_info,
    pattern_problems,
    preset_names,
    preset_pattern,
    timezone_problem,
)

UTC = dt.UTC


@dataclass(frozen=True)
class Settings:
    timezone: str = "UTC"
    country_code: str | None = "1"


def parse(preset: str, path: str, settings: Settings | None = None, **metadata: str) -> CallInfo:
    m = preset_pattern(preset).search(path)
    assert m is not None, f"{preset} does not match {path!r}"
    return parse_call_info(m.groupdict(), settings or Settings(), metadata=metadata)


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_every_documented_preset_exists() -> None:
    assert set(preset_names()) == {"asterisk", "freepbx", "freeswitch", "3cx"}
    with pytest.raises(ConfigError) as caught:
        preset_pattern("avaya")
    assert "asterisk" in (caught.value.hint or "")


@pytest.mark.parametrize("path", ["1732790400.1234.wav", "2024/11/28/1732790400.1234.wav"])
def test_asterisk_mixmonitor_default_name_gives_the_unique_id_with_its_dot(path: str) -> None:
    info = parse("asterisk", path)
    assert info.uniqueid == "1732790400.1234"
    assert info.call_ids == ("1732790400.1234",)
    assert info.ext == "wav"
    # the unique id starts with the call's start in Unix seconds
    assert info.start == at(2024, 11, 28, 10, 40, 0)
    assert info.direction == "unknown"
    assert info.caller == info.callee == ""


@pytest.mark.parametrize(
    ("path", "direction", "caller", "callee"),
    [
        (
            "in-5551234567-+15550102030-20241128-093000-1732790400.1234.wav",
            "inbound",
            "+15550102030",
            "5551234567",
        ),
        (
            "2024/11/28/out-0015550102030-201-20241128-093000-1732790400.99.wav",
            "outbound",
            "201",
            "0015550102030",
        ),
        (
            "external-5550102030-201-20241128-093000-1732790400.5.WAV",
            "outbound",
            "201",
            "5550102030",
        ),
        ("internal-202-201-20241128-093000-1732790400.7.wav", "internal", "201", "202"),
        ("q-600-5550102030-20241128-093000-1732790400.8.wav", "inbound", "5550102030", "600"),
        ("exten-201-5550102030-20241128-093000-1732790400.9.gsm", "unknown", "5550102030", "201"),
    ],
)
def test_freepbx_names_give_direction_numbers_start_and_unique_id(
    path: str, direction: str, caller: str, callee: str
) -> None:
    info = parse("freepbx", path)
    assert info.direction == direction
    assert (info.caller, info.callee) == (caller, callee)
    assert info.start == at(2024, 11, 28, 9, 30, 0)
    assert re.fullmatch(r"1732790400\.\d+", info.uniqueid)


def test_freepbx_withheld_and_empty_caller_ids_are_no_number() -> None:
    empty = parse("freepbx", "2024/11/28/in-5551234567--20241128-093000-1732790400.1.wav")
    anonymous = parse("freepbx", "in-5551234567-anonymous-20241128-093000-1732790400.2.wav")
    for info in (empty, anonymous):
        assert info.caller == "" and info.caller_e164 == ""
        assert info.callee_e164 == "+15551234567"
        assert info.external() == ()  # inbound: the caller is the party to look up


def test_freepbx_dated_subfolder_nested_anywhere_below_the_inbox() -> None:
    m = preset_pattern("freepbx").search(
        "monitor/2024/11/28/in-5551234567-5550102030-20241128-093000-1732790400.1.wav"
    )
    assert m is not None
    assert (m["year"], m["month"], m["day"]) == ("2024", "11", "28")


@pytest.mark.parametrize(
    "path",
    [
        "notes.txt",
        "in-5551234567-5550102030-2024-093000-1.wav",  # date too short
        "in-555-555-20241128-093000-1732790400.1.wav.part",
        "2024/11/28/",
    ],
)
def test_freepbx_ignores_names_that_are_not_recordings(path: str) -> None:
    assert preset_pattern("freepbx").search(path) is None


def test_freeswitch_uuid_name_in_a_dated_folder() -> None:
    info = parse("freeswitch", "2024/11/28/3f2504e0-4f89-11d3-9a0c-0305e82c3301.wav")
    assert info.uniqueid == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    assert info.start is None  # a UUID says nothing about the time
    assert preset_pattern("freeswitch").search("3f2504e0-4f89-11d3.wav") is None


def test_3cx_name_with_brackets_and_parentheses_in_the_display_name() -> None:
    info = parse(
        "3cx",
        "Recordings/101/[Bob Smith (Sales) - West]_+15550102030-101_20241128093000(00012345).wav",
    )
    assert info.name == "Bob Smith (Sales) - West"
    assert (info.caller, info.callee) == ("+15550102030", "101")
    assert info.callid == "00012345"
    assert info.call_ids == ("00012345",)
    assert info.start == at(2024, 11, 28, 9, 30, 0)
    assert info.direction == "unknown"
    assert info.external() == (("caller", "+15550102030"), ("callee", "101"))


def test_3cx_outbound_style_name() -> None:
    info = parse("3cx", "[John Doe]_100-0015550102030_20200316155508(157).mp3")
    assert (info.caller, info.callee_e164, info.callid, info.ext) == (
        "100",
        "+15550102030",
        "157",
        "mp3",
    )


def test_submit_metadata_overrides_and_completes_the_name() -> None:
    info = parse(
        "freeswitch",
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301.wav",
        caller="+1 555 010 2030",
        direction="in",
        start="2024-11-28T09:30:00Z",
    )
    assert info.uniqueid == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    assert info.caller_e164 == "+15550102030"
    assert info.direction == "inbound"
    assert info.start == at(2024, 11, 28, 9, 30)
    other = parse("asterisk", "1732790400.1234.wav", uniqueid="1732790400.1235")
    assert other.uniqueid == "1732790400.1235"


def test_custom_pattern_with_the_shared_groups_and_uuid_alias() -> None:
    pattern = re.compile(r"(?P<uuid>[0-9a-f-]{36})_(?P<caller>\d+)\.(?P<ext>\w+)$")
    assert pattern_problems(pattern) == []
    m = pattern.search("3f2504e0-4f89-11d3-9a0c-0305e82c3301_5550102030.wav")
    assert m is not None
    info = parse_call_info(m.groupdict(), Settings())
    assert info.uniqueid == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    assert info.caller_e164 == "+15550102030"


def test_custom_pattern_problems_are_reported() -> None:
    assert pattern_problems(re.compile(r"(?P<number>\d+)\.wav"))  # unknown group, no id
    assert pattern_problems(re.compile(r"(?P<date>\d{8})\.wav"))  # nothing to match with


def test_a_date_group_that_is_no_date_refuses_the_file() -> None:
    with pytest.raises(FileRefused) as caught:
        parse_call_info({"caller": "5550102030", "date": "20241331", "time": "093000"}, Settings())
    assert caught.value.reason == "bad_recording_name"


# -- time zones ------------------------------------------------------------------------------

NAME = "in-5551234567-5550102030-{d}-{t}-1732790400.1.wav"


def start_of(d: str, t: str, timezone: str) -> dt.datetime | None:
    return parse("freepbx", NAME.format(d=d, t=t), Settings(timezone=timezone)).start


def test_utc_and_iana_zones() -> None:
    assert start_of("20240701", "120000", "UTC") == at(2024, 7, 1, 12)
    berlin = start_of("20240701", "120000", "Europe/Berlin")
    assert berlin is not None and berlin.utcoffset() == dt.timedelta(hours=2)
    assert berlin == at(2024, 7, 1, 10)
    assert start_of("20240101", "120000", "Europe/Berlin") == at(2024, 1, 1, 11)


def test_dst_edges_in_new_york() -> None:
    # 01:30 happens twice on 2024-11-03: the first (EDT) is taken
    assert start_of("20241103", "013000", "America/New_York") == at(2024, 11, 3, 5, 30)
    # 02:30 does not exist on 2024-03-10: the offset before the change (EST) is kept
    assert start_of("20240310", "023000", "America/New_York") == at(2024, 3, 10, 7, 30)
    assert start_of("20240310", "033000", "America/New_York") == at(2024, 3, 10, 7, 30)


def test_asterisk_epoch_is_shown_in_the_configured_zone() -> None:
    info = parse("asterisk", "1732790400.1234.wav", Settings(timezone="Asia/Tokyo"))
    assert info.start == at(2024, 11, 28, 10, 40)
    assert info.start is not None and info.start.hour == 19
    assert default_record_name(info) == "unknown -> unknown 2024-11-28 19-40-00.wav"


@pytest.fixture
def local_zone_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_zone_new_york")
def test_local_zone_follows_the_system_including_dst() -> None:
    assert start_of("20240701", "120000", "local") == at(2024, 7, 1, 16)
    assert start_of("20240101", "120000", "local") == at(2024, 1, 1, 17)
    assert start_of("20241103", "013000", "local") == at(2024, 11, 3, 5, 30)


def test_unknown_zone_is_a_config_problem() -> None:
    assert timezone_problem("Mars/Olympus_Mons") is not None
    assert timezone_problem("local") is None
    assert timezone_problem("UTC") is None
    assert timezone_problem("America/Sao_Paulo") is None
    with pytest.raises(ConfigError):
        start_of("20240701", "120000", "Nowhere/Else")


# -- record names ----------------------------------------------------------------------------


def test_default_record_name_and_templates() -> None:
    info = parse("freepbx", "in-5551234567-+15550102030-20241128-093000-1732790400.1.wav")
    assert default_record_name(info) == "+15550102030 -> 5551234567 2024-11-28 09-30-00.wav"
    assert default_record_name(info, ext="mp3").endswith(".mp3")
    assert (
        default_record_name(info, template="{direction} {caller_e164} {uniqueid}.{ext}")
        == "inbound +15550102030 1732790400.1.wav"
    )
    assert name_template_problems("{caller} {nope}")
    assert name_template_problems("{caller.__class__}")
    assert name_template_problems("{caller} -> {callee} {date} {time}.{ext}") == []


# -- the config's preset patterns parse the same ----------------------------------------------

SAMPLES = {
    "asterisk": "2024/11/28/1732790400.1234.wav",
    "freepbx": "2024/11/28/in-5551234567-+15550102030-20241128-093000-1732790400.1234.wav",
    "freeswitch": "2024/11/28/3f2504e0-4f89-11d3-9a0c-0305e82c3301.wav",
    "3cx": "[Bob Smith (Sales)]_+15550102030-101_20241128093000(00012345).wav",
}


@pytest.mark.parametrize("preset", sorted(SAMPLES))
def test_the_patterns_the_config_fills_in_give_the_same_call_info(preset: str) -> None:
    from creatio_attach.settings_models import PRESETS as CONFIG_PRESETS

    config_match = re.search(CONFIG_PRESETS[preset].pattern, SAMPLES[preset])
    assert config_match is not None
    from_config = parse_call_info(config_match.groupdict(), Settings())
    ours = parse(preset, SAMPLES[preset])
    assert from_config.start == ours.start
    assert from_config.call_ids == ours.call_ids
    assert (from_config.caller_e164, from_config.callee_e164) == (
        ours.caller_e164,
        ours.callee_e164,
    )
    assert from_config.direction == ours.direction
    assert default_record_name(from_config) == default_record_name(ours)


def test_only_the_pattern_groups_are_read_when_the_daemon_passes_all_its_fields() -> None:
    from creatio_attach.settings_models import PRESETS as CONFIG_PRESETS

    daemon_fields = {
        "path": "2024/11/28/1732790400.1234.wav",
        "file": "1732790400.1234.wav",
        "stem": "1732790400.1234",
        "ext": "wav",
        "inbox": "recordings",
        "date": "2026-11-28",  # when the daemon found the file, not the call
        "time": "15-11-25",
    }
    for preset in ("asterisk", "freepbx"):
        path = SAMPLES[preset]
        pattern = re.compile(CONFIG_PRESETS[preset].pattern)
        found = pattern.search(path)
        assert found is not None
        fields = {**daemon_fields, "path": path}
        fields.update({k: v for k, v in found.groupdict().items() if v is not None})
        info = parse_call_info(fields, Settings(), groups=pattern.groupindex)
        assert info.start == parse(preset, path).start
        assert info.start is not None and info.start.year == 2024
    # a name without a start time keeps the daemon's date and time in the record Name
    fs = parse("freeswitch", SAMPLES["freeswitch"])
    assert (
        default_record_name(fs, template="{date} {time} {stem}.{ext}", extra=daemon_fields)
        == "2026-11-28 15-11-25 1732790400.1234.wav"
    )


def test_matched_by_and_the_daemon_fields_render_in_a_record_name() -> None:
    info = parse("freepbx", "in-5551234567-+15550102030-20241128-093000-1732790400.1.wav")
    daemon = {"file": "call.wav", "stem": "call", "inbox": "rec", "matched_by": "stale"}
    template = "{stem} {matched_by} {inbox} {date}.{ext}"
    assert (
        default_record_name(info, template=template, extra=daemon, matched_by="call_by_number")
        == "call call_by_number rec 2024-11-28.wav"
    )
    # not given: empty, and the tidying leaves no double space
    assert default_record_name(info, template=template, extra=daemon) == "call rec 2024-11-28.wav"
