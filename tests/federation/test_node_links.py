"""Two links between the same pair of nodes (they dialled each other at once, or a link
was replaced): a node's messages on any of its links keep passing the receiver's replay
guard, which tracks sequence numbers per sender key, not per link."""

from __future__ import annotations

import pytest_twisted

from .test_gossip import Node, dial, wait_until


@pytest_twisted.ensureDeferred
async def test_messages_on_the_surviving_link_are_not_replays_after_a_second_link() -> None:
    from twisted.internet import reactor

    small, large = sorted((Node(reactor, "x"), Node(reactor, "y")), key=lambda n: n.key)
    try:
        # The smaller key opens the link both sides keep ...
        assert small.gossip.connect(large.record())
        await wait_until(reactor, lambda: small.linked(large) and large.linked(small))
        # ... then the larger key dials too: its new link (and codec) is younger than the
        # kept one, and is dropped as a duplicate.
        dial(reactor, large, small.port.getHost().port, small.key)
        await wait_until(reactor, lambda: large.gossip.stats.closes.get("duplicate", 0) >= 1)
        large.gossip.publish("fed-share", {"after": "second link"})
        await wait_until(reactor, lambda: len(small.handler.shares) == 1)
        assert "replay" not in small.gossip.stats.offences
        assert not [p for p in small.reputation.penalties if p[0] == large.key]
    finally:
        await small.stop()
        await large.stop()
