"""Coordination backends (etcd, ZooKeeper) behind one contract: see base.py."""
