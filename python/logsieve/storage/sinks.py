"""Where error records and ledgers are written: a local directory or an S3 prefix, behind one
small interface (`_Sink`), with atomic replacement and conditional writes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from logsieve.errors import ConcurrentIngestError, LogsieveError, OutputError
from logsieve.locations import is_s3, resolve, s3_parts
from logsieve.storage import table

#: S3 uploads of error files switch to multipart above this size.
MULTIPART_THRESHOLD = 64 << 20


MULTIPART_CHUNKSIZE = 16 << 20


#: Staging directories untouched for this long belong to a dead process and are removed.
STALE_STAGING_SECONDS = 24 * 3600
#: Times a directory is made again after a delete on another thread removed it meanwhile.
_DIRECTORY_ATTEMPTS = 10

_T = TypeVar("_T")


class _Sink:
    """Where error files and ledgers are published, under keys relative to a root."""

    def staging_dir(self) -> Path:
        raise NotImplementedError

    def publish(self, staged: Path, key: str) -> str:
        """Move a complete staged file to `key`; returns the key as reported to users."""
        raise NotImplementedError

    def read(self, key: str) -> bytes | None:
        raise NotImplementedError

    def write(self, key: str, data: bytes) -> None:
        """Replace `key` whole: readers see the old content or the new, never half."""
        raise NotImplementedError

    def create(self, key: str, data: bytes) -> bool:
        """Write `key` only if it does not exist yet (atomically); False if it did."""
        raise NotImplementedError

    def rewrite(self, key: str, transform: Callable[[bytes], bytes | None]) -> None:
        """Replace `key`'s content by `transform(content)` (None: delete it), safe against
        another rewrite of it at the same time (a lock locally, If-Match on S3)."""
        raise NotImplementedError

    def delete(self, keys: Iterable[str]) -> None:
        raise NotImplementedError

    def display(self, key: str) -> str:
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        """Every key under `prefix` (relative to the root), sorted: replay and `logsieve errors`
        find the error files and ledgers this way."""
        raise NotImplementedError


class _LocalSink(_Sink):
    def __init__(self, root: str) -> None:
        self.root = Path(root)
        self._made: set[Path] = set()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot create output directory {self.root}: {exc.strerror}"
            ) from exc

    def _make(self, directory: Path) -> None:
        """mkdir -p, once per directory and sink (thousands of ledgers share one)."""
        if directory in self._made:
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            # There when mkdir looked, gone when it checked: a delete on another thread removed
            # it (`_unlink`); placing a file in it then fails and `_into` makes it again. A
            # file in its place is an error.
            if directory.exists() and not directory.is_dir():
                raise
        self._made.add(directory)

    def _into(self, directory: Path, place: Callable[[], _T], moved: Path | None = None) -> _T:
        """`place` a file in `directory`, made first. A delete on another thread removes the
        directories it empties; one removed before `place` is made again, a few times at most.
        `moved`: the file `place` moves there, whose absence is final."""
        for _ in range(_DIRECTORY_ATTEMPTS - 1):
            try:
                self._make(directory)
                return place()
            except FileNotFoundError:
                # The directory may be back by now: whether it or the file was missing cannot
                # be told afterwards, so place again.
                self._made.discard(directory)
                if moved is not None and not moved.exists():
                    raise
        self._make(directory)
        return place()  # the last try: its error stands

    def staging_dir(self) -> Path:
        # Inside the root, so publishing is an atomic rename on the same filesystem.
        staging = self.root / "_logsieve" / "staging"
        staging.mkdir(parents=True, exist_ok=True)
        _sweep_stale(staging)
        return Path(tempfile.mkdtemp(dir=staging))

    def publish(self, staged: Path, key: str) -> str:
        target = self.root / key
        self._into(target.parent, lambda: _move(staged, target), moved=staged)
        return str(target)

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        target = self.root / key

        def replace() -> None:
            temp = _temp_beside(target)
            temp.write_bytes(data)
            os.replace(temp, target)

        self._into(target.parent, replace)

    def create(self, key: str, data: bytes) -> bool:
        target = self.root / key
        return self._into(target.parent, lambda: _create(target, data))

    def rewrite(self, key: str, transform: Callable[[bytes], bytes | None]) -> None:
        with self._locked(key):
            data = self.read(key)
            if data is None:
                return
            new = transform(data)
            if new is None:
                self._unlink(key)
            elif new != data:
                self.write(key, new)

    def delete(self, keys: Iterable[str]) -> None:
        """Delete `keys`; error files under the lock a rewrite takes (a rewrite that read one
        before it was deleted would otherwise bring it back). Only error files are rewritten."""
        for key in keys:
            with self._locked(key) if key.endswith(".jsonl") else contextlib.nullcontext():
                self._unlink(key)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        import fcntl

        locks = self.root / "_logsieve" / "locks"
        self._make(locks)
        lock = locks / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".lock")
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            yield

    def _unlink(self, key: str) -> None:
        target = self.root / key
        target.unlink(missing_ok=True)
        _remove_empty_dir(target.parent, self.root)
        self._made.discard(target.parent)  # it may be gone now

    def display(self, key: str) -> str:
        return str(self.root / key)

    def list(self, prefix: str = "") -> list[str]:
        # A key prefix, as on S3: walk only the directory it lies in.
        base = self.root / prefix.rpartition("/")[0]
        if not base.is_dir():
            return []
        keys = (path.relative_to(self.root).as_posix() for path in base.rglob("*"))
        return sorted(k for k in keys if k.startswith(prefix) and (self.root / k).is_file())


def _temp_beside(target: Path) -> Path:
    """A hidden name next to `target` to write under, then rename: readers never see half."""
    return target.with_name(f".{target.name}.{os.getpid()}.{time.time_ns()}.tmp")


def _move(staged: Path, target: Path) -> None:
    try:
        os.replace(staged, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # Staged on another filesystem (data files stage beside the error records): copy
        # under a hidden name, then rename, so the final name never shows half a file.
        temp = _temp_beside(target)
        shutil.copyfile(staged, temp)
        os.replace(temp, target)
        staged.unlink()


def _create(target: Path, data: bytes) -> bool:
    try:
        # O_EXCL: only if absent. A reader that meets it half written finds no ledger, which
        # for a version not yet committed (what is created here) is what it means anyway.
        handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    return True


def _sweep_stale(staging: Path) -> None:
    """Remove staging directories left by processes killed mid-ingest (older than a day)."""
    cutoff = time.time() - STALE_STAGING_SECONDS
    for entry in staging.iterdir():
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)


def _remove_empty_dir(directory: Path, root: Path) -> None:
    if directory != root and root in directory.parents:
        # Fails (and is meant to) while other sources still have files for that date.
        with contextlib.suppress(OSError):
            directory.rmdir()


class _S3Sink(_Sink):
    def __init__(self, uri: str, client: Any) -> None:
        bucket, prefix = s3_parts(uri)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def staging_dir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="logsieve-"))

    def publish(self, staged: Path, key: str) -> str:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNKSIZE
        )
        full_key = self._key(key)
        kind = "application/vnd.apache.parquet" if key.endswith(".parquet") else None
        extra = {"ContentType": kind or "application/x-ndjson"}
        self.client.upload_file(str(staged), self.bucket, full_key, ExtraArgs=extra, Config=config)
        staged.unlink(missing_ok=True)
        return full_key

    def read(self, key: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        return bytes(response["Body"].read())

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, ContentType="application/json"
        )

    def create(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType="application/json",
                IfNoneMatch="*",  # S3's conditional write: only if absent
            )
        except ClientError as exc:
            if _lost_condition(exc):
                return False
            raise
        return True

    def rewrite(self, key: str, transform: Callable[[bytes], bytes | None]) -> None:
        from botocore.exceptions import ClientError

        for _ in range(_REWRITE_ATTEMPTS):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except self.client.exceptions.NoSuchKey:
                return
            data, etag = bytes(response["Body"].read()), response["ETag"]
            new = transform(data)
            if new is None:
                self.delete([key])  # rewrites only take lines away: nothing can be lost
                return
            if new == data:
                return
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=new,
                    ContentType="application/x-ndjson",
                    IfMatch=etag,  # only over the content just read
                )
                return
            except ClientError as exc:
                if not _lost_condition(exc):
                    raise
        raise ConcurrentIngestError(f"s3://{self.bucket}/{self._key(key)} kept changing")

    def delete(self, keys: Iterable[str]) -> None:
        objects = [{"Key": self._key(k)} for k in keys]
        for start in range(0, len(objects), 1000):
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects[start : start + 1000], "Quiet": True}
            )

    def display(self, key: str) -> str:
        return self._key(key)

    def list(self, prefix: str = "") -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root + prefix
        )
        for page in pages:
            keys.extend(item["Key"][len(root) :] for item in page.get("Contents", []))
        return sorted(keys)


def _lost_condition(exc: Any) -> bool:
    """Whether S3 refused a conditional write because the key changed (or exists) meanwhile."""
    code = exc.response.get("Error", {}).get("Code", "")
    return code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


def open_sink(uri: str, s3_client: Any = None) -> _Sink:
    """A sink for `s3://bucket/prefix` or a local directory (a `file://` URL or a path)."""
    location = resolve(uri, delta=False)
    if is_s3(location):
        return _S3Sink(location, s3_client)
    return _LocalSink(location)


#: Conditional rewrites of a shared error file lost to others before giving up.
_REWRITE_ATTEMPTS = 10


@contextlib.contextmanager
def _output_errors(doing: str) -> Iterator[None]:
    """Failures of the output side (botocore's, OSError...) as OutputError: cannot `doing`."""
    try:
        yield
    except LogsieveError:
        raise
    except Exception as exc:
        raise OutputError(f"cannot {doing}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return table.delta_reason(exc)
