"""The input gateway: market feed, economic calendar, news, all entering one intake."""
