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

from typing import TYPE_CHECKING

import msgspec
import pyotp

from assist.core.grants import (
    KEY_SCOPES,
    GrantRefused,
    GrantTable,
    check_keys,
    check_policy,
    refuse,
)
from assist.core.session import Event, State
from assist.errors import ProtocolError, StateError
from assist.protocol import messages as m

if TYPE_CHECKING:
    from assist.broker.clients import Client, Handler
    from assist.broker.hub import Hub
    from assist.core.session import Session

MAX_NOTE = 500
TOTP_ATTEMPTS = 3
"""Wrong codes allowed per verification request."""


class Trust:
    """Handlers for verification, grants, keys, annotations and hidden input."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.grants: dict[str, GrantTable] = {}
        self.totp: dict[str, int] = {}  # session -> wrong codes so far (pending request)
        self.hidden: set[str] = set()

    def handlers(self) -> dict[str, dict[type[m.Msg], Handler]]:
        """Handlers by role, merged into the hub's dispatch table."""
        return {
            "user": {m.GrantAnswer: self._on_answer, m.Revoke: self._on_revoke,
                     m.KeysRefused: self._on_refused, m.Code: self._on_code,
                     m.Hidden: self._on_hidden, m.ClearAnnotations: self._on_user_clear},
            "agent": {m.Verify: self._on_verify, m.AskGrant: self._on_ask,
                      m.Keys: self._on_keys, m.Annotate: self._on_annotate,
                      m.ClearAnnotations: self._on_agent_clear},
        }

    def forget(self, session_id: str) -> None:
        """The session ended or went back to the queue: its grants die with it."""
        self.grants.pop(session_id, None)
        self.totp.pop(session_id, None)
        self.hidden.discard(session_id)

    # -- helpers ---------------------------------------------------------------------------

    def _audit(self, actor: str, action: str, session: Session,
               data: dict[str, object] | None = None) -> None:
        self.hub.store.audit.append(self.hub.clock(), actor, action, session.id, data)

    def _table(self, session_id: str) -> GrantTable:
        return self.grants.setdefault(session_id, GrantTable())

    def _to_user(self, session: Session, msg: m.Msg) -> None:
        user = self.hub.users.get(session.id)
        if user is None:
            raise StateError("the user is not connected")
        user.send(msg)

    def _to_agent(self, session: Session, msg: m.Msg) -> None:
        agent = self.hub.agents.get(session.agent or "")
        if agent is not None:
            agent.send(msg)

    # -- verification ------------------------------------------------------------------------

    async def _on_verify(self, client: Client, msg: m.Verify) -> None:
        session = self.hub.relay.agent_live(client, msg.session)
        actor = f"agent:{client.peer.name}"
        if msg.method == "totp":
            if not self._registered(session) or \
                    not self.hub.store.directory.totp_secret(session.user):
                raise StateError(f"{session.user} is not enrolled for TOTP; "
                                 f"run: assist users enrol-totp {session.user}")
            self.totp[session.id] = 0
            self._to_user(session, m.AskCode(session=session.id, agent=client.peer.name))
            self._audit(actor, "verify-ask", session, {"method": "totp"})
            client.send(m.Ok(rid=msg.rid))
            return
        if msg.method == "key":
            ok = self._registered(session)
            why = "" if ok else "the user's key is not registered in the directory"
            self._verified(session, actor, "key", ok, why, {})
        else:
            note = " ".join(msg.note.split())[:MAX_NOTE]
            if not note:
                raise ProtocolError("say how you verified the user (an attestation note)")
            self._verified(session, actor, "attest", True, "", {"note": note})
        client.send(m.Ok(rid=msg.rid))

    def _registered(self, session: Session) -> bool:
        user = self.hub.users.get(session.id)
        return user is not None and user.peer.registered

    async def _on_code(self, client: Client, msg: m.Code) -> None:
        session = self.hub.relay.user_live(client, msg.session)
        if session.id not in self.totp:
            raise StateError("no code was asked for")
        secret = self.hub.store.directory.totp_secret(session.user)
        # valid_window=1 accepts the neighbouring 30 s step: clocks drift.
        ok = bool(secret) and pyotp.TOTP(secret or "").verify(msg.code.strip(),
                                                               valid_window=1)
        actor = f"agent:{session.agent}"
        if ok:
            self.totp.pop(session.id, None)
            self._verified(session, actor, "totp", True, "", {})
        else:
            self.totp[session.id] += 1
            left = TOTP_ATTEMPTS - self.totp[session.id]
            if left <= 0:
                self.totp.pop(session.id, None)
            why = "the code did not match" + (f"; {left} tries left" if left > 0 else
                                               "; ask the agent to start again")
            self._verified(session, actor, "totp", False, why, {"attempts_left": max(0, left)})
        client.send(m.Ok(rid=msg.rid))

    def _verified(self, session: Session, actor: str, method: m.VerifyMethod, ok: bool,
                  why: str, data: dict[str, object]) -> None:
        if ok and session.state in (State.CONNECTED, State.TRANSFERRED):
            session.apply(Event.VERIFY, self.hub.clock())
            self.hub.store.sessions.save(session, "verified", actor, {"method": method})
        self._audit(actor, "verify", session, {"method": method, "ok": ok, **data})
        result = m.Verified(session=session.id, method=method, ok=ok, message=why)
        self._to_agent(session, result)
        user = self.hub.users.get(session.id)
        if user is not None:
            user.send(result)

    # -- grants ------------------------------------------------------------------------------

    async def _on_ask(self, client: Client, msg: m.AskGrant) -> None:
        session = self.hub.relay.agent_live(client, msg.session)
        check_policy(msg.scope, session.verified, self.hub.config.require_verification)
        if msg.seconds < 0 or msg.seconds > 24 * 3600:
            raise ProtocolError("a grant lasts from 1 s to 24 h (0: until revoked)")
        self._to_user(session, m.AskGrant(session=session.id, scope=msg.scope,
                                          seconds=msg.seconds, agent=client.peer.name))
        self._audit(f"agent:{client.peer.name}", "ask-grant", session,
                    {"scope": msg.scope, "seconds": msg.seconds})
        client.send(m.Ok(rid=msg.rid))

    async def _on_answer(self, client: Client, msg: m.GrantAnswer) -> None:
        session = self.hub.relay.user_live(client, msg.session)
        actor = f"user:{session.user}"
        if msg.allowed:
            if not msg.grant:
                raise ProtocolError("a grant needs an id")
            now = self.hub.clock()
            seconds = 0.0 if msg.expires_at is None else max(0.0, msg.expires_at - now)
            self._table(session.id).grant(msg.grant, msg.scope, session.agent or "", now,
                                          seconds)
        data: dict[str, object] = {"scope": msg.scope, "grant": msg.grant,
                                   "expires_at": msg.expires_at}
        if msg.reason:
            # The user's machine refused by policy: the user was never asked.
            data["by"], data["reason"] = "policy", msg.reason[:40]
        self._audit(actor, "grant" if msg.allowed else "deny", session, data)
        self._to_agent(session, msg)

    async def _on_revoke(self, client: Client, msg: m.Revoke) -> None:
        session = self.hub.relay.user_live(client, msg.session)
        gone = self._table(session.id).revoke(msg.grants)
        self._audit(f"user:{session.user}", "revoke", session,
                    {"grants": [g.id for g in gone], "scopes": [g.scope for g in gone]})
        self._to_agent(session, m.Revoke(session=session.id, grants=tuple(g.id for g in gone),
                                         reason=msg.reason[:200]))

    # -- acting under a grant ------------------------------------------------------------------

    async def _on_keys(self, client: Client, msg: m.Keys) -> None:
        session = self.hub.relay.agent_live(client, msg.session)
        actor = f"agent:{client.peer.name}"
        table, now = self._table(session.id), self.hub.clock()
        if not msg.grant:
            # A script need not track grant ids: use the newest that allows typing.
            table.live(now)
            msg = msgspec.structs.replace(msg, grant=table.newest(KEY_SCOPES))
        try:
            check_keys(table, msg.grant, now)
            check_policy("control", session.verified, self.hub.config.require_verification)
            if session.id in self.hidden:
                raise refuse("secret-input")
        except GrantRefused as exc:
            self._audit(actor, "keys-refused", session, {"grant": msg.grant,
                                                          "reason": exc.reason})
            client.send(m.KeysRefused(session=session.id, grant=msg.grant, reason=exc.reason,
                                      rid=msg.rid))
            return
        # Content is in the recording (attributed); the audit chain keeps who and how much.
        self._audit(actor, "keys", session, {"grant": msg.grant, "bytes": len(msg.data)})
        self.hub.relay.record_input(session.id, client.peer.name, msg.data)
        self._to_user(session, m.Keys(session=session.id, grant=msg.grant, data=msg.data,
                                      agent=client.peer.name))

    async def _on_refused(self, client: Client, msg: m.KeysRefused) -> None:
        session = self.hub.relay.user_live(client, msg.session)
        self._audit(f"user:{session.user}", "keys-refused", session,
                    {"grant": msg.grant, "reason": msg.reason[:40], "by": "user"})
        # The recording already shows those keys as typed: say they never arrived.
        self.hub.relay.mark(session.id, f"the user's machine refused the agent's last keys "
                                        f"({msg.reason[:40]})")
        self._to_agent(session, msg)

    async def _on_annotate(self, client: Client, msg: m.Annotate) -> None:
        session = self.hub.relay.agent_live(client, msg.session)
        table, now = self._table(session.id), self.hub.clock()
        if not msg.grant:
            table.live(now)
            msg = msgspec.structs.replace(msg, grant=table.newest(("annotate",)))
        table.check(msg.grant, "annotate", now)
        a = msg.annotation
        if len(a.text) > 200 or len(a.id) > 40 or not 0 < a.ttl <= 3600:
            raise ProtocolError("an annotation has a short label (200 chars) and a ttl of "
                                "1 s to 1 h")
        self._audit(f"agent:{client.peer.name}", "annotate", session,
                    {"kind": a.kind, "surface": a.surface, "x": a.x, "line": a.line,
                     "x2": a.x2, "line2": a.line2, "text": a.text})
        self._to_user(session, m.Annotate(session=session.id, grant=msg.grant, annotation=a,
                                          agent=client.peer.name))
        client.send(m.Ok(rid=msg.rid))

    async def _on_agent_clear(self, client: Client, msg: m.ClearAnnotations) -> None:
        session = self.hub.relay.agent_live(client, msg.session)
        self._audit(f"agent:{client.peer.name}", "clear-annotations", session,
                    {"ids": list(msg.ids)})
        self._to_user(session, msg)

    async def _on_user_clear(self, client: Client, msg: m.ClearAnnotations) -> None:
        session = self.hub.relay.user_live(client, msg.session)
        self._audit(f"user:{session.user}", "clear-annotations", session,
                    {"ids": list(msg.ids)})
        self._to_agent(session, msg)

    async def _on_hidden(self, client: Client, msg: m.Hidden) -> None:
        session = self.hub.relay.user_live(client, msg.session)
        if msg.on:
            self.hidden.add(session.id)
        else:
            self.hidden.discard(session.id)
        self.hub.relay.record_hidden(session.id, msg.on)
        self._audit(f"user:{session.user}", "hidden-input", session, {"on": msg.on})
        self._to_agent(session, msg)

