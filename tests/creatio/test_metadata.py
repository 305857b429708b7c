"""Parsing $metadata (CSDL) into entities, typed columns and lookups."""

from __future__ import annotations

import pytest

from creatio_attach.creatio import parse_metadata
from creatio_attach.errors import CreatioRejected

# Creatio's layout: edmx:Edmx/edmx:DataServices/Schema, one EntityContainer of EntitySets
CSDL = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
  <edmx:DataServices>
    <Schema Namespace="Terrasoft.Configuration.OData" xmlns="http://docs.oasis-open.org/odata/ns/edm">
      <EntityType Name="Contact">
        <Key><PropertyRef Name="Id"/></Key>
        <Property Name="Id" Type="Edm.Guid" Nullable="false"/>
        <Property Name="Name" Type="Edm.String"/>
      </EntityType>
      <EntityType Name="Case">
        <Key><PropertyRef Name="Id"/></Key>
        <Property Name="Id" Type="Edm.Guid" Nullable="false"/>
        <Property Name="Number" Type="Edm.String"/>
        <Property Name="Subject" Type="Edm.String"/>
        <Property Name="Priority" Type="Edm.Int32"/>
        <Property Name="CreatedOn" Type="Edm.DateTimeOffset"/>
        <Property Name="ContactId" Type="Edm.Guid"/>
        <NavigationProperty Name="Contact" Type="Terrasoft.Configuration.OData.Contact"/>
        <NavigationProperty Name="CaseFileCollectionByCase"
            Type="Collection(Terrasoft.Configuration.OData.CaseFile)"/>
      </EntityType>
      <EntityType Name="CaseFile">
        <Key><PropertyRef Name="Id"/></Key>
        <Property Name="Id" Type="Edm.Guid" Nullable="false"/>
        <Property Name="Name" Type="Edm.String"/>
        <Property Name="Data" Type="Edm.Stream"/>
        <Property Name="Size" Type="Edm.Int32"/>
        <Property Name="CaseId" Type="Edm.Guid"/>
        <NavigationProperty Name="Case" Type="Terrasoft.Configuration.OData.Case"/>
      </EntityType>
      <EntityContainer Name="BPMonline">
        <EntitySet Name="Contact" EntityType="Terrasoft.Configuration.OData.Contact"/>
        <EntitySet Name="Case" EntityType="Terrasoft.Configuration.OData.Case"/>
        <EntitySet Name="CaseFile" EntityType="Terrasoft.Configuration.OData.CaseFile"/>
      </EntityContainer>
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>
"""


def test_entities_columns_and_lookups_are_read() -> None:
    md = parse_metadata(CSDL)
    assert sorted(md) == ["Case", "CaseFile", "Contact"]
    case = md.require("Case")
    assert case.columns["Number"] == "Edm.String"
    assert case.columns["ContactId"] == "Edm.Guid"
    assert case.lookups == {"Contact": "Contact"}  # collections are not lookups
    assert case.key == ("Id",)
    assert md.require("CaseFile").lookup_to("Case") == "Case"
    assert md.entity("Nope") is None


def test_a_misspelt_object_is_refused_with_a_suggestion() -> None:
    with pytest.raises(CreatioRejected) as caught:
        parse_metadata(CSDL).require("casefile")
    assert caught.value.hint == "did you mean CaseFile?"


def test_broken_or_empty_metadata_is_refused() -> None:
    with pytest.raises(CreatioRejected, match="not valid XML"):
        parse_metadata("<edmx:Edmx")
    with pytest.raises(CreatioRejected, match="no entity sets"):
        parse_metadata("<Edmx/>")
