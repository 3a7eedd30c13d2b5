"""Protocol codec: round trips, typed errors, size limit, fuzzing."""

from __future__ import annotations

import contextlib
import json
import typing

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assist.errors import MessageTooLarge, ProtocolError
from assist.protocol import MAX_MESSAGE_BYTES, LineBuffer, decode, encode
from assist.protocol import messages as m
from assist.protocol.codec import KNOWN_TYPES, DecodeFailure

SAMPLES: list[m.Msg] = [
    m.Hello(host="h", os_user="u", client="assist", rid=1),
    m.Welcome(version=1, role="agent", name="carol", broker="b", registered=False, rid=1),
    m.Ok(rid=7),
    m.Error(code="state", message="nope", rid=3),
    m.Ping(sent=1.5),
    m.Pong(sent=1.5),
    m.Join(topic="vpn", resume="tok"),
    m.Queued(session="s1", position=2, queued_at=10.0, resume="tok", resumed=True),
    m.Position(session="s1", position=1, waiting=4),
    m.Leave(session="s1"),
    m.Offered(session="s1", agent="carol"),
    m.Ready(session="s1", cols=120, rows=40),
    m.ListQueue(rid=2),
    m.QueueList(entries=(m.QueueEntry(session="s1", user="alice", topic="vpn", queued_at=1.0,
                                      position=1, requeued=True, online=False),), now=2.0),
    m.SetStatus(status="away"),
    m.Wallboard(queue_length=3, longest_wait=12.5, answered_within=7, settled=9,
                agents_available=2, target=15.0, now=100.0),
    m.Accept(session=None),
    m.Started(info=m.SessionInfo(session="s1", user="a", agent="c", topic="t",
                                 state="connected", queued_at=1.0, answered_at=2.0)),
    m.End(session="s1", root_cause="dns", resolved=False),
    m.Ended(session="s1", reason="agent", resolved=True, survey=True),
    m.AgentLost(session="s1", position=1),
    m.Handoff(session="s1", note="vpn flow failed at step 3"),
    m.UserLost(session="s1"),
    m.Output(session="s1", data=b"\x1b[31mred\x00\xff"),
    m.Snapshot(session="s1", cols=80, rows=24, data=b"\x1b[H\x1b[2J"),
    m.Resync(session="s1"),
    m.Resize(session="s1", cols=100, rows=30),
    m.Chat(session="s1", text="hi there", sender="carol", at=3.0),
    m.Survey(session="s1", score=5),
    m.ListRootCauses(),
    m.RootCauses(tags=("dns", "vpn cert")),
    m.Started(info=m.SessionInfo(
        session="s1", user="a", agent="c", topic="t", state="verified", queued_at=1.0,
        evidence=m.Evidence(registered=True, fingerprint="SHA256:x", host="h", os_user="u",
                            totp=True),
        verified=True, ice_servers=("stun:127.0.0.1:3478",))),
    m.Verify(session="s1", method="attest", note="knows the badge number"),
    m.AskCode(session="s1", agent="carol"),
    m.Code(session="s1", code="123456"),
    m.Verified(session="s1", method="totp", ok=False, message="wrong code"),
    m.AskGrant(session="s1", scope="control", seconds=300.0, agent="carol"),
    m.GrantAnswer(session="s1", scope="control", allowed=True, grant="g1", expires_at=9.5),
    m.GrantAnswer(session="s1", scope="run", allowed=False, reason="not-verified"),
    m.Revoke(session="s1", grants=("g1",)),
    m.Keys(session="s1", grant="g1", data=b"ls\r", agent="carol"),
    m.KeysRefused(session="s1", grant="g1", reason="expired"),
    m.Annotate(session="s1", grant="g2", annotation=m.Annotation(
        id="a1", kind="box", x=1, line=2, x2=10, line2=3, text="here", ttl=5.0)),
    m.ClearAnnotations(session="s1", ids=("a1",)),
    m.Hidden(session="s1", on=True),
    m.Signal(session="s1", kind="offer", sdp="v=0\r\n", media="screen"),
    m.Join(topic="vpn", takeover=True),
    m.TakenOver(session="s1"),
    m.ListQueue(offset=500, limit=100),
    m.QueueList(entries=(), now=2.0, total=1200, offset=500),
    m.QueuePage(version=7, entries=(m.QueueEntry(session="s1", user="alice", topic="vpn",
                                                 queued_at=1.0),), total=1, now=3.0),
    m.QueueDelta(version=8, joined=(m.QueueEntry(session="s2", user="bob", topic="dns",
                                                 queued_at=2.0, note="x"),),
                 left=("s1",), now=4.0),
    m.Started(info=m.SessionInfo(session="s1", user="a", agent="c", topic="t",
                                 state="verified", queued_at=1.0), resumed=True, resume="tok"),
    m.Ended(session="s1", reason="requeued", message="you were away too long"),
    m.Away(session="s1", who="agent", until=12.0),
    m.Back(session="s1", who="user"),
    m.GrantAnswer(session="s1", scope="control", allowed=True, grant="g1", restored=True),
    m.Enrol(code="c0de-_x", name="newbie", rid=1),
    m.Enrolled(name="newbie", broker="desk", rid=1),
    m.MakeInvite(uses=3, seconds=600.5, name="alice", rid=2),
    m.InviteMade(code="c0de", uses=3, expires_at=1e9, rid=2),
]


