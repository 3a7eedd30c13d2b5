"""Desktop sharing in the apps: ``assist help --screen`` and the console, via a real broker.

Both apps run under Pilot in one event loop, against the real broker on
127.0.0.1; the desktop is a private Xvfb showing a test pattern. Media stays
on 127.0.0.1 (``media_hosts``), no audio device is touched (``audio=()``:
the agent sends silence and the user's side discards it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import DataTable

from assist.broker.server import Broker
from assist.client.desktop import DesktopRequest, describe_mark, parse_region
from assist.config import ClientConfig
from assist.protocol import messages as m
from assist.tui.console_app import ConsoleApp
from assist.tui.help_app import HelpApp
from assist.tui.video import VideoView
from tests.helpers import KeyPair, agent_client, until
from tests.xvfb import CHECKS, HEIGHT, TOLERANCE, WIDTH, Xvfb

SHELL = ["env", "PS1=$ ", "bash", "--norc", "--noprofile"]
LOOPBACK_ONLY = ("127.0.0.1",)


def config(broker: Broker, key: KeyPair, tmp: Path, voice: bool = False) -> ClientConfig:
    return ClientConfig(host="127.0.0.1", port=broker.port, host_key=broker.public_key,
                        voice=voice, audio=(),
                        key=key.private, file=tmp / "client.toml", state=tmp / "state",
                        media_hosts=LOOPBACK_ONLY, snapshots=tmp / "snapshots")


def panel_text(app: HelpApp) -> str:
    return str(app.panel.query_one("#status").render())


# -- pure pieces -----------------------------------------------------------------------


def test_region_parsing_and_mark_descriptions() -> None:
    from assist.errors import ConfigError

    assert parse_region("10, 20,300,200") == (10, 20, 300, 200)
    for bad in ("1,2,3", "a,b,c,d", "0,0,0,10", "-1,0,10,10"):
        with pytest.raises(ConfigError):
            parse_region(bad)
    point = m.Annotation(id="a", kind="arrow", x=812, line=340, surface="desktop")
    assert describe_mark("carol", point) == "carol points at 812,340 on your screen"
    box = m.Annotation(id="b", kind="box", x=300, line=200, x2=100, line2=80, text="here",
                       surface="desktop")
    assert describe_mark("carol", box) == \
        'carol marks the area 100,80 to 300,200 on your screen: "here"'


def test_media_settings_come_from_the_environment_and_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from assist.errors import ConfigError

    for name in ("ASSIST_MEDIA_HOSTS", "ASSIST_AUDIO", "ASSIST_VOICE"):
        monkeypatch.delenv(name)
    file = tmp_path / "client.toml"
    file.write_text('media_hosts = ["127.0.0.1", "::1"]\ncodec = "h264"\n')
    loaded = ClientConfig.load(file)
    assert loaded.voice and loaded.audio is None and not loaded.camera
    assert loaded.media_hosts == ("127.0.0.1", "::1") and loaded.codec == "H264"
    assert ClientConfig.load(tmp_path / "none.toml").media_host_addresses is None
    monkeypatch.setenv("ASSIST_MEDIA_HOSTS", "127.0.0.1")
    monkeypatch.setenv("ASSIST_CODEC", "vp8")
    monkeypatch.setenv("ASSIST_SNAPSHOTS", str(tmp_path / "shots"))
    loaded = ClientConfig.load(file)
    assert loaded.media_host_addresses == ("127.0.0.1",) and loaded.codec == "VP8"
    assert loaded.snapshots == tmp_path / "shots"
    # Pinning the broker rewrites the file: the file's media settings survive it,
    # the environment's do not become permanent.
    loaded.pinned("ssh-ed25519 AAAA")
    monkeypatch.delenv("ASSIST_MEDIA_HOSTS")
    monkeypatch.delenv("ASSIST_CODEC")
    assert ClientConfig.load(file).media_hosts == ("127.0.0.1", "::1")
    monkeypatch.setenv("ASSIST_CODEC", "av1")
    with pytest.raises(ConfigError, match="unknown video codec"):
        ClientConfig.load(file)
    monkeypatch.delenv("ASSIST_CODEC")
    # The call's settings: the file's, then the environment's.
    file.write_text('voice = false\naudio = ["alsa"]\ncamera = "face.png"\n')
    loaded = ClientConfig.load(file)
    assert not loaded.voice and loaded.audio == ("alsa",) and loaded.camera == "face.png"
    monkeypatch.setenv("ASSIST_AUDIO", "none")
    monkeypatch.setenv("ASSIST_VOICE", "1")
    loaded = ClientConfig.load(file)
    assert loaded.voice and loaded.audio == ()
    monkeypatch.setenv("ASSIST_AUDIO", "oss")
    with pytest.raises(ConfigError, match="unknown sound system 'oss'"):
        ClientConfig.load(file)
    monkeypatch.setenv("ASSIST_AUDIO", "pulse")
    monkeypatch.setenv("ASSIST_VOICE", "maybe")
    with pytest.raises(ConfigError, match="voice: use true or false"):
        ClientConfig.load(file)


def test_media_errors_live_in_the_one_tree_under_their_old_names_too() -> None:
    from assist import errors
    from assist.media import errors as media_errors
    from assist.share import screen

    assert media_errors.MediaError is errors.MediaError
    assert media_errors.MediaUnavailable is errors.MediaUnavailable
    assert screen.CaptureError is errors.CaptureError
    assert issubclass(errors.CaptureError, errors.MediaError)
    assert issubclass(errors.MediaError, errors.AssistError)


def test_the_help_app_loads_no_media_stack_until_a_share_starts() -> None:
    import subprocess
    import sys

    code = ("import sys, assist.tui.help_app, assist.cli.user\n"
            "print(','.join(m for m in ('aiortc', 'av', 'aioice') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""


# -- the apps ------------------------------------------------------------------------


async def test_screen_without_a_display_says_so_and_the_terminal_goes_on(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    app = HelpApp(config(broker, keys["alice"], tmp_path / "alice"), "no display", SHELL,
                  desktop=DesktopRequest())
    async with app.run_test(size=(100, 30)) as pilot:
        await until(lambda: app.request is not None and app.request.status.phase == "queued",
                    what="queued")
        carol = await agent_client(broker, keys["carol"])
        await carol.accept()
        await until(lambda: app.desktop is not None and app.desktop.state == "failed",
                    what="the share to fail")
        text = panel_text(app)
        assert "Desktop not shared: cannot open the desktop" in text
        assert "Traceback" not in text
        # The terminal session goes on.
        assert app.share is not None and app.request.status.phase == "connected"
        outputs: list[bytes] = []

        def seen(msg: m.Msg) -> bool:
            if isinstance(msg, m.Output | m.Snapshot):
                outputs.append(msg.data)
            return b"still-shared" in b"".join(outputs)

        watcher = asyncio.ensure_future(carol.link.wait_for(seen, 10))
        await pilot.press(*"echo still-shared", "enter")
        await watcher
        await carol.link.close()


def assert_pattern(rgb: np.ndarray) -> None:  # type: ignore[type-arg]
    assert rgb.shape == (HEIGHT, WIDTH, 3)
    for (x, y), expected in CHECKS.items():
        patch = rgb[y - 4:y + 4, x - 4:x + 4].reshape(-1, 3).astype(int)
        assert np.abs(patch - np.array(expected)).max() <= TOLERANCE, (x, y, patch[0])


async def frames_stop(view: VideoView) -> None:
    """Frames in flight drain, then no new frame may arrive for a while."""
    await asyncio.sleep(0.4)
    before = view.frames_shown
    await asyncio.sleep(0.6)
    assert view.frames_shown == before, "frames kept coming"


@pytest.mark.slow
async def test_desktop_share_from_help_app_to_console(
        screen: Xvfb, broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    # The call runs beside the desktop share, as it does for everyone.
    user = HelpApp(config(broker, keys["alice"], tmp_path / "alice", voice=True), "my screen",
                   SHELL, desktop=DesktopRequest(), graphics="halfcell")
    agent = ConsoleApp(config(broker, keys["carol"], tmp_path / "carol"), audio=())
    async with user.run_test(size=(110, 34)) as upilot, \
            agent.run_test(size=(160, 50)) as apilot:
        table = agent.query_one("#queue", DataTable)
        await until(lambda: table.row_count == 1, what="the user in the console's queue")
        table.focus()
        await apilot.press("enter")

        # The share starts by itself; both sides show the same code.
        await until(lambda: user.desktop is not None and user.desktop.state == "live",
                    what="the user's share to go live")
        await until(lambda: agent.desktop is not None and agent.desktop.state == "live",
                    what="the console's view to go live")
        assert user.desktop is not None and agent.desktop is not None
        code = user.desktop.code
        assert code and code == agent.desktop.code
        assert f"Read this code aloud: {code}; the agent sees the same" in panel_text(user)
        await until(lambda: user.session.call is not None and user.session.call.state == "live"
                    and agent.call is not None and agent.call.state == "live",
                    what="the call beside the share")
        assert user.session.call is not None and agent.call is not None
        call_code = user.session.call.code
        assert call_code == agent.call.code and call_code != code  # two connections
        await until(lambda: f"Voice, code {call_code}: no sound here" in panel_text(user),
                    what="the panel to say plainly where the voice goes")
        await until(lambda: "the user's microphone is off" in str(
            agent.query_one("#trust").render()), what="the console to show the call")
        trust = str(agent.query_one("#trust").render())
        assert f"code {code}" in trust and f"voice: code {call_code}" in trust

        # The console shows the pattern in its video view.
        assert agent.showing_desktop
        view = agent.query_one("#desktop", VideoView)
        await until(lambda: view.frames_shown >= 3, what="video frames in the console")
        await asyncio.sleep(0.5)  # the first frames are soft while the rate settles
        assert view.frame is not None
        assert_pattern(view.frame)
        assert any("▀" in view.render_line(y).text for y in range(5))

        # A snapshot lands in the configured folder.
        view.focus()
        await apilot.press("s")
        shots = tmp_path / "carol" / "snapshots"
        await until(lambda: shots.exists() and any(shots.glob("*.png")), what="a snapshot")
        (shot,) = shots.glob("*.png")
        assert shot.stat().st_mode & 0o777 == 0o600, "a picture of the user's desktop is private"
        assert shots.stat().st_mode & 0o777 == 0o700

        # With the user's permission the agent marks the desktop; the user reads where.
        await apilot.press("f7")
        await until(lambda: len(user.screen_stack) > 1, what="the permission question")
        await upilot.pause(1.1)  # Allow works only after a moment
        await upilot.press("tab", "enter")
        await until(lambda: "annotate" in agent.grants, what="the annotate grant")
        assert view.mark_mode
        start, end = view.pixel_at(10, 5), view.pixel_at(30, 12)
        assert start is not None and end is not None
        await apilot.mouse_down("#desktop", offset=(10, 5))
        await apilot.mouse_up("#desktop", offset=(30, 12))
        await until(lambda: "carol marks the area" in panel_text(user),
                    what="the mark described in the user's panel")
        assert f"{start[0]},{start[1]} to {end[0]},{end[1]}" in panel_text(user)
        await apilot.click("#desktop", offset=(50, 20))
        await until(lambda: "carol points at" in panel_text(user), what="a point")

        # F6 pauses: no more frames, the console says so; F6 again resumes.
        await upilot.press("f6")
        await until(lambda: agent.desktop is not None and agent.desktop.state == "paused",
                    what="the console to see the pause")
        assert "Desktop paused" in panel_text(user)
        await frames_stop(view)
        await upilot.press("f6")
        shown = view.frames_shown
        await until(lambda: view.frames_shown > shown, what="frames after resuming")

        # F7 stops the share at once; the terminal stays shared.
        await upilot.press("f7")
        await until(lambda: agent.desktop is not None and agent.desktop.state == "ended",
                    what="the console to see the end of the share")
        assert "Desktop no longer shared" in panel_text(user)
        await frames_stop(view)
        assert user.share is not None and agent.info is not None
