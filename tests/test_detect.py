"""File type detection: the real-file corpus is the oracle; generated files prove the rules.

Every row of ../shared/fixtures/real/manifest.csv must get its expected_mime (empty:
refused), size and SHA-256. Small files made here show each special rule working on
content that is not in the corpus (RF64, a docm written with zipfile, padded MP3...).
"""

from __future__ import annotations

import csv
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from creatio_attach import errors
from creatio_attach.detect import (
    Detected,
    detect,
    mime_matches,
    record_name,
    sha256_file,
    snapshot,
)
from tests.conftest import FIXTURES


def manifest_rows() -> list[dict[str, str]]:
    with (FIXTURES / "manifest.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


ROWS = manifest_rows()
NON_EMPTY = [r for r in ROWS if r["expected_mime"] and r["true_type"] != "empty"]


def made(mime: str, extension: str) -> Detected:
    """A detection result as detect() returns it, for record_name cases."""
    return Detected(mime=mime, extension=extension, size=1, sha256="0" * 64)


# --- the corpus ------------------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=[r["name"] for r in ROWS])
def test_corpus_file_gets_the_manifest_type_size_and_hash(row: dict[str, str]) -> None:
    path = FIXTURES / row["name"]
    if row["true_type"] == "empty":
        with pytest.raises(errors.FileRefused) as refused:
            detect(path)
        assert refused.value.reason == "empty"
        return
    found = detect(path)
    assert found.mime == row["expected_mime"], found.description
    assert found.size == int(row["bytes"])
    assert found.sha256 == row["sha256"]
    assert found.description  # libmagic's words, for the log


@pytest.mark.parametrize("row", NON_EMPTY, ids=[r["name"] for r in NON_EMPTY])
def test_the_true_extension_of_each_corpus_type_is_kept_in_the_record_name(
    row: dict[str, str],
) -> None:
    found = detect(FIXTURES / row["name"])
    name = f"document.{row['true_type']}"
    assert record_name(name, found) == name


@pytest.mark.parametrize(
    ("name", "record"),
    [
        ("textract-docx_paragraphs_and_tables", "textract-docx_paragraphs_and_tables.docx"),
        ("textract-standardized_text.zip", "textract-standardized_text.docx"),
        ("textract-standardized_text.tiff", "textract-standardized_text.png"),
    ],
)
def test_a_lying_name_in_the_corpus_gets_the_contents_extension(name: str, record: str) -> None:
    assert record_name(name, detect(FIXTURES / name)) == record


def test_an_exe_renamed_pdf_is_detected_as_an_executable(tmp_path: Path) -> None:
    fake = tmp_path / "invoice.pdf"
    shutil.copyfile(FIXTURES / "filetype-fixture.exe", fake)
    found = detect(fake)
    assert found.mime == "application/vnd.microsoft.portable-executable"
    assert record_name("invoice.pdf", found) == "invoice.exe"
    assert mime_matches(found.mime, ["application/vnd.microsoft.portable-executable"])
    assert not mime_matches(found.mime, ["application/pdf"])


def test_an_elf_binary_named_like_a_document_is_an_executable(tmp_path: Path) -> None:
    fake = tmp_path / "report.docx"
    shutil.copyfile("/usr/bin/true", fake)  # a PIE: libmagic says application/x-pie-executable
    found = detect(fake)
    assert found.mime == "application/x-executable"
    assert record_name("report.docx", found) == "report"
    assert record_name("true", found) == "true"
    assert mime_matches(found.mime, ["application/x-pie-executable"])  # the legacy name matches


# --- generated files: each rule beyond the corpus ------------------------------------


def wav_bytes(format_tag: int, *, magic: bytes = b"RIFF", extra_fmt: bytes = b"") -> bytes:
    fmt = struct.pack("<HHIIHH", format_tag, 1, 8000, 8000, 1, 8) + extra_fmt
    data = bytes(range(256)) * 8
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
    chunks += struct.pack("<I", len(data)) + data
    if magic == b"RIFF":
        return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks
    # RF64/BW64: sizes are 0xFFFFFFFF in the header, the real ones in the ds64 chunk
    ds64 = struct.pack("<QQQI", 4 + 36 + len(chunks), len(data), 0, 0)
    return magic + b"\xff\xff\xff\xff" + b"WAVE" + b"ds64" + struct.pack("<I", 28) + ds64 + chunks


@pytest.mark.parametrize(
    ("codec", "tag", "extra"),
    [
        ("PCM", 0x0001, b""),
        ("A-law", 0x0006, b""),
        ("mu-law", 0x0007, b""),
        ("IMA ADPCM", 0x0011, b"\x02\x00\xf9\x01"),
        ("GSM 6.10", 0x0031, b"\x02\x00\x40\x01"),
    ],
)
def test_call_recording_wav_codecs_are_audio_wav(
    tmp_path: Path, codec: str, tag: int, extra: bytes
) -> None:
    path = tmp_path / "1732790400.1234"
    path.write_bytes(wav_bytes(tag, extra_fmt=extra))
    found = detect(path)
    assert found.mime == "audio/wav", codec
    assert record_name(path.name, found) == "1732790400.1234.wav"


@pytest.mark.parametrize(
    ("magic_bytes", "header_size"),
    [
        (b"RF64", b"\xff\xff\xff\xff"),  # as EBU 3306 says: libmagic knows this one
        (b"RF64", b"\x34\xbb\x04\x00"),  # a real size there, as REAPER writes: libmagic says data
        (b"BW64", b"\xff\xff\xff\xff"),  # ITU-R BS.2088
    ],
)
def test_rf64_and_bw64_wav_are_audio_wav(
    tmp_path: Path, magic_bytes: bytes, header_size: bytes
) -> None:
    path = tmp_path / "long-call"
    content = wav_bytes(1, magic=magic_bytes)
    path.write_bytes(content[:4] + header_size + content[8:])
    found = detect(path)
    assert found.mime == "audio/wav"
    assert record_name(path.name, found) == "long-call.wav"


MP3_FRAME = b"\xff\xfb\x90\x00" + bytes(413)  # MPEG-1 layer III, 128 kbit/s, 44.1 kHz


def id3_header(size: int) -> bytes:
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x03\x00\x00" + syncsafe


def test_mp3_behind_zero_padding_is_audio_mpeg(tmp_path: Path) -> None:
    path = tmp_path / "padded.mp3"
    path.write_bytes(bytes(1000) + MP3_FRAME * 30)
    assert detect(path).mime == "audio/mpeg"


@pytest.mark.parametrize("off_by", [-7, 3, 1500])
def test_mp3_whose_id3_size_misses_the_first_frame_is_audio_mpeg(
    tmp_path: Path, off_by: int
) -> None:
    path = tmp_path / "tagged"
    path.write_bytes(id3_header(2000 + off_by) + b"\x01" * 2000 + MP3_FRAME * 30)
    found = detect(path)
    assert found.mime == "audio/mpeg"
    assert record_name(path.name, found) == "tagged.mp3"


def test_random_bytes_behind_padding_or_a_tag_stay_octet_stream(tmp_path: Path) -> None:
    noise = __import__("random").Random(7).randbytes(300_000)
    for name, content in (("a", bytes(500) + noise), ("b", id3_header(100) + noise)):
        path = tmp_path / name
        path.write_bytes(content)
        found = detect(path)
        assert found.mime == "application/octet-stream", name
        assert record_name(name, found) == name


def mp4_bytes(*handlers: bytes, brand: bytes = b"mp42") -> bytes:
    def box(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", 8 + len(body)) + kind + body

    tracks = b"".join(
        box(b"trak", box(b"mdia", box(b"hdlr", bytes(8) + h + bytes(12) + b"x\0")))
        for h in handlers
    )
    return (
        box(b"ftyp", brand + bytes(4) + brand + b"isom")
        + box(b"moov", tracks)
        + box(b"mdat", bytes(64))
    )


def test_mp4_with_only_a_sound_track_is_audio_mp4(tmp_path: Path) -> None:
    audio, video = tmp_path / "call.mp4", tmp_path / "clip.mp4"
    audio.write_bytes(mp4_bytes(b"soun"))
    video.write_bytes(mp4_bytes(b"vide", b"soun"))
    assert detect(audio).mime == "audio/mp4"
    assert record_name("call.mp4", detect(audio)) == "call.mp4"
    assert detect(video).mime == "video/mp4"


def webm_bytes(*track_types: int) -> bytes:
    def element(element_id: bytes, body: bytes) -> bytes:
        size = bytes([0x80 | len(body)]) if len(body) < 127 else (1 << 56 | len(body)).to_bytes(8)
        return element_id + size + body

    header = element(b"\x1a\x45\xdf\xa3", element(b"\x42\x82", b"webm"))
    tracks = b"".join(
        element(b"\xae", element(b"\xd7", bytes([n + 1])) + element(b"\x83", bytes([kind])))
        for n, kind in enumerate(track_types)
    )
    cluster = element(b"\x1f\x43\xb6\x75", bytes(32))
    return header + element(b"\x18\x53\x80\x67", element(b"\x16\x54\xae\x6b", tracks) + cluster)


def test_webm_with_only_audio_tracks_is_audio_webm(tmp_path: Path) -> None:
    audio, video = tmp_path / "browser-call.webm", tmp_path / "screen.webm"
    audio.write_bytes(webm_bytes(2))
    video.write_bytes(webm_bytes(1, 2))
    assert detect(audio).mime == "audio/webm"
    assert record_name(audio.name, detect(audio)) == "browser-call.webm"
    assert detect(video).mime == "video/webm"


def write_ooxml(path: Path, main_type: str, *, content_types_last: bool = False) -> None:
    content_types = (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats'
        '.org/package/2006/content-types"><Default Extension="xml" ContentType="application/'
        f'xml"/><Override PartName="/word/document.xml" ContentType="{main_type}"/></Types>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        if not content_types_last:
            archive.writestr("[Content_Types].xml", content_types)
        archive.writestr("_rels/.rels", "<Relationships/>")
        archive.writestr("word/document.xml", "<w:document/>")
        if content_types_last:
            archive.writestr("[Content_Types].xml", content_types)


@pytest.mark.parametrize(
    ("main_type", "mime", "extension"),
    [
        (
            "application/vnd.ms-word.document.macroEnabled.main+xml",
            "application/vnd.ms-word.document.macroEnabled.12",
            "docm",
        ),
        (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "docx",
        ),
        (
            "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml",
            "application/vnd.ms-powerpoint.presentation.macroEnabled.12",
            "pptm",
        ),
        (
            "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
            "application/vnd.ms-excel.sheet.macroEnabled.12",
            "xlsm",
        ),
    ],
)
@pytest.mark.parametrize("content_types_last", [False, True])
def test_office_type_comes_from_content_types_xml(
    tmp_path: Path, main_type: str, mime: str, extension: str, content_types_last: bool
) -> None:
    path = tmp_path / "contract.docx"
    write_ooxml(path, main_type, content_types_last=content_types_last)
    found = detect(path)
    assert found.mime == mime
    assert found.extension == extension
    assert record_name("contract.docx", found) == f"contract.{extension}"


def test_a_huge_content_types_member_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        padding = " " * (3 << 20)  # 3 MiB of spaces compress to a few KiB
        archive.writestr(
            "[Content_Types].xml",
            '<Types><Override ContentType="application/vnd.ms-word.document.macroEnabled'
            f'.main+xml"/>{padding}</Types>',
        )
    assert path.stat().st_size < 100_000
    assert detect(path).mime == "application/zip"


def test_a_plain_zip_stays_a_zip_and_odf_is_found_by_its_mimetype_member(
    tmp_path: Path,
) -> None:
    plain, odt = tmp_path / "photos.zip", tmp_path / "letter"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("a.txt", "hello")
    with zipfile.ZipFile(odt, "w") as archive:  # mimetype not first: libmagic says zip
        archive.writestr("content.xml", "<office:document-content/>")
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text")
    assert detect(plain).mime == "application/zip"
    assert detect(odt).mime == "application/vnd.oasis.opendocument.text"
    assert record_name("letter", detect(odt)) == "letter.odt"


def test_amr_wideband_is_told_from_narrowband(tmp_path: Path) -> None:
    wide, narrow = tmp_path / "hd-call.amr", tmp_path / "call"
    wide.write_bytes(b"#!AMR-WB\n" + bytes(range(256)) * 4)
    narrow.write_bytes(b"#!AMR\n" + bytes(range(256)) * 4)
    assert detect(wide).mime == "audio/amr-wb"
    assert record_name(wide.name, detect(wide)) == "hd-call.amr"  # .amr is used for both
    assert record_name("hd-call", detect(wide)) == "hd-call.awb"
    assert detect(narrow).mime == "audio/amr"
    assert record_name(narrow.name, detect(narrow)) == "call.amr"


def test_csv_without_extension_is_text_csv(tmp_path: Path) -> None:
    path = tmp_path / "export"
    path.write_text("name,city,amount\nalice,paris,10\nbob,rome,20\ncarol,oslo,30\n")
    found = detect(path)
    assert found.mime == "text/csv"
    assert record_name("export", found) == "export.csv"


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("table.tsv", "text/tab-separated-values"),
        ("table.csv", "text/csv"),
        ("table.txt", "text/plain"),
        ("table", "text/plain"),
    ],
)
def test_plain_text_takes_its_format_from_a_text_extension(
    tmp_path: Path, name: str, mime: str
) -> None:
    path = tmp_path / name
    path.write_bytes("Имя\tГород\nИван\tМосква\n".encode("cp1251"))
    found = detect(path)
    assert found.mime == mime
    assert record_name(name, found) == name


def test_mail_behind_an_mbox_from_line_is_a_message_whatever_its_name(tmp_path: Path) -> None:
    path = tmp_path / "saved-mail"
    path.write_text(
        "From nobody Mon Aug 25 13:47:30 2014\nFrom: a@example.com\nTo: b@example.com\n"
        "Subject: hello\n\nbody\n"
    )
    found = detect(path)
    assert found.mime == "message/rfc822"
    assert record_name("saved-mail", found) == "saved-mail.eml"
    prose = tmp_path / "letter.txt"
    prose.write_text("From what I hear: the meeting moved.\nSee you there.\n")
    assert detect(prose).mime == "text/plain"


# --- record names ----------------------------------------------------------------------


PDF = made("application/pdf", "pdf")
XLSX = made("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx")


@pytest.mark.parametrize(
    ("file_name", "detected", "record"),
    [
        ("scan", PDF, "scan.pdf"),
        ("scan.", PDF, "scan.pdf"),
        ("report.xls", XLSX, "report.xlsx"),
        ("report.XLSX", XLSX, "report.XLSX"),
        ("Mr. Smith", PDF, "Mr. Smith.pdf"),
        ("report.final", PDF, "report.final.pdf"),
        ("v1.2", PDF, "v1.2.pdf"),
        (".hidden", PDF, ".hidden.pdf"),
        ("photo.jpeg", made("image/jpeg", "jpg"), "photo.jpeg"),
        ("photo.JPG", made("image/jpeg", "jpg"), "photo.JPG"),
        ("photo.png", made("image/jpeg", "jpg"), "photo.jpg"),
        ("bali.tif", made("image/tiff", "tiff"), "bali.tif"),
        ("page.htm", made("text/html", "html"), "page.htm"),
        ("deploy.yml", made("application/yaml", "yaml"), "deploy.yml"),
        ("backup.tar.gz", made("application/gzip", "gz"), "backup.tar.gz"),
        ("backup.tgz", made("application/gzip", "gz"), "backup.tgz"),
        ("backup.tar.gz", made("application/x-tar", "tar"), "backup.tar"),
        ("voice", made("audio/ogg", "opus"), "voice.opus"),
        ("voice.ogg", made("audio/ogg", "opus"), "voice.ogg"),
        ("notes", made("text/plain", ""), "notes"),
        ("notes.log", made("text/plain", ""), "notes.log"),
        ("blob.pdf", made("application/octet-stream", ""), "blob.pdf"),
        ("tool", made("application/x-executable", ""), "tool"),
        ("tool.v2", made("application/x-executable", ""), "tool.v2"),
        ("main.h", made("text/x-c", ""), "main.h"),
        ("libfoo.so", made("application/x-sharedlib", "so"), "libfoo.so"),
    ],
)
def test_record_name_follows_the_content(file_name: str, detected: Detected, record: str) -> None:
    assert record_name(file_name, detected) == record


# --- mime_matches -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mime", "patterns", "expected"),
    [
        ("audio/wav", ["audio/*"], True),
        ("audio/wav", ["audio/x-wav"], True),  # a legacy name in the config still matches
        ("audio/wav", ["AUDIO/WAV"], True),
        ("audio/wav", ["video/*", "application/pdf"], False),
        ("application/pdf", ["*"], True),
        ("application/pdf", ["*/*"], True),
        ("application/pdf", [], False),
        ("application/vnd.ms-word.document.macroEnabled.12", ["application/vnd.ms-*"], True),
        ("text/x-shellscript", ["text/x-shellscript"], True),
        ("text/plain", ["text/plain; charset=utf-8"], True),
        ("text/csv", ["text/plain"], False),
    ],
)
def test_mime_globs(mime: str, patterns: list[str], expected: bool) -> None:
    assert mime_matches(mime, patterns) is expected


