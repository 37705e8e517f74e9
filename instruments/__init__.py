"""pyvisa drivers for test-chip controllers and probe stations (see docs/chip-protocol.md)."""
