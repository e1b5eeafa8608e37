"""The one exception family tuner raises for problems a user can fix.

Library code raises these where the problem is detected; only the CLI catches them and
prints ``Error: <message>`` once, with exit status 2 for bad input.
"""

from __future__ import annotations


class TunerError(Exception):
    """Root of every error tuner reports to a user."""


class SpecError(TunerError):
    """The study file (or an option standing in for it) is invalid.

    The message names the file, the field path and the rule, e.g.
    ``study.yaml: search_space.dropout: low must be < high (got low=0.5, high=0.1)``.
    """


class StorageError(TunerError):
    """The storage cannot be reached or does not hold what was asked for."""


class FleetError(TunerError):
    """The worker fleet stopped for a reason the user must act on (e.g. most trials fail)."""
