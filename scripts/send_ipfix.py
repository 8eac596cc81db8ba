#!/usr/bin/env python3
"""Send synthetic IPFIX (RFC 7011) with variable-length and enterprise fields and options data with a ground-truth manifest.

A thin wrapper over `flowsink generate ipfix` (same options); see docs/generators.md.
"""

import sys

from flowsink.generate.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("ipfix", __doc__.splitlines()[0]))
