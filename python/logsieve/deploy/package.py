"""`logsieve template` and `logsieve package`: the stack and the code for running on real AWS.

`template` prints the CloudFormation document from `logsieve.deploy.template`. `package` builds what
that stack's two functions run: a manylinux wheel of logsieve (maturin, cross-linked with zig so
that it runs on Lambda's older glibc) plus the dependencies the Lambda Python runtime lacks, in one
zip. The wheel is built in a copy of the source tree so a working tree that others are using is
never touched, and cargo's output goes to a separate target directory that later builds reuse."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logsieve.errors import ConfigError

ARCHES = {"x86_64": "x86_64-unknown-linux-gnu", "arm64": "aarch64-unknown-linux-gnu"}
PIP_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}
# Provided by the Lambda Python runtime, or not needed there: moto and uvicorn run the pipeline
# and API locally (on AWS the real services and API Gateway + mangum take their place), rich
# only draws the local CLI's progress bars.
NOT_PACKAGED = {"boto3", "botocore", "s3transfer", "jmespath", "moto", "uvicorn", "rich"}
LAMBDA_EXTRA = "lambda"
LAMBDA_UNZIPPED_LIMIT = 262_144_000  # 250 MB: Lambda refuses a bigger unpacked function.
LAMBDA_DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024  # above this the zip must go through S3.
# Files the functions never load: headers, Cython sources, test suites, bytecode caches.
TRIM_DIRS = {"__pycache__", "tests", "include", "src"}
TRIM_SUFFIXES = (".pyc", ".pyx", ".pxd", ".pxi", ".h", ".hpp", ".cc", ".cpp")
TRIM_ROOTS = ("pyarrow",)  # only trim dirs inside these packages: others may need `src`/`tests`
# Kept although trimmed above: the handler reads it to learn whether pyarrow has jemalloc
# (logsieve.memory), 2 kB.
TRIM_KEEP = ("pyarrow/include/arrow/util/config.h",)
# Files of the packaged libraries that no function loads. delta-rs (about 128 MiB) made the
# artifact 279 MiB; these bring it back under Lambda's 250 MiB:
# - pyarrow's optional modules: Flight (RPC), the GCS/Azure/HDFS filesystems, ORC, encryption,
#   its C++ tests; the Python modules go too, so importing one fails plainly, not half-way.
#   S3 stays (the API reads data files with it), and so do Substrait, Acero and Dataset:
#   libarrow_python links them.
# - the extra names of libarrow_python: a wheel holds its symlinks as copies; the loader asks for
#   libarrow_python.so.2600 only.
# - zstandard's cffi backend (its C backend is the one imported);
# - of Swagger UI, all but the files `/docs` loads (`logsieve.api.app.DOCS_ASSETS`).
TRIM_GLOBS = {
    "pyarrow": (
        "_flight*",
        "flight.py",
        "libarrow_flight.so*",
        "libarrow_python_flight.so*",
        "_gcsfs*",
        "_azurefs*",
        "_hdfs*",
        "_orc*",
        "orc.py",
        "_dataset_orc*",
        "*parquet_encryption*",
        "_pyarrow_cpp_tests*",
        "libarrow_python.so",
        "libarrow_python.so.*.*",
    ),
    "zstandard": ("_cffi*", "backend_cffi.py"),
}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: same inputs, same zip bytes
#: cargo's build directory, reused across builds.
DEFAULT_CARGO_TARGET_DIR = Path(tempfile.gettempdir()) / "logsieve-deploy-target"


@dataclass(frozen=True)
class Artifact:
    """What `package` produced: the zip, the wheel inside it and their sizes."""

    zip_path: Path
    wheel: Path
    zipped_bytes: int
    unzipped_bytes: int
    files: int
    packages: list[str]


def build_artifact(
    *,
    out: Path,
    arch: str = "x86_64",
    python_version: str = "3.12",
    source: Path | None = None,
    wheel: Path | None = None,
    cargo_target_dir: Path | None = None,
    log: Callable[[str], None] = lambda text: None,
) -> Artifact:
    """Wheel (built or given) + its Lambda-side dependencies, trimmed and zipped into `out`."""
    if arch not in ARCHES:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHES)}")
    if not re.fullmatch(r"3\.\d{1,2}", python_version):
        raise ConfigError(f"--python-version must look like 3.12, not {python_version!r}")
    if wheel is None:
        tree = find_source_tree(source)
        check_build_tools(arch)
        out.mkdir(parents=True, exist_ok=True)
        target_dir = cargo_target_dir or DEFAULT_CARGO_TARGET_DIR
        log(f"building the logsieve wheel for {ARCHES[arch]} (release, manylinux2014, zig)...")
        wheel = build_wheel(tree, arch, target_dir, out, log=log)
    elif not wheel.is_file():
        raise ConfigError(f"wheel {wheel} does not exist")
    check_wheel_arch(wheel, arch)
    check_wheel_archive(wheel)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="logsieve-package-") as staging_name:
        staging = Path(staging_name)
        requirements = lambda_requirements(wheel)
        log(f"installing for Lambda ({arch}, Python {python_version}): {' '.join(requirements)}")
        install_for_lambda(staging, wheel, requirements, arch, python_version, log=log)
        trim(staging)
        stripped = strip_debug_symbols(staging)
        if stripped:
            log(f"stripped debug symbols from {stripped} shared libraries")
        zip_path = out / f"logsieve-lambda-{arch}.zip"
        files, unzipped = write_zip(staging, zip_path)
        packages = installed_distributions(staging)
    if unzipped > LAMBDA_UNZIPPED_LIMIT:
        raise ConfigError(
            f"{zip_path} unpacks to {mib(unzipped)}, over Lambda's 250 MiB limit for a function"
        )
    return Artifact(zip_path, wheel, zip_path.stat().st_size, unzipped, files, packages)


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


# --- building the wheel -------------------------------------------------------------------------


def find_source_tree(source: Path | None) -> Path:
    """The directory with Cargo.toml + pyproject.toml: given, or the tree this module lives in."""
    candidates = [source] if source else [Path(__file__).resolve().parents[3], Path.cwd()]
    for candidate in candidates:
        if (candidate / "Cargo.toml").is_file() and (candidate / "pyproject.toml").is_file():
            return candidate.resolve()
    where = source or "the installed package's tree or the current directory"
    raise ConfigError(
        f"no logsieve source tree (Cargo.toml + pyproject.toml) in {where}; pass --source DIR "
        "or a prebuilt --wheel FILE"
    )


def missing_build_tools(arch: str) -> list[str]:
    """Everything `build_wheel` needs for `arch` that this machine lacks, as readable names."""
    missing = []
    for tool in ("cargo", "rustc"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (the Rust toolchain, https://rustup.rs)")
    if shutil.which("rustc") is not None and not rust_target_installed(ARCHES[arch]):
        missing.append(
            f"the Rust standard library for {ARCHES[arch]} (`rustup target add {ARCHES[arch]}`)"
        )
    from logsieve.extras import install_hint

    for module in ("maturin", "ziglang"):
        if not _python_module_runs(module):
            missing.append(f"{module} (the 'deploy' extra: {install_hint('deploy')})")
    return missing


def check_build_tools(arch: str) -> None:
    missing = missing_build_tools(arch)
    if missing:
        raise ConfigError(
            f"cannot build the {arch} wheel: missing "
            + "; ".join(missing)
            + ". Alternatively pass a prebuilt --wheel FILE"
        )


def rust_target_installed(triple: str) -> bool:
    """True when rustc has the standard library for `triple` (rustup installs it per target)."""
    result = subprocess.run(
        ["rustc", "--print", "target-libdir", "--target", triple],
        capture_output=True,
        text=True,
        check=False,
    )
    libdir = Path(result.stdout.strip()) if result.returncode == 0 else None
    return bool(libdir and libdir.is_dir() and any(libdir.glob("libstd-*")))


def _python_module_runs(module: str) -> bool:
    args = [sys.executable, "-m", module, "version" if module == "ziglang" else "--version"]
    try:
        return subprocess.run(args, capture_output=True, check=False, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def source_files(tree: Path) -> list[str]:
    """The tree's files as git sees them (tracked + untracked, minus ignored), else a walk."""
    result = subprocess.run(
        ["git", "-C", str(tree), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if result.returncode == 0:
        names = [n for n in result.stdout.decode().split("\0") if n]
        return sorted(n for n in set(names) if (tree / n).is_file())
    skip = {".git", "target", ".venv", "__pycache__", "dist", "data", ".pytest_cache"}
    return sorted(
        str(path.relative_to(tree))
        for path in tree.rglob("*")
        if path.is_file() and not skip.intersection(path.relative_to(tree).parts)
    )


def sync_tree(tree: Path, destination: Path) -> None:
    """Make `destination` a copy of `tree`'s source files, touching only what changed.

    The copy lives at a stable path and keeps modification times, so cargo's fingerprints see an
    unchanged crate as fresh and a repeated build only repackages the wheel.
    """
    wanted = source_files(tree)
    keep = set(wanted)
    if destination.is_dir():
        for path in sorted(destination.rglob("*"), reverse=True):
            relative = path.relative_to(destination).as_posix()
            if path.is_file() and relative not in keep:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    for name in wanted:
        source, target = tree / name, destination / name
        if target.is_file():
            before, after = source.stat(), target.stat()
            if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns):
                continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def build_wheel(
    tree: Path,
    arch: str,
    cargo_target_dir: Path,
    out: Path,
    log: Callable[[str], None] = lambda text: None,
) -> Path:
    """`maturin build --release --zig --compatibility manylinux2014` in a copy of `tree`.

    maturin's and cargo's lines go to `log` as they come: a first build takes minutes.
    """
    copy = cargo_target_dir / "logsieve-source"
    sync_tree(tree, copy)
    with tempfile.TemporaryDirectory(prefix="logsieve-build-") as build_name:
        wheel_dir = Path(build_name) / "wheels"
        command = [
            sys.executable,
            "-m",
            "maturin",
            "build",
            "--release",
            "--zig",
            "--compatibility",
            "manylinux2014",
            "--target",
            ARCHES[arch],
            "--out",
            str(wheel_dir),
        ]
        env = {**os.environ, "CARGO_TARGET_DIR": str(cargo_target_dir)}
        # maturin finds zig through `python -m ziglang` when this interpreter's bin is on PATH.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        returncode, tail = run_logged(
            command,
            "maturin",
            log,
            cwd=copy,
            env=env,
            preexec_fn=_lower_priority if hasattr(os, "nice") else None,
        )
        if returncode != 0:
            raise ConfigError(f"maturin build failed (exit {returncode}):\n" + "\n".join(tail))
        wheels = sorted(wheel_dir.glob("logsieve-*.whl"))
        if len(wheels) != 1:
            raise ConfigError(f"maturin built {len(wheels)} wheels, expected one: {wheels}")
        final = out / wheels[0].name
        shutil.copy2(wheels[0], final)
    return final


