"""`troupe sandbox` as a process, for the end-to-end tests: started the way `make run`
starts it (its own temporary directory, which the test removes), in a session of its own
like a terminal's foreground job, so `interrupt()` is exactly a Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

from tests.e2e.fleet import poll, tail
from troupe import procs

START_TIMEOUT = 120.0


class SandboxProcess:
    def __init__(self, log_path: Path, *flags: str) -> None:
        self.log_path = log_path
        argv = [*procs.TROUPE, "sandbox", "--port", "0", *flags]
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.dir = Path(poll(self._directory, 30, "the sandbox's directory", 0.1, self.output))
        self.url = str(poll(self._url, START_TIMEOUT, "the sandbox's URL", 0.2, self.output))
        self.api_url = self.url + "/api/"

    def output(self) -> str:
        return tail(self.log_path, 80)

    def _exited(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"troupe sandbox exited with {self.proc.returncode}:\n{self.output()}"
            )

    def _directory(self) -> str | None:
        self._exited()
        match = re.search(r"starting the sandbox in (\S+) \.\.\.", self.output())
        return match[1] if match else None

    def _url(self) -> str | None:
        self._exited()
        match = re.search(r"open (http://127\.0\.0\.1:\d+)/ ", self.output())
        return match[1] if match else None

    def logs(self) -> str:
        parts = [f"----- troupe sandbox -----\n{self.output()}"]
        for log in sorted(self.dir.glob("*.log")):
            parts.append(f"----- {log.name} -----\n{tail(log, 60)}")
        return "\n".join(parts)

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C: SIGINT to the sandbox's process group; its exit code."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        """After the test: make sure it is gone (SIGKILL if it would not go) and remove its
        directory; an sshd fleet's host directories belong to the hosts' login user."""
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.interrupt(timeout=30)
            if self.proc.poll() is None:
                for pid in procs.descendants(self.proc.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
