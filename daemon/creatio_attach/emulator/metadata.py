"""``$metadata``: the CSDL (OData 4 EDMX) document describing every emulated schema.

One job: render :class:`Schemas` as ``edmx:Edmx/edmx:DataServices/Schema`` XML with
``EntityType`` (``Key/PropertyRef``, ``Property``, ``NavigationProperty``) and an
``EntityContainer`` of ``EntitySet``s, the standard layout clients parse (contract section 7b).
Must not import anything from the rest of ``creatio_attach`` nor starlette.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .filter import NAMESPACE, collection_name
from .schemas import ColumnType, Schemas

EDMX_NS = "http://docs.oasis-open.org/odata/ns/edmx"
EDM_NS = "http://docs.oasis-open.org/odata/ns/edm"
CONTAINER = "BPMonline"
_NOT_NULL = (ColumnType.INTEGER, ColumnType.BOOLEAN, ColumnType.FLOAT)


def build_metadata(schemas: Schemas) -> bytes:
    """The CSDL XML (UTF-8 bytes) for all schemas; lookups are a flat ``XxxId`` Edm.Guid
    property plus a ``NavigationProperty`` ``Xxx``; details appear as
    ``XxxCollectionByYyy`` collection navigation properties."""
    cached = getattr(schemas, "_metadata_xml", None)
    if isinstance(cached, bytes):
        return cached
    body = _build(schemas)
    schemas._metadata_xml = body  # type: ignore[attr-defined]
    return body


def _build(schemas: Schemas) -> bytes:
    ET.register_namespace("edmx", EDMX_NS)
    root = ET.Element(f"{{{EDMX_NS}}}Edmx", {"Version": "4.0"})
    services = ET.SubElement(root, f"{{{EDMX_NS}}}DataServices")
    schema_el = ET.SubElement(services, "Schema", {"Namespace": NAMESPACE, "xmlns": EDM_NS})
    for schema in schemas.values():
        entity = ET.SubElement(schema_el, "EntityType", {"Name": schema.name})
        key = ET.SubElement(entity, "Key")
        ET.SubElement(key, "PropertyRef", {"Name": "Id"})
        for col in schema.columns:
            attrs = {"Name": col.flat_name, "Type": col.type.edm}
            not_null = col.name == "Id" or col.type in _NOT_NULL
            attrs["Nullable"] = "false" if not_null else "true"
            ET.SubElement(entity, "Property", attrs)
        for col in schema.lookups():
            nav = ET.SubElement(
                entity,
                "NavigationProperty",
                {"Name": col.name, "Type": f"{NAMESPACE}.{col.reference}"},
            )
            ET.SubElement(
                nav,
                "ReferentialConstraint",
                {"Property": col.flat_name, "ReferencedProperty": "Id"},
            )
        for child, lookup in schemas.collections_of(schema.name):
            ET.SubElement(
                entity,
                "NavigationProperty",
                {
                    "Name": collection_name(child, lookup),
                    "Type": f"Collection({NAMESPACE}.{child.name})",
                },
            )
    container = ET.SubElement(schema_el, "EntityContainer", {"Name": CONTAINER})
    for schema in schemas.values():
        entity_set = ET.SubElement(
            container,
            "EntitySet",
            {"Name": schema.name, "EntityType": f"{NAMESPACE}.{schema.name}"},
        )
        for col in schema.lookups():
            ET.SubElement(
                entity_set,
                "NavigationPropertyBinding",
                {"Path": col.name, "Target": col.reference or ""},
            )
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body
