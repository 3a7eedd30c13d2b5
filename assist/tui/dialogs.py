"""Modal questions of the trust flow: grant prompts, codes, verification, durations."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from assist.client.user_events import ARM_DELAY, asking
from assist.display import said
from assist.protocol import messages as m
from assist.protocol.vocabulary import VERIFY_METHODS, one_of

T = TypeVar("T")


class Dialog(ModalScreen[T], Generic[T]):
    """A modal question that is answered once.

    A second Enter or click can arrive before the screen is gone; answering
    twice would be an error, so later answers are ignored.
    """

    _answered = False

    def answer(self, value: T) -> None:
        """Close the dialog with ``value`` (only the first call counts)."""
        if not self._answered:
            self._answered = True
            self.dismiss(value)


DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 70; max-width: 100%; height: auto; max-height: 100%;
                     overflow-y: auto; border: thick $warning; background: $panel;
                     padding: 1 2; }}
{name} Label {{ width: 100%; }}
{name} Horizontal {{ height: auto; margin-top: 1; }}
{name} Button {{ margin: 0 1; }}
"""
"""A dialog fits any terminal: at most its width, and its text wraps instead of being cut."""




class GrantScreen(Dialog[bool]):
    """The user's yes/no on a permission the agent asks for.

    Nothing typed by habit can allow: Deny has the focus, there is no one-key
    yes, and Allow only works after :data:`ARM_DELAY` (Tab to it, then Enter,
    or click it). ``n`` or Esc deny.
    """

    DEFAULT_CSS = DIALOG_CSS.format(name="GrantScreen")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "answer(False)", "deny"),
        Binding("escape", "answer(False)", "deny"),
    ]

    def __init__(self, ask: m.AskGrant) -> None:
        super().__init__()
        self.ask = ask

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(said((self.ask.agent, "bold"), " " + asking(self.ask)),
                        id="question")
            yield Label("Tab then Enter (or a click) allows; n or Esc denies. "
                        "F9 takes it back at any moment.")
            with Horizontal():
                yield Button("Allow", variant="success", id="allow", disabled=True)
                yield Button("Deny (n)", variant="error", id="deny")

    def on_mount(self) -> None:
        # Deny is focused: an Enter meant for the shell must never say yes.
        self.query_one("#deny", Button).focus()
        self.set_timer(ARM_DELAY, self._arm)

    def _arm(self) -> None:
        self.query_one("#allow", Button).disabled = False

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.answer(event.button.id == "allow")

    def action_answer(self, allowed: bool) -> None:
        self.answer(allowed)


class CodeScreen(Dialog[str | None]):
    """The user types the code of their authenticator app for the agent's verification."""

    DEFAULT_CSS = DIALOG_CSS.format(name="CodeScreen")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, agent: str) -> None:
        super().__init__()
        self.agent = agent

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(said((self.agent, "bold"), " asks for the current code of your "
                             "authenticator app, to check it is really you."))
            yield Input(placeholder="6-digit code", id="code", max_length=10)
            yield Label("Enter sends it to the helpdesk (never to the agent); Esc declines.")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.answer(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.answer(None)


class VerifyScreen(Dialog[tuple[m.VerifyMethod, str] | None]):
    """The agent picks how to verify the user: registered key, TOTP, or attestation."""

    DEFAULT_CSS = DIALOG_CSS.format(name="VerifyScreen")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, user: str, evidence: m.Evidence | None) -> None:
        super().__init__()
        self.user = user
        self.evidence = evidence

    def compose(self) -> ComposeResult:
        e = self.evidence
        with Vertical():
            yield Label(said("Verify ", (self.user, "bold"), " before helping."))
            yield Label(evidence_text(e))
            with Horizontal():
                yield Button("Registered key", id="key", disabled=not (e and e.registered))
                yield Button("Ask TOTP code", id="totp", disabled=not (e and e.totp))
            yield Input(placeholder="or attest: how you checked (e.g. called back on the "
                        "desk phone)", id="note")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.answer((one_of(VERIFY_METHODS, event.button.id, "verification method"), ""))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.answer(("attest", event.value.strip()))

    def action_cancel(self) -> None:
        self.answer(None)


class DurationScreen(Dialog[float | None]):
    """How long the agent asks control for."""

    DEFAULT_CSS = DIALOG_CSS.format(name="DurationScreen")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]
    CHOICES: ClassVar[list[tuple[str, float]]] = [
        ("5 minutes", 300.0), ("15 minutes", 900.0), ("until revoked", 0.0)]

    def __init__(self, user: str) -> None:
        super().__init__()
        self.user = user

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(said("Ask ", (self.user, "bold"), " to let you type in their terminal:"))
            with Horizontal():
                for i, (label, _) in enumerate(self.CHOICES):
                    yield Button(label, id=f"d{i}")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.answer(self.CHOICES[int(str(event.button.id)[1:])][1])

    def action_cancel(self) -> None:
        self.answer(None)


class TextScreen(Dialog[str | None]):
    """One short line of text (the label of an arrow or a note)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="TextScreen")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Input(id="text", max_length=80)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.answer(event.value.strip())

    def action_cancel(self) -> None:
        self.answer(None)


def evidence_text(e: m.Evidence | None) -> Text:
    """The identity evidence in two lines, for the agent."""
    if e is None:
        return Text("no identity evidence")
    key = ("registered key", "") if e.registered else ("unknown key", "bold red")
    totp = "TOTP enrolled" if e.totp else "no TOTP"
    # Fingerprint, host and OS user come from the user's own client: text, never markup.
    return said(key, f" {e.fingerprint[:23]}...\nhost {e.host or '?'} · OS user "
                     f"{e.os_user or '?'} · {totp}")


class ConfirmScreen(Dialog[bool]):
    """A yes/no before something that cannot be undone; no has the focus, Esc says no."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmScreen")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str, detail: str, yes: str, no: str) -> None:
        super().__init__()
        self.question, self.detail, self.yes, self.no = question, detail, yes, no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(said(self.question))
            yield Label(said(self.detail))
            with Horizontal():
                yield Button(self.yes, variant="warning", id="yes")
                yield Button(self.no, id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.answer(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.answer(yes)


def takeover_screen(question: str) -> ConfirmScreen:
    """This key already waits for help elsewhere: move that request here?"""
    return ConfirmScreen(f"You already asked for help elsewhere: {question}.",
                         "Move that request here? The other assist help will stop.",
                         "Move it here", "No, quit")
