"""Faults on the way to Creatio: retried within bounds, and never a second record."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from creatio_attach.creatio import CreatioClient, RetryPolicy, Target
from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.errors import CreatioRejected, CreatioUnavailable
from tests.conftest import CorpusFile, wait_for
from tests.creatio.conftest import request_log, seed, set_faults, stored_files

FILES = ("filetype-fixture.docx", "filetype-fixture.pdf", "filetype-fixture.m4a")


def upload_all(
    client: CreatioClient, case_id: str, corpus_by_name: dict[str, CorpusFile]
) -> dict[str, str]:
    target = Target.for_file_object("CaseFile", case_id)
    return {
        client.upload(corpus_by_name[n].path, target).record_id: corpus_by_name[n].sha256
        for n in FILES
    }


def assert_exactly(emu: EmbeddedEmulator, expected: dict[str, str]) -> None:
    assert {f["id"]: f["sha256"] for f in stored_files(emu)} == expected


@pytest.mark.parametrize(
    ("fault", "chunked"),
    [
        ("503@every=3:retry-after=0", False),
        ("503@every=3:retry-after=0", True),
        ("500@every=3", False),
    ],
)
def test_5xx_is_retried_and_never_makes_a_second_record(
    fault: str,
    chunked: bool,
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    case_id = seed(emulator, "Case", Number="SR-503")
    client = client_for(emulator, chunk_threshold=4_000 if chunked else 10**9, chunk_size=4_000)
    client.login()
    set_faults(emulator, fault)
    expected = upload_all(client, case_id, corpus_by_name)
    assert_exactly(emulator, expected)
    status = int(fault[:3])
    assert sum(1 for e in request_log(emulator) if e["status"] == status) >= len(FILES)


def test_retry_after_is_honoured(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    case_id = seed(emulator, "Case", Number="SR-RA")
    client = client_for(emulator)
    client.login()
    set_faults(emulator, "503@every=2:retry-after=1:path=/Data$")
    item = corpus_by_name["filetype-fixture.gif"]
    target = Target.for_file_object("CaseFile", case_id)
    client.upload(item.path, target)  # the 1st PUT passes, the 2nd gets 503 + Retry-After: 1
    started = time.monotonic()
    client.upload(item.path, target)
    assert time.monotonic() - started >= 1.0  # waited at least what Retry-After said
    puts = [e["status"] for e in request_log(emulator) if e["method"] == "PUT"]
    assert puts == [200, 503, 200]


def test_a_retry_after_beyond_the_policy_ends_the_operation_and_leaves_no_record(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    case_id = seed(emulator, "Case", Number="SR-LONG")
    client = client_for(emulator, retry=RetryPolicy(backoff_base=0.01, max_retry_after=5.0))
    client.login()
    set_faults(emulator, "429@p=1:retry-after=30:path=/Data$")
    item = corpus_by_name["filetype-fixture.gif"]
    with pytest.raises(CreatioUnavailable) as caught:
        client.upload(item.path, Target.for_file_object("CaseFile", case_id))
    assert (caught.value.status, caught.value.retry_after) == (429, 30.0)
    wait_for(lambda: request_log(emulator)[-1]["method"] == "DELETE", what="the deletion")
    assert stored_files(emulator) == []


def test_attempts_are_bounded_then_creatio_unavailable_escapes(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    case_id = seed(emulator, "Case", Number="SR-DOWN")
    client = client_for(emulator)
    client.login()
    set_faults(emulator, "502@p=1:path=/Data$")
    item = corpus_by_name["filetype-fixture.gif"]
    with pytest.raises(CreatioUnavailable) as caught:
        client.upload(item.path, Target.for_file_object("CaseFile", case_id))
    assert caught.value.status == 502
    assert sum(1 for e in request_log(emulator) if e["method"] == "PUT") == 5
    assert stored_files(emulator) == []  # the half-made record was deleted


@pytest.mark.parametrize(
    ("spec", "chunked"),
    [
        ("drop@every=2:after=1k:path=/Data$", False),  # content PUTs cut mid-body
        ("drop@every=2:after=10:path=/odata/CaseFile$:method=POST", False),  # creates cut
        ("drop@every=3:after=2k:path=UploadFile", True),  # chunks cut mid-body
    ],
)
def test_dropped_connections_are_retried_and_never_make_a_second_record(
    spec: str,
    chunked: bool,
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    case_id = seed(emulator, "Case", Number="SR-DROP")
    client = client_for(emulator, chunk_threshold=4_000 if chunked else 10**9, chunk_size=4_000)
    client.login()
    set_faults(emulator, f"seed=5; {spec}")
    expected = upload_all(client, case_id, corpus_by_name)
    assert_exactly(emulator, expected)
    assert [a.id for a in client.list_attachments("Case", case_id)] == list(expected)


def test_a_500_that_names_a_request_error_is_not_retried(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    client = client_for(emulator)
    no_such_case = "0badca5e-0000-4000-8000-000000000000"
    item = corpus_by_name["filetype-fixture.gif"]
    with pytest.raises(CreatioRejected) as caught:
        client.upload(item.path, Target.for_file_object("CaseFile", no_such_case))
    assert caught.value.status == 500 and "FOREIGN KEY" in (caught.value.creatio_message or "")
    creates = [e for e in request_log(emulator) if e["method"] == "POST" and "odata" in e["path"]]
    assert len(creates) == 1
    assert stored_files(emulator) == []
