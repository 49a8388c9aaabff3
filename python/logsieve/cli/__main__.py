"""`python -m logsieve.cli`: the `logsieve` command."""

from logsieve.cli import run

run()