def run_logged(
    command: Sequence[str], name: str, log: Callable[[str], None], **popen: Any
) -> tuple[int, list[str]]:
    """Run `command`, passing each line it prints to `log` (as `  name: line`) as it comes.

    Returns the exit status and the last lines, for an error message; ends with a line saying
    how long the step took, so that a slow step is seen to be working rather than stuck.
    """
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=15)
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        **popen,
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if line := line.rstrip():
                tail.append(line)
                log(f"  {name}: {line}")
    status = "done" if child.returncode == 0 else f"failed (exit {child.returncode})"
    log(f"  {name}: {status} in {time.monotonic() - started:.1f} s")
    return child.returncode, list(tail)


def _lower_priority() -> None:
    """A release build takes minutes of CPU: let interactive work go first."""
    os.nice(10)


def check_wheel_archive(wheel: Path) -> None:
    """A wheel is a zip archive: refuse anything else before `zipfile` fails with a traceback."""
    if not zipfile.is_zipfile(wheel):
        raise ConfigError(f"wheel {wheel} is not a wheel: not a zip archive")


def check_wheel_arch(wheel: Path, arch: str) -> None:
    """A wheel for the other architecture would only fail on Lambda, at import: fail here."""
    platforms = wheel.name.removesuffix(".whl").rsplit("-", 1)[-1].split(".")
    if not all("linux" in tag and tag.endswith(f"_{PIP_ARCH[arch]}") for tag in platforms):
        raise ConfigError(f"{wheel.name} is not a Linux {PIP_ARCH[arch]} wheel (--arch {arch})")


