"""Fixtures for the OAuth suite: a real `larder serve` and signed-in people (the owner and
`bob`). The processes and sign-in helpers are the S3 suite's (tests/s3/support.py).

Environment:
- LARDER_BIN: the binary (default: $CARGO_TARGET_DIR/debug/larder, else <repo>/target/debug/larder).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "s3"))

from support import Larder, LarderUser, stop, tail  # noqa: E402

_LOGS: dict[str, Path] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name, path in _LOGS.items():
            report.sections.append((f"{name} log (tail)", tail(path, 6000)))


@pytest.fixture(scope="session")
def larder(tmp_path_factory):
    root = tmp_path_factory.mktemp("larder")
    _LOGS["larder"] = root / "larder.log"
    node = Larder(root)
    yield node
    stop(node.proc)


@pytest.fixture(scope="session")
def owner(larder):
    return LarderUser(larder.base, larder.login_url)


@pytest.fixture(scope="session")
def bob(larder):
    return LarderUser(larder.base, larder.login_link("bob"))
