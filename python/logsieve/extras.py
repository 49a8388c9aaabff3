"""The optional parts of the install, and the one-line refusal when a command needs a missing one.

The base install is what the core, the commands `process`, `serve`, `compact`, `errors`,
`replay` and `redrive`, and the Lambda handler use. moto's server (`simulate`, `up`) and the
deployment tooling (`package`, `template --format yaml`) are extras, so that a user of the core
does not install flask, docker or cfn-lint.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from logsieve.errors import MissingExtraError

#: extra -> what it brings, as the refusal names it.
EXTRAS: dict[str, str] = {
    "sim": "moto's server (`logsieve simulate`, `logsieve up`)",
    "deploy": "the deployment tooling (`logsieve package`, `logsieve template --format yaml`)",
}


def install_hint(extra: str) -> str:
    """The pip command that adds `extra`, from PyPI or from a checkout of the project."""
    checkout = f"pip install -c constraints.txt '.[{extra}]'"
    return f"pip install 'logsieve[{extra}]' (in a checkout: {checkout})"


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise `MissingExtraError` naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = (exc.name or module).split(".")[0]  # the package to install
        raise MissingExtraError(
            f"{missing} is not installed; {EXTRAS[extra]} comes with the '{extra}' extra: "
            + install_hint(extra)
        ) from None


__all__ = ["EXTRAS", "install_hint", "require"]
