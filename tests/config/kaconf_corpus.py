"""Where the shared keepalived.conf corpus lives (``../shared/corpus/keepalived``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "keepalived"


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "MANIFEST.tsv")


def require_corpus() -> Path:
    """The corpus dir; on CI its absence is a failure, elsewhere a skip."""
    if not CORPUS.is_dir():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"keepalived corpus missing at {CORPUS} (CI=true)")
        pytest.skip(f"keepalived corpus not found at {CORPUS}")
    return CORPUS
