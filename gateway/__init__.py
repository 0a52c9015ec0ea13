"""Scout edge gateway: keeps the dealership's self-hosted assistant answering."""

__version__ = "0.1.0"
