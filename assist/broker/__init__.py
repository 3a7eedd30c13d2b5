"""The broker: SSH server, queue and routing, relay, audit."""
