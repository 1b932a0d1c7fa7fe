"""diffa: a recipe toolkit for diffusion audio-language models (DIFFA, DIFFA-2)."""
from setuptools import find_packages, setup

setup(
    name="diffa",
    version="0.1.0",
    description="Recipes and modules for diffusion audio-language models (DIFFA, DIFFA-2)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["diffa", "diffa.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "torchaudio",
        "speechbrain>=1.0",
        "transformers>=4.45",
        "sentencepiece",
        "kaldiio",
        "pyyaml",
        "hyperpyyaml",
        "peft",
        "safetensors",
        "soundfile",
        "tqdm",
        "numpy",
    ],
    extras_require={
        "scoring": ["whisper-normalizer"],
        "plots": ["matplotlib"],
        "test": ["pytest"],
    },
)
