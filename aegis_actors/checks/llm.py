"""Each LLM endpoint and its backup answer a minimal request with the roles' own key."""

from __future__ import annotations

from aegis_actors.checks.item import TIMEOUT_S, Item, Status
from aegis_actors.llm.keys import FALLBACK_ENV, api_key
from aegis_actors.settings import RoleSettings, Settings


def key_variables(role: str, cfg: RoleSettings) -> str:
    own = f"AEGIS_ROLES__{role.upper()}__API_KEY"
    shared = FALLBACK_ENV.get(cfg.api)
    return f"{own} or {shared}" if shared else own


def llm_items(s: Settings) -> list[Item]:
    out: list[Item] = []
    for role in ("analyst", "verifier", "commander"):
        cfg: RoleSettings = getattr(s.roles, role)
        if cfg.backend != "llm":
            out.append(Item(f"{role} backend", Status.PASS, "local rules (no API)"))
            continue
        key = api_key(cfg.api_key, cfg.api)
        for which, url in (("API", cfg.url), ("backup API", cfg.backup_url)):
            if not url:
                if which == "API":
                    out.append(Item(f"{role} API", Status.FAIL, f"roles.{role}.url is not set"))
                else:
                    out.append(Item(f"{role} backup API", Status.WARN, "no backup_url configured"))
                continue
            if not key:
                out.append(
                    Item(f"{role} {which}", Status.FAIL, f"{key_variables(role, cfg)} not set")
                )
                continue
            out.append(Item(f"{role} {which}", *llm_probe(role, cfg, url, key)))
    return out


def llm_probe(role: str, cfg: RoleSettings, url: str, key: str) -> tuple[Status, str]:
    """A minimal request with the configured key, through the client the roles use."""
    from aegis_actors.llm.client import Endpoint, make_client
    from aegis_actors.llm.errors import LlmError

    client = make_client(Endpoint(url=url, api=cfg.api, model=cfg.model, key=key), max_tokens=16)
    try:
        reply = client.complete(
            'Answer with the JSON object {"ok": true}.',
            [{"role": "user", "content": "ping"}],
            timeout_s=max(cfg.timeout_s, TIMEOUT_S),
        )
    except LlmError as exc:
        if exc.status in (401, 403):
            return Status.FAIL, (
                f"{cfg.model} at {url} refused the key ({exc.status}): check "
                f"{key_variables(role, cfg)}"
            )
        return Status.FAIL, f"{cfg.model} at {url}: {exc.kind} {exc.status or ''}".rstrip()
    finally:
        client.close()
    return (
        Status.PASS,
        f"{reply.model or cfg.model} at {url} answered in {reply.latency_s * 1000:.0f} ms",
    )
