"""Configure letterwise's S3 DVC remote on this machine from flags or environment variables.

    LETTERWISE_S3_URL=s3://my-bucket/letterwise python scripts/configure_remote.py --check

Where things go (the rule the tests check):
- url, endpointurl, region, profile, timeouts -> .dvc/config (committed: the team shares the
  remote's location), or .dvc/config.local with `--scope local`;
- access keys -> nowhere by default: botocore reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
  AWS_SESSION_TOKEN or the profile at run time. With `--credentials local` they are copied into
  .dvc/config.local (git-ignored by DVC) and never into .dvc/config;
- "use this remote by default" -> .dvc/config.local (this machine), so a fresh clone keeps the
  committed local-directory default until someone opts in here.

It edits the config through DVC's own Config API (what `dvc remote add/modify` call), in this
process, so a secret never appears on a command line that `ps` can show.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_NAME = "s3"
DEFAULT_CONNECT_TIMEOUT_S = 10
# Env vars read, in priority order, for each setting (flags win over all of them).
ENV_URL = ("LETTERWISE_S3_URL",)
ENV_ENDPOINT = ("LETTERWISE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
ENV_REGION = ("LETTERWISE_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
ENV_PROFILE = ("LETTERWISE_S3_PROFILE", "AWS_PROFILE")
ENV_NAME = ("LETTERWISE_REMOTE_NAME",)
CREDENTIAL_ENV = {
    "access_key_id": "AWS_ACCESS_KEY_ID",
    "secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "session_token": "AWS_SESSION_TOKEN",
}

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class RemoteConfigError(ValueError):
    """Bad or missing remote settings; the message names the flag or variable to fix."""


@dataclass(frozen=True)
class S3Remote:
    name: str
    url: str
    endpoint_url: str | None
    region: str | None
    profile: str | None
    connect_timeout: int | None
    read_timeout: int | None
    jobs: int | None

    @property
    def bucket(self) -> str:
        return self.url.removeprefix("s3://").split("/", 1)[0]

    def settings(self) -> dict[str, str]:
        """The non-secret options of the remote section, as DVC stores them."""
        options = {
            "url": self.url,
            "endpointurl": self.endpoint_url,
            "region": self.region,
            "profile": self.profile,
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "jobs": self.jobs,
        }
        return {key: str(value) for key, value in options.items() if value is not None}


def _first_env(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def validate_url(url: str) -> str:
    if not url.startswith("s3://"):
        raise RemoteConfigError(
            f"remote URL {url!r} must start with s3:// (e.g. s3://my-bucket/letterwise); "
            "for an S3-compatible server keep s3:// and pass --endpoint-url"
        )
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    if not BUCKET_RE.match(bucket) or ".." in bucket:
        raise RemoteConfigError(
            f"{bucket!r} in {url!r} is not a valid bucket name "
            "(3-63 characters: lowercase letters, digits, dots, hyphens)"
        )
    return url.rstrip("/")


def validate_endpoint(endpoint: str) -> str:
    if not re.match(r"^https?://[^/\s:]+(:\d{1,5})?(/.*)?$", endpoint):
        raise RemoteConfigError(
            f"endpoint URL {endpoint!r} must look like https://host[:port] "
            "(e.g. https://s3.eu-central-003.backblazeb2.com or http://127.0.0.1:9000)"
        )
    return endpoint.rstrip("/")


def resolve_remote(args: argparse.Namespace, env: Mapping[str, str]) -> S3Remote:
    """Flags first, then environment variables; validate everything before touching config."""
    name = args.name or _first_env(env, ENV_NAME) or DEFAULT_NAME
    if not NAME_RE.match(name):
        raise RemoteConfigError(f"remote name {name!r}: use lowercase letters, digits, '-' and '_'")
    if name == "local":
        raise RemoteConfigError("'local' is the committed directory remote; pick another name")
    url = args.url or _first_env(env, ENV_URL)
    if not url:
        raise RemoteConfigError("no S3 URL: pass --url s3://BUCKET/PREFIX or set LETTERWISE_S3_URL")
    endpoint = args.endpoint_url or _first_env(env, ENV_ENDPOINT)
    region = args.region or _first_env(env, ENV_REGION)
    if region is not None and not REGION_RE.match(region):
        raise RemoteConfigError(f"region {region!r} is not a region name such as eu-west-1")
    for flag, value in (
        ("--connect-timeout", args.connect_timeout),
        ("--read-timeout", args.read_timeout),
        ("--jobs", args.jobs),
    ):
        if value is not None and value < 1:
            raise RemoteConfigError(f"{flag} must be a positive integer, got {value}")
    return S3Remote(
        name=name,
        url=validate_url(url),
        endpoint_url=validate_endpoint(endpoint) if endpoint else None,
        region=region,
        profile=args.profile or _first_env(env, ENV_PROFILE),
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        jobs=args.jobs,
    )


def resolve_credentials(mode: str, profile: str | None, env: Mapping[str, str]) -> dict[str, str]:
    """The secrets to store locally ({} when they stay in the environment); name what is missing."""
    present = {key: env[var] for key, var in CREDENTIAL_ENV.items() if env.get(var, "").strip()}
    pair = {"access_key_id", "secret_access_key"}
    if present.keys() & pair and not pair <= present.keys():
        missing = sorted(CREDENTIAL_ENV[key] for key in pair - present.keys())
        raise RemoteConfigError(
            f"half a key pair: {', '.join(missing)} is not set (AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY go together)"
        )
    if mode == "local":
        if not pair <= present.keys():
            raise RemoteConfigError(
                "--credentials local copies AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY into "
                ".dvc/config.local, but they are not set in the environment"
            )
        return present
    if not present and not profile:
        print(
            "note: no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and no profile set; DVC will use "
            "whatever else botocore finds (SSO cache, instance role). Run with --check to see.",
            file=sys.stderr,
        )
    return {}


def _dvc_config(repo: Path) -> Any:
    from dvc.config import Config

    dvc_dir = repo / ".dvc"
    if not dvc_dir.is_dir():
        raise RemoteConfigError(f"{repo} is not a DVC project (no .dvc/): pass --repo")
    return Config(dvc_dir=str(dvc_dir), validate=False)


def write_config(
    repo: Path,
    remote: S3Remote,
    credentials: Mapping[str, str],
    scope: str,
    make_default: str,
) -> None:
    """Write the remote section, the secrets (local only) and the default, each in its file."""
    config = _dvc_config(repo)
    if scope == "project":
        with config.edit("repo") as conf:
            # Replace the section whole, like `dvc remote add -f`: no stale option survives.
            conf["remote"][remote.name] = remote.settings()
    with config.edit("local") as conf:
        # The local section is rebuilt from scratch too: old keys there would silently beat
        # both the committed settings and the environment's credentials.
        local_section = remote.settings() if scope == "local" else {}
        local_section.update(credentials)
        if local_section:
            conf["remote"][remote.name] = local_section
        else:
            conf["remote"].pop(remote.name, None)
        if make_default == "local":
            conf["core"]["remote"] = remote.name
    if make_default == "project":
        with config.edit("repo") as conf:
            conf["core"]["remote"] = remote.name


def describe(repo: Path, name: str) -> str:
    """The merged remote config with secrets masked, to show what DVC will use."""
    conf = _dvc_config(repo).read()
    section = dict(conf["remote"].get(name, {}))
    for key in CREDENTIAL_ENV:
        if key in section:
            section[key] = "****"
    lines = [f"remote {name!r} (default remote: {conf['core'].get('remote', 'none')}):"]
    lines += [f"  {key} = {value}" for key, value in sorted(section.items())]
    return "\n".join(lines)


def check_remote(repo: Path, name: str) -> None:
    """Reach the bucket with the configured settings; raise RemoteConfigError saying why not."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        odb = dvc_repo.cloud.get_remote_odb(name)
        fs, path = odb.fs, odb.path
        bucket, _, prefix = path.partition("/")
        try:
            # A GET (unlike HEAD) carries the error code in its body: InvalidAccessKeyId,
            # SignatureDoesNotMatch, AccessDenied or NoSuchBucket, so the reason is exact.
            fs.fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except PermissionError as error:
            raise RemoteConfigError(
                f"the S3 server refused the credentials for bucket {bucket!r} ({error}); "
                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN or the "
                "profile, and that the key may read and write this bucket"
            ) from None
        except FileNotFoundError:
            raise RemoteConfigError(
                f"bucket {bucket!r} does not exist on this endpoint; create it first "
                f"(e.g. `aws s3 mb s3://{bucket}`) or fix LETTERWISE_S3_URL"
            ) from None
        except Exception as error:  # noqa: BLE001 - network errors come in many types
            endpoint = fs.fs_args.get("client_kwargs", {}).get("endpoint_url") or "AWS S3"
            raise RemoteConfigError(
                f"cannot reach {endpoint}: {type(error).__name__}: {error}; check the endpoint "
                "URL (LETTERWISE_S3_ENDPOINT_URL) and the network"
            ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Configure the S3 (or S3-compatible) DVC remote from flags or environment "
        "variables. Flags win over the environment.",
    )
    parser.add_argument(
        "--repo", type=Path, default=Path.cwd(), help="DVC project root (default: current dir)"
    )
    parser.add_argument(
        "--name", help=f"remote name (env LETTERWISE_REMOTE_NAME; default {DEFAULT_NAME!r})"
    )
    parser.add_argument("--url", help="s3://BUCKET[/PREFIX] (env LETTERWISE_S3_URL)")
    parser.add_argument(
        "--endpoint-url",
        help="S3-compatible endpoint such as http://127.0.0.1:9000; omit for AWS "
        "(env LETTERWISE_S3_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL)",
    )
    parser.add_argument(
        "--region", help="bucket region (env LETTERWISE_S3_REGION, AWS_REGION, AWS_DEFAULT_REGION)"
    )
    parser.add_argument(
        "--profile",
        help="named profile from ~/.aws/config (env LETTERWISE_S3_PROFILE, AWS_PROFILE)",
    )
    parser.add_argument(
        "--credentials",
        choices=["env", "local"],
        default="env",
        help="env: keys stay in the environment/profile, nothing secret is written (default); "
        "local: copy AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN into "
        ".dvc/config.local (git-ignored)",
    )
    parser.add_argument(
        "--scope",
        choices=["project", "local"],
        default="project",
        help="where the URL/endpoint/region go: project = .dvc/config, committed and shared "
        "(default); local = .dvc/config.local, this machine only",
    )
    parser.add_argument(
        "--make-default",
        choices=["local", "project", "no"],
        default="local",
        help="make it the default remote for this machine (.dvc/config.local, default), for "
        "everyone (.dvc/config), or not at all (then use `dvc push -r NAME`)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=int,
        default=DEFAULT_CONNECT_TIMEOUT_S,
        help="seconds to wait for a TCP connection before failing "
        f"(default {DEFAULT_CONNECT_TIMEOUT_S})",
    )
    parser.add_argument(
        "--read-timeout", type=int, help="seconds to wait for a response (default: botocore's 60)"
    )
    parser.add_argument("--jobs", type=int, help="parallel transfers (default: DVC's, 4 x CPUs)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="after writing, reach the bucket with these settings and fail clearly if the "
        "credentials, bucket or endpoint are wrong",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    repo = args.repo.resolve()
    try:
        if args.scope == "local" and args.make_default == "project":
            raise RemoteConfigError(
                "--make-default project with --scope local would make every clone default to a "
                "remote only this machine defines; use --scope project or --make-default local"
            )
        remote = resolve_remote(args, os.environ)
        credentials = resolve_credentials(args.credentials, remote.profile, os.environ)
        write_config(repo, remote, credentials, args.scope, args.make_default)
        print(describe(repo, remote.name))
        if args.check:
            check_remote(repo, remote.name)
            print(f"ok: bucket {remote.bucket!r} is reachable with these settings")
    except RemoteConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
