"""Sells passes, takes payments through gateways, and issues tickets exactly once."""

__version__ = "0.1.0"
