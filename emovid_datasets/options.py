"""Command-line options from a settings dataclass: one place states each default and its help.

A field becomes ``--field-name`` with the field's default, type and ``metadata["help"]`` (and
``metadata["choices"]``); a bool field becomes a ``--name/--no-name`` switch.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Optional, TypeVar

T = TypeVar("T")


def _base_type(hint: Any) -> Any:
    """``int`` for ``Optional[int]``; the hint itself otherwise."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 else hint


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add one option per field of the dataclass ``cls`` (except ``skip``), defaults and help from the fields."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _base_type(hints[f.name])
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=f.default, help=help_text,
                                choices=f.metadata.get("choices"))


def dataclass_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """An instance of ``cls`` from the parsed options its fields added (``overrides`` win)."""
    values: dict[str, Optional[Any]] = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                                        if hasattr(args, f.name)}
    return cls(**{**values, **overrides})
