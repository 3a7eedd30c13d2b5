"""The call in every session: the agent is heard and seen, the user is never seen.

Real sessions through the real broker on 127.0.0.1 (alice's real shell, no
desktop), real aiortc peers on loopback, no sound device: voices come from
WAV files the tests write (a tone each) and are checked by their spectrum on
the other side; the agent's camera is a picture file with four coloured
quarters, checked after decoding and again in the user's panel, in every
mode textual-image draws.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import re
import shutil
import struct
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from assist.broker.server import Broker
from assist.core.pace import SSH_BUDGET, FramePacer, link_budget
from assist.media.tracks import ReceivedFrame
from assist.protocol import messages as m
from tests.helpers import KeyPair, until
from tests.user_side import Live, live_session

QUARTERS = {(0, 0): (230, 30, 30), (1, 0): (30, 200, 40), (0, 1): (40, 60, 220),
            (1, 1): (240, 240, 240)}
"""The agent's picture: (column, row) of each quarter and its colour."""
TOLERANCE = 45


def tone(path: Path, hertz: float, seconds: float = 30.0, rate: int = 48_000) -> Path:
    """A WAV file of a sine tone."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", int(9000 * math.sin(2 * math.pi * hertz * i
                                                                         / rate)))
                                 for i in range(int(seconds * rate))))
    return path


def picture(path: Path, size: tuple[int, int] = (320, 240)) -> Path:
    """A PNG of four coloured quarters."""
    w, h = size
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    for (col, row), colour in QUARTERS.items():
        rgb[row * h // 2:(row + 1) * h // 2, col * w // 2:(col + 1) * w // 2] = colour
    Image.fromarray(rgb).save(path)
    return path


def samples(frames: list[Any]) -> np.ndarray:  # type: ignore[type-arg]
    """The first channel of decoded 16-bit frames, as floats."""
    chunks = []
    for frame in frames:
        data = frame.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
        channels = len(frame.layout.channels)
        chunks.append(data[::channels] if frame.format.is_packed else data[:frame.samples])
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def dominant(frames: list[Any], rate: int = 48_000) -> tuple[float, float]:
    """The strongest frequency in ``frames`` and their RMS level."""
    signal = samples(frames)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    peak = float(np.fft.rfftfreq(len(signal), 1 / rate)[int(np.argmax(spectrum[1:])) + 1])
    return peak, float(np.sqrt(np.mean(signal * signal)))


async def heard(frames: list[Any], count: int = 25) -> tuple[float, float]:
    """The tone of the next ``count`` frames (half a second) that arrive."""
    start = len(frames)
    await until(lambda: len(frames) >= start + count, 10, what="voice frames")
    return dominant(frames[start:start + count])


def assert_quarters(rgb: np.ndarray) -> None:  # type: ignore[type-arg]
    h, w = rgb.shape[:2]
    for (col, row), colour in QUARTERS.items():
        y, x = (2 * row + 1) * h // 4, (2 * col + 1) * w // 4
        patch = rgb[y - 3:y + 3, x - 3:x + 3].reshape(-1, 3).astype(int)
        assert np.abs(patch - np.array(colour)).max() <= TOLERANCE, ((col, row), patch[0])


async def call_live(live: Live) -> None:
    session = live.user.user_session
    await until(lambda: session.call is not None and session.call.state == "live"
                and live.call is not None and live.call.state == "live", 10,
                what="the call to be live on both sides")


# -- voice ------------------------------------------------------------------------------


async def test_the_agent_is_heard_in_a_terminal_only_session(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    agent_voice = tone(tmp_path / "carol.wav", 1000)
    async with live_session(broker, keys, call={"voice_file": agent_voice}) as live:
        session = live.user.user_session
        received: list[Any] = []
        session.on_audio = received.append
        await call_live(live)
        assert session.desktop is None  # no desktop: the call is on its own
        assert session.call is not None and live.call is not None
        assert session.call.code == live.call.code and len(session.call.code) == 7  # "123 456"
        hertz, rms = await heard(received)
        assert abs(hertz - 1000) < 25 and rms > 0.05, (hertz, rms)
        await until(lambda: session.call is not None and session.call.speaking,
                    what="the speaking indicator")
        panel = session.call.describe()
        assert "no sound here, the agent is not heard (no PulseAudio or ALSA output)" in panel
        assert "the agent cannot hear you" in panel
        assert panel.startswith(f"Voice, code {live.call.code}: ")

        # The agent mutes (F12 in the console): the user hears silence at once.
        live.call.toggle_mute()
        await asyncio.sleep(0.3)  # what was on its way
        _, rms = await heard(received)
        assert rms < 0.005
        live.call.toggle_mute()
        hertz, rms = await heard(received, 50)
        assert abs(hertz - 1000) < 25 and rms > 0.05

        # The agent hangs up: the user's side says so, the session goes on.
        await live.call.stop()
        await until(lambda: session.call is not None and session.call.state == "ended",
                    what="the user's side to see the end of the call")
        assert session.in_session


async def test_the_user_is_heard_only_under_the_mic_grant_and_revoke_is_at_once(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    heard_by_agent: list[Any] = []
    user_voice = tone(tmp_path / "alice.wav", 600)
    async with live_session(broker, keys, call={"on_audio": heard_by_agent.append},
                            voice_file=user_voice) as live:
        session = live.user.user_session
        await call_live(live)
        call = session.call
        assert call is not None and call.mic is not None
        _, rms = await heard(heard_by_agent)
        assert rms < 0.001, "silence before the user allowed anything"
        assert call.mic.opened == 0, "the microphone is not even opened without the grant"

        # The agent asks (F1); the user says no: still nothing.
        ask = await live.ask("mic")
        assert session.answer(ask, False) == ""
        denied = await live.agent_event(m.GrantAnswer)
        assert isinstance(denied, m.GrantAnswer) and not denied.allowed
        await asyncio.sleep(0.3)
        assert call.mic.opened == 0

        # The user allows: the agent hears the user's tone.
        await live.grant("mic")
        await until(lambda: call.hearing, what="the microphone to open")
        hertz, rms = await heard(heard_by_agent, 50)
        assert abs(hertz - 600) < 25 and rms > 0.05, (hertz, rms)
        assert "the agent hears you" in call.describe()

        # F9: the microphone closes here at once, before the broker is told.
        session.revoke_all()
        assert not call.hearing and call.mic.source is None
        voiced = call.mic.voiced
        await asyncio.sleep(0.3)
        assert call.mic.voiced == voiced, "no frame of the microphone after the revoke"
        _, rms = await heard(heard_by_agent)
        assert rms < 0.001

        # A privacy pause (F5) closes it too, even under a live grant.
        await live.grant("mic")
        await until(lambda: call.hearing, what="the microphone to open again")
        session.toggle_pause()
        assert not call.hearing
        await asyncio.sleep(0.3)
        _, rms = await heard(heard_by_agent)
        assert rms < 0.001
        session.toggle_pause()
        await until(lambda: call.hearing, what="the microphone after the pause")

        # The user's own mute (F12) silences both ways.
        assert session.toggle_mute()
        assert not call.hearing
        await asyncio.sleep(0.3)  # what was on its way
        _, rms = await heard(heard_by_agent)
        assert rms < 0.005


# -- the face ---------------------------------------------------------------------------


async def test_the_agents_picture_reaches_the_users_side_through_the_broker(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    face = picture(tmp_path / "carol.png")
    async with live_session(broker, keys, call={"camera": str(face)}) as live:
        faces: list[ReceivedFrame] = live.user.faces
        await call_live(live)
        assert live.call is not None and "still picture carol.png" in live.call.face
        await until(lambda: len(faces) >= 3, 10, what="pictures of the agent's face")
        frame = faces[-1]
        assert frame.rgb.shape == (240, 320, 3)
        assert_quarters(frame.rgb)
    received = frame
    for mode in ("halfcell", "text", "sixel", "kitty"):
        await panel_renders(received, mode, tmp_path)


async def panel_renders(frame: ReceivedFrame, mode: str, tmp_path: Path) -> None:
    """The user's panel draws ``frame`` in ``mode``; what reaches the terminal has the
    picture's four quarters."""
    from textual.app import App, ComposeResult
    from textual.geometry import Region

    from assist.tui.panel import AgentPanel

    class PanelApp(App[None]):
        CSS = "Screen { layers: base overlay; }"

        def compose(self) -> ComposeResult:
            yield AgentPanel(mode, id="panel")  # type: ignore[arg-type]

    written = io.StringIO()
    real_stdout = sys.__stdout__
    sys.__stdout__ = written  # type: ignore[misc]  # Kitty images go straight to the terminal
    try:
        app = PanelApp()
        async with app.run_test(size=(60, 40)) as pilot:
            panel = app.query_one(AgentPanel)
            panel.show_face(True, "Carol Jones")
            await pilot.pause()
            face = panel.face
            assert "CJ" in str(face.query_one("#face-initials").render())
            assert face.show(frame)
            await pilot.pause(0.2)
            assert face.shown == 1 and face.has_class("-live")
            target = face.query_one("#face-picture")
            if mode == "sixel":  # the Sixel data is drawn by the widget's one child
                target = target.children[0]
                lines = target.render_lines(Region(0, 0, *target.size))
            else:
                lines = [target.render_line(y) for y in range(target.size.height)]
            check_drawn(mode, lines, written.getvalue(), target.size.width)
            # Folded to one line, the title says when the agent speaks.
            panel.fold()
            panel.set_speaking(True)
            await pilot.pause()
            assert str(panel.query_one("#title").render()).startswith("♪ ")
            assert not face.display or not face.region.height
    finally:
        sys.__stdout__ = real_stdout  # type: ignore[misc]


