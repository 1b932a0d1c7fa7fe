"""Training: SpeechBrain Brains for the DIFFA curriculum (SFT, VRPO), stages, checkpoints, schedules."""
