"""``$batch`` over HTTP: JSON and multipart/mixed, the 100-request cap, stop-on-error (5.4)."""

from __future__ import annotations

import uuid

import requests

from creatio_attach.emulator import EmbeddedEmulator
from tests.emulator.helpers import Api, odata_error_message


def batch(api: Api, requests_: list[dict[str, object]], **headers: str) -> requests.Response:
    return api.session.post(
        f"{api.odata}/$batch", json={"requests": requests_}, headers=headers, timeout=30
    )


def test_json_batch_runs_each_request_and_reports_each_result(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    cid = str(uuid.uuid4())
    r = batch(
        api,
        [
            {
                "id": "1",
                "method": "POST",
                "url": "Case",
                "body": {"Id": cid, "Number": "SR1"},
                "headers": {"Content-Type": "application/json;odata=verbose"},
            },
            {
                "id": "2",
                "method": "POST",
                "url": "/CaseFile",
                "body": {"Name": "a.txt", "CaseId": cid},
            },
            {"id": "3", "method": "GET", "url": f"CaseFile?$filter=Case/Id eq {cid}&$select=Name"},
            {
                "id": "4",
                "method": "PATCH",
                "url": f"{api.odata}/Case({cid})",
                "body": {"Subject": "s"},
            },
        ],
    )
    assert r.status_code == 200
    out = r.json()["responses"]
    assert [(o["id"], o["status"]) for o in out] == [("1", 201), ("2", 201), ("3", 200), ("4", 204)]
    assert out[0]["body"]["Id"] == cid
    assert out[2]["body"]["value"] == [{"Name": "a.txt"}]
    assert "body" not in out[3]
    assert api.get(f"Case({cid})").json()["Subject"] == "s"


def test_json_batch_stops_at_first_failure(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    r = batch(
        api,
        [
            {"id": "a", "method": "POST", "url": "Contact", "body": {"Name": "one"}},
            {"id": "b", "method": "POST", "url": "Contact", "body": {"Bogus": 1}},
            {"id": "c", "method": "POST", "url": "Contact", "body": {"Name": "three"}},
        ],
    )
    out = r.json()["responses"]
    assert [(o["id"], o["status"]) for o in out] == [("a", 201), ("b", 400)]
    assert "error" in out[1]["body"]
    names = [v["Name"] for v in api.query("Contact", select="Name").json()["value"]]
    assert names == ["one"]


def test_json_batch_continues_on_error_when_asked(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    r = batch(
        api,
        [
            {"id": "a", "method": "GET", "url": f"Contact({uuid.uuid4()})"},
            {"id": "b", "method": "POST", "url": "Contact", "body": {"Name": "two"}},
        ],
        Prefer="continue-on-error",
    )
    assert [o["status"] for o in r.json()["responses"]] == [404, 201]


def test_more_than_100_sub_requests_is_400(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    r = batch(api, [{"id": str(n), "method": "GET", "url": "Case?$top=1"} for n in range(101)])
    assert r.status_code == 400 and "100" in odata_error_message(r)
    r = batch(api, [{"id": str(n), "method": "GET", "url": "Case?$top=1"} for n in range(100)])
    assert r.status_code == 200 and len(r.json()["responses"]) == 100


def test_malformed_batch_is_400(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    r = api.session.post(
        f"{api.odata}/$batch", data=b"[]", headers={"Content-Type": "application/json"}, timeout=10
    )
    assert r.status_code == 400 and odata_error_message(r)
    r = batch(api, [{"id": "1", "url": "Case"}])
    assert r.status_code == 400


def test_unknown_entity_inside_batch_is_the_routing_miss(emulator: EmbeddedEmulator) -> None:
    r = batch(Api(emulator), [{"id": "1", "method": "GET", "url": "Nope"}])
    item = r.json()["responses"][0]
    assert item["status"] == 404 and "No HTTP resource" in item["body"]["Message"]


def test_multipart_mixed_batch_with_changeset(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    cid = str(uuid.uuid4())
    body = (
        "--batch_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        f"POST Case HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
        f'{{"Id": "{cid}", "Number": "SR-M"}}\r\n'
        "--batch_1\r\nContent-Type: multipart/mixed; boundary=changeset_1\r\n\r\n"
        "--changeset_1\r\nContent-Type: application/http\r\nContent-ID: 7\r\n\r\n"
        f"PATCH {api.odata}/Case({cid}) HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
        '{"Subject": "from multipart"}\r\n'
        "--changeset_1--\r\n"
        "--batch_1\r\nContent-Type: application/http\r\n\r\n"
        f"GET Case({cid})?$select=Number,Subject HTTP/1.1\r\nAccept: application/json\r\n\r\n\r\n"
        "--batch_1--\r\n"
    )
    r = api.session.post(
        f"{api.odata}/$batch",
        data=body.encode(),
        headers={"Content-Type": "multipart/mixed; boundary=batch_1"},
        timeout=10,
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("multipart/mixed; boundary=batchresponse_")
    text = r.text
    assert text.count("Content-Type: application/http") == 3
    assert "HTTP/1.1 201 Created" in text and "HTTP/1.1 204 No Content" in text
    assert "HTTP/1.1 200 OK" in text and '"Subject":"from multipart"' in text


def test_multipart_without_boundary_is_400(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    r = api.session.post(
        f"{api.odata}/$batch", data=b"x", headers={"Content-Type": "multipart/mixed"}, timeout=10
    )
    assert r.status_code == 400 and odata_error_message(r)


def test_batch_without_csrf_header_is_403(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    del api.session.headers["BPMCSRF"]
    r = batch(api, [{"id": "1", "method": "GET", "url": "Case"}])
    assert r.status_code == 403
