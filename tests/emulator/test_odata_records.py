"""OData single-record routes over HTTP: create, read, update, delete (contract 0 F/H, 2.2, 8.5)."""

from __future__ import annotations

import uuid

from creatio_attach.emulator import EmbeddedEmulator
from tests.emulator.helpers import ZERO_GUID, Api, odata_error_message, seed


def test_post_returns_201_with_entity_context_and_location(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    case = seed(emulator, "Case", [{"Number": "SR1"}])[0]
    r = api.post(
        "CaseFile",
        {
            "Name": "rec.mp3",
            "CaseId": case["Id"],
            "Size": 12345,
            "TotalSize": 12345,
            "TypeId": "529bc2f8-0ee0-df11-971b-001d60e938c6",
        },
    )
    assert r.status_code == 201
    body = r.json()
    assert body["@odata.context"] == f"{api.odata}/$metadata#CaseFile/$entity"
    assert body["Name"] == "rec.mp3" and body["CaseId"] == case["Id"] and body["Size"] == 12345
    assert body["CreatedOn"].endswith("Z") and body["ModifiedOn"].endswith("Z")
    assert "Data" not in body
    assert r.headers["Location"] == f"{api.odata}/CaseFile({body['Id']})"


def test_post_honours_client_id_and_a_duplicate_overwrites_nothing(
    emulator: EmbeddedEmulator,
) -> None:
    api = Api(emulator)
    rid = str(uuid.uuid4())
    assert api.create("Contact", {"Id": rid.upper(), "Name": "First"})["Id"] == rid
    r = api.post("Contact", {"Id": rid, "Name": "Second"})
    assert r.status_code == 500
    assert "PRIMARY KEY" in odata_error_message(r)
    assert api.get(f"Contact({rid})").json()["Name"] == "First"


def test_navigation_style_keys_are_ignored_and_the_lookup_stays_empty(
    emulator: EmbeddedEmulator,
) -> None:
    api = Api(emulator)
    case = seed(emulator, "Case", [{"Number": "SR1"}])[0]
    body = api.create(
        "CaseFile", {"Name": "x.txt", "Case": case["Id"], "Case@odata.bind": f"Case({case['Id']})"}
    )
    assert body["CaseId"] == ZERO_GUID


def test_unknown_column_is_400_envelope(emulator: EmbeddedEmulator) -> None:
    r = Api(emulator).post("CaseFile", {"Name": "x", "Colour": "red"})
    assert r.status_code == 400
    assert "Colour" in odata_error_message(r)


def test_bad_json_and_bad_value_are_400(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    r = api.session.post(
        f"{api.odata}/Case", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and odata_error_message(r)
    r = api.post("CaseFile", {"Name": "x", "Size": "big"})
    assert r.status_code == 400 and "Size" in odata_error_message(r)


def test_lookup_to_a_missing_parent_is_a_foreign_key_500(emulator: EmbeddedEmulator) -> None:
    r = Api(emulator).post("CaseFile", {"Name": "x", "CaseId": str(uuid.uuid4())})
    assert r.status_code == 500
    assert "FOREIGN KEY" in odata_error_message(r)


def test_get_one_patch_and_delete(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    row = api.create(
        "Call",
        {
            "IntegrationId": "pbx-1",
            "CallerId": "+15550001",
            "StartDate": "2024-05-01T10:00:00Z",
            "Duration": 61,
        },
    )
    r = api.get(f"Call({row['Id']})")
    assert r.status_code == 200
    assert r.json()["@odata.context"].endswith("$metadata#Call/$entity")
    assert r.json()["DirectionId"] == "c072be2c-3d82-4468-9d4a-6db47d1f4cca"
    r = api.patch(f"Call({row['Id']})", {"CalledId": "+15550002", "Duration": 62})
    assert r.status_code == 204 and r.content == b""
    after = api.get(f"Call({row['Id']})").json()
    assert (after["CalledId"], after["Duration"], after["IntegrationId"]) == (
        "+15550002",
        62,
        "pbx-1",
    )
    assert after["ModifiedOn"] >= row["ModifiedOn"]
    assert api.delete(f"Call({row['Id']})").status_code == 204
    r = api.get(f"Call({row['Id']})")
    assert r.status_code == 404 and odata_error_message(r)


def test_missing_records_are_404_envelopes(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    missing = str(uuid.uuid4())
    for r in (api.patch(f"Case({missing})", {"Subject": "x"}), api.delete(f"Case({missing})")):
        assert r.status_code == 404 and odata_error_message(r)


def test_quoted_key_is_400(emulator: EmbeddedEmulator) -> None:
    r = Api(emulator).get(f"Case('{uuid.uuid4()}')")
    assert r.status_code == 400 and odata_error_message(r)


def test_unknown_entity_set_is_the_routing_miss_404(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    r = api.get("InvalidCollection")
    assert r.status_code == 404
    assert r.json() == {
        "Message": "No HTTP resource was found that matches the request URI "
        f"'{api.odata}/InvalidCollection'.",
        "MessageDetail": "No type was found that matches the controller named 'InvalidCollection'.",
    }


def test_count_path_returns_a_bare_number(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    seed(emulator, "Case", [{"Number": "SR1"}, {"Number": "SR2"}, {"Number": "X3"}])
    assert api.get("Case/$count").text == "3"
    assert api.get("Case/$count", params={"$filter": "startswith(Number,'SR')"}).text == "2"


def test_custom_schema_and_its_file_object(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    emu = emulator_factory(custom_schemas=("UsrRealty",))
    api = Api(emu)
    realty = api.create("UsrRealty", {"Name": "Flat 3"})
    f = api.create("UsrRealtyFile", {"Name": "plan.pdf", "UsrRealtyId": realty["Id"]})
    r = api.query("UsrRealtyFile", filter=f"UsrRealty/Id eq {realty['Id']}")
    assert [v["Id"] for v in r.json()["value"]] == [f["Id"]]
