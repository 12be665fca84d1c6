"""The README's commands work as written, like doc-tests: every shell command in it that needs no
placeholder runs (in bash, from a scratch folder), every `$ command` example prints exactly the
output shown (the demo model's page too), and every command left out is left out for a stated
reason. Its links, and the docs' links, lead to files and headings that exist."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the README's commands are bash")

# What a command starts with (or contains), and why it is not run here.
LEFT_OUT = [
    (("pip install",), "installs packages: .ci/run installs the project from its own files"),
    (("python -m pytest",), "the test suite itself"),
    (("mof-serve",), "starts a server that runs until stopped: tests/serve start it on a free port"),
    (("curl ",), "needs that running server"),
    (("npm ci", "node "), "Node.js: tests/examples/test_node_example.py runs the program"),
    (("python examples/desktop_chat.py",), "opens a window: tests/examples/test_desktop_chat.py"),
    (("python examples/node/compare_speed.py", "mof-bench"),
     "times decoding at length (speed lives in benchmarks/, not in tests); tests/bench runs mof-bench briefly"),
]
PLACEHOLDERS = ("t6.mof", "path/to/", "CKPT", "BUNDLE", "my_domain.txt", "FILE")


def code_blocks(text: str):
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def shell_commands(text: str) -> list[str]:
    commands = []
    for lang, body in code_blocks(text):
        if lang != "bash":
            continue
        body = re.sub(r"\\\n\s*", " ", body)                        # continuation lines
        for line in body.splitlines():
            line = re.split(r"\s+#\s", " " + line, maxsplit=1)[0].strip()   # a trailing comment
            if line:
                commands.append(line)
    return commands


def examples(text: str) -> list[tuple[str, str]]:
    """(command, output) of the `$ command` examples in plain fenced blocks."""
    found = []
    for lang, body in code_blocks(text):
        if lang:
            continue
        for chunk in re.split(r"^\$ ", body, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            found.append((command, output.rstrip("\n") + "\n"))
    return found


def why_left_out(command: str):
    for starts, reason in LEFT_OUT:
        if any(command.startswith(s) for s in starts):
            return reason
    if any(p in command for p in PLACEHOLDERS):
        return "a placeholder for the reader's own files"
    return None


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def scratch(tmp_path):
    """A folder to run in (files the commands write land here) that sees the repository's tests/."""
    (tmp_path / "tests").symlink_to(ROOT / "tests", target_is_directory=True)
    return tmp_path


def test_the_readmes_commands_run(scratch):
    commands = shell_commands(README.read_text(encoding="utf-8"))
    runnable = [c for c in commands if why_left_out(c) is None]
    assert len(commands) >= 15 and len(runnable) >= 6, (commands, runnable)     # the extractor finds them
    assert any(c.startswith("mof-eval ") for c in runnable) and "mof-run" in runnable
    for command in runnable:
        proc = run(command, scratch)
        assert proc.returncode == 0, (command, proc.stderr)
        assert "Traceback" not in proc.stderr, (command, proc.stderr)
    transcript = (scratch / "chat.jsonl").read_text(encoding="utf-8")      # --transcript chat.jsonl
    assert '"user": "你好"' in transcript


@pytest.mark.parametrize("page", [README, ROOT / "docs" / "demo-model.md"], ids=lambda p: p.name)
def test_the_examples_print_what_they_show(page, scratch):
    shown = examples(page.read_text(encoding="utf-8"))
    assert shown, page
    for command, output in shown:
        assert why_left_out(command) is None, command
        proc = run(command, scratch)
        assert proc.returncode == 0, (command, proc.stderr)
        assert proc.stdout == output, command


def test_commands_left_out_are_only_those_with_a_reason():
    """The rule is the table above: a command that runs nowhere and matches no reason would be
    an untested command; this lists what is left out so a review can see it."""
    commands = shell_commands(README.read_text(encoding="utf-8"))
    left_out = {c: why_left_out(c) for c in commands if why_left_out(c)}
    assert "mof-serve" in left_out and any(c.startswith("pip install -e ") for c in left_out)
    assert all(left_out.values())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_links_lead_somewhere(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"\w+://", target):
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        assert where.exists(), f"{page.name}: {target}"
        if anchor and where.suffix == ".md":
            assert anchor in anchors(where), f"{page.name}: {target} (no such heading)"


def test_one_version():
    """pyproject's version is mof.__version__, and the README's quick start speaks of no other."""
    import mof
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "([^"]+)"', pyproject, flags=re.M).group(1)
    assert mof.__version__ == version
