"""The transactional outbox: events stored in the transaction that makes them, relayed to the
broker after it commits (at least once, in order per channel), and kept for a while so that a
feed can hand out again what its client missed.

- `models.py`: the `outbox` table (one row an event) and `outbox_channels` (each channel's count).
- `store.py`: writing a transaction's events with their numbers, and reading them back.
- `relay.py`: publishing after commit, and the background relay of what was left behind.
- `replay.py`: where one lossless feed stands on its channel, and what it missed.
"""
