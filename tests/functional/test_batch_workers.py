"""`amaas batch run DIR --workers 2`: a folder classified by two worker processes, each with its own model, and
written exactly as the one-process run writes it: every image one result, under its own name, with its own
answer. (Throughput against --workers 1 is a benchmark, tests/bench/bench_batch_local.py, not a test.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amaas.artifact.model import Model
from amaas_cli.main import main
from amaas_export.data import synthetic
from tests.helpers import encode_image

IMAGES = 2000
DISTINCT = 50  # different pictures, each under many names: a result filed under another image shows


def picture(i: int) -> bytes:
    return encode_image(synthetic.sample(synthetic.LABELS[i % len(synthetic.LABELS)], variant=i), "PNG")


def test_two_workers_give_every_image_of_2000_exactly_one_result_of_its_own(
    artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN 2,000 images in nested folders (50 different pictures) and two files that are not images
    folder = tmp_path / "photos"
    pictures = [picture(i) for i in range(DISTINCT)]
    content: dict[str, int] = {}
    for n in range(IMAGES):
        key = f"album-{n % 7}/{n:04d}.png"
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(pictures[(n * 13) % DISTINCT])
        content[key] = (n * 13) % DISTINCT
    (folder / "album-0" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot the rest of a png")
    (folder / "album-3" / "empty.jpg").write_bytes(b"")
    out = tmp_path / "results"

    # WHEN the folder is classified by two worker processes
    code = main(["batch", "run", str(folder), "--workers", "2", "--model-dir", str(artifact), "--out", str(out)])

    # THEN every image has exactly one line in the summary, in key order, and one result file
    assert code == 0, capsys.readouterr().err
    assert f"{IMAGES + 2} images: {IMAGES} classified, 2 errors" in capsys.readouterr().out
    lines = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    keys = [r["key"] for r in lines]
    assert keys == sorted([*content, "album-0/corrupt.png", "album-3/empty.jpg"])
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == [k + ".json" for k in keys]
    # AND each result is its own image's answer, as the model gives it for those bytes
    model = Model(artifact)
    model.load()
    expected = [ranked for ranked in model.infer(pictures, k=3).results]
    for result in lines:
        stored = json.loads((out / (result["key"] + ".json")).read_text())
        assert stored == result
        if result["key"] in content:
            assert result["status"] == "ok", result
            want = [p.to_json() for p in expected[content[result["key"]]]]
            assert [p["label"] for p in result["predictions"]] == [p["label"] for p in want], result["key"]
            assert [p["score"] for p in result["predictions"]] == pytest.approx([p["score"] for p in want], abs=1e-4)
        else:
            assert result["status"] == "error" and result["error"] == "invalid_image", result


def test_workers_refuse_a_negative_count(artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["batch", "run", str(tmp_path), "--workers", "-1", "--model-dir", str(artifact)])
    assert exited.value.code == 2
    assert "is not a number of worker processes" in capsys.readouterr().err
