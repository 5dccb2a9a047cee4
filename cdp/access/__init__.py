"""Principals (OAuth clients; staff and customers later), roles and scopes, and token bookkeeping.

The HTTP layer runs the OAuth protocol (Authlib); the rules it enforces live here.
"""
