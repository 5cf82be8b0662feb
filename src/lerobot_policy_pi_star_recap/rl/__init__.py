"""The RL math of RECAP on plain tensors and arrays (IQL, distributional values, returns, advantages) and the method a config trains."""
