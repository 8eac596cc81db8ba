import subprocess
import sys


def test_help_lists_every_subcommand():
    done = subprocess.run([sys.executable, "-m", "flowsink.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for name in ("run", "check-config", "decode", "generate", "install-templates", "queue", "stack"):
        assert name in done.stdout
