"""The broker's part in trust: verification, grant relay, policy, audit.

The broker verifies identity (registered key, TOTP, attestation), enforces
the policy that nothing acts on the user's machine before verification,
relays grant requests, decisions, keystrokes and annotations, and writes an
audit record for each. Its grant table is advisory: the user's client checks
every keystroke against its own table (see :mod:`assist.client.guard`); the
broker's copy only spares the user's machine traffic it would refuse anyway
and tells the agent why.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pyotp

from assist.broker.connection import Connection
from assist.broker.ledger import Ledger
from assist.broker.live import LiveSession
from assist.broker.relay import LiveHandler
from assist.core.grants import (
    KEY_SCOPES,
    GrantRefused,
    check_keys,
    check_policy,
    refuse,
)
from assist.core.session import Event, State
from assist.core.text import one_line
from assist.errors import ProtocolError, StateError
from assist.protocol import messages as m
from assist.store.directory import Directory

MAX_NOTE = 500
ASK_AGAIN = 120.0
"""Seconds after which an agent may ask again for a scope the user has not answered
(the question may have been lost with the user's app)."""
TOTP_ATTEMPTS = 3
"""Wrong codes allowed per verification request."""


class Trust:
    """Handlers for verification, grants, keys, annotations and hidden input.

    Args:
        ledger: writes transitions and audit records.
        directory: where TOTP secrets are looked up.
        require_verification: no control or run grant before verification.
    """

    def __init__(self, ledger: Ledger, directory: Directory,
                 require_verification: bool = True) -> None:
        self.ledger = ledger
        self.directory = directory
        self.require_verification = require_verification


    def evidence(self, user: Connection) -> m.Evidence:
        """What the agent is shown of the user's identity before verifying it."""
        peer = user.peer
        totp = peer.registered and bool(self.directory.totp_secret(peer.name))
        return m.Evidence(registered=peer.registered, fingerprint=peer.fingerprint,
                          host=user.host, os_user=user.os_user, totp=totp)
    def handlers(self) -> dict[str, dict[type[m.Msg], LiveHandler]]:
        """Handlers by role, merged into the hub's table of live-session handlers."""
        return {
            "user": {m.GrantAnswer: self._on_answer, m.Revoke: self._on_revoke,
                     m.KeysRefused: self._on_refused, m.Code: self._on_code,
                     m.Hidden: self._on_hidden, m.ClearAnnotations: self._on_user_clear},
            "agent": {m.Verify: self._on_verify, m.AskGrant: self._on_ask,
                      m.Keys: self._on_keys, m.Annotate: self._on_annotate,
                      m.ClearAnnotations: self._on_agent_clear},
        }

    def _audit(self, actor: str, action: str, live: LiveSession,
               data: dict[str, object] | None = None) -> None:
        self.ledger.audit(actor, action, live.id, data)

    # -- verification ------------------------------------------------------------------------

    async def _on_verify(self, live: LiveSession, client: Connection, msg: m.Verify) -> None:
        actor = f"agent:{client.peer.name}"
        user = live.session.user
        if msg.method == "totp":
            if not live.registered or not self.directory.totp_secret(user):
                raise StateError(f"{user} is not enrolled for TOTP; "
                                 f"run: assist users enrol-totp {user}")
            live.relay_to_user(m.AskCode(session=live.id, agent=client.peer.name))
            live.totp_misses = 0
            self._audit(actor, "verify-ask", live, {"method": "totp"})
            client.send(m.Ok(rid=msg.rid))
            return
        if msg.method == "key":
            ok = live.registered
            why = "" if ok else "the user's key is not registered in the directory"
            self._verified(live, actor, "key", ok, why, {})
        else:
            note = one_line(msg.note, MAX_NOTE)
            if not note:
                raise ProtocolError("say how you verified the user (an attestation note)")
            self._verified(live, actor, "attest", True, "", {"note": note})
        client.send(m.Ok(rid=msg.rid))

    async def _on_code(self, live: LiveSession, client: Connection, msg: m.Code) -> None:
        if live.totp_misses is None:
            raise StateError("no code was asked for")
        secret = self.directory.totp_secret(live.session.user)
        # valid_window=1 accepts the neighbouring 30 s step: clocks drift.
        ok = bool(secret) and pyotp.TOTP(secret or "").verify(msg.code.strip(),
                                                               valid_window=1)
        actor = f"agent:{live.session.agent}"
        if ok:
            live.totp_misses = None
            self._verified(live, actor, "totp", True, "", {})
            return
        live.totp_misses += 1
        left = TOTP_ATTEMPTS - live.totp_misses
        if left <= 0:
            live.totp_misses = None
        why = "the code did not match" + (f"; {left} tries left" if left > 0 else
                                           "; ask the agent to start again")
        self._verified(live, actor, "totp", False, why, {"attempts_left": max(0, left)})

    def _verified(self, live: LiveSession, actor: str, method: m.VerifyMethod, ok: bool,
                  why: str, data: dict[str, object]) -> None:
        session = live.session
        if ok and session.state in (State.CONNECTED, State.TRANSFERRED):
            self.ledger.transition(session, Event.VERIFY, actor, "verified", {"method": method})
        self._audit(actor, "verify", live, {"method": method, "ok": ok, **data})
        result = m.Verified(session=live.id, method=method, ok=ok, message=why)
        live.to_agent(result)
        live.tell_user(result)

    # -- grants ------------------------------------------------------------------------------

    async def _on_ask(self, live: LiveSession, client: Connection, msg: m.AskGrant) -> None:
        check_policy(msg.scope, live.session.verified, self.require_verification)
        now = self.ledger.clock.now()
        if now - live.asking.get(msg.scope, -ASK_AGAIN) < ASK_AGAIN:
            # One question at a time: asking again would stack dialogs on the user.
            raise StateError(f"the user is already being asked for {msg.scope}; wait for "
                             "the answer")
        live.relay_to_user(m.AskGrant(session=live.id, scope=msg.scope, seconds=msg.seconds,
                                      agent=client.peer.name))
        live.asking[msg.scope] = now
        self._audit(f"agent:{client.peer.name}", "ask-grant", live,
                    {"scope": msg.scope, "seconds": msg.seconds})
        client.send(m.Ok(rid=msg.rid))

    async def _on_answer(self, live: LiveSession, client: Connection,
                         msg: m.GrantAnswer) -> None:
        actor = f"user:{live.session.user}"
        live.asking.pop(msg.scope, None)
        if msg.allowed:
            if not msg.grant:
                raise ProtocolError("a grant needs an id")
            now = self.ledger.clock.now()
            if msg.expires_at is not None and msg.expires_at <= now:
                return  # a restored grant that ran out on the way: nothing to mirror
            seconds = 0.0 if msg.expires_at is None else max(0.0, msg.expires_at - now)
            live.grants.grant(msg.grant, msg.scope, live.session.agent or "", now, seconds)
        data: dict[str, object] = {"scope": msg.scope, "grant": msg.grant,
                                   "expires_at": msg.expires_at}
        if msg.reason:
            # The user's machine refused by policy: the user was never asked.
            data["by"], data["reason"] = "policy", msg.reason[:40]
        action = "grant-restored" if msg.restored else "grant" if msg.allowed else "deny"
        self._audit(actor, action, live, data)
        live.to_agent(msg)

    async def _on_revoke(self, live: LiveSession, client: Connection, msg: m.Revoke) -> None:
        live.flush_typed()  # what was typed under the grant goes in the chain before its end
        gone = live.grants.revoke(msg.grants)
        self._audit(f"user:{live.session.user}", "revoke", live,
                    {"grants": [g.id for g in gone], "scopes": [g.scope for g in gone]})
        live.to_agent(m.Revoke(session=live.id, grants=tuple(g.id for g in gone),
                               reason=msg.reason[:200]))

    # -- acting under a grant ------------------------------------------------------------------

    async def _on_keys(self, live: LiveSession, client: Connection, msg: m.Keys) -> None:
        actor = f"agent:{client.peer.name}"
        table, now = live.grants, self.ledger.clock.now()
        if not msg.grant:
            # A script need not track grant ids: use the newest that allows typing.
            table.live(now)
            msg = msgspec.structs.replace(msg, grant=table.newest(KEY_SCOPES))
        try:
            check_keys(table, msg.grant, now)
            check_policy("control", live.session.verified, self.require_verification)
            if live.hidden:
                raise refuse("paused" if live.hidden == "paused" else "secret-input")
            if live.user is None:
                raise refuse("user-away")
            if live.behind("user"):
                raise refuse("user-behind")
        except GrantRefused as exc:
            live.flush_typed()
            self._audit(actor, "keys-refused", live, {"grant": msg.grant,
                                                       "reason": exc.reason})
            client.send(m.KeysRefused(session=live.id, grant=msg.grant, reason=exc.reason,
                                      rid=msg.rid))
            return
        live.to_user(m.Keys(session=live.id, grant=msg.grant, data=msg.data,
                            agent=client.peer.name))
        # Content is in the recording (attributed), written once the keys are on
        # their way; the audit chain keeps who and how much, one record a batch.
        live.record_input(client.peer.name, msg.data)
        live.typed(client.peer.name, msg.grant, len(msg.data))

    def typed(self, live: LiveSession) -> Callable[[str, str, int, int, float], None]:
        """The audit writer of ``live``'s keystroke batches."""

        def write(agent: str, grant: str, size: int, count: int, since: float) -> None:
            self._audit(f"agent:{agent}", "keys", live,
                        {"grant": grant, "bytes": size, "messages": count, "since": since})

        return write

    async def _on_refused(self, live: LiveSession, client: Connection,
                          msg: m.KeysRefused) -> None:
        live.flush_typed()
        self._audit(f"user:{live.session.user}", "keys-refused", live,
                    {"grant": msg.grant, "reason": msg.reason[:40], "by": "user"})
        # The recording already shows those keys as typed: say they never arrived.
        live.mark(f"the user's machine refused the agent's last keys ({msg.reason[:40]})")
        live.to_agent(msg)

    async def _on_annotate(self, live: LiveSession, client: Connection,
                           msg: m.Annotate) -> None:
        table, now = live.grants, self.ledger.clock.now()
        if not msg.grant:
            table.live(now)
            msg = msgspec.structs.replace(msg, grant=table.newest(("annotate",)))
        table.check(msg.grant, "annotate", now)
        a = msgspec.structs.replace(msg.annotation, text=one_line(msg.annotation.text))
        live.room("user")
        self._audit(f"agent:{client.peer.name}", "annotate", live,
                    {"kind": a.kind, "surface": a.surface, "x": a.x, "line": a.line,
                     "x2": a.x2, "line2": a.line2, "text": a.text})
        live.to_user(m.Annotate(session=live.id, grant=msg.grant, annotation=a,
                                agent=client.peer.name))
        client.send(m.Ok(rid=msg.rid))

    async def _on_agent_clear(self, live: LiveSession, client: Connection,
                              msg: m.ClearAnnotations) -> None:
        live.room("user")
        self._audit(f"agent:{client.peer.name}", "clear-annotations", live,
                    {"ids": list(msg.ids)})
        live.to_user(msg)

    async def _on_user_clear(self, live: LiveSession, client: Connection,
                             msg: m.ClearAnnotations) -> None:
        live.room("agent")
        self._audit(f"user:{live.session.user}", "clear-annotations", live,
                    {"ids": list(msg.ids)})
        live.to_agent(msg)

    async def _on_hidden(self, live: LiveSession, client: Connection, msg: m.Hidden) -> None:
        self.set_hidden(live, msg.why if msg.on else None)
        live.to_agent(msg)

    def set_hidden(self, live: LiveSession, now: m.HiddenWhy | None) -> None:
        """The user's output is withheld now (``now`` says why) or shown again (``None``):
        recorded, and audited as each state starts and ends."""
        live.flush_typed()
        before = live.hidden
        live.hidden = now
        live.record_hidden(now)
        # Each of the two states is audited as it starts and ends (a pause may
        # begin during a secret prompt, and a secret prompt outlast the pause).
        actor = f"user:{live.session.user}"
        for why, action in (("paused", "privacy-pause"), ("secret", "hidden-input")):
            if (before == why) != (now == why):
                self._audit(actor, action, live, {"on": now == why})
