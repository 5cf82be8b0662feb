"""RECAP datasets: their columns read, checked, turned into per-frame targets, and written."""
