"""Kaldi data directories, task manifests, audio loading and Whisper log-mel features."""
