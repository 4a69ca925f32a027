"""Archive the day's log lines, gzipped, into the archive folder (SPEC 7).

The JSON log is rotated by size, so a day spans files: every `aegis.jsonl*` is read
(oldest first) and the lines stamped with the day go to `aegis-YYYY-MM-DD.jsonl.gz`. The
gzip header carries no time, and lines already archived are kept, so archiving twice
writes the same bytes (and an archive made while the process ran grows, never shrinks).
The logs themselves stay where they are, under the log retention.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

_ROTATED = re.compile(r"^aegis\.jsonl(?:\.(\d+))?$")


@dataclass(frozen=True)
class Archived:
    path: Path
    lines: int
    added: int  # 0 when the archive already held every line of the day


def log_files(log_dir: Path) -> list[Path]:
    """aegis.jsonl.N ... aegis.jsonl.1, aegis.jsonl: oldest first."""
    found = []
    for p in log_dir.glob("aegis.jsonl*"):
        m = _ROTATED.match(p.name)
        if m:
            found.append((-(int(m.group(1)) if m.group(1) else 0), p))
    return [p for _k, p in sorted(found)]


def day_lines(log_dir: Path, day: date) -> list[str]:
    stamp = f'"ts": "{day.isoformat()}'
    stamp_tight = f'"ts":"{day.isoformat()}'
    out = []
    for p in log_files(log_dir):
        with p.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if stamp in line or stamp_tight in line:
                    out.append(line if line.endswith("\n") else line + "\n")
    return out


def archive_day(log_dir: Path, archive_dir: Path, day: date) -> Archived:
    target = archive_dir / f"aegis-{day.isoformat()}.jsonl.gz"
    lines = day_lines(log_dir, day)
    old: list[str] = []
    if target.exists():
        with gzip.open(target, "rt", encoding="utf-8") as f:
            old = f.readlines()
    have = set(old)
    new = [ln for ln in lines if ln not in have]
    if target.exists() and not new:
        return Archived(target, len(old), 0)
    archive_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with (
        tmp.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
    ):
        gz.write("".join(old + new).encode("utf-8"))
    tmp.replace(target)
    return Archived(target, len(old) + len(new), len(new))
