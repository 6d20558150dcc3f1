"""The shared view of the cluster: instance health, the appliers' progress, the batch limits and the counters.

The request paths, the appliers and operations all read it; each value has one owner that changes it.
"""
