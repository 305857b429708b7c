"""Parse Creatio's OData ``$metadata`` (CSDL XML) into entities, typed columns and lookups.

Pure parsing of a string; no I/O. Must not import ``requests``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field

from creatio_attach.errors import CreatioRejected


@dataclass(frozen=True)
class EntityInfo:
    """One entity set: ``columns`` maps property name -> Edm type (``ContactId`` included),
    ``lookups`` maps navigation name -> target schema (``Contact`` -> ``Contact``)."""

    name: str
    columns: dict[str, str] = field(default_factory=dict)
    lookups: dict[str, str] = field(default_factory=dict)
    key: tuple[str, ...] = ("Id",)

    def lookup_to(self, schema: str) -> str | None:
        """The navigation name of the lookup pointing at ``schema`` (``CaseFile`` -> ``Case``)."""
        if self.lookups.get(schema) == schema:
            return schema
        for nav, target in sorted(self.lookups.items()):
            if target == schema:
                return nav
        return None


@dataclass(frozen=True)
class Metadata:
    """All entity sets of a site, by name."""

    entities: dict[str, EntityInfo]

    def entity(self, name: str) -> EntityInfo | None:
        return self.entities.get(name)

    def require(self, name: str) -> EntityInfo:
        """The entity, or a clear rejection naming close matches."""
        info = self.entities.get(name)
        if info is None:
            near = sorted(n for n in self.entities if n.lower() == name.lower())
            raise CreatioRejected(
                f"Creatio has no object named {name!r}",
                hint=f"did you mean {near[0]}?" if near else "check the name in $metadata",
            )
        return info

    def __iter__(self) -> Iterator[str]:
        return iter(self.entities)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(elem: ET.Element, name: str) -> Iterator[ET.Element]:
    return (child for child in elem if _local(child.tag) == name)


def _type_name(qualified: str) -> str:
    """``Terrasoft.Configuration.Contact`` -> ``Contact``; collections are not lookups."""
    return qualified.rsplit(".", 1)[-1]


def parse_metadata(xml: str | bytes) -> Metadata:
    """Parse a CSDL document (``edmx:Edmx/edmx:DataServices/Schema``).

    The document comes from the configured Creatio site. Python's expat (>= 2.4.1, bundled
    with every supported CPython) refuses entity-expansion bombs and ElementTree never
    fetches external entities, so plain ElementTree is safe for it.
    """
    try:
        root = ET.fromstring(xml)  # noqa: S314 - see docstring
    except ET.ParseError as exc:
        raise CreatioRejected(f"Creatio's $metadata is not valid XML: {exc}") from exc
    types: dict[str, EntityInfo] = {}
    sets: dict[str, str] = {}
    for schema in root.iter():
        if _local(schema.tag) != "Schema":
            continue
        namespace = schema.get("Namespace", "")
        for etype in _children(schema, "EntityType"):
            name = etype.get("Name", "")
            columns = {
                p.get("Name", ""): p.get("Type", "")
                for p in _children(etype, "Property")
                if p.get("Name")
            }
            lookups = {
                n.get("Name", ""): _type_name(n.get("Type", ""))
                for n in _children(etype, "NavigationProperty")
                if n.get("Name") and not n.get("Type", "").startswith("Collection(")
            }
            key = tuple(
                ref.get("Name", "")
                for k in _children(etype, "Key")
                for ref in _children(k, "PropertyRef")
            )
            info = EntityInfo(name, columns, lookups, key or ("Id",))
            types[f"{namespace}.{name}"] = info
            types.setdefault(name, info)
        for container in _children(schema, "EntityContainer"):
            for eset in _children(container, "EntitySet"):
                sets[eset.get("Name", "")] = eset.get("EntityType", "")
    entities: dict[str, EntityInfo] = {}
    if sets:
        type_to_set = {_type_name(t): s for s, t in sets.items()}
        for set_name, type_name in sets.items():
            found = types.get(type_name) or types.get(_type_name(type_name))
            if found is None:
                continue
            lookups = {nav: type_to_set.get(t, t) for nav, t in found.lookups.items()}
            entities[set_name] = EntityInfo(set_name, found.columns, lookups, found.key)
    else:  # no container: entity types stand for their sets
        for qualified, info in types.items():
            if "." in qualified:
                entities[info.name] = info
    if not entities:
        raise CreatioRejected("Creatio's $metadata lists no entity sets")
    return Metadata(entities)
