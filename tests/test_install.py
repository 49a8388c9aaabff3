"""The install's promises: `import logsieve` stays lean, and a command whose extra is missing
says which one to install, in one line, instead of failing with a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

#: Top-level packages of the AWS and web side that the core must not pull in.
HEAVY = {"boto3", "botocore", "s3transfer", "starlette", "uvicorn", "moto", "deltalake", "flask"}


def test_importing_logsieve_loads_no_aws_or_web_module() -> None:
    program = "import json, sys, logsieve; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, check=True
        ).stdout
    )
    assert "logsieve._core" in loaded
    assert sorted({name.split(".")[0] for name in loaded} & HEAVY) == []


def test_the_core_runs_after_a_lean_import() -> None:
    program = (
        'import sys, logsieve; batch = logsieve.process(b\'{"timestamp":0,"user_id":1,'
        '"action":"a"}\\n\'); print(batch.stats.valid, sorted(set(m.split(\'.\')[0] for m in '
        "sys.modules) & set(sys.argv[1:])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", program, *sorted(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split(maxsplit=1) == ["1", "[]\n"]


SIM_HINT = "comes with the 'sim' extra: pip install 'logsieve[sim]'"


def test_simulate_without_moto_names_the_sim_extra(
    tmp_path: Path, refused: Callable[..., str]
) -> None:
    line = refused("simulate", "--out", str(tmp_path / "clean"), without=["moto"])
    assert line.startswith("logsieve simulate: error: moto is not installed; moto's server")
    assert SIM_HINT in line
    assert "pip install -c constraints.txt '.[sim]'" in line


def test_up_without_moto_names_the_sim_extra(refused: Callable[..., str]) -> None:
    line = refused("up", "--moto-port", "0", "--port", "0", without=["moto"])
    assert line.startswith("logsieve up: error: moto is not installed")
    assert SIM_HINT in line


def test_template_yaml_without_pyyaml_names_the_deploy_extra(
    run_cli: Callable[..., subprocess.CompletedProcess[str]], refused: Callable[..., str]
) -> None:
    line = refused("template", "--format", "yaml", without=["yaml"])
    assert line.startswith("logsieve template: error: yaml is not installed")
    assert "comes with the 'deploy' extra: pip install 'logsieve[deploy]'" in line
    plain = run_cli("template", without=["yaml"])  # JSON, the default, needs no extra
    assert plain.returncode == 0 and json.loads(plain.stdout)["Resources"]


@pytest.mark.parametrize("command", ["process", "serve", "compact", "errors", "replay", "redrive"])
def test_base_commands_need_no_extra(
    command: str, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    blocked = ["moto", "yaml", "maturin", "ziglang", "cfnlint", "mangum"]
    done = run_cli(command, "--help", without=blocked)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: logsieve {command}")
