"""The consoles every ``servesim`` command prints to, and the one way a command fails on bad
input: a single ``error:`` line (file, field, fix) and exit status 2, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True)


def with_file(path: Path, err: Exception) -> str:
    """The error's message, prefixed with the file it is about unless it already names it."""
    text = str(err)
    return text if text.startswith(str(path)) else f"{path}: {text}"


def fail(message: str) -> NoReturn:
    """Print ``error: message`` (brackets in it are text, not markup) and exit with status 2."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)
