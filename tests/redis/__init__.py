"""Resilience on a real Redis: killed workers, killed connections, stale workers, restarts."""
