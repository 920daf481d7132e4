"""Where formatted lines go: standard output or a file.

An output file is created readable by its owner only (0600): it can hold
other users' paths and, with ``--capture``, their data. It is opened for
appending and reopened by :meth:`Sink.reopen` (on SIGHUP), so logrotate can
move it away. Both opens refuse a path another user could redirect (a
symlink they planted, a file of theirs, a hard link): see
:func:`pybpf.safe_files.open_output_file`. Writes are buffered and flushed in batches by the caller.

A closed pipe (``sniffwrites ... | head``) raises :class:`OutputClosed`, which
the app turns into a quiet, clean exit rather than a traceback.
"""

import io
import os
import sys
from typing import List, Optional, TextIO

from pybpf.safe_files import open_output_file


class OutputClosed(Exception):
    """The reader of our output went away (EPIPE)."""


class Sink:
    """Line-oriented output to ``path`` (appended, 0600) or to stdout."""

    def __init__(self, path: Optional[str] = None):
        self.path = path
        self._stream: TextIO = self._open() if path else sys.stdout
        self.lines_written = 0

    def _open(self) -> TextIO:
        # Resolved so that no other user can redirect it: see pybpf.safe_files.
        fd = open_output_file(self.path)
        try:
            return io.open(fd, "w", encoding="utf-8", errors="backslashreplace",
                           buffering=1 << 16)
        except BaseException:
            os.close(fd)
            raise

    def write_lines(self, lines: List[str]) -> None:
        """Write ``lines`` (a list, borrowed: it is restored before returning)
        with a newline after each."""
        if not lines:
            return
        lines.append("")
        try:
            self._stream.write("\n".join(lines))
        except BrokenPipeError:
            raise OutputClosed() from None
        finally:
            lines.pop()
        self.lines_written += len(lines)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise OutputClosed() from None

    def reopen(self) -> None:
        """Close and reopen the output file (log rotation); stdout is kept."""
        if not self.path:
            return
        self.flush()
        old, self._stream = self._stream, self._open()
        old.close()

    def close(self) -> None:
        if self._stream is sys.stdout:
            try:
                self.flush()
            except OutputClosed:
                # Keep the interpreter from complaining about stdout at exit.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            return
        self._stream.close()

