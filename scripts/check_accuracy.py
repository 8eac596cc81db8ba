#!/usr/bin/env python3
"""Compare Elasticsearch with a generator's ground-truth manifest: per exporter flows, bytes, packets and the
per-5-tuple digest, printed as a table (expected, found, difference, verdict); exits 1 on any difference.

A thin wrapper over flowsink.generate.accuracy; see docs/generators.md.
"""

import argparse
import sys

from flowsink.generate.accuracy import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