# --- dependencies and the zip -------------------------------------------------------------------


def wheel_requirements(wheel: Path) -> list[tuple[str, str]]:
    """(requirement, marker) pairs from the wheel's METADATA `Requires-Dist` lines."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
            if not names:
                raise ConfigError(f"{wheel} has no METADATA: not a wheel")
            metadata = archive.read(names[0]).decode("utf-8")
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError) as exc:
        raise ConfigError(f"wheel {wheel} is damaged: {exc}") from exc
    pairs = []
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:"):
            requirement, _, marker = line[len("Requires-Dist:") :].partition(";")
            pairs.append((requirement.strip(), marker.strip()))
    return pairs


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    return re.sub(r"[-_.]+", "-", match.group(0)).lower() if match else requirement


def lambda_requirements(wheel: Path) -> list[str]:
    """Runtime deps + the `lambda` extra, minus what the Lambda runtime has or does not need."""
    selected = []
    for requirement, marker in wheel_requirements(wheel):
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if extra and extra.group(1) != LAMBDA_EXTRA:
            continue
        if requirement_name(requirement) in NOT_PACKAGED:
            continue
        selected.append(requirement_name(requirement) + _version_part(requirement))
    return sorted(set(selected))


def _version_part(requirement: str) -> str:
    """`pyarrow (>=14)` / `pyarrow>=14` -> `>=14`; extras are dropped deliberately."""
    spec = re.sub(r"^[A-Za-z0-9._-]+(\[[^\]]*\])?", "", requirement).strip()
    return spec.strip("()").replace(" ", "")


def manylinux_platforms(arch: str, python_version: str) -> list[str]:
    """Wheel platform tags that run on the runtime's OS, newest first.

    Lambda's Python 3.12+ runtimes run Amazon Linux 2023 (glibc 2.34), older ones Amazon Linux 2
    (glibc 2.26). pip does not widen a `--platform` to older glibc versions, so list them all.
    """
    minor = int(python_version.split(".")[1])
    glibc = 34 if minor >= 12 else 26
    machine = PIP_ARCH[arch]
    return [f"manylinux_2_{y}_{machine}" for y in range(glibc, 16, -1)] + [
        f"manylinux2014_{machine}"
    ]


def install_for_lambda(
    staging: Path,
    wheel: Path,
    requirements: Sequence[str],
    arch: str,
    python_version: str,
    log: Callable[[str], None] = lambda text: None,
) -> None:
    """pip for the Lambda's platform: binary wheels only, never this machine's own."""
    platform_args = [
        arg for name in manylinux_platforms(arch, python_version) for arg in ("--platform", name)
    ]
    common = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--progress-bar",
        "off",
        "--disable-pip-version-check",
        "--target",
        str(staging),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        *platform_args,
    ]
    _pip(common + list(requirements), log)
    # The wheel's own dependencies were chosen above: --no-deps keeps moto & co. out.
    _pip([*common, "--no-deps", str(wheel)], log)


def _pip(command: list[str], log: Callable[[str], None]) -> None:
    returncode, tail = run_logged(command, "pip", log)
    if returncode != 0:
        raise ConfigError("pip could not install the Lambda dependencies:\n" + "\n".join(tail))


def trim(staging: Path) -> None:
    """Drop what the functions never load, so the zip stays well below Lambda's limits."""
    kept = {name: (staging / name).read_bytes() for name in TRIM_KEEP if (staging / name).is_file()}
    for path in sorted(staging.rglob("*"), reverse=True):
        if not path.exists():
            continue
        relative = path.relative_to(staging).parts
        trimmed_dir = path.name in TRIM_DIRS and relative[0] in TRIM_ROOTS
        if path.is_dir() and (path.name == "__pycache__" or trimmed_dir):
            shutil.rmtree(path)
        elif path.is_file() and path.name.endswith(TRIM_SUFFIXES) and relative[0] in TRIM_ROOTS:
            path.unlink()
    for package, patterns in TRIM_GLOBS.items():
        for pattern in patterns:
            for path in (staging / package).glob(pattern):
                path.unlink()
    from logsieve.api.openapi import DOCS_ASSETS

    for path in (staging / "swagger_ui_bundle" / "vendor").glob("*/*"):
        if path.is_file() and path.name not in DOCS_ASSETS:
            path.unlink()
    bin_dir = staging / "bin"  # console scripts with this machine's interpreter path
    if bin_dir.is_dir():
        shutil.rmtree(bin_dir)
    for name, data in kept.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_bytes(data)


