"""Decoded records -> Elastic Common Schema documents: ``common`` (shared helpers), ``netflow``, ``sflow``."""
