#!/usr/bin/env python3
"""Replay the UDP payloads of captures (pcap/pcapng) or raw payload files to a collector, at a given rate or with
their original spacing.

A thin wrapper over flowsink.generate.replay; see docs/generators.md.
"""

import argparse
import sys

from flowsink.generate.replay import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
