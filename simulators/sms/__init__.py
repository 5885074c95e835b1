"""Simulators of outside services the reference core talks to: an SMS provider (`smsru`)."""
