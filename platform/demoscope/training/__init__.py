"""Training: opinion objectives and loops, DPO/SFT through TRL, distillation."""
