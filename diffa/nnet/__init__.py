"""Neural-network modules: the LLaDA transformer, the Whisper encoder wrapper, audio adapters, LoRA."""
