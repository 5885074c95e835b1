"""1C:Retail and other 1C configurations through a Manzana-shaped SOAP service (plain metadata;
see README.md)."""

NAME = "onec"
TITLE = "1C (SOAP 1.1 ProcessRequest in the Manzana POS processing shape)"
SHAPE = "push"  # one SOAP endpoint and its WSDL under /v1/onec/; no poll loop
DELIVERY = "at-least-once from the 1C module; applied once by business unit + POS + number + date + operation"
