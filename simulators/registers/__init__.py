"""Register (till) simulators, one package per vendor wire: the other side of each driver.

They build their requests from their own reading of the vendor's spec and never import
``drivers`` (see DESIGN.md, "Rooms")."""
