"""Fields of a frozen record that are computed on first read (see :mod:`hierlm.design.lazy`).

The machinery lives in the design layer, whose records (a term's level values, a new-data
coder's frame) defer pandas objects too; the estimate layer's records import it from here.
"""

from __future__ import annotations

from hierlm.design.lazy import (
    Deferred,
    LazyField,
    deferred,
    field_names,
    lazy_fields,
    stored_fields,
)

__all__ = ["Deferred", "LazyField", "deferred", "field_names", "lazy_fields", "stored_fields"]
