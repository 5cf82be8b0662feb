"""RECAP for stock LeRobot VLAs (pi05, pi0, SmolVLA): the advantage in the task prompt, and stock VLAs as the demo's policy."""
