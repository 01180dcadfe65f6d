"""Instance drivers: one per kind, chosen in ctr.instance.driver_for."""
