"""Shared by the test modules (no tests here): ``node`` runs an ingest node and scrapes its metrics, ``api`` runs
a flows API server; both as real subprocesses on free ports."""
