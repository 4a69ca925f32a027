"""When is the tree idle? Every actor's mailbox empty twice in a row.

The backtest driver waits for this between bars so each bar is fully processed before
the next one arrives: the same data gives the same trades.
"""

from __future__ import annotations

import time

import pykka


def mailboxes_empty() -> bool:
    return all(ref.actor_inbox.empty() for ref in pykka.ActorRegistry.get_all())


def wait_idle(timeout_s: float = 15.0, poll_s: float = 0.001) -> bool:
    """Block until every pykka actor's inbox is empty on two polls in a row (real time,
    bounded by `timeout_s`); False if the tree stayed busy that long."""
    quiet = 0
    deadline = time.monotonic() + timeout_s
    while quiet < 2:
        quiet = quiet + 1 if mailboxes_empty() else 0
        if quiet >= 2:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True
