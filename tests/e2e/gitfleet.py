"""A fleet whose replicas run from git checkouts, for the self-update tests.

- The project's source (`troupe/` and `pyproject.toml`, as they are on disk) is committed
  to a repository in the test's directory and pushed to a bare `origin.git`.
- Each replica has its own clone and runs `troupe run` from it (supervised, as in
  production): cwd is the clone and PYTHONPATH names it, so the supervisor and the
  replica import the clone's code. The compromise: every clone shares the test's
  virtualenv (installing one per clone would take minutes); the dependency reinstall is
  tested on its own (tests/integration/test_selfupdate.py).
- The inventory has a `replicas` group: one `connection: local` host per replica, with the
  vars playbooks/self-update.yaml reads (`replica`, `checkout`, `python`), and the fleet's
  `playbooks/` holds the project's self-update.yaml next to the test playbooks.
- Each replica is its own process group (supervisor and replica), so a test can kill a
  whole replica the way a machine dies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.fleet import TROUPE, Fleet, Identity, LocalSlack, Replica, Timings, reap
from tests.integration.gitrepos import Origin, git
from troupe.selfupdate import read_supervisor, read_verdict

PROJECT = Path(__file__).resolve().parents[2]
PROBATION = 20.0  # seconds: a replica here starts (imports, connects) in 2-5 s


def project_source(origin: Origin) -> str:
    """Commit the project's source as it is on disk; returns the commit."""
    shutil.copytree(
        PROJECT / "troupe",
        origin.work / "troupe",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    shutil.copy(PROJECT / "pyproject.toml", origin.work / "pyproject.toml")
    return origin.commit({}, "the project as it is", tag="v-start")


class GitFleet(Fleet):
    def __init__(
        self,
        root: Path,
        slack: LocalSlack,
        who: dict[str, Identity],
        slow_hosts: int = 4,
        timings: Timings | None = None,
    ) -> None:
        self.origin = Origin(root / "repo")
        self.first = project_source(self.origin)
        (root / "clones").mkdir()
        self.clones = {name: self.origin.clone(root / "clones" / name) for name in who}
        super().__init__(root, slack, who, ledger_hosts=2, slow_hosts=slow_hosts, timings=timings)

    def _write(self) -> None:
        super()._write()
        config: dict[str, Any] = yaml.safe_load(self.config_path.read_text())
        for name, clone in self.clones.items():
            config["inventory"]["hosts"][name] = {
                "connection": "local",
                "vars": {"replica": name, "checkout": str(clone), "python": sys.executable},
            }
        config["inventory"]["groups"]["replicas"] = list(self.clones)
        config["selfupdate"] = {"probation": PROBATION, "stop_timeout": 20}
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        shutil.copy(PROJECT / "playbooks" / "self-update.yaml", self.root / "playbooks")

    def _spawn(self, replica: Replica) -> None:
        clone = self.clones[replica.name]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TROUPE_")}
        env |= {
            "TROUPE_BOT_TOKEN": replica.identity.bot_token,
            "TROUPE_APP_TOKEN": replica.identity.app_token,
            "E2E_REPLICA": replica.name,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(clone),
            "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ to tell apart from the commit
        }
        argv = [*TROUPE, "run", "-c", str(self.config_path), "--replica", replica.name]
        with replica.log_path.open("ab") as log:
            replica.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=clone,
                start_new_session=True,
            )

    def kill(self, name: str) -> None:
        """SIGKILL a replica's supervisor and replica at once, as when its machine dies."""
        proc = self.replicas[name].proc
        assert proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        super().stop()
        for replica in self.replicas.values():  # a replica child its supervisor left behind
            if replica.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(replica.proc.pid, signal.SIGKILL)
                reap(replica.proc, 1)

    # ---- the new version -----------------------------------------------------------------

    def push_version(self, version: str) -> str:
        """A commit that changes only `__version__`; returns it."""
        init = self.origin.work / "troupe" / "__init__.py"
        text = init.read_text()
        old = next(line for line in text.splitlines() if line.startswith("__version__"))
        return self.origin.commit(
            {"troupe/__init__.py": text.replace(old, f'__version__ = "{version}"')},
            f"version {version}",
        )

    def push_broken(self) -> str:
        """A commit with which a replica cannot start (`troupe run` fails at import)."""
        runner = self.origin.work / "troupe" / "runner.py"
        text = '\nraise SystemExit("this version cannot start: broken on purpose")\n'
        return self.origin.commit({"troupe/runner.py": runner.read_text() + text}, "broken")

    def head(self, name: str) -> str:
        return git(self.clones[name], "rev-parse", "HEAD")

    def running(self, name: str) -> str | None:
        """The commit the replica's supervisor last started the replica on."""
        state = read_supervisor(self.clones[name])
        return state.commit if state is not None and state.child_pid else None

    def verdict(self, name: str) -> str | None:
        verdict = read_verdict(self.clones[name])
        return None if verdict is None else f"{verdict.verdict} {verdict.target}"
