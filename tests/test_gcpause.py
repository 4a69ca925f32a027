"""A running tree has no full-collection pause over what its start built (gcpause.py)."""

from __future__ import annotations

import gc

from aegis_actors import gcpause


def test_settle_freezes_the_start_and_release_gives_it_back() -> None:
    others = gcpause._running  # trees another test left running in this process
    before = gc.get_threshold()
    gcpause.settle()
    try:
        assert gc.get_freeze_count() > 0  # the start's objects: not walked by collections
        assert gc.get_threshold()[0] >= gcpause.YOUNG_THRESHOLD
        gcpause.settle()  # a second tree in the same process
        gcpause.release()
        assert gc.get_freeze_count() > 0  # one tree still runs
    finally:
        gcpause.release()
    if not others:
        assert gc.get_freeze_count() == 0  # the last tree stopped: its garbage is collectable
        assert gc.get_threshold() == before
