"""FabricRemote against real sshd processes on loopback, and LocalRemote on this machine."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import socket
import stat
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.helpers import wait_for
from troupe import remote as remote_module
from troupe.errors import CommandTimeout, ConnectError, InputError, RemoteError
from troupe.inventory import Host
from troupe.remote import CommandResult, FabricRemote, LocalRemote, Remote, connect
from troupe.sshfleet import SshFleet

pytestmark = pytest.mark.integration

Fleet = Callable[[int], SshFleet]
USER_HOME = Path("/home/troupe-test")


@pytest.fixture(scope="module")
def fleet() -> Iterator[SshFleet]:
    """Three hosts shared by the tests that do not break them."""
    workdir = Path(tempfile.mkdtemp(prefix="troupe-fleet-"))
    shared = SshFleet(3, workdir)
    yield shared
    shared.stop()
    assert not pids_running(str(workdir)), "an sshd of the fleet outlived stop()"
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def host1(fleet: SshFleet) -> Iterator[FabricRemote]:
    remote = FabricRemote(fleet.inventory().host("host01"))
    yield remote
    remote.close()


def host_root(remote: Remote) -> Path:
    return Path(remote.host.vars["root"])


def pids_running(text: str) -> list[int]:
    """PIDs of every process on this machine whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


def unique_sleep() -> str:
    """A sleep whose command line no other process has, to look for it afterwards."""
    return f"sleep 29.{secrets.randbelow(10**6):06d}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def local_host(name: str = "self") -> Host:
    return Host(
        name=name,
        connection="local",
        address="127.0.0.1",
        port=22,
        user=None,
        key_file=None,
        connect_timeout=5,
    )


# ---- running commands --------------------------------------------------------------------


def test_exit_code_stdout_and_stderr_are_captured(host1: FabricRemote) -> None:
    result = host1.run("echo out; echo err >&2; exit 3")
    assert result == CommandResult(3, "out\n", "err\n", result.duration)
    assert not result.ok and 0 < result.duration < 5
    assert host1.run("true").ok


def test_the_login_environment_is_usable(host1: FabricRemote) -> None:
    result = host1.run(
        'echo "$HOME" "$(id -un)"; pwd; for c in timeout sudo; do command -v $c; done'
    )
    lines = result.stdout.splitlines()
    assert result.ok and result.stderr == ""  # no "could not chdir", no rc-file noise
    assert lines[0] == f"{USER_HOME} troupe-test" and lines[1] == str(USER_HOME)
    assert lines[2:] == ["/usr/bin/timeout", "/usr/bin/sudo"]


def test_stdin_is_closed_and_big_output_is_not_truncated(host1: FabricRemote) -> None:
    for sudo, timeout in ((False, None), (True, 5.0)):  # the bare and the wrapped command line
        waiting = host1.run("cat", sudo=sudo, timeout=timeout)  # would wait for input forever
        assert waiting.ok and waiting.stdout == "" and waiting.duration < 1
    big = host1.run("head -c 3000000 /dev/zero | tr '\\0' x; head -c 300000 /dev/zero >&2")
    assert big.ok and big.stdout == "x" * 3_000_000 and len(big.stderr) == 300_000


def test_sudo_runs_as_root_and_quoting_survives(host1: FabricRemote) -> None:
    assert host1.run("id -u", sudo=True).stdout.strip() == "0"
    assert host1.run("id -u").stdout.strip() not in ("", "0")
    tricky = 'it\'s "quoted" $HOME `x` ; done'
    for sudo, timeout in ((False, None), (True, None), (False, 5.0), (True, 5.0)):
        result = host1.run(f"printf %s {shlex.quote(tricky)}", sudo=sudo, timeout=timeout)
        assert result.stdout == tricky, (sudo, timeout)


def test_injected_text_inside_a_quoted_value_never_runs(host1: FabricRemote) -> None:
    value = "1.0; touch pwned"
    root = host_root(host1)
    for sudo, timeout in ((False, None), (True, 10.0)):
        command = f"cd {shlex.quote(str(root))} && echo {shlex.quote(value)} > version"
        host1.run(command, sudo=sudo, timeout=timeout)
        assert (root / "version").read_text() == value + "\n"
    assert not (root / "pwned").exists() and not (USER_HOME / "pwned").exists()


