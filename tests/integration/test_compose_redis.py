"""The compose file's Redis command, run with Debian's real redis-server: the password
from the secret file is required, and appears on no command line."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis
import yaml

from tests.servers import free_port, need_binary

ROOT = Path(__file__).resolve().parents[2]


def test_the_redis_password_comes_from_the_secret_file_and_is_on_no_command_line(tmp_path):
    need_binary("redis-server", "redis-server")
    script = yaml.safe_load((ROOT / "docker-compose.yml").read_text()
                            )["services"]["redis"]["command"][2].replace("$$", "$")
    password = "compose-redis-password-6f1e0a"
    secret = tmp_path / "redis_password"
    secret.write_text(password + "\n")
    port = free_port()
    # The container's paths and its entrypoint (which drops to the redis user) are the only
    # things replaced; the shell that builds the config runs as written.
    script = (script.replace("/run/secrets/redis_password", str(secret))
              .replace("/tmp/redis-auth.conf", str(tmp_path / "auth.conf"))
              .replace("chown redis", "true")
              .replace("docker-entrypoint.sh redis-server", "redis-server")
              + f" --port {port} --bind 127.0.0.1 --dir {tmp_path} --daemonize no")
    proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password=password.strip())
        deadline = time.monotonic() + 10
        while True:
            try:
                assert client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        try:
            redis.Redis(port=port).ping()
            raise AssertionError("Redis answered without the password")
        except redis.AuthenticationError:
            pass
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"redis-server" in cmdline, "exec replaced the shell with redis-server"
        assert password.encode() not in cmdline
        assert (tmp_path / "auth.conf").stat().st_mode & 0o077 == 0, "config file is private"
        client.close()
    finally:
        proc.terminate()
        proc.wait(10)
