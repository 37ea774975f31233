"""What `ecrkit mirror` asks of the registries, counted where the requests arrive: each registry's access
log (Debian's docker-registry writes a line for every answer, 401s and 404s included), read by
testbed.standin.registry_requests, the counter bench/mirror.py uses for ecrkit and skopeo alike."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.standin import Request, StandIn, registry_requests, settled_size
from tests.test_mirror import config, image, push, run_mirror, serving_source

ADDRESS = "127.0.0.6:5000"  # a loopback address of this module's source: nothing else listens there
TAGS = ["1.0", "1.1", "2.0"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    state = tmp_path_factory.mktemp("counted-source")
    with serving_source(state, ADDRESS, log=state / "registry.log") as host:
        yield host, state / "registry.log"


def ask(method: str, url: str) -> int:
    try:
        return int(urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10).status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_counter_counts_every_request_the_registry_answers(source: tuple[str, Path]) -> None:
    host, log = source
    since = settled_size(log)
    statuses = [ask("GET", f"http://{host}/v2/"), ask("HEAD", f"http://{host}/v2/team/tool/manifests/none"),
                ask("HEAD", f"http://{host}/v2/team/tool/manifests/1.0"), ask("GET", f"http://{host}/v2/team/tool/tags/list"),
                ask("POST", f"http://{host}/v2/team/tool/blobs/uploads/?from=x")]  # fmt: skip
    assert statuses == [200, 404, 400, 200, 202]  # 400: a schema 2 manifest asked without Accept
    assert registry_requests(log, since) == [
        Request("GET", "/v2/", 200),
        Request("HEAD", "/v2/team/tool/manifests/none", 404),
        Request("HEAD", "/v2/team/tool/manifests/1.0", 400),
        Request("GET", "/v2/team/tool/tags/list", 200),
        Request("POST", "/v2/team/tool/blobs/uploads/", 202),  # the query is not part of what is counted
    ]
    assert [r.kind for r in registry_requests(log, since)] == ["base", "manifest", "manifest", "tags", "upload"]
    assert registry_requests(log, settled_size(log)) == []  # the control: nothing after the last request


def counted(
    stand_in: StandIn, log: Path, tmp_path: Path, tags: list[str]
) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]], str]:
    """A mirror run of these tags of team/tool: the requests at the source and at the target, by method and
    kind."""
    since_source, since_target = settled_size(log), settled_size(stand_in.registry_log)
    wanted = config({"source": f"{ADDRESS}/team/tool", "tags": tags, "repository": "counted/tool"}, source_host=ADDRESS)
    done = run_mirror(stand_in, tmp_path, wanted, "--jobs", "8")
    assert done.returncode == 0, done.stdout + done.stderr
    at_source = Counter((r.method, r.kind) for r in registry_requests(log, since_source))
    at_target = Counter((r.method, r.kind) for r in registry_requests(stand_in.registry_log, since_target))
    return at_source, at_target, done.stdout


@pytest.mark.standin
def test_an_unchanged_tag_costs_one_head_at_the_source_and_one_at_the_target(
    stand_in: StandIn, source: tuple[str, Path], tmp_path: Path
) -> None:
    """Referrers on (the default): the tag list and the referrers API's probe are the run's and the
    repository's, not each tag's. Runs of 1 and of 3 unchanged tags differ by two HEADs at each end and
    nothing else."""
    _, log = source
    counted(stand_in, log, tmp_path, TAGS)  # the first copy
    one_source, one_target, one_summary = counted(stand_in, log, tmp_path, TAGS[:1])
    three_source, three_target, three_summary = counted(stand_in, log, tmp_path, TAGS)
    assert "0 copied, 1 unchanged, 0 failed" in one_summary
    assert "0 copied, 3 unchanged, 0 failed" in three_summary
    per_tag = {("HEAD", "manifest"): 2}
    assert three_source - one_source == per_tag and one_source - three_source == Counter()
    assert three_target - one_target == per_tag and one_target - three_target == Counter()
    # One unchanged tag, all told: its HEAD, the repository's tag list (the tag schema's referrers), and
    # one probe of the referrers API (a 404 from distribution: not asked again in the run).
    assert one_source == {("HEAD", "manifest"): 1, ("GET", "tags"): 1, ("GET", "referrers"): 1}
    assert one_target == {("HEAD", "manifest"): 1}


@pytest.mark.standin
def test_a_changed_tag_is_counted_as_a_pull_and_a_push(
    stand_in: StandIn, source: tuple[str, Path], tmp_path: Path
) -> None:
    """The negative control of the test above: when a tag changes at the source, the counts show its
    manifest read and written, and its new blob copied."""
    _, log = source
    counted(stand_in, log, tmp_path, TAGS)
    before_source, before_target, _ = counted(stand_in, log, tmp_path, TAGS)
    push(ADDRESS, "team/tool", "1.1", image("tool 1.1, rebuilt"))
    after_source, after_target, summary = counted(stand_in, log, tmp_path, TAGS)
    assert "1 copied, 2 unchanged, 0 failed" in summary
    assert (after_source - before_source)[("GET", "manifest")] == 1
    assert (after_source - before_source)[("GET", "blob")] >= 1
    assert (after_target - before_target)[("PUT", "manifest")] == 1
    assert (after_target - before_target)[("PUT", "upload")] >= 1


@pytest.mark.standin
def test_a_first_copy_asks_neither_end_what_it_cannot_have(
    stand_in: StandIn, source: tuple[str, Path], tmp_path: Path
) -> None:
    """Tags the target lacks are read at once (one HEAD at the source all told, for its rate limit before
    the first pull; none per tag), and a repository the run created is not asked for blobs; a new tag in
    a repository that existed is (the control)."""
    _, log = source

    def run(tags: list[str]) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
        since_source, since_target = settled_size(log), settled_size(stand_in.registry_log)
        wanted = config({"source": f"{ADDRESS}/team/tool", "tags": tags, "repository": "counted/fresh"},
                        source_host=ADDRESS)  # fmt: skip
        done = run_mirror(stand_in, tmp_path, wanted, "--jobs", "8")
        assert f"{len(tags)} copied" in done.stdout, done.stdout + done.stderr
        at_target = registry_requests(stand_in.registry_log, since_target)
        return Counter((r.method, r.kind) for r in registry_requests(log, since_source)), Counter(
            (r.method, r.kind) for r in at_target
        )

    at_source, at_target = run(["1.0", "2.0"])
    assert at_source[("HEAD", "manifest")] == 1
    assert at_source[("GET", "manifest")] == 2
    assert at_target[("HEAD", "manifest")] == 2  # each tag's comparison
    assert at_target[("HEAD", "blob")] == 0
    assert at_target[("PUT", "manifest")] == 2
    _, later = run(["1.1"])  # the repository exists now: its blobs are asked about
    assert later[("HEAD", "blob")] == 2  # tool 1.1's layer and config
