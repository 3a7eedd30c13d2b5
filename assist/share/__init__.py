"""What the user shares: their shell in a pty, its screen, (later) the desktop."""
