"""What a command prints never holds a secret: while a command runs, its stdout and stderr (and so its log lines,
its progress, its errors and any traceback) pass through the scrubber of the settings in force.

Structured output already names every URL and DSN through `chroma_ha.redaction`; this is the net under it, for the
text no one formats on purpose: a driver's message, an exception, a library's log line.
"""

from __future__ import annotations

import contextlib
import io
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import TextIO

import click

from ..settings import Settings


class ScrubbingStream(io.TextIOBase):
    """A text stream that writes what it is given to `stream`, secrets taken out. One write is scrubbed whole: a
    log record, a printed line and a traceback each arrive in one."""

    def __init__(self, stream: TextIO, scrub: Callable[[str], str]) -> None:
        self._stream = stream
        self._scrub = scrub

    def write(self, text: str) -> int:
        self._stream.write(self._scrub(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self._stream.errors


@contextlib.contextmanager
def secrets_kept(settings: Settings) -> Iterator[Callable[[str], str]]:
    """Scrub everything the block prints; an unexpected error is shown as a scrubbed traceback and exit status 1,
    and a usage error's message is scrubbed before click prints it (after the block)."""
    scrub = settings.scrubber()
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = ScrubbingStream(out, scrub), ScrubbingStream(err, scrub)  # type: ignore[assignment]
    try:
        yield scrub
    except click.ClickException as exc:
        exc.message = scrub(exc.message)  # type: ignore[misc]  # final in the stubs, a plain attribute in click
        raise
    except (click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt):
        raise
    except Exception:
        traceback.print_exc()
        raise SystemExit(1) from None
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = out, err
