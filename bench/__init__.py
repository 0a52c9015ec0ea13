"""Benchmarks: each scenario is `python -m bench.<name>` and writes JSON plus a Markdown table."""
