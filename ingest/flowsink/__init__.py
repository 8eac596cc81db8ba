"""flowsink: network flow collector (NetFlow v5/v9, IPFIX, sFlow v5) that indexes ECS documents into Elasticsearch.

The data path, one module per stage:

    receive.py  ->  queue/  ->  decode/  ->  normalize/ (+ native/)  ->  enrich/  ->  sinks/

driven by pipeline/, with the HTTP API (api/), metrics (metrics.py), configuration (config.py, composing each
component's own settings) and the command line (cli.py) beside it; docs/design.md has the seams.
"""

__version__ = "0.1.0"
