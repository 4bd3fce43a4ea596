"""The accepted policy as data: its version (a content hash), the snapshot the supervisor publishes,
and the keeper that decides what to publish (one policy per machine, issue 13)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy import PolicyError, load_policy, parse_policy
from gateway.policy.channel import Accepted, Follower, Keeper, PolicyChannel, policy_of
from gateway.policy.snapshot import VERSION_LENGTH, Snapshot, decode_snapshot, encode_snapshot, policy_version

GOOD = 'rules:\n  - paths: ["/**"]\n    allow: authenticated\n'
OTHER = 'rules:\n  - paths: ["/x"]\n    deny: true\n'
BROKEN = 'rules:\n  - paths: ["/admin/**"]\n    allow: everybody\n'


def test_version_is_short_stable_and_ignores_the_folder() -> None:
    version = policy_version({"/etc/gw/policies/a.yaml": GOOD, "/etc/gw/policies/b.yaml": OTHER})
    assert len(version) == VERSION_LENGTH and int(version, 16) >= 0
    # Another machine, another folder, the same files: the same version; order does not matter.
    assert policy_version({"/srv/p/b.yaml": OTHER, "/srv/p/a.yaml": GOOD}) == version


@pytest.mark.parametrize("other", [
    {"a.yaml": GOOD + " "},  # one byte more
    {"b.yaml": GOOD},  # the same text under another name
    {"a.yaml": GOOD, "b.yaml": ""},  # an empty file added
    {"a.yaml": GOOD[:10], "b.yaml": GOOD[10:]},  # the same bytes split differently
])
def test_version_changes_with_any_name_or_text(other: dict[str, str]) -> None:
    assert policy_version(other) != policy_version({"a.yaml": GOOD})


def test_loaded_and_parsed_policies_carry_the_same_version(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(OTHER)
    loaded = load_policy(tmp_path)
    assert loaded.version == policy_version({"a.yaml": GOOD, "b.yaml": OTHER})
    assert loaded.sources == {str(tmp_path / "a.yaml"): GOOD, str(tmp_path / "b.yaml"): OTHER}
    assert parse_policy(loaded.sources).version == loaded.version


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=40), max_size=4), st.integers(0, 2**63),
       st.lists(st.text(max_size=20), max_size=3), st.booleans())
def test_snapshot_round_trip(sources: dict[str, str], serial: int, problems: list[str], folded: bool) -> None:
    snapshot = Snapshot(serial=serial, version=policy_version(sources), sources=sources, origin="/p",
                        case_insensitive=folded, problems=tuple(problems))
    assert decode_snapshot(encode_snapshot(snapshot)) == snapshot


@pytest.mark.parametrize("data", [
    b"", b"[]", b"{}", b"\xff", b'{"serial": 1}',
    b'{"serial": "1", "version": "x", "origin": "", "case_insensitive": false, "problems": [], "files": {}}',
    # A version that is not the files' hash: never trusted.
    b'{"serial": 1, "version": "0000", "origin": "", "case_insensitive": false, "problems": [], "files": {}}',
])
def test_a_damaged_snapshot_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a policy snapshot"):
        decode_snapshot(data)


def test_snapshot_compiles_with_the_files_own_messages(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    policy = load_policy(tmp_path)
    snapshot = Keeper(policy, origin=str(tmp_path)).snapshot()
    again = policy_of(decode_snapshot(encode_snapshot(snapshot)))
    assert again.policy.version == policy.version and again.policy.rules == policy.rules
    assert again.policy.files == policy.files
    with pytest.raises(PolicyError, match=r"a\.yaml:3"):
        policy_of(Snapshot(serial=1, version=policy_version({"/p/a.yaml": BROKEN}), sources={"/p/a.yaml": BROKEN}))


def test_keeper_publishes_each_decision_once_and_keeps_the_last_good(tmp_path: Path) -> None:
    first = parse_policy({"/p/a.yaml": GOOD})
    keeper = Keeper(first, origin="/p")
    assert keeper.snapshot().serial == 1
    assert keeper.accepted(parse_policy({"/p/a.yaml": GOOD})) is None  # saved without a change

    second = parse_policy({"/p/a.yaml": OTHER})
    published = keeper.accepted(second)
    assert published is not None and published.serial == 2 and published.version == second.version

    try:
        parse_policy({"/p/a.yaml": BROKEN})
    except PolicyError as exc:
        error = exc
    rejected = keeper.rejected(error)
    assert rejected is not None and rejected.version == second.version and rejected.problems
    assert keeper.rejected(error) is None  # the same broken text saved again
    assert keeper.state.policy is second

    # Back to the accepted text: ready again (a change), the same version.
    back = keeper.accepted(parse_policy({"/p/a.yaml": OTHER}))
    assert back is not None and back.problems == () and back.version == second.version


async def test_followers_take_exactly_the_published_version(tmp_path: Path) -> None:
    first = parse_policy({"/p/a.yaml": GOOD})
    keeper = Keeper(first, origin="/p")
    writer = PolicyChannel(tmp_path)
    writer.create(keeper.snapshot())
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {
        "policy.json": "0o600", "policy.serial": "0o600"}

    taken: list[Accepted] = []
    readers = [PolicyChannel(tmp_path) for _ in range(2)]
    followers = []
    for reader in readers:
        reader.open()
        followers.append(Follower(reader, reader.read(), taken.append))
    assert [f.current.policy.version for f in followers] == [first.version] * 2
    assert not any([await f.check() for f in followers])

    second = parse_policy({"/p/a.yaml": OTHER})
    snapshot = keeper.accepted(second)
    assert snapshot is not None
    writer.publish(snapshot)
    try:
        parse_policy({"/p/a.yaml": BROKEN})
    except PolicyError as exc:
        rejected = keeper.rejected(exc)
    assert rejected is not None
    writer.publish(rejected)  # before the followers looked: they go straight to the newest
    assert all(await asyncio.gather(*(f.check() for f in followers)))
    assert [(a.policy.version, bool(a.problems)) for a in taken] == [(second.version, True)] * 2
    for reader in (*readers, writer):
        reader.close()


async def test_a_request_takes_a_new_snapshot_before_it_is_admitted(tmp_path: Path) -> None:
    # The timer never runs here (the follower is not started): only the request path's catch-up.
    first = parse_policy({"/p/a.yaml": GOOD})
    keeper = Keeper(first, origin="/p")
    writer = PolicyChannel(tmp_path)
    writer.create(keeper.snapshot())
    reader = PolicyChannel(tmp_path)
    reader.open()
    follower = Follower(reader, reader.read(), lambda _: None)
    assert not follower.behind()
    second = parse_policy({"/p/a.yaml": OTHER})
    snapshot = keeper.accepted(second)
    assert snapshot is not None
    writer.publish(snapshot)
    assert follower.behind()
    await asyncio.gather(*(follower.catch_up() for _ in range(5)))  # many requests notice at once
    assert follower.current.policy.version == second.version and not follower.behind()
    # A snapshot that will not load: requests go on with the policy in force, and stop asking.
    third = keeper.accepted(first)
    assert third is not None
    writer.publish(third)
    (tmp_path / "policy.json").write_bytes(b"{damaged")
    assert follower.behind()
    await follower.catch_up()
    assert follower.current.policy.version == second.version and not follower.behind()
    for channel in (writer, reader):
        channel.close()


def test_the_supervisors_watcher_starts_again_after_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    # Its store is unreachable the first time (a server restarting at that moment): it must not
    # stay dead, or edits would never be applied again until a restart.
    import gateway.store
    from gateway import server
    from gateway.config import load_settings

    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "a.yaml").write_text(GOOD)
    config = tmp_path / "gateway.toml"
    config.write_text('[store]\npath = "var/g.db"\n[policy]\ndir = "policies"\n')
    settings = load_settings(config, env={})
    opened: list[int] = []
    real = gateway.store.open_stores

    def flaky(*args: Any, **kwargs: Any) -> Any:
        opened.append(1)
        if len(opened) == 1:
            raise gateway.store.StoreUnavailable("down for a moment")
        return real(*args, **kwargs)

    monkeypatch.setattr(gateway.store, "open_stores", flaky)
    monkeypatch.setattr(server, "RESTART_FIRST", 0.01)
    publisher = server.PolicyPublisher(settings, load_policy(settings.policy.dir))
    publisher.start()
    reader = PolicyChannel(publisher.directory)
    try:
        reader.open()
        before = reader.serial()
        deadline = time.monotonic() + 10
        while len(opened) < 2 and time.monotonic() < deadline:  # the second start is under way
            time.sleep(0.01)
        (tmp_path / "policies" / "a.yaml").write_text(OTHER)
        while reader.serial() == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reader.serial() != before, "the edit was never published"
        assert reader.read().version == parse_policy({str(tmp_path / "policies" / "a.yaml"): OTHER}).version
        assert "starts again" in caplog.text
    finally:
        reader.close()
        publisher.stop()
