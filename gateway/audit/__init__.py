"""The hash-chained audit log: who did what, with which policy version, and what the gateway decided.

Modules: events (the record shape), config (AuditConfig), log (AuditLog: spool on the request path, ship in the
background), chain (hashing, the serialised append, verify), records (list, export), retention (prune), cli.
Importing this package imports nothing else, so gateway.config can use gateway.audit.config cheaply.
"""
