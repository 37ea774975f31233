"""Run on the host by verify.yml: what the role must keep, and what it must have merged."""

import json
import sys
import tomllib
from pathlib import Path

original_text, merged_text = (Path(path).read_text() for path in sys.argv[1:])
before, after = tomllib.loads(original_text), tomllib.loads(merged_text)
ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com"

# Comments, tokens, ids and timestamps: byte for byte.
KEPT = ("token =", "token_", " id =", "url =", "FF_", "Bucket")
for line in original_text.splitlines():
    if line.lstrip().startswith("#") or any(k in line for k in KEPT):
        assert line in merged_text.splitlines(), line
for old, new in zip(before["runners"], after["runners"], strict=True):
    for key in ("name", "id", "token", "token_obtained_at", "token_expires_at", "cache", "feature_flags"):
        assert old.get(key) == new.get(key), key
    auth = [e for e in new["environment"] if e.startswith("DOCKER_AUTH_CONFIG=")]
    assert len(auth) == 1, auth
    assert json.loads(auth[0].split("=", 1)[1])["credHelpers"][ecr] == "ecr-login"
    assert "/var/run/docker.sock:/var/run/docker.sock" in new["docker"]["volumes"]
assert "GIT_DEPTH=10" in after["runners"][0]["environment"]
assert "registry.example.com" in json.loads(after["runners"][0]["environment"][1].split("=", 1)[1])["auths"]
options = after["runners"][1]["machine"]["MachineOptions"]
for wanted in (
    "amazonec2-metadata-token-response-hop-limit=2",
    "amazonec2-metadata-token=required",
    "amazonec2-iam-instance-profile=ci-jobs",
    "amazonec2-userdata=/etc/gitlab-runner/ecrkit-userdata.sh",
    "amazonec2-vpc-id=vpc-0abc",
):
    assert options.count(wanted) == 1, (wanted, options)
assert not any(o.endswith("hop-limit=1") for o in options)
assert after["runners"][2]["autoscaler"]["max_instances"] == 20
assert after["runners"][2]["autoscaler"]["policy"] == [{"idle_count": 2, "idle_time": "20m0s"}]
print("config.toml: kept and merged as expected")
