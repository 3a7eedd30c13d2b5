"""A client with several broker addresses: the first that answers is used, pins shared."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from assist.broker.server import Broker
from assist.client import UserClient
from assist.client.connect import open_link
from assist.config import ClientConfig
from assist.errors import AuthRefused, ConfigError, Unreachable
from tests.helpers import KeyPair
from tests.servers import free_port


def test_a_list_of_addresses_is_read_from_the_flag_and_the_file(tmp_path: Path) -> None:
    config = ClientConfig.load(tmp_path / "c.toml", broker="h1:1,[::1]:2, h3 ")
    assert config.addresses == ("h1:1", "[::1]:2", "h3:2222")
    (tmp_path / "d.toml").write_text('[broker]\naddresses = ["a:1", "b:2"]\n')
    assert ClientConfig.load(tmp_path / "d.toml").addresses == ("a:1", "b:2")
    (tmp_path / "e.toml").write_text('[broker]\naddresses = "a:1"\n')
    with pytest.raises(ConfigError, match="addresses must be a list"):
        ClientConfig.load(tmp_path / "e.toml")
    with pytest.raises(ConfigError, match="no address"):
        ClientConfig.load(tmp_path / "c.toml", broker=" , ")


async def test_the_client_fails_over_to_the_node_that_answers(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    config = ClientConfig.load(tmp_path / "c.toml", broker=f"{dead},127.0.0.1:{broker.port}",
                               key=keys["alice"].private)
    link, used = await open_link(config, "user", trust=lambda address, fingerprint: True)
    try:
        assert used.address == f"127.0.0.1:{broker.port}"
        client = UserClient(link)
        welcome = await client.hello(host="h", os_user="u")
        assert welcome.name == "alice"
    finally:
        await link.close()
    # The pin was saved for every address of the helpdesk (the nodes share one key),
    # so the node that was down is trusted too when it answers later.
    again = ClientConfig.load(tmp_path / "c.toml", key=keys["alice"].private)
    assert again.addresses == (f"127.0.0.1:{broker.port}", dead)  # the one that answered first
    assert dict(again.pins)[dead] == broker.public_key
    assert again.host_key == broker.public_key


async def test_nobody_answering_says_so_for_each_and_a_refused_key_stops_at_once(
        broker: Broker, keys: dict[str, KeyPair], tmp_path: Path) -> None:
    dead = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    config = ClientConfig.load(tmp_path / "c.toml", broker=",".join(dead),
                               key=keys["alice"].private)
    started = time.monotonic()
    with pytest.raises(Unreachable, match="any of the helpdesk's brokers") as caught:
        await open_link(config, "user")
    assert all(a in caught.value.message for a in dead)
    assert time.monotonic() - started < 10
    # mallory's key is refused by the live broker: the next address is not tried.
    refused = ClientConfig.load(tmp_path / "m.toml", key=keys["mallory"].private,
                                broker=f"127.0.0.1:{broker.port},{dead[0]}")
    with pytest.raises(AuthRefused):
        await open_link(refused, "agent", trust=lambda address, fingerprint: True)
