"""Real-corpus preparation: LibriSpeech, the authors' JSON indices, MMSU, MMAU and MMAR."""
