#!/usr/bin/env python3
"""Send synthetic sFlow v5 flow samples (raw packet headers) and counter samples with a ground-truth manifest.

A thin wrapper over `flowsink generate sflow` (same options); see docs/generators.md.
"""

import sys

from flowsink.generate.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("sflow", __doc__.splitlines()[0]))
