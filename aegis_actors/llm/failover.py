"""Primary and backup endpoints: a failing or slow primary hands over to the backup.

After `retry_primary_s` on the backup the primary gets another chance, so a recovered
primary is used again without an operator.
"""

from __future__ import annotations

from aegis_actors.llm.client import ChatClient


class EndpointPool:
    def __init__(
        self, primary: ChatClient, backup: ChatClient | None, retry_primary_s: float = 60.0
    ) -> None:
        self.primary = primary
        self.backup = backup
        self.retry_primary_s = retry_primary_s
        self.on_backup_since: float | None = None
        self.failovers = 0

    def pick(self, now: float) -> ChatClient:
        if self.on_backup_since is not None and self.backup is not None:
            if now - self.on_backup_since < self.retry_primary_s:
                return self.backup
            self.on_backup_since = None
        return self.primary

    def other(self, client: ChatClient) -> ChatClient | None:
        """The endpoint to try next within the same call, if any."""
        if client is self.primary:
            return self.backup
        return None

    def failed(self, client: ChatClient, now: float) -> bool:
        """Note a failing (or slow) endpoint; True when this switches to the backup."""
        if client is self.primary and self.backup is not None and self.on_backup_since is None:
            self.on_backup_since = now
            self.failovers += 1
            return True
        return False

    def clients(self) -> list[ChatClient]:
        return [c for c in (self.primary, self.backup) if c is not None]

    def close(self) -> None:
        for c in self.clients():
            c.close()
