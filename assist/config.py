"""Configuration: one immutable config per program, from TOML files and ``ASSIST_*`` env.

This is the only module that reads the environment. Precedence, lowest first:
built-in defaults, the TOML file, ``ASSIST_*`` variables, command-line flags.

Files (in the platform config dir, or ``$ASSIST_CONFIG_DIR``):

* ``broker.toml``: ``host``, ``port``, ``db``, ``host_key``, ``name``,
  ``allow_unregistered_users``, ``resume_grace`` (seconds a waiting user's
  place is kept while they reconnect), ``user_grace`` and ``agent_grace``
  (seconds a live session waits for its user or agent to reconnect; after
  the agent's, the user goes first in the queue), ``requests_per_key`` (how
  many waiting or live requests one key may hold; 0: no limit),
  ``offer_timeout``,
  ``secret_key_path`` (the key that seals TOTP secrets in the store, next to
  the host key by default), ``ice_servers`` (comma-separated STUN/TURN URLs;
  none by default),
  ``record`` (session recordings on/off), ``recordings`` (their directory),
  ``require_verification`` (no control before the user is verified),
  ``trusted_user_ca_keys`` and ``trusted_agent_ca_keys`` (files of SSH
  certificate authority public keys, as OpenSSH's ``TrustedUserCAKeys``: a
  key certified by one of them, valid now, is admitted under the
  certificate's first principal without being registered).
* ``client.toml``: ``[broker] host, port`` (the broker used by default),
  ``[known_brokers]`` (``"host:port" = "ssh-ed25519 AAAA..."``: each broker's
  pinned host key, like ``known_hosts``; several side by side),
  ``user_key`` and ``agent_key`` (the SSH private key to log in with in each
  role; ``key`` for both), and ``redact`` (a list of
  regular expressions whose matches are masked before output leaves the
  machine). Media (desktop sharing): ``media_hosts`` (IP addresses ICE may
  offer as host candidates, a list or a comma-separated string; none means
  every interface, the library's default), ``codec`` (``VP8`` or ``H264``) and
  ``snapshots`` (where the console saves desktop snapshots; default the
  current directory). Their variables: ``ASSIST_MEDIA_HOSTS`` (tests and
  the demo set ``127.0.0.1`` so that no packet leaves the machine),
  ``ASSIST_CODEC``, ``ASSIST_SNAPSHOTS``. The call (voice and the agent's
  face, in every session): ``voice`` (``false``: no call), ``audio`` (the
  sound systems to try, ``["pulse", "alsa"]`` by default; ``[]`` or
  ``"none"``: none, the voice is silence and nothing is played),
  ``voice_file`` (sent as your voice when there is no microphone) and, for
  agents, ``camera`` (a camera device, a picture or a video file); their
  variables ``ASSIST_VOICE``, ``ASSIST_AUDIO``, ``ASSIST_VOICE_FILE``,
  ``ASSIST_CAMERA``.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import platformdirs

from assist.errors import ConfigError
from assist.files import SSH_KEYS

DEFAULT_PORT = 2222
Codec = Literal["VP8", "H264"]
"""A video codec a desktop share can use (see :mod:`assist.media.codecs`)."""
CODECS: tuple[Codec, ...] = get_args(Codec)


@dataclass(frozen=True)
class Paths:
    """Where assist keeps its files."""

    config: Path
    data: Path
    state: Path

    @classmethod
    def from_env(cls) -> Paths:
        """Platform dirs, overridable by ``ASSIST_CONFIG_DIR`` / ``ASSIST_DATA_DIR``."""
        env = os.environ
        config = env.get("ASSIST_CONFIG_DIR") or platformdirs.user_config_dir("assist")
        data = env.get("ASSIST_DATA_DIR") or platformdirs.user_data_dir("assist")
        state = env.get("ASSIST_STATE_DIR") or platformdirs.user_state_dir("assist")
        return cls(Path(config), Path(data), Path(state))


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text: save it as UTF-8 (TOML)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _port(value: object, source: str) -> int:
    try:
        port = int(str(value))
    except ValueError:
        raise ConfigError(f"{source}: port must be a number, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{source}: port {port} is out of range (0-65535)")
    return port


def parse_address(text: str, source: str = "address") -> tuple[str, int]:
    """Parse ``host``, ``host:port`` or ``[v6]:port``.

    Raises:
        ConfigError: if the port is not a number in range.
    """
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, _port(rest.lstrip(":"), source) if rest else DEFAULT_PORT
    if text.count(":") == 1:
        host, port = text.split(":")
        return host or "127.0.0.1", _port(port, source)
    return text or "127.0.0.1", DEFAULT_PORT


def _certified_default_key() -> Path | None:
    """The first key of :data:`SSH_KEYS` that has a certificate next to it (``KEY-cert.pub``)."""
    for name in SSH_KEYS:
        key = Path.home() / ".ssh" / name
        if key.is_file() and Path(f"{key}-cert.pub").is_file():
            return key
    return None


def toml_value(value: object) -> str:
    """A string, or a list of strings, as TOML writes it (tomllib reads it back whole:
    any character, escapes only where TOML asks for them)."""
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    text = str(value)
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def parse_addresses(text: str, source: str = "address") -> tuple[str, ...]:
    """Parse a comma-separated list of addresses into ``host:port`` forms, in order.

    Raises:
        ConfigError: if one is not an address, or the list is empty.
    """
    out: list[str] = []
    for part in text.split(","):
        if part.strip():
            address = format_address(*parse_address(part.strip(), source))
            if address not in out:
                out.append(address)
    if not out:
        raise ConfigError(f"{source}: no address in {text!r}")
    return tuple(out)


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (what :func:`parse_address` reads)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _pins(data: dict[str, Any], section: dict[str, Any], default: str,
          source: str) -> dict[str, str]:
    """The pinned host key of each broker address in a client file.

    A file from before ``[known_brokers]`` pinned one key in ``[broker]``: it
    counts for that section's address (``default``).
    """
    known = data.get("known_brokers", {})
    if not isinstance(known, dict) or not all(isinstance(v, str) for v in known.values()):
        raise ConfigError(f"{source}: [known_brokers] must map \"host:port\" to a host key")
    pins: dict[str, str] = {}
    legacy = section.get("host_key")
    if isinstance(legacy, str) and legacy and default:
        pins[default] = legacy
    for address, pin in known.items():
        host, port = parse_address(address, f"{source}: [known_brokers]")
        pins[format_address(host, port)] = pin
    return pins


def parse_codec(text: str, source: str = "codec") -> Codec:
    """``VP8`` or ``H264`` from any spelling (``vp8``, ``h264``).

    Raises:
        ConfigError: for another codec.
    """
    spelt = text.strip().upper()
    for codec in CODECS:
        if codec == spelt:
            return codec
    raise ConfigError(f"{source}: unknown video codec {text!r}; use {' or '.join(CODECS)}")


MEDIA_SETTINGS = ("media_hosts", "codec", "snapshots", "voice", "audio", "voice_file",
                  "camera")
"""The media keys of ``client.toml`` (each also an ``ASSIST_<KEY>`` variable)."""
SOUND_SYSTEMS = ("pulse", "alsa")


def parse_switch(value: object, source: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``).

    Raises:
        ConfigError: for anything else.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{source}: use true or false, not {value!r}")


def parse_audio(value: object, source: str) -> tuple[str, ...]:
    """The sound systems to try: a list or comma-separated string of pulse and alsa;
    ``none`` or empty for none.

    Raises:
        ConfigError: for another name.
    """
    names = value if isinstance(value, list) else str(value).split(",")
    chosen = tuple(str(n).strip().lower() for n in names if str(n).strip())
    if chosen == ("none",):
        return ()
    for name in chosen:
        if name not in SOUND_SYSTEMS:
            raise ConfigError(f"{source}: unknown sound system {name!r}; use pulse, alsa or "
                              "none")
    return chosen


def parse_hosts(value: object, source: str = "media_hosts") -> tuple[str, ...]:
    """Media host addresses from a TOML list or a comma-separated string.

    Only the shape is checked here; the media layer checks they are IP
    addresses when a share starts (and says so in the app).

    Raises:
        ConfigError: if ``value`` is neither a string nor a list of strings.
    """
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise ConfigError(f"{source}: media_hosts must be a list of IP addresses")
    return tuple(item.strip() for item in items if item.strip())


def _apply(base: Any, values: dict[str, Any], source: str) -> Any:
    """Return ``base`` with known fields replaced; refuse unknown keys."""
    names = {f.name: f for f in dataclasses.fields(base)}
    changes: dict[str, Any] = {}
    for key, raw in values.items():
        if raw is None:
            continue
        if key not in names:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        current = getattr(base, key)
        value: Any
        try:
            if isinstance(current, bool):
                value = raw if isinstance(raw, bool) else str(raw).lower() in (
                    "1", "true", "yes", "on")
            elif isinstance(current, int):
                value = _port(raw, source) if key == "port" else int(raw)
            elif isinstance(current, float):
                value = float(raw)
            elif key == "db":
                value = str(raw)  # a path or a URL: the store's engine reads it
            elif isinstance(current, Path) or key in (
                    "key", "host_key_path", "secret_key_path", "recordings",
                    "trusted_user_ca_keys", "trusted_agent_ca_keys"):
                value = Path(str(raw)).expanduser()
            else:
                value = str(raw)
        except ValueError:
            raise ConfigError(f"{source}: {key} has a bad value {raw!r}") from None
        changes[key] = value
    return dataclasses.replace(base, **changes)


def _env(prefix: str, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: os.environ[f"{prefix}{n.upper()}"] for n in names
            if f"{prefix}{n.upper()}" in os.environ}


@dataclass(frozen=True)
class BrokerConfig:
    """Settings of ``assist serve``."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db: str = "broker.db"
    """The store: a SQLite file, or a ``postgresql://`` URL for several brokers."""
    host_key_path: Path = Path("host_key")
    secret_key_path: Path | None = None
    """The key that seals TOTP secrets in the store (0600, created on first use);
    by default ``secret_key`` next to the host key."""
    name: str = field(default_factory=socket.gethostname)
    allow_unregistered_users: bool = False
    resume_grace: float = 300.0
    user_grace: float = 60.0
    agent_grace: float = 10.0
    requests_per_key: int = 1
    offer_timeout: float = 15.0
    ice_servers: str = ""
    record: bool = True
    recordings: Path = Path("recordings")
    require_verification: bool = True
    trusted_user_ca_keys: Path | None = None
    trusted_agent_ca_keys: Path | None = None
    bus: str = ""
    """The bus between the nodes of a helpdesk of several (``nats://HOST:PORT``);
    "" for a broker on its own."""
    node: str = ""
    """This node's name among several (unique, the same across restarts); by
    default :attr:`name`."""

    @property
    def node_name(self) -> str:
        """The name this broker has among the nodes of its helpdesk."""
        return self.node or self.name

    @property
    def secret_key_file(self) -> Path:
        """Where the key that seals TOTP secrets is (see :attr:`secret_key_path`)."""
        return self.secret_key_path or self.host_key_path.with_name("secret_key")

    @property
    def ice_urls(self) -> tuple[str, ...]:
        """STUN/TURN server URLs for media (none by default: host candidates only)."""
        return tuple(u.strip() for u in self.ice_servers.split(",") if u.strip())

    @classmethod
    def load(cls, file: Path | None = None, **flags: Any) -> BrokerConfig:
        """Build the broker config from defaults, TOML, env and ``flags``."""
        paths = Paths.from_env()
        base = cls(db=str(paths.data / "broker.db"), host_key_path=paths.data / "host_key",
                   recordings=paths.data / "recordings")
        if file is not None and not file.is_file():
            # Named on purpose: a typo must not leave a broker on the defaults.
            raise ConfigError(f"config file {file} does not exist" if not file.exists()
                              else f"{file} is not a config file")
        file = file or paths.config / "broker.toml"
        config = _apply(base, _read_toml(file), str(file))
        names = tuple(f.name for f in dataclasses.fields(cls))
        config = _apply(config, _env("ASSIST_BROKER_", names), "environment")
        return _apply(config, flags, "command line")  # type: ignore[no-any-return]


