"""Trading strategies for the analyst role in a backtest: a name (or a user's file) and params.

A strategy maps a symbol's closes to one signal per bar: +1 (go long), -1 (go short or
close a long), 0 (nothing new). Signals are computed once per series (vectorised) and must be
causal: the signal of bar i reads closes[0..i] only, so `signals(c[:k]) == signals(c)[:k]`.
"""

from aegis_actors.strategies.base import Params, ParamValue, Strategy, StrategyError
from aegis_actors.strategies.registry import NAMES, load_strategy, params_file, parse_params

__all__ = [
    "NAMES",
    "ParamValue",
    "Params",
    "Strategy",
    "StrategyError",
    "load_strategy",
    "params_file",
    "parse_params",
]
