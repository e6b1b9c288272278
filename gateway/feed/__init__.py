"""The live status feed, `GET /api/events`: a WebSocket of the caller's own status changes.

Every gateway replica has its own exclusive, auto-delete queue, bound to the `P.events` fanout
exchange while at least one socket is open on that replica (`binding`), so each replica with
sockets sees every event (`consumer`) and pushes it to the sockets connected to it (`hub`): those
of the event's owner, and those of admins. The socket's protocol is in `protocol`; a socket's
token is checked again while it is open (`reauth`). Nothing is stored: a client that was away
re-reads the API when it (re)connects, which the `ready` frame invites it to do.
"""
