"""The JSON-lines log file: a queue and one writer thread, with size-based rotation.

Actors only put the log record on a queue (a few microseconds, no lock held while
writing); the writer thread serialises it, so neither JSON encoding nor the file costs
the actor's thread anything. With `background=False` (the deterministic one-thread
runtime of a backtest) the caller serialises and writes the line itself: there each put
was a hand-off of the interpreter lock to the writer and back, dearer than the line.
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
        background: bool = True,
    ) -> None:
        self.path = path
        self.serialise = serialise  # record -> line, on the writer thread
        self.max_bytes = parse_size(rotation)
        self.retention = retention
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._size = self._file.tell()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # without the writer: a foreign thread may log too
        if background:
            self._thread = threading.Thread(target=self._run, name="aegis-jsonlog", daemon=True)
            self._thread.start()

    def __call__(self, message: Any) -> None:
        """loguru calls this with its formatted message; the record travels, not the text."""
        item = getattr(message, "record", None) or str(message)
        if self._thread is not None:
            self._q.put(item)
            return
        line = self._line(item)
        with self._lock:
            if not self._file.closed:
                self._write(line)

    def flush(self, timeout: float = 5.0) -> None:
        """Block until every line put so far is on disk (tests and a clean stop)."""
        if self._thread is None:
            with self._lock:
                if not self._file.closed:
                    self._file.flush()
            return
        done = threading.Event()
        self._q.put(done)
        done.wait(timeout)

    def stop(self) -> None:
        if self._thread is None:
            with self._lock:
                self._file.close()
            return
        self._q.put(self._STOP)
        self._thread.join(5.0)

    def _line(self, x: Any) -> str:
        try:
            return x if isinstance(x, str) else self.serialise(x)
        except Exception as exc:  # a bad record never stops the log
            return f'{{"level":"ERROR","msg":"unloggable record: {type(exc).__name__}"}}\n'

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
                self._write(self._line(x))
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
