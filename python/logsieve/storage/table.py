"""The clean table: a Delta Lake table at a local directory or an `s3://bucket/prefix`.

One place for where the table lives, how delta-rs reaches it and what its columns are:
the writer (`logsieve.storage.ingest`), compaction (`logsieve.storage.compact`) and the HTTP API
all open it through here, so a table written by one is what the others read.

delta-rs makes its own HTTP requests (it cannot see an in-process moto), so S3 access is
described to it as storage options: taken from the boto3 client the caller already has (its
endpoint, region and credentials), else from boto3's usual resolution. Commits to S3 use S3's
conditional writes (`If-None-Match` on the log entry), so no lock table is needed.
"""

from __future__ import annotations

import functools
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from logsieve.locations import data_file_location, endpoint_options, is_s3
from logsieve.locations import resolve as table_uri
from logsieve.settings import DEFAULT_AWS_REGION, aws_region, aws_s3_endpoint

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs
    from deltalake import DeltaTable, WriterProperties

#: The partition column: the UTC date (`YYYY-MM-DD`) of each row's `event_time`.
PARTITION_COLUMN = "date"
#: Lineage: which source (its identity and the name it was read under) and which version of it.
SOURCE_ID_COLUMN = "source_id"
SOURCE_COLUMN = "source"
SOURCE_VERSION_COLUMN = "source_version"
#: Prefix of the Delta application-transaction id recorded for every source ingested.
APP_ID_PREFIX = "logsieve:"
#: Commits lost to other writers before an ingest gives up (each retry waits a random pause).
COMMIT_ATTEMPTS = 8
#: Table properties set when logsieve creates the table.
TABLE_CONFIGURATION = {
    # Checkpoints every 10 commits keep a cold snapshot load to a few reads.
    "delta.checkpointInterval": "10",
    # Removed files stay a week for readers of older snapshots and time travel.
    "delta.deletedFileRetentionDuration": "interval 7 days",
}

_T = TypeVar("_T")


@functools.cache
def table_schema() -> pa.Schema:
    """The clean table's Arrow schema: the core's columns (as the core builds them), lineage,
    then the partition column. Built once."""
    import pyarrow as pa

    from logsieve import process

    lineage = (SOURCE_ID_COLUMN, SOURCE_COLUMN, SOURCE_VERSION_COLUMN, PARTITION_COLUMN)
    return pa.schema(
        [*process(b"").clean.schema, *(pa.field(n, pa.string(), nullable=False) for n in lineage)]
    )


@functools.cache
def stored_schema() -> pa.Schema:
    """The columns of the clean table's data files: the table's, without the partition column
    (its value is in each file's path)."""
    schema = table_schema()
    return schema.remove(schema.get_field_index(PARTITION_COLUMN))


def writer_properties() -> WriterProperties:
    """zstd, dictionaries only where values repeat, no statistics on free JSON text."""
    from deltalake import ColumnProperties, WriterProperties

    plain = ColumnProperties(dictionary_enabled=False)
    return WriterProperties(
        compression="ZSTD",
        compression_level=1,
        max_row_group_size=128 * 1024,
        column_properties={
            # User ids are usually too many per row group: the dictionary overflows and falls
            # back, costing time for a bigger file than plain + zstd.
            "user_id": plain,
            # min/max of JSON text prunes nothing.
            "extra": ColumnProperties(dictionary_enabled=False, statistics_enabled="NONE"),
        },
    )


