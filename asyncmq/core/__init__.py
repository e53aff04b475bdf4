"""The engine's seams: the lifecycle event emitter."""
