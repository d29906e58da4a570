"""``offline_store: {type: remote, path: http://host:6566}``: training sets from a Ladle server.

The SDK sends the entity frame and the feature references to ``POST /get-historical-features`` as
an Arrow IPC stream (the request rides in the schema metadata, so timestamps and integer widths
arrive intact) and gets the training frame back the same way. The server runs the point-in-time
join (and on-demand views) on its own offline store, after checking READ_OFFLINE for the caller.
"""
