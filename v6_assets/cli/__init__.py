"""The ``v6`` command line: the stream's health and the stored tables in a terminal (``v6 --help``)."""

from v6_assets.cli.app import main

__all__ = ["main"]
