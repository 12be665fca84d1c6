"""Fixtures the runtime's tests share (the repository-wide ones are in tests/conftest.py)."""

import io
import sys

import pytest


@pytest.fixture
def mof_run(capsys):
    """mof-run in this process (cheaper than a fresh one): ``mof_run(args, stdin="")`` ->
    (exit code, stdout, stderr), stdin piped from the string."""
    from mof.runtime.cli import main

    def run(args, stdin=""):
        sys_stdin, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            code = main([str(a) for a in args])
        finally:
            sys.stdin = sys_stdin
        out, err = capsys.readouterr()
        return code, out, err
    return run
