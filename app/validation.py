"""Bounds on what clients send, checked before the database (or a password hash) sees it.

A string longer than its column fails at flush as a database error, a 500; one far longer than
any sensible value (a megabyte of password, of symbol name) costs work before it fails. Every
string a client sends is checked here first, and refused with the field that carried it.
"""

from __future__ import annotations

from app.errors import InvalidInput

# Lengths shared by several services; a domain's own bounds live with its rules (names in
# app/naming.py, passwords in app/user/service.py, client order ids in app/order/rules.py).
EMAIL = 320  # String(320): the longest address the mail standards allow
SYMBOL = 32  # String(32)
TOKEN = 256  # refresh tokens are 43 characters; anything much longer is not one


def check_length(value: str, *, field: str, maximum: int, minimum: int = 0) -> str:
    """`value` itself, when its length is within the bounds; otherwise InvalidInput on `field`."""
    if len(value) > maximum:
        raise InvalidInput(f"{field} must be at most {maximum} characters", field=field)
    if len(value) < minimum:
        raise InvalidInput(f"{field} must be at least {minimum} characters", field=field)
    return value
