"""The Elasticsearch output, split like the work it does:

- ``settings.py``   the ``elasticsearch`` section (connection, bulk sizes, retries, dead letters, templates)
- ``client.py``     clients from the settings, one-line failure reasons, waiting for a cluster
- ``sink.py``       ``ElasticsearchSink``: bulk requests, per-item retries, hand-back, dead letters
- ``dead_letters.py``  where refused documents go
- ``index_templates.py``  the index and component templates (``flowsink install-templates``)
- ``output.py``     what the node runs: ``prepare`` (start-up check, templates) and ``build`` (a worker's sink
                    with its metrics)
"""
