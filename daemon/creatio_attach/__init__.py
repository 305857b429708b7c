"""creatio-attach: moves files from folders into Creatio CRM as attachments.

Holds the version only and imports nothing, so that `creatio-attach --help` starts fast.
"""

__version__ = "0.1.0"
