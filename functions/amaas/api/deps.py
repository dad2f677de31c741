"""FastAPI dependencies: the app's one classifier and settings, from ``app.state``."""

from __future__ import annotations

from fastapi import Request

from amaas.model import ImageClassifier
from amaas.settings import Settings


def get_classifier(request: Request) -> ImageClassifier:
    classifier: ImageClassifier = request.app.state.classifier
    return classifier


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings
