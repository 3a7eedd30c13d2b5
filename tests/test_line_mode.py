"""``assist help --no-tui``: the line the user types, read as an answer or a command."""

from __future__ import annotations

from assist.cli.line_mode import LineMode
from assist.client.user_events import CodeAsked, GrantAsked
from assist.protocol import messages as m


class Session:
    """The part of a user session the line mode drives, recording what it was told."""

    call = None

    def __init__(self) -> None:
        self.revoked = 0
        self.answers: list[tuple[str, bool]] = []
        self.codes: list[str] = []

    def revoke_all(self) -> int:
        self.revoked += 1
        return 1

    def answer(self, ask: m.AskGrant, yes: bool) -> bool:
        self.answers.append((ask.scope, yes))
        return yes

    def code(self, ask: m.AskCode, text: str) -> None:
        self.codes.append(text)

    async def say(self, text: str) -> bool:
        return True


async def test_r_revokes_everything_even_while_questions_wait() -> None:
    session, said = Session(), []
    mode = LineMode(session, lambda text: said.append(text.plain))  # type: ignore[arg-type]
    for scope in ("annotate", "run"):
        mode.asked(GrantAsked(m.AskGrant(session="s1", scope=scope, seconds=0, agent="carol")))
    mode.asked(CodeAsked(m.AskCode(session="s1", agent="carol")))
    await mode.handle("r")
    assert session.revoked == 1, "r takes every permission back, question or not"
    assert session.answers == [("annotate", False), ("run", False)]
    assert session.codes == [], "an r is never sent as the identity code"
    await mode.handle("123456")
    assert session.codes == ["123456"], "the code question still waits for its answer"
    assert any("Revoked" in line for line in said)
