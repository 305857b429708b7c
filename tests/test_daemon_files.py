"""Awkward files: deleted before upload, FIFOs, symlinks, very long and strange names, sidecars,
types and sizes the inbox refuses. The real service in-process, the emulator over HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from creatio_attach.emulator import EmbeddedEmulator
from tests.conftest import CorpusFile, wait_for
from tests.daemon_helpers import Site, running_service, start_daemon, stop_daemon, wait_ready


@pytest.fixture
def site(tmp_path: Path, emulator: EmbeddedEmulator) -> Site:
    return Site(tmp_path, emulator)


@pytest.fixture
def pdf(corpus_by_name: dict[str, CorpusFile]) -> CorpusFile:
    return corpus_by_name["filetype-fixture.pdf"]


def archived(inbox: Path) -> list[Path]:
    return sorted(p for p in (inbox / ".archive").rglob("*") if p.is_file())


def test_a_file_deleted_before_its_upload_is_recorded_as_gone(
    site: Site, pdf: CorpusFile, corpus_by_name: dict[str, CorpusFile]
) -> None:
    site.case("SR10")
    site.concurrency = 1
    inbox = site.inbox(settle="0.2s")
    config = site.write_config()
    site.faults("latency=700ms")  # the one worker is busy with the first file
    with running_service(config) as service:
        assert service.engine is not None
        engine = service.engine
        shutil.copyfile(pdf.path, inbox / "SR10_first.pdf")
        wait_for(lambda: site.state_count("uploading") == 1, timeout=15, what="first uploading")
        docx = corpus_by_name["filetype-fixture.docx"]
        shutil.copyfile(docx.path, inbox / "SR10_second.docx")
        wait_for(lambda: engine.status().queued == 1, timeout=15, what="second queued")
        (inbox / "SR10_second.docx").unlink()  # complete and queued, but not uploaded yet
        site.faults(None)
        wait_for(lambda: site.state_count("gone") == 1, timeout=15, what="second gone")
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="first done")
    assert [f["sha256"] for f in site.files()] == [pdf.sha256]


def test_fifo_and_symlinks_are_never_taken(site: Site, pdf: CorpusFile) -> None:
    site.case("SR11")
    inbox = site.inbox()
    outside = site.root / "secret"
    outside.mkdir()
    secret = outside / "SR11_secret.pdf"
    shutil.copyfile(pdf.path, secret)
    config = site.write_config()
    with running_service(config):
        os.mkfifo(inbox / "SR11_pipe.pdf")
        (inbox / "SR11_link.pdf").symlink_to(secret)
        (inbox / "SR11_dirlink").symlink_to(outside, target_is_directory=True)
        shutil.copyfile(pdf.path, inbox / "SR11_real.pdf")
        wait_for(lambda: len(archived(inbox)) == 1, timeout=15, what="the real file")
    assert [f["name"] for f in site.files()] == ["SR11_real.pdf"]
    assert (inbox / "SR11_pipe.pdf").exists()  # untouched, and it blocked nothing
    assert (inbox / "SR11_link.pdf").is_symlink()
    assert secret.exists()
    assert sum(site.counts().get("cases", {}).values()) == 1


def test_a_file_or_folder_swapped_for_a_symlink_after_it_settled_is_not_followed(
    site: Site, pdf: CorpusFile, corpus_by_name: dict[str, CorpusFile]
) -> None:
    """Between the check that a file is a regular file of the inbox and the open that reads
    it, the file (or a folder on its way) becomes a symlink to a file outside: its bytes must
    not reach Creatio. Two files wait behind a slow first upload while they are swapped."""
    site.case("SR14")
    site.concurrency = 1
    inbox = site.inbox(settle="0.2s")
    outside = site.root / "secret"
    outside.mkdir()
    secret = corpus_by_name["filetype-fixture.docx"]
    shutil.copyfile(secret.path, outside / "SR14_b.pdf")
    shutil.copyfile(secret.path, outside / "c.pdf")
    config = site.write_config()
    site.faults("latency=700ms")  # the one worker is busy with the first file
    with running_service(config) as service:
        assert service.engine is not None
        engine = service.engine
        shutil.copyfile(pdf.path, inbox / "SR14_a.pdf")
        wait_for(lambda: site.state_count("uploading") == 1, timeout=15, what="first uploading")
        (inbox / "SR14_b.pdf").write_bytes(pdf.path.read_bytes() + b"\n% b\n")
        (inbox / "SR14 folder").mkdir()
        (inbox / "SR14 folder" / "c.pdf").write_bytes(pdf.path.read_bytes() + b"\n% c\n")
        wait_for(lambda: engine.status().queued == 2, timeout=15, what="two queued")
        # settled and queued; now swapped for symlinks to the outside files
        (inbox / "SR14_b.pdf").rename(site.root / "b.moved")
        (inbox / "SR14_b.pdf").symlink_to(outside / "SR14_b.pdf")
        (inbox / "SR14 folder").rename(site.root / "folder.moved")
        (inbox / "SR14 folder").symlink_to(outside, target_is_directory=True)
        site.faults(None)
        wait_for(lambda: site.state_count("gone") == 2, timeout=15, what="two gone")
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="first done")
    assert [f["sha256"] for f in site.files()] == [pdf.sha256]  # the secret never went up
    assert secret.sha256 not in {f["sha256"] for f in site.files()}
    assert (outside / "SR14_b.pdf").exists() and (outside / "c.pdf").exists()


def test_an_archive_folder_planted_as_a_symlink_is_not_written_through(
    site: Site, pdf: CorpusFile
) -> None:
    """``inbox/.archive -> /elsewhere`` made by someone who may write into the inbox: the
    daemon must not create folders or move files there with its own rights."""
    site.case("SR15")
    inbox = site.inbox()
    elsewhere = site.root / "elsewhere"
    elsewhere.mkdir()
    (inbox / ".archive").symlink_to(elsewhere, target_is_directory=True)
    config = site.write_config()
    with running_service(config):
        shutil.copyfile(pdf.path, inbox / "SR15_doc.pdf")
        wait_for(lambda: site.state_count("uploaded") == 1, timeout=15, what="uploaded")
    assert [f["sha256"] for f in site.files()] == [pdf.sha256]
    assert list(elsewhere.iterdir()) == []  # nothing made or moved there
    assert (inbox / "SR15_doc.pdf").is_file()  # stays in the inbox; the journal knows it


def test_an_archive_folder_that_cannot_be_made_is_not_taken_for_a_deleted_file(
    site: Site, pdf: CorpusFile
) -> None:
    """A file where the archive folder should be (ENOTDIR on the way): the uploaded file stays
    in the inbox and its row says ``uploaded``, not ``done``/deleted; once the way is clear
    the archiving is tried again and succeeds, without a restart."""
    site.case("SR16")
    inbox = site.inbox()
    (inbox / ".archive").write_text("not a folder")
    config = site.write_config()
    with running_service(config):
        shutil.copyfile(pdf.path, inbox / "SR16_doc.pdf")
        wait_for(lambda: site.state_count("uploaded") == 1, timeout=15, what="uploaded")
        assert site.state_count("done") == 0
        assert (inbox / "SR16_doc.pdf").is_file()
        (inbox / ".archive").unlink()  # the cause is fixed
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="archived after all")
    assert [p.name for p in archived(inbox)] == ["SR16_doc.pdf"]
    assert len(site.files()) == 1  # uploaded once


def test_long_names_quotes_percent_hash_and_unicode(site: Site, pdf: CorpusFile) -> None:
    case_id = site.case("SR12")
    inbox = site.inbox()
    long_component = "SR12_" + "x" * (255 - len("SR12_") - len(".pdf")) + ".pdf"
    assert len(long_component.encode()) == 255
    nested_dir = "SR12_" + "d" * 150
    nested_file = "f" * (300 - len(nested_dir) - 1 - len(".pdf")) + ".pdf"
    nested = f"{nested_dir}/{nested_file}"
    assert len(nested.encode()) == 300
    odd = 'SR12_it\'s "quoted" 100% #1 & Ünïcödé 文件.pdf'
    config = site.write_config()
    bodies = {}
    with running_service(config):
        for i, rel in enumerate((long_component, nested, odd)):
            target = inbox / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            body = pdf.path.read_bytes() + f"\n% variant {i}\n".encode()
            target.write_bytes(body)
            bodies[rel] = body
        wait_for(lambda: site.state_count("done") == 3, timeout=20, what="three uploads")
    names = sorted(str(f["name"]) for f in site.files())
    assert names == sorted([long_component, nested_file, odd])
    assert {f["parent_id"] for f in site.files()} == {case_id}
    archive = next((inbox / ".archive").iterdir())
    assert (archive / long_component).read_bytes() == bodies[long_component]
    assert (archive / nested).read_bytes() == bodies[nested]
    assert (archive / odd).read_bytes() == bodies[odd]


def test_sidecar_overrides_the_parent_and_a_malformed_one_fails_the_file(
    site: Site, pdf: CorpusFile
) -> None:
    site.case("SR13")
    other = site.case("SR99")
    inbox = site.inbox()
    config = site.write_config()
    with running_service(config):
        (inbox / "SR13_good.pdf.json").write_text(
            json.dumps({"parent": {"where": {"Number": "SR99"}}, "name": "Contract 2026.pdf"})
        )
        (inbox / "SR13_bad.pdf.json").write_text('{"entity": 5')
        time.sleep(1.0)  # the producer's pace: the sidecars settle long before their files come
        shutil.copyfile(pdf.path, inbox / "SR13_good.pdf")
        (inbox / "SR13_bad.pdf").write_bytes(pdf.path.read_bytes() + b"\n% bad\n")
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="the good file")
        wait_for(lambda: site.state_count("failed") == 1, timeout=15, what="the bad file")
    (record,) = site.files()
    assert record["parent_id"] == other
    assert record["name"] == "Contract 2026.pdf"
    failed = inbox / ".failed"
    note = json.loads((failed / "SR13_bad.pdf.error.json").read_text())
    assert note["reason"] == "bad_sidecar"
    assert "not JSON" in note["message"]
    assert (failed / "SR13_bad.pdf.json").exists()  # the sidecar went with its file
    archive = next((inbox / ".archive").iterdir())
    assert (archive / "SR13_good.pdf.json").exists()


def test_types_sizes_and_empty_files_are_refused_by_content(
    site: Site, corpus_by_name: dict[str, CorpusFile]
) -> None:
    site.case("SR14")
    inbox = site.inbox(max_size="20KiB", types=["application/pdf", "image/*"])
    config = site.write_config()
    with running_service(config):
        shutil.copyfile(corpus_by_name["filetype-fixture.exe"].path, inbox / "SR14_invoice.pdf")
        shutil.copyfile(corpus_by_name["filetype-fixture.docx"].path, inbox / "SR14_letter.pdf")
        shutil.copyfile(corpus_by_name["filetype-fixture.pdf"].path, inbox / "SR14_ok.pdf")
        (inbox / "SR14_empty.pdf").write_bytes(b"")
        big = corpus_by_name["filetype-fixture.png"]
        (inbox / "SR14_big.png").write_bytes(big.path.read_bytes() + b"\0" * 30_000)
        wait_for(lambda: site.state_count("failed") == 4, timeout=20, what="four refused")
        wait_for(lambda: site.state_count("done") == 1, timeout=10, what="one uploaded")
    reasons = {
        p.name.removesuffix(".error.json"): json.loads(p.read_text())["reason"]
        for p in (inbox / ".failed").glob("*.error.json")
    }
    assert reasons == {
        "SR14_invoice.pdf": "type_denied",
        "SR14_letter.pdf": "type_not_allowed",
        "SR14_empty.pdf": "empty",
        "SR14_big.png": "too_large",
    }
    assert [f["name"] for f in site.files()] == ["SR14_ok.pdf"]


def test_nothing_in_archive_or_failed_is_ever_overwritten(site: Site, pdf: CorpusFile) -> None:
    site.case("SR15")
    inbox = site.inbox(duplicates="upload")
    config = site.write_config()
    with running_service(config):
        for round_ in range(3):
            shutil.copyfile(pdf.path, inbox / "SR15_same.pdf")
            wait_for(lambda r=round_: site.state_count("done") == r + 1, timeout=15, what="done")
            (inbox / "nomatch.pdf").write_bytes(pdf.path.read_bytes())
            wait_for(lambda r=round_: site.state_count("failed") == r + 1, timeout=15, what="fail")
    names = sorted(p.name for p in archived(inbox))
    assert names == ["SR15_same (1).pdf", "SR15_same (2).pdf", "SR15_same.pdf"]
    failed = sorted(p.name for p in (inbox / ".failed").iterdir())
    assert failed == [
        "nomatch (1).pdf",
        "nomatch (1).pdf.error.json",
        "nomatch (2).pdf",
        "nomatch (2).pdf.error.json",
        "nomatch.pdf",
        "nomatch.pdf.error.json",
    ]
    assert len(site.files()) == 3  # duplicates = "upload": uploaded every time


#: the daemon as root without the capabilities that let root read any file, so that file
#: permissions apply to it as they do to the unprivileged service user in production
WITHOUT_DAC = (
    "setpriv",
    "--bounding-set",
    "-dac_override,-dac_read_search",
    "--inh-caps",
    "-all",
    "--",
)


def test_an_unreadable_file_fails_with_the_reason_and_the_others_go_on(
    site: Site, pdf: CorpusFile
) -> None:
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run the daemon without CAP_DAC_OVERRIDE")
    site.case("SR16")
    inbox = site.inbox()
    config = site.write_config()
    locked = inbox / "SR16_locked.pdf"
    locked.write_bytes(pdf.path.read_bytes() + b"\n% locked\n")
    locked.chmod(0)
    shutil.copyfile(pdf.path, inbox / "SR16_open.pdf")
    log = site.root / "daemon.log"
    proc = start_daemon(config, log, prefix=WITHOUT_DAC)
    try:
        wait_ready(proc, log)
        wait_for(lambda: site.state_count("failed") == 1, timeout=20, what="the locked file failed")
        wait_for(lambda: site.state_count("done") == 1, timeout=20, what="the open file done")
        assert stop_daemon(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    note = json.loads((inbox / ".failed" / "SR16_locked.pdf.error.json").read_text())
    assert note["reason"] == "file_unreadable"
    assert "Permission denied" in note["message"]
    assert [f["name"] for f in site.files()] == ["SR16_open.pdf"]


def test_a_name_that_is_not_utf8_is_uploaded_with_a_cleaned_name(
    site: Site, pdf: CorpusFile
) -> None:
    site.case("SR17")
    inbox = site.inbox()
    config = site.write_config()
    raw = os.fsencode(inbox) + b"/SR17_caf\xe9.pdf"  # Latin-1 bytes from an old Windows share
    with running_service(config):
        with open(raw, "wb") as fh:  # noqa: PTH123 - a bytes path
            fh.write(pdf.path.read_bytes())
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="uploaded")
    (record,) = site.files()
    assert record["name"] == "SR17_caf\ufffd.pdf"
    archive = next((inbox / ".archive").iterdir())
    names = [os.fsencode(p.name) for p in archive.iterdir()]
    assert names == [b"SR17_caf\xe9.pdf"]  # the local name is kept, byte for byte
