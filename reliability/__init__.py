"""Reliability and security, measured: a corpus of bad requests, a soak, and their helpers."""
