"""Subcommands of `pi-star-recap` (see cli.py)."""
