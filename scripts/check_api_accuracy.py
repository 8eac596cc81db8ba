#!/usr/bin/env python3
"""Check the flows API end to end: send random rows through POST /flows, keep the truth, and compare every
hour's GET /flows with it in a table; exits 1 on any difference.

A thin wrapper over flowsink.generate.api_check; see docs/generators.md.
"""

import argparse
import sys

from flowsink.generate.api_check import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
