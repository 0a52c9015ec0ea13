"""The llama.cpp replica's command line, read by llama-cpp-python's own argument parser: a
key that starts with "-" (secrets.token_urlsafe gives one in 64) is still the key."""

from __future__ import annotations

import argparse
import os

import pytest

from onprem import llamacpp


def server_parser() -> argparse.ArgumentParser:
    try:
        from llama_cpp.server.cli import add_args_from_model
        from llama_cpp.server.settings import ModelSettings, ServerSettings
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"llama-cpp-python[server] is not installed: {exc}")
        pytest.skip(f"llama-cpp-python[server] is not installed: {exc}")
    parser = argparse.ArgumentParser()
    add_args_from_model(parser, ModelSettings)
    add_args_from_model(parser, ServerSettings)
    return parser


@pytest.mark.parametrize("key", ["-Zq3kP0_xY", "--looks-like-an-option", "plain_key-1"])
def test_any_key_reaches_the_server_as_its_api_key(key):
    argv = llamacpp.command(8000, key, "llama-3.1-70b-instruct")
    args = server_parser().parse_args(argv[argv.index("llama_cpp.server") + 1:])
    assert args.api_key == key
    assert args.port == 8000 and args.model_alias == "llama-3.1-70b-instruct"


def test_no_key_no_flag():
    assert not any(a.startswith("--api_key") for a in llamacpp.command(8000, None, "m"))


def test_the_replica_keeps_only_the_logits_it_samples_from():
    """Each prompt-cache entry copies the logits array, so a replica that kept every prompt
    token's logits copied hundreds of MB on every restored turn."""
    argv = llamacpp.command(8000, None, "m")
    args = server_parser().parse_args(argv[argv.index("llama_cpp.server") + 1:])
    assert args.logits_all is False
    assert args.n_batch <= 64
