"""Reading the row files people hand to the toolkit (metadata, votes): errors name the file and the line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union


def read_json_lines(path: Union[str, os.PathLike]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSON-lines file.

    Raises ValueError naming the file and the line for invalid JSON or a line that is not an object.
    """
    rows = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} line {line_no}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise ValueError(f"{path} line {line_no}: expected a JSON object")
        rows.append((line_no, row))
    return rows


def read_json_file(path: Union[str, os.PathLike]) -> Any:
    """A whole JSON document; ValueError naming the file and the line for invalid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from exc
