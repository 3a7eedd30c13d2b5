"""``assist console``: the agent's console app."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from assist.cli.app import VERBOSE_OPTION, app
from assist.cli.connect import (
    AUDIO_OPTION,
    BROKER_OPTION,
    KEY_OPTION,
    YES_OPTION,
    app_config,
    trust_prompt,
)
from assist.config import parse_audio
from assist.errors import ConfigError, ConnectionFailed
from assist.log import setup

CONSOLE_EPILOG = """\
[b]The call[/b]: when you take a user, their side calls you: they hear you
and see your camera (--camera: a device such as /dev/video0, a picture or a
video file; off by default, they see your initials). You never see them. You
hear them only after they allow their microphone: F1 asks. F12 mutes you.
Both of you see the same six-digit code; read it to each other to be sure
nobody sits in between.

[b]Pictures[/b]: a shared desktop is drawn with Kitty graphics or Sixel
where your terminal has them, else with coloured half-blocks
(ASSIST_GRAPHICS overrides).
"""


@app.command("console", epilog=CONSOLE_EPILOG)
def console(
    camera: str | None = typer.Option(
        None, "--camera", metavar="DEVICE|FILE",
        help="Send this camera (/dev/videoN), picture or video file as your face "
             "(default from client.toml; off: your initials)."),
    voice_file: Path | None = typer.Option(
        None, "--voice-file", metavar="FILE",
        help="Sent as your voice when no microphone opens (default: silence)."),
    audio: str | None = AUDIO_OPTION,
    broker: str | None = BROKER_OPTION,
    key: Path | None = KEY_OPTION,
    yes: bool = YES_OPTION,
    verbose: int = VERBOSE_OPTION,
) -> None:
    """Open the agent console: queue, live view of the user's terminal, chat, end."""
    setup(verbose)
    from assist.tui import graphics
    from assist.tui.console_app import ConsoleApp

    config = app_config(broker, key, yes, "agent")
    changes: dict[str, Any] = {}
    if camera is not None:
        changes["camera"] = camera
    if voice_file is not None:
        if not voice_file.is_file():
            raise ConfigError(f"--voice-file {voice_file}: no such file")
        changes["voice_file"] = voice_file
    if audio is not None:
        changes["audio"] = parse_audio(audio, "--audio")
    config = dataclasses.replace(config, **changes)
    if config.camera:
        from assist.media.camera import open_camera

        open_camera(config.camera).close()  # a camera that cannot work is said now
    mode = graphics.detect()  # asks the terminal, before the app owns it
    app_ = ConsoleApp(config, trust_prompt(yes), graphics=mode)
    app_.run()
    if app_.error:
        raise ConnectionFailed(app_.error)
