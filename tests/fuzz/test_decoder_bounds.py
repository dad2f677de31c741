"""The decoder against the hostile corpus, each image in a measuring subprocess: no exception outside the error
hierarchy, no hang, and for every image peak RSS growth and CPU under the budget. Three cycles of the corpus
(every attack category three times) keep this in `make test`; `make fuzz` runs the 10,000-image campaign."""

from __future__ import annotations

from tests.fuzz import corpus, harness
from tests.fuzz.fuzz_images import MAX_CPU_S, MAX_RSS_GROWTH_MB, report

SAMPLE = 300


def test_every_hostile_image_is_answered_within_the_memory_and_cpu_budget() -> None:
    # GIVEN crafted bombs and mutated photographs of every allowed format, and formats that are not allowed
    items = list(corpus.generate(SAMPLE, seed=7))

    # WHEN each is decoded for a 224 px model, the way the server does, in a worker that measures it
    results = harness.run_local(items, jobs=2)

    # THEN none escapes the error hierarchy or hangs, and none takes more memory or CPU than the budget allows
    text, passed = report(results, elapsed_s=0, timeout_s=harness.DEFAULT_TIMEOUT_S, top=3, title="decoder bounds")
    assert passed, text
    assert max(r.rss_mb for r in results) <= MAX_RSS_GROWTH_MB and max(r.cpu_s for r in results) <= MAX_CPU_S
    # AND the corpus was hostile enough to mean something: most images refused, every category seen
    assert {r.category for r in results} == set(corpus.CATEGORIES)
    assert sum(r.outcome == "client_error" for r in results) > SAMPLE // 2
