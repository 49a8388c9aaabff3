"""`logsieve package`: the Lambda artifact, checked without AWS.

The artifact is built once per run (minutes of CPU), installed into a clean virtualenv that has
only what the Lambda runtime has, and its handler processes a real S3 notification against a
moto server deployed from the template (`test_template.py` holds the stack's helpers).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from logsieve.cli import main
from logsieve.deploy import package as deploy
from logsieve.deploy.template import (
    build_template,
)
from test_template import (
    REGION,
    deploy_stack,
    http_api_event,
    make_log,
    response_json,
    table_rows,
)

# --- `logsieve package` -----------------------------------------------------------------------


def test_arm64_without_its_rust_target_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if deploy.rust_target_installed("aarch64-unknown-linux-gnu"):
        pytest.skip("this machine has the aarch64 Rust target; nothing is missing")
    assert main(["package", "--arch", "arm64", "--out", str(tmp_path / "dist")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("logsieve package: error: ")
    assert "aarch64-unknown-linux-gnu" in err and "rustup target add" in err
    assert not (tmp_path / "dist").exists()


def test_package_refuses_a_wheel_of_the_wrong_architecture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheel = tmp_path / "logsieve-0.1.0-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    wheel.write_bytes(b"")
    args = ["package", "--arch", "arm64", "--wheel", str(wheel), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "not a Linux aarch64 wheel" in capsys.readouterr().err
    assert main(["package", "--wheel", str(tmp_path / "nope.whl"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not a zip archive\n", b"PK\x03\x04 truncated zip header"],
    ids=["empty", "text", "broken-zip"],
)
def test_package_refuses_a_wheel_that_is_not_a_zip_in_one_line(
    tmp_path: Path, content: bytes, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    wheel = tmp_path / "logsieve-0.1.0-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    wheel.write_bytes(content)
    run = run_cli("package", "--wheel", str(wheel), "--out", str(tmp_path / "dist"))
    assert run.returncode == 2, run.stderr
    assert (
        run.stderr == f"logsieve package: error: wheel {wheel} is not a wheel: not a zip archive\n"
    )
    assert run.stdout == ""


def test_package_refuses_a_damaged_wheel_in_one_line(
    tmp_path: Path, refused: Callable[..., str]
) -> None:
    """A zip whose METADATA cannot be read: a damaged download, say."""
    wheel = tmp_path / "logsieve-0.1.0-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("logsieve-0.1.0.dist-info/METADATA", "Requires-Dist: pyarrow\n" * 500)
    data = bytearray(wheel.read_bytes())
    start = data.index(b"METADATA") + len(b"METADATA")
    data[start : start + 40] = b"\xff" * 40  # the deflated body, not the directory at the end
    wheel.write_bytes(bytes(data))
    line = refused("package", "--wheel", str(wheel), "--out", str(tmp_path / "dist"))
    assert line.startswith(f"logsieve package: error: wheel {wheel} is damaged: ")


def test_steps_stream_their_output_and_say_how_long_they_took() -> None:
    """`package` runs maturin and pip for minutes: their lines are shown as they come."""
    logged: list[str] = []
    script = "import sys; print('one'); print('two', file=sys.stderr, flush=True); sys.exit(3)"
    returncode, tail = deploy.run_logged([sys.executable, "-c", script], "step", logged.append)
    assert returncode == 3
    assert tail == ["one", "two"]
    assert logged[:2] == ["  step: one", "  step: two"]
    assert logged[2].startswith("  step: failed (exit 3) in ") and logged[2].endswith(" s")


@dataclass(frozen=True)
class Built:
    artifact: deploy.Artifact
    interpreter: str  # the Python the clean "Lambda" virtualenv is made from
    progress: list[str]  # what `build_artifact` logged while it worked


def lambda_interpreter() -> tuple[str, str]:
    """(interpreter, X.Y) for the clean virtualenv: this one, or LOGSIEVE_TEST_LAMBDA_PYTHON
    (e.g. a python3.12 to match the template's default runtime)."""
    interpreter = os.environ.get("LOGSIEVE_TEST_LAMBDA_PYTHON") or sys.executable
    probe = subprocess.run(
        [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return interpreter, probe.stdout.strip()


@pytest.fixture(scope="session")
def lambda_artifact(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The real artifact, built once per test run for the clean virtualenv's Python version.

    The Rust build reuses cargo's target directory across runs, so only a changed crate costs
    minutes. LOGSIEVE_TEST_WHEEL may name a wheel built earlier (e.g. by CI) to skip the build.
    """
    interpreter, version = lambda_interpreter()
    out = tmp_path_factory.mktemp("lambda-artifact")
    wheel = os.environ.get("LOGSIEVE_TEST_WHEEL")
    if not wheel:
        missing = deploy.missing_build_tools("x86_64")
        if missing:
            pytest.skip("cannot build the Lambda wheel here: missing " + "; ".join(missing))
    progress: list[str] = []
    artifact = deploy.build_artifact(
        out=out,
        arch="x86_64",
        python_version=version,
        wheel=Path(wheel) if wheel else None,
        log=progress.append,
    )
    return Built(artifact, interpreter, progress)


def test_trim_drops_what_lambda_never_loads_and_keeps_the_build_config(tmp_path: Path) -> None:
    files = {
        "pyarrow/include/arrow/util/config.h": b"#define ARROW_JEMALLOC\n",
        "pyarrow/include/arrow/api.h": b"",
        "pyarrow/lib.pyx": b"",
        "pyarrow/lib.so": b"\x7fELF",
        "pyarrow/tests/test_x.py": b"",
        "pyarrow/__pycache__/lib.cpython-312.pyc": b"",
        "orjson/__pycache__/x.pyc": b"",
        "starlette/src/kept.py": b"",
        "bin/logsieve": b"#!/usr/bin/python",
        "pyarrow/libarrow_python.so": b"\x7fELF",
        "pyarrow/libarrow_python.so.2600": b"\x7fELF",
        "pyarrow/libarrow_python.so.2600.1.0": b"\x7fELF",
        "pyarrow/_gcsfs.cpython-312-x86_64-linux-gnu.so": b"\x7fELF",
        "pyarrow/libarrow_flight.so.2600": b"\x7fELF",
        "zstandard/_cffi.cpython-312-x86_64-linux-gnu.so": b"\x7fELF",
        "zstandard/backend_c.cpython-312-x86_64-linux-gnu.so": b"\x7fELF",
        "swagger_ui_bundle/vendor/swagger-ui-4.15.5/swagger-ui-bundle.js": b"js",
        "swagger_ui_bundle/vendor/swagger-ui-4.15.5/swagger-ui-bundle.js.map": b"map",
        "swagger_ui_bundle/vendor/swagger-ui-4.15.5/index.html": b"<html>",
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)

    deploy.trim(tmp_path)

    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == [
        "pyarrow/include/arrow/util/config.h",
        "pyarrow/lib.so",
        "pyarrow/libarrow_python.so.2600",  # the name the loader asks for
        "starlette/src/kept.py",
        "swagger_ui_bundle/vendor/swagger-ui-4.15.5/swagger-ui-bundle.js",  # /docs loads it
        "zstandard/backend_c.cpython-312-x86_64-linux-gnu.so",
    ]
    assert (tmp_path / deploy.TRIM_KEEP[0]).read_bytes() == files[deploy.TRIM_KEEP[0]]


@pytest.mark.slow
def test_artifact_contents(lambda_artifact: Built) -> None:
    artifact = lambda_artifact.artifact
    assert artifact.zip_path.is_file() and artifact.zipped_bytes == artifact.zip_path.stat().st_size
    assert artifact.unzipped_bytes < deploy.LAMBDA_UNZIPPED_LIMIT
    assert "manylinux" in artifact.wheel.name and artifact.wheel.name.endswith("_x86_64.whl")
    with zipfile.ZipFile(artifact.zip_path) as archive:
        names = archive.namelist()
        top = {n.split("/")[0] for n in names}
        assert sum(i.file_size for i in archive.infolist()) == artifact.unzipped_bytes
    assert {"logsieve", "pyarrow", "orjson", "starlette", "mangum", "zstandard"} <= top
    assert any(n.startswith("logsieve/_core") and n.endswith(".so") for n in names)
    # What the Lambda runtime has, or does not need, is left out.
    assert not top & {"boto3", "botocore", "moto", "uvicorn"}
    assert not any("__pycache__" in n for n in names)
    # Of pyarrow's headers only its build configuration stays (it tells whether jemalloc is in).
    assert [n for n in names if n.startswith("pyarrow/include/")] == list(deploy.TRIM_KEEP)
    names_only = {p.split("==")[0].lower() for p in artifact.packages}
    assert "logsieve" in names_only and "moto" not in names_only
    # Minutes of maturin and pip were shown as they went, each step with its time.
    progress = lambda_artifact.progress
    assert sum(line.startswith("  pip: ") for line in progress) > 2
    assert sum(line.startswith("  pip: done in ") for line in progress) == 2
    if not os.environ.get("LOGSIEVE_TEST_WHEEL"):
        assert any(line.startswith("  maturin: ") and "Compiling" in line for line in progress) or (
            any("Finished" in line for line in progress)
        )
        assert sum(line.startswith("  maturin: done in ") for line in progress) == 1


@pytest.fixture(scope="module")
def lambda_python(lambda_artifact: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean virtualenv with only what the Lambda runtime has besides our zip: boto3."""
    root = tmp_path_factory.mktemp("lambda-venv")
    subprocess.run([lambda_artifact.interpreter, "-m", "venv", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "boto3"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot install boto3 into a clean virtualenv: {result.stderr.strip()[-300:]}")
    return python


RUN_IN_LAMBDA = r"""
import json, sys
import logsieve, logsieve.aws.pipeline, logsieve.aws.lambda_api
event = json.load(open(sys.argv[1]))
worker = logsieve.aws.handler(event["worker"], None)
import pyarrow
pool = pyarrow.default_memory_pool().backend_name
api = [logsieve.aws.lambda_api.handler(e, None) for e in event["api"]]
print(json.dumps({"logsieve": logsieve.__file__, "worker": worker, "api": api, "pool": pool}))
"""


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS poller builds from received messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"]
                },
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def receive_all(sqs: Any, url: str, want: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for _ in range(20):
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
        ).get("Messages", [])
        messages += got
        if len(messages) >= want:
            break
    return messages


@pytest.mark.slow
def test_packaged_handler_processes_an_event_in_a_clean_virtualenv(
    lambda_artifact: Built, lambda_python: Path, tmp_path: Path, fresh_moto: str
) -> None:
    """Stack from the template on a moto server; the zip's handler, with the stack's settings."""
    task = tmp_path / "task"  # what Lambda unpacks to /var/task
    with zipfile.ZipFile(lambda_artifact.artifact.zip_path) as archive:
        archive.extractall(task)
    endpoint = fresh_moto
    session = boto3.session.Session(region_name=REGION)

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint)

    out = deploy_stack(client, lambda_artifact.artifact.zip_path.read_bytes())
    s3, sqs, sns, lam = client("s3"), client("sqs"), client("sns"), client("lambda")
    queue_arn = sqs.get_queue_attributes(QueueUrl=out["WorkQueueUrl"], AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    # moto's CloudFormation skips bucket notifications: apply the template's by hand.
    (config,) = build_template()["Resources"]["InputBucket"]["Properties"][
        "NotificationConfiguration"
    ]["QueueConfigurations"]
    s3.put_bucket_notification_configuration(
        Bucket=out["InputBucketName"],
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": [config["Event"]]}]
        },
    )
    inbox = sqs.create_queue(QueueName="alert-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=out["AlertTopicArn"], Protocol="sqs", Endpoint=inbox_arn)

    log = make_log(120)
    key = "incoming/app server+1.jsonl"
    s3.put_object(Bucket=out["InputBucketName"], Key=key, Body=log.data)
    messages = [
        m for m in receive_all(sqs, out["WorkQueueUrl"], 2) if "s3:TestEvent" not in m["Body"]
    ]
    assert len(messages) == 1

    env_vars = lam.get_function_configuration(FunctionName=out["WorkerFunctionName"])[
        "Environment"
    ]["Variables"]
    api_env = lam.get_function_configuration(FunctionName="logsieve-api")["Environment"][
        "Variables"
    ]
    assert api_env["LOGSIEVE_CLEAN_URI"] == env_vars["LOGSIEVE_CLEAN_URI"]
    days = sorted(log.logins)
    event = {
        "worker": sqs_event(messages, queue_arn),
        "api": [http_api_event("/logins_today", f"date={d}") for d in days],
    }
    (tmp_path / "event.json").write_text(json.dumps(event))
    (tmp_path / "run.py").write_text(RUN_IN_LAMBDA)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(task),  # Lambda puts /var/task first on sys.path
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_NAME": out["WorkerFunctionName"],  # set by Lambda
        **{k: str(v) for k, v in env_vars.items()},
    }
    run = subprocess.run(
        [str(lambda_python), str(tmp_path / "run.py"), str(tmp_path / "event.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["logsieve"].startswith(str(task)), "ran the packaged code, not the tree"
    assert result["worker"] == {"batchItemFailures": []}
    assert result["pool"] == "jemalloc"  # chosen on the cold start (logsieve.memory)

    # The rows are in the table the log describes (live files only), per UTC date.
    assert table_rows(env_vars["LOGSIEVE_CLEAN_URI"], s3) == log.rows
    error_bucket, _, error_prefix = env_vars["LOGSIEVE_ERROR_URI"][len("s3://") :].partition("/")
    codes: Counter[str] = Counter()
    listing = s3.list_objects_v2(Bucket=error_bucket, Prefix=error_prefix + "/date=")
    for obj in listing.get("Contents", []):
        for line in s3.get_object(Bucket=error_bucket, Key=obj["Key"])["Body"].read().splitlines():
            record = json.loads(line)
            assert record["source"] == f"s3://{out['InputBucketName']}/{key}"
            codes[record["error"]] += 1
    assert codes == log.invalid

    # A quarter of the lines are invalid, above the stack's 5% threshold: one alert.
    alerts = receive_all(sqs, inbox, 1)
    assert len(alerts) == 1 and key in json.loads(alerts[0]["Body"])["Message"]

    for day, response in zip(days, result["api"]):
        assert response["statusCode"] == 200, response
        assert response_json(response)["logins_today"] == log.logins[day]


@pytest.mark.skipif(not (shutil.which("cc") and shutil.which("strip")), reason="needs cc and strip")
def test_stripping_debug_symbols_keeps_a_library_loadable(tmp_path: Path) -> None:
    import ctypes

    source = tmp_path / "answer.c"
    source.write_text("int answer(void) { return 42; }\n")
    library = tmp_path / "pkg" / "libanswer.so"
    library.parent.mkdir()
    subprocess.run(["cc", "-g", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    (tmp_path / "pkg" / "fake.so").write_bytes(b"\x7fELF not really")  # left as it is
    before = library.stat().st_size

    assert deploy.strip_debug_symbols(tmp_path) == 1

    assert library.stat().st_size < before
    assert ctypes.CDLL(str(library)).answer() == 42
    assert (tmp_path / "pkg" / "fake.so").read_bytes() == b"\x7fELF not really"
