"""The torch-eager FastAPI + Mangum handler people write today, for the benchmark to compare against.

Same architecture as the artifact (torchvision ``resnet18`` with ``num_classes`` from its manifest) and the
same preprocessing (torchvision's eval transform with the manifest's mean and std). The weights are random:
nothing can be downloaded here, and the speed of a forward pass does not depend on the weights' values.
torch is not in the Lambda layers, so this runs under the development venv's Python.
"""

import io
import json
import os

import torch
from fastapi import FastAPI, Request
from mangum import Mangum
from PIL import Image
from torchvision import models, transforms

torch.set_num_threads(1)
with open(os.path.join(os.environ["AMAAS_MODEL_DIR"], "manifest.json")) as f:
    MANIFEST = json.load(f)
PREP = MANIFEST["preprocessing"]
model = models.resnet18(num_classes=len(MANIFEST["labels"])).eval()
transform = transforms.Compose(
    [
        transforms.Resize(PREP["resize"]),
        transforms.CenterCrop(PREP["crop"]),
        transforms.ToTensor(),
        transforms.Normalize(PREP["mean"], PREP["std"]),
    ]
)
app = FastAPI()


@app.post("/v1/classify")
async def classify(request: Request):
    image = Image.open(io.BytesIO(await request.body())).convert("RGB")
    with torch.inference_mode():
        probabilities = torch.softmax(model(transform(image).unsqueeze(0))[0], dim=0)
    scores, indices = probabilities.topk(5)
    return {
        "predictions": [
            {"label": MANIFEST["labels"][i], "index": i, "score": s}
            for s, i in zip(scores.tolist(), indices.tolist(), strict=True)
        ]
    }


handler = Mangum(app, lifespan="off")