def test_one_connection_serves_every_command_and_thread(host1: FabricRemote) -> None:
    transport = host1.transport
    for _ in range(20):
        host1.run("true")
    results: list[CommandResult] = []

    def work() -> None:
        results.extend(host1.run(f"echo {i}") for i in range(5))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 40 and all(r.ok for r in results)
    assert host1.transport is transport


def test_a_child_holding_the_output_open_does_not_hang_the_command(
    host1: FabricRemote, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote_module, "EOF_GRACE", 0.3)
    started = time.monotonic()
    result = host1.run(f"{unique_sleep()} & echo early")
    assert result.ok and result.stdout == "early\n"
    assert time.monotonic() - started < 2


# ---- timeouts and failures ---------------------------------------------------------------


def test_timeout_cuts_the_command_and_kills_it_on_the_host(host1: FabricRemote) -> None:
    sleeper = unique_sleep()
    for sudo in (False, True):
        started = time.monotonic()
        with pytest.raises(CommandTimeout) as caught:
            host1.run(sleeper, sudo=sudo, timeout=1)
        assert time.monotonic() - started < 1.5
        assert caught.value.host == "host01" and caught.value.command == sleeper
        assert "timed out after 1s" in str(caught.value)
        wait_for(lambda: not pids_running(sleeper), timeout=4, what=f"{sleeper} to be killed")
    assert host1.run("echo still here").stdout == "still here\n"  # the connection is fine


def test_killed_host_mid_command_is_a_connect_error(ssh_fleet: Fleet) -> None:
    fleet = ssh_fleet(2)
    remote = FabricRemote(fleet.inventory().host("host02"))
    sleeper = unique_sleep()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            remote.run(sleeper)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: pids_running(sleeper), what="the remote sleep to start")
    killed_at = time.monotonic()
    fleet.kill(1)
    thread.join(timeout=10)
    assert time.monotonic() - killed_at < 2
    assert len(failures) == 1 and isinstance(failures[0], ConnectError)
    assert "host02" in str(failures[0]) and "connection lost" in str(failures[0])
    with pytest.raises(ConnectError, match="host02: connection refused"):
        remote.run("true")  # reconnecting finds nobody listening
    assert not pids_running(sleeper)


def test_connection_refused_and_authentication_failed(fleet: SshFleet) -> None:
    host = fleet.inventory().host("host01")
    nobody = host.model_copy(update={"name": "ghost", "address": "127.0.0.1", "port": free_port()})
    with pytest.raises(ConnectError, match=r"^ghost: connection refused by troupe-test@127\.0"):
        FabricRemote(nobody).run("true")
    wrong_user = host.model_copy(update={"user": "root"})
    with pytest.raises(ConnectError, match="host01: authentication failed for root@"):
        FabricRemote(wrong_user).run("true")


# ---- uploads ---------------------------------------------------------------------------------


