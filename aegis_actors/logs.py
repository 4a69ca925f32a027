"""Logging: loguru with a human sink on stderr and JSON lines in `<log_dir>/aegis.jsonl`.

Every line carries `actor` (who wrote it) and, when it is about an event, `event_id`,
so `tail` can follow one event end to end. Secrets never reach a sink: settings are
logged through `Settings.redacted()`, and `scrub()` masks any configured secret value that
slips into a message anyway.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from pydantic_core import to_json as dump_json

from aegis_actors.jsonlog import JsonLines
from aegis_actors.redact import redact_text
from supervisors import inline

if TYPE_CHECKING:
    from loguru import Logger, Record

__all__ = ["actor_logger", "configure", "flush", "logger", "tracing"]

_secrets: list[str] = []
_trace = False  # a sink takes DEBUG lines: per-event lines on the hot path are wanted
_sink: JsonLines | None = None
_RESERVED = {"actor", "event_id"}


def _scrub(text: str) -> str:
    """Mask every configured secret and any password inside a URL or DSN."""
    for secret in _secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    return redact_text(text)


def _patch(record: Record) -> None:
    """Runs on the caller's thread: only what every sink needs (names, no secrets)."""
    extra = record["extra"]
    extra.setdefault("actor", "main")
    extra.setdefault("event_id", None)
    record["message"] = _scrub(record["message"])


_second: tuple[int, str] = (0, "1970-01-01T00:00:00")  # the last second formatted


def _iso_ms(t: datetime) -> str:
    """`t` in UTC as ISO 8601 to the millisecond; the date and time of day are formatted
    once per second (a strftime per line was a fifth of the line's serialisation)."""
    global _second
    sec = int(t.timestamp())
    cached = _second
    if cached[0] != sec:
        cached = _second = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{t.microsecond // 1000:03d}+00:00"


def to_json(record: Record) -> str:
    """One JSON line for a record; runs on the JSON sink's writer thread, not the actor's."""
    extra = record["extra"]
    data: dict[str, Any] = {
        "ts": _iso_ms(record["time"]),
        "level": record["level"].name,
        "actor": extra.get("actor", "main"),
        "event_id": extra.get("event_id"),
        "msg": record["message"],
    }
    if len(extra) > len(_RESERVED):  # most lines carry only the two reserved keys
        for key, value in extra.items():
            if key not in _RESERVED and not key.startswith("_"):
                data[key] = value
    if record["exception"] is not None:
        exc = record["exception"]
        data["exception"] = _scrub(f"{exc.type.__name__ if exc.type else ''}: {exc.value}")
    return dump_json(data, fallback=str).decode() + "\n"


def _human(record: Record) -> str:
    ev = " [{extra[event_id]}]" if record["extra"].get("event_id") else ""
    tb = ""
    exc = record["exception"]
    if exc is not None:  # the standard format (never local variables' values), scrubbed
        text = "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
        record["extra"]["_tb"] = _scrub(text)
        tb = "{extra[_tb]}"
    return (
        "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
        "<cyan>{extra[actor]: <10}</cyan>" + ev + " {message}\n" + tb
    )


def configure(
    log_dir: str | Path,
    *,
    level: str = "INFO",
    json_level: str = "INFO",
    rotation: str = "50 MB",
    retention: int = 10,
    secrets: Iterable[str] = (),
    stderr: bool = True,
) -> Path:
    """Install the two sinks (replacing any); returns the JSON log's path.

    The JSON sink is at INFO by default: per-event DEBUG lines cost CPU on the event path
    (about a sixth of an event's budget each), so they are written only when a sink asks
    for DEBUG (`run.log_level` or `run.json_log_level`); see `tracing()`."""
    global _trace
    _secrets[:] = [s for s in secrets if s]
    _trace = min(logger.level(level).no, logger.level(json_level).no) <= logger.level("DEBUG").no
    path = Path(log_dir) / "aegis.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.configure(patcher=_patch)
    if stderr:
        # diagnose off: loguru would print local variables' values (secrets among them).
        logger.add(
            sys.stderr, level=level, format=_human, colorize=None, backtrace=False, diagnose=False
        )
    global _sink
    if _sink is not None:
        _sink.stop()
    # The deterministic runtime runs on one thread: the line is written there too.
    background = inline.current() is None
    _sink = JsonLines(path, to_json, rotation=rotation, retention=retention, background=background)
    logger.add(
        _sink,
        level=json_level,
        format=lambda _record: "",  # the sink serialises the record on its own thread
        catch=True,
    )
    intercept_stdlib()
    return path


def tracing() -> bool:
    """True when per-event DEBUG lines reach a sink; hot paths check it before binding."""
    return _trace


def flush() -> None:
    """Everything logged so far is in the JSON file when this returns."""
    logger.complete()
    if _sink is not None:
        _sink.flush()


class _Intercept(logging.Handler):
    """Route stdlib logging (supervisors, pykka) into loguru, named after its logger."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        exc = record.exc_info if record.exc_info and record.exc_info[0] else None
        logger.bind(actor=record.name).opt(exception=exc).log(level, record.getMessage())


def intercept_stdlib(level: int = logging.INFO) -> None:
    for name in ("supervisors", "pykka"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [_Intercept()]
        lg.setLevel(level)
        lg.propagate = False


def actor_logger(name: str) -> Logger:
    return logger.bind(actor=name)
