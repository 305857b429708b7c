"""The matching chain against the emulator over real HTTP, with the real CreatioClient."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from creatio_attach.adapters import RecordingsParentMatcher
from creatio_attach.config import CreatioSettings, InboxSettings, load_config
from creatio_attach.creatio import Condition, CreatioClient, RetryPolicy, Target
from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.errors import ConfigError, ParentAmbiguous
from creatio_attach.ports import MatchRequest, local_date, local_time
from creatio_attach.recordings import (
    CallInfo,
    Match,
    RecordingMatcher,
    Unmatched,
    default_record_name,
    parse_call_info,
    preset_pattern,
)
from creatio_attach.recordings.matcher import (
    ACTIVITY_CATEGORY_CALL,
    ACTIVITY_STATUS_DONE,
    ACTIVITY_TYPE_CALL,
    COMMUNICATION_TYPE_EMAIL,
)
from creatio_attach.routing import path_fields
from tests.conftest import CorpusFile
from tests.daemon_helpers import Site

UTC = dt.UTC
START = dt.datetime(2024, 11, 28, 9, 30, tzinfo=UTC)
LATER = START + dt.timedelta(days=1)  # "now" for tests that do not test waiting
PHONE = "3dddb3cc-53ee-49c4-a71f-e9e257f59e49"
MOBILE = "d4a2dc80-30ca-df11-9b2a-001d60e938c6"
FAST = RetryPolicy(attempts=3, backoff_base=0.01, backoff_cap=0.05, max_retry_after=5.0)


@dataclass(frozen=True)
class MatchSettings:
    """The attributes of config.MatchSettings the matcher reads."""

    steps: tuple[str, ...] = ("call_by_id", "call_by_number", "contact_by_number")
    time_window: float = 120.0
    timezone: str = "UTC"
    country_code: str | None = "1"
    last_digits: int = 9
    contact_target: str = "ContactFile"
    call_wait: float = 180.0


@pytest.fixture
def client(emulator: EmbeddedEmulator) -> Iterator[CreatioClient]:
    settings = CreatioSettings(
        url=emulator.url,
        runtime="auto",
        username="Supervisor",
        password=SecretStr("Supervisor"),
        timeout=30.0,
        connect_timeout=5.0,
    )
    with CreatioClient(settings, retry=FAST) as c:
        yield c


def seed(emu: EmbeddedEmulator, entity: str, **row: Any) -> str:
    response = requests.post(f"{emu.url}/__emulator__/records/{entity}", json=row, timeout=10)
    assert response.status_code == 201, response.text
    body = response.json()
    return str((body[0] if isinstance(body, list) else body)["Id"])


def contact(emu: EmbeddedEmulator, name: str, *numbers: str, **columns: Any) -> str:
    contact_id = seed(emu, "Contact", Name=name, **columns)
    for number in numbers:
        seed(
            emu,
            "ContactCommunication",
            ContactId=contact_id,
            CommunicationTypeId=PHONE,
            Number=number,
        )
    return contact_id


def call(emu: EmbeddedEmulator, *, start: dt.datetime = START, **columns: Any) -> str:
    when = start.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return seed(emu, "Call", StartDate=when, **columns)


def matcher_for(
    client: CreatioClient, now: dt.datetime = LATER, **settings: Any
) -> RecordingMatcher:
    return RecordingMatcher(
        client, replace(MatchSettings(), **settings), condition=Condition, clock=lambda: now
    )


def info(**values: str) -> CallInfo:
    values.setdefault("date", "20241128")
    values.setdefault("time", "093000")
    values.setdefault("ext", "wav")
    return parse_call_info(values, MatchSettings())


def freepbx(name: str, **metadata: str) -> CallInfo:
    m = preset_pattern("freepbx").search(name)
    assert m is not None
    return parse_call_info(m.groupdict(), MatchSettings(), metadata=metadata)


def matched(result: Match | Unmatched) -> Match:
    assert isinstance(result, Match), result
    return result


# -- call_by_id ------------------------------------------------------------------------------


def test_call_by_unique_id_with_a_dot_goes_to_call_file(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    call(emulator, IntegrationId="1732790400.1233", CallerId="5550102030")
    wanted = call(emulator, IntegrationId="1732790400.1234", CallerId="5550102030")
    rec = freepbx("2024/11/28/in-5551234567-5550102030-20241128-093000-1732790400.1234.wav")
    m = matched(matcher_for(client).match(rec, file_name="x.wav"))
    assert (m.file_object, m.parent_schema, m.parent_id) == ("CallFile", "Call", wanted)
    assert m.matched_by == "call_by_id"
    assert m.record_name_fields["caller"] == "5550102030"
    assert m.record_name_fields["matched_by"] == "call_by_id"


def test_call_by_id_uses_the_unique_id_passed_by_submit(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    wanted = call(emulator, IntegrationId="3f2504e0-4f89-11d3-9a0c-0305e82c3301")
    m = preset_pattern("freeswitch").search("rec-0001.wav")
    assert m is None  # the file name says nothing; submit --set does
    rec = parse_call_info(
        {"ext": "wav"},
        MatchSettings(),
        metadata={"uniqueid": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"},
    )
    result = matched(matcher_for(client).match(rec, file_name="rec-0001.wav"))
    assert result.parent_id == wanted


def test_two_calls_with_the_same_pbx_id_are_ambiguous(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    a = call(emulator, IntegrationId="1732790400.1")
    b = call(emulator, IntegrationId="1732790400.1")
    with pytest.raises(ParentAmbiguous) as caught:
        matcher_for(client).match(info(uniqueid="1732790400.1"), file_name="x.wav")
    assert sorted(caught.value.candidates) == sorted([a, b])


# -- call_by_number --------------------------------------------------------------------------


def test_call_by_number_finds_the_call_within_the_window_whatever_the_format(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    wanted = call(
        emulator,
        start=START + dt.timedelta(seconds=70),
        CallerId="+1 (555) 010-2030",
        CalledId="5551234567",
    )
    call(emulator, start=START + dt.timedelta(seconds=5), CallerId="5550109999")  # other caller
    call(emulator, start=START + dt.timedelta(minutes=5), CallerId="5550102030")  # too late
    rec = freepbx("in-5551234567-0015550102030-20241128-093000-1732790400.55.wav")
    m = matched(matcher_for(client).match(rec, file_name="x.wav"))
    assert (m.parent_id, m.matched_by, m.file_object) == (wanted, "call_by_number", "CallFile")


def test_call_by_number_outside_the_window_falls_through_to_the_contact(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    call(emulator, start=START - dt.timedelta(minutes=3), CallerId="5550102030")
    person = contact(emulator, "Ann Caller", "555-010-2030")
    rec = info(direction="in", caller="+15550102030", callee="201")
    m = matched(matcher_for(client).match(rec, file_name="x.wav"))
    assert (m.parent_id, m.matched_by, m.file_object) == (
        person,
        "contact_by_number",
        "ContactFile",
    )
    wider = matched(matcher_for(client, time_window=240).match(rec, file_name="x.wav"))
    assert wider.matched_by == "call_by_number"


def test_the_closest_call_wins_and_an_exact_tie_is_ambiguous(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    near = call(emulator, start=START + dt.timedelta(seconds=10), CallerId="5550102030")
    call(emulator, start=START + dt.timedelta(seconds=90), CallerId="5550102030")
    rec = info(direction="in", caller="5550102030", callee="201")
    assert matched(matcher_for(client).match(rec, file_name="x.wav")).parent_id == near
    call(emulator, start=START - dt.timedelta(seconds=10), CallerId="5550102030")
    with pytest.raises(ParentAmbiguous):
        matcher_for(client).match(rec, file_name="x.wav")


def test_outbound_call_is_matched_on_the_dialled_number(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    # the CTI wrote the extension's DID as caller; only the external party must agree
    wanted = call(emulator, CallerId="+15551234567", CalledId="+1 555 010 2030")
    rec = freepbx("out-0015550102030-201-20241128-093000-1732790400.77.wav")
    m = matched(matcher_for(client, steps=("call_by_number",)).match(rec, file_name="x.wav"))
    assert m.parent_id == wanted


# -- contact_by_number -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "written", ["+1 (555) 010-2030", "0015550102030", "5550102030", "555-010-2030", "15550102030"]
)
def test_numbers_in_many_formats_match_the_same_contact(
    written: str, emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    person = contact(emulator, "Ann", "+1 (555) 010-2030")
    contact(emulator, "Bob", "+1 (555) 010-2031")
    m = matcher_for(client, steps=("contact_by_number",)).match(
        info(direction="in", caller=written, callee="201"), file_name="x.wav"
    )
    assert matched(m).parent_id == person


@pytest.mark.parametrize("stored", ["555.010.2030", "(555) 0102030", "+15550102030"])
def test_stored_number_in_any_format_matches_a_recording_number(
    stored: str, emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    person = contact(emulator, "Ann", stored)
    m = matcher_for(client, steps=("contact_by_number",)).match(
        info(direction="in", caller="+1 (555) 010-2030"), file_name="x.wav"
    )
    assert matched(m).parent_id == person


@pytest.mark.parametrize("column", ["Phone", "MobilePhone"])
def test_contact_phone_columns_are_searched_too(
    column: str, emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    person = seed(emulator, "Contact", Name="Cy", **{column: "(555) 010-2030"})
    m = matcher_for(client, steps=("contact_by_number",)).match(
        info(direction="in", caller="5550102030"), file_name="x.wav"
    )
    assert matched(m).parent_id == person


def test_search_number_digits_reversed_are_understood(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    person = seed(emulator, "Contact", Name="Di")
    seed(
        emulator,
        "ContactCommunication",
        ContactId=person,
        CommunicationTypeId=MOBILE,
        Number="call me",
        SearchNumber="0302010555",
    )
    m = matcher_for(client, steps=("contact_by_number",)).match(
        info(direction="in", caller="5550102030"), file_name="x.wav"
    )
    assert matched(m).parent_id == person


def test_last_digits_fallback_only_when_exactly_one_contact_matches(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    rec = info(direction="in", caller="+1 555 010 2030")
    only = contact(emulator, "Abroad", "+7 555 010-2030")  # same last 9 digits
    m = matched(matcher_for(client, steps=("contact_by_number",)).match(rec, file_name="x.wav"))
    assert m.parent_id == only and "last 9 digits" in m.detail
    other = contact(emulator, "Elsewhere", "+49 555 0102030")
    with pytest.raises(ParentAmbiguous) as caught:
        matcher_for(client, steps=("contact_by_number",)).match(rec, file_name="x.wav")
    assert sorted(caught.value.candidates) == sorted([only, other])
    assert "never" not in str(caught.value) and only in str(caught.value)


def test_an_exact_match_beats_last_digits_matches(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    contact(emulator, "Abroad", "+7 555 010-2030")
    contact(emulator, "Elsewhere", "+49 555 0102030")
    exact = contact(emulator, "Home", "555-010-2030")
    m = matcher_for(client, steps=("contact_by_number",)).match(
        info(direction="in", caller="5550102030"), file_name="x.wav"
    )
    assert matched(m).parent_id == exact


def test_two_contacts_with_the_same_number_are_ambiguous_never_guessed(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    a = contact(emulator, "Ann", "+1 555 010 2030")
    b = seed(emulator, "Contact", Name="Ann's husband", MobilePhone="555-010-2030")
    with pytest.raises(ParentAmbiguous) as caught:
        matcher_for(client, steps=("contact_by_number",)).match(
            info(direction="in", caller="5550102030"), file_name="x.wav"
        )
    assert sorted(caught.value.candidates) == sorted([a, b])


def test_emails_are_not_phone_numbers(emulator: EmbeddedEmulator, client: CreatioClient) -> None:
    person = seed(emulator, "Contact", Name="Mail")
    seed(
        emulator,
        "ContactCommunication",
        ContactId=person,
        CommunicationTypeId=COMMUNICATION_TYPE_EMAIL,
        Number="15550102030@fax.example.com",
    )
    result = matcher_for(client, steps=("contact_by_number",)).match(
        info(direction="in", caller="5550102030"), file_name="x.wav"
    )
    assert isinstance(result, Unmatched)


def test_the_external_party_depends_on_the_direction(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    caller = contact(emulator, "Caller", "5550102030")
    callee = contact(emulator, "Callee", "5550107070")
    only_contacts = matcher_for(client, steps=("contact_by_number",))
    both = {"caller": "5550102030", "callee": "5550107070"}
    inbound = only_contacts.match(info(direction="in", **both), file_name="x.wav")
    outbound = only_contacts.match(info(direction="out", **both), file_name="x.wav")
    unknown = only_contacts.match(info(**both), file_name="x.wav")
    unknown_callee_only = only_contacts.match(
        info(caller="201", callee="5550107070"), file_name="x.wav"
    )
    assert matched(inbound).parent_id == caller
    assert matched(outbound).parent_id == callee
    assert matched(unknown).parent_id == caller
    assert matched(unknown_callee_only).parent_id == callee


# -- activity target ---------------------------------------------------------------------------


def activities(client: CreatioClient, contact_id: str) -> list[dict[str, Any]]:
    return client.find_records(
        "Activity",
        {"ContactId": contact_id},
        select=("Id", "Title", "TypeId", "ActivityCategoryId", "StatusId", "StartDate"),
    )


def test_activity_target_creates_one_call_activity_even_when_retried(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    person = contact(emulator, "Ann", "555-010-2030")
    rec = freepbx("in-5551234567-5550102030-20241128-093000-1732790400.9.wav")
    first = matched(matcher_for(client, contact_target="activity").match(rec, file_name="a.wav"))
    assert (first.file_object, first.parent_schema) == ("ActivityFile", "Activity")
    # a retry, or a restarted daemon with a new matcher, finds the same Activity
    again = matched(matcher_for(client, contact_target="activity").match(rec, file_name="a.wav"))
    assert again.parent_id == first.parent_id
    rows = activities(client, person)
    assert len(rows) == 1
    row = rows[0]
    assert row["Id"] == first.parent_id
    assert (row["TypeId"], row["ActivityCategoryId"], row["StatusId"]) == (
        ACTIVITY_TYPE_CALL,
        ACTIVITY_CATEGORY_CALL,
        ACTIVITY_STATUS_DONE,
    )
    assert row["Title"] == "Incoming call from 5550102030"
    assert row["StartDate"].startswith("2024-11-28T09:30:00")
    # another recording of the same contact gets its own Activity
    other = freepbx("in-5551234567-5550102030-20241128-101500-1732793700.1.wav")
    third = matched(matcher_for(client, contact_target="activity").match(other, file_name="b.wav"))
    assert third.parent_id != first.parent_id
    assert len(activities(client, person)) == 2


def test_activity_exists_already_from_an_interrupted_attempt(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    person = contact(emulator, "Ann", "555-010-2030")
    rec = info(direction="in", caller="5550102030", uniqueid="1732790400.3")
    matcher = matcher_for(client, contact_target="activity")
    activity_id = matcher.activity_id(rec, "c.wav")
    client.create_record(
        "Activity", {"Title": "made before a crash", "ContactId": person}, record_id=activity_id
    )
    m = matched(matcher.match(rec, file_name="c.wav"))
    assert m.parent_id == activity_id
    assert len(activities(client, person)) == 1


# -- unmatched, waiting, order -----------------------------------------------------------------


def test_unmatched_lists_every_step_tried(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    contact(emulator, "Someone else", "555-010-9999")
    rec = freepbx("in-5551234567-5550102030-20241128-093000-1732790400.4.wav")
    result = matcher_for(client).match(rec, file_name="x.wav")
    assert isinstance(result, Unmatched)
    assert [t.split(":")[0] for t in result.tried] == [
        "call_by_id",
        "call_by_number",
        "contact_by_number",
    ]
    assert "1732790400.4" in result.tried[0]
    assert "2024-11-28 09:28:00 UTC" in result.tried[1]
    assert "5550102030" in result.tried[2]
    for line in result.tried:
        assert line in result.reason


def test_skipped_steps_say_why(emulator: EmbeddedEmulator, client: CreatioClient) -> None:
    rec = parse_call_info({"uniqueid": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"}, MatchSettings())
    result = matcher_for(client).match(rec, file_name="x.wav")
    assert isinstance(result, Unmatched)
    assert "skipped (no start time" in result.tried[1]
    assert "skipped (no phone number" in result.tried[2]


def test_contact_fallback_waits_for_a_late_call_record(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    person = contact(emulator, "Ann", "555-010-2030")
    rec = freepbx("in-5551234567-5550102030-20241128-093000-1732790400.6.wav")
    soon = START + dt.timedelta(seconds=30)
    early = matcher_for(client, now=soon).match(rec, file_name="x.wav")
    assert isinstance(early, Unmatched) and early.waiting_for_call
    assert early.retry_after == pytest.approx(150.0)
    assert "waiting until 2024-11-28 09:33:00 UTC" in early.reason
    # the CTI writes the Call row late: it wins over the contact
    late_call = call(emulator, IntegrationId="1732790400.6", CallerId="5550102030")
    assert matched(matcher_for(client, now=soon).match(rec, file_name="x.wav")).parent_id == (
        late_call
    )
    # without the Call, after the wait, the contact is taken
    rec2 = freepbx("in-5551234567-5550102030-20241128-103000-1732794000.8.wav")
    after = START + dt.timedelta(hours=1, seconds=181)
    m = matched(matcher_for(client, now=after).match(rec2, file_name="y.wav"))
    assert m.parent_id == person


def test_contact_first_when_configured_first(
    emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    call(emulator, IntegrationId="1732790400.5", CallerId="5550102030")
    person = contact(emulator, "Ann", "555-010-2030")
    rec = freepbx("in-5551234567-5550102030-20241128-093000-1732790400.5.wav")
    m = matcher_for(client, steps=("contact_by_number", "call_by_id"), now=START).match(
        rec, file_name="x.wav"
    )
    assert matched(m).parent_id == person


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        RecordingMatcher(
            object(),  # type: ignore[arg-type]
            replace(MatchSettings(), steps=("call_by_id", "by_magic"), contact_target="Account"),
        )
    text = str(caught.value)
    assert "by_magic" in text and "contact_target" in text


# -- the matched target takes the upload ------------------------------------------------------


def test_a_real_recording_lands_byte_identical_on_the_matched_call(
    emulator: EmbeddedEmulator,
    client: CreatioClient,
    corpus_by_name: dict[str, CorpusFile],
    tmp_path: Path,
) -> None:
    wav = corpus_by_name["wavefile-8bit-alaw-8kHz-noBext-mono-encoded.wav"]
    wanted = call(emulator, IntegrationId="1732790400.1234")
    name = "in-5551234567-+15550102030-20241128-093000-1732790400.1234.wav"
    path = tmp_path / name
    path.write_bytes(wav.path.read_bytes())
    rec = freepbx(name)
    m = matched(matcher_for(client).match(rec, file_name=name))
    result = client.upload(
        path,
        Target.for_file_object(m.file_object, m.parent_id),
        name=default_record_name(rec),
        mime=wav.expected_mime,
    )
    files = requests.get(f"{emulator.url}/__emulator__/files", timeout=10).json()
    (stored,) = [f for f in files if f["id"] == result.record_id]
    assert (stored["entity"], stored["parent_schema"], stored["parent_id"]) == (
        "CallFile",
        "Call",
        wanted,
    )
    assert stored["sha256"] == wav.sha256
    assert stored["name"] == "+15550102030 -> 5551234567 2024-11-28 09-30-00.wav"


# -- the daemon's bridge (adapters.RecordingsParentMatcher) ------------------------------------


def recording_inboxes(
    tmp_path: Path, emulator: EmbeddedEmulator, *names: str, **match: Any
) -> dict[str, InboxSettings]:
    """FreePBX inboxes ``names`` as ``config.load_config`` reads them from a TOML file."""
    site = Site(tmp_path, emulator)
    for name in names:
        folder = tmp_path / name
        folder.mkdir()
        site.inboxes[name] = {
            "name": name,
            "folder": str(folder),
            "preset": "freepbx",
            "match": {"timezone": "UTC", "country_code": "1", **match},
        }
    config = load_config(site.write_config())
    return {inbox.name: inbox for inbox in config.inboxes}


def request_for(
    inbox: InboxSettings, path: str, *, corrected: str, found_at: float
) -> MatchRequest:
    """The request ``pipeline`` makes: path fields, the daemon's date/time of discovery and the
    content-corrected file name, then the pattern's groups over them."""
    fields = {**path_fields(path, inbox.name)}
    fields.update(date=local_date(found_at), time=local_time(found_at))
    stem, _, ext = corrected.rpartition(".")
    fields.update(file=corrected, stem=stem, ext=ext)
    assert inbox.pattern is not None
    found = inbox.pattern.search(path)
    assert found is not None
    fields.update({k: v for k, v in found.groupdict().items() if v is not None})
    return MatchRequest(inbox.name, path, fields, {}, "audio/x-wav", found_at)


