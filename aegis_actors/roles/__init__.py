"""The three AI roles: analyst, verifier (veto), commander (final decision)."""
