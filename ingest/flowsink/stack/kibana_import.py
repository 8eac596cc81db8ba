"""Load flowsink's Kibana saved objects (``kibana/*.ndjson``) into a Kibana: data views, visualisations, dashboards.

    flowsink stack import-kibana --kibana http://127.0.0.1:5601 [--wait 300] [--user U --password P]

Waits until Kibana reports itself available, then imports every file with ``overwrite=true`` (so running it
again updates the objects in place). The Compose one-shot service ``kibana-setup`` runs it in the ingest image;
the objects are the package's own (flowsink.assets).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from flowsink import assets

HELP = "load flowsink's Kibana saved objects (data views, visualisations, dashboards) into a Kibana"
DEFAULT_DIR = assets.path("kibana")


def _request(
    url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_available(kibana: str, headers: dict[str, str], wait_s: float) -> None:
    """Block until ``GET /api/status`` says available; raise SystemExit after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, body = _request(f"{kibana}/api/status", headers=headers, timeout=10)
            if status == 200 and json.loads(body)["status"]["overall"]["level"] == "available":
                return
            last = f"HTTP {status}"
        except (OSError, ValueError, KeyError) as exc:
            last = str(exc)
        time.sleep(3)
    raise SystemExit(f"import-kibana: Kibana at {kibana} not available after {wait_s:.0f} s ({last})")


def import_file(kibana: str, path: Path, headers: dict[str, str]) -> dict:
    """POST one ndjson file to the saved objects import API; returns Kibana's answer."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: application/ndjson\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, answer = _request(
        f"{kibana}/api/saved_objects/_import?overwrite=true",
        data=body,
        headers={
            **headers,
            "kbn-xsrf": "flowsink",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
        timeout=120,
    )
    result = json.loads(answer or b"{}")
    if status != 200 or not result.get("success"):
        raise SystemExit(f"import-kibana: {path.name}: HTTP {status}: {json.dumps(result)[:2000]}")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kibana", default=os.environ.get("KIBANA_URL", "http://127.0.0.1:5601"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="folder of *.ndjson files")
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait for Kibana")
    parser.add_argument("--user", default=os.environ.get("KIBANA_USER", ""))
    parser.add_argument("--password", default=os.environ.get("KIBANA_PASSWORD", ""))


def main(args: argparse.Namespace) -> int:
    kibana = args.kibana.rstrip("/")
    headers = {}
    if args.user:
        token = base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    files = sorted(args.dir.glob("*.ndjson"))
    if not files:
        raise SystemExit(f"import-kibana: no *.ndjson under {args.dir}")
    wait_available(kibana, headers, args.wait)
    for path in files:
        result = import_file(kibana, path, headers)
        print(f"import-kibana: {path.name}: {result.get('successCount', 0)} objects imported into {kibana}")
    return 0
