"""The ``nijifeed`` command. It wires Settings to the parts and prints; the work happens in the parts."""

from service.cli import classify, daemon, feed, review, status  # noqa: F401 - registers the commands
from service.cli.base import app


def main() -> None:
    app()


__all__ = ["app", "main"]
