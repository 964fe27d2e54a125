"""protos/ is a buf module that lints clean (STANDARD + COMMENTS) and breaks nothing the previous
commit's API had. The buf CLI comes from tools/package.json (npm ci); a missing tool fails here."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
BUF = TOOLS / "node_modules" / ".bin" / "buf"


@pytest.fixture(scope="module")
def buf() -> Path:
    """The pinned buf, installed by `npm ci` when missing or older than the lock file."""
    lock = TOOLS / "package-lock.json"
    if not BUF.exists() or BUF.stat().st_mtime < lock.stat().st_mtime:
        npm = shutil.which("npm")
        assert npm, "npm is needed to install the buf CLI (tools/package.json)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=TOOLS, check=True, capture_output=True, timeout=600)
    return BUF


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_buf_lint_is_clean(buf: Path):
    linted = subprocess.run([str(buf), "lint"], cwd=ROOT / "protos", capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_no_breaking_change_against_the_previous_commit(buf: Path, tmp_path: Path):
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD~1", "protos"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tmp_path, filter="data")
    checked = subprocess.run([str(buf), "breaking", "--against", str(tmp_path / "protos")],
                             cwd=ROOT / "protos", capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
