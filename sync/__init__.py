"""Everything that crosses the network: wire protocol, kiosk client, registry server."""
