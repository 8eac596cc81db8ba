"""flowsink: network flow collector (NetFlow v5/v9, IPFIX, sFlow v5) that indexes ECS documents into Elasticsearch.

The data path, one module per stage:

    receive.py  ->  queue/  ->  decode/  ->  normalize.py  ->  sinks/elasticsearch.py

with the HTTP API (api/), metrics (metrics.py), configuration (config.py) and the command line (cli.py) beside it.
"""

__version__ = "0.1.0"
