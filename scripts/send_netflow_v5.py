#!/usr/bin/env python3
"""Send synthetic NetFlow v5 with a ground-truth manifest.

A thin wrapper over `flowsink generate v5` (same options); see docs/generators.md.
"""

import sys

from flowsink.generate.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("v5", __doc__.splitlines()[0]))
