"""The gateway's own serial devices: customer QR/card scanner and display (plain metadata; see README.md)."""

NAME = "serial"
TITLE = "Serial devices (customer QR scanner, customer display)"
SHAPE = "device"  # pyserial ports in worker threads; no routes
DELIVERY = ("a scan binds the customer to the register's next receipt (durable, expires); a repeated scan "
            "within the debounce time is one scan; nothing is sent to the core from here")
