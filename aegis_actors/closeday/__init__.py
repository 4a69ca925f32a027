"""close-day: cancel, report, archive, readiness (SPEC 7)."""
