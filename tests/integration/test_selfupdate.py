"""troupe.selfupdate and troupe.version against real git repositories: fetch, verify,
switch, reinstall, revert, and the clear errors (no supervisor involved here)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.gitrepos import Origin, git, version_file
from troupe.selfupdate import (
    Checkout,
    DirtyCheckout,
    FetchFailed,
    InstallFailed,
    NotACheckout,
    NotDescendant,
    UnknownRef,
    UnsignedTag,
    switch_and_install,
)
from troupe.version import describe

pytestmark = pytest.mark.integration


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    origin = Origin(tmp_path)
    origin.commit(version_file("0.1.0") | {"pyproject.toml": "[project]\n"}, "first", "v0.1.0")
    return origin


def test_fetch_and_switch_to_a_new_commit_records_the_previous_one(
    origin: Origin, tmp_path: Path
) -> None:
    clone = origin.clone(tmp_path / "clone")
    checkout = Checkout(clone)
    first = checkout.head
    assert describe(clone).label == f"0.1.0 · {first[:7]} · v0.1.0"
    second = origin.commit(version_file("0.2.0"), "second")
    checkout.fetch("origin")
    target = checkout.resolve("origin/main")
    assert target == second
    checkout.verify("origin/main", target, force=False, signed=False)
    assert switch_and_install(checkout, target, python="/nonexistent/python") == first
    assert checkout.head == second
    assert describe(clone).version == "0.2.0"
    assert (clone / ".troupe" / "previous").read_text().strip() == first
    assert git(clone, "status", "--porcelain") == ""  # the state directory is invisible
    assert checkout.revert() == first
    assert describe(clone).version == "0.1.0"


def test_a_dirty_checkout_is_refused(origin: Origin, tmp_path: Path) -> None:
    clone = origin.clone(tmp_path / "clone")
    (clone / "troupe" / "__init__.py").write_text('__version__ = "9.9.9"\n')
    checkout = Checkout(clone)
    with pytest.raises(DirtyCheckout, match=r"local changes \(troupe/__init__.py\)"):
        checkout.verify("origin/main", checkout.head, force=False, signed=False)


def test_an_unknown_ref_is_refused(origin: Origin, tmp_path: Path) -> None:
    checkout = Checkout(origin.clone(tmp_path / "clone"))
    checkout.fetch("origin")
    with pytest.raises(UnknownRef, match="no commit named 'origin/nope'"):
        checkout.resolve("origin/nope")
    with pytest.raises(UnknownRef, match="is not a git ref"):
        checkout.resolve("--upload-pack=touch /tmp/pwned")


def test_a_failed_fetch_is_reported(origin: Origin, tmp_path: Path) -> None:
    clone = origin.clone(tmp_path / "clone")
    git(clone, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    checkout = Checkout(clone)
    with pytest.raises(FetchFailed, match=r"fetching 'origin' failed: .*gone\.git"):
        checkout.fetch("origin")
    with pytest.raises(FetchFailed, match="no git remote named 'upstream'"):
        checkout.fetch("upstream")


def test_not_a_checkout(tmp_path: Path) -> None:
    with pytest.raises(NotACheckout, match="is not a git checkout"):
        Checkout(tmp_path)


def test_a_target_that_does_not_descend_is_refused_unless_forced(
    origin: Origin, tmp_path: Path
) -> None:
    first = git(origin.work, "rev-parse", "HEAD")
    origin.commit(version_file("0.2.0"), "second")
    clone = origin.clone(tmp_path / "clone")
    checkout = Checkout(clone)
    with pytest.raises(NotDescendant, match=r"does not descend from the current commit"):
        checkout.verify(first, first, force=False, signed=False)
    checkout.verify(first, first, force=True, signed=False)  # a downgrade, on purpose


def test_a_signed_tag_is_required_when_configured(origin: Origin, tmp_path: Path) -> None:
    checkout = Checkout(origin.clone(tmp_path / "clone"))
    with pytest.raises(UnsignedTag, match="is not a tag"):
        checkout.verify("origin/main", checkout.head, force=False, signed=True)
    with pytest.raises(UnsignedTag, match=r"tag 'v0\.1\.0' has no valid signature"):
        checkout.verify("v0.1.0", checkout.head, force=False, signed=True)


def fake_python(tmp_path: Path, exit_code: int) -> Path:
    """A stand-in for the virtualenv's python: records its arguments and directory."""
    script = tmp_path / "python"
    script.write_text(
        f'#!/bin/sh\necho "$PWD $*" >> {tmp_path}/installs\necho "no network" >&2\n'
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_dependencies_are_reinstalled_when_pyproject_changes(
    origin: Origin, tmp_path: Path
) -> None:
    clone = origin.clone(tmp_path / "clone")
    checkout = Checkout(clone)
    python = fake_python(tmp_path, 0)
    plain = origin.commit(version_file("0.2.0"), "no dependency change")
    checkout.fetch("origin")
    switch_and_install(checkout, plain, python=str(python))
    assert not (tmp_path / "installs").exists()
    deps = origin.commit({"pyproject.toml": "[project]\ndependencies = ['x']\n"}, "deps")
    checkout.fetch("origin")
    assert checkout.dependencies_changed(plain, deps) == ["pyproject.toml"]
    switch_and_install(checkout, deps, python=str(python))
    installs = (tmp_path / "installs").read_text().splitlines()
    assert installs == [f"{clone} -m pip install --quiet --disable-pip-version-check -e ."]


def test_a_failed_reinstall_switches_back(origin: Origin, tmp_path: Path) -> None:
    clone = origin.clone(tmp_path / "clone")
    checkout = Checkout(clone)
    before = checkout.head
    deps = origin.commit({"requirements.txt": "x\n"}, "deps")
    checkout.fetch("origin")
    with pytest.raises(InstallFailed, match="reinstalling dependencies failed: no network"):
        switch_and_install(checkout, deps, python=str(fake_python(tmp_path, 1)))
    assert checkout.head == before


def test_cli_without_a_supervisor_changes_nothing_and_says_why(
    origin: Origin, tmp_path: Path
) -> None:
    clone = origin.clone(tmp_path / "clone")
    before = Checkout(clone).head
    origin.commit(version_file("0.2.0"), "second")
    result = subprocess.run(
        [sys.executable, "-m", "troupe.cli", "self-update", "--checkout", str(clone)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "TROUPE_CHECKOUT"},
    )
    assert result.returncode == 1, result.stderr
    assert "no supervisor runs the replica" in result.stderr
    assert "Traceback" not in result.stderr
    assert Checkout(clone).head == before
    current = subprocess.run(
        [sys.executable, "-m", "troupe.cli", "self-update", "--current", "--checkout", str(clone)],
        capture_output=True,
        text=True,
    )
    assert current.stdout.strip() == f"0.1.0 · {before[:7]} · v0.1.0"


@pytest.fixture
def gnupg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A throwaway GnuPG home with one signing key, used by git to sign and verify."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    key = ["--quick-gen-key", "Test <test@example.invalid>", "ed25519", "sign", "never"]
    subprocess.run(["gpg", "--batch", "--passphrase", "", *key], check=True, capture_output=True)
    try:
        yield home
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], capture_output=True)


def test_a_signed_tag_is_accepted(origin: Origin, tmp_path: Path, gnupg: Path) -> None:
    clone = origin.clone(tmp_path / "clone")
    origin.commit(version_file("0.2.0"), "second")
    git(origin.work, "tag", "-s", "v0.2.0", "-m", "v0.2.0", "-u", "test@example.invalid")
    git(origin.work, "push", "--quiet", "origin", "v0.2.0")
    checkout = Checkout(clone)
    checkout.fetch("origin")
    target = checkout.resolve("v0.2.0")
    checkout.verify("v0.2.0", target, force=False, signed=True)  # raises if not accepted
    assert describe(clone).version == "0.1.0"  # verifying changes nothing
