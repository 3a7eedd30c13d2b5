"""Headless core: session state machine, queue and routing. Pure: no I/O."""
