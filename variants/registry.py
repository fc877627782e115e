"""Cells by name. A cell registers itself where it is defined (`@register("gru", ...)` on its class), and
`cell=<name>` selects it through conf/cell/<name>.yaml; a module outside this package is imported by the
yaml's `_target_` (the cell class's import path). docs/cells.md shows a whole new cell.

An entry also carries what the tests need to check a cell without a line in the test files: its NumPy
reference step and the parameter tree it must have.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Sequence
from typing import Any, Callable

import flax.linen as nn

INITIALIZERS = ("glorot_uniform", "glorot_normal", "lecun_normal", "lecun_uniform", "he_normal", "orthogonal")
INIT_KEYS = ("kernel_init", "recurrent_init")  # config keys that name an initialiser
HOW_TO_ADD = ("to add one, write a module whose cell class is decorated with @variants.register(<name>, ...) and "
              "conf/cell/<name>.yaml (with `_target_: <module>.<Class>` when the module is outside variants/): "
              "docs/cells.md")


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    build: Callable[..., nn.Module]  # (hidden, dtype=None, **the yaml's keys) -> the cell
    reference: Callable | None = None  # NumPy one step, float64: (cell, params {name: array}, carry, x) -> (carry, y)
    parameters: Callable | None = None  # (inputs D, hidden H) -> {parameter name: shape}
    keys: tuple[str, ...] = ()  # the config keys the cell reads besides name (conf/cell/<name>.yaml)
    switches: bool = False  # Greff's gate switches (cell.switches, variants as data in populations)


_ENTRIES: dict[str, Entry] = {}


class _Names(Sequence):
    """The registered names, live (a module imported later adds its cells), in registration order."""

    def __getitem__(self, i):
        return tuple(_ENTRIES)[i]

    def __len__(self):
        return len(_ENTRIES)

    def __eq__(self, other):
        return tuple(self) == tuple(other)

    def __repr__(self):
        return f"CELLS{tuple(self)}"


CELLS = _Names()


def register(name: str, *, reference=None, parameters=None, keys: tuple[str, ...] | None = None):
    """Class decorator: `cell=name` builds this cell class. `reference` and `parameters`: see `Entry` (the
    tests check the cell against them); `keys`: the config keys it reads (default: its fields but `hidden`
    and `dtype`, e.g. kernel_init, recurrent_init and its own)."""

    def decorate(cls):
        fields = tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("hidden", "dtype", "parent", "name"))
        add(Entry(name, _builder(cls, name), reference, parameters, fields if keys is None else tuple(keys)))
        cls.registered_name = name
        return cls

    return decorate


def add(entry: Entry) -> None:
    """Register an entry (what `register` does for a class; variants/gated.py adds its nine variants)."""
    if entry.name in _ENTRIES and _ENTRIES[entry.name].build.__qualname__ != entry.build.__qualname__:
        raise ValueError(f"Two cells are registered as {entry.name!r}; cell names must be unique.")
    _ENTRIES[entry.name] = entry


def entry(name: str, target: str | None = None) -> Entry:
    """The cell registered as `name`; with `target` (a yaml's `_target_`, "module.Class"), its module is
    imported first, so it registers itself."""
    if name not in _ENTRIES and target:
        module = target.rsplit(".", 1)[0]
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ValueError(f"cell {name!r}: cannot import {module!r} (its _target_ {target!r}): {e}") from e
    if name not in _ENTRIES:
        raise ValueError(f"Unknown cell {name!r}; choose one of {', '.join(CELLS)} ({HOW_TO_ADD}).")
    return _ENTRIES[name]


def make_cell(name: str, hidden: int, dtype=None, switches_as_data: bool = False, **keys) -> nn.Module:
    """The cell `name` with `hidden` units, built from its config keys (conf/cell/<name>.yaml, less `name`):
    `make_cell("np", 64, switches={"coupled": True})` is NP + CIFG; `kernel_init` and `recurrent_init` name
    initialisers (INITIALIZERS). `switches_as_data`: a Greff variant whose switches are data
    (variants.SwitchedCell), so that variants share one program."""
    found = entry(name, keys.pop("_target_", None))
    switches = {k: v for k, v in (keys.pop("switches", None) or {}).items() if v is not None}  # null: the variant's own
    if switches and not found.switches:
        switching = ", ".join(n for n, e in _ENTRIES.items() if e.switches)
        raise ValueError(f"Cell {name!r} has no gate switches (got {switches}); switches apply to {switching}.")
    if found.switches:
        keys["switches"] = switches
    unknown = sorted(set(keys) - set(found.keys))
    if unknown:
        raise ValueError(f"Cell {name!r} has no key(s) {unknown}; its keys are {', '.join(found.keys) or 'none'}.")
    if switches_as_data and not found.switches:
        raise ValueError(f"Cell {name!r} has no switches to read as data.")
    keys = {k: initializer(v) if k in INIT_KEYS else v for k, v in keys.items()}
    extra = {"switches_as_data": True} if switches_as_data else {}
    return found.build(hidden, dtype=dtype, **keys, **extra)


def _check_types(cls, name: str, keys: dict) -> None:
    """A config value of the wrong plain type (a yaml without a schema: `cell.leak=abc`) is refused, naming it."""
    hints = typing.get_type_hints(cls)
    for key, value in keys.items():
        want = hints.get(key)
        ok = {float: (int, float), int: (int,), bool: (bool,), str: (str,)}.get(want)
        if ok and (not isinstance(value, ok) or (want is not bool and isinstance(value, bool))):
            raise ValueError(f"cell.{key}={value!r} of cell {name!r} must be a {want.__name__}")


def initializer(name: str):
    """A Flax initialiser by name, for W (kernel_init) and R (recurrent_init) from the config."""
    if name not in INITIALIZERS:
        raise ValueError(f"Unknown initialiser {name!r}; choose one of {', '.join(INITIALIZERS)}.")
    return getattr(nn.initializers, name)()


def _builder(cls, name: str) -> Callable:
    def build(hidden: int, dtype: Any = None, **keys):
        _check_types(cls, name, keys)
        return cls(hidden, dtype=dtype, **keys)

    build.__qualname__ = f"{cls.__module__}.{cls.__qualname__}"
    return build
