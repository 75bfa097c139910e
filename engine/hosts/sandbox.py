"""Bubblewrap sandboxes for local agents (``kind = "sandbox"``, docs/hosts.md).

An agent's command line becomes ``bwrap <mounts> -- <argv>``:

- the whole filesystem read-only (``--ro-bind / /``), a private ``/tmp``, ``/dev`` and ``/proc``;
- the user's home folder hidden (an empty read-only tmpfs) except ``home_keep`` entries (read-write: the
  agent's own config) and the agent's ``CLAUDE_CONFIG_DIR`` / ``CODEX_HOME``;
- the worktree read-write, the user's checkout read-only; of the repository's ``.git`` only what a commit writes
  (``objects``, ``refs``, ``logs`` and the worktree's own ``.git/worktrees/<name>``) is
  writable: ``config`` and ``hooks`` stay read-only, so an agent cannot plant a hook that
  runs outside the sandbox later;
- the executable's own install folder, files named on the command line (a prompt file) and
  files the agent's allowlisted environment names (``GOOGLE_APPLICATION_CREDENTIALS``, a CA
  bundle) visible read-only even when they live under the hidden home or ``/tmp``;
- ``network = "none"``: a private network namespace (``--unshare-net``: loopback only), where
  the ``allow`` endpoints (``127.0.0.1:<port>``) are relayed in through a unix socket
  (``engine/hosts/netshim.py`` inside, ``engine/hosts/relay.py`` outside).

The process stays in mc's process group (no ``--new-session``), so a timeout or a cancel
ends it like any agent; ``--die-with-parent`` ends it with its supervisor.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from engine.host_config import SandboxHostConfig
from engine.hosts import netshim
from engine.hosts.relay import relay_for

BWRAP_INSTALL = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap)"
CONFIG_ENV = ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
              "XDG_DATA_HOME")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create its namespaces on this machine."""


def git_dirs(workdir: Path) -> tuple[Path, Path] | None:
    """``(gitdir, common_dir)`` of a linked worktree (its ``.git`` is a file), else None."""
    dotgit = workdir / ".git"
    if not dotgit.is_file():
        return None
    text = dotgit.read_text(errors="replace").strip()
    if not text.startswith("gitdir:"):
        return None
    gitdir = Path(text.split(":", 1)[1].strip())
    if not gitdir.is_absolute():
        gitdir = (workdir / gitdir).resolve()
    common_file = gitdir / "commondir"
    common = gitdir
    if common_file.is_file():
        rel = Path(common_file.read_text().strip())
        common = rel if rel.is_absolute() else (gitdir / rel).resolve()
    return gitdir, common


def install_root(executable: str, env: Mapping[str, str]) -> Path | None:
    """The folder an executable's install lives in (above ``node_modules`` for npm CLIs)."""
    found = shutil.which(executable, path=env.get("PATH")) if "/" not in executable else executable
    if not found:
        return None
    real = Path(os.path.realpath(found))
    parts = real.parts
    if "node_modules" in parts:
        return Path(*parts[: parts.index("node_modules")])
    return real.parent


