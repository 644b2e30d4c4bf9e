# net/: identity, wire envelopes, transport.
