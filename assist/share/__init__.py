"""What the user shares: their shell in a pty and its screen model, and the desktop
(its capture, and the agent's marks drawn over it)."""
