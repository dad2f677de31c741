"""The hand-written ONNX Runtime handler a benchmark compares against: PIL + numpy + ORT + json, no framework.

It serves the same artifact (``$AMAAS_MODEL_DIR``: ``model.onnx`` + ``manifest.json``) to the same API Gateway
events as the API function, the way such a handler is usually written: decode the whole image, resize the
shorter side, centre-crop, normalise, run, softmax, top 5. No input bounds, no logging, no metrics.

``floor`` is the ORT floor: ``session.run`` on a tensor that is already prepared, timed inside the process.
"""

import base64
import io
import json
import os
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

MODEL_DIR = os.environ["AMAAS_MODEL_DIR"]
with open(os.path.join(MODEL_DIR, "manifest.json")) as f:
    MANIFEST = json.load(f)
PREP, INPUT = MANIFEST["preprocessing"], MANIFEST["input"]
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.path.join(MODEL_DIR, "model.onnx"), options, providers=["CPUExecutionProvider"])
MEAN = np.array(PREP["mean"], dtype=np.float32)
STD = np.array(PREP["std"], dtype=np.float32)
READY = np.zeros([1, 3, PREP["crop"], PREP["crop"]], dtype=np.float32)
session.run(None, {INPUT["name"]: READY})


def handler(event, context):
    body = event["body"]
    data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    scale = PREP["resize"] / min(width, height)
    image = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BILINEAR)
    left, top = (image.width - PREP["crop"]) // 2, (image.height - PREP["crop"]) // 2
    image = image.crop((left, top, left + PREP["crop"], top + PREP["crop"]))
    pixels = (np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD
    logits = session.run(None, {INPUT["name"]: pixels.transpose(2, 0, 1)[None]})[0][0]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    top = np.argsort(-probabilities)[:5]
    predictions = [{"label": MANIFEST["labels"][i], "index": int(i), "score": float(probabilities[i])} for i in top]
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"predictions": predictions}),
        "isBase64Encoded": False,
    }


def floor(event, context):
    started = time.perf_counter()
    session.run(None, {INPUT["name"]: READY})
    return {"run_ms": (time.perf_counter() - started) * 1000}
