"""MMRL / MMRL++ reference harness (CoOp/Dassl protocol)."""
__version__ = "0.1.0"
