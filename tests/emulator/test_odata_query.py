"""OData collection reads over HTTP: $filter, $select, $orderby, $top/$skip, $count, $expand,
the 20,000-row limit and $metadata (contract 0 E, 5, 7b)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

from creatio_attach.emulator import EmbeddedEmulator
from tests.emulator.helpers import Api, odata_error_message, seed

EDMX = "{http://docs.oasis-open.org/odata/ns/edmx}"
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


def setup_case_files(emu: EmbeddedEmulator) -> tuple[Api, dict[str, str]]:
    api = Api(emu)
    contact = seed(emu, "Contact", [{"Name": "Ann"}])[0]
    c1, c2 = seed(emu, "Case", [{"Number": "SR1", "ContactId": contact["Id"]}, {"Number": "SR2"}])
    for name, case, size in (("a.pdf", c1, 3), ("b.docx", c1, 1), ("c.txt", c2, 2)):
        api.create("CaseFile", {"Name": name, "CaseId": case["Id"], "Size": size})
    return api, {"c1": c1["Id"], "c2": c2["Id"], "contact": contact["Id"]}


def test_filter_by_navigation_path_select_and_context(emulator: EmbeddedEmulator) -> None:
    api, ids = setup_case_files(emulator)
    r = api.query("CaseFile", filter=f"Case/Id eq {ids['c1']}", select="Name,Size", orderby="Name")
    assert r.status_code == 200
    body = r.json()
    assert body["@odata.context"] == f"{api.odata}/$metadata#CaseFile(Name,Size)"
    assert body["value"] == [{"Name": "a.pdf", "Size": 3}, {"Name": "b.docx", "Size": 1}]


def test_flat_lookup_in_filter_is_500_column_by_path(emulator: EmbeddedEmulator) -> None:
    api, ids = setup_case_files(emulator)
    r = api.query("CaseFile", filter=f"CaseId eq {ids['c1']}")
    assert r.status_code == 500
    assert odata_error_message(r) == "Column by path CaseId not found in schema CaseFile."


def test_quoted_guid_and_quoted_date_are_type_mismatches(emulator: EmbeddedEmulator) -> None:
    api, ids = setup_case_files(emulator)
    r = api.query("CaseFile", filter=f"Case/Id eq '{ids['c1']}'")
    assert r.status_code == 400 and "Edm.Guid" in odata_error_message(r)
    r = api.query("CaseFile", filter="ModifiedOn gt '2024-05-23T00:00:00Z'")
    assert r.status_code == 400
    assert "Edm.DateTimeOffset and Edm.String" in odata_error_message(r).replace("'", "")


def test_bare_date_string_escape_and_contains(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    seed(
        emulator,
        "ContactCommunication",
        [
            {
                "Number": "+1 (555) 0101",
                "CommunicationTypeId": "3dddb3cc-53ee-49c4-a71f-e9e257f59e49",
            },
            {"Number": "O'Brien line"},
        ],
    )
    r = api.query(
        "ContactCommunication",
        filter="contains(Number,'555') and "
        "CommunicationType/Id eq 3dddb3cc-53ee-49c4-a71f-e9e257f59e49",
    )
    assert [v["Number"] for v in r.json()["value"]] == ["+1 (555) 0101"]
    r = api.query(
        "ContactCommunication",
        filter="Number eq 'O''Brien line' and ModifiedOn gt 2000-01-01T00:00:00Z",
    )
    assert [v["Number"] for v in r.json()["value"]] == ["O'Brien line"]


def test_malformed_filter_is_400_envelope(emulator: EmbeddedEmulator) -> None:
    r = Api(emulator).query("Case", filter="(Number eq 'x'")
    assert r.status_code == 400 and odata_error_message(r)


def test_orderby_top_skip_and_count(emulator: EmbeddedEmulator) -> None:
    api, _ = setup_case_files(emulator)
    r = api.query(
        "CaseFile", orderby="Size desc,Name", top="2", skip="1", count="true", select="Name"
    )
    body = r.json()
    assert body["@odata.count"] == 3
    assert [v["Name"] for v in body["value"]] == ["c.txt", "b.docx"]
    r = api.query("CaseFile", top="0", count="true")
    assert r.json()["@odata.count"] == 3 and r.json()["value"] == []
    assert api.query("CaseFile", top="-1").status_code == 400


def test_expand_lookup_nested(emulator: EmbeddedEmulator) -> None:
    api, _ = setup_case_files(emulator)
    r = api.query(
        "CaseFile",
        filter="Name eq 'a.pdf'",
        select="Name",
        expand="Case($select=Number;$expand=Contact($select=Name))",
    )
    assert r.json()["value"] == [
        {"Name": "a.pdf", "Case": {"Number": "SR1", "Contact": {"Name": "Ann"}}}
    ]
    r = api.query(
        "CaseFile",
        filter="Name eq 'c.txt'",
        select="Name",
        expand="Case($select=Number;$expand=Contact)",
    )
    assert r.json()["value"][0]["Case"]["Contact"] is None


def test_collection_expand_is_500_aspnet_error(emulator: EmbeddedEmulator) -> None:
    api, _ = setup_case_files(emulator)
    r = api.query("Case", expand="CaseFileCollectionByCase")
    assert r.status_code == 500
    body = r.json()
    assert body["Message"] == "An error has occurred."
    assert set(body) == {"Message", "ExceptionMessage", "ExceptionType", "StackTrace"}


def test_more_than_20000_rows_without_top_is_500(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    emulator.store.insert_many("Contact", [{"Name": f"c{n}"} for n in range(20_001)])
    r = api.get("Contact", params={"$select": "Name"})
    assert r.status_code == 500 and "20000" in odata_error_message(r)
    r = api.query("Contact", select="Name", top="20000", skip="1")
    assert r.status_code == 200 and len(r.json()["value"]) == 20_000
    r = api.query("Contact", select="Name", filter="startswith(Name,'c1')")
    assert r.status_code == 200 and len(r.json()["value"]) == 11_111


def test_metadata_is_standard_csdl(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    emu = emulator_factory(custom_schemas=("UsrRealty",))
    r = Api(emu).session.get(f"{emu.odata_url}/$metadata", headers={"Accept": "application/xml"})
    assert r.status_code == 200 and "xml" in r.headers["content-type"]
    root = ET.fromstring(r.content)  # noqa: S314 (our own emulator's XML)
    schema = root.find(f"{EDMX}DataServices/{EDM}Schema")
    assert schema is not None
    types = {t.get("Name"): t for t in schema.findall(f"{EDM}EntityType")}
    for name in (
        "Case",
        "Contact",
        "Account",
        "Activity",
        "Call",
        "ContactCommunication",
        "Opportunity",
        "CaseFile",
        "ContactFile",
        "AccountFile",
        "ActivityFile",
        "CallFile",
        "OpportunityFile",
        "SysFile",
        "UsrRealty",
        "UsrRealtyFile",
    ):
        assert name in types, name
    case_file = types["CaseFile"]
    assert case_file.find(f"{EDM}Key/{EDM}PropertyRef").get("Name") == "Id"  # type: ignore[union-attr]
    props = {p.get("Name"): p for p in case_file.findall(f"{EDM}Property")}
    assert props["CaseId"].get("Type") == "Edm.Guid"
    assert props["Size"].get("Type") == "Edm.Int32" and props["Size"].get("Nullable") == "false"
    assert props["CreatedOn"].get("Type") == "Edm.DateTimeOffset"
    assert props["TotalSize"].get("Type") == "Edm.Int32"
    assert props["Data"].get("Type") == "Edm.Stream"
    navs = {n.get("Name"): n.get("Type") for n in case_file.findall(f"{EDM}NavigationProperty")}
    assert navs["Case"] == "Terrasoft.Configuration.OData.Case"
    sys_props = {p.get("Name") for p in types["SysFile"].findall(f"{EDM}Property")}
    assert {"RecordSchemaName", "RecordId"} <= sys_props
    assert types["UsrRealtyFile"].find(f"{EDM}NavigationProperty[@Name='UsrRealty']") is not None
    sets = {s.get("Name") for s in schema.findall(f"{EDM}EntityContainer/{EDM}EntitySet")}
    assert {"CaseFile", "SysFile", "UsrRealtyFile"} <= sets


def test_netcore_serves_odata_at_root_and_under_0(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    emu = emulator_factory(runtime="netcore")
    api = Api(emu)
    row = api.create("Case", {"Number": "SR-core"})
    for base in (f"{emu.url}/odata", f"{emu.url}/0/odata"):
        r = api.session.get(f"{base}/Case({row['Id']})", timeout=10)
        assert r.status_code == 200 and r.json()["Number"] == "SR-core"
        assert r.json()["@odata.context"] == f"{base}/$metadata#Case/$entity"


def test_single_property_read(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    row = api.create("Case", {"Number": "SR7", "Id": str(uuid.uuid4())})
    r = api.get(f"Case({row['Id']})/Number")
    assert r.status_code == 200 and r.json()["value"] == "SR7"
