"""The watchdog: heartbeats, SLA clocks, failure tiers and the trading-mode state machine."""
