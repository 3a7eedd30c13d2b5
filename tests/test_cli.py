"""The command line: admin commands in-process, client commands as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import typer

from assist.broker.server import Broker
from assist.cli import main
from assist.cli.app import app
from assist.core.session import State
from assist.store import Store
from tests.helpers import KeyPair, agent_client, store_at, tamper

pytestmark = pytest.mark.stores


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


def test_users_and_agents_crud_with_json(tmp_path: Path, keys: dict[str, KeyPair],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    db = store_at(tmp_path / "b.db")
    code, out, _ = run(["users", "add", "alice", "--key", str(keys["alice"].public),
                        "--db", db, "--json"], capsys)
    assert code == 0
    assert json.loads(out)["keys"][0]["fingerprint"] == keys["alice"].fingerprint
    code, out, _ = run(["agents", "add", "carol", "--key", str(keys["carol"].public),
                        "--db", db], capsys)
    assert code == 0 and "added agent carol" in out
    code, out, _ = run(["users", "list", "--db", db, "--json"], capsys)
    assert [u["name"] for u in json.loads(out)] == ["alice"]
    code, out, _ = run(["agents", "list", "--db", db], capsys)
    assert "carol" in out and keys["carol"].fingerprint in out
    code, out, _ = run(["users", "remove", "alice", "--db", db, "--json"], capsys)
    assert code == 0 and json.loads(out) == {"removed": "alice", "role": "user"}
    code, out, _ = run(["users", "list", "--db", db, "--json"], capsys)
    assert json.loads(out) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["users", "add", "x", "--key", "/nonexistent/key.pub"], "does not exist"),
        (["users", "add", "x", "--key", "{private}"], "is a private key"),
        (["users", "add", "x", "--key", "{garbage}"], "not an OpenSSH public key"),
        (["users", "add", "bad name"], "invalid name"),
        (["users", "remove", "ghost"], "no user named 'ghost'"),
    ],
)
def test_admin_errors_are_messages_not_tracebacks(
        tmp_path: Path, keys: dict[str, KeyPair], capsys: pytest.CaptureFixture[str],
        args: list[str], message: str) -> None:
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("hello\n")
    args = [a.format(private=keys["alice"].private, garbage=garbage) for a in args]
    Store(store_at(tmp_path / "b.db")).close()
    code, out, err = run([*args, "--db", store_at(tmp_path / "b.db")], capsys)
    assert code == 1
    assert message in " ".join(err.split())
    assert "Traceback" not in err + out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["users", "list"], "no store at"),
        (["users", "remove", "ghost"], "no store at"),
        (["audit", "verify"], "no store at"),
        (["agents", "list", "--db", "mysql://x"], "is not a store assist can use"),
    ],
)
def test_a_store_that_is_not_there_is_not_made_up(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    db = [] if "--db" in args else ["--db", str(tmp_path / "typo" / "b.db")]
    code, _out, err = run([*args, *db], capsys)
    assert code == 1 and message in " ".join(err.split()), err
    assert list(tmp_path.iterdir()) == [], "nothing is left behind by a typo"


def test_duplicate_name_and_key(tmp_path: Path, keys: dict[str, KeyPair],
                                capsys: pytest.CaptureFixture[str]) -> None:
    db = store_at(tmp_path / "b.db")
    run(["users", "add", "alice", "--key", str(keys["alice"].public), "--db", db], capsys)
    code, out, _ = run(["users", "add", "alice", "--db", db, "--json"], capsys)
    assert code == 1 and json.loads(out)["error"]["code"] == "duplicate"
    code, _, err = run(["agents", "add", "evil", "--key", str(keys["alice"].public),
                        "--db", db], capsys)
    assert code == 1 and "already registered to user 'alice'" in " ".join(err.split())


def test_audit_verify_passes_then_fails_after_an_edit(
        tmp_path: Path, keys: dict[str, KeyPair], capsys: pytest.CaptureFixture[str]) -> None:
    db = store_at(tmp_path / "b.db")
    for name in ("alice", "bob"):
        run(["users", "add", name, "--key", str(keys[name].public), "--db", db], capsys)
    code, out, _ = run(["audit", "verify", "--db", db, "--json"], capsys)
    assert code == 0 and json.loads(out)["records"] == 2
    tamper(db, "UPDATE audit SET data = '{\"name\":\"mallory\"}' WHERE seq = 1")
    code, _, err = run(["audit", "verify", "--db", db], capsys)
    assert code == 1 and "record 1 was changed" in err


def test_help_without_topic_when_not_interactive(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115
    code, _, err = run(["help", "--no-tui"], capsys)
    assert code == 1 and "say what you need help with" in err


def test_help_refuses_a_program_to_share_without_the_app(
        capsys: pytest.CaptureFixture[str]) -> None:
    for plain in ("--no-tui", "--json-events"):
        code, _, err = run(["help", "printer", plain, "--cmd", "vim"], capsys)
        assert code == 1 and "--cmd shares a program in the app's terminal" in err


def _assist(*args: str) -> list[str]:
    return [sys.executable, "-m", "assist", *args]


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *_assist(*args), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=os.environ.copy())


async def _read_until(stream: asyncio.StreamReader, needle: str, timeout: float = 20) -> str:
    seen = ""
    async with asyncio.timeout(timeout):
        while needle not in seen:
            line = await stream.readline()
            if not line:
                raise AssertionError(f"stream ended before {needle!r}; got:\n{seen}")
            seen += line.decode()
    return seen


@pytest.mark.slow
async def test_help_no_tui_joins_meets_agent_and_ends(broker: Broker,
                                                      keys: dict[str, KeyPair]) -> None:
    address = f"127.0.0.1:{broker.port}"
    proc = await _spawn("help", "printer jam", "--no-tui", "--broker", address,
                        "--key", str(keys["alice"].private), "--yes")
    assert proc.stdout is not None and proc.stderr is not None
    await _read_until(proc.stdout, "position 1")
    carol = await agent_client(broker, keys["carol"])
    info = await carol.accept()
    assert info.user == "alice" and info.topic == "printer jam"
    await _read_until(proc.stdout, "Connected with carol")
    await carol.end(info.session, "paper tray sensor", resolved=True)
    tail = await _read_until(proc.stdout, "Session ended (resolved)")
    assert "Traceback" not in tail
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert "trusting broker" in (await proc.stderr.read()).decode()
    await carol.link.close()


@pytest.mark.slow
async def test_help_no_tui_ctrl_c_leaves_queue_as_abandoned(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    proc = await _spawn("help", "wifi", "--no-tui", "--broker", f"127.0.0.1:{broker.port}",
                        "--key", str(keys["bob"].private), "--yes")
    assert proc.stdout is not None
    await _read_until(proc.stdout, "Waiting for an agent")
    proc.send_signal(signal.SIGINT)
    out = await _read_until(proc.stdout, "You left the queue")
    assert "Traceback" not in out
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert broker.store is not None
    sessions = broker.store.sessions.between(0, 1e12)
    assert [(s.user, s.state) for s in sessions] == [("bob", State.ABANDONED)]


@pytest.mark.slow
async def test_queue_json_and_untrusted_broker(broker: Broker, keys: dict[str, KeyPair]) -> None:
    address = f"127.0.0.1:{broker.port}"
    # Without --yes and without a terminal to ask on, the unknown broker is refused.
    proc = await _spawn("queue", "--broker", address, "--key", str(keys["carol"].private))
    out, err = await proc.communicate()
    assert proc.returncode == 1 and b"not trusted" in err and b"Traceback" not in err
    proc = await _spawn("queue", "--json", "--broker", address, "--key",
                        str(keys["carol"].private), "--yes")
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert json.loads(out)["entries"] == []
    # A user key cannot list the queue.
    proc = await _spawn("queue", "--json", "--broker", address, "--key",
                        str(keys["alice"].private), "--yes")
    out, _ = await proc.communicate()
    assert proc.returncode == 1 and json.loads(out)["error"]["code"] == "auth"


def test_totp_enrolment_prints_a_qr_and_never_audits_the_secret(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyotp

    from assist.cli.admin import open_store

    db = store_at(tmp_path / "b.db")
    assert run(["users", "add", "erin", "--db", db], capsys)[0] == 0
    code, out, _ = run(["users", "enrol-totp", "erin", "--db", db], capsys)
    assert code == 0 and "otpauth://totp/" in out and "▄" in out  # the QR code
    code, out, _ = run(["users", "enrol-totp", "erin", "--db", db, "--json"], capsys)
    enrolled = json.loads(out)
    with open_store(db) as store:  # with the broker's secret key: it is sealed
        secret = store.directory.totp_secret("erin")
        assert secret == enrolled["secret"]
        assert pyotp.TOTP(secret).verify(pyotp.TOTP(enrolled["secret"]).now())
        audit = [(r.action, r.data) for r in store.audit.records()]
        assert ("totp-enrol", {"name": "erin"}) in audit
        assert secret not in json.dumps(audit)
    code, out, _ = run(["users", "enrol-totp", "nobody", "--db", db, "--json"], capsys)
    assert code == 1 and json.loads(out)["error"]["code"] == "not-found"
    assert run(["users", "remove-totp", "erin", "--db", db], capsys)[0] == 0
    with open_store(db) as store:
        assert store.directory.totp_secret("erin") is None


def test_usage_mistakes_exit_2_with_the_usage_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["users", "add"], capsys)
    assert code == 2 and "Missing argument" in err and "internal error" not in err
    code, _, err = run(["no-such-command"], capsys)
    assert code == 2 and "No such command" in err


def test_a_bug_is_a_message_that_offers_details_only_where_v_exists(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("assist.cli.serve.BrokerConfig.load", broken)
    monkeypatch.setattr("assist.cli.doctor.loose_files", broken)
    code, _, err = run(["serve", "--db", str(tmp_path / "b.db")], capsys)
    assert code == 70 and "internal error (RuntimeError: boom)" in err
    assert "-vv shows details" in err and "Traceback" not in err
    code, _, err = run(["doctor"], capsys)
    assert code == 70 and "internal error (RuntimeError: boom)" in err
    assert "-vv" not in err, "doctor has no -v to offer"


def test_ctrl_c_during_a_command_says_interrupted_and_exits_130(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("assist.cli.doctor.loose_files", interrupted)
    code, out, err = run(["doctor"], capsys)
    assert code == 130 and err.strip() == "interrupted" and not out


def test_the_error_tree_names_every_error() -> None:
    import importlib
    import pkgutil

    import assist
    from assist import errors

    for module in pkgutil.walk_packages(assist.__path__, "assist."):
        if module.name != "assist.__main__":  # that one runs the command line
            importlib.import_module(module.name)

    def subclasses(cls: type) -> set[type]:
        found = set(cls.__subclasses__())
        for sub in list(found):
            found |= subclasses(sub)
        return found

    drawn = errors.__doc__ or ""
    missing = sorted(c.__name__ for c in subclasses(errors.AssistError)
                     if f" {c.__name__} " not in drawn and not c.__module__.startswith("tests"))
    assert missing == []


def test_no_help_text_loses_words_to_markup() -> None:
    # Help is rendered as Rich markup: "[platform data dir]" would vanish. Only real
    # styles ([bold]...[/]) may be in brackets.
    from rich.errors import StyleSyntaxError
    from rich.markup import RE_TAGS
    from rich.style import Style

    def walk(command: click.Command) -> Iterator[click.Command]:
        yield command
        for sub in getattr(command, "commands", {}).values():
            yield from walk(sub)

    for command in walk(typer.main.get_command(app)):
        texts = [command.help or "", command.epilog or ""]
        texts += [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            for found in RE_TAGS.finditer(text):
                _, escapes, tag = found.groups()
                if escapes or tag.startswith("/"):
                    continue
                try:
                    Style.parse(tag)
                except StyleSyntaxError:
                    raise AssertionError(f"{command.name}: [{tag}] would be eaten") from None


def test_help_speaks_of_an_agent_and_offers_shell_completion(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["agents", "--help"])
    text = capsys.readouterr().out
    assert "Register an agent" in text and "a agent" not in text
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "--install-completion" in text and "--show-completion" in text


def test_a_missing_key_or_no_key_at_all_is_said_before_any_network(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSIST_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("ASSIST_KEY", raising=False)
    # Port 9 on loopback: nothing listens, so a network attempt would say so instead.
    folder = tmp_path / "keys"
    folder.mkdir()
    missing = tmp_path / "nope"
    for args, said in ((["--key", str(missing)], f"key file {missing} does not exist"),
                       (["--key", str(folder)], f"{folder} is a directory, not a key file"),
                       (["--key", "/proc/self/mem"], "cannot read key file /proc/self/mem"),
                       ([], "no SSH key found; run `assist help --join ...`")):
        with pytest.raises(SystemExit) as exit_:
            main(["queue", "--broker", "127.0.0.1:9", "--yes", *args])
        err = capsys.readouterr().err
        assert exit_.value.code == 1 and said in " ".join(err.split()), err
        assert "cannot reach" not in err


def test_files_that_are_not_utf8_text_are_named_not_crashed_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    config.mkdir()
    monkeypatch.setenv("ASSIST_CONFIG_DIR", str(config))
    (config / "client.toml").write_bytes(b"\xff\xfe broker = 1")
    book = tmp_path / "book.yaml"
    book.write_bytes(b"name: x\nsteps: [\xff]\n")
    for argv, said in ((["queue", "--yes"], f"{config}/client.toml is not UTF-8 text"),
                       (["agent", "run", str(book), "--session", "s1"],
                        f"{book} is not UTF-8 text")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = "".join(capsys.readouterr().err.split())  # long paths wrap anywhere
        assert exit_.value.code == 1 and "".join(said.split()) in err, err
        assert "internalerror" not in err and "Traceback" not in err


def test_ctrl_c_while_assist_is_still_loading_is_a_quiet_exit(tmp_path: Path) -> None:
    import subprocess
    import time

    proc = subprocess.Popen([sys.executable, "-m", "assist", "users", "list", "--db",
                             str(tmp_path / "b.db")], stderr=subprocess.PIPE, text=True)
    time.sleep(0.15)  # Textual, asyncssh and aiortc take longer than this to load
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    # -SIGINT: the signal came before Python itself was up (its default kills quietly).
    assert proc.returncode in (0, 130, -signal.SIGINT), err


def test_json_into_a_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    import subprocess

    db = store_at(tmp_path / "b.db")
    with Store(db) as store:
        for n in range(3000):  # more than a pipe holds
            store.audit.append(float(n), "admin", "note", None, {"n": n})
    proc = subprocess.Popen(_assist("audit", "show", "--db", db, "--json"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1) == b"["
    proc.stdout.close()  # as `| head -c 1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err
