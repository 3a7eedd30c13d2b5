"""Desktop sharing, voice and camera over WebRTC (aiortc).

The only package that imports aiortc, av and aioice. Modules, one concept
each:

* :mod:`~assist.media.peer`: :class:`MediaPeer`, an ``RTCPeerConnection`` with
  explicit ICE settings;
* :mod:`~assist.media.network`: limiting ICE host candidates to given addresses;
* :mod:`~assist.media.signalling`: :class:`ScreenShare` (user) and
  :class:`ShareViewer` (agent) exchanging offer/answer through the broker;
* :mod:`~assist.media.tracks`: the desktop as a video track, and the receiver;
* :mod:`~assist.media.codecs`: codec choice and screen bitrates;
* :mod:`~assist.media.audio`: voice and camera sources, the speaker;
* :mod:`~assist.media.malloc`: glibc settings for cheap frame buffers;
* :mod:`~assist.media.verification`: the code both sides read aloud (pure).

Importing this package does not import aiortc; import the modules you need.
"""
