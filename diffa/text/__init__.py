"""Tokenizers (LLaDA fast tokenizer, SentencePiece) and the chat template of the prompts."""
