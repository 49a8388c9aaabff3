"""`logsieve template` (the CloudFormation template) and `logsieve package` (the Lambda
artifact): the commands over logsieve.deploy; docs/deploy.md."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from logsieve.deploy.package import (
    ARCHES,
    DEFAULT_CARGO_TARGET_DIR,
    LAMBDA_DIRECT_UPLOAD_LIMIT,
    build_artifact,
    mib,
)
from logsieve.deploy.template import build_template, render

# --- logsieve template ---------------------------------------------------------------------


def add_template_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["json", "yaml"], default="json", help="output format")
    parser.add_argument(
        "--out", metavar="FILE", help="write the template to FILE instead of standard output"
    )


def run_template(args: argparse.Namespace) -> int:
    text = render(build_template(), args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        if not args.quiet:
            print(f"wrote {args.out} ({len(text)} bytes)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# --- logsieve package ----------------------------------------------------------------------


def add_package_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the zip")
    parser.add_argument(
        "--arch", choices=sorted(ARCHES), default="x86_64", help="Lambda architecture"
    )
    parser.add_argument("--json", action="store_true", help="print the artifact's report as JSON")
    parser.add_argument(
        "--python-version",
        default="3.12",
        metavar="X.Y",
        help="Lambda runtime's Python (default: 3.12, matching the template's PythonRuntime)",
    )
    parser.add_argument(
        "--source",
        metavar="DIR",
        help="logsieve source tree to build (default: the one this logsieve runs from)",
    )
    parser.add_argument(
        "--wheel", metavar="FILE", help="use this prebuilt logsieve wheel instead of building"
    )
    parser.add_argument(
        "--cargo-target-dir",
        metavar="DIR",
        default=str(DEFAULT_CARGO_TARGET_DIR),
        help="cargo's build directory, reused across builds (default: %(default)s)",
    )


def run_package(args: argparse.Namespace) -> int:
    artifact = build_artifact(
        out=Path(args.out),
        arch=args.arch,
        python_version=args.python_version,
        source=Path(args.source) if args.source else None,
        wheel=Path(args.wheel) if args.wheel else None,
        cargo_target_dir=Path(args.cargo_target_dir),
        log=(lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr)),
    )
    over = artifact.zipped_bytes > LAMBDA_DIRECT_UPLOAD_LIMIT
    if args.json:
        report = {
            "artifact": str(artifact.zip_path),
            "wheel": artifact.wheel.name,
            "packages": artifact.packages,
            "zipped_bytes": artifact.zipped_bytes,
            "unzipped_bytes": artifact.unzipped_bytes,
            "files": artifact.files,
            "upload_to_s3": over,
        }
        print(json.dumps(report, indent=2))
        return 0
    if args.quiet:
        return 0
    print(f"artifact: {artifact.zip_path}")
    print(f"wheel:    {artifact.wheel.name}")
    print(f"packages: {', '.join(artifact.packages)}")
    print(
        f"size:     {mib(artifact.zipped_bytes)} zipped, {mib(artifact.unzipped_bytes)} "
        f"unzipped, {artifact.files} files (Lambda limit: 250 MiB unzipped)"
    )
    if over:
        print("note:     over 50 MiB zipped: upload it to S3 (the template reads it from there)")
    return 0


__all__ = ["add_package_arguments", "add_template_arguments", "run_package", "run_template"]
