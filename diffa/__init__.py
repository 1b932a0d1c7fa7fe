"""diffa: recipes and modules for diffusion audio-language models (DIFFA, DIFFA-2)."""
