"""Scoring: text normalisation, WER/CER with alignments, benchmark answer rules, result reports."""
