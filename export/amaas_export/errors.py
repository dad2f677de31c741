"""Why an export stops. The CLI prints the message (written for the person running it) and exits non-zero."""

from __future__ import annotations


class ExportError(Exception):
    """Base class: the export cannot produce a deployable artifact."""


class ConfigError(ExportError):
    """An option is invalid or names something that does not exist (architecture, weights, file)."""


class DataError(ExportError):
    """The dataset could not be found or read in the format its source names."""


class GateError(ExportError):
    """A measured gate failed (accuracy drop, ONNX parity): the model is not good enough to ship."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, cut to ``limit`` characters (its class name if it has none):
    what a one-line error can quote of a library's multi-line failure."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else exc.__class__.__name__
