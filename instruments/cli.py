"""``devmodel serve-chip``: a simulated chip behind the SCPI test-chip protocol on a local socket.

Imports only click at module level: ``devmodel.cli`` registers this command at import time and
``devmodel --help`` must stay fast.
"""

from __future__ import annotations

import ipaddress
import signal
import sys

import click

from devmodel.errors import friendly

DEFAULT_DEVICES = 1 << 20  # the size `sim:pcm` opens by default, so the same seed gives the same chip


_friendly = friendly("serve-chip could not listen")  # the port is taken, the address cannot be bound

@click.command("serve-chip")
@click.option("--technology", type=click.Choice(["pcm", "reram"]), default="pcm", show_default=True,
              help="Physics of the simulated chip.")
@click.option("--port", type=click.IntRange(0, 65535), default=5025, show_default=True,
              help="TCP port (0: let the system pick a free one; the bound port is printed).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of the simulated chip.")
@click.option("--devices", type=click.IntRange(1, 1 << 26), default=DEFAULT_DEVICES, show_default=True,
              help="Devices on the chip.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --allow-remote.")
@click.option("--allow-remote", is_flag=True,
              help="Allow binding to a non-loopback address (the chip is then reachable by others).")
@click.option("--max-clients", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Connections served at once (more are closed at once).")
@click.option("--station", type=click.Path(dir_okay=False), default=None,
              help="Station file whose chip limits (amplitude, width, compliance, pulses per device, "
              "reads per request, address range) the server declares and enforces itself.")
@_friendly
def serve_chip(technology, port, seed, devices, host, allow_remote, max_clients, station) -> None:
    """Serve a simulated PCM/ReRAM chip over the SCPI test-chip protocol (docs/chip-protocol.md).

    \b
    Connect with: devmodel characterize --chip visa://TCPIP::127.0.0.1::PORT::SOCKET ...
    Stops cleanly on Ctrl-C or SIGTERM.
    """
    from devmodel.chips import open_chip
    from devmodel.errors import DevmodelError
    from instruments.server import ChipServer

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise DevmodelError(f"--host {host!r} is not an IP address") from None
    if not loopback and not allow_remote:
        raise DevmodelError(f"--host {host} is not a loopback address; pass --allow-remote to "
                            f"expose the simulated chip on the network")
    chip = open_chip(f"sim:{technology}?devices={devices}", seed)
    address_range = None
    if station:
        from instruments.station import load_station

        lim = load_station(station).chip_limits
        chip.narrow_limits(lim.combine(chip.info.limits))
        address_range = lim.address_range
        click.echo(f"serve-chip: limits from {station}: {chip.info.limits.to_dict()}"
                   + (f", addresses {address_range[0]}..{address_range[1]}" if address_range else ""),
                   err=True)
    server = ChipServer(chip, host=host, port=port, max_clients=max_clients,
                        address_range=address_range)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop())
    click.echo(f"serve-chip: {chip.info.identity} ({chip.info.n_devices} devices) listening on "
               f"{server.host}:{server.port}  resource TCPIP::{server.host}::{server.port}::SOCKET")
    sys.stdout.flush()
    server.serve_forever()
    click.echo(f"serve-chip: stopped after {server.served} client connection(s)", err=True)
