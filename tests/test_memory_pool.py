"""Allocators: Arrow's pool where files stream (jemalloc for `logsieve process` and a cold Lambda
worker, pyarrow's default elsewhere, a user's choice kept), and the core's mimalloc settings kept
to the core.

Arrow picks its pool when pyarrow is first imported and mimalloc reads its settings when its
library loads, and this test process did both long ago, so every case runs in a fresh interpreter,
as the `logsieve` command and a cold Lambda do.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from logsieve.aws.clients import Clients
from logsieve.memory import LEAN_JEMALLOC_CONF, STREAMING_PURGE_DELAY_MS, pyarrow_has_jemalloc
from logsieve.sim.samples import join_lines, utc_today, web_lines
from logsieve.storage.table import open_table


def run_fresh(script: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `script` in a new interpreter; it prints one JSON object last."""
    chosen = ("ARROW_DEFAULT_MEMORY_POOL", "JE_ARROW_MALLOC_CONF")
    environ = {k: v for k, v in os.environ.items() if k not in chosen}
    environ.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Unsupported backend" not in done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


def clean_rows(out: Path) -> int:
    """Rows in the Delta table `logsieve process` wrote to OUT/clean."""
    return DeltaTable(str(out / "clean")).to_pyarrow_table().num_rows


CLI = """
    import json, os
    from logsieve.cli import main
    code = main(["process", {path!r}, "--out", {out!r}, "--json"])
    import pyarrow as pa
    print(json.dumps({{
        "code": code,
        "backend": pa.default_memory_pool().backend_name,
        "conf": os.environ.get("JE_ARROW_MALLOC_CONF"),
    }}))
"""


@pytest.fixture
def log_file(tmp_path: Path) -> tuple[Path, int]:
    lines = web_lines(utc_today())
    path = tmp_path / "web.jsonl"
    path.write_bytes(join_lines(lines))
    return path, sum(line.expect == "valid" for line in lines)


def test_the_header_check_agrees_with_what_pyarrow_can_do() -> None:
    probe = run_fresh(
        """
        import json, pyarrow as pa
        try:
            pa.jemalloc_memory_pool()
            has = True
        except NotImplementedError:
            has = False
        print(json.dumps({"has": has}))
        """
    )
    assert probe["has"] is pyarrow_has_jemalloc()


def test_the_command_line_streams_with_lean_jemalloc(
    tmp_path: Path, log_file: tuple[Path, int]
) -> None:
    path, valid = log_file
    result = run_fresh(CLI.format(path=str(path), out=str(tmp_path / "out")))
    assert result["code"] == 0
    if pyarrow_has_jemalloc():
        assert result["backend"] == "jemalloc"
        assert result["conf"] == LEAN_JEMALLOC_CONF
    else:
        assert result["backend"] != "jemalloc"
        assert result["conf"] is None
    assert clean_rows(tmp_path / "out") == valid


def test_a_pool_the_user_chose_is_kept(tmp_path: Path, log_file: tuple[Path, int]) -> None:
    path, valid = log_file
    script = CLI.format(path=str(path), out=str(tmp_path / "out"))
    result = run_fresh(script, {"ARROW_DEFAULT_MEMORY_POOL": "system"})
    assert (result["code"], result["backend"], result["conf"]) == (0, "system", None)
    assert clean_rows(tmp_path / "out") == valid


@pytest.mark.skipif(not pyarrow_has_jemalloc(), reason="this pyarrow has no jemalloc")
def test_jemalloc_settings_of_the_user_are_kept(tmp_path: Path, log_file: tuple[Path, int]) -> None:
    path, _ = log_file
    script = CLI.format(path=str(path), out=str(tmp_path / "out"))
    result = run_fresh(script, {"JE_ARROW_MALLOC_CONF": "dirty_decay_ms:5000"})
    assert (result["backend"], result["conf"]) == ("jemalloc", "dirty_decay_ms:5000")


def test_commands_that_do_not_stream_keep_the_default_pool() -> None:
    # `serve` is the one that matters (the HTTP API is faster on pyarrow's default pool); it
    # runs until stopped, so `template`, which goes through the same dispatch, stands in for it.
    result = run_fresh(
        """
        import contextlib, io, json, os
        from logsieve.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["template"])
        import pyarrow as pa
        print(json.dumps({
            "code": code,
            "backend": pa.default_memory_pool().backend_name,
            "pool_env": os.environ.get("ARROW_DEFAULT_MEMORY_POOL"),
        }))
        """
    )
    assert (result["code"], result["pool_env"]) == (0, None)
    assert result["backend"] != "jemalloc"


@pytest.mark.parametrize("chosen", [None, "700"], ids=["ours", "the user's"])
def test_streaming_processes_shorten_the_cores_purge_delay(chosen: str | None) -> None:
    """The core loads keeping freed memory 3 s (calls in a loop); a streaming entry point sets
    0.1 s, unless the user chose a delay, which then holds throughout."""
    env = {k: v for k, v in os.environ.items() if k != "MIMALLOC_PURGE_DELAY"}
    if chosen is not None:
        env["MIMALLOC_PURGE_DELAY"] = chosen
    result = run_fresh(
        """
        import json
        from logsieve import _core
        from logsieve.memory import use_lean_memory
        loaded = _core.purge_delay()
        use_lean_memory()
        print(json.dumps({"loaded": loaded, "streaming": _core.purge_delay()}))
        """,
        env,
    )
    if chosen is None:
        assert result == {"loaded": 3000, "streaming": STREAMING_PURGE_DELAY_MS}
    else:
        assert result == {"loaded": 700, "streaming": 700}


