"""The signaller a kernel hosts or attaches to: ``SignallerThread`` (a signaller on a thread of
the kernel), and the one a user's kernels share on a machine (hosting, attaching, failover)."""
