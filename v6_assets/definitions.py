"""Top of the Dagster wiring: everything the code location exposes."""

from dagster import Definitions

defs = Definitions()
