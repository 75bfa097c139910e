"""[[hosts]] config, the fleet's slot layout and breakers, the bubblewrap command line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.config import MissionConfig, format_validation_error
from engine.host_config import SandboxHostConfig
from engine.hosts import HostFleet
from engine.hosts.sandbox import bwrap_argv, git_dirs


def test_a_container_host_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ValidationError) as info:
        MissionConfig(hosts=[{"kind": "local"}, {"kind": "container", "slots": 2}])
    text = format_validation_error(info.value, None)
    assert "hosts.1" in text and "not available in this version" in text


def test_a_ray_host_takes_a_remote_without_credentials_and_is_the_only_one() -> None:
    (host,) = MissionConfig(hosts=[{"kind": "ray", "remote": "ssh://git@h/r.git"}]).hosts
    assert (host.address, host.resource, host.work_dir) == ("auto", "mc_agent_slot", "mc-ray")
    with pytest.raises(ValidationError, match="hosts.0.ray.remote") as info:
        MissionConfig(hosts=[{"kind": "ray", "remote": "https://u:pw-s3cr3t@h/r.git"}])
    text = format_validation_error(info.value, None)
    assert "credential helper" in text and "s3cr3t" not in text  # never echoed
    with pytest.raises(ValidationError, match="at most one ray host"):
        MissionConfig(hosts=[{"kind": "ray", "name": "a"}, {"kind": "ray", "name": "b"}])
    with pytest.raises(ValidationError, match="hosts.0.ray.adress"):
        MissionConfig(hosts=[{"kind": "ray", "adress": "h:6379"}])


def test_ray_verification_is_opt_in_and_its_resource_needs_it() -> None:
    (host,) = MissionConfig(hosts=[{"kind": "ray"}]).hosts
    assert host.verify is False and host.verify_slot_resource == "mc_agent_slot"
    (host,) = MissionConfig(hosts=[{"kind": "ray", "verify": True}]).hosts
    assert host.verify_slot_resource == "mc_agent_slot"  # shares the agent slots
    (host,) = MissionConfig(hosts=[{"kind": "ray", "verify": True,
                                    "verify_resource": "mc_verify_slot"}]).hosts
    assert host.verify_slot_resource == "mc_verify_slot"
    with pytest.raises(ValidationError) as info:
        MissionConfig(hosts=[{"kind": "ray", "verify_resource": "mc_verify_slot"}])
    text = format_validation_error(info.value, None)
    assert "hosts.0.ray.verify_resource" in text and "set verify = true" in text
    with pytest.raises(ValidationError, match="hosts.0.ssh.verify"):  # only a ray host verifies
        MissionConfig(hosts=[{"kind": "ssh", "address": "h", "verify": True}])
    with pytest.raises(ValidationError, match="hosts.0.ray.verify"):
        MissionConfig(hosts=[{"kind": "ray", "verify": "sometimes"}])


def test_the_wiring_injects_a_ray_verifier_only_for_verify_true(tmp_path: Path) -> None:
    from engine.hosts.ray_verify import RayVerifier
    from engine.wiring import remote_verifier

    class Repo:
        path = tmp_path

    plain = MissionConfig(hosts=[{"kind": "local"}, {"kind": "ray"}])
    assert remote_verifier(plain, Repo()) is None  # type: ignore[arg-type]
    config = MissionConfig(hosts=[{"kind": "local"}, {"kind": "ray", "verify": True}],
                           hitl={"telegram": {"token_env": "MY_BOT_TOKEN"}})
    runner = remote_verifier(config, Repo())  # type: ignore[arg-type]
    assert isinstance(runner, RayVerifier) and runner.name == "ray1"
    env = {"PATH": "/bin", "MC_SECRET": "x", "MY_BOT_TOKEN": "y", "AWS_SECRET_ACCESS_KEY": "z",
           "ANTHROPIC_API_KEY": "sk-a", "OPENAI_API_KEY": "sk-o"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        sent = runner.environment()
    # a verification on a node needs no model key: those stay on mc's machine too
    assert sent["PATH"] == "/bin" and not {"MC_SECRET", "MY_BOT_TOKEN", "AWS_SECRET_ACCESS_KEY",
                                           "ANTHROPIC_API_KEY", "OPENAI_API_KEY"} & set(sent)


def test_a_ray_host_without_ray_installed_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ValidationError, match="mission-control\\[ray\\]"):
        MissionConfig(hosts=[{"kind": "ray"}])


def test_unknown_host_keys_and_duplicate_names_are_errors() -> None:
    with pytest.raises(ValidationError, match="hosts.0.sandbox.netwrk"):
        MissionConfig(hosts=[{"kind": "sandbox", "netwrk": "none"}])
    with pytest.raises(ValidationError, match="host names must be unique: a"):
        MissionConfig(hosts=[{"kind": "local", "name": "a"}, {"kind": "sandbox", "name": "a"}])


def test_an_ssh_host_needs_an_address_and_never_trusts_unknown_keys_by_default() -> None:
    with pytest.raises(ValidationError, match="hosts.0.ssh.address"):
        MissionConfig(hosts=[{"kind": "ssh"}])
    (host,) = MissionConfig(hosts=[{"kind": "ssh", "address": "h", "port": 2222}]).hosts
    assert host.trust_unknown_host_key is False


def test_no_hosts_is_the_default() -> None:
    assert MissionConfig().hosts == []


def test_slots_are_laid_out_host_after_host_and_a_drained_host_is_skipped() -> None:
    config = MissionConfig(hosts=[{"kind": "sandbox", "name": "sbx", "slots": 2},
                                  {"kind": "local", "slots": 1}])
    now = [100.0]
    fleet = HostFleet.from_config(config.hosts)
    fleet.clock = lambda: now[0]
    assert fleet.total_slots == 3
    assert [fleet.host_of(s).name for s in range(3)] == ["sbx", "sbx", "local1"]
    assert fleet.host_of(7).name == "sbx"  # fixup slots: the first healthy host
    assert fleet.drain("sbx", "bwrap broke") and not fleet.drain("sbx", "again")
    assert [fleet.usable(s) for s in range(3)] == [False, False, True]
    assert fleet.host_of(7).name == "local1"
    assert fleet.due_rechecks() == []
    now[0] += 60.0
    assert [s.host.name for s in fleet.due_rechecks()] == ["sbx"]


def test_bwrap_binds_what_git_writes_and_keeps_config_and_hooks_read_only(tmp_path: Path) -> None:
    repo, wt = tmp_path / "repo", tmp_path / "wt"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-q", "--allow-empty", "-m", "init"], check=True)
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(wt), "-b", "u"],
                   check=True)
    gitdir, common = git_dirs(wt) or (None, None)
    assert common == repo / ".git" and gitdir == repo / ".git" / "worktrees" / "wt"
    argv = bwrap_argv(SandboxHostConfig(kind="sandbox"), ["sh", "-c", "true"], cwd=wt,
                      env={"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
                      home=tmp_path / "realhome")
    pairs = [(argv[i], argv[i + 1]) for i in range(len(argv) - 1)]
    for name in ("objects", "refs", "logs"):
        assert ("--bind", str(common / name)) in pairs
    assert ("--bind", str(gitdir)) in pairs and ("--bind", str(wt)) in pairs
    last_config = max(i for i, p in enumerate(pairs) if p[1] == str(common / "config")
                      and p[0].startswith("--"))
    assert pairs[last_config][0] == "--ro-bind"
    assert "--unshare-net" in argv and "--die-with-parent" in argv
    assert "--new-session" not in argv  # the agent stays in mc's process group
    assert argv[argv.index("--") + 1:] == ["sh", "-c", "true"]
    creds = tmp_path / "realhome" / "creds.json"
    creds.parent.mkdir()
    creds.write_text("{}")
    named = bwrap_argv(SandboxHostConfig(kind="sandbox"), ["true"], cwd=wt,
                       env={"GOOGLE_APPLICATION_CREDENTIALS": str(creds)}, home=creds.parent)
    assert ("--ro-bind", str(creds)) in list(zip(named, named[1:], strict=False))
    host_net = bwrap_argv(SandboxHostConfig(kind="sandbox", network="host"), ["true"], cwd=wt,
                          env={}, home=tmp_path / "realhome")
    assert "--unshare-net" not in host_net


def test_an_unreachable_ray_cluster_fails_the_health_check_at_once() -> None:
    from engine.host_config import RayHostConfig
    from engine.hosts.ray_cluster import RayHost
    from tests.support.sshd import free_port

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    problem = RayHost("c", 1, RayHostConfig(address=address, connect_timeout=3)).check()
    assert problem == f"cannot reach the Ray cluster at {address}: Connection refused"
