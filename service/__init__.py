"""nijifeed: a 2D-illustration-only view of an X home timeline."""

__version__ = "0.1.0"
