"""The read-only web page at `/`: entities with counts, latest records, attachments with links.

Issue 2 rule 9. Everything shown is HTML-escaped; the page needs no login.
"""

from __future__ import annotations

import hashlib
import re

import requests

from creatio_attach.emulator import EmbeddedEmulator
from tests.conftest import CorpusFile


def bearer(emu: EmbeddedEmulator) -> dict[str, str]:
    r = requests.post(
        emu.url + "/connect/token",
        data={
            "client_id": "attach",
            "client_secret": "attach-secret",
            "grant_type": "client_credentials",
        },
        timeout=30,
    )
    return {"Authorization": "Bearer " + r.json()["access_token"]}


def test_the_page_lists_entities_with_counts(emulator: EmbeddedEmulator) -> None:
    requests.post(
        emulator.url + "/__emulator__/records/Contact",
        json=[{"Name": "A"}, {"Name": "B"}],
        timeout=30,
    )
    r = requests.get(emulator.url + "/", timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    row = re.search(r"<tr><td>Contact</td><td>(\d+)</td>", r.text)
    assert row is not None
    assert row.group(1) == "2"
    for entity in ("Case", "CaseFile", "SysFile", "Call", "CallFile"):
        assert f"<td>{entity}</td>" in r.text


def test_a_stored_attachment_shows_with_a_working_download_link(
    emulator: EmbeddedEmulator, corpus_by_name: dict[str, CorpusFile]
) -> None:
    pdf = corpus_by_name["filetype-fixture.pdf"]
    auth = bearer(emulator)
    case = requests.post(
        emulator.odata_url + "/Case", json={"Number": "SR-00042"}, headers=auth, timeout=30
    )
    case_id = case.json()["Id"]
    name = 'Quote <b>"Q1"</b> & co.pdf'
    f = requests.post(
        emulator.odata_url + "/CaseFile",
        json={"Name": name, "CaseId": case_id},
        headers=auth,
        timeout=30,
    )
    file_id = f.json()["Id"]
    content = pdf.path.read_bytes()
    put = requests.put(
        f"{emulator.odata_url}/CaseFile({file_id})/Data", data=content, headers=auth, timeout=30
    )
    assert put.status_code == 200

    page = requests.get(emulator.url + "/", timeout=30).text
    assert case_id in page
    assert "SR-00042" in page
    assert "<b>" not in page  # the file name is escaped ...
    assert "Quote &lt;b&gt;&quot;Q1&quot;&lt;/b&gt; &amp; co.pdf" in page  # ... and shown
    link = f"/__emulator__/download/CaseFile/{file_id}"
    assert f'href="{link}"' in page
    download = requests.get(emulator.url + link, timeout=30)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == pdf.sha256


def test_a_file_record_without_content_is_listed_without_a_link(emulator: EmbeddedEmulator) -> None:
    case = requests.post(emulator.url + "/__emulator__/records/Case", json={}, timeout=30).json()
    f = requests.post(
        emulator.url + "/__emulator__/records/CaseFile",
        json={"Name": "empty.txt", "CaseId": case["Id"]},
        timeout=30,
    ).json()
    page = requests.get(emulator.url + "/", timeout=30).text
    assert "empty.txt" in page
    assert f"/__emulator__/download/CaseFile/{f['Id']}" not in page
