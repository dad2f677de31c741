"""Why a local Lambda run could not happen or did not succeed."""

from __future__ import annotations


class LambdaSetupError(Exception):
    """Something the run needs is missing (a build, a function, python3.13, the runtime packages); the message
    is one line that says what to do."""
