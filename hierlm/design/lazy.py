"""Fields of a frozen record that are computed on first read.

A fit's tables that most callers never read (the random-effects table with its
conditional variances, the variance-component table, the fitted values) cost more than
the rest of a small fit's result together: 1.4 ms of a 10-14 ms sleepstudy or
penicillin fit (2 cores, load below 1).  :func:`deferred` wraps the function that
computes such a value, and a record class made with :func:`lazy_fields` stores the
wrapper and replaces it by its value the first time the field is read.  The record stays
a frozen dataclass with the same fields: ``dataclasses.fields``, ``replace``, ``asdict``,
``repr`` and pickling read the value through the field as any caller does.

The value is computed once, under a lock of its own: threads that read the field of one
record at the same time get the same object, and records do not wait on each other.

The design's records use it too (it lives in the design layer, the lowest that has
records; :mod:`hierlm.estimate.lazy` re-exports it): a term's level values
(``RandomTerm.level_values``, a pandas Index) and the new-data coder's frame
(``NewDataCoder.frame``, a copy of the used columns) are built when first read, which a
fit that never predicts or tabulates random effects does not do.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any, cast


class Deferred[T]:
    """A value computed by ``fn()`` on the first :meth:`get`, once.

    Examples
    --------
    >>> calls = []
    >>> d = Deferred(lambda: calls.append(1) or 42)
    >>> d.get(), d.get(), len(calls)
    (42, 42, 1)
    """

    __slots__ = ("_done", "_fn", "_lock", "_value")

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn: Callable[[], T] | None = fn
        self._lock = threading.Lock()
        self._done = False
        self._value: T | None = None

    def get(self) -> T:
        """The value (computed on the first call)."""
        if not self._done:
            with self._lock:
                if not self._done:
                    assert self._fn is not None
                    self._value = self._fn()
                    self._fn = None  # the inputs it holds can go
                    self._done = True
        return cast(T, self._value)

    def __reduce__(self) -> tuple[Callable[[Any], Any], tuple[Any]]:
        return _identity, (self.get(),)  # a pickle holds the value, not the function


def _identity[T](value: T) -> T:
    return value


def deferred[T](fn: Callable[[], T]) -> T:
    """``fn()``, computed when a field of a :func:`lazy_fields` class is first read.

    Typed as the value it stands for: pass it where the record expects that value.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Rec:
    ...     x: int
    ...     table: list
    >>> _ = lazy_fields(Rec, "table")
    >>> r = Rec(1, deferred(lambda: [1, 2]))
    >>> r.table, r.table is r.table
    ([1, 2], True)
    """
    return cast(T, Deferred(fn))


class LazyField:
    """Data descriptor of one field: a :class:`Deferred` stored there is resolved on read."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, cls: type | None = None) -> Any:
        if obj is None:
            return self
        store = obj.__dict__
        try:
            value = store[self.name]
        except KeyError:
            raise AttributeError(self.name) from None
        if isinstance(value, Deferred):
            value = value.get()
            store[self.name] = value  # later reads skip the wrapper
        return value

    def __set__(self, obj: object, value: Any) -> None:
        # reached only through object.__setattr__, as a frozen dataclass's __init__ sets
        # its fields; assignment by callers still raises FrozenInstanceError first
        obj.__dict__[self.name] = value


def lazy_fields[T](cls: type[T], *names: str) -> type[T]:
    """Make the dataclass fields ``names`` of ``cls`` accept :func:`deferred` values.

    Call it after the class is made; subclasses inherit the behaviour.
    """
    fields = getattr(cls, "__dataclass_fields__", {})
    for name in names:
        if name not in fields:
            raise TypeError(f"{cls.__name__} has no dataclass field {name!r}")
        setattr(cls, name, LazyField(name))
    return cls


def stored_fields(obj: Any) -> dict[str, Any]:
    """The dataclass fields of ``obj`` as stored: deferred values stay unresolved.

    For copying a record into another (``cls(**stored_fields(rec))``) without computing
    what no one has read yet.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Rec:
    ...     table: list
    >>> _ = lazy_fields(Rec, "table")
    >>> type(stored_fields(Rec(deferred(list)))["table"]).__name__
    'Deferred'
    """
    store = vars(obj)
    return {name: store[name] if name in store else getattr(obj, name)
            for name in field_names(type(obj))}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    """The names of a dataclass's fields, in order (``dataclasses.fields``, read once
    per class: it filters the class's fields on every call).

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Rec:
    ...     x: int
    ...     y: int = 0
    >>> field_names(Rec)
    ('x', 'y')
    """
    names = _FIELD_NAMES.get(cls)
    if names is None:  # (a race makes the same tuple twice)
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names
