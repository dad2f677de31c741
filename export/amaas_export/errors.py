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