def test_samples_cover_every_message_type() -> None:
    assert {type(s) for s in SAMPLES} == set(typing.get_args(m.Message))


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda s: type(s).__name__)
def test_round_trip(msg: m.Msg) -> None:
    line = encode(msg)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == msg
    assert encode(decode(line)) == line


def test_unknown_type_is_a_typed_error_with_rid() -> None:
    with pytest.raises(DecodeFailure) as info:
        decode(b'{"t":"launch-missiles","rid":9}')
    assert info.value.code == "unknown-type" and info.value.rid == 9


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json", "malformed"),
        (b"[1,2]", "malformed"),
        (b'{"rid":1}', "malformed"),
        (b'{"t":"join","rid":4}', "invalid"),
        (b'{"t":"join","topic":5}', "invalid"),
        (b'{"t":"set-status","status":"asleep"}', "invalid"),
    ],
)
def test_malformed_messages(line: bytes, code: str) -> None:
    with pytest.raises(DecodeFailure) as info:
        decode(line)
    assert info.value.code == code


def test_size_limit_on_encode_and_decode() -> None:
    big = m.Join(topic="x" * MAX_MESSAGE_BYTES)
    with pytest.raises(MessageTooLarge):
        encode(big)
    with pytest.raises(MessageTooLarge):
        decode(b"{" + b" " * MAX_MESSAGE_BYTES + b"}")


def test_line_buffer_splits_and_skips_oversized_lines() -> None:
    buffer = LineBuffer(limit=16)
    assert buffer.feed(b'{"a":') == []
    assert buffer.feed(b'1}\n{"b":2}\n') == [b'{"a":1}', b'{"b":2}']
    out = buffer.feed(b"x" * 40)
    assert len(out) == 1 and isinstance(out[0], MessageTooLarge)
    # The rest of the oversized line is skipped; the stream goes on afterwards.
    assert buffer.feed(b"yyyy\nok\n") == [b"ok"]
    assert buffer.feed(b"\n\n") == []


def test_known_types_match_tags() -> None:
    assert "join" in KNOWN_TYPES and "queue-list" in KNOWN_TYPES


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_random_bytes_only_raise_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(sorted(KNOWN_TYPES)),
       st.dictionaries(st.sampled_from(["rid", "session", "topic", "position", "info",
                                         "entries", "status", "resume", "cols", "x"]),
                       json_values, max_size=5))
def test_fuzz_structured_messages_only_raise_protocol_errors(
        kind: str, fields: dict[str, object]) -> None:
    line = json.dumps({"t": kind, **fields}).encode()
    try:
        msg = decode(line)
    except ProtocolError:
        return
    # Whatever decodes must encode back to an equal message.
    assert decode(encode(msg)) == msg


def test_every_message_is_frozen() -> None:
    with pytest.raises(AttributeError):
        SAMPLES[0].rid = 5  # type: ignore[misc]
    assert all(type(s).__struct_config__.frozen for s in SAMPLES)
    assert msgspec.json.encode(m.Ok()) == b'{"t":"ok"}'


# -- bounds: every value that sizes something is refused where it enters ------------------


