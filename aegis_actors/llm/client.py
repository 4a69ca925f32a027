"""HTTP clients for the two wire formats, one `requests.Session` per endpoint.

A client makes exactly one HTTP attempt per `complete` call and turns every outcome
into a `Reply` or an `LlmError`. Waiting, retrying and failing over are decided by the
role actor on its clock, so a test can judge them on a virtual clock.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import requests
import requests.adapters
import requests.auth

from aegis_actors.llm.cost import Usage
from aegis_actors.llm.errors import LlmError, retry_after

ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call: base URL, wire format, model, key (repr hides the key)."""

    url: str
    api: str  # openai | anthropic
    model: str
    key: str = ""
    name: str = "primary"

    def __repr__(self) -> str:
        return f"Endpoint({self.name} {self.api} {self.url} {self.model})"


@dataclass(frozen=True)
class Reply:
    text: str
    usage: Usage
    model: str
    endpoint: str
    latency_s: float  # real seconds on the wire (for metrics, not for timing logic)


Messages = list[dict[str, str]]


class ChatClient:
    """One endpoint: builds the request for its wire format and reads the answer."""

    path = ""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        pool_size: int = 10,
    ) -> None:
        self.endpoint = endpoint
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.session = requests.Session()
        self.session.headers.update(self.headers())
        # the key travels in a header: no ~/.netrc lookup (two stat calls) per request
        self.session.auth = _HeaderAuth()
        # one kept-alive connection per worker thread, none discarded under load
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def headers(self) -> dict[str, str]:
        return {"content-type": "application/json"}

    def body(self, system: str, messages: Messages) -> dict[str, Any]:
        raise NotImplementedError

    def read(self, doc: dict[str, Any]) -> tuple[str, Usage]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return self.endpoint.url.rstrip("/") + self.path

    def complete(self, system: str, messages: Messages, *, timeout_s: float) -> Reply:
        """One attempt; raises LlmError saying whether another attempt makes sense."""
        name = self.endpoint.name
        t0 = time.monotonic()
        try:
            resp = self.session.post(
                self.url, data=json.dumps(self.body(system, messages)).encode(), timeout=timeout_s
            )
        except requests.Timeout as exc:
            raise LlmError("timeout", type(exc).__name__, endpoint=name) from None
        except requests.RequestException as exc:
            raise LlmError("network", type(exc).__name__, endpoint=name) from None
        latency = time.monotonic() - t0
        if resp.status_code == 429:
            raise LlmError(
                "rate_limited",
                "too many requests",
                status=429,
                retry_after_s=retry_after(resp.headers.get("retry-after")),
                endpoint=name,
            )
        if resp.status_code >= 500:
            raise LlmError(
                "server",
                _short(resp.text),
                status=resp.status_code,
                retry_after_s=retry_after(resp.headers.get("retry-after")),
                endpoint=name,
            )
        if resp.status_code >= 400:
            raise LlmError("client", _short(resp.text), status=resp.status_code, endpoint=name)
        try:
            doc = resp.json()
            text, usage = self.read(doc)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LlmError("bad_response", f"unreadable body: {exc}", endpoint=name) from None
        return Reply(
            text=text,
            usage=usage,
            model=str(doc.get("model") or self.endpoint.model),
            endpoint=name,
            latency_s=latency,
        )

    def close(self) -> None:
        self.session.close()


class OpenAIChat(ChatClient):
    """OpenAI-compatible chat completions (DeepSeek): Bearer key, JSON output requested."""

    path = "/chat/completions"

    def headers(self) -> dict[str, str]:
        h = super().headers()
        if self.endpoint.key:
            h["authorization"] = f"Bearer {self.endpoint.key}"
        return h

    def body(self, system: str, messages: Messages) -> dict[str, Any]:
        return {
            "model": self.endpoint.model,
            "messages": [{"role": "system", "content": system}, *messages],
            "response_format": {"type": "json_object"},
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": False,
        }

    def read(self, doc: dict[str, Any]) -> tuple[str, Usage]:
        text = doc["choices"][0]["message"]["content"]
        if not isinstance(text, str):
            raise TypeError("message content is not text")
        u = doc.get("usage") or {}
        return text, Usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)))


class AnthropicMessages(ChatClient):
    """Anthropic Messages API: x-api-key and anthropic-version headers, a system prompt."""

    path = "/v1/messages"

    def headers(self) -> dict[str, str]:
        h = super().headers()
        h["anthropic-version"] = ANTHROPIC_VERSION
        if self.endpoint.key:
            h["x-api-key"] = self.endpoint.key
        return h

    def body(self, system: str, messages: Messages) -> dict[str, Any]:
        return {
            "model": self.endpoint.model,
            "system": system,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    def read(self, doc: dict[str, Any]) -> tuple[str, Usage]:
        parts = [b["text"] for b in doc["content"] if b.get("type") == "text"]
        if not parts:
            raise KeyError("no text block in content")
        u = doc.get("usage") or {}
        return "".join(parts), Usage(int(u.get("input_tokens", 0)), int(u.get("output_tokens", 0)))


class _HeaderAuth(requests.auth.AuthBase):
    """Authentication is already in the session's headers; this only stops requests from
    searching ~/.netrc on every call (proxy settings from the environment still apply)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


def make_client(
    endpoint: Endpoint, *, max_tokens: int = 512, temperature: float = 0.0, pool_size: int = 10
) -> ChatClient:
    cls = AnthropicMessages if endpoint.api == "anthropic" else OpenAIChat
    return cls(endpoint, max_tokens=max_tokens, temperature=temperature, pool_size=pool_size)


def _short(text: str, n: int = 200) -> str:
    return " ".join(text.split())[:n]
