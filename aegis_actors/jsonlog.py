"""The JSON-lines log file: a queue and one writer thread, with size-based rotation.

Actors only put the log record on a queue (a few microseconds, no lock held while
writing); the writer thread serialises it, so neither JSON encoding nor the file costs
the actor's thread anything.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B?)\s*", text.upper())
    if not m:
        raise ValueError(f"not a size: {text!r} (e.g. '50 MB')")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


class JsonLines:
    """A loguru sink: `logger.add(JsonLines(path), format=...)`."""

    _STOP = object()

    def __init__(
        self,
        path: Path,
        serialise: Callable[[Any], str] = str,
        *,
        rotation: str = "50 MB",
        retention: int = 10,
    ) -> None:
        self.path = path
        self.serialise = serialise  # record -> line, on the writer thread
        self.max_bytes = parse_size(rotation)
        self.retention = retention
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._size = self._file.tell()
        self._thread = threading.Thread(target=self._run, name="aegis-jsonlog", daemon=True)
        self._thread.start()

    def __call__(self, message: Any) -> None:
        """loguru calls this with its formatted message; the record travels, not the text."""
        self._q.put(getattr(message, "record", None) or str(message))

    def flush(self, timeout: float = 5.0) -> None:
        """Block until every line put so far is on disk (tests and a clean stop)."""
        done = threading.Event()
        self._q.put(done)
        done.wait(timeout)

    def stop(self) -> None:
        self._q.put(self._STOP)
        self._thread.join(5.0)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            batch = [item]
            while True:  # drain what is there, then write it in one go
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            for x in batch:
                if x is self._STOP:
                    self._file.flush()
                    self._file.close()
                    return
                if isinstance(x, threading.Event):
                    self._file.flush()
                    x.set()
                    continue
                try:
                    line = x if isinstance(x, str) else self.serialise(x)
                except Exception as exc:  # a bad record never stops the log
                    line = f'{{"level":"ERROR","msg":"unloggable record: {type(exc).__name__}"}}\n'
                self._write(line)
            self._file.flush()

    def _write(self, line: str) -> None:
        if self._size + len(line) > self.max_bytes and self._size > 0:
            self._rotate()
        self._file.write(line)
        self._size += len(line)

    def _rotate(self) -> None:
        self._file.close()
        for i in range(self.retention - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        extra = self.path.with_name(f"{self.path.name}.{self.retention + 1}")
        extra.unlink(missing_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._size = 0
