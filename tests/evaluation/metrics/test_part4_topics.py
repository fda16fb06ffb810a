"""Part 4's topic tests (``metrics/part4_topics.py``) on hand-built runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    DEAD,
    JS,
    PLAIN,
    TOPIC_PROMPTS,
    compute,
    dim,
    fake_run,
    topic_run,
)

from replication.evaluation.metrics import METRICS, part4_topics
from replication.evaluation.topics import PERMUTATIONS
from replication.rundir.reader import Untestable

# ---- Part 4: topic features --------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["javascript_web", "testing", "oop"])
def test_topic_max_pvalue_by_hand(tmp_path: Path, topic: str) -> None:
    # Observed: the most topic prompts in any live top 5 is 3. The null's one row is the live one
    # (prompts 10, 11, 12, 5, 6): it holds >= 3 of the 5 topic prompts with probability
    # [C(5,3) C(15,2) + C(5,4) C(15,1) + C(5,5)] / C(20,5) = 1126 / 15504 = 0.0726, estimated from
    # 2000 shuffles (standard error 0.006). It holds >= 4 with probability (75 + 1) / 15504 = 0.0049:
    # the test flags a feature of 4 topic prompts or more, and the write-up's JavaScript and OOP
    # examples (4 of 5) would get p = 0.005, its testing example (1 of 5)
    # p = P(>= 1) = 1 - C(15,5) / C(20,5) = 1 - 3003 / 15504 = 0.806.
    run = topic_run(tmp_path, topic)
    assert compute(f"topic_max_pvalue_{topic}", run) == pytest.approx(1126 / 15504, abs=0.025)
    flags = METRICS[f"topic_max_pvalue_{topic}"].flags
    assert flags is not None
    text = flags(run)
    assert text.startswith(f"the test flags a feature only when at least 4 of its top 5 are '{topic}' prompts")
    shown = float(text.rsplit("p = ", 1)[1].split()[0])
    expected = 1 - 3003 / 15504 if topic == "testing" else 76 / 15504
    assert shown == pytest.approx(expected, abs=0.03 if topic == "testing" else 0.004)


def test_the_topic_null_shuffles_within_sample_types(tmp_path: Path) -> None:
    # 20 prompts: 10 prefill (0-9), 10 decode steps (10-19); the 3 topic prompts are prefill (0, 1, 2)
    # and the live top 5 is all decode steps. Shuffled within types, a topic label never reaches a
    # decode step: every shuffle gives 0, so the observed 0 has p = 1, and a single topic prompt in
    # that top 5 would already be flagged (p = 1 / 2001).
    prompts = [JS] * 3 + [PLAIN] * 17
    records = [{"prompt": p, "source": "prefill" if i < 10 else "decode"} for i, p in enumerate(prompts)]
    run = fake_run(tmp_path / "typed", top={"dimensions": [dim(0, [10, 11, 12, 13, 14])]}, records=records)
    test = part4_topics.max_hits(run, "javascript_web")
    assert test is not None
    assert (test.observed, test.p, test.threshold) == (0, 1.0, 1)
    assert test.tail == {h: 1 / (1 + PERMUTATIONS) for h in (1, 2, 3)}
    # One type for all: P(>= 2 of the 3 in a top 5 of 20) = (3 C(17,3) + C(17,2)) / C(20,5) = 2176 / 15504
    # = 0.14, P(all 3) = C(17,2) / C(20,5) = 136 / 15504 = 0.0088: only 3 of 3 is flagged.
    plain = fake_run(
        tmp_path / "plain", top={"dimensions": [dim(0, [10, 11, 12, 13, 14])]}, records=[{"prompt": p} for p in prompts]
    )
    test = part4_topics.max_hits(plain, "javascript_web")
    assert test is not None and test.threshold == 3
    assert test.tail[2] == pytest.approx(2176 / 15504, abs=0.03)


@pytest.mark.parametrize("topic", ["javascript_web", "testing", "oop"])
def test_topic_max_pvalue_planted_feature(tmp_path: Path, topic: str) -> None:
    # 100 prompts, 10 of the topic (0-9); a live dimension whose top 5 are all topic prompts. One of
    # the null's 2 rows holds all 5 with probability C(10,5) / C(100,5) = 252 / 75287520 = 3.3e-6:
    # none of 2000 shuffles reaches 5, so p = 1 / 2001.
    prompts = [TOPIC_PROMPTS[topic]] * 10 + [PLAIN] * 90
    dims = [dim(0, [0, 1, 2, 3, 4]), dim(1, [50, 51, 52, 53, 54])]
    run = fake_run(tmp_path, top={"dimensions": dims}, records=[{"prompt": p} for p in prompts])
    assert compute(f"topic_max_pvalue_{topic}", run) == pytest.approx(1 / (1 + PERMUTATIONS))


@pytest.mark.parametrize("topic", ["javascript_web", "testing", "oop"])
def test_topic_max_pvalue_untestable_and_none(tmp_path: Path, topic: str) -> None:
    # One topic prompt of 20: a top 5 holds at most 1, and the one live top 5 holds it with
    # probability 5 / 20 = 0.25 under shuffled labels: no count the corpus allows is flagged.
    value = compute(f"topic_max_pvalue_{topic}", topic_run(tmp_path, topic, n_topic=1))
    assert isinstance(value, Untestable)
    assert value.reason.startswith(f"even a top 5 holding 1 '{topic}' prompts, the most there are, gives p = ")
    assert 0.2 < float(value.reason.split("gives p = ")[1].split(":")[0]) < 0.3
    no_live = fake_run(
        tmp_path, top={"dimensions": [dim(0, [0, 1, 2, 3, 4], DEAD)]}, records=[{"prompt": TOPIC_PROMPTS[topic]}] * 5
    )
    assert compute(f"topic_max_pvalue_{topic}", no_live) is None


def test_topic_metrics_are_none_without_a_live_dimension(tmp_path: Path) -> None:
    run = fake_run(tmp_path, top={"dimensions": [dim(0, [0, 1, 2, 3, 4], DEAD)]}, records=[{"prompt": JS}] * 5)
    assert METRICS["topic_max_pvalue_javascript_web"].compute(run) is None
