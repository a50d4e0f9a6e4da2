"""Parity: metrics, tolerance rules, the validate sweep, break finding and reports."""
