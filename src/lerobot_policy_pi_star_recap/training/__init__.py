"""What lerobot-train sees of a training run besides the loss: metrics, non-finite checks, TensorBoard."""
