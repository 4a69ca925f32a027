"""Operator control over the Redis pub/sub admin channel (ARCHITECTURE.md "Admin channel")."""
