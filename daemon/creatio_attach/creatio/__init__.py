"""The Creatio client: the only code in the project that imports ``urllib3`` or ``requests``.

Re-exports the public API (see ``client.py``); importing this package makes no network call.
"""

from __future__ import annotations

from .client import CreatioClient
from .literals import Condition
from .metadata import EntityInfo, Metadata, parse_metadata
from .retry import RetryPolicy
from .types import FILE_TYPE_FILE, Attachment, Target, UploadResult

__all__ = [
    "FILE_TYPE_FILE",
    "Attachment",
    "Condition",
    "CreatioClient",
    "EntityInfo",
    "Metadata",
    "RetryPolicy",
    "Target",
    "UploadResult",
    "parse_metadata",
]
