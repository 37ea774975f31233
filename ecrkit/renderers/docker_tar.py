"""The `docker.tar.gz` a Marathon app fetches: `.docker/config.json` naming the helper.

The Mesos agent extracts it into the task's sandbox and runs `docker pull` with HOME set to
the sandbox. The archive is byte-for-byte reproducible (sorted members, fixed mtime, uid/gid
0, fixed modes, gzip without a name or time), so it changes only when its content does.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile

from ecrkit.renderers import docker_config
from ecrkit.settings import CredentialRule

MEMBERS = (".docker", ".docker/config.json")


def render(rule: CredentialRule) -> bytes:
    """The archive for this rule: only `.docker/` and `.docker/config.json`, nothing else."""
    config = json.dumps(docker_config.merge({}, rule), indent="\t").encode() + b"\n"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in ((".docker", None), (".docker/config.json", config)):
            member = tarfile.TarInfo(name)
            member.mtime, member.uid, member.gid, member.uname, member.gname = 0, 0, 0, "root", "root"
            if data is None:
                member.type, member.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(member)
            else:
                member.size, member.mode = len(data), 0o644  # the task user reads it; it names a helper only
                archive.addfile(member, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as stream:
        stream.write(raw.getvalue())
    return compressed.getvalue()