def storage_options(
    uri: str, s3_client: Any = None, *, timeout_seconds: float | None = None
) -> dict[str, str] | None:
    """What delta-rs needs to reach `uri`: None for a local path, S3 settings for `s3://`.

    With `s3_client` (a boto3 client) its endpoint, region and credentials are used, so the
    table is written where the caller's other S3 requests go (moto in the demo and tests);
    without one, the endpoint comes from `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL` and the
    credentials from boto3's chain (environment, profile, the Lambda role).
    """
    if not is_s3(uri):
        return None
    if s3_client is not None:
        endpoint = s3_client.meta.endpoint_url
        region = s3_client.meta.region_name
        credentials = _client_credentials(s3_client)
    else:
        endpoint = aws_s3_endpoint()
        region = aws_region()
        credentials = _session_credentials()
    options = {
        "AWS_REGION": region or DEFAULT_AWS_REGION,
        # S3 conditional writes make commits safe without a DynamoDB lock table.
        "conditional_put": "etag",
    }
    if endpoint and not _is_aws_endpoint(endpoint):
        options["AWS_ENDPOINT_URL"] = endpoint.rstrip("/")
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if credentials is not None:
        options["AWS_ACCESS_KEY_ID"] = credentials.access_key
        options["AWS_SECRET_ACCESS_KEY"] = credentials.secret_key
        if credentials.token:
            options["AWS_SESSION_TOKEN"] = credentials.token
    if timeout_seconds is not None:
        options["timeout"] = f"{max(1, round(timeout_seconds))}s"
        options["connect_timeout"] = f"{max(1, round(timeout_seconds))}s"
    return options


