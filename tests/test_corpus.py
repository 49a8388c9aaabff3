"""The benchmark corpus generator: deterministic, exact invalid shares, labels the core agrees with.

Benchmarks are only comparable when every tool sees the same bytes and the corpus says what a
correct processor must make of them; these tests hold the generator to that, and check its labels
line by line against the real core.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

_CORPUS_PY = Path(__file__).resolve().parents[1] / "benches" / "corpus.py"


def _load_corpus_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("logsieve_bench_corpus", _CORPUS_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus_module()


def test_same_spec_gives_same_bytes_and_other_seed_differs() -> None:
    spec = corpus.CorpusSpec(lines=600, invalid_share=0.1, seed=11)
    first, truth = corpus.build(spec)
    again, truth_again = corpus.build(spec)
    other, _ = corpus.build(corpus.CorpusSpec(lines=600, invalid_share=0.1, seed=12))
    assert first == again
    assert truth == truth_again
    assert other != first
    assert first.count(b"\n") == 600 and first.endswith(b"\n")


@pytest.mark.parametrize(("lines", "share"), [(1000, 0.0), (1000, 0.05), (997, 0.3), (50, 1.0)])
def test_invalid_share_is_exact_and_spread_over_every_code(lines: int, share: float) -> None:
    _, truth = corpus.build(corpus.CorpusSpec(lines=lines, invalid_share=share))
    n_invalid = round(lines * share)
    assert truth.processed == lines
    assert truth.errors == n_invalid == len(truth.invalid_lines)
    assert sum(truth.error_counts.values()) == n_invalid
    counts = Counter(code for _, code in truth.invalid_lines)
    assert counts == Counter({k: v for k, v in truth.error_counts.items() if v})
    if n_invalid >= len(corpus.ERROR_CODES):
        assert set(counts) == set(corpus.ERROR_CODES)
        assert max(counts.values()) - min(counts.values()) <= 1
    numbers = [n for n, _ in truth.invalid_lines]
    assert numbers == sorted(set(numbers)) and all(1 <= n <= lines for n in numbers)


def test_lines_are_realistic_in_size_and_cover_every_timestamp_form() -> None:
    data, _ = corpus.build(corpus.CorpusSpec(lines=3000))
    lines = data.split(b"\n")[:-1]
    assert 150 <= len(data) / len(lines) <= 300
    values = [
        json.loads(line, object_pairs_hook=dict).get("timestamp")
        for line in lines
        if b"\\u005fid" not in line
    ]
    texts = [v for v in values if isinstance(v, str)]
    numbers = [v for v in values if isinstance(v, (int, float))]
    assert {t[10] for t in texts} == {"T", "t", " "}
    fractions = {len(m.group(1)) for t in texts if (m := re.search(r"\.([0-9]+)", t))}
    assert fractions == set(range(1, 10))
    assert any(re.fullmatch(r".*:[0-9]{2}(\.[0-9]+)?", t) for t in texts)  # no offset
    for zone in (r"Z", r"z", r"\+[0-9]{2}:[0-9]{2}", r"-[0-9]{4}"):
        assert any(re.search(zone + "$", t) for t in texts), zone
    assert {type(n) for n in numbers} == {int, float}
    assert any(abs(n) > 2e10 for n in numbers) and any(abs(n) <= 2e10 for n in numbers)
    assert any(b"\\u005fid" in line for line in lines)  # escaped key


def test_cache_is_keyed_by_parameters_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGSIEVE_CORPUS_DIR", str(tmp_path))
    spec = corpus.CorpusSpec(lines=400, invalid_share=0.05)
    path, truth = corpus.corpus_file(spec)
    assert path.parent == tmp_path
    data, built_truth = corpus.build(spec)
    assert path.read_bytes() == data and truth == built_truth
    mtime = path.stat().st_mtime_ns
    again, again_truth = corpus.corpus_file(spec)
    assert again == path and again.stat().st_mtime_ns == mtime and again_truth == truth
    other, _ = corpus.corpus_file(corpus.CorpusSpec(lines=400, invalid_share=0.1))
    assert other != path


@pytest.mark.parametrize("mixed", [True, False])
def test_core_agrees_with_the_labels_line_by_line(mixed: bool) -> None:
    import logsieve

    spec = corpus.CorpusSpec(lines=2500, invalid_share=0.2, mixed_types=mixed, blank_share=0.02)
    data, truth = corpus.build(spec)
    expected_ts = [line.timestamp for line in corpus.generate(spec) if line.timestamp]

    batch = logsieve.process(data)

    stats = batch.stats
    assert (stats.processed, stats.valid, stats.errors, stats.blank) == (
        truth.processed,
        truth.valid,
        truth.errors,
        truth.blank,
    )
    errors = batch.errors.to_pydict()
    assert list(zip(errors["line"], errors["error"])) == truth.invalid_lines
    # Per code, in rule order, as the corpus labelled them.
    assert batch.error_counts == {c: truth.error_counts[c] for c in logsieve.ERROR_CODES}
    assert list(batch.error_counts) == list(logsieve.ERROR_CODES)
    assert logsieve.process(data.replace(b"\n", b"\n\n")).error_counts == batch.error_counts
    assert logsieve.process(b'{"timestamp":0,"user_id":"u","action":"a"}\n').error_counts == {}
    assert batch.clean.column("timestamp").to_pylist() == expected_ts
