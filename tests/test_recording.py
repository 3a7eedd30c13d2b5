"""Session recordings: the asciicast v2 writer, the reader, `asciinema cat` and `assist replay`."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from assist.broker import recording
from assist.broker.recording import Recorder
from assist.cli import main
from assist.cli.replay import MarkerFolder, Player, Summary
from assist.errors import ConfigError, NotFound, StoreError
from assist.share.emulator import Emulator
from assist.store.cast import Cast, Event, parse_typed, typed_marker
from tests.helpers import asciinema_cat

T0 = 1_700_000_000.0
ASCIINEMA = shutil.which("asciinema")


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(path: Path) -> tuple[dict[str, Any], list[list[Any]]]:
    header, *events = path.read_text(encoding="utf-8").splitlines()
    return json.loads(header), [json.loads(e) for e in events]


def kinds(events: list[list[Any]], kind: str) -> list[Any]:
    return [e[2] for e in events if e[1] == kind]


def record(tmp_path: Path, **kw: Any) -> Recorder:
    return Recorder.open(tmp_path / "rec", "s1", 80, 24, T0, "alice: printer", **kw)


# -- writer ------------------------------------------------------------------------------


def test_header_and_file_modes(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "rec"
    rec = Recorder.open(directory, "abc123", 120, 40, T0 + 0.7, "alice: vpn (agent carol)")
    rec.close()
    header, events = lines(directory / "abc123.cast")
    assert header == {"version": 2, "width": 120, "height": 40, "timestamp": int(T0),
                      "title": "alice: vpn (agent carol)", "env": {"TERM": "xterm-256color"}}
    assert events == []
    assert stat.S_IMODE((directory / "abc123.cast").stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert rec.closed and rec.error is None


def test_utf8_split_across_chunks_at_every_position(tmp_path: Path) -> None:
    text = "naïve 日本語 🎉 ok\r\n"
    data = text.encode()
    for cut in range(1, len(data)):
        rec = Recorder.open(tmp_path, f"cut{cut}", 80, 24, T0)
        rec.output(data[:cut], T0 + 1)
        rec.output(data[cut:], T0 + 2)
        rec.close()
        _, events = lines(tmp_path / f"cut{cut}.cast")
        assert "".join(kinds(events, "o")) == text, cut


def test_utf8_split_one_byte_at_a_time_and_bad_bytes(tmp_path: Path) -> None:
    rec = record(tmp_path)
    for byte in "€uro".encode():
        rec.output(bytes([byte]), T0 + 1)
    rec.output(b"\xff!", T0 + 2)
    rec.output("é".encode()[:1], T0 + 3)  # the session ends in the middle of a character
    rec.close()
    _, events = lines(rec.path)
    assert "".join(kinds(events, "o")) == "€uro\ufffd!\ufffd"


def test_agent_input_is_attributed(tmp_path: Path) -> None:
    rec = record(tmp_path)
    rec.output(b"$ ", T0 + 1)
    rec.agent_input("carol", b"ls\r", T0 + 2)
    ue = "ü".encode()
    rec.agent_input("carol", ue[:1], T0 + 3)
    rec.agent_input("dave", b"x", T0 + 3.5)  # another agent's bytes do not join carol's
    rec.agent_input("carol", ue[1:], T0 + 4)
    rec.agent_input("carol", b"", T0 + 5)
    rec.close()
    _, events = lines(rec.path)
    assert kinds(events, "i") == ["ls\r", "x", "ü"]
    assert kinds(events, "m") == ["agent:carol typed 3 bytes", "agent:carol typed 1 byte",
                                  "agent:dave typed 1 byte", "agent:carol typed 1 byte"]
    assert events[1] == [2.0, "i", "ls\r"] and events[2] == [2.0, "m", "agent:carol typed 3 bytes"]


def test_hidden_input_records_a_marker_and_never_the_secret(tmp_path: Path) -> None:
    rec = record(tmp_path)
    rec.output(b"Password: ", T0 + 1)
    rec.hidden(True, T0 + 2)
    rec.hidden(True, T0 + 2.1)  # said twice: still one marker
    assert rec.hidden_input
    rec.output(b"hunter2", T0 + 3)
    rec.agent_input("carol", b"hunter2\r", T0 + 3.5)
    rec.snapshot(b"\x1b[H\x1b[2JPassword: hunter2", 80, 24, T0 + 3.8)
    rec.hidden(False, T0 + 4)
    rec.output(b"\r\nwelcome\r\n", T0 + 5)
    rec.close()
    raw = rec.path.read_bytes()
    assert b"hunter2" not in raw
    _, events = lines(rec.path)
    assert kinds(events, "m") == ["[hidden input]",
                                  "agent:carol typed 8 bytes (hidden, not recorded)",
                                  "[input visible]"]
    assert kinds(events, "i") == []
    assert "".join(kinds(events, "o")) == \
        "Password: \x1b[2m[hidden input]\x1b[22m\r\nwelcome\r\n"


def test_a_privacy_pause_records_its_markers_and_nothing_while_it_lasts(
        tmp_path: Path) -> None:
    rec = record(tmp_path)
    rec.output(b"$ ", T0 + 1)
    rec.hidden(True, T0 + 2, "secret")
    rec.hidden(True, T0 + 3, "paused")  # paused during a secret prompt: said at once
    rec.output(b"private-mail", T0 + 4)
    rec.snapshot(b"\x1b[H\x1b[2Jprivate-mail", 80, 24, T0 + 4.5)
    rec.hidden(True, T0 + 5, "paused")  # said again (a reconnect): no second marker
    rec.hidden(False, T0 + 6, "paused")
    rec.output(b"back\r\n", T0 + 7)
    rec.close()
    assert b"private-mail" not in rec.path.read_bytes()
    _, events = lines(rec.path)
    assert kinds(events, "m") == ["[hidden input]", "[paused by the user]",
                                  "[sharing resumed]"]
    assert "".join(kinds(events, "o")) == ("$ \x1b[2m[hidden input]\x1b[22m"
                                           "\x1b[2m[paused by the user]\x1b[22mback\r\n")
    summary = Summary()
    for event in Cast.open(rec.path).events():
        summary.add(event)
    assert summary.paused == 1 and summary.hidden == 1


def test_hidden_drops_a_half_character_from_before(tmp_path: Path) -> None:
    rec = record(tmp_path)
    rec.output("é".encode()[:1], T0 + 1)
    rec.hidden(True, T0 + 2)
    rec.hidden(False, T0 + 3)
    rec.output("é".encode()[1:] + b"x", T0 + 4)
    rec.close()
    _, events = lines(rec.path)
    assert kinds(events, "o")[-1] == "\ufffdx"  # a lone continuation byte, not a joined "é"


def test_resize_and_snapshot(tmp_path: Path) -> None:
    rec = record(tmp_path)
    rec.resize(80, 24, T0 + 1)  # unchanged: nothing
    rec.resize(100, 30, T0 + 2)
    rec.output("ab\xc3".encode("latin-1"), T0 + 3)
    rec.snapshot("\x1b[H\x1b[2Jscreen é".encode(), 100, 30, T0 + 4)  # same size: no resize
    rec.snapshot(b"\x1b[H\x1b[2Jsmall", 60, 20, T0 + 5)
    rec.close()
    _, events = lines(rec.path)
    assert [e[1:] for e in events] == [
        ["r", "100x30"], ["o", "ab"], ["o", "\x1b[H\x1b[2Jscreen é"],
        ["r", "60x20"], ["o", "\x1b[H\x1b[2Jsmall"]]
    assert [e[0] for e in events] == [2.0, 3.0, 4.0, 5.0, 5.0]


def test_times_never_go_back_and_markers_are_one_line(tmp_path: Path) -> None:
    rec = record(tmp_path)
    rec.output(b"a", T0 + 5)
    rec.output(b"b", T0 + 4)
    rec.output(b"c", T0 - 10)
    rec.marker("control granted\nto carol  ", T0 + 6)
    rec.close(at=T0 + 7)
    _, events = lines(rec.path)
    assert [e[0] for e in events] == [5.0, 5.0, 5.0, 6.0, 7.0]
    assert kinds(events, "m") == ["control granted to carol", "end"]


def test_buffered_until_close_then_flushed(tmp_path: Path) -> None:
    clock = FakeClock()
    rec = record(tmp_path, clock=clock)
    rec.output(b"hello", T0 + 1)
    rec.agent_input("carol", b"x", T0 + 1.1)
    assert len(rec.path.read_text().splitlines()) == 1  # only the header so far
    rec.close()
    _, events = lines(rec.path)
    assert kinds(events, "o") == ["hello"] and kinds(events, "i") == ["x"]
    rec.output(b"after close", T0 + 9)  # ignored, no error
    assert b"after close" not in rec.path.read_bytes()


def test_flushed_when_old_enough_without_a_loop(tmp_path: Path) -> None:
    clock = FakeClock()
    rec = record(tmp_path, clock=clock)
    rec.output(b"one", T0 + 1)
    clock.now = 0.4
    rec.output(b"two", T0 + 1.4)
    assert b"one" not in rec.path.read_bytes()
    clock.now = 0.5
    rec.output(b"three", T0 + 1.5)
    assert b"three" in rec.path.read_bytes()
    rec.close()


async def test_flushed_by_timer_on_the_running_loop(tmp_path: Path) -> None:
    rec = record(tmp_path)
    rec.output(b"quiet after this", T0 + 1)
    assert b"quiet" not in rec.path.read_bytes()
    await asyncio.sleep(recording.FLUSH_INTERVAL + 0.2)
    assert b"quiet after this" in rec.path.read_bytes()
    rec.close()


def test_bulk_output_is_written_in_few_system_calls(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_write = os.write

    def counting_write(fd: int, data: Any) -> int:
        calls.append(len(data))
        return real_write(fd, data)

    rec = record(tmp_path)
    monkeypatch.setattr(recording, "_os_write", counting_write)
    chunk = (b"0123456789abcdef" * 256)[:4095] + b"\n"
    total = 8 * 1024 * 1024
    for _ in range(total // len(chunk)):
        rec.output(chunk, T0 + 1)
    rec.close()
    assert sum(calls) > total
    assert len(calls) <= total // recording.FLUSH_BYTES + 3
    assert len(calls) < (total // len(chunk)) // 50


def test_resumed_recording_appends_after_a_damaged_tail(tmp_path: Path) -> None:
    rec = record(tmp_path)
    rec.output(b"first part", T0 + 10)
    rec.close()
    with rec.path.open("ab") as file:
        file.write(b'[11.5, "o", "cut sho')  # the broker died mid-write
    again = Recorder.open(tmp_path / "rec", "s1", 100, 30, T0, "ignored", at=T0 + 5)
    again.output(b"second part", T0 + 20)
    again.close()
    header, events = lines(rec.path)
    assert header["title"] == "alice: printer" and header["width"] == 80
    assert events == [[10.0, "o", "first part"], [10.0, "m", "recording resumed"],
                      [10.0, "r", "100x30"], [20.0, "o", "second part"]]


def test_partial_header_starts_the_file_again(tmp_path: Path) -> None:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "s1.cast").write_bytes(b'{"version": 2, "wid')
    rec = record(tmp_path)
    rec.close()
    header, events = lines(rec.path)
    assert header["version"] == 2 and events == []


def test_open_errors_are_assist_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot create the recordings directory"):
        Recorder.open(tmp_path / "file" / "rec", "s1", 80, 24, T0)
    with pytest.raises(StoreError, match="not a valid session id"):
        Recorder.open(tmp_path, "../escape", 80, 24, T0)
    (tmp_path / "dir.cast").mkdir()
    with pytest.raises(StoreError, match=r"cannot create recording .*dir\.cast"):
        Recorder.open(tmp_path, "dir", 80, 24, T0)
    (tmp_path / "link.cast").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StoreError, match="symbolic link"):
        Recorder.open(tmp_path, "link", 80, 24, T0)
    assert not (tmp_path / "elsewhere").exists()


def test_write_error_stops_recording_without_raising(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = record(tmp_path)

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(recording, "_os_write", full)
    rec.output(b"x", T0 + 1)
    rec.flush()
    assert rec.error is not None and "No space left on device" in rec.error.message
    assert rec.closed
    rec.output(b"more", T0 + 2)
    rec.close()


def test_typed_marker_round_trip() -> None:
    assert parse_typed(typed_marker("carol", 1)) == ("carol", 1, False)
    assert parse_typed(typed_marker("d.ave@x", 12, hidden=True)) == ("d.ave@x", 12, True)
    assert parse_typed("agent:carol typed lots") is None
    assert parse_typed("[hidden input]") is None


# -- reader ---------------------------------------------------------------------------


def write_cast(path: Path, *events: str, header: str | None = None) -> Path:
    head = header if header is not None else '{"version": 2, "width": 80, "height": 24}'
    path.write_text("\n".join([head, *events]), encoding="utf-8")
    return path


def test_reader_stops_at_a_truncated_last_line(tmp_path: Path) -> None:
    path = write_cast(tmp_path / "t.cast", '[0.5, "o", "hello"]', "", '[1.0, "o", "wor')
    with Cast.open(path) as cast:
        assert list(cast.events()) == [Event(0.5, "o", "hello")]
        assert cast.truncated


def test_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        Cast.open(tmp_path / "missing.cast")
    with pytest.raises(StoreError, match="is a directory"):
        Cast.open(tmp_path)
    with pytest.raises(StoreError, match="is empty"):
        Cast.open(write_cast(tmp_path / "e.cast", header=""))
    with pytest.raises(StoreError, match="asciicast version 3"):
        Cast.open(write_cast(tmp_path / "v3.cast", header='{"version": 3, "term": {}}'))
    with pytest.raises(StoreError, match="no valid width"):
        Cast.open(write_cast(tmp_path / "w.cast", header='{"version": 2}'))
    with pytest.raises(StoreError, match="not UTF-8"):
        (tmp_path / "b.cast").write_bytes(b"\xff\xfe\x00garbage")
        Cast.open(tmp_path / "b.cast")
    bad = write_cast(tmp_path / "m.cast", '[0.5, "o", "a"]', "not json", '[1, "o", "b"]')
    with Cast.open(bad) as cast, pytest.raises(StoreError, match="line 3 is not an asciicast"):
        list(cast.events())


# -- the real asciinema -----------------------------------------------------------------------


@pytest.mark.skipif(ASCIINEMA is None, reason="asciinema is not installed")
def test_recording_plays_with_asciinema_cat(tmp_path: Path) -> None:
    assert ASCIINEMA is not None
    rec = record(tmp_path)
    data = "$ echo grüße 日本\r\ngrüße 日本\r\n".encode()
    rec.output(data[:12], T0 + 0.1)
    rec.output(data[12:], T0 + 0.2)
    rec.agent_input("carol", b"whoami\r", T0 + 1)
    rec.output(b"alice\r\n$ sudo true\r\nPassword: ", T0 + 1.1)
    rec.hidden(True, T0 + 2)
    rec.output(b"s3cret", T0 + 2.5)
    rec.hidden(False, T0 + 3)
    rec.resize(100, 30, T0 + 3.5)
    rec.output(b"\r\ndone\r\n", T0 + 4)
    rec.close(at=T0 + 5)
    result = asciinema_cat(rec.path, tmp_path / "asciinema")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert "$ echo grüße 日本\r\ngrüße 日本\r\n" in text
    assert "alice\r\n$ sudo true\r\nPassword: \x1b[2m[hidden input]\x1b[22m\r\ndone" in text
    assert "s3cret" not in text and "whoami" not in text  # input events are not output


@pytest.mark.skipif(ASCIINEMA is None, reason="asciinema is not installed")
def test_a_picture_with_wide_characters_plays_at_their_width(tmp_path: Path) -> None:
    screen = Emulator(20, 2)
    screen.feed("中文字符x\r\n\x1b[31m🙂ok\x1b[0m".encode())
    rec = record(tmp_path)
    rec.snapshot(screen.snapshot(), 20, 2, T0 + 1)
    rec.close(at=T0 + 2)
    result = asciinema_cat(rec.path, tmp_path / "asciinema")
    assert result.returncode == 0, result.stderr
    played = Emulator(20, 2)
    played.feed(result.stdout)
    assert played.text() == screen.text()
    assert played.text()[0].startswith("中文字符x")  # two columns each, nothing between


# -- assist replay ------------------------------------------------------------------------------


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


def session_cast(tmp_path: Path) -> Path:
    rec = record(tmp_path)
    rec.output("$ ls\r\nnotes.txt  café\r\n".encode(), T0 + 0.5)
    for i, key in enumerate(b"pwd\r"):
        rec.agent_input("carol", bytes([key]), T0 + 1 + i * 0.1)
    rec.output(b"/home/alice\r\n", T0 + 1.5)
    rec.hidden(True, T0 + 2)
    rec.hidden(False, T0 + 3)
    rec.output(b"bye\r\n", T0 + 100)  # a long pause: capped by the idle limit
    rec.close(at=T0 + 101)
    return rec.path


def test_replay_plays_fast_with_markers_on_stderr(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = session_cast(tmp_path)
    started = time.monotonic()
    code, out, err = run(["replay", str(path), "--speed", "50", "--idle-limit", "0.5"], capsys)
    assert time.monotonic() - started < 5
    assert code == 0
    assert out == ("$ ls\r\nnotes.txt  café\r\n/home/alice\r\n"
                   "\x1b[2m[hidden input]\x1b[22mbye\r\n")
    marker_lines = err.strip().splitlines()
    assert marker_lines == ["00:01.0-00:01.3  agent:carol typed 4 bytes",
                            "00:02.0  [hidden input]", "00:03.0  [input visible]",
                            "01:41.0  end"]


def test_replay_without_markers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["replay", str(session_cast(tmp_path)), "-s", "1000", "-i", "0.01",
                          "--no-markers"], capsys)
    assert code == 0 and "/home/alice" in out and err == ""


def test_replay_info_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = session_cast(tmp_path)
    code, out, _ = run(["replay", str(path), "--info"], capsys)
    assert code == 0
    assert "alice: printer" in out and "carol (4 bytes)" in out and "01:41.0" in out
    code, out, _ = run(["replay", str(path), "--json"], capsys)
    data = json.loads(out)
    assert data["header"]["width"] == 80
    summary = data["summary"]
    assert summary["duration"] == 101.0 and summary["agents_typed"] == {"carol": 4}
    assert summary["events"] == {"i": 4, "m": 7, "o": 4}
    assert summary["hidden_input"] == 1 and summary["truncated"] is False
    assert summary["markers"][0] == {"time": 1.0, "end": 1.3,
                                     "label": "agent:carol typed 4 bytes"}


def test_replay_truncated_plays_what_is_there(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = write_cast(tmp_path / "t.cast", '[0.1, "o", "kept\\r\\n"]', '[0.2, "o", "lo')
    code, out, err = run(["replay", str(path), "--speed", "100"], capsys)
    assert code == 0 and out == "kept\r\n"
    assert "cut short" in err


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "does not exist"),
        ('{\n  "version": 1,\n  "stdout": []\n}', [], "not an asciicast v2 recording"),
        ("", [], "is empty"),
        ('{"version": 2, "width": 80, "height": 24}', ["--speed", "0"], "--speed must be"),
        ('{"version": 2, "width": 80, "height": 24}', ["-i", "-1"], "--idle-limit must be"),
    ],
)
def test_replay_errors_are_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    content: str | None, args: list[str], message: str) -> None:
    path = tmp_path / "x.cast"
    if content is not None:
        path.write_text(content)
    code, out, err = run(["replay", str(path), *args], capsys)
    assert code == 1 and message in " ".join(err.split()) and "Traceback" not in err
    code, out, _ = run(["replay", str(path), *args, "--json"], capsys)
    assert code == 1 and message in json.loads(out)["error"]["message"]


def test_replay_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["replay", "--help"], capsys)
    assert code == 0
    assert "--idle-limit" in out and "--no-markers" in out and "asciicast" in out


def test_player_timing_caps_pauses_and_scales() -> None:
    clock = FakeClock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        clock.now += seconds

    written: list[str] = []
    player = Player(written.append, lambda: None, speed=2.0, idle_limit=3.0,
                    sleep=sleep, clock=clock)
    events = [Event(0.0, "o", "a"), Event(0.001, "o", "b"), Event(1.0, "o", "c"),
              Event(11.0, "r", "90x30"), Event(12.0, "o", "d")]
    player.play(events, summary := Summary())
    assert slept == [0.5, 1.5, 0.5]
    assert written == ["ab", "c", "d"]  # events due together go out in one write
    assert summary.duration == 12.0 and summary.resizes == 1


def test_player_sleeps_an_absurd_pause_in_naps_the_platform_takes() -> None:
    clock = FakeClock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        if seconds > 1e6:
            raise OverflowError("timestamp out of range for platform time_t")
        slept.append(seconds)
        clock.now += seconds

    written: list[str] = []
    player = Player(written.append, lambda: None, sleep=sleep, clock=clock)
    player.play([Event(0.1, "o", "a"), Event(1e7, "o", "c")], Summary())
    assert written == ["a", "c"] and max(slept) <= 3600 and abs(sum(slept) - 1e7) < 1


def test_marker_folder_folds_one_agents_typing() -> None:
    got: list[tuple[float, float, str]] = []
    folder = MarkerFolder(lambda start, end, label: got.append((start, end, label)))
    for at, label in [(1.0, "agent:carol typed 1 byte"), (1.5, "agent:carol typed 2 bytes"),
                      (1.6, "agent:dave typed 1 byte"), (5.0, "agent:dave typed 1 byte"),
                      (5.1, "agent:dave typed 1 byte (hidden, not recorded)"),
                      (6.0, "end")]:
        folder.add(at, label)
    folder.finish()
    assert got == [(1.0, 1.5, "agent:carol typed 3 bytes"), (1.6, 1.6, "agent:dave typed 1 byte"),
                   (5.0, 5.0, "agent:dave typed 1 byte"),
                   (5.1, 5.1, "agent:dave typed 1 byte (hidden, not recorded)"),
                   (6.0, 6.0, "end")]


def test_replay_on_a_terminal_puts_markers_in_the_title_not_the_screen(tmp_path: Path) -> None:
    path = session_cast(tmp_path)
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "assist", "replay", str(path), "-s", "100", "-i", "0.05"],
        stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = output.decode()
    assert "\x1b]2;assist replay 00:01.0  agent:carol typed 1 byte\x07" in text
    screen = re.sub(r"\x1b\]2;[^\x07]*\x07", "", text)
    assert "typed" not in screen.split("markers; agents who typed")[0]
    assert "/home/alice" in screen and "7 markers; agents who typed: carol" in screen
    assert text.index("\x1b[22;0t") < text.index("/home/alice") < text.index("\x1b[23;0t")


def test_replay_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    # Output keeps coming for a second after the reader has gone (`assist replay F | head`).
    path = write_cast(tmp_path / "long.cast",
                      *(json.dumps([i * 0.02, "o", f"line {i}\r\n"]) for i in range(50)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "assist", "replay", str(path), "--no-markers"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(3)
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""
