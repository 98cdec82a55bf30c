"""Benchmarks of anyws against websockets, aiohttp, trio-websocket and raw TCP.

Run ``python -m bench`` from the repository root; see ``bench/README.md``.
"""
