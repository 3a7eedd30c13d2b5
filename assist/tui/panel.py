"""The floating agent panel of ``assist help``: who helps, their face, chat, the keys."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.geometry import Offset
from textual.message import Message
from textual.widgets import Input, RichLog, Static

from assist.display import said
from assist.tui.face import FaceView
from assist.tui.graphics import Mode


class AgentPanel(Vertical):
    """A small window above the shell, draggable by its title bar.

    Messages:
        AgentPanel.Said: the user sent a chat line.
    """

    DEFAULT_CSS = """
    AgentPanel {
        layer: overlay; width: 44; height: auto; max-height: 30;
        border: round $accent; background: $panel; padding: 0 1;
        offset: 0 0;
    }
    AgentPanel #title { background: $accent; color: $text; text-style: bold; }
    AgentPanel #status { height: auto; }
    AgentPanel #chat { height: 6; border: none; }
    AgentPanel #say { height: 3; }
    AgentPanel #keys { color: $text-muted; }
    AgentPanel.-noface FaceView { display: none; }
    AgentPanel.-min { border: none; padding: 0; max-height: 1; width: auto; max-width: 100%; }
    AgentPanel.-min #title { width: auto; }
    AgentPanel.-min #chat, AgentPanel.-min #say, AgentPanel.-min #status,
    AgentPanel.-min #keys, AgentPanel.-min FaceView { display: none; }
    AgentPanel.-nochat #chat, AgentPanel.-nochat #say { display: none; }
    """

    class Said(Message):
        """A chat line typed by the user."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, mode: Mode | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._drag: Offset | None = None
        self._title = "assist: connecting"
        self._strip = "F3 opens"
        self._speaking = False
        self.mode = mode
        self.add_class("-nochat")
        self.add_class("-noface")

    def compose(self) -> ComposeResult:
        yield Static("assist: connecting", id="title")
        yield FaceView(self.mode, id="face")
        # Plain text: the status quotes what the agent wrote (mark labels) and error
        # messages, which must never be read as markup.
        yield Static("", id="status", markup=False)
        yield RichLog(id="chat", wrap=True, markup=False, highlight=False, min_width=20)
        # Short enough for the panel: the rest of the keys are in its key lines.
        yield Input(placeholder="message the agent, Enter", id="say")
        yield Static("F2 chat  F3 hide  F4 move  F10 leave", id="keys")

    def set_title(self, text: str) -> None:
        """Change the title bar."""
        self._title = text
        self._show_title()

    def set_strip(self, keys: str) -> None:
        """The keys the title bar names while the panel is folded to one line."""
        self._strip = keys
        self._show_title()

    def fold(self) -> None:
        """Fold the panel to its title line, or open it again."""
        self.toggle_class("-min")
        self._show_title()

    @property
    def face(self) -> FaceView:
        """The agent's face."""
        return self.query_one(FaceView)

    def show_face(self, on: bool, agent: str = "") -> None:
        """Show the face area (the agent's camera, or their initials), or hide it."""
        if agent:
            self.face.set_agent(agent)
        if not on:
            self.face.off()
        self.set_class(not on, "-noface")

    def set_speaking(self, on: bool) -> None:
        """The agent is speaking (or stopped): said in the title, folded or not."""
        if on != self._speaking:
            self._speaking = on
            self._show_title()

    def _show_title(self) -> None:
        # Folded, the one line still says who helps, whether they speak, and the keys
        # that matter (F5).
        title = f"♪ {self._title}" if self._speaking else self._title
        folded = self.has_class("-min") and self._strip
        self.query_one("#title", Static).update(
            said(f"{title} · {self._strip}" if folded else title))

    def set_status(self, text: str) -> None:
        """Change the status text (plain text, shown as given)."""
        self.query_one("#status", Static).update(said(text))

    def set_keys(self, text: str) -> None:
        """Change the key hints."""
        self.query_one("#keys", Static).update(text)

    def chat_line(self, sender: str, text: str) -> None:
        """Show a chat line."""
        self.remove_class("-nochat")
        self.query_one("#chat", RichLog).write(said(f"{sender}: {text}"))

    def enable_chat(self, on: bool) -> None:
        """Show or hide the chat (it exists only while an agent is connected)."""
        self.set_class(not on, "-nochat")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.post_message(self.Said(event.value.strip()))
        event.input.value = ""

    # Dragging by the title bar.
    def on_mouse_down(self, event: events.MouseDown) -> None:
        if event.widget is not None and event.widget.id == "title":
            self._drag = event.screen_offset - self.region.offset
            self.capture_mouse()

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if self._drag is not None:
            self.move_to(event.screen_offset - self._drag)

    def on_mouse_up(self, event: events.MouseUp) -> None:
        if self._drag is not None:
            self._drag = None
            self.release_mouse()

    def move_to(self, where: Offset) -> None:
        """Put the panel's top-left corner at ``where``, kept on screen."""
        screen = self.screen.size
        x = max(0, min(where.x, screen.width - self.outer_size.width))
        y = max(0, min(where.y, screen.height - self.outer_size.height))
        self.styles.offset = (x, y)