# --- failures -------------------------------------------------------------------------


def test_a_file_deleted_before_detection_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "gone.pdf"
    path.write_bytes(b"%PDF-1.4\n")
    path.unlink()
    for call in (detect, sha256_file, snapshot):
        with pytest.raises(errors.FileGone):
            call(path)


def test_detect_on_a_fifo_refuses_it_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            detect(fifo)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("detect() blocked on a FIFO")
    assert len(outcome) == 1
    assert isinstance(outcome[0], errors.FileUnreadable)
    assert "FIFO" in str(outcome[0])


def test_a_directory_is_unreadable_as_a_file(tmp_path: Path) -> None:
    with pytest.raises(errors.FileUnreadable):
        detect(tmp_path)


def test_a_file_without_read_permission_is_unreadable() -> None:
    """As root, chmod 000 blocks nothing: the check then runs in a child that drops to nobody."""
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        secret = folder / "locked.pdf"
        secret.write_bytes(b"%PDF-1.4\n")
        secret.chmod(0)
        script = textwrap.dedent(
            f"""
            import os, sys
            from pathlib import Path
            from creatio_attach import errors
            from creatio_attach.detect import detect
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            try:
                detect(Path({str(secret)!r}))
            except errors.FileUnreadable as exc:
                print("unreadable", exc.hint)
                sys.exit(0)
            print("read it")
            sys.exit(1)
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=folder,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("unreadable") and "permission" in done.stdout
    finally:
        shutil.rmtree(folder)


def test_snapshot_describes_the_path_itself(tmp_path: Path) -> None:
    target = tmp_path / "a.pdf"
    target.write_bytes(b"%PDF-1.4\n" * 10)
    link = tmp_path / "link.pdf"
    link.symlink_to(target)
    snap, st = snapshot(target), target.stat()
    assert (snap.size, snap.mtime_ns, snap.inode, snap.device) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
        st.st_dev,
    )
    assert snapshot(link).inode == os.lstat(link).st_ino != st.st_ino
    assert stat.S_ISLNK(os.lstat(link).st_mode)


@pytest.mark.parametrize("block", [1, 4096, 1 << 20])
def test_sha256_file_matches_the_manifest_whatever_the_block(block: int) -> None:
    row = next(r for r in ROWS if r["name"] == "textract-raw_text.tsv")
    assert sha256_file(FIXTURES / row["name"], block) == row["sha256"]


# --- threads and memory -------------------------------------------------------------


def test_eight_threads_detect_the_whole_corpus_alike() -> None:
    paths = [FIXTURES / r["name"] for r in NON_EMPTY]
    expected = [detect(p) for p in paths]
    barrier = threading.Barrier(8)

    def all_of_them(_: int) -> list[Detected]:
        barrier.wait(30)
        return [detect(p) for p in paths]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(all_of_them, range(8)))
    assert all(r == expected for r in results)


def test_detecting_and_hashing_200_mb_keeps_memory_flat(tmp_path: Path) -> None:
    big = tmp_path / "long-recording.wav"
    with big.open("wb") as f:
        f.write(b"RF64\0\0\0\0WAVE")  # libmagic: data; the RF64 sniff: audio/wav
        f.truncate(200 * 1024 * 1024)  # sparse: generated without using disk
    script = textwrap.dedent(
        f"""
        import resource
        from pathlib import Path
        from creatio_attach.detect import detect, sha256_file
        small = Path({str(FIXTURES / "filetype-fixture.wav")!r})
        detect(small); sha256_file(small)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        found = detect(Path({str(big)!r}))
        digest = sha256_file(Path({str(big)!r}))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(found.mime, found.size, digest == found.sha256, (after - before) // 1024)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    mime, size, same, growth_mib = done.stdout.split()
    assert (mime, int(size), same) == ("audio/wav", 200 * 1024 * 1024, "True")
    assert int(growth_mib) < 40, f"peak RSS grew by {growth_mib} MiB for a 200 MiB file"
