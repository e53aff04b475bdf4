"""`asyncmq exporter`: serve the queue-state metrics with no worker running.

Workers report what they do; only the backend knows what waits. The exporter reads queue
depth, the oldest waiting job's age and live workers from the backend at each scrape, so
queue-depth and no-worker alerts still fire when every worker is gone.
"""

from __future__ import annotations

import asyncio
import logging

import click

from asyncmq.cli.common import backend_options, metrics_endpoint, open_backend, run, stop_signals

__all__ = ["exporter"]


async def _serve(url: str | None, port: int, host: str) -> None:
    stop = asyncio.Event()
    async with (
        open_backend(url) as backend,
        metrics_endpoint(port, host, backend, job_metrics=False, option="--port"),
    ):
        with stop_signals(lambda sig: stop.set()):
            await stop.wait()


@click.command("exporter")
@backend_options
@click.option("--port", type=click.IntRange(0, 65535), default=9101, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 exposes it beyond this host.")
def exporter(backend: str | None, port: int, host: str) -> None:
    """Serve every queue's state from the backend as Prometheus metrics, until Ctrl-C."""
    # A service: it says when reading the backend starts failing and when it works again.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(_serve(backend, port, host))