def bwrap_argv(cfg: SandboxHostConfig, argv: list[str], *, cwd: Path,
               env: Mapping[str, str], home: Path | None = None) -> list[str]:
    """The bubblewrap command line that runs ``argv`` in ``cwd`` (see the module docstring)."""
    cwd = Path(cwd).resolve()
    home = (home or Path(os.path.expanduser("~"))).resolve()
    agent_home = Path(env.get("HOME") or home)
    out = [cfg.bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
           "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    if cfg.network == "none":
        out.append("--unshare-net")
    hidden = [home] if home != Path("/") else []
    if agent_home.resolve() != home and agent_home.resolve() != Path("/"):
        hidden.append(agent_home.resolve())
    for folder in hidden:
        if folder.exists():
            out += ["--tmpfs", str(folder)]
    # Read-only: the interpreter install (python tools), the executable's install, extra paths.
    ro: list[Path] = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()]
    root = install_root(argv[0], env) if argv else None
    if root is not None:
        ro.append(root)
    ro += [Path(os.path.expanduser(p)) for p in cfg.read_only]
    ro += [Path(a) for a in argv[1:] if a.startswith("/") and Path(a).is_file()]
    # files the (allowlisted) environment names: credentials files, CA bundles, settings
    ro += [Path(v) for v in env.values() if v.startswith("/") and os.sep in v
           and len(v) < 4096 and Path(v).is_file()]
    for path in ro:
        if path.exists() and any(_under(path, h) for h in [*hidden, Path("/tmp")]):
            out += ["--ro-bind", str(path), str(path)]
    # Read-write: the agent's own config, under whichever home it uses.
    rw: list[Path] = []
    for folder in {home, agent_home}:
        rw += [folder / entry for entry in cfg.home_keep]
    for name in CONFIG_ENV:  # the agent's own config folders: created so they can be bound
        if env.get(name):
            Path(env[name]).mkdir(parents=True, exist_ok=True)
            rw.append(Path(env[name]))
    for path in rw:
        if path.exists():
            out += ["--bind", str(path), str(path)]
    # The worktree, then the parts of the repository's .git a commit writes.
    dirs = git_dirs(cwd)
    if dirs is not None:
        gitdir, common = dirs
        if common.name == ".git" and common.parent != cwd:  # the user's checkout: visible, read-only
            out += ["--ro-bind", str(common.parent), str(common.parent)]
        out += ["--ro-bind", str(common), str(common)]
        (common / "logs").mkdir(exist_ok=True)  # git would create it on the first commit
        for name in ("objects", "refs", "logs"):
            if (common / name).is_dir():
                out += ["--bind", str(common / name), str(common / name)]
        out += ["--bind", str(gitdir), str(gitdir)]
        for name in ("config", "hooks"):  # never writable: they run code outside the sandbox
            if (common / name).exists():
                out += ["--ro-bind", str(common / name), str(common / name)]
    if cfg.network == "none" and cfg.allow:  # allowed loopback endpoints, relayed in
        shim = Path(netshim.__file__).resolve()
        forwards = []
        for endpoint in cfg.allow:
            relay = relay_for(endpoint)
            out += ["--ro-bind", str(relay.folder), str(relay.folder)]
            forwards.append(f"{relay.port}={relay.path}")
        if any(_under(shim, h) for h in [*hidden, Path("/tmp")]):  # mc installed under /tmp
            out += ["--ro-bind", str(shim.parent), str(shim.parent)]
        argv = [sys.executable, str(shim), *forwards, "--", *argv]
    # Claude Code allows --permission-mode bypassPermissions as root only in a sandbox.
    out += ["--setenv", "IS_SANDBOX", "1"]
    out += ["--bind", str(cwd), str(cwd), "--chdir", str(cwd)]
    for folder in hidden:  # a write to the masked home fails (EROFS) instead of vanishing
        if folder.exists():
            out += ["--remount-ro", str(folder)]
    return [*out, "--", *argv]
    return out


def _under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def probe(cfg: SandboxHostConfig, timeout: float = 20.0) -> str | None:
    """None when bubblewrap can run a sandbox here, else the reason (for the start-up error)."""
    exe = shutil.which(cfg.bwrap)
    if exe is None:
        return f"`{cfg.bwrap}` was not found on PATH: {BWRAP_INSTALL}"
    argv = [exe, "--die-with-parent", "--unshare-pid", "--ro-bind", "/", "/", "--dev", "/dev",
            "--proc", "/proc", "--tmpfs", "/tmp"]
    if cfg.network == "none":
        argv.append("--unshare-net")
    try:
        done = subprocess.run([*argv, "--", "true"], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start: {exc}"
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        why = detail[-1] if detail else f"exit code {done.returncode}"
        return (f"bubblewrap cannot create its sandbox on this machine ({why}); it needs "
                "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                "user.max_user_namespaces > 0) or a container that allows them")
    return None
