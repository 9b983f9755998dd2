"""The ``nijifeed`` command. It wires Settings to the parts and prints; the work happens in the parts."""

import service.cli.init  # noqa: F401 - registers `init`
import service.cli.login  # noqa: F401 - registers `login`
from service.cli import classify, daemon, feed, review, status  # noqa: F401 - registers the commands
from service.cli import doctor as _doctor  # noqa: F401 - registers `doctor`
from service.cli.base import app


def main() -> None:
    app()


__all__ = ["app", "main"]
