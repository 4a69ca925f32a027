"""Actors that stand in for a tree's neighbours in tests of one actor or a few."""

from __future__ import annotations

from typing import Any

from aegis_actors.base import AegisActor
from aegis_actors.runtime import Runtime
from supervisors import ChildContext


class Recorder(AegisActor):
    """Stands in for a neighbour: records, in order, every message it is told."""

    def __init__(self, ctx: ChildContext, rt: Runtime, seen: list[Any]) -> None:
        super().__init__(ctx, rt)
        self.seen = seen

    def on_receive(self, message: Any) -> Any:
        self.seen.append(message)
        return None
