"""Which serial ports to open (``auto`` finds Nano 33 BLE boards) and loopback-only TCP addresses."""

from __future__ import annotations

import ipaddress
import os

from serial.tools import list_ports

ARDUINO_VID = 0x2341
NANO33_BLE_PIDS = (0x805A, 0x005A)  # application, bootloader


class PortError(Exception):
    """No board found, or an address the host refuses; the message says what to do."""


def _describe(p) -> str:
    ids = f"USB {p.vid:04X}:{p.pid:04X}" if p.vid is not None else "not USB"
    return f"{p.device} ({p.description}, {ids})"


def _present() -> tuple[list, str]:
    """The serial ports attached now, and their one-line listing."""
    present = list_ports.comports()
    return present, "; ".join(_describe(p) for p in present) or "none"


def resolve(ports: list[str]) -> list[str]:
    """The ports to open: ``auto`` stands for every attached Arduino Nano 33 BLE; a device path must exist
    (pyserial URLs such as ``socket://`` or ``loop://`` are passed on as they are)."""
    missing = [p for p in ports if p != "auto" and "://" not in p and not os.path.exists(p)]
    if missing:
        raise PortError(
            f"--port {missing[0]}: no such serial port; serial ports present: {_present()[1]}. Pass one of them, "
            "or --port auto to find an Arduino Nano 33 BLE (plug it in with a data cable, not a charge-only one)."
        )
    if "auto" not in ports:
        return list(dict.fromkeys(ports))
    present, listing = _present()
    found = sorted(p.device for p in present if p.vid == ARDUINO_VID and p.pid in NANO33_BLE_PIDS)
    if not found:
        raise PortError(
            f"--port auto: no Arduino Nano 33 BLE found (USB VID {ARDUINO_VID:04X}, PID "
            f"{' or '.join(f'{pid:04X}' for pid in NANO33_BLE_PIDS)}); serial ports present: {listing}. "
            "Plug the board in (a data cable, not a charge-only one), or pass --port PATH."
        )
    return list(dict.fromkeys(p for name in ports for p in (found if name == "auto" else [name])))


def loopback(address: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port), refusing anything but a loopback address."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise PortError(f"{address!r}: expected HOST:PORT, e.g. 127.0.0.1:7878")
    try:
        loop = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loop = False
    if not loop:
        raise PortError(f"{address!r}: only loopback addresses are allowed (127.0.0.0/8, ::1, localhost)")
    return ("127.0.0.1" if host == "localhost" else host), int(port)