@pytest.mark.parametrize(
    ("line", "where"),
    [
        (b'{"t":"resize","session":"s","cols":1001,"rows":24}', "$.cols"),
        (b'{"t":"resize","session":"s","cols":80,"rows":0}', "$.rows"),
        (b'{"t":"ready","session":"s","cols":100000}', "$.cols"),
        (b'{"t":"snapshot","session":"s","cols":80,"rows":99999,"data":""}', "$.rows"),
        (b'{"t":"started","info":{"session":"s","user":"u","agent":"a","topic":"t",'
         b'"state":"connected","queued_at":1,"cols":5000}}', "$.info.cols"),
        (b'{"t":"chat","session":"s","text":"' + b"x" * 5000 + b'"}', "$.text"),
        (b'{"t":"join","topic":"' + b"x" * 2000 + b'"}', "$.topic"),
        (b'{"t":"hello","host":"' + b"h" * 200 + b'"}', "$.host"),
        (b'{"t":"revoke","session":"s","grants":[' + b",".join([b'"g"'] * 300) + b"]}",
         "$.grants"),
        (b'{"t":"clear-annotations","session":"s","ids":[' + b",".join([b'"a"'] * 300)
         + b"]}", "$.ids"),
        (b'{"t":"survey","session":"s","score":6}', "$.score"),
        (b'{"t":"ask-grant","session":"s","scope":"control","seconds":90000}', "$.seconds"),
        (b'{"t":"list-queue","limit":501}', "$.limit"),
        (b'{"t":"annotate","session":"s","grant":"g","annotation":{"id":"a","kind":"box",'
         b'"x":1,"line":1,"ttl":0}}', "$.annotation.ttl"),
        (b'{"t":"leave","session":"' + b"s" * 65 + b'"}', "$.session"),
        # Ids are echoed in errors and logs: nothing but id characters gets in.
        (b'{"t":"leave","session":"s\\u001b]52;c;ZWNobyBoaQ==\\u0007"}', "$.session"),
        (b'{"t":"leave","session":"[red]s"}', "$.session"),
        (b'{"t":"revoke","session":"s","grants":["g h"]}', "$.grants[0]"),
        (b'{"t":"clear-annotations","session":"s","ids":["a\\u009b2J"]}', "$.ids[0]"),
        (b'{"t":"annotate","session":"s","grant":"g","annotation":{"id":"a\\nb",'
         b'"kind":"box","x":1,"line":1}}', "$.annotation.id"),
    ],
)
def test_sizes_are_bounded_where_they_enter(line: bytes, where: str) -> None:
    with pytest.raises(DecodeFailure) as info:
        decode(line)
    assert info.value.code == "invalid"
    assert where in info.value.message


def test_keys_and_output_bytes_are_bounded() -> None:
    keys = m.Keys(session="s", grant="g", data=b"k" * (m.MAX_KEYS + 1))
    with pytest.raises(DecodeFailure, match=r"\$.data"):
        decode(encode(keys))
    output = m.Output(session="s", data=b"o" * (m.MAX_OUTPUT + 1))
    with pytest.raises(DecodeFailure, match=r"\$.data"):
        decode(encode(output))
    assert decode(encode(m.Output(session="s", data=b"o" * m.MAX_OUTPUT))) is not None


def test_a_page_of_long_topics_stays_under_the_size_limit() -> None:
    entry = m.QueueEntry(session="s" * m.MAX_ID, user="u" * m.MAX_NAME,
                         topic="\u20ac" * 200, queued_at=1.0, note="n" * 200)
    page = m.QueuePage(version=1, entries=(entry,) * m.PAGE, total=m.PAGE)
    assert len(encode(page)) < MAX_MESSAGE_BYTES


@pytest.mark.parametrize("depth", [100, 1_000, 100_000])
def test_deep_nesting_is_a_typed_error(depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    for line in (nested, b'{"t":"chat","rid":7,"session":"s","text":' + nested + b"}",
                 b'{"t":"chat","rid":7,"session":"s","x":' + nested + b',"text":"hi"}'):
        try:
            decode(line)
        except DecodeFailure as exc:
            assert exc.code in ("too-deep", "invalid", "malformed")
            if exc.code == "too-deep" and b'"rid":7' in line:
                assert exc.rid == 7
    with pytest.raises(DecodeFailure, match="too deeply"):
        decode(b'{"t":"ping","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
