"""Synthetic data: WRAP rephrasing, Self-Instruct and preference pairs from a served model."""
