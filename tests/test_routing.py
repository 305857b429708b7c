"""Routing: path + sidecar -> file object, parent and record Name (pure functions, plain data)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from creatio_attach.errors import ConfigError, FileRefused
from creatio_attach.routing import (
    Rule,
    check_template,
    clean_name,
    expand_folder_template,
    parse_sidecar,
    path_fields,
    route,
    rule_problems,
    sidecar_path,
    template_fields,
)

GUID = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
CASES = Rule(
    inbox="case-documents",
    pattern=re.compile(r"^(?P<number>SR\d+)[/_ -]"),
    entity="CaseFile",
    parent_schema="Case",
    parent_where={"Number": "{number}"},
)
BY_ID = Rule(
    inbox="realty",
    pattern=re.compile(r"^(?P<id>[^/]+)/"),
    entity="UsrRealtyFile",
    parent_schema="UsrRealty",
    parent_id="{id}",
    name_template="{stem} ({date}).{ext}",
)


def refused(reason: str, rule: Rule, path: str, **kw: Any) -> FileRefused:
    with pytest.raises(FileRefused) as info:
        route(rule, path, **kw)
    assert info.value.reason == reason, info.value
    return info.value


# -- the rule --------------------------------------------------------------------------------


def test_named_groups_fill_the_parent_query_and_the_name_defaults_to_the_file_name() -> None:
    r = route(CASES, "SR00042_contract signed.pdf")
    assert (r.entity, r.parent_schema, r.parent_where, r.parent_id) == (
        "CaseFile",
        "Case",
        {"Number": "SR00042"},
        None,
    )
    assert r.name == "SR00042_contract signed.pdf"
    assert r.fields["number"] == "SR00042" and r.fields["inbox"] == "case-documents"


def test_the_pattern_is_searched_in_the_path_relative_to_the_folder_with_slashes() -> None:
    r = route(CASES, "SR7/scans/page 1.tiff")
    assert r.parent_where == {"Number": "SR7"}
    assert (r.fields["dir"], r.fields["file"], r.name) == (
        "SR7/scans",
        "page 1.tiff",
        "page 1.tiff",
    )
    unanchored = Rule(
        "x", re.compile(r"(?P<number>SR\d+)"), "CaseFile", "Case", {"Number": "{number}"}
    )
    assert route(unanchored, "2024/inbox SR9.pdf").parent_where == {"Number": "SR9"}


def test_a_file_that_does_not_match_is_refused_with_the_pattern_in_the_reason() -> None:
    error = refused("no_match", CASES, "invoice 2024.pdf")
    assert "^(?P<number>SR\\d+)[/_ -]" in error.message
    assert error.path == "invoice 2024.pdf"


def test_without_a_pattern_every_file_matches() -> None:
    rule = Rule("all", None, "SysFile", "Account", parent_id=GUID.lower())
    assert route(rule, "a/b/c.txt").parent_id == GUID.lower()


def test_a_parent_id_template_must_give_a_guid_which_is_lowercased() -> None:
    r = route(BY_ID, f"{GUID}/plan.pdf", builtins={"date": "2026-11-28"})
    assert (r.parent_id, r.parent_where) == (GUID.lower(), None)
    assert r.name == "plan (2026-11-28).pdf"
    error = refused("bad_parent_id", BY_ID, f"{'z' * 36}/plan.pdf", builtins={"date": "d"})
    assert "is not a GUID" in error.message


def test_caller_builtins_override_path_fields_and_named_groups_override_both() -> None:
    rule = Rule(
        "scans",
        re.compile(r"^(?P<number>SR\d+)_(?P<date>\d{8})"),
        "CaseFile",
        "Case",
        {"Number": "{number}"},
        name_template="{date} {file}",
    )
    # the content is a PDF: the daemon passes the corrected file name
    r = route(rule, "SR1_20261128_scan", builtins={"file": "SR1_20261128_scan.pdf", "date": "x"})
    assert r.name == "20261128 SR1_20261128_scan.pdf"


def test_an_optional_group_that_did_not_take_part_cannot_be_used() -> None:
    rule = Rule(
        "x",
        re.compile(r"^(?P<number>SR\d+)(?:_(?P<tag>\w+))?"),
        "CaseFile",
        "Case",
        {"Number": "{number}"},
        name_template="{tag}.{ext}",
    )
    assert route(rule, "SR1_offer.pdf").name == "offer.pdf"
    assert "{tag}" in refused("bad_template", rule, "SR1.pdf").message


def test_an_empty_parent_value_is_refused_rather_than_matching_every_empty_record() -> None:
    rule = Rule("x", re.compile(r"^(?P<number>\d*)_"), "CaseFile", "Case", {"Number": "{number}"})
    refused("bad_parent_where", rule, "_scan.pdf")


def test_path_fields_split_names_like_a_person_would() -> None:
    assert path_fields("a/b/report.final.xlsx", "i") == {
        "path": "a/b/report.final.xlsx",
        "dir": "a/b",
        "file": "report.final.xlsx",
        "stem": "report.final",
        "ext": "xlsx",
        "inbox": "i",
    }
    assert (path_fields("scan", "i")["stem"], path_fields("scan", "i")["ext"]) == ("scan", "")
    assert (path_fields(".profile", "i")["stem"], path_fields(".profile", "i")["ext"]) == (
        ".profile",
        "",
    )


def test_a_path_outside_the_inbox_is_a_programming_error() -> None:
    for bad in ("/etc/passwd", "../x.pdf", "a/../../x.pdf", ""):
        with pytest.raises(ValueError, match="relative"):
            route(CASES, bad)


# -- templates cannot be abused --------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{__class__}",
        "{number.__class__}",
        "{number.upper}",
        "{number[0]}",
        "{0}",
        "{}",
        "{number!r}",
        "{number:>1000000000}",
        "{number:{number}}",
        "{number",
        "number}",
    ],
)
def test_template_injection_is_refused_and_nothing_is_evaluated(template: str) -> None:
    rule = Rule(
        "x", CASES.pattern, "CaseFile", "Case", {"Number": "{number}"}, name_template=template
    )
    error = refused("bad_template", rule, "SR1_a.pdf")
    assert "template" in error.message
    assert rule_problems(rule)  # config validation reports it before any file arrives


def test_field_values_are_substituted_literally() -> None:
    rule = Rule(
        "x",
        re.compile(r"^(?P<number>[^ ]+) "),
        "CaseFile",
        "Case",
        {"Number": "{number}"},
        name_template="{number} {file}",
    )
    r = route(rule, "{__class__} {0}{x!r}.pdf")
    assert r.parent_where == {"Number": "{__class__}"}
    assert r.name == "{__class__} {__class__} {0}{x!r}.pdf"


def test_literal_braces_are_written_doubled() -> None:
    rule = Rule("x", None, "SysFile", "Account", parent_id=GUID, name_template="{{{stem}}}.{ext}")
    assert route(rule, "a.pdf").name == "{a}.pdf"
    assert template_fields("{{x}} {y}") == {"y"}


def test_names_are_cleaned_for_creatio() -> None:
    assert clean_name("a\nb\tc\x00.pdf") == "a_b_c_.pdf"
    assert clean_name("caf\udce9.pdf") == "caf\ufffd.pdf"  # an undecodable byte from the disk
    rule = Rule("x", None, "SysFile", "Account", parent_id=GUID, name_template="{dir}")
    refused("bad_template", rule, "top.pdf")  # the Name came out empty


def test_rule_problems_list_everything_for_the_config_file() -> None:
    rule = Rule(
        "x",
        re.compile(r"(?P<number>\d+)"),
        "Case File",
        "Case",
        {"Number": "{numbr}", "Bad Column": "{number}"},
        parent_id="{id}",
        name_template="{file.x}",
    )
    problems = "\n".join(rule_problems(rule))
    for expected in ("entity: 'Case File'", "exactly one of", "numbr", "'Bad Column'", "name:"):
        assert expected in problems
    assert rule_problems(CASES) == [] and rule_problems(BY_ID) == []
    assert check_template("{date}/{stem}", {"date", "stem"}) == []


def test_folder_templates_expand_folder_and_date_only() -> None:
    assert (
        expand_folder_template(
            "{folder}/.archive/{date}", folder="/srv/drop/cases", date="2026-11-28"
        )
        == "/srv/drop/cases/.archive/2026-11-28"
    )
    with pytest.raises(ConfigError) as info:
        expand_folder_template("{folder}/{user}", folder="/srv", date="d")
    assert "user" in str(info.value)


# -- sidecars --------------------------------------------------------------------------------


def test_a_sidecar_overrides_entity_parent_and_name() -> None:
    sidecar = parse_sidecar(
        json.dumps(
            {
                "entity": "SysFile",
                "parent": {"schema": "Account", "id": GUID},
                "name": "Contract 2026.pdf",
            }
        )
    )
    r = route(CASES, "SR1_scan.pdf", sidecar=sidecar)
    assert (r.entity, r.parent_schema, r.parent_id, r.parent_where, r.name) == (
        "SysFile",
        "Account",
        GUID.lower(),
        None,
        "Contract 2026.pdf",
    )
    assert r.from_sidecar == ("entity", "name", "parent")
    assert sidecar_path("SR1_scan.pdf") == "SR1_scan.pdf.json"


def test_sidecar_values_are_literal_not_templates() -> None:
    sidecar = parse_sidecar('{"parent": {"where": {"Number": "{number}"}}, "name": "{file}"}')
    r = route(CASES, "SR1_scan.pdf", sidecar=sidecar)
    assert (r.parent_schema, r.parent_where, r.name) == ("Case", {"Number": "{number}"}, "{file}")


def test_a_sidecar_parent_id_must_be_a_guid() -> None:
    sidecar = parse_sidecar('{"parent": {"id": "42"}}')
    assert (
        "from the sidecar" in refused("bad_parent_id", CASES, "SR1_a.pdf", sidecar=sidecar).message
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "must be an object, not an array"),
        ('{"entity": "CaseFile", "owner": "me"}', "unknown key(s) 'owner'"),
        ('{"entity": 5}', "'entity' must be a non-empty string, not a number"),
        ('{"entity": "../../odata/Contact"}', "not an object name"),
        ('{"name": ""}', "'name' must be a non-empty string"),
        ('{"parent": "SR1"}', "'parent' must be an object, not a string"),
        ('{"parent": {"id": "x", "where": {"A": "b"}}}', "exactly one of 'id' and 'where'"),
        ('{"parent": {}}', "exactly one of 'id' and 'where'"),
        ('{"parent": {"id": null}}', "'parent.id' must be a string, not null"),
        ('{"parent": {"where": {}}}', "must be a non-empty object"),
        ('{"parent": {"where": {"Number": 42}}}', "'parent.where.Number' must be a string"),
        ('{"parent": {"where": {"Number eq 1 or 1": "x"}}}', "is not a column name"),
        ('{"parent": {"schema": "Case;drop", "id": "x"}}', "not an object name"),
        ('{"parent": {"schema": "Case", "id": "x", "columns": 1}}', "unknown key(s) in 'parent'"),
        ("[" * 100_000 + "]" * 100_000, "larger than"),
    ],
)
def test_a_malformed_sidecar_is_refused_with_a_clear_message(text: str, says: str) -> None:
    with pytest.raises(FileRefused) as info:
        parse_sidecar(text)
    assert info.value.reason == "bad_sidecar"
    assert says in info.value.message
    assert "expected JSON like" in (info.value.hint or "")


def test_route_checks_a_sidecar_given_as_a_mapping_too() -> None:
    refused("bad_sidecar", CASES, "SR1_a.pdf", sidecar={"entity": "CaseFile", "extra": 1})


def test_deeply_nested_sidecar_json_is_refused_not_crashing() -> None:
    with pytest.raises(FileRefused) as info:
        parse_sidecar("[" * 20_000 + "]" * 20_000)
    assert info.value.reason == "bad_sidecar"