def check_drawn(mode: str, lines: list[Any], written: str, width: int) -> None:
    if mode in ("halfcell", "text"):
        height = len(lines)

        def cell(x: int, y: int) -> tuple[str, Any]:
            at = 0
            for segment in lines[y]:
                if at + len(segment.text) > x:
                    return segment.text[x - at], segment.style
                at += len(segment.text)
            raise AssertionError(f"no cell at {x},{y}")

        def band(x: int) -> bool:  # the picture keeps its shape: black bands beside it
            char, style = cell(x, height // 2)
            colour = style.color.get_truecolor() if style.color else None
            return char == " " if mode == "text" else tuple(colour or (0, 0, 0)) == (0, 0, 0)

        columns = [x for x in range(width) if not band(x)]
        left, across = columns[0], columns[-1] - columns[0] + 1
        drawn = {q: cell(left + (2 * q[0] + 1) * across // 4, (2 * q[1] + 1) * height // 4)
                 for q in QUARTERS}
        if mode == "halfcell":
            # Coloured half-blocks: each quarter in its own colour.
            for quarter, (_, style) in drawn.items():
                triplet = (style.color or style.bgcolor).get_truecolor()
                got = (triplet.red, triplet.green, triplet.blue)
                assert max(abs(a - b) for a, b in zip(got, QUARTERS[quarter], strict=True)) \
                    <= TOLERANCE, (quarter, got)
        else:
            # Characters only: each quarter as dense as it is bright (white fullest).
            density = " ░▒▓█"
            level = {q: density.index(char) for q, (char, _) in drawn.items()}
            assert level[(1, 1)] == 4, drawn  # white
            assert level[(1, 1)] > level[(1, 0)] > level[(0, 0)] >= level[(0, 1)], drawn
    elif mode == "sixel":
        data = "".join(s.text for line in lines for s in line)
        assert "\x1bP" in data, "a Sixel image in the output"
        # The palette holds the quarters' colours (in percent).
        palette = {tuple(round(int(v) * 255 / 100) for v in p)
                   for p in re.findall(r"#\d+;2;(\d+);(\d+);(\d+)", data)}
        for expected in QUARTERS.values():
            assert any(max(abs(a - b) for a, b in zip(c, expected, strict=True)) <= TOLERANCE
                       for c in palette), (expected, sorted(palette)[:8])
    else:
        # Kitty graphics: the PNG sent to the terminal decodes to the picture.
        payload = "".join(re.findall(r"\x1b_G[^;\x1b]*f=100[^;\x1b]*;([^\x1b]*)\x1b\\",
                                     written))
        assert payload, "a Kitty graphics image was sent"
        with Image.open(io.BytesIO(base64.b64decode(payload))) as image:
            rgb = image.convert("RGB")
            assert_quarters(np.asarray(rgb.crop(rgb.getbbox())))  # less the black bands
        assert any(chr(0x10EEEE) in s.text for line in lines for s in line), "placeholders"


# -- the user is never seen -------------------------------------------------------------


async def test_the_user_side_never_opens_a_camera_or_sends_video(
        broker: Broker, keys: dict[str, KeyPair], monkeypatch: pytest.MonkeyPatch) -> None:
    import av
    from aiortc.mediastreams import AudioStreamTrack

    from assist.media import camera, network
    from assist.media.camera import StillTrack
    from assist.media.peer import MediaPeer
    from assist.media.signalling import answer_offer

    opened: list[str] = []
    real_open = av.open

    def spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def no_camera(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a camera was opened")

    monkeypatch.setattr(av, "open", spy)
    monkeypatch.setattr(camera, "open_camera", no_camera)
    # carol answers by hand with a bare peer (no console code), and then tries
    # everything an agent can send to get the user's picture.
    carol = MediaPeer(host_addresses=network.LOOPBACK)
    hostile = MediaPeer(host_addresses=network.LOOPBACK)
    async with live_session(broker, keys, voice=True) as live:
        session = live.user.user_session
        offer = await live.agent_event(m.Signal, 10)
        assert isinstance(offer, m.Signal) and offer.line == "call" and offer.kind == "offer"
        # What the user's side offers: audio both ways, video to receive only.
        assert re.findall(r"^m=(audio|video) ", offer.sdp, re.M) == ["audio", "video"]
        video = offer.sdp[offer.sdp.index("m=video"):]
        assert "a=recvonly" in video and "a=sendrecv" not in video
        assert "a=sendonly" not in video
        await answer_offer(live.carol.link, carol, offer,
                           {"audio": AudioStreamTrack(),
                            "video": StillTrack(np.zeros((240, 320, 3), dtype=np.uint8))})
        await until(lambda: session.call is not None and session.call.state == "live",
                    what="the call")
        hostile.receive("video")
        hostile.receive("audio")
        sdp = await hostile.offer()
        for line in ("call", "screen"):
            await live.carol.link.send(m.Signal(session=live.session, kind="offer", sdp=sdp,
                                                media="camera,screen,mic", line=line))
        await live.carol.link.send(m.Signal(session=live.session, kind="resume",
                                            line="screen"))
        ask = await live.ask("mic")  # and asks for the microphone, which alice denies
        session.answer(ask, False)
        await asyncio.sleep(1.5)
        assert not [e for e in live.agent_events if isinstance(e, m.Signal)], \
            "the user's side answered nothing the agent offered"
        call = session.call
        assert call is not None and call.call is not None and call.state == "live"
        pc = call.call.peer.pc
        assert [s.track.kind for s in pc.getSenders() if s.track is not None] == ["audio"]
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "video":
                assert transceiver.sender.track is None
                assert transceiver.currentDirection == "recvonly"
        stats = await pc.getStats()
        assert sum(s.packetsSent for s in stats.values()
                   if getattr(s, "type", "") == "outbound-rtp"
                   and getattr(s, "kind", "") == "video") == 0, "not one video packet sent"
        assert session.desktop is None and call.mic is not None and call.mic.opened == 0
        await carol.close()
        await hostile.close()
    assert opened == [], "the user's side opened no media device or file at all"


# -- pure pieces ------------------------------------------------------------------------


def test_pictures_are_paced_by_the_terminals_link_and_the_loop() -> None:
    assert link_budget({"SSH_CONNECTION": "10.0.0.1 5 10.0.0.2 22"}) == SSH_BUDGET
    local = FramePacer(link_budget({}))
    remote = FramePacer(link_budget({"SSH_TTY": "/dev/pts/3"}))
    frame = 40 * 9 * 40.0  # a half-block face of 40x9 cells
    sixel = 40 * 10 * 9 * 20 * 0.7  # the same in Sixel
    now = 0.0
    for _ in range(10):
        local.shown(now, frame, 0.001)
        remote.shown(now, sixel, 0.001)
    assert 1 / local.interval() == pytest.approx(30)  # the top rate where the link keeps up
    assert 1 / remote.interval() < 6  # a few a second over SSH
    # A loop running late backs off at once, and comes back slowly.
    for _ in range(5):
        local.late(0.05)
    slow = local.interval()
    assert slow > 5 / 30
    local.late(0.0)
    assert slow > local.interval() > 1 / 30
    for _ in range(200):
        local.late(0.0)
    assert local.interval() == pytest.approx(1 / 30)
    # Never slower than the bottom rate, however costly.
    local.shown(now, 10**9, 10.0)
    assert local.interval() == 1.0
    assert not local.ready(now + 0.5) and local.ready(now + 1.0)


def test_initials_and_graphics_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    from assist.errors import ConfigError
    from assist.tui import graphics
    from assist.tui.face import initials

    assert initials("carol") == "C" and initials("Ada Lovelace") == "AL"
    assert initials("jean-luc.picard") == "JL" and initials("") == "?"
    monkeypatch.setenv("ASSIST_GRAPHICS", "sixel")
    assert graphics.detect() == "sixel"
    monkeypatch.setenv("ASSIST_GRAPHICS", "ascii-art")
    with pytest.raises(ConfigError, match="use auto, kitty, sixel, halfcell or text"):
        graphics.detect()
    monkeypatch.setenv("ASSIST_GRAPHICS", "auto")
    assert graphics.detect() in graphics.MODES  # not a terminal here: text
    # Inside tmux or screen the terminal is not asked (tmux would retitle the window).
    assert graphics.multiplexed({"TMUX": "/tmp/tmux-0/default,1,0"})
    assert graphics.multiplexed({"TERM": "screen-256color"})
    assert not graphics.multiplexed({"TERM": "xterm-kitty"})


async def test_the_mic_gate_opens_only_when_allowed_and_closes_at_once() -> None:
    from aiortc.mediastreams import AudioStreamTrack

    from assist.media.audio import Source
    from assist.media.call import FRAME, RATE, MicGate

    allowed = [False]
    sources: list[Source] = []

    def open_source() -> Source:
        source = Source("file", "voice: test tone", AudioStreamTrack())
        sources.append(source)
        return source

    gate = MicGate(lambda: allowed[0], open_source)
    stamps = []
    for _ in range(3):
        frame = await gate.recv()
        stamps.append(frame.pts)
        assert frame.sample_rate == RATE and frame.samples == FRAME
    assert sources == [] and not gate.live
    allowed[0] = True
    for _ in range(25):  # silence while the source opens in its thread
        frame = await gate.recv()
        stamps.append(frame.pts)
        if gate.live:
            break
    assert gate.live and len(sources) == 1 and gate.opened == 1
    await gate.recv()
    allowed[0] = False
    frame = await gate.recv()
    stamps.append(frame.pts)
    assert not gate.live and sources[0].track.readyState == "ended"
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # one clock
    gate.stop()



# -- the apps ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_help_app_shows_the_agents_face_and_the_console_asks_for_the_mic(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    import dataclasses

    from textual.widgets import DataTable

    from assist.tui.console_app import ConsoleApp
    from assist.tui.dialogs import GrantScreen
    from assist.tui.help_app import HelpApp
    from tests.user_side import SHELL, user_config

    alice = user_config(broker, keys["alice"], tmp_path / "alice", voice=True)
    carol = dataclasses.replace(user_config(broker, keys["carol"], tmp_path / "carol"),
                                camera=str(picture(tmp_path / "carol.png")),
                                voice_file=tone(tmp_path / "carol.wav", 800))
    user = HelpApp(dataclasses.replace(alice, voice_file=tone(tmp_path / "alice.wav", 500)),
                   "my printer", SHELL, graphics="halfcell")
    agent = ConsoleApp(carol, audio=())

    def panel() -> str:
        return str(user.panel.query_one("#status").render())

    def trust() -> str:
        return str(agent.query_one("#trust").render())

    async with user.run_test(size=(110, 45)) as upilot, \
            agent.run_test(size=(160, 50)) as apilot:
        table = agent.query_one("#queue", DataTable)
        await until(lambda: table.row_count == 1, what="the user in the console's queue")
        table.focus()
        await apilot.press("enter")
        await until(lambda: user.session.call is not None and user.session.call.state == "live"
                    and agent.call is not None and agent.call.state == "live",
                    what="the call to go live by itself")
        face = user.panel.face
        await until(lambda: face.shown >= 2, what="the agent's face in the panel")
        assert face.display and face.mode == "halfcell"
        assert "Face: half-blocks" in panel()
        assert agent.call is not None and "still picture carol.png" in trust()
        assert "the user's microphone is off (F1 asks for it)" in trust()
        # The agent speaks (the tone): the folded panel says so on its one line.
        await upilot.press("f3")
        await until(lambda: str(user.panel.query_one("#title").render()).startswith("♪ "),
                    what="the speaking indicator on the folded panel")
        await upilot.press("f3")

        # F1: the agent asks to hear the user; the user allows; the console says so.
        await apilot.press("f1")
        await until(lambda: isinstance(user.screen, GrantScreen), what="the question")
        assert "asks to hear you through your microphone" in str(
            user.screen.query_one("#question").render())
        await upilot.pause(1.1)  # Allow works only after a moment
        await upilot.press("tab", "enter")
        await until(lambda: "you hear the user" in trust(), what="the console to hear")
        await until(lambda: "the agent hears you" in panel(), what="the panel to say it")
        # F9: gone at once on the user's side, and the console is told.
        await upilot.press("f9")
        assert user.session.call is not None and not user.session.call.hearing
        await until(lambda: "the user's microphone is off" in trust(),
                    what="the console to see the revoke")
        # F12 on both sides.
        await upilot.press("f12")
        await until(lambda: "muted (F12 unmutes)" in panel(), what="the user's mute")
        await apilot.press("f12")
        await until(lambda: "muted (F12)" in trust(), what="the agent's mute")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
async def test_the_real_apps_make_the_call_in_tmux(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.tmux import Tmux, meet

    monkeypatch.setenv("ASSIST_VOICE", "1")  # the suite's processes make no call otherwise
    face, voice = picture(tmp_path / "carol.png"), tone(tmp_path / "carol.wav", 700)
    tmux = Tmux()
    try:
        await meet(tmux, broker, keys, "call me", console_args=(
            "--camera", str(face), "--voice-file", str(voice)))
        await tmux.wait_for("agent", "voice: code")
        screen = await tmux.wait_for("user", "Face: half-blocks")
        assert "Voice, code" in screen
        assert "▀" * 10 in screen, "the face drawn in the panel"
        agent = await tmux.screen("agent")
        code = re.search(r"Voice, code (\d{3} \d{3})", screen.replace("\n", " "))
        assert code is not None and f"voice: code {code.group(1)}" in agent.replace("\n", " ")
        await tmux.keys("user", "F3")  # folded to one line: the agent speaks (the tone)
        await tmux.wait_for("user", "♪ carol")
        await tmux.keys("agent", "F12")
        await tmux.wait_for("agent", "muted (F12)")
    finally:
        await tmux.kill()


async def test_an_agent_without_a_console_declines_the_call_at_once(
        broker: Broker, keys: dict[str, KeyPair]) -> None:
    from assist.client.agent_session import AgentSession

    async with live_session(broker, keys, voice=True) as live:
        assert live.info is not None
        scripted = AgentSession(live.carol, live.info)  # as `assist agent` and the bot
        offer = await live.agent_event(m.Signal, 10)
        assert await scripted.decline_media(offer)
        assert not await scripted.decline_media(m.Chat(session=live.session, text="hi"))
        session = live.user.user_session
        await until(lambda: session.call is not None and session.call.state == "failed",
                    what="the user's side to hear the no at once")
        assert session.call is not None
        assert "the agent declined the call" in session.call.describe()
        assert session.in_session  # the terminal session goes on


async def test_the_mic_gate_never_hangs_on_a_stopped_device_nor_leaks_one() -> None:
    import threading

    from aiortc import MediaStreamTrack

    from assist.media.audio import Source
    from assist.media.call import MicGate

    class Device(MediaStreamTrack):
        """Like aiortc's player track: once stopped, a pending recv never returns."""

        kind = "audio"

        async def recv(self) -> Any:
            await asyncio.Event().wait()

    opened: list[Source] = []
    release = threading.Event()

    def slow_open() -> Source:
        release.wait(5)  # a device that takes its time to open
        source = Source("pulse", "voice: test device", Device())
        opened.append(source)
        return source

    allowed = [True]
    gate = MicGate(lambda: allowed[0], slow_open)
    await gate.recv()  # starts opening, silence meanwhile
    allowed[0] = False  # revoked while the device opens
    gate.shut()
    release.set()
    await until(lambda: opened, what="the open to finish")
    await until(lambda: opened[0].track.readyState == "ended", what="the late device closed")
    assert not gate.live

    # Allowed again: the device opens; a revoke while recv waits on it does not hang.
    release.set()
    allowed[0] = True
    for _ in range(50):  # silence while it opens in its thread
        await gate.recv()
        if gate.live:
            break
    assert gate.live
    pending = asyncio.ensure_future(gate.recv())  # waits on the device
    await asyncio.sleep(0.05)
    allowed[0] = False
    gate.shut()
    frame = await asyncio.wait_for(pending, 1)  # silence, not a hang
    assert frame.samples > 0 and not gate.live
    allowed[0] = True
    await asyncio.wait_for(gate.recv(), 1)
    gate.stop()


async def test_a_camera_that_cannot_open_fails_the_call_and_says_why(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    async with live_session(broker, keys, call={"camera": str(tmp_path / "gone.png")}) as live:
        await until(lambda: live.call is not None and live.call.state == "failed",
                    what="the agent's side to fail")
        assert live.call is not None and "no such file" in live.call.describe(False)
        assert live.call.call is None  # nothing half-made is kept
        assert live.user.user_session.in_session
