"""pyserial protocol handler modules (``protocol_<scheme>``) of the device simulators."""
