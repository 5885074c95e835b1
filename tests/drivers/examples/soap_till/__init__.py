"""A minimal SOAP 1.1 till, written from drivers/README.md to prove the push shape holds for SOAP
(plain metadata).

Test-only: it lives under tests/, so the registry does not discover it; the compliance test
registers it under :data:`NAME` (tests/drivers/examples/test_soap_till_compliance.py).
"""

NAME = "soap_till"
TITLE = "Example SOAP 1.1 till"
SHAPE = "push"  # one SOAP endpoint under /v1/soap_till/; no run loop
DELIVERY = "at-least-once from the till; applied once by till + receipt id"
