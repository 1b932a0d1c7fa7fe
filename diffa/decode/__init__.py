"""Decoding test sets with a DIFFA model: settings, batching, resumable results, one-shot answers."""