def _lasting(key: Path) -> str:
    """``key`` as it is saved for next time: absolute (``--key id`` given in one folder
    must still name that file when assist runs from another)."""
    return str(key.expanduser().absolute())


@dataclass(frozen=True)
class ClientConfig:
    """Settings of ``assist help``, ``assist console`` and agent commands."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    host_key: str = ""
    key: Path | None = None
    file: Path = Path("client.toml")
    state: Path = Path(".")
    os_user: str = ""
    hostname: str = ""
    redact: tuple[str, ...] = ()
    media_hosts: tuple[str, ...] = ()
    codec: Codec = "VP8"
    snapshots: Path = Path(".")
    voice: bool = True
    """Open the call (voice and the agent's face) in every session."""
    audio: tuple[str, ...] | None = None
    """Sound systems to try (``None``: every one the media layer knows; empty: none)."""
    voice_file: Path | None = None
    """Played as this side's voice when no microphone opens."""
    camera: str = ""
    """The agent's camera: a device, a picture or a video file; empty: off."""
    brokers: tuple[str, ...] = ()
    """Every address of the helpdesk (several nodes), tried in turn; empty for one."""
    pins: tuple[tuple[str, str], ...] = ()
    """``(address, host key)`` pinned for the addresses of :attr:`brokers`."""

    @property
    def media_host_addresses(self) -> tuple[str, ...] | None:
        """ICE host-candidate addresses for media; ``None`` leaves the library's choice."""
        return self.media_hosts or None

    @classmethod
    def load(cls, file: Path | None = None, broker: str | None = None,
             key: Path | None = None, role: str = "user") -> ClientConfig:
        """Build the client config; ``broker`` is ``host[:port]`` from the command line.

        ``role`` (``user`` or ``agent``) picks the key the file keeps for it.
        """
        paths = Paths.from_env()
        file = file or paths.config / "client.toml"
        data = _read_toml(file)
        section = data.get("broker", {})
        if not isinstance(section, dict):
            raise ConfigError(f"{file}: [broker] must be a table")
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        config = cls(file=file, state=paths.state, os_user=user, hostname=socket.gethostname())
        config = _apply(config, {k: section.get(k) for k in ("host", "port")}, str(file))
        pins = _pins(data, section, config.address, str(file))
        config = _apply(config, {"key": data.get(f"{role}_key") or data.get("key")}, str(file))
        redact = data.get("redact", [])
        if not isinstance(redact, list) or not all(isinstance(r, str) for r in redact):
            raise ConfigError(f"{file}: redact must be a list of regular expressions")
        config = dataclasses.replace(config, redact=tuple(redact))
        config = config._media(data, str(file))
        config = config._media({name: os.environ.get(f"ASSIST_{name.upper()}")
                                for name in MEDIA_SETTINGS}, "environment")
        listed = section.get("addresses", [])
        if not isinstance(listed, list) or not all(isinstance(a, str) for a in listed):
            raise ConfigError(f"{file}: [broker] addresses must be a list of \"host:port\"")
        addresses = broker or os.environ.get("ASSIST_BROKER")
        brokers = (parse_addresses(addresses, "broker address") if addresses else
                   parse_addresses(",".join(listed), f"{file}: [broker] addresses")
                   if listed else ())
        if brokers:
            host, port = parse_address(brokers[0])
            config = dataclasses.replace(config, host=host, port=port)
        config = dataclasses.replace(
            config, brokers=brokers if len(brokers) > 1 else (),
            pins=tuple((a, pins[a]) for a in brokers if a in pins),
            host_key=pins.get(config.address, ""))
        if not config.host_key and len(brokers) > 1:
            # The nodes of one helpdesk share one host key: a pin for one is a pin for all.
            config = dataclasses.replace(config, host_key=config.pins[0][1] if config.pins
                                         else "")
        env_key = os.environ.get("ASSIST_KEY")
        config = _apply(config, {"key": key or env_key}, "command line")
        if config.key is None:
            # No key named: one of ~/.ssh's keys that has a certificate is the one to
            # log in with (its certificate goes in the hello; see certificate).
            certified = _certified_default_key()
            if certified is not None:
                config = dataclasses.replace(config, key=certified)
        return config  # type: ignore[no-any-return]

    @property
    def address(self) -> str:
        """``host:port`` of the broker (``[v6]:port`` for an IPv6 address)."""
        return format_address(self.host, self.port)

    @property
    def addresses(self) -> tuple[str, ...]:
        """The broker addresses to try, this one first."""
        return (self.address, *(a for a in self.brokers if a != self.address))

    def at(self, address: str) -> ClientConfig:
        """This config aimed at another of :attr:`brokers` (``address``), same pin."""
        host, port = parse_address(address)
        return dataclasses.replace(self, host=host, port=port,
                                   host_key=dict(self.pins).get(address, self.host_key))

    def _media(self, values: dict[str, Any], source: str) -> ClientConfig:
        """This config with the media settings found in ``values`` applied."""
        changes: dict[str, Any] = {}
        if values.get("media_hosts") is not None:
            changes["media_hosts"] = parse_hosts(values["media_hosts"], source)
        if values.get("codec") is not None:
            changes["codec"] = parse_codec(str(values["codec"]), source)
        if values.get("snapshots") is not None:
            changes["snapshots"] = Path(str(values["snapshots"])).expanduser()
        if values.get("voice") is not None:
            changes["voice"] = parse_switch(values["voice"], f"{source}: voice")
        if values.get("audio") is not None:
            changes["audio"] = parse_audio(values["audio"], f"{source}: audio")
        if values.get("voice_file"):
            changes["voice_file"] = Path(str(values["voice_file"])).expanduser()
        if values.get("camera") is not None:
            changes["camera"] = str(values["camera"])
        return dataclasses.replace(self, **changes)

    def pinned(self, host_key: str) -> ClientConfig:
        """Return this config with ``host_key`` pinned for its broker, and save it.

        Other brokers' pins stay; this broker becomes the default one.

        Raises:
            ConfigError: if the file cannot be written.
        """
        config = dataclasses.replace(self, host_key=host_key)
        config.save()
        return config

    @property
    def certificate(self) -> str:
        """The OpenSSH certificate of :attr:`key` (``KEY-cert.pub``, as ssh looks for
        it), or "" when it has none."""
        if self.key is None:
            return ""
        try:
            return Path(f"{self.key}-cert.pub").read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return ""

    def remember_key(self, role: str) -> None:
        """Save :attr:`key` as ``role``'s key if the file does not say so already (a key
        given once with ``--key`` is the one next time)."""
        if self.key is None:
            return
        data = _read_toml(self.file)
        if data.get(f"{role}_key") != _lasting(self.key):
            self.save(keys={f"{role}_key": _lasting(self.key)})

    def with_key(self, role: str, key: Path) -> ClientConfig:
        """Return this config logging in with ``key`` as ``role``, and save that."""
        config = dataclasses.replace(self, key=key)
        config.save(keys={f"{role}_key": _lasting(key)})
        return config

    def save(self, keys: dict[str, str] | None = None) -> None:
        """Write the file: this broker (its pin too) as the default, what else it held kept.

        Raises:
            ConfigError: if the file cannot be written.
        """
        data = _read_toml(self.file)
        section = data.get("broker", {})
        section = section if isinstance(section, dict) else {}
        # A file from before [known_brokers] pinned its [broker]'s key: that pin stays.
        old = _apply(dataclasses.replace(self, host="127.0.0.1", port=DEFAULT_PORT),
                     {k: section.get(k) for k in ("host", "port")}, str(self.file))
        pins = _pins(data, section, old.address, str(self.file))
        if self.host_key:
            for address in self.addresses:  # one key for all the nodes of a helpdesk
                pins[address] = self.host_key
        kept: dict[str, Any] = {name: data[name] for name in ("key", "user_key", "agent_key")
                                if name in data}
        kept.update(keys or {})
        lines = [
            "# assist client settings; [known_brokers] pins each broker's key (like known_hosts).",
            *(f"{name} = {toml_value(str(value))}" for name, value in kept.items()),
            *([f"redact = {toml_value(list(self.redact))}"] if self.redact else []),
            *self._media_lines(),
            "",
            "[broker]",
            f"host = {toml_value(self.host)}",
            f"port = {self.port}",
            *([f"addresses = {toml_value(list(self.addresses))}"] if self.brokers else []),
            "",
            "[known_brokers]",
            *(f"{toml_value(address)} = {toml_value(pin)}" for address, pin in pins.items()),
            "",
        ]
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            # A name of its own: two assist processes saving at once do not collide.
            partial = self.file.with_name(f".{self.file.name}.{os.getpid()}.new")
            partial.write_text("\n".join(lines), encoding="utf-8")
            partial.replace(self.file)  # whole or not at all: a crash keeps the old file
        except OSError as exc:
            raise ConfigError(f"cannot save {self.file}: {exc.strerror}") from None

    def _media_lines(self) -> list[str]:
        """The media settings of the file, kept when the file is rewritten by :meth:`pinned`.

        Only what the file itself said is kept: values from the environment
        (``ASSIST_MEDIA_HOSTS`` in a test) must not become permanent.
        """
        data = _read_toml(self.file)
        return [f"{name} = {toml_value(data[name])}" for name in MEDIA_SETTINGS
                if name in data]
