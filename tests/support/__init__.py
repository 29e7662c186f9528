"""Test support: real servers on free loopback ports, waiting on conditions."""
