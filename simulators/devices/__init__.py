"""Serial device simulators: a customer's QR scanner and a customer display, on pty pairs (raw mode)
and as pyserial URL handlers (``scannersim://NAME``, ``displaysim://NAME`` once
:func:`simulators.devices.urls.register` ran). Written from the protocol notes
(``../shared/protocols/serial.md``), never by importing ``drivers``."""
