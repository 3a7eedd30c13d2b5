"""Every dialog and prompt is readable whole at 60x20 and at 200x60: text wraps, nothing is cut."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from textual.app import App
from textual.screen import Screen

from assist.client.user_events import asking
from assist.protocol import messages as m
from assist.tui.console_app import EndScreen
from assist.tui.dialogs import (
    CodeScreen,
    ConfirmScreen,
    DurationScreen,
    GrantScreen,
    TextScreen,
    VerifyScreen,
    takeover_screen,
)
from assist.tui.help_app import SurveyScreen

ASK = m.AskGrant(session="s1", scope="run", seconds=300, agent="carol-the-helpdesk-agent")
EVIDENCE = m.Evidence(registered=True, fingerprint="SHA256:" + "x" * 43, host="laptop-42",
                      os_user="alice")
DIALOGS: list[tuple[str, Callable[[], Screen[object]], list[str]]] = [
    ("grant", lambda: GrantScreen(ASK),
     [f"carol-the-helpdesk-agent {asking(ASK)}",
      "Tab then Enter (or a click) allows; n or Esc denies. F9 takes it back at any moment.",
      "Allow", "Deny (n)"]),
    ("code", lambda: CodeScreen("carol"), ["carol asks for the current code of your"]),
    ("verify", lambda: VerifyScreen("alice", EVIDENCE), ["Verify alice before helping."]),
    ("duration", lambda: DurationScreen("alice"),
     ["Ask alice to let you type in their terminal:"]),
    ("text", lambda: TextScreen("Text of the label (Enter places it, Esc cancels)"),
     ["Text of the label (Enter places it, Esc cancels)"]),
    ("confirm", lambda: ConfirmScreen(
        "alice is still being helped here. Quit anyway?",
        "They go back to the front of the queue for the next agent (another console of "
        "yours may take them).", "Quit", "Stay"),
     ["They go back to the front of the queue for the next agent (another console of "
      "yours may take them).", "Quit", "Stay"]),
    ("takeover", lambda: takeover_screen("vpn down"),
     ["Move that request here? The other assist help will stop.", "Move it here"]),
    ("survey", SurveyScreen, ["The session has ended. How satisfied are you with the help?",
                              "1 = poor ... 5 = great (press a number, Esc skips)"]),
    ("end", lambda: EndScreen(("printer driver", "vpn profile")),
     ["End session: what was the root cause?", "printer driver", "Resolved",
      "End session"]),
]


class Host(App[None]):
    def __init__(self, make: Callable[[], Screen[object]]) -> None:
        super().__init__()
        self.make = make

    def on_mount(self) -> None:
        self.push_screen(self.make())


def shown_words(app: App[None]) -> str:
    """The words on screen, in reading order, borders and padding left out."""
    lines = ["".join(seg.text for seg in strip) for strip in
             app.screen._compositor.render_strips()]
    return " ".join(" ".join(line.translate(BORDERS).split()) for line in lines)


BORDERS = str.maketrans(dict.fromkeys("│┃║╭╮╰╯┏┓┗┛━─▔▁▂▊▎▌▐█▀▄", " "))


@pytest.mark.parametrize("size", [(60, 20), (200, 60)], ids=["60x20", "200x60"])
@pytest.mark.parametrize(("name", "make", "texts"), DIALOGS, ids=[d[0] for d in DIALOGS])
async def test_every_dialog_is_readable_whole(
        name: str, make: Callable[[], Screen[object]], texts: list[str],
        size: tuple[int, int]) -> None:
    app = Host(make)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        words = shown_words(app)
        for text in texts:
            assert " ".join(text.split()) in words, f"{name} at {size}: {text!r} not whole"


async def test_root_causes_typed_by_others_are_shown_as_text() -> None:
    tags = ("cannot write [/tmp]", "disk [b]full[/b]", "[@click=app.quit]x[/]")
    app = Host(lambda: EndScreen(tags))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        words = shown_words(app)
        for tag in tags:
            assert tag in words
        assert app.is_running
