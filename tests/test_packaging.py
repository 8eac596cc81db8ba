"""The package carries its own assets: built as a source distribution, installed with pip into a fresh venv in
a temporary folder outside the checkout, that venv's ``flowsink install-templates`` installs every index
template, and the Kibana, Grafana, Prometheus and nginx files are readable from the installed package.

The venv sees this machine's site-packages (``--system-site-packages``) for the dependencies and installs
flowsink alone (``--no-deps``); what proves that nothing comes from the checkout is an audit hook in the
installed flowsink's process that fails it on any file it opens under the checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowsink import assets
from flowsink.sinks.elasticsearch.index_templates import (
    TemplateSettings,
    load_template_files,
    remove_templates,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
# The checkout under test and the one the tests import flowsink from: the installed package reads neither.
FORBIDDEN = {str(REPO), str(assets.checkout_root() or REPO)}

# Runs in the venv: refuses any file opened under FORBIDDEN, then runs the flowsink command line or, for
# "assets", prints where the package is and a digest of every shipped file.
GUARDED = """
import hashlib, json, os, sys
forbidden = tuple(folder + os.sep for folder in sys.argv[1].split(os.pathsep))

def guard(event, args):
    if event == "open" and isinstance(args[0], str) and os.path.abspath(args[0]).startswith(forbidden):
        sys.stderr.write("opened from the checkout: " + args[0] + "\\n")
        os._exit(99)

sys.addaudithook(guard)
import flowsink
from flowsink import assets
if sys.argv[2] == "assets":
    digests = {}
    for folder in assets.FOLDERS:
        for path in sorted(assets.path(folder).rglob("*")):
            if path.is_file():
                relative = path.relative_to(assets.path(folder).parent).as_posix()
                digests[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    print(json.dumps({"package": flowsink.__file__, "checkout": str(assets.checkout_root()), "files": digests}))
else:
    from flowsink.cli import main
    sys.exit(main(sys.argv[2:]))
"""


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(argv)}: exit {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the checkout with flowsink installed from its source distribution; its python."""
    work = tmp_path_factory.mktemp("packaging")
    assert REPO not in work.parents
    # The source distribution is what a release ships; building from it proves MANIFEST.in carries the assets.
    # egg_info goes to the temporary folder too, so the checkout is left as it was.
    _run(
        [
            sys.executable,
            "setup.py",
            "-q",
            "egg_info",
            "--egg-base",
            str(work),
            "sdist",
            "--dist-dir",
            str(work),
        ],
        cwd=REPO,
    )
    (sdist,) = work.glob("flowsink-*.tar.gz")
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(work / "venv")], cwd=work)
    python = work / "venv" / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(sdist)], cwd=work, timeout=600)
    return python


def _guarded(python: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(
        [str(python), "-c", GUARDED, os.pathsep.join(sorted(FORBIDDEN)), *args], cwd=python.parents[2]
    )


def _repo_digests() -> dict[str, str]:
    digests = {}
    for folder in assets.FOLDERS:
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digests[path.relative_to(REPO).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def test_installed_package_ships_every_asset_file_unchanged(venv: Path) -> None:
    shipped = json.loads(_guarded(venv, "assets").stdout)
    assert Path(shipped["package"]).is_relative_to(venv.parents[1]), "flowsink imported from outside the venv"
    assert shipped["checkout"] == "None"
    expected = _repo_digests()
    assert {"kibana/flowsink.ndjson", "monitoring/grafana/dashboards/flowsink-ingest.json"} <= set(expected)
    assert shipped["files"] == expected


def test_installed_flowsink_installs_every_template(venv: Path, es, es_url: str, unique_prefix: str) -> None:
    files = load_template_files(assets.path("elasticsearch"))
    settings = TemplateSettings(name_prefix=unique_prefix)
    try:
        # the venv's own console script, as a user runs it
        done = _run(
            [
                str(venv.parent / "flowsink"),
                "install-templates",
                "--es-url",
                es_url,
                "--prefix",
                unique_prefix,
            ],
            cwd=venv.parents[2],
        )
        assert done.stdout.split("\n")[-len(files) - 1 : -1] == [
            f"{unique_prefix}-{tf.path.stem} installed" for tf in files
        ]
        for tf in files:
            name = f"{unique_prefix}-{tf.path.stem}"
            if tf.is_index_template:
                body = es.indices.get_index_template(name=name)["index_templates"][0]["index_template"]
            else:
                body = es.cluster.get_component_template(name=name)["component_templates"][0][
                    "component_template"
                ]
            assert body["_meta"]["version"] == tf.version, name
        # again, in a process that may not open a file of the checkout: every template is already there
        again = _guarded(venv, "install-templates", "--es-url", es_url, "--prefix", unique_prefix)
        assert again.stdout.split("\n")[-len(files) - 1 : -1] == [
            f"{unique_prefix}-{tf.path.stem} unchanged" for tf in files
        ]
    finally:
        remove_templates(es, settings)
