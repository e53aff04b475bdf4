"""`python -m asyncmq` runs the `asyncmq` command."""

from asyncmq.cli.main import cli

__all__: list[str] = []

if __name__ == "__main__":
    cli()
