"""Deterministic JSON Lines corpora for the benchmarks and the corpus test.

Every benchmark compares tools on the *same bytes*, so the corpus must be reproducible from a few
parameters (seed, size, share of invalid lines) and cheap to get again: generated files are cached
under `.benchmarks/corpus/` (or `$LOGSIEVE_CORPUS_DIR`) keyed by those parameters.

Lines look like application logs (~200 bytes: nested objects, arrays, numbers, unicode, escapes),
with every timestamp form the record contract accepts (RFC 3339 with `T`/`t`/space, 0-9 fraction
digits, `Z`/`z`/`+HH:MM`/`-HHMM`/no offset, epoch seconds and milliseconds, ints and floats) and
`user_id` as a string or an integer. Invalid lines are spread evenly over the five error codes of
the contract, each with several realistic variants, and every line carries its expected label so
tests can check a processor line by line.

Only the standard library and orjson (a runtime dependency) are used: the test suite imports this
module without the `bench` extra.

Command line: `python benches/corpus.py --lines 1000000 --invalid 0.05` prints the cached path.
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from logsieve import ERROR_CODES

GENERATOR_VERSION = 2  # bump when the bytes a spec produces change, so stale caches are ignored

_BASE_EPOCH = calendar.timegm((2025, 8, 1, 0, 0, 0))  # events spread over 31 days from here
_SPAN_SECONDS = 31 * 86_400
_ACTIONS = (
    ("login", 18),
    ("logout", 10),
    ("view_page", 30),
    ("search", 12),
    ("add_to_cart", 8),
    ("purchase", 4),
    ("update_profile", 3),
    ("api_call", 15),
)
_DEVICES = ("ios", "android", "web", "desktop", "cli")
_COUNTRIES = ("DE", "US", "FR", "JP", "BR", "IN", "GB", "ES", "KR", "NG")
_PATHS = ("/", "/products", "/cart", "/checkout", "/account", "/search", "/api/v2/orders")
_MESSAGES = (
    "ok",
    "user signed in",
    "Überweisung bestätigt",
    "ログインに成功しました",
    "pedido confirmado — gracias",
    'quoted "value" with \\ backslash',
    "tab\tand newline\n escaped",
    "emoji 🎉 party",
    "Ελληνικά κείμενο",
    "slow request, retried",
)
_OFFSETS_MIN = (0, 60, 120, 330, 345, 540, 600, -60, -180, -240, -300, -420, -600, 840, -720)


@dataclass(frozen=True)
class CorpusSpec:
    """Everything that determines the bytes of a corpus (and therefore its cache key)."""

    lines: int = 200_000
    invalid_share: float = 0.0
    seed: int = 20_250_820
    mixed_types: bool = True  # epoch-number timestamps and integer user_ids; False: strings only
    blank_share: float = 0.0
    time_ordered: bool = True  # as log files are, with jitter; False: instants shuffled
    #: Every timestamp in the seed's one format, `YYYY-MM-DDTHH:MM:SSZ` (what `strptime` reads).
    seed_timestamps: bool = False

    def key(self) -> str:
        """File-name-safe cache key; readable prefix, hash of all parameters for uniqueness."""
        params = {**asdict(self), "v": GENERATOR_VERSION}
        if not self.seed_timestamps:  # added later: older corpora keep their cache keys
            del params["seed_timestamps"]
        params["invalid_share"] = float(self.invalid_share)  # 0 and 0.0 name the same corpus
        params["blank_share"] = float(self.blank_share)
        payload = json.dumps(params, sort_keys=True)
        digest = hashlib.sha256(payload.encode()).hexdigest()[:10]
        share = f"{self.invalid_share * 100:g}pct"
        kind = "mixed" if self.mixed_types else "strings"
        order = "" if self.time_ordered else "-shuffled"
        form = "-seedtime" if self.seed_timestamps else ""
        return f"lines{self.lines}-invalid{share}-{kind}{order}{form}-seed{self.seed}-{digest}"


@dataclass
class Expected:
    """Ground truth for a corpus: what a correct processor must report."""

    processed: int = 0
    valid: int = 0
    blank: int = 0
    error_counts: dict[str, int] = field(default_factory=dict)
    invalid_lines: list[tuple[int, str]] = field(default_factory=list)  # (1-based line, code)

    @property
    def errors(self) -> int:
        return self.processed - self.valid


@dataclass(frozen=True)
class Line:
    """One generated physical line (without its newline) and what a processor must make of it."""

    raw: bytes
    error: str | None  # expected error code, None for a valid record (or a blank line)
    blank: bool = False
    timestamp: str | None = None  # expected UTC "YYYY-MM-DD HH:MM:SS" for a valid record


class _Generator:
    """Turns a seeded RNG into log lines; one instance per corpus so runs never share state."""

    def __init__(self, spec: CorpusSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.index = 0  # records generated so far, for time-ordered instants
        actions, weights = zip(*_ACTIONS)
        self._actions = list(actions)
        self._action_cum = list(_cumulative(weights))

    # ----- valid records -------------------------------------------------------------------

    def instant(self) -> tuple[int, int]:
        """Whole epoch seconds and nanoseconds: advancing through the 31 days line by line with
        up to 10 minutes of jitter (log files are nearly in time order), or anywhere in them."""
        rng = self.rng
        if self.spec.time_ordered:
            self.index += 1
            at = self.index * _SPAN_SECONDS // max(self.spec.lines, 1) + rng.randrange(-600, 600)
            offset = min(max(at, 0), _SPAN_SECONDS - 1)
        else:
            offset = rng.randrange(_SPAN_SECONDS)
        return _BASE_EPOCH + offset, rng.randrange(1_000_000_000)

    def timestamp_value(self, secs: int, nanos: int) -> str | int | float:
        """The instant in one of the accepted forms (a JSON string or number)."""
        rng = self.rng
        if self.spec.seed_timestamps:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(secs))
        if self.spec.mixed_types and rng.random() < 0.3:
            form = rng.randrange(4)
            if form == 0:
                return secs
            if form == 1:
                return secs * 1000 + nanos // 1_000_000
            if form == 2:
                return round(secs + (nanos // 1_000_000) / 1000, 3)
            return round(secs * 1000 + (nanos // 1_000) / 1000, 3)
        offset = rng.choice(_OFFSETS_MIN) if rng.random() < 0.4 else 0
        local = time.gmtime(secs + offset * 60)
        sep = rng.choice("TTTTTT t")
        digits = rng.choice((0, 0, 3, 3, 3, 6, 6, 9, 1, 2, 4, 5, 7, 8))
        frac = "." + f"{nanos:09d}"[:digits] if digits else ""
        if offset == 0:
            zone = rng.choice(("Z", "Z", "Z", "", "+00:00", "z"))
        else:
            sign = "+" if offset > 0 else "-"
            hh, mm = divmod(abs(offset), 60)
            zone = f"{sign}{hh:02d}:{mm:02d}" if rng.random() < 0.7 else f"{sign}{hh:02d}{mm:02d}"
        return (
            f"{local.tm_year:04d}-{local.tm_mon:02d}-{local.tm_mday:02d}{sep}"
            f"{local.tm_hour:02d}:{local.tm_min:02d}:{local.tm_sec:02d}{frac}{zone}"
        )

    def user_id(self) -> str | int:
        rng = self.rng
        n = rng.randrange(1, 250_000)
        if self.spec.mixed_types and rng.random() < 0.3:
            return n
        return f"u-{n:06d}" if rng.random() < 0.7 else f"user_{n}@example.org"

    def action(self) -> str:
        return self.rng.choices(self._actions, cum_weights=self._action_cum)[0]

    def extras(self) -> dict[str, object]:
        """The members beyond the three required ones: what makes real logs heavy to parse."""
        rng = self.rng
        extra: dict[str, object] = {
            "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "session": {"id": f"{rng.getrandbits(64):016x}", "device": rng.choice(_DEVICES)},
        }
        roll = rng.random()
        if roll < 0.6:
            extra["http"] = {
                "path": rng.choice(_PATHS),
                "status": rng.choice((200, 200, 200, 201, 204, 301, 400, 404, 500)),
                "latency_ms": round(rng.lognormvariate(3.0, 1.0), 3),
            }
        if roll < 0.3:
            extra["tags"] = rng.sample(("beta", "mobile", "eu", "ab:42", "vip", "retry"), 2)
        if roll > 0.7:
            extra["msg"] = rng.choice(_MESSAGES)
        if roll > 0.85:
            extra["geo"] = {
                "country": rng.choice(_COUNTRIES),
                "lat": round(rng.uniform(-90, 90), 4),
                "lon": round(rng.uniform(-180, 180), 4),
            }
        if roll > 0.97:
            extra["referrer"] = None
            extra["bytes"] = rng.randrange(10**9)
        return extra

    def valid_record(self) -> tuple[dict[str, object], str]:
        """A valid record as a dict (key order varies) and its expected UTC timestamp text."""
        secs, nanos = self.instant()
        ts = self.timestamp_value(secs, nanos)
        record: dict[str, object] = {
            "timestamp": ts,
            "user_id": self.user_id(),
            "action": self.action(),
        }
        extras = self.extras()
        if self.rng.random() < 0.2:  # required fields not first, as many loggers emit them
            record = {**extras, **record}
        else:
            record.update(extras)
        expected = _utc_text(ts) if not isinstance(ts, str) else _utc_text_of(secs)
        return record, expected

    def encode(self, record: object) -> bytes:
        """JSON text in one of the shapes real producers emit (compact, spaced, ASCII-escaped)."""
        roll = self.rng.random()
        if roll < 0.01:  # an escaped key still names the field
            return orjson.dumps(record).replace(b'"user_id"', b'"user\\u005fid"')
        if roll < 0.8:
            return orjson.dumps(record)
        if roll < 0.9:
            return json.dumps(record, ensure_ascii=False).encode()
        return json.dumps(record, ensure_ascii=True, separators=(",", ":")).encode()

    def valid_line(self) -> Line:
        record, expected = self.valid_record()
        return Line(self.encode(record), None, timestamp=expected)

    # ----- invalid records -----------------------------------------------------------------

    def invalid_line(self, code: str) -> Line:
        return Line(getattr(self, f"_{code}")(), code)

    def _invalid_json(self) -> bytes:
        rng = self.rng
        record, _ = self.valid_record()
        good = orjson.dumps(record)
        variant = rng.randrange(10)
        if variant == 0:  # truncated write
            return good[: rng.randrange(1, len(good) - 1)]
        if variant == 1:  # trailing comma
            return good[:-1] + b",}"
        if variant == 2:  # NaN from a careless serialiser
            return good[:-1] + b',"ratio":NaN}'
        if variant == 3:  # single quotes
            return good.replace(b'"', b"'")
        if variant == 4:  # Latin-1 bytes: not UTF-8
            return good[:-1] + b',"city":"K\xf6ln"}'
        if variant == 5:  # raw tab inside a string
            return good[:-1] + b',"msg":"a\tb"}'
        if variant == 6:  # two objects on one line
            return good + b" " + good
        if variant == 7:  # number out of float range
            return good[:-1] + b',"big":1e999}'
        if variant == 8:  # leading zero
            return good[:-1] + b',"n":007}'
        return b"{" + good  # stray brace

    def _not_an_object(self) -> bytes:
        record, _ = self.valid_record()
        return self.rng.choice(
            (
                orjson.dumps([record]),
                orjson.dumps(orjson.dumps(record).decode()),  # the object as a JSON string
                b"42",
                b"null",
                b"true",
                orjson.dumps(list(record.values())[:3]),
            )
        )

    def _missing_field(self) -> bytes:
        rng = self.rng
        record, _ = self.valid_record()
        names = ["timestamp", "user_id", "action"]
        for name in rng.sample(names, rng.randrange(1, 4)):
            if rng.random() < 0.7:
                del record[name]
            else:
                record[name] = None
        return self.encode(record)

    def _invalid_field(self) -> bytes:
        rng = self.rng
        record, _ = self.valid_record()
        if rng.random() < 0.6:
            record["user_id"] = rng.choice(("", 12.5, True, {"id": 7}, [1, 2], -0.0))
        else:
            record["action"] = rng.choice(("", 5, False, ["login"], {"name": "login"}))
        return self.encode(record)

    def _invalid_timestamp(self) -> bytes:
        record, _ = self.valid_record()
        record["timestamp"] = self.rng.choice(
            (
                "2025-08-20",
                "20250820T120115Z",
                "2025-02-30T10:00:00Z",
                "2025-08-20T24:00:00Z",
                "2025-08-20T12:00:60Z",
                "2025-08-20T12:01:15Z trailing",
                "2025-08-20T12:01:15.1234567890Z",
                "2025-08-20T12:01:15+24:00",
                "2025-8-20T12:01:15Z",
                "2025-08-20 12:01",
                "",
                "yesterday",
                "1755691275",
                True,
                3e14,  # milliseconds: year 11476
                [2025, 8, 20],
            )
        )
        return self.encode(record)


def _cumulative(weights: tuple[int, ...]) -> Iterator[int]:
    total = 0
    for w in weights:
        total += w
        yield total


def _utc_text_of(secs: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs))


def _utc_text(number: float) -> str:
    """Expected UTC text of an epoch number per the contract (seconds up to 2e10, else ms)."""
    secs = number if abs(number) <= 2e10 else number / 1000
    return _utc_text_of(int(secs // 1))


def generate(spec: CorpusSpec) -> Iterator[Line]:
    """Yield the corpus line by line; invalid lines placed at random, codes in equal shares."""
    gen = _Generator(spec)
    layout = random.Random(spec.seed ^ 0x5EED)
    n_invalid = round(spec.lines * spec.invalid_share)
    n_blank = round(spec.lines * spec.blank_share)
    if n_invalid + n_blank > spec.lines:
        raise ValueError("invalid_share + blank_share must not exceed 1")
    special = layout.sample(range(spec.lines), n_invalid + n_blank)
    kind: dict[int, str] = {}
    for i, index in enumerate(special[:n_invalid]):
        kind[index] = ERROR_CODES[i % len(ERROR_CODES)]
    for index in special[n_invalid:]:
        kind[index] = "blank"
    for index in range(spec.lines):
        code = kind.get(index)
        if code is None:
            yield gen.valid_line()
        elif code == "blank":
            yield Line(layout.choice((b"", b"  ", b"\t")), None, blank=True)
        else:
            yield gen.invalid_line(code)


def build(spec: CorpusSpec) -> tuple[bytes, Expected]:
    """The whole corpus in memory (newline-terminated lines) and its ground truth."""
    parts: list[bytes] = []
    expected = Expected(error_counts=dict.fromkeys(ERROR_CODES, 0))
    for number, line in enumerate(generate(spec), start=1):
        parts.append(line.raw)
        _account(expected, number, line)
    parts.append(b"")
    return b"\n".join(parts), expected


def _account(expected: Expected, number: int, line: Line) -> None:
    if line.blank:
        expected.blank += 1
        return
    expected.processed += 1
    if line.error is None:
        expected.valid += 1
    else:
        expected.error_counts[line.error] += 1
        expected.invalid_lines.append((number, line.error))


def cache_dir() -> Path:
    default = Path(__file__).resolve().parents[1] / ".benchmarks" / "corpus"
    return Path(os.environ.get("LOGSIEVE_CORPUS_DIR", default))


def corpus_file(spec: CorpusSpec) -> tuple[Path, Expected]:
    """Path of the cached corpus (generated and written atomically on first use) and its truth."""
    directory = cache_dir()
    path = directory / f"{spec.key()}.jsonl"
    meta = path.with_suffix(".meta.json")
    if path.exists() and meta.exists():
        truth = json.loads(meta.read_text())
        truth["invalid_lines"] = [tuple(x) for x in truth["invalid_lines"]]
        return path, Expected(**truth)
    directory.mkdir(parents=True, exist_ok=True)
    expected = Expected(error_counts=dict.fromkeys(ERROR_CODES, 0))
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb", buffering=1 << 20) as out:
        for number, line in enumerate(generate(spec), start=1):
            out.write(line.raw)
            out.write(b"\n")
            _account(expected, number, line)
    meta.write_text(json.dumps(asdict(expected)))
    tmp.replace(path)
    return path, expected


def corpus_bytes(spec: CorpusSpec) -> tuple[bytes, Expected]:
    path, expected = corpus_file(spec)
    return path.read_bytes(), expected


def sized_file(
    target_bytes: int, *, invalid_share: float = 0.0, mixed_types: bool = True, seed: int = 7
) -> Path:
    """A corpus of at least `target_bytes` (e.g. the 1 GB streaming file), cached like the rest.

    Built by concatenating one generated corpus (up to 1M lines) until big enough: the content of a
    memory benchmark does not need to be unique, only realistic and identical for every tool.
    """
    base_lines = max(10_000, min(1_000_000, target_bytes // 200))
    spec = CorpusSpec(base_lines, invalid_share, seed, mixed_types)
    base, _ = corpus_file(spec)
    path = cache_dir() / f"{base.stem}-x{target_bytes}.jsonl"
    if path.exists():
        return path
    chunk = base.read_bytes()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as out:
        written = 0
        while written < target_bytes:
            out.write(chunk)
            written += len(chunk)
    tmp.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--invalid", type=float, default=0.0, help="share of invalid lines, 0..1")
    parser.add_argument("--seed", type=int, default=CorpusSpec.seed)
    parser.add_argument("--strings-only", action="store_true", help="no epoch/int values")
    parser.add_argument("--shuffled", action="store_true", help="instants in random order")
    parser.add_argument(
        "--seed-timestamps", action="store_true", help="every timestamp as YYYY-MM-DDTHH:MM:SSZ"
    )
    parser.add_argument("--bytes", type=int, help="instead: a file of at least this many bytes")
    args = parser.parse_args()
    if args.bytes:
        print(sized_file(args.bytes, invalid_share=args.invalid, mixed_types=not args.strings_only))
        return
    spec = CorpusSpec(
        args.lines,
        args.invalid,
        args.seed,
        not args.strings_only,
        time_ordered=not args.shuffled,
        seed_timestamps=args.seed_timestamps,
    )
    path, expected = corpus_file(spec)
    counts = Counter({k: v for k, v in expected.error_counts.items() if v})
    print(path)
    print(
        f"{path.stat().st_size:,} bytes, {expected.processed:,} records, "
        f"{expected.valid:,} valid, errors {dict(counts)}"
    )


if __name__ == "__main__":
    main()
