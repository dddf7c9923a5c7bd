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


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = (),
                            fallback: Optional[str] = None) -> None:
    """Add one option per field of the dataclass ``cls`` (except ``skip``), defaults and help from the fields.

    With ``fallback`` (e.g. "the config's value"), an option not given parses as None, so the caller can
    take the value from elsewhere before the field's default; the help says so.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _base_type(hints[f.name])
        default = None if fallback else f.default
        help_text = f"{f.metadata.get('help', '')} (default: {f'{fallback}, else ' if fallback else ''}{f.default})"
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=default, help=help_text,
                                choices=f.metadata.get("choices"))


def dataclass_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """An instance of ``cls`` from the parsed options its fields added (``overrides`` win)."""
    return cls(**{**given_options(cls, args, keep_none=True), **overrides})


def given_options(cls: type, args: argparse.Namespace, *, keep_none: bool = False) -> dict[str, Any]:
    """The parsed values of ``cls``' fields (only those not None unless ``keep_none``)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if hasattr(args, f.name) and (keep_none or getattr(args, f.name) is not None)}


def options_from(cls: type[T], values: Optional[dict[str, Any]], where: str) -> T:
    """An instance of the options dataclass ``cls`` from a config section; an unknown key is an error naming it."""
    values = dict(values or {})
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {', '.join(names)}")
    return cls(**values)