def test_put_with_mode_and_as_root(
    host1: FabricRemote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = f"test{secrets.randbelow(10**9)}"
    monkeypatch.setattr(secrets, "token_hex", lambda n: staging)  # the staging name
    src = tmp_path / "app.conf"
    src.write_text("listen 8080\n")
    root = host_root(host1)
    host1.put(src, f"{root}/app.conf", mode="0640")
    placed = (root / "app.conf").stat()
    assert (root / "app.conf").read_text() == "listen 8080\n"
    assert stat.S_IMODE(placed.st_mode) == 0o640 and placed.st_uid != 0

    private = root / "etc"
    private.mkdir(exist_ok=True)  # owned by root: the login user cannot write here
    with pytest.raises(RemoteError, match=r"host01: upload to .* failed: Permission denied"):
        host1.put(src, f"{private}/app.conf")
    host1.put(src, f"{private}/app.conf", mode="600", sudo=True)
    placed = (private / "app.conf").stat()
    assert stat.S_IMODE(placed.st_mode) == 0o600 and placed.st_uid == 0
    assert not Path(f"/tmp/.troupe-upload-{staging}").exists()  # the staged copy is gone


# ---- jump hosts --------------------------------------------------------------------------


def test_jump_host_carries_the_connection(ssh_fleet: Fleet) -> None:
    fleet = ssh_fleet(2)
    inventory = fleet.inventory()
    hosts = dict(inventory.hosts)
    hosts["host02"] = hosts["host02"].model_copy(update={"jump": "host01"})
    inventory = inventory.model_copy(update={"hosts": hosts})
    target = FabricRemote(inventory.host("host02"))
    assert target.run("echo $SSH_CONNECTION").stdout.split()[2] == "127.0.1.3"
    assert type(target.transport.sock).__name__ == "Channel"  # a direct-tcpip channel via host01
    fleet.kill(0)  # the jump host dies: so does the way to host02
    with pytest.raises(ConnectError, match="host02"):
        target.run("true")
    with pytest.raises(ConnectError, match="host02: via jump host host01: connection refused"):
        target.run("true")


# ---- LocalRemote -------------------------------------------------------------------------


def test_local_remote_runs_commands(tmp_path: Path) -> None:
    local = connect(local_host())
    assert isinstance(local, LocalRemote)
    result = local.run("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert local.run("id -u", sudo=True).stdout.strip() == "0"
    assert local.run("cat", timeout=5).stdout == ""  # stdin is /dev/null
    value = "1.0; touch pwned"
    done = local.run(f"cd {tmp_path} && echo {shlex.quote(value)} > v", sudo=True, timeout=5)
    assert done.ok and (tmp_path / "v").read_text() == value + "\n"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_local_timeout_kills_the_whole_process_group() -> None:
    local = LocalRemote(local_host())
    first, second = unique_sleep(), unique_sleep()
    for sudo in (False, True):
        started = time.monotonic()
        with pytest.raises(CommandTimeout, match=r"self: timed out after 0\.5s"):
            local.run(f"{first} & {second}", sudo=sudo, timeout=0.5)
        assert time.monotonic() - started < 1.5
        wait_for(lambda: not pids_running(first) and not pids_running(second), timeout=4)


def test_local_put(tmp_path: Path) -> None:
    local = LocalRemote(local_host())
    src = tmp_path / "src"
    src.write_text("data")
    local.put(src, str(tmp_path / "a"), mode="0600")
    local.put(src, str(tmp_path / "b"), mode="0644", sudo=True)
    assert (tmp_path / "a").read_text() == (tmp_path / "b").read_text() == "data"
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o644
    with pytest.raises(RemoteError, match="self: copy to"):
        local.put(src, str(tmp_path / "missing" / "c"))
    with pytest.raises(InputError, match="octal"):
        local.put(src, str(tmp_path / "d"), mode="u+x")
    with pytest.raises(InputError, match="no file to upload"):
        local.put(tmp_path / "absent", str(tmp_path / "d"))


def test_connect_picks_the_remote_by_connection(fleet: SshFleet) -> None:
    remote = connect(fleet.inventory().host("host03"))
    assert isinstance(remote, FabricRemote)
    assert remote.run("echo $SSH_CONNECTION").stdout.split()[2] == "127.0.1.4"
    remote.close()


# ---- speed (printed, not asserted) ---------------------------------------------------------


def test_latency_report(fleet: SshFleet, capsys: pytest.CaptureFixture[str]) -> None:
    from fabric import Connection  # noqa: PLC0415 - only this comparison needs plain Fabric

    host = fleet.inventory().host("host02")
    began = time.perf_counter()
    remote = FabricRemote(host).open()
    connected = time.perf_counter()
    remote.run("true")
    first = time.perf_counter() - connected
    samples = []
    for _ in range(100):
        began_one = time.perf_counter()
        remote.run("true")
        samples.append(time.perf_counter() - began_one)
    remote.close()
    key = {"key_filename": host.key_file}
    plain = Connection(host.address, user=host.user, port=host.port, connect_kwargs=key)
    plain.run("true", hide=True, in_stream=False)
    fabric_samples = []
    for _ in range(20):
        began_one = time.perf_counter()
        plain.run("true", hide=True, in_stream=False)
        fabric_samples.append(time.perf_counter() - began_one)
    plain.close()
    with capsys.disabled():
        print(
            f"\nFabricRemote: connect {(connected - began) * 1000:.1f} ms, "
            f"first command {first * 1000:.1f} ms, "
            f"median `true` {statistics.median(samples) * 1000:.2f} ms "
            f"(p90 {sorted(samples)[89] * 1000:.2f} ms); "
            f"plain Fabric median {statistics.median(fabric_samples) * 1000:.1f} ms"
        )
