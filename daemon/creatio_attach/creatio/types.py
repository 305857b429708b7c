"""Value types of the Creatio client: where a file goes, what an upload did, what a record holds.

Pure data, no I/O. Must not import ``requests`` nor anything but ``creatio_attach.errors``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from creatio_attach.errors import CreatioRejected

#: ``FileType`` lookup value "File" (contract 2.1); every upload is created with it.
FILE_TYPE_FILE = "529bc2f8-0ee0-df11-971b-001d60e938c6"

SYS_FILE = "SysFile"


def normalise_guid(value: str, what: str = "Id") -> str:
    """A GUID as Creatio's OData wants it: lowercase, no braces. Refused before any request."""
    try:
        return str(uuid.UUID(str(value).strip().strip("{}")))
    except ValueError:
        raise CreatioRejected(
            f"{what} {value!r} is not a GUID",
            hint="a record Id looks like 3fa85f64-5717-4562-b3fc-2c963f66afa6",
        ) from None


@dataclass(frozen=True)
class Target:
    """Where a file goes: a file object and the parent record it is attached to.

    ``parent_column`` is the flat lookup column written on create (``CaseId``); ``None``
    derives it from the file object's name (``CaseFile`` -> ``CaseId``). ``SysFile`` has no
    lookup: it is linked through ``RecordSchemaName`` + ``RecordId``.
    """

    file_object: str
    parent_schema: str
    parent_id: str
    parent_column: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "parent_id", normalise_guid(self.parent_id, "parent Id"))

    @classmethod
    def for_file_object(
        cls,
        file_object: str,
        parent_id: str,
        *,
        parent_schema: str | None = None,
        parent_column: str | None = None,
    ) -> Target:
        """``CaseFile`` -> parent schema ``Case``; ``SysFile`` needs ``parent_schema``."""
        if parent_schema is None:
            if file_object == SYS_FILE:
                raise CreatioRejected(
                    "SysFile needs the parent's schema name",
                    hint="give the schema, e.g. --parent UsrRealty:Id=<guid>",
                )
            if not file_object.endswith("File") or len(file_object) <= len("File"):
                raise CreatioRejected(
                    f"cannot derive the parent schema from {file_object!r}",
                    hint="file objects are named <Schema>File (CaseFile); otherwise give it",
                )
            parent_schema = file_object[: -len("File")]
        return cls(file_object, parent_schema, parent_id, parent_column)

    @property
    def is_sys_file(self) -> bool:
        return self.file_object == SYS_FILE

    @property
    def lookup_column(self) -> str:
        """The flat lookup column of a dedicated file object (``CaseId``)."""
        if self.parent_column:
            return self.parent_column
        base = self.file_object[: -len("File")] if self.file_object.endswith("File") else ""
        return f"{base or self.parent_schema}Id"

    @property
    def lookup_name(self) -> str:
        """The lookup's navigation name (``Case``), as FileApiService's ``parentColumnName``."""
        col = self.lookup_column
        return col[: -len("Id")] if col.endswith("Id") and len(col) > 2 else col

    def parent_values(self) -> dict[str, Any]:
        """The parent link as written in a create body."""
        if self.is_sys_file:
            return {"RecordSchemaName": self.parent_schema, "RecordId": self.parent_id}
        return {self.lookup_column: self.parent_id}


@dataclass(frozen=True)
class UploadResult:
    """What one upload did. ``adopted_server_id``: the server ignored our Id and we took its."""

    record_id: str
    file_object: str
    parent_schema: str
    parent_id: str
    name: str
    bytes: int
    mime: str
    sha256: str
    chunked: bool
    adopted_server_id: bool


@dataclass(frozen=True)
class Attachment:
    """One file attached to a record, from its file object or from ``SysFile``."""

    id: str
    object: str
    name: str
    size: int | None
    created_on: str | None
