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


@pytest.fixture(scope="module")
def model(demo_bundle):
    """The demo bundle's fp32 model, one thread (a test file that needs another builds its own)."""
    from mof.runtime import Model
    return Model.load(demo_bundle, threads=1)
