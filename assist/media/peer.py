"""One side of a WebRTC media connection (aiortc), as assist uses it.

A :class:`MediaPeer` wraps an ``RTCPeerConnection`` built from an explicit
configuration: the ICE servers given (none by default: aiortc would
otherwise use a public STUN server) and optionally a fixed list of local
addresses for host candidates (see :mod:`assist.media.network`; tests and the
demo use 127.0.0.1 only).

Roles: the user's side shares its screen and makes the offer
(:meth:`MediaPeer.offer`); the agent's side answers (:meth:`MediaPeer.answer`),
attaching its voice or camera to the media lines the offer asked to receive.
Offer and answer are complete (aiortc gathers every candidate before the
description is set), so no trickle ICE is needed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from assist.config import Codec
from assist.media import jitter, malloc, network
from assist.media.codecs import Bitrate, apply_bitrate, preferences
from assist.media.errors import MediaError
from assist.media.verification import fingerprints, verification_code

log = logging.getLogger(__name__)

Kind = Literal["audio", "video"]
Direction = Literal["sendonly", "recvonly", "sendrecv", "inactive"]
TrackCallback = Callable[[Kind, Any], object]

_SECTION = re.compile(r"^m=(audio|video) ", re.MULTILINE)
_MID = re.compile(r"^a=mid:(\S+)", re.MULTILINE)
_DIRECTION = re.compile(r"^a=(sendonly|recvonly|sendrecv|inactive)\s*$", re.MULTILINE)


def ice_server(url: str) -> RTCIceServer:
    """An ``RTCIceServer`` from ``stun:host[:port]`` or ``turn:user:secret@host[:port]``.

    TURN credentials ride in the URL's user part because the configuration
    carries plain strings; they are never logged.

    Raises:
        MediaError: for another scheme.
    """
    scheme, _, rest = url.partition(":")
    if scheme not in ("stun", "turn", "turns") or not rest:
        raise MediaError(f"ICE server {url.rsplit('@', 1)[-1]!r} is not a stun:, turn: or turns: "
                         "URL; fix the ice_servers setting")
    username = credential = None
    if "@" in rest:
        creds, _, rest = rest.rpartition("@")
        username, _, credential = creds.partition(":")
    return RTCIceServer(urls=f"{scheme}:{rest}", username=username, credential=credential)


def offered_directions(sdp: str) -> dict[str, tuple[Kind, Direction]]:
    """Media lines of ``sdp`` by mid: their kind and the direction the sender declared."""
    lines: dict[str, tuple[Kind, Direction]] = {}
    starts = [match.start() for match in _SECTION.finditer(sdp)] + [len(sdp)]
    for begin, end in itertools.pairwise(starts):
        section = sdp[begin:end]
        kind = section[2:7]
        mid, direction = _MID.search(section), _DIRECTION.search(section)
        if mid is not None:
            lines[mid.group(1)] = (kind, direction.group(1) if direction else "sendrecv")  # type: ignore[assignment]
    return lines


class MediaPeer:
    """A WebRTC peer for desktop video and voice.

    Args:
        ice_servers: STUN/TURN URLs (``SessionInfo.ice_servers``); empty means
            host candidates only, never a default public server.
        host_addresses: local IP addresses to offer as host candidates;
            ``None`` lets aioice use every non-loopback interface. Tests and
            ``assist demo`` pass :data:`assist.media.network.LOOPBACK`.
        codec: video codec for the screen (``"VP8"`` or ``"H264"``).
        bitrate: screen bitrate bounds; ``None`` uses
            :data:`assist.media.codecs.SCREEN_BITRATES`.
        on_track: called with ``(kind, track)`` for each remote track.
        tune_malloc: apply :func:`assist.media.malloc.tune_for_frames` (process-wide;
            only benchmarks comparing both settings turn it off).

    Raises:
        MediaError: for a bad ICE server URL or host address.
    """

    def __init__(self, *, ice_servers: Sequence[str] = (),
                 host_addresses: Sequence[str] | None = None, codec: Codec = "VP8",
                 bitrate: Bitrate | None = None, on_track: TrackCallback | None = None,
                 tune_malloc: bool = True) -> None:
        self.host_addresses = None if host_addresses is None else network.validate(host_addresses)
        self.codec: Codec = codec
        self.video_preferences = preferences(codec)
        self.bitrate = apply_bitrate(codec, bitrate)
        if tune_malloc:
            malloc.tune_for_frames()
        self.on_track = on_track
        self.remote_tracks: list[tuple[Kind, Any]] = []
        self.local_sdp = ""
        self.remote_sdp = ""
        self.configuration = RTCConfiguration(
            iceServers=[ice_server(url) for url in ice_servers])
        self.pc = RTCPeerConnection(configuration=self.configuration)
        self._state_changed = asyncio.Event()
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    # -- building the offer ----------------------------------------------------------------

    def send_video(self, track: Any) -> None:
        """Send ``track`` (the screen) on a send-only video line in our codec."""
        transceiver = self.pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(self.video_preferences)

    def receive(self, kind: Kind) -> None:
        """Ask the other side for a ``kind`` track (agent voice, agent camera)."""
        transceiver = self.pc.addTransceiver(kind, direction="recvonly")
        if kind == "video":
            transceiver.setCodecPreferences(self.video_preferences)

    def send_audio(self, track: Any, receive: bool = False) -> None:
        """Send ``track`` (our voice), optionally receiving the other side's on the same line."""
        self.pc.addTransceiver(track, direction="sendrecv" if receive else "sendonly")

    # -- negotiation ------------------------------------------------------------------

    async def offer(self) -> str:
        """Create the offer (all candidates gathered) and return its SDP.

        Raises:
            MediaError: if aiortc cannot create it.
        """
        try:
            with network.scoped_host_addresses(self.host_addresses):
                await self.pc.setLocalDescription(await self.pc.createOffer())
        except Exception as exc:  # aiortc raises assorted types; none may reach a person
            raise MediaError(f"could not prepare the media connection: {exc}") from exc
        self._low_latency_receivers()
        self.local_sdp = self.pc.localDescription.sdp
        return self.local_sdp

    async def answer(self, offer_sdp: str, send: dict[Kind, Any] | None = None) -> str:
        """Apply the remote offer and return our answer's SDP.

        Args:
            offer_sdp: the offer, as received.
            send: tracks to send, by kind, on the first offered line of that kind
                that asks to receive (e.g. the agent's voice).

        Raises:
            MediaError: if the offer is malformed or cannot be negotiated.
        """
        lines = offered_directions(offer_sdp)
        if not lines:
            raise MediaError("could not accept the media offer: it contains no media; "
                             "ask the user to try again")
        fingerprints(offer_sdp)  # an offer that cannot be verified is refused up front
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            self.remote_sdp = offer_sdp
            pending = dict(send or {})
            for transceiver in self.pc.getTransceivers():
                fallback: tuple[Kind, Direction] = (
                    "audio" if transceiver.kind == "audio" else "video", "sendrecv")
                kind, direction = lines.get(transceiver.mid or "", fallback)
                if kind == "video":
                    transceiver.setCodecPreferences(self.video_preferences)
                track = pending.get(kind)
                if track is not None and direction in ("recvonly", "sendrecv"):
                    transceiver.sender.replaceTrack(track)
                    transceiver.direction = "sendrecv"
                    del pending[kind]
            for kind in pending:
                log.info("the offer asks for no %s from us; not sending it", kind)
            self._low_latency_receivers()
            with network.scoped_host_addresses(self.host_addresses):
                await self.pc.setLocalDescription(await self.pc.createAnswer())
        except MediaError:
            raise
        except Exception as exc:  # untrusted remote SDP: any parser failure is a media error
            raise MediaError(f"could not accept the media offer: {exc}") from exc
        self.local_sdp = self.pc.localDescription.sdp
        return self.local_sdp

    async def accept(self, answer_sdp: str) -> None:
        """Apply the remote answer to our offer.

        Raises:
            MediaError: if the answer is malformed or does not match the offer.
        """
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        except Exception as exc:  # untrusted remote SDP, as in answer()
            raise MediaError(f"the other side's media answer was not usable: {exc}") from exc
        self.remote_sdp = answer_sdp

    # -- state ------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``new``, ``connecting``, ``connected``, ``failed`` or ``closed``."""
        return str(self.pc.connectionState)

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Wait until ICE and DTLS are up.

        Raises:
            MediaError: if the connection fails, closes or takes too long.
        """
        async def connected() -> None:
            while self.state != "connected":
                if self.state in ("failed", "closed"):
                    raise MediaError(f"the media connection {self.state}; a firewall may block "
                                     "UDP between the two machines (configure a TURN server)")
                self._state_changed.clear()
                await self._state_changed.wait()

        try:
            await asyncio.wait_for(connected(), timeout)
        except TimeoutError:
            raise MediaError(f"the media connection did not come up within {timeout:g} s; "
                             "check that UDP can pass or configure a TURN server") from None

    def verification_code(self, session: str) -> str:
        """The code both people compare (see :mod:`assist.media.verification`).

        Raises:
            MediaError: before negotiation finished.
        """
        if not self.local_sdp or not self.remote_sdp:
            raise MediaError("the media connection is not negotiated yet")
        return verification_code(session, self.local_sdp, self.remote_sdp)

    async def stats(self) -> dict[str, float]:
        """Totals of the transport: ``bytes_sent``, ``bytes_received``, packets likewise."""
        totals = {"bytes_sent": 0.0, "bytes_received": 0.0,
                  "packets_sent": 0.0, "packets_received": 0.0}
        for item in (await self.pc.getStats()).values():
            if getattr(item, "type", "") == "transport":
                totals["bytes_sent"] += item.bytesSent
                totals["bytes_received"] += item.bytesReceived
                totals["packets_sent"] += item.packetsSent
                totals["packets_received"] += item.packetsReceived
        return totals

    async def close(self) -> None:
        """Close the connection and stop our tracks (idempotent)."""
        for sender in self.pc.getSenders():
            if sender.track is not None:
                sender.track.stop()
        await self.pc.close()

    def _low_latency_receivers(self) -> None:
        # Before any packet arrives: release each video frame on its last packet.
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "video":
                jitter.install(transceiver.receiver)

    # -- aiortc events ----------------------------------------------------------------

    def _on_track(self, track: Any) -> None:
        kind: Kind = "audio" if track.kind == "audio" else "video"
        self.remote_tracks.append((kind, track))
        log.debug("remote %s track", kind)
        if self.on_track is not None:
            self.on_track(kind, track)

    def _on_state(self) -> None:
        log.debug("media connection %s", self.state)
        self._state_changed.set()
