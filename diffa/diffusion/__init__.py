"""Model-agnostic masked-diffusion math: forward noising, losses and ELBOs, reverse sampling."""
