"""The backtest environment: the same tree replays a bar CSV on a virtual clock."""