def _is_aws_endpoint(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


def _client_credentials(s3_client: Any) -> Any:
    # boto3 keeps a client's credentials on its request signer; there is no public accessor.
    signer = getattr(s3_client, "_request_signer", None)
    credentials = getattr(signer, "_credentials", None)
    return credentials.get_frozen_credentials() if credentials is not None else None


def _session_credentials() -> Any:
    import boto3

    credentials = boto3.session.Session().get_credentials()
    return credentials.get_frozen_credentials() if credentials is not None else None


@dataclass(frozen=True)
class DataFiles:
    """The table's data files as pyarrow reads them: a filesystem and the table's root on it."""

    fs: pyarrow.fs.FileSystem
    root: str

    def location(self, path: str) -> str:
        """Where an add action's file is (`logsieve.locations.data_file_location`)."""
        return data_file_location(self.root, path)


def data_files(uri: str, s3_client: Any = None) -> DataFiles:
    """The data files of the table at `uri`, reached as `storage_options` reaches its log."""
    import pyarrow.fs as pafs

    location = table_uri(uri)
    if not is_s3(location):
        return DataFiles(pafs.LocalFileSystem(), location)
    options = storage_options(location, s3_client) or {}
    settings: dict[str, Any] = {"region": options["AWS_REGION"]}
    endpoint = options.get("AWS_ENDPOINT_URL")
    if endpoint:
        settings.update(endpoint_options(endpoint))
    if "AWS_ACCESS_KEY_ID" in options:
        settings.update(
            access_key=options["AWS_ACCESS_KEY_ID"],
            secret_key=options["AWS_SECRET_ACCESS_KEY"],
            session_token=options.get("AWS_SESSION_TOKEN"),
        )
    return DataFiles(pafs.S3FileSystem(**settings), location[len("s3://") :])


#: Up to this many app ids are asked of delta-rs one by one; more are read from the log at once.
_ONE_BY_ONE = 8
_CHECKPOINT = re.compile(r"([0-9]{20})\.checkpoint(?:\.([0-9]{10})\.([0-9]{10}))?\.parquet")
_COMMIT = re.compile(r"([0-9]{20})\.json")


def transaction_versions(
    snapshot: DeltaTable, app_ids: Iterable[str], files: DataFiles
) -> dict[str, int | None]:
    """The transaction number each app id has in `snapshot` (None: none recorded).

    delta-rs answers one id at a time with a replay of the log's transactions (about 0.4 ms
    each), which a group of 2,000 sources paid twice. For many ids, the log segment of the
    snapshot (its latest checkpoint and the commits after it) is read once instead; a log this
    cannot read (a v2 checkpoint, a missing commit) falls back to asking one by one.
    """
    wanted = list(dict.fromkeys(app_ids))
    recorded = None if len(wanted) <= _ONE_BY_ONE else log_transactions(snapshot, files)
    if recorded is None:
        return {app: snapshot.transaction_version(app) for app in wanted}
    return {app: recorded.get(app) for app in wanted}


@dataclass(frozen=True)
class _Segment:
    """The part of the log a snapshot is read from: a checkpoint's files, then commits."""

    checkpoint_version: int  #: -1: no checkpoint, every commit from 0
    checkpoint_files: tuple[str, ...]


def log_transactions(snapshot: DeltaTable, files: DataFiles) -> dict[str, int] | None:
    """Every app id's transaction number as of the snapshot's version, read from its log;
    None for a log this does not read (then ask delta-rs).

    The segment is found without listing the log where `_last_checkpoint` names a checkpoint
    at or before the snapshot (a month of log can be 100k objects to list on S3), by listing
    otherwise."""
    log = f"{files.root}/_delta_log"
    version = snapshot.version()
    for find in (_segment_from_last_checkpoint, _segment_from_listing):
        segment = find(files, log, version)
        if segment is not None:
            try:
                return _read_segment(files, log, segment, version)
            except FileNotFoundError:
                continue  # a pointer to a checkpoint that is gone, or a commit cleaned up
            except (OSError, ValueError, KeyError):
                return None
    return None


def _segment_from_last_checkpoint(files: DataFiles, log: str, version: int) -> _Segment | None:
    import orjson

    try:
        with files.fs.open_input_stream(f"{log}/_last_checkpoint") as stream:
            pointer = orjson.loads(stream.read())
        at, parts = int(pointer["version"]), pointer.get("parts")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if at > version or "v2Checkpoint" in pointer:
        return None
    if not parts:
        return _Segment(at, (f"{at:020d}.checkpoint.parquet",))
    names = tuple(
        f"{at:020d}.checkpoint.{n:010d}.{parts:010d}.parquet" for n in range(1, parts + 1)
    )
    return _Segment(at, names)


def _segment_from_listing(files: DataFiles, log: str, version: int) -> _Segment | None:
    import pyarrow.fs as pafs

    try:
        names = [info.base_name for info in files.fs.get_file_info(pafs.FileSelector(log))]
    except OSError:
        return None
    parts: dict[int, dict[int, list[str]]] = {}
    for name in names:
        if ".checkpoint." in name and not (match := _CHECKPOINT.fullmatch(name)):
            return None  # a v2 checkpoint (sidecars): delta-rs knows how to read it
        if ".checkpoint." in name and match and int(match[1]) <= version:
            count = int(match[3]) if match[3] else 1
            parts.setdefault(int(match[1]), {}).setdefault(count, []).append(name)
    complete = [
        (at, tuple(sorted(names)))
        for at, by_count in parts.items()
        for count, names in by_count.items()
        if len(names) == count
    ]
    start, checkpoint = max(complete, default=(-1, ()))
    commits = {int(m[1]) for name in names if (m := _COMMIT.fullmatch(name))}
    if any(at not in commits for at in range(start + 1, version + 1)):
        return None
    return _Segment(start, checkpoint)


def _read_segment(files: DataFiles, log: str, segment: _Segment, version: int) -> dict[str, int]:
    """The transactions of a checkpoint's `txn` column and of the commits up to `version`."""
    import orjson
    import pyarrow.parquet as pq

    recorded: dict[str, int] = {}
    for name in segment.checkpoint_files:
        with files.fs.open_input_file(f"{log}/{name}") as raw:
            txn = pq.read_table(raw, columns=["txn"])
        for entry in txn.column("txn").to_pylist():
            if entry is not None:
                recorded[entry["appId"]] = entry["version"]
    for at in range(segment.checkpoint_version + 1, version + 1):
        with files.fs.open_input_stream(f"{log}/{at:020d}.json") as stream:
            for line in stream.read().splitlines():
                if b'"txn"' in line and (txn := orjson.loads(line).get("txn")):
                    recorded[txn["appId"]] = txn["version"]
    return recorded


def commit_info(files: DataFiles, version: int, *, strict: bool = False) -> dict[str, Any]:
    """The `commitInfo` of one commit of the log ({} when it has none or is not there). A log
    that cannot be read gives {} too, or raises with `strict`."""
    import orjson

    try:
        with files.fs.open_input_stream(f"{files.root}/_delta_log/{version:020d}.json") as stream:
            for line in stream.read().splitlines():
                if b'"commitInfo"' in line:
                    info = orjson.loads(line).get("commitInfo")
                    return info if isinstance(info, dict) else {}
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        if strict:
            raise
    return {}


def open_table(uri: str, s3_client: Any = None, **options: Any) -> DeltaTable | None:
    """The table's latest snapshot, or None when there is no table at `uri` yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    location = table_uri(uri)
    try:
        return DeltaTable(location, storage_options=storage_options(location, s3_client), **options)
    except TableNotFoundError:
        return None


def create_table(uri: str, s3_client: Any = None) -> DeltaTable:
    """The table at `uri`, created empty (partitioned by date) if it does not exist yet.

    Two writers creating it at once both succeed: the one that loses the race opens the winner's.
    """
    from deltalake import DeltaTable

    table = open_table(uri, s3_client)
    if table is not None:
        return table
    location = table_uri(uri)
    try:
        return DeltaTable.create(
            location,
            table_schema(),
            mode="ignore",
            partition_by=[PARTITION_COLUMN],
            configuration=TABLE_CONFIGURATION,
            storage_options=storage_options(location, s3_client),
        )
    except Exception:
        table = open_table(uri, s3_client)
        if table is None:
            raise
        return table


def app_id(source_id: str) -> str:
    """The Delta application-transaction id that records which version of a source is stored."""
    return APP_ID_PREFIX + source_id


def version_number(version: str) -> int:
    """A source version (an ETag, a content hash) as the integer a Delta transaction records.

    Delta's transaction versions are integers; 62 bits of a SHA-256 make distinct versions
    collide with negligible probability, and equality is all logsieve asks of them.
    """
    import hashlib

    digest = hashlib.sha256(version.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") >> 2


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_S3_ERROR = re.compile(r"<Code>([^<]+)</Code>\s*<Message>([^<]*)</Message>")


def delta_reason(exc: BaseException) -> str:
    """One line from delta-rs's multi-line error chain: S3's error code and message, or else
    the innermost cause ("Connection refused"), after the outermost summary."""
    text = _ANSI.sub("", str(exc)).strip() or type(exc).__name__
    s3 = _S3_ERROR.search(text)
    parts = [p.strip() for p in re.split(r"\s*↳\s*", text) if p.strip()]
    if s3:
        return f"{s3.group(1)}: {s3.group(2)}"
    if len(parts) > 1:
        return f"{parts[0].splitlines()[0]}: {parts[-1].splitlines()[0]}"
    return text.splitlines()[0]


def is_commit_conflict(exc: BaseException) -> bool:
    """Whether `exc` is delta-rs losing a commit race (retry), not a real failure."""
    from deltalake.exceptions import CommitFailedError

    if isinstance(exc, CommitFailedError):
        return True
    text = str(exc)
    return "Commit failed" in text or "concurrent transaction" in text.lower()


def with_commit_retries(attempt: Callable[[], _T], *, attempts: int = COMMIT_ATTEMPTS) -> _T:
    """Run `attempt` until it does not lose a commit race, waiting a growing random pause."""
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except Exception as exc:
            if number == attempts or not is_commit_conflict(exc):
                raise
            time.sleep(random.uniform(0.02, 0.05 * 2**number))
    raise AssertionError("unreachable")


__all__ = [
    "PARTITION_COLUMN",
    "app_id",
    "create_table",
    "open_table",
    "storage_options",
    "table_schema",
    "table_uri",
    "version_number",
    "with_commit_retries",
    "writer_properties",
]
