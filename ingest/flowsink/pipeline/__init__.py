"""Pipeline: one worker per queue partition reads datagrams in arrival order, decodes them, hands the
documents to the outputs (the sink seam) and acknowledges the queue once every document is safe.

- ``settings.py``  the ``pipeline`` section
- ``worker.py``    ``PipelineWorker`` (and the ack cursor); ``flowsink.processes`` composes one per partition
"""

from flowsink.pipeline.settings import PipelineSettings

__all__ = ["PipelineSettings"]
