"""Writes the API Gateway (REST, proxy integration) events under tests/events/.

The events are committed, so they work with ``sam local invoke ApiFunction -e tests/events/<name>.json`` and
need no model to exist; this script is only re-run when they should change. The shape is what
``sam local generate-event apigateway aws-proxy`` produces, with the path, method, headers, query and body
of each request filled in (binary bodies base64-encoded, as API Gateway delivers image/* media types).

Images are synthetic shapes. With ``--model-dir`` the script picks, for each class, the first sample the
given model classifies correctly with a clear margin, so functional tests can assert on the label.

    python tests/events/generate.py --model-dir dist/model --model-dir <the test suite's model>
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

from PIL import Image

HERE = Path(__file__).resolve().parent
REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


def event(
    method: str,
    path: str,
    *,
    body: bytes | str | None = None,
    content_type: str | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event for ``method path``; bytes bodies are sent base64-encoded."""
    all_headers = {
        "Accept": "application/json",
        "Host": "1234567890.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "amaas-tests",
        "X-Forwarded-For": "127.0.0.1",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        **({"Content-Type": content_type} if content_type else {}),
        **(headers or {}),
    }
    is_binary = isinstance(body, bytes)
    return {
        "body": base64.b64encode(body).decode() if isinstance(body, bytes) else body,
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "isBase64Encoded": is_binary,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "requestContext": {
            "accountId": "123456789012",
            "resourceId": "123456",
            "stage": "prod",
            "requestId": REQUEST_ID,
            "requestTime": "09/Apr/2015:12:34:56 +0000",
            "requestTimeEpoch": 1428582896000,
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "amaas-tests"},
            "path": f"/prod{path}",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "apiId": "1234567890",
            "protocol": "HTTP/1.1",
        },
    }


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def clear_sample(label: str, model_dirs: list[Path]) -> Image.Image:
    """The first sample of ``label`` every model gets right with score >= 0.8 (the first, if no models)."""
    from amaas.artifact.model import Model
    from amaas_export.data import synthetic

    classifiers = [Model(model_dir) for model_dir in model_dirs]
    for variant in range(200):
        image = synthetic.sample(label, variant=variant)
        best = [c.infer([encode(image, "PNG")], k=1).results[0][0] for c in classifiers]
        if all(b.label == label and b.score >= 0.8 for b in best):
            return image
    sys.exit(f"no clear sample of {label} for these models")


def build(model_dirs: list[Path]) -> dict[str, dict[str, Any]]:
    star, heart, ring = (clear_sample(label, model_dirs) for label in ("star", "heart", "ring"))
    heart_96 = heart.resize((96, 96), Image.Resampling.BICUBIC)
    truncated = encode(star, "PNG")[:60]
    return {
        "classify_png": event(
            "POST", "/v1/classify", body=encode(star, "PNG"), content_type="image/png", query={"top_k": "3"}
        ),
        "classify_jpeg": event(
            "POST", "/v1/classify", body=encode(heart_96, "JPEG", quality=95), content_type="image/jpeg"
        ),
        "classify_json": event(
            "POST",
            "/v1/classify",
            body=json.dumps({"image": base64.b64encode(encode(ring, "PNG")).decode()}),
            content_type="application/json",
            query={"top_k": "2"},
            headers={"X-Request-Id": "client-chosen-id-42"},
        ),
        "health": event("GET", "/v1/health"),
        "model": event("GET", "/v1/model"),
        "classify_unsupported_media": event("POST", "/v1/classify", body="hello", content_type="text/plain"),
        "classify_corrupt": event("POST", "/v1/classify", body=truncated, content_type="image/png"),
        "classify_bad_top_k": event(
            "POST", "/v1/classify", body=encode(star, "PNG"), content_type="image/png", query={"top_k": "zero"}
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", type=Path, action="append", default=[], help="pick samples this model classifies clearly"
    )
    args = parser.parse_args()
    for name, payload in build(args.model_dir).items():
        (HERE / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote tests/events/{name}.json")


if __name__ == "__main__":
    main()
