"""``python -m vitabench`` runs the CLI."""

from vitabench.cli import main

main()
