"""Token economy: GetAuthorizationToken requests per pull, with and without the helper's cache.

Real docker CLI, daemon and helper against the local stand-in (tokens valid 12 h, requests
counted by the API). Prints requests per pull for 50 pulls each way. Run: make bench.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from testbed.standin import REGISTRY_HOST, StandIn

PULLS = 50


def requests_per_pull(stand_in: StandIn, image: str, home: Path, extra: dict[str, str]) -> float:
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"credHelpers": {REGISTRY_HOST: "ecr-login"}}))
    env = stand_in.client_env(home) | {"AWS_ECR_CACHE_DIR": str(home / "ecr-cache")} | extra
    before = stand_in.token_requests()
    for _ in range(PULLS):
        if stand_in.run(["docker", "pull", image], env).returncode != 0:
            sys.exit("a pull failed")
        stand_in.run(["docker", "rmi", image], env)
    return (stand_in.token_requests() - before) / PULLS


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="ecrkit-tokens-"))
    stand_in = StandIn(work / "standin")
    try:
        stand_in.up()
        image = stand_in.push_image("bench/app", "1")
        cached = requests_per_pull(stand_in, image, work / "cached", {})
        uncached = requests_per_pull(stand_in, image, work / "uncached", {"AWS_ECR_DISABLE_CACHE": "1"})
    finally:
        stand_in.down()
    print(f"token requests per pull, helper cache usable, {PULLS} pulls: {cached:.2f} (target <= 0.05)")
    print(f"token requests per pull, helper cache disabled, {PULLS} pulls: {uncached:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
