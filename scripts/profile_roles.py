"""CPU per event of the three rules roles' handlers, without threads or a feed.

A fixed sequence of contexts (tests/roles_rig.py: the spine bench's mix, or `--varied`)
is driven through the analyst, the verifier and the commander on one thread; each
actor's `on_receive` is timed with the thread's CPU clock, so the figure is each role's
own handler time per event (what its thread spends in the bench, less pykka's mailbox).
Best of `--repeat` runs; `--profile` prints a cProfile of one run instead.

    PYTHONPATH=$PWD python scripts/profile_roles.py [--events 3000] [--repeat 7] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from roles_rig import bench_contexts, contexts, run  # noqa: E402

from aegis_actors.gcpause import YOUNG_THRESHOLD  # noqa: E402
from aegis_actors.runtime import ANALYST, COMMANDER, VERIFIER  # noqa: E402

ROLES = (ANALYST, VERIFIER, COMMANDER)


def timed(cls: type, spent: dict[str, int]) -> Any:
    """`cls.on_receive`, adding its thread CPU time to `spent[actor name]`."""
    inner = cls.on_receive
    clock = time.thread_time_ns

    def on_receive(self: Any, message: Any) -> Any:
        t = clock()
        try:
            return inner(self, message)
        finally:
            spent[self.name] += clock() - t

    return on_receive


def measure(ctxs: list[Any]) -> dict[str, float]:
    from aegis_actors.roles.actors import Analyst, Commander, Verifier

    spent = dict.fromkeys(ROLES, 0)
    saved = {c: c.on_receive for c in (Analyst, Verifier, Commander)}
    for c in saved:
        c.on_receive = timed(c, spent)  # type: ignore[method-assign]
    try:
        run(ctxs, failures=False, keep=False)
    finally:
        for c, f in saved.items():
            c.on_receive = f  # type: ignore[method-assign]
    return {r: spent[r] / 1000 / len(ctxs) for r in ROLES}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--varied", action="store_true", help="the golden test's mix, not the bench's")
    args = ap.parse_args()
    ctxs = contexts(args.events) if args.varied else bench_contexts(args.events)
    run(ctxs[:200], failures=False)  # warm: handler tables, trusted makers
    gc.collect()  # as a running tree does (aegis_actors.gcpause)
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(ctxs, failures=False, keep=False)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return
    runs = [measure(ctxs) for _ in range(args.repeat)]
    best = {r: min(x[r] for x in runs) for r in ROLES}
    med = {r: sorted(x[r] for x in runs)[len(runs) // 2] for r in ROLES}
    print(f"{args.events} events x {args.repeat} runs, handler CPU us/event (best / median)")
    for r in ROLES:
        print(f"  {r:10s} {best[r]:6.2f} / {med[r]:6.2f}")
    print(f"  {'total':10s} {sum(best.values()):6.2f} / {sum(med.values()):6.2f}")


if __name__ == "__main__":
    main()
