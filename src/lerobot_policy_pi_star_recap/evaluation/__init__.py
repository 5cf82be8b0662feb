"""Judging policies: checkpoints loaded with their processors, critics run over datasets, metrics, plots and success statistics."""
