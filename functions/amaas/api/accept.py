"""Content negotiation for routes that answer JSON by default and a PNG on request (``Accept``)."""

from __future__ import annotations

PNG = "image/png"


def prefers_png(accept: str) -> bool:
    """Whether an Accept header ranks ``image/png`` above JSON, the default (RFC 9110 section 12.5.1).

    Each type takes the q of its most specific matching range; PNG wins on a higher q, or on an equal one when
    it is named more specifically (``image/png`` over ``*/*``). ``image/png;q=0`` refuses PNG.
    """
    png, json = _quality(accept, "image", "png"), _quality(accept, "application", "json")
    return png[0] > 0 and png > json


def _quality(accept: str, kind: str, subtype: str) -> tuple[float, int]:
    """(q, specificity) of the most specific range in ``accept`` that matches ``kind/subtype``; (0, 0) if none."""
    best = (0.0, 0)
    for media_range in accept.lower().split(","):
        media, *params = (part.strip() for part in media_range.split(";"))
        main, _, sub = media.partition("/")
        if (main, sub) == (kind, subtype):
            specificity = 3
        elif (main, sub) == (kind, "*"):
            specificity = 2
        elif (main, sub) == ("*", "*"):
            specificity = 1
        else:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        if specificity > best[1]:
            best = (q, specificity)
    return best
