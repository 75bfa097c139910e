"""A real OpenSSH server on 127.0.0.1 for the SSH host tests (Debian ``openssh-server``).

Host and user keys are generated in a temporary folder; the server runs as the current user
(``sshd -f <config> -D``, ``StrictModes no``) on a free port and accepts only that user key.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class Sshd:
    port: int
    folder: Path
    user_key: Path
    known_hosts: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        """End the server and every connection it serves (its whole process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)

    def host_config(self, name: str = "remote", **extra: object) -> str:
        lines = ["", "[[hosts]]", 'kind = "ssh"', f'name = "{name}"', 'address = "127.0.0.1"',
                 f"port = {self.port}", f'identity_file = "{self.user_key}"',
                 f'known_hosts = "{self.known_hosts}"', f'remote_dir = "{self.folder / "remote"}"']
        lines += [f"{k} = {v!r}".replace("'", '"') for k, v in extra.items()]
        return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def start_sshd(folder: Path) -> Sshd:
    """Start sshd on a free port; ``known_hosts`` lists its key (``Sshd.stop`` ends it)."""
    folder.mkdir(parents=True, exist_ok=True)
    host_key, user_key = folder / "host_key", folder / "user_key"
    keygen(host_key)
    keygen(user_key)
    (folder / "authorized_keys").write_text((folder / "user_key.pub").read_text())
    port = free_port()
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation folder sshd wants as root
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
        f"PidFile {folder / 'sshd.pid'}", f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "UsePAM no", "PermitRootLogin prohibit-password",
        "LogLevel ERROR", "",
    ]))
    with open(folder / "sshd.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([SSHD, "-f", str(config), "-D", "-e"], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((folder / "sshd.log").read_text()) from None
            time.sleep(0.05)
    pub = (folder / "host_key.pub").read_text().split()
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    return Sshd(port, folder, user_key, known, proc)
