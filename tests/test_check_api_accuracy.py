"""The flows API checker (scripts/check_api_accuracy.py, flowsink.generate.api_check) against a real API server
and the shared Elasticsearch: it passes on exact sums and notices rows it did not send.

The API's own exactness under concurrent clients and crashes is test_api_exact_sums.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.api import TOKEN, ApiProcess, delete_indices

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_api_accuracy.py"


@pytest.fixture
def api(tmp_path, es, es_url, unique_prefix):
    process = ApiProcess(es_url, unique_prefix, tmp_path / "queue").start()
    yield process
    process.stop()
    delete_indices(es, unique_prefix)


def run_check(api: ApiProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--url",
            api.url,
            "--token",
            TOKEN,
            "--hours",
            "3",
            "--keys",
            "40",
            "--batch",
            "500",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_rows_sent_equal_every_hours_aggregates_and_strays_are_noticed(api):
    done = run_check(api, "--rows", "6000", "--namespace", "acc")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "verdict: OK" in done.stdout and "6,000 rows in 12 POSTs" in done.stdout
    # the same namespace again: the API now also holds the first run's rows, which this run's truth lacks
    done = run_check(api, "--rows", "1000", "--namespace", "acc", "--seed", "2")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "verdict: DIFFERS in hours" in done.stdout and "expected None found" in done.stdout


def test_unreachable_api_is_an_error_not_a_difference():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--url", "http://127.0.0.1:9", "--rows", "10", "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "error" in done.stderr and "Traceback" not in done.stderr
