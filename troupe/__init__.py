"""Troupe: a fleet of ChatOps bot replicas that deploys software from Slack."""

__version__ = "0.1.0"
