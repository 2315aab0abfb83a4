"""An S3-compatible server on loopback for the object-storage tests: moto's server mode, a real
HTTP server speaking the S3 protocol, in its own process. Each test's bucket is new; the
credentials are made up per server (moto takes any), so a test can look for them where they
must never appear."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self, log_dir: Path):
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.key_id = "AKIA" + uuid.uuid4().hex[:16].upper()
        self.secret = "secret-" + uuid.uuid4().hex
        self.log = Path(log_dir) / "moto.log"
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach the server: the usual AWS variables, nothing of ours."""
        return {"AWS_ACCESS_KEY_ID": self.key_id, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self, timeout_s: float = 60) -> "S3Server":
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"moto server did not answer in {timeout_s} s")

    def bucket(self, name: str | None = None) -> str:
        """A new bucket; returns its name."""

        name = name or f"aa-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.key_id,
                            aws_secret_access_key=self.secret, region_name="us-east-1")

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out, token = [], None
        while True:
            kw = {"Bucket": bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            page = self.client().list_objects_v2(**kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(out)
            token = page["NextContinuationToken"]

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def use_in_this_process(server: S3Server, cache: Path, monkeypatch) -> None:
    """Point this process's S3 client and mirror folder at ``server`` and ``cache``."""
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("ANIMATE_ANYONE_CACHE", str(cache))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import fsspec

    fsspec.config.conf.pop("s3", None)
    try:  # a client made before the variables were set would keep the old endpoint
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    except ImportError:
        pass
