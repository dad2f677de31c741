"""The hostile corpus keeps its contract and the harness classifies what it sees.

Not the decoder's figures: those are `make fuzz`, which fails until the decoder bounds its work.
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from amaas.errors import InvalidImageError, ModelUnavailableError
from tests.fuzz import corpus, harness
from tests.fuzz.fuzz_images import report

SAMPLE = 100  # one cycle of the schedule: every category, ~7 s of CPU (some bases are 40 MP encodes)


@pytest.fixture(scope="module")
def sample() -> list[corpus.Item]:
    return list(corpus.generate(SAMPLE, seed=0))


def digests(items: list[corpus.Item]) -> list[tuple[str, str]]:
    return [(i.name, hashlib.sha256(i.data).hexdigest()) for i in items]


def test_every_item_fits_the_api_limit_and_claims_an_allowed_type(sample: list[corpus.Item]) -> None:
    assert len(sample) == SAMPLE
    assert all(len(i.data) <= corpus.MAX_BYTES for i in sample)
    assert all(corpus.media_type(i.name).startswith("image/") for i in sample)
    assert len({i.name for i in sample}) == SAMPLE


def test_every_category_is_in_a_small_sample(sample: list[corpus.Item]) -> None:
    assert {i.category for i in sample} == set(corpus.CATEGORIES)


def test_the_same_seed_gives_the_same_bytes_and_any_item_can_be_rebuilt_alone(sample: list[corpus.Item]) -> None:
    # GIVEN the sample from seed 0; WHEN items are rebuilt by index alone THEN they are identical
    assert digests([corpus.item(0, i) for i in range(0, SAMPLE, 7)]) == digests(sample[::7])
    assert digests(list(corpus.generate(20, seed=0, start=60))) == digests(sample[60:80])


def test_another_seed_gives_other_mutations() -> None:
    mutants = [i for i in range(SAMPLE) if corpus._cycle()[i % 100][0].startswith("mutant")][:20]
    assert digests([corpus.item(0, i) for i in mutants]) != digests([corpus.item(1, i) for i in mutants])


def test_the_written_folder_has_every_item_and_an_index(tmp_path: os.PathLike[str]) -> None:
    from pathlib import Path

    out = Path(tmp_path)
    assert corpus.main(["--count", "12", "--seed", "3", "--out", str(out)]) == 0
    index = (out / "index.tsv").read_text().splitlines()
    assert len(index) == 13
    name, category, size, _ = index[1].split("\t")
    assert (out / name).stat().st_size == int(size) and category in corpus.CATEGORIES


# Targets for the worker below: it imports them from this module by name.
def fine(data: bytes) -> None:
    del data


def refuses(data: bytes) -> None:
    raise InvalidImageError("no")


def unavailable(data: bytes) -> None:
    raise ModelUnavailableError("no model")


def escapes(data: bytes) -> None:
    raise ValueError("a bug")


def dispatch(data: bytes) -> None:
    """One target for every behaviour, chosen by the input, so one worker start covers them all (the empty
    input is the worker's warm-up call)."""
    {b"": fine, b"ok": fine, b"400": refuses, b"503": unavailable, b"bug": escapes}.get(data, _misbehave)(data)


def _misbehave(data: bytes) -> None:
    if data == b"hang":
        time.sleep(60)
    elif data == b"grow":
        block = bytearray(400 * 1024 * 1024)  # touched: RSS really grows
        time.sleep(60)
        del block
    else:
        os.abort()


def test_the_harness_classifies_outcomes_kills_hangs_and_survives_crashes() -> None:
    inputs = [b"ok", b"400", b"503", b"bug", b"hang", b"crash", b"ok", b"grow", b"ok"]
    items = [corpus.Item(f"{i}-{d.decode()}", "test", d) for i, d in enumerate(inputs)]

    results = harness.run_local(items, spec=f"{__name__}:dispatch", jobs=1, timeout_s=3, max_rss_mb=300)

    outcome = {r.name.split("-", 1)[1]: r for r in results}
    assert [outcome[d.decode()].outcome for d in inputs] == [
        "ok",
        "client_error",
        "server_error",
        "server_error",
        "hang",
        "crash",
        "ok",
        "crash",
        "ok",
    ]
    assert "SIGABRT" in outcome["crash"].detail
    assert outcome["grow"].rss_mb > 200 and "ceiling" in outcome["grow"].detail  # the ceiling is on total RSS
    assert outcome["hang"].wall_s >= 3
    text, passed = report(results, elapsed_s=1.0, timeout_s=3, top=2, title="smoke")
    assert not passed and "FAIL  hangs: 1" in text and "FAIL  5xx responses: 4" in text


def test_http_mode_counts_statuses_and_times_out_slow_answers() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if body == b"slow":
                time.sleep(2)
            self.send_response({b"bad": 400, b"bug": 500}.get(body, 200))
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    items = [corpus.Item(f"{i}-x.png", "test", body) for i, body in enumerate([b"ok", b"bad", b"bug", b"slow", b"ok"])]
    try:
        summary = harness.run_http(items, f"http://127.0.0.1:{server.server_port}/v1/classify", timeout_s=1)
    finally:
        server.shutdown()
        server.server_close()

    assert sorted(r.outcome for r in summary.results) == ["client_error", "hang", "ok", "ok", "server_error"]
    assert summary.statuses == {200: 2, 400: 1, 500: 1, 0: 1}
