"""Who may do what: principals (OAuth clients, staff users, customers), roles and scopes, sign-in, token
bookkeeping (codes, refresh-token families, revocations), the field policy and the access gate.

The HTTP layer runs the OAuth protocol (Authlib) and renders the sign-in pages; the rules they enforce
live here, free of Flask.
"""
