"""Sending e-mail: the SMTP client (mailer.py) and the texts of the mails (templates.py).

Used by 3PID validation and password reset (homeserver/accounts/threepids.py) and account
renewal (homeserver/accounts/validity.py). Nothing here logs a recipient, a token or a
body: a failure is logged by its kind only.
"""
