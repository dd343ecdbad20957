"""Real git repositories for the self-update tests: a source repository, a bare remote
and clones, built with the git command line (what an operator's repository looks like)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "advice.detachedHead=false", *args],
        cwd=cwd,
        env=os.environ | GIT_ENV,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


class Origin:
    """A working repository (`work`) pushing to a bare one (`bare`) that clones fetch."""

    def __init__(self, root: Path) -> None:
        self.work = root / "work"
        self.bare = root / "origin.git"
        self.work.mkdir(parents=True)
        git(self.work, "init", "--quiet")
        git(root, "init", "--quiet", "--bare", str(self.bare))
        git(self.work, "remote", "add", "origin", str(self.bare))

    def commit(self, files: dict[str, str], message: str, tag: str | None = None) -> str:
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git(self.work, "add", "--all")
        git(self.work, "commit", "--quiet", "-m", message)
        if tag:
            git(self.work, "tag", "-a", tag, "-m", tag)
        git(self.work, "push", "--quiet", "--follow-tags", "origin", "HEAD:main")
        return git(self.work, "rev-parse", "HEAD")

    def clone(self, dest: Path) -> Path:
        git(dest.parent, "clone", "--quiet", str(self.bare), str(dest))
        return dest


def version_file(version: str) -> dict[str, str]:
    return {"troupe/__init__.py": f'__version__ = "{version}"\n'}
