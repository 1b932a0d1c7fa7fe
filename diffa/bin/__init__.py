"""Command-line entry points called by the recipe stages (``python -m diffa.bin.NAME``)."""
