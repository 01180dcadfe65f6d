"""`ctr bench`: the container-vs-VM comparison harness.

harness.py  runs the instances (as ctr subprocesses) and measures
probes.py   the isolation probes (probes/*.sh) and their host side
report.py   the JSON document (schema.json), the table, JUnit XML, the plot
"""
