"""README.md is the contract: its shell blocks run as written, in order, in a fresh copy of the repository.

The default run checks that every block parses and that a block the test does
not run says why, visibly, on its first line. The slow test copies the tracked
files into a scratch folder and runs every other block there from a plain shell
(the venv's ``bin`` on PATH, none of the Makefile's exports), failing on a
non-zero exit or a Python traceback, as a newcomer following the README would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_MARKER = "# not run by the README test:"
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>\w*)\s*$")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    code: str

    @property
    def skip_reason(self) -> str | None:
        first = next((line.strip() for line in self.code.splitlines() if line.strip()), "")
        return first[len(SKIP_MARKER):].strip() if first.startswith(SKIP_MARKER) else None


def readme_blocks(text: str) -> list[Block]:
    """Fenced code blocks with their language, dedented (blocks inside list items are indented)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, start, body = len(match["indent"]), i + 1, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        blocks.append(Block(line=start, lang=match["lang"], code="\n".join(body) + "\n"))
        i += 1
    return blocks


def shell_blocks() -> list[Block]:
    return [b for b in readme_blocks((ROOT / "README.md").read_text()) if b.lang == "bash"]


def test_readme_blocks_are_found_and_parse():
    blocks = shell_blocks()
    assert len(blocks) >= 10
    for block in blocks:
        result = subprocess.run(["bash", "-n"], input=block.code, text=True, capture_output=True)
        assert result.returncode == 0, f"README.md:{block.line}: {result.stderr}"


def test_blocks_the_test_skips_say_why_and_runnable_blocks_have_no_placeholders():
    for block in shell_blocks():
        reason = block.skip_reason
        if reason is not None:
            assert len(reason) > 10, f"README.md:{block.line}: say why the block is not run"
            continue
        # "..." in a command stands for something the reader must fill in: not runnable as written.
        for offset, line in enumerate(block.code.splitlines()):
            command = line.split("#", 1)[0]
            assert "..." not in command, f"README.md:{block.line + offset + 1}: placeholder in a runnable block"


def test_the_block_parser_keeps_list_item_blocks_and_skip_markers():
    text = ("intro\n\n- item\n\n  ```bash\n  echo one \\\n      two\n  ```\n\n"
            "```bash\n# not run by the README test: needs a GPU\nx\n```\n")
    first, second = readme_blocks(text)
    assert first.code == "echo one \\\n    two\n" and first.line == 5
    assert second.skip_reason == "needs a GPU"


def _scratch_copy(dest: Path) -> None:
    """The tracked files (and untracked, not ignored ones), as a fresh clone would have them."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def _plain_shell_env(scratch: Path) -> dict[str, str]:
    """A newcomer's shell with the venv activated: none of the Makefile's or the test session's exports."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "GLOO_", "VLLM_", "HF_", "PYTEST", "DEMOSCOPE_"))}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = f"{venv_bin}:{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(Path(venv_bin).parent)
    env["HOME"] = os.environ.get("HOME", str(scratch))
    return env


@pytest.mark.slow
def test_every_readme_shell_block_runs_in_a_fresh_copy(tmp_path):
    scratch = tmp_path / "clone"
    _scratch_copy(scratch)
    (scratch / ".venv").symlink_to(Path(sys.executable).parent.parent)  # `source .venv/bin/activate` works
    env = _plain_shell_env(scratch)
    log = []
    for block in shell_blocks():
        if block.skip_reason is not None:
            continue
        started = time.monotonic()
        result = subprocess.run(["bash", "-euo", "pipefail"], input=block.code, text=True, cwd=scratch, env=env,
                                capture_output=True, timeout=900)
        output = result.stdout + result.stderr
        log.append(f"README.md:{block.line}: {time.monotonic() - started:.0f} s, exit {result.returncode}")
        assert result.returncode == 0, f"README.md:{block.line} failed (exit {result.returncode}):\n{output[-4000:]}"
        assert "Traceback (most recent call last)" not in output, (
            f"README.md:{block.line} printed a traceback:\n{output[-4000:]}")
    print("\n".join(log))
