"""`--strategy NAME|path/file.py:Class` and `--param K=V` to a strategy object."""

from __future__ import annotations

import importlib.util
import inspect
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aegis_actors.strategies.base import ParamValue, Strategy, StrategyError
from aegis_actors.strategies.builtin import Momentum, Rsi, SmaCross

BUILTIN: dict[str, type[Any]] = {"sma_cross": SmaCross, "momentum": Momentum, "rsi": Rsi}
NAMES = ("aegis", *BUILTIN)  # aegis: the rules roles of a live run, bar by bar


def parse_params(items: Iterable[str]) -> dict[str, float]:
    """`K=V` strings to numbers; a bad one is a StrategyError naming it."""
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise StrategyError(f"--param {item!r}: expected K=V")
        try:
            number = float(value)
        except ValueError:
            raise StrategyError(f"--param {key}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise StrategyError(f"--param {key}: {value!r} is not a finite number")
        out[key] = number
    return out


def params_file(path: str | Path) -> dict[str, ParamValue]:
    """`--params FILE.toml`: top-level `key = value` lines (a `[params]` table also works).
    Numbers as `--param`; a string or boolean passes through as TOML typed it (a space's
    `choices = ["a", "b"]` lands in best.toml that way)."""
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StrategyError(f"--params {path}: {exc}") from None
    table = data.get("params", data)
    if not isinstance(table, dict):
        raise StrategyError(f"--params {path}: [params] is not a table")
    out: dict[str, ParamValue] = {}
    for k, v in table.items():
        if isinstance(v, str | bool):
            out[k] = v
        elif isinstance(v, int | float):
            out.update(parse_params([f"{k}={v!r}"]))
        else:
            raise StrategyError(f"--params {path}: {k} must be a number, string or boolean")
    return out


def _user_class(spec: str) -> type[Any]:
    path_text, _, cls_name = spec.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise StrategyError(f"strategy file {path} not found")
    mod_spec = importlib.util.spec_from_file_location(f"aegis_user_strategy_{path.stem}", path)
    if mod_spec is None or mod_spec.loader is None:
        raise StrategyError(f"strategy file {path} cannot be imported")
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)
    except Exception as exc:
        raise StrategyError(f"strategy file {path}: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, cls_name, None)
    if not inspect.isclass(cls):
        raise StrategyError(f"strategy file {path} has no class {cls_name!r}")
    return cls


def load_strategy(spec: str, params: Mapping[str, ParamValue] | None = None) -> Strategy | None:
    """The strategy object, or None for `aegis` (the rules roles run unchanged)."""
    params = dict(params or {})
    if spec == "aegis":
        if params:
            raise StrategyError(f"strategy aegis takes no --param (got {', '.join(params)})")
        return None
    if spec in BUILTIN:
        cls = BUILTIN[spec]
    elif ".py:" in spec:
        cls = _user_class(spec)
    else:
        raise StrategyError(
            f"unknown strategy {spec!r}: use one of {', '.join(NAMES)} or path/file.py:Class"
        )
    accepted = inspect.signature(cls).parameters
    unknown = [k for k in params if k not in accepted]
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        raise StrategyError(
            f"strategy {spec}: unknown param {', '.join(unknown)} "
            f"(takes {', '.join(accepted) or 'none'})"
        )
    try:
        strategy = cls(**params)
    except (TypeError, ValueError) as exc:
        raise StrategyError(f"strategy {spec}: {exc}") from None
    if not callable(getattr(strategy, "signals", None)):
        raise StrategyError(f"strategy {spec}: no signals(closes) method")
    if not getattr(strategy, "name", ""):
        strategy.name = spec
    return strategy  # type: ignore[no-any-return]
