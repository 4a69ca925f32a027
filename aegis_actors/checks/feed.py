"""Market data: connect, authenticate with the configured keys, disconnect."""

from __future__ import annotations

from aegis_actors.checks.item import TIMEOUT_S, Item, Status, one_line
from aegis_actors.settings import Settings

FEED_KEYS = "AEGIS_FEED__KEY / AEGIS_FEED__SECRET"


def feed_items(s: Settings) -> list[Item]:
    f = s.feed
    if f.kind in ("synthetic", "replay"):
        return [Item("market data", Status.PASS, f"{f.kind} feed, no keys needed")]
    out: list[Item] = []
    for role, url in (("primary", f.url), ("backup", f.backup_url)):
        if not url:
            if role == "primary":
                out.append(Item("market data", Status.FAIL, "feed.url is not set"))
            continue
        name = "market data" if role == "primary" else "market data backup"
        out.append(
            Item(
                name,
                *feed_probe(f.kind, url, f.key.get_secret_value(), f.secret.get_secret_value()),
            )
        )
    return out


def feed_probe(kind: str, url: str, key: str, secret: str) -> tuple[Status, str]:
    import websocket

    from aegis_actors.gateway.protocols import alpaca_auth, decode_frame

    if kind == "alpaca" and not (key and secret):
        return Status.FAIL, f"{FEED_KEYS} not set"
    ws = None
    try:
        ws = websocket.create_connection(url, timeout=TIMEOUT_S)
        if kind != "alpaca":
            return Status.PASS, f"{url} connected (no authentication in this protocol)"
        ws.send(alpaca_auth(key, secret))
        for _ in range(5):
            items = decode_frame(ws.recv())
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict):
                    continue
                if item.get("T") == "error":
                    return Status.FAIL, (
                        f"{url} refused the keys (error {item.get('code')}: {item.get('msg')}): "
                        f"check {FEED_KEYS}"
                    )
                if item.get("T") == "success" and item.get("msg") == "authenticated":
                    return Status.PASS, f"{url} keys accepted"
        return Status.FAIL, f"{url} never answered the authentication"
    except Exception as exc:
        return Status.FAIL, f"{url} unreachable: {one_line(exc)}"
    finally:
        if ws is not None:
            try:
                ws.close(timeout=1)
            except Exception:
                pass
