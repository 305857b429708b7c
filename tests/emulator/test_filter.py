"""$filter / $orderby / $select / $expand: parsing, Creatio's type errors, compiled SQL results."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from creatio_attach.emulator.filter import (
    QueryError,
    SqlQuery,
    parse_expand,
    parse_filter,
    parse_select,
)
from creatio_attach.emulator.schemas import build_schemas
from creatio_attach.emulator.store import Store

SCHEMAS = build_schemas()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path, SCHEMAS)
    acme = s.insert("Account", {"Name": "Acme"})
    ann = s.insert("Contact", {"Name": "Ann O'Neil", "AccountId": acme["Id"]})
    bob = s.insert("Contact", {"Name": "Bob 100%", "Phone": "+1 555"})
    c1 = s.insert(
        "Case", {"Number": "SR1", "ContactId": ann["Id"], "RegisteredOn": "2024-05-01T10:00:00Z"}
    )
    c2 = s.insert(
        "Case", {"Number": "SR2", "ContactId": bob["Id"], "RegisteredOn": "2024-06-01T10:00:00Z"}
    )
    for name, case, size in (("a.pdf", c1, 10), ("b.docx", c1, 20), ("c.txt", c2, 30)):
        s.insert("CaseFile", {"Name": name, "CaseId": case["Id"], "Size": size})
    s.insert("ContactCommunication", {"ContactId": ann["Id"], "Number": "555-01", "Primary": True})
    s.insert("ContactCommunication", {"ContactId": bob["Id"], "Number": "555-02"})
    s.ids = {"acme": acme["Id"], "ann": ann["Id"], "bob": bob["Id"], "c1": c1["Id"], "c2": c2["Id"]}  # type: ignore[attr-defined]
    yield s
    s.close()


def run(store: Store, entity: str, text: str, order: str | None = None) -> list[dict[str, Any]]:
    q = SqlQuery(SCHEMAS, SCHEMAS[entity])
    where = q.where(text) if text else None
    sql_order = q.order_by(order) if order else None
    return store.select(
        q,
        where=where,
        order=sql_order,
        columns=SCHEMAS[entity].stored_columns(),
        limit=None,
        offset=0,
    )


def names(rows: list[dict[str, Any]], key: str = "Name") -> list[str]:
    return sorted(r[key] for r in rows)


def error(text: str, entity: str = "CaseFile") -> QueryError:
    with pytest.raises(QueryError) as info:
        SqlQuery(SCHEMAS, SCHEMAS[entity]).where(text)
    return info.value


def test_navigation_path_to_lookup_id_with_bare_guid(store: Store) -> None:
    ids = store.ids  # type: ignore[attr-defined]
    assert names(run(store, "CaseFile", f"Case/Id eq {ids['c1']}")) == ["a.pdf", "b.docx"]
    assert names(run(store, "CaseFile", f"Case/Id eq {ids['c1'].upper()}")) == ["a.pdf", "b.docx"]


def test_deeper_navigation_paths_join_the_parent(store: Store) -> None:
    assert names(run(store, "CaseFile", "Case/Number eq 'SR2'")) == ["c.txt"]
    assert names(run(store, "CaseFile", "Case/Contact/Account/Name eq 'Acme'")) == [
        "a.pdf",
        "b.docx",
    ]


def test_flat_lookup_column_is_creatios_500_column_by_path(store: Store) -> None:
    e = error(f"CaseId eq {store.ids['c1']}")  # type: ignore[attr-defined]
    assert (e.status, e.message, e.shape) == (
        500,
        "Column by path CaseId not found in schema CaseFile.",
        "odata",
    )


def test_sysfile_record_id_is_a_plain_column(store: Store) -> None:
    case = store.ids["c1"]  # type: ignore[attr-defined]
    store.insert("SysFile", {"Name": "s.txt", "RecordSchemaName": "Case", "RecordId": case})
    assert names(run(store, "SysFile", f"RecordSchemaName eq 'Case' and RecordId eq {case}")) == [
        "s.txt"
    ]
    assert error(f"Record/Id eq {case}", "SysFile").status == 400


def test_quoted_guid_is_a_type_mismatch(store: Store) -> None:
    e = error(f"Case/Id eq '{store.ids['c1']}'")  # type: ignore[attr-defined]
    assert e.status == 400
    assert "'Edm.Guid' and 'Edm.String'" in e.message


def test_quoted_date_is_a_400_type_mismatch() -> None:
    e = error("CreatedOn gt '2024-05-23T00:00:00Z'")
    assert e.status == 400
    assert "incompatible types" in e.message and "Edm.DateTimeOffset" in e.message


def test_guid_prefix_literal_is_malformed() -> None:
    e = error("Id eq guid'5b3bd1a6-43b5-4fa8-8d2f-1b0b6b0c2f11'")
    assert e.status == 400 and e.message.startswith("Syntax error")


def test_bare_iso_dates_and_plain_dates_compare(store: Store) -> None:
    assert names(run(store, "Case", "RegisteredOn gt 2024-05-15T00:00:00Z"), "Number") == ["SR2"]
    assert names(run(store, "Case", "RegisteredOn lt 2024-05-15"), "Number") == ["SR1"]
    assert names(run(store, "Case", "RegisteredOn ge 2024-05-01T12:00:00+02:00"), "Number") == [
        "SR1",
        "SR2",
    ]


def test_strings_with_doubled_quotes_and_functions(store: Store) -> None:
    assert names(run(store, "Contact", "Name eq 'Ann O''Neil'")) == ["Ann O'Neil"]
    assert names(run(store, "Contact", "contains(Name,'100%')")) == ["Bob 100%"]
    assert names(run(store, "Contact", "contains(Name,'0_')")) == []  # LIKE wildcards are literal
    assert names(run(store, "Contact", "startswith(Name,'Ann')")) == ["Ann O'Neil"]
    assert names(run(store, "Contact", "endswith(Name,'%')")) == ["Bob 100%"]
    assert names(run(store, "Contact", "tolower(Name) eq 'bob 100%'")) == ["Bob 100%"]


def test_comparisons_logic_and_parentheses(store: Store) -> None:
    assert names(run(store, "CaseFile", "Size gt 10 and Size le 30")) == ["b.docx", "c.txt"]
    assert names(run(store, "CaseFile", "Size lt 15 or Size ge 30")) == ["a.pdf", "c.txt"]
    assert names(run(store, "CaseFile", "not (Size eq 10 or Size eq 30)")) == ["b.docx"]
    assert names(
        run(store, "CaseFile", "Size ne 20 and (Name eq 'a.pdf' or Name eq 'b.docx')")
    ) == ["a.pdf"]
    assert names(run(store, "CaseFile", "Size eq 10.0")) == ["a.pdf"]


def test_booleans_and_null(store: Store) -> None:
    assert names(run(store, "ContactCommunication", "Primary eq true"), "Number") == ["555-01"]
    assert names(run(store, "ContactCommunication", "Primary"), "Number") == ["555-01"]
    assert names(run(store, "ContactCommunication", "not Primary"), "Number") == ["555-02"]
    store.insert("Contact", {"Name": "Cy", "Phone": ""})
    assert names(run(store, "Contact", "Phone eq null")) == ["Ann O'Neil", "Cy"]
    assert names(run(store, "Contact", "Phone ne null")) == ["Bob 100%"]
    assert names(run(store, "Contact", "Account/Id eq null")) == ["Bob 100%", "Cy"]


def test_orderby_multiple_keys_and_directions(store: Store) -> None:
    rows = run(store, "CaseFile", "", order="Case/Number desc, Size asc")
    assert [r["Name"] for r in rows] == ["c.txt", "a.pdf", "b.docx"]


@pytest.mark.parametrize(
    "text",
    [
        "Name eq",
        "(Name eq 'x'",
        "Name eq 'x')",
        "Name eq 'unterminated",
        "Name == 'x'",
        "Name eq 'x' and",
        "Size gt 1abc",
        "Name eq 'x' #",
    ],
)
def test_malformed_filters_are_400(text: str) -> None:
    e = error(text)
    assert e.status == 400 and e.shape == "odata"


def test_unknown_property_and_function_are_400() -> None:
    assert "Could not find a property named 'Nope'" in error("Nope eq 1").message
    assert error("substringof('a',Name)").status == 400
    assert error("Name").status == 400  # not a boolean


def test_type_mismatches_on_other_columns() -> None:
    assert error("Size eq 'ten'").status == 400
    assert error("Name eq 10").status == 400
    assert error("contains(Size,'1')").status == 400


def test_values_are_bound_parameters_never_sql_text() -> None:
    q = SqlQuery(SCHEMAS, SCHEMAS["Contact"])
    sql = q.where("Name eq 'x''); DROP TABLE \"Contact\"; --'")
    assert "DROP" not in sql and q.params == ['x\'); DROP TABLE "Contact"; --']


def test_parse_tree_shape() -> None:
    tree = parse_filter("a eq 1 or b eq 2 and not c")
    assert type(tree).__name__ == "Binary" and tree.op == "or"  # type: ignore[union-attr]


def test_select_accepts_flat_names_and_rejects_unknown() -> None:
    cols = parse_select("Name,CaseId,Size", SCHEMAS["CaseFile"])
    assert [c.flat_name for c in cols] == ["Name", "CaseId", "Size"]
    with pytest.raises(QueryError):
        parse_select("Name,Bogus", SCHEMAS["CaseFile"])


def test_expand_lookup_nested_and_collection_error() -> None:
    items = parse_expand(
        "Case($select=Number;$expand=Contact($select=Name))", SCHEMAS["CaseFile"], SCHEMAS
    )
    assert items[0].target.name == "Case" and items[0].expand[0].target.name == "Contact"
    with pytest.raises(QueryError) as info:
        parse_expand("CaseFileCollectionByCase", SCHEMAS["Case"], SCHEMAS)
    assert (info.value.status, info.value.shape) == (500, "aspnet")
    with pytest.raises(QueryError) as info:
        parse_expand("Nothing", SCHEMAS["Case"], SCHEMAS)
    assert info.value.status == 400
