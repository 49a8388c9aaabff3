"""Where data lives: `s3://bucket/prefix`, a `file:` URL or a local path, with one set of rules.

Every location a user or a setting names (the clean table, the error records, `--out`) is read
here: `resolve` checks it and gives its canonical form, `file_url_path` turns a `file:` URL into
a path, `s3_parts` splits an S3 location, `data_file_location` finds a file a Delta log names,
and `filesystem` gives the pyarrow filesystem that reads it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from logsieve.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow.fs

#: The scheme of every S3 location.
S3 = "s3://"

_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def is_s3(uri: str) -> bool:
    """Whether `uri` is an S3 location."""
    return uri.startswith(S3)


def s3_parts(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    bucket, _, prefix = uri[len(S3) :].partition("/")
    return bucket, prefix


def resolve(uri: str, *, delta: bool = True) -> str:
    """`s3://bucket/prefix` as given (checked), or the absolute path of a local directory
    (a path or a `file:` URL).

    `delta`: the location is for delta-rs, which cannot use every local path.
    """
    if not uri:
        raise ConfigError("a table location is required (a directory or s3://bucket/prefix)")
    if is_s3(uri):
        bucket, _ = s3_parts(uri)
        if not bucket:
            raise ConfigError(f"{uri!r} names no bucket: use s3://bucket/prefix")
        root = uri[len(S3) :].rstrip("/")
        if "//" in root:
            raise ConfigError(f"{uri!r} has an empty path segment ('//')")
        return f"{S3}{root}"
    path = os.path.abspath(os.path.expanduser(local_path(uri)))
    if delta and _PERCENT_ESCAPE.search(path):
        # delta-rs decodes them: it would write under `run%20one` and then read `run one`.
        raise ConfigError(
            f"{path}: delta-rs cannot use a local path holding a percent escape such as %20; "
            "choose a directory without one"
        )
    return path


def local_path(uri: str) -> str:
    """The path a local location names: a `file:` URL's path, or the path as given; any other
    URL is refused."""
    if uri.startswith("file:"):
        return file_url_path(uri)
    if "://" in uri:
        raise ConfigError(f"{uri!r} is not supported: use a local directory or s3://bucket/prefix")
    return uri


def file_url_path(url: str) -> str:
    """The local path of a `file:` URL (`file:///p`, `file://localhost/p`, `file:/p`)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed "[" read as an IPv6 host
        parts = None
    if (
        parts is None
        or parts.netloc not in ("", "localhost")
        or not parts.path.startswith("/")
        or parts.query
        or parts.fragment
        or "\0" in unquote(parts.path)
    ):
        raise ConfigError(f"{url!r} is not a local file URL: use file:///absolute/path")
    return unquote(parts.path)


def join(base: str, name: str) -> str:
    """`name` inside the location `base` (an S3 prefix or a directory)."""
    return f"{base.rstrip('/')}/{name}" if is_s3(base) else str(Path(base) / name)


def data_file_location(root: str, path: str) -> str:
    """Where an add action's file is on a pyarrow filesystem rooted at `root`: the log's path
    (URL-encoded, relative to the root, or an absolute URI of a shallow clone's file), decoded."""
    if ":" not in path:  # the usual case: relative to the table root
        return f"{root}/{unquote(path)}"
    parts = urlsplit(path)
    if parts.scheme in ("s3", "s3a"):
        return unquote(f"{parts.netloc}{parts.path}")
    if parts.scheme == "file":
        return file_url_path(path)
    return f"{root}/{unquote(path)}"


def endpoint_options(endpoint: str) -> dict[str, str]:
    """pyarrow S3FileSystem's scheme and endpoint_override for an http(s)://host[:port] URL."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:  # a port out of range, an unclosed "["
        raise ConfigError(f"AWS endpoint URL {endpoint!r} is not a valid URL") from None
    problem = None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "is not an http(s) URL"
    elif port == 0 or parts.netloc.endswith(":"):
        problem = "has no usable port"
    elif "@" in parts.netloc or "%" in parts.netloc:
        problem = "must be scheme://host[:port], without user info or escapes"
    elif parts.path not in ("", "/") or parts.query or parts.fragment:
        problem = "has a path, query or fragment, which S3 requests would not keep"
    if problem:
        raise ConfigError(f"AWS endpoint URL {endpoint!r} {problem}")
    return {"scheme": parts.scheme, "endpoint_override": parts.netloc}


def filesystem(uri: str, *, timeout_seconds: float) -> tuple[pyarrow.fs.FileSystem, str]:
    """A pyarrow filesystem and root path for a location as `resolve` gives it; S3 as boto3
    would reach it (the endpoint and region from the environment), giving up within
    `timeout_seconds` a request."""
    import pyarrow.fs as pafs

    from logsieve.settings import DEFAULT_AWS_REGION, aws_region, aws_s3_endpoint

    if not is_s3(uri):
        return pafs.LocalFileSystem(), uri
    region = aws_region() or DEFAULT_AWS_REGION  # explicit: the SDK never asks EC2's metadata
    options: dict[str, Any] = {
        "region": region,
        "connect_timeout": 2.0,
        "request_timeout": float(timeout_seconds),
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=2),
    }
    endpoint = aws_s3_endpoint()
    if endpoint:
        options.update(endpoint_options(endpoint))
    return pafs.S3FileSystem(**options), uri[len(S3) :]


__all__ = [
    "S3",
    "data_file_location",
    "endpoint_options",
    "file_url_path",
    "filesystem",
    "is_s3",
    "join",
    "local_path",
    "resolve",
    "s3_parts",
]
