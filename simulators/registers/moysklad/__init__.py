"""MoySklad's cloud calling a loyalty system (Loyalty API 1.0), and its Vendor API.

Python API: :class:`~simulators.registers.moysklad.day.Day` (a scripted day →
:class:`~simulators.registers.moysklad.day.Report`), :class:`~simulators.registers.moysklad.cloud.Cloud`
(the requests), :class:`~simulators.registers.moysklad.vendor.VendorApi` (registration). CLI:
``posgw sim moysklad``. Written from ``shared/protocols/moysklad.md``; never imports ``drivers``.
"""