def strip_debug_symbols(staging: Path) -> int:
    """Strip the symbol tables some wheels ship (zstandard's 11 MiB backend holds 10 of them,
    pyarrow's libraries a fifth): the dynamic symbols the loader needs stay. Returns how many
    files got smaller; without binutils' `strip`, or for a file it cannot read (another
    architecture's), nothing changes."""
    strip = shutil.which("strip")
    if strip is None:
        return 0
    count = 0
    for path in sorted(staging.rglob("*.so*")):
        if path.is_symlink() or not path.is_file():
            continue
        before = path.stat().st_size
        result = subprocess.run(
            [strip, "--strip-unneeded", str(path)], capture_output=True, check=False
        )
        if result.returncode == 0 and path.stat().st_size < before:
            count += 1
    return count


def write_zip(staging: Path, zip_path: Path) -> tuple[int, int]:
    """A reproducible zip of `staging` (sorted names, fixed dates); returns (files, bytes)."""
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    total = 0
    tmp = zip_path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(staging).as_posix(), date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            data = path.read_bytes()
            total += len(data)
            archive.writestr(info, data)
    tmp.replace(zip_path)
    return len(files), total


def installed_distributions(staging: Path) -> list[str]:
    """`name==version` for every distribution in the staging directory, for the report."""
    found = []
    for info in staging.glob("*.dist-info"):
        match = re.fullmatch(r"(.+)-([^-]+)\.dist-info", info.name)
        if match:
            found.append(f"{match.group(1)}=={match.group(2)}")
    return sorted(found, key=str.lower)


__all__ = [
    "Artifact",
    "build_artifact",
    "mib",
    "missing_build_tools",
]