def test_the_bridge_renders_the_daemon_fields_matched_by_and_the_content_extension(
    tmp_path: Path, emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    wanted = call(emulator, IntegrationId="1732790400.1234")
    (inbox,) = recording_inboxes(tmp_path, emulator, "rec").values()
    # config accepts only the recording fields; the bridge must still render the daemon's own
    inbox = inbox.model_copy(
        update={"name_template": "{stem} | {file} | {inbox} | {matched_by} | {date} {time}.{ext}"}
    )
    path = "2024/11/28/in-5551234567-5550102030-20241128-093000-1732790400.1234.mp3"
    stem = path.rpartition("/")[2].removesuffix(".mp3")
    request = request_for(inbox, path, corrected=f"{stem}.wav", found_at=time.time())
    found = RecordingsParentMatcher(inbox, client).match(request)
    assert (found.file_object, found.parent_id, found.matched_by) == (
        "CallFile",
        wanted,
        "call_by_id",
    )
    assert found.name == (f"{stem} | {stem}.wav | rec | call_by_id | 2024-11-28 09-30-00.wav")


def test_the_bridge_names_recordings_by_the_default_template_with_the_content_extension(
    tmp_path: Path, emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    call(emulator, IntegrationId="1732790400.77")
    (inbox,) = recording_inboxes(tmp_path, emulator, "rec").values()
    path = "in-5551234567-5550102030-20241128-093000-1732790400.77.mp3"
    request = request_for(inbox, path, corrected=path[:-4] + ".wav", found_at=time.time())
    found = RecordingsParentMatcher(inbox, client).match(request)
    assert found.name == "5550102030 -> 5551234567 2024-11-28 09-30-00.wav"


def test_the_bridge_gives_each_inbox_its_own_activity_and_the_same_one_on_a_retry(
    tmp_path: Path, emulator: EmbeddedEmulator, client: CreatioClient
) -> None:
    person = contact(emulator, "Ann", "555-010-2030")
    inboxes = recording_inboxes(
        tmp_path,
        emulator,
        "east",
        "west",
        steps=["contact_by_number"],
        contact_target="activity",
    )
    path = "in-5551234567-5550102030-20241128-093000-1732790400.5.wav"
    found_at = time.time()
    east = request_for(inboxes["east"], path, corrected=path, found_at=found_at)
    first = RecordingsParentMatcher(inboxes["east"], client).match(east)
    # a retry, or the restarted daemon's new bridge, of the same journal row
    again = RecordingsParentMatcher(inboxes["east"], client).match(east)
    assert again.parent_id == first.parent_id
    # the same file name in another inbox is another recording
    west = request_for(inboxes["west"], path, corrected=path, found_at=found_at)
    other = RecordingsParentMatcher(inboxes["west"], client).match(west)
    assert other.parent_id != first.parent_id
    assert sorted(r["Id"] for r in activities(client, person)) == sorted(
        [first.parent_id, other.parent_id]
    )
