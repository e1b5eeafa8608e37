"""``python -m tuner`` runs the command-line interface (the launcher starts workers this way)."""

from tuner.cli import main

main()
