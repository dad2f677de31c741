# The verbs people type. Each target installs what it needs into .venv first.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
PORT ?= 8000
MODEL_DIR ?= dist/model

# sam runs the layer Makefiles; they must find the venv's python (pip, amaas) first on PATH.
export PATH := $(BIN):$(PATH)
export SAM_CLI_TELEMETRY := 0

.PHONY: setup demo demo-detect bench-detect bench-segment export build test browser lint format bench bench-export bench-lambda bench-batch bench-handlers fuzz deploy clean

# The tensorflow extra (TensorFlow and tf2onnx, for `amaas export --from-keras/--from-savedmodel`) is part of the
# development setup because the Keras tests need it.
EXTRAS ?= export,serve,dev,tensorflow

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

## demo: export the synthetic model, build the Lambda layers, serve it locally and classify samples
demo: setup
	@start=$$(date +%s); \
	$(BIN)/amaas export --arch cifar-cnn --data synthetic --out $(MODEL_DIR) && \
	$(MAKE) --no-print-directory build && \
	echo "make demo: model exported and layers built in $$(( $$(date +%s) - start ))s; starting the local server" && \
	$(BIN)/amaas demo --model-dir $(MODEL_DIR) --port $(PORT)

## demo-detect: the same for detection: export an SSDlite detector on synthetic scenes, build the layers, serve it
## locally and detect shapes in sample scenes (boxes printed and drawn; the playground at / draws them too)
## (~9 min on 2 idle cores: 2,000 scenes, 16 epochs, mAP@0.5 0.49, FP32 shipped as INT8 loses 3.7+ points at this
## length; `make bench-detect` trains the 0.88 mAP@0.5 recipe, INT8 within 0.42 points, ~28 min)
DETECT_DIR ?= dist/detector
DETECT_DATA ?= synthetic:2000
DETECT_EPOCHS ?= 16
demo-detect: setup
	@start=$$(date +%s); \
	$(BIN)/amaas export --task detection --arch ssdlite320_mobilenet_v3_large --data $(DETECT_DATA) --image-size 96 \
		--epochs $(DETECT_EPOCHS) --batch-size 16 --learning-rate 0.004 --quantize auto --out $(DETECT_DIR) && \
	$(MAKE) --no-print-directory build MODEL_DIR=$(DETECT_DIR) && \
	echo "make demo-detect: detector exported and layers built in $$(( $$(date +%s) - start ))s; starting the local server" && \
	$(BIN)/amaas demo --model-dir $(DETECT_DIR) --port $(PORT) --samples dist/detect-samples

bench-detect: setup
	$(BIN)/python tests/bench/bench_detection.py

## bench-segment: LR-ASPP and DeepLabV3 trained on synthetic scenes (96 px): mIoU per stage, INT8 vs FP32,
## /v1/segment against the ORT floor (~35 min on 2 idle cores)
bench-segment: setup
	$(BIN)/python tests/bench/bench_segmentation.py

export: setup
	$(BIN)/amaas export --arch cifar-cnn --data synthetic --out $(MODEL_DIR)

## build: sam build (function + model layer + runtime layer), then check sizes against Lambda's limits
build: setup
	AMAAS_ARTIFACT=$(abspath $(MODEL_DIR)) $(BIN)/sam build
	$(BIN)/python layers/sizes.py .aws-sam/build

## test: lint, then the whole suite (unit, functional, infra)
test: setup browser lint
	$(BIN)/pytest

# The playground test drives Debian's Chromium (browsers cannot be downloaded here); installed when
# possible (root + apt), otherwise that one test is skipped with the reason.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: no chromium/chromedriver and no root to install them; the browser test will be skipped"; fi

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python tests/bench/bench_serving.py

bench-export: setup
	$(BIN)/python tests/bench/bench_export.py

## fuzz: the hostile-image campaign against the decoder, with the goal figures as PASS/FAIL (not in `make test`:
## 10,000 images take about 5 minutes on 2 cores)
FUZZ_COUNT ?= 10000
FUZZ_SEED ?= 0
fuzz: setup
	$(BIN)/python tests/fuzz/fuzz_images.py --count $(FUZZ_COUNT) --seed $(FUZZ_SEED) --jobs 2

## bench-batch: a batch job's cost and time for 1M and 10M images (README table), and `batch run --workers 2`
## against --workers 1 (both need an exported model in dist/model)
bench-batch: setup
	$(BIN)/python tests/bench/bench_batch_cost.py
	$(BIN)/python tests/bench/bench_batch_local.py

## bench-lambda: cold start, warm duration and slowest imports of the built ApiFunction (after `make build`)
bench-lambda: setup
	$(BIN)/python tests/bench/bench_lambda_runtime.py

## bench-handlers: the API function against a minimal ORT handler, torch-eager FastAPI and the ORT floor, one run
## (MODEL_DIR=<artifact>, for the README's figures a resnet18 224x224 INT8 export; it builds into a temporary folder)
bench-handlers: setup
	$(BIN)/python tests/bench/bench_handlers.py --model-dir $(MODEL_DIR) $(BENCH_ARGS)

deploy: build
	$(BIN)/sam deploy --guided

clean:
	rm -rf .aws-sam dist .pytest_cache .mypy_cache .ruff_cache
