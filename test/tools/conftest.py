"""Fixtures for the tests of tools/export.py: where the shared models are, and a cached exporter."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXPORT = REPO / "tools" / "export.py"
sys.path[:0] = [str(REPO / "tools"), str(Path(__file__).resolve().parent)]


def run_export(*args):
    """Runs the CLI as users do; returns the CompletedProcess (text stdout/stderr)."""
    return subprocess.run([sys.executable, str(EXPORT), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="session")
def models() -> Path:
    shared = Path(os.environ.get("KUIPER_SHARED_DIR", REPO.parent / "shared"))
    if not (shared / "models" / "golden_public.json").is_file():
        pytest.skip(f"shared test models not found under {shared} (set KUIPER_SHARED_DIR)")
    return shared / "models"


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """exported(*args) -> path of `export.py OUT *args`, run once per argument list per session."""
    cache, root = {}, tmp_path_factory.mktemp("exports")

    def get(*args):
        key = tuple(map(str, args))
        if key not in cache:
            out = root / f"model{len(cache)}.bin"
            proc = run_export(out, "--quiet", *key)
            assert proc.returncode == 0, proc.stderr
            cache[key] = out
        return cache[key]

    return get
