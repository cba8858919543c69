"""Result records and writers."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # the names, for type checkers; at run time they are imported on first use
    from .records import SCHEMA_VERSION, SampleRecord, environment, write_json  # noqa: F401

#: where each public name lives (imported on first access: `certnn --help` does not import torch)
_EXPORTS = {
    "SCHEMA_VERSION": ".records", "SampleRecord": ".records", "environment": ".records", "write_json": ".records",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
