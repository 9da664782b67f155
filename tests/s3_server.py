"""A real S3-compatible server on 127.0.0.1 for the remote tests: moto in its own process.

The server starts open, gets one IAM user with an access key allowed `s3:*`, then switches
moto's IAM enforcement on (POST /moto-api/reset-auth 0). From then on every request is
SigV4-checked against that key, so a wrong key or secret is refused the way AWS refuses it
(InvalidAccessKeyId / SignatureDoesNotMatch) instead of being accepted as moto does by default.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

REGION = "us-east-1"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it; a tiny race is acceptable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    """A running moto server and the one key pair it accepts."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log_path: Path
    access_key_id: str = ""
    secret_access_key: str = ""
    buckets: list[str] = field(default_factory=list)

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def object_keys(self, bucket: str, prefix: str = "") -> list[str]:
        keys: list[str] = []
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    def bucket_names(self) -> list[str]:
        return [bucket["Name"] for bucket in self.client().list_buckets().get("Buckets", [])]

    def env(self) -> dict[str, str]:
        """The environment a DVC subprocess needs to reach this server as the allowed user."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": REGION,
            "LETTERWISE_S3_ENDPOINT_URL": self.endpoint,
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _post(url: str, body: bytes) -> None:
    # text/plain: a form content type would make Flask swallow the body into request.form
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def _wait_until_up(server: S3Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"moto_server exited with {server.process.returncode}: "
                f"{server.log_path.read_text(errors='replace')[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"{server.endpoint}/moto-api/data.json", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"moto_server did not answer on {server.endpoint} in {START_TIMEOUT_S}s")


def _create_user_with_key(server: S3Server) -> None:
    """One IAM user allowed every S3 action; its key becomes the only accepted credential."""
    iam = boto3.client(
        "iam",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName="letterwise-ci")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_user_policy(
        UserName="letterwise-ci", PolicyName="s3-all", PolicyDocument=json.dumps(policy)
    )
    key = iam.create_access_key(UserName="letterwise-ci")["AccessKey"]
    server.access_key_id = key["AccessKeyId"]
    server.secret_access_key = key["SecretAccessKey"]


def start_s3_server(log_dir: Path, enforce_auth: bool = True) -> S3Server:
    """Start moto_server on a free 127.0.0.1 port; with `enforce_auth`, only its key works."""
    port = free_port()
    log_path = log_dir / f"moto-{port}.log"
    env = dict(os.environ)
    # Keep a developer's real AWS settings out of the server process.
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        env.pop(name, None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = S3Server(endpoint=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        _wait_until_up(server)
        _create_user_with_key(server)
        if enforce_auth:
            # 0 unauthenticated actions left: every request from now on is checked.
            _post(f"{server.endpoint}/moto-api/reset-auth", b"0")
    except BaseException:
        server.stop()
        raise
    return server