def test_too_late_once_pyarrow_is_imported() -> None:
    result = run_fresh(
        """
        import json, os
        import pyarrow as pa
        from logsieve.memory import use_lean_arrow_pool
        asked = use_lean_arrow_pool()
        print(json.dumps({
            "asked": asked,
            "backend": pa.default_memory_pool().backend_name,
            "pool_env": os.environ.get("ARROW_DEFAULT_MEMORY_POOL"),
        }))
        """
    )
    assert result["asked"] is False
    assert result["pool_env"] is None
    assert result["backend"] != "jemalloc"


@pytest.mark.parametrize("in_lambda", [True, False], ids=["in Lambda", "elsewhere"])
def test_a_cold_lambda_ingests_with_lean_jemalloc(in_lambda: bool, moto_endpoint: str) -> None:
    """In a Lambda container the handler's first invocation chooses the pool before its ingest
    imports pyarrow; elsewhere (`logsieve up` runs it next to the HTTP API) it leaves it alone.

    The child talks to the session's moto server (delta-rs writes the clean table with its own
    HTTP client, which in-process moto cannot answer); nothing leaves 127.0.0.1.
    """
    env = {"AWS_ENDPOINT_URL": moto_endpoint}
    if in_lambda:
        env["AWS_LAMBDA_FUNCTION_NAME"] = "logsieve-worker"
    result = run_fresh(
        """
        import json, os, sys
        from urllib.parse import urlsplit
        assert urlsplit(os.environ["AWS_ENDPOINT_URL"]).hostname == "127.0.0.1"
        from logsieve import aws
        from logsieve.aws.clients import Clients
        from logsieve.sim.infra import ResourceNames, drain_queue, provision
        from logsieve.sim.samples import join_lines, utc_today, web_lines

        lines = web_lines(utc_today())
        clients = Clients.create(region_name="us-east-1")
        res = provision(clients, ResourceNames(visibility_timeout=1))
        drain_queue(clients.sqs, res.queue_url)
        os.environ.update(res.environment())
        imported_before = "pyarrow" in sys.modules
        body = join_lines(lines)
        clients.s3.put_object(Bucket=res.names.input_bucket, Key="web.jsonl", Body=body)
        (message,) = drain_queue(clients.sqs, res.queue_url)
        response = aws.handler(json.loads(message["Body"]), None)
        import pyarrow as pa
        print(json.dumps({
            "imported_before": imported_before,
            "response": response,
            "backend": pa.default_memory_pool().backend_name,
            "valid": sum(line.expect == "valid" for line in lines),
            "clean_uri": res.clean_uri,
        }))
        """,
        env,  # fake AWS credentials come from conftest's environment
    )
    assert result["imported_before"] is False
    assert result["response"]["failed"] == []
    assert result["response"]["valid"] == result["valid"] > 0
    # What the child committed is in the Delta table on the moto server, read from here: a
    # read in the child would risk delta-rs's known abort at exit after pyarrow reads through it.
    clients = Clients.create(endpoint_url=moto_endpoint, region_name="us-east-1")
    stored = open_table(result["clean_uri"], clients.s3)
    assert stored is not None and stored.to_pyarrow_table().num_rows == result["valid"]
    assert (result["backend"] == "jemalloc") is (in_lambda and pyarrow_has_jemalloc())


MARKER = "--- pyarrow next ---"
IMPORTS = f"""
import os, sys
import logsieve
print({MARKER!r}, file=sys.stderr, flush=True)
import pyarrow
print(os.environ.get("MIMALLOC_PURGE_DELAY"))
"""


def purge_delays(env: dict[str, str]) -> tuple[list[int], list[int], str]:
    """mimalloc's purge delay as each allocator reports it (MIMALLOC_VERBOSE) while loading:
    (the core's, pyarrow's, MIMALLOC_PURGE_DELAY seen after the imports)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")}
    environ.update(env, MIMALLOC_VERBOSE="1")
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    core, _, arrow = done.stderr.partition(MARKER)
    delays = [
        [int(n) for n in re.findall(r"option 'purge_delay': (-?\d+)", part)]
        for part in (core, arrow)
    ]
    return delays[0], delays[1], done.stdout.strip()


def test_the_core_allocator_settings_stay_with_the_core() -> None:
    core, arrow, after = purge_delays({})
    assert core == [3000]  # what logsieve/__init__.py asks for
    assert after == "None"  # gone from the environment, so child processes do not inherit it
    assert 3000 not in arrow  # pyarrow's mimalloc, if it has one, keeps its own default


def test_mimalloc_settings_of_the_user_win() -> None:
    core, arrow, after = purge_delays({"MIMALLOC_PURGE_DELAY": "500"})
    assert core == [500]
    assert after == "500"
    assert all(delay == 500 for delay in arrow)
