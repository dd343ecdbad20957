"""What version of Troupe a checkout holds, and what this process runs (edge: reads git).

A version is three things a person may ask about: the package version
(`troupe/__init__.py`'s `__version__`), the commit, and the tag pointing at that commit
if there is one. `label` joins them as `0.1.0 · abc1234 · v0.1.0` for roll call, census
and the self-update thread.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import git

import troupe

_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.M)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Version:
    version: str  # __version__ of the checkout
    commit: str  # full hex sha, or "unknown" outside a git checkout
    tag: str | None = None  # a tag pointing at the commit

    @property
    def short(self) -> str:
        return self.commit[:7] if self.commit != UNKNOWN else UNKNOWN

    @property
    def label(self) -> str:
        parts = [self.version, self.short] + ([self.tag] if self.tag else [])
        return " · ".join(parts)


def describe(path: Path) -> Version:
    """The version of the checkout at `path` (its working tree's `troupe/__init__.py`)."""
    version = _package_version(path / "troupe" / "__init__.py")
    try:
        repo = git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return Version(version, UNKNOWN)
    with repo:
        try:
            commit = repo.head.commit.hexsha
        except ValueError:  # a repository without commits
            return Version(version, UNKNOWN)
        return Version(version, commit, _tag_at(repo, commit))


def _package_version(init: Path) -> str:
    try:
        match = _VERSION.search(init.read_text(encoding="utf-8"))
    except OSError:
        return UNKNOWN
    return match.group(1) if match else UNKNOWN


def _tag_at(repo: git.Repo, commit: str) -> str | None:
    """The newest-named tag on `commit` (sorted like versions), if any."""
    names = repo.git.tag("--points-at", commit, "--sort=-v:refname").split()
    return names[0] if names else None


def checkout_of_this_process() -> Path:
    """The directory holding the `troupe` package this process imported."""
    return Path(troupe.__file__).resolve().parent.parent


@functools.cache
def current() -> Version:
    """This process's version: the package it imported, and the commit of its checkout
    when it runs from one (read once: a later switch of the checkout is not this
    process's version until it restarts)."""
    found = describe(checkout_of_this_process())
    return Version(troupe.__version__, found.commit, found.tag)
