"""Topic layout, parsing and wildcard matching."""

from __future__ import annotations

import pytest

from courier.errors import ConfigError
from courier.topics import ParsedTopic, TopicKind, Topics
from courier.transport import topic_matches

T = Topics("courier")


def test_build() -> None:
    assert T.command("pump-7", "e1") == "courier/devices/pump-7/commands/e1"
    assert T.reply("pump-7", "e1") == "courier/devices/pump-7/replies/e1"
    assert T.presence("pump-7") == "courier/devices/pump-7/presence"
    assert T.attached_presence("gw", "s1") == "courier/devices/gw/attached/s1/presence"
    assert T.requests("acme") == "courier/tenants/acme/requests"
    assert T.events("acme") == "courier/tenants/acme/events"


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        ("courier/devices/d1/replies/e1", ParsedTopic(TopicKind.REPLY, "d1", "e1")),
        ("courier/devices/d1/commands/e1", ParsedTopic(TopicKind.COMMAND, "d1", "e1")),
        ("courier/devices/d1/presence", ParsedTopic(TopicKind.PRESENCE, "d1")),
        (
            "courier/devices/gw/attached/s1/presence",
            ParsedTopic(TopicKind.ATTACHED_PRESENCE, "gw", attached="s1"),
        ),
        ("courier/tenants/acme/requests", ParsedTopic(TopicKind.REQUESTS, tenant="acme")),
        ("other/devices/d1/presence", None),
        ("courier/devices/d1/replies/", None),
        ("courier/devices/d1/replies/e1/extra", None),
        ("courier/devices/bad:id/presence", None),
        ("courier/devices/$sys/presence", None),
        ("courier/devices/d1", None),
        ("courier/tenants/acme/unknown", None),
    ],
)
def test_parse(topic: str, parsed: ParsedTopic | None) -> None:
    assert T.parse(topic) == parsed


def test_prefix_with_levels() -> None:
    topics = Topics("acme/iot/courier")
    assert topics.parse(topics.reply("d1", "e1")) == ParsedTopic(TopicKind.REPLY, "d1", "e1")


@pytest.mark.parametrize("bad", ["", "/x", "x/", "$sys", "a/+/b", "a/#", "a//b", "a\0b"])
def test_bad_prefixes_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        Topics(bad)


@pytest.mark.parametrize(
    ("flt", "topic", "matches"),
    [
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/#", "a/b/c", True),
        ("a/#", "a", True),
        ("#", "a/b", True),
        ("#", "$SYS/x", False),
        ("a/+", "a/b/c", False),
        ("a/b", "a/b", True),
        ("$share/g/a/+", "a/b", True),
        ("+/+/replies/+", "p/d/replies/e", True),
    ],
)
def test_topic_matches(flt: str, topic: str, matches: bool) -> None:
    assert topic_matches(flt, topic) is matches
